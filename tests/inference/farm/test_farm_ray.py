"""The render farm on a real local Ray cluster (127.0.0.1 only, token auth, stopped at the end).

One head is started per module (`ray start --head --block` in its own session, so stopping that
process stops every Ray process it started); two farm workers of one CPU each run the jobs.
"""
from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

# Before Ray is imported: without it, Ray swaps 127.0.0.1 for this machine's network address.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
ray = pytest.importorskip("ray")
from ray._private import ray_constants  # noqa: E402

if ray_constants.ENABLE_RAY_CLUSTER:  # Ray was imported earlier in this session without the setting
    pytest.skip("Ray was imported before the loopback-only setting", allow_module_level=True)

from inference.api import GenerationRequest  # noqa: E402
from inference.engine import Engine, ModelRef  # noqa: E402
from inference.errors import CancelledError  # noqa: E402
from inference.farm.client import Farm, connect_or_local  # noqa: E402
from inference.farm.errors import FarmUnavailableError  # noqa: E402
from inference.farm.jobs import FarmJob, ModelSpec, Notice, Progress  # noqa: E402
from inference.farm.worker import _torch_threads as torch_threads  # noqa: E402 - the worker's own switch

pytestmark = pytest.mark.slow  # ~40-60 s in all on 2 busy cores: a head, two workers, a few renders

REQUEST = GenerationRequest(prompt="a lighthouse at dusk", negative_prompt="blurry", seed=1234, steps=4,
                            sampler="euler_a", guidance=6.0, width=64, height=64)
LONG = GenerationRequest(prompt="rolling hills and a lake", seed=99, steps=60, sampler="euler", guidance=5.0,
                         width=64, height=64)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Head:
    """`ray start --head` bound to 127.0.0.1 on free ports, with a fresh auth token."""

    ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # Ray then uses the loopback address, not the LAN one
           "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0", "OMP_WAIT_POLICY": "PASSIVE"}

    def __init__(self):
        self.port = _free_port()
        self.temp = tempfile.mkdtemp(prefix="rf-", dir="/tmp")  # short: Ray's socket paths are length-limited
        self.token = secrets.token_hex(32)
        self.saved = {key: os.environ.get(key) for key in [*self.ENV, "RAY_AUTH_TOKEN"]}
        os.environ.update(self.ENV, RAY_AUTH_TOKEN=self.token)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", f"--port={self.port}",
             "--node-ip-address=127.0.0.1", "--num-cpus=2", "--num-gpus=0", "--include-dashboard=false",
             f"--dashboard-port={_free_port()}",
             f"--dashboard-agent-listen-port={_free_port()}", "--disable-usage-stats", f"--temp-dir={self.temp}",
             "--object-store-memory=200000000", "--block"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
            # Workers inherit the head's environment: one started with the default model cache
            # (the CLI's) then caches under this head's temp folder, not the user's ~/.cache.
            env={**os.environ, "XDG_CACHE_HOME": os.path.join(self.temp, "cache")})
        self.ready = threading.Event()
        self.log: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.log.append(line)
            if "block forever" in line:
                self.ready.set()
        self.ready.set()  # the process ended: let `address` report it

    @property
    def address(self) -> str:
        if not self.ready.wait(120) or self.process.poll() is not None:
            raise RuntimeError("ray head did not start:\n" + "".join(self.log[-20:]))
        return f"127.0.0.1:{self.port}"

    def stop(self):
        if ray.is_initialized():
            ray.shutdown()
        self.process.send_signal(signal.SIGTERM)  # --block: the head stops every process it started
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)  # our own session only
            self.process.wait(10)
        shutil.rmtree(self.temp, ignore_errors=True)
        for key, value in self.saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def head():
    started = _Head()  # starts now; the model is built and the local references rendered meanwhile
    yield started
    started.stop()


@pytest.fixture(scope="module")
def model(tmp_path_factory, head):
    from tiny_models import build_sd

    return build_sd(tmp_path_factory.mktemp("farm-model"), kind="sd1")


@pytest.fixture(scope="module")
def references(model):
    engine = Engine()
    ref = ModelRef(model)
    return {"short": engine.generate(ref, REQUEST).image, "long": engine.generate(ref, LONG).image}


@pytest.fixture(scope="module")
def farm(head, references, tmp_path_factory):
    cache = tmp_path_factory.mktemp("farm-cache")
    started = time.perf_counter()
    farm = Farm.connect(head.address, token=head.token, workers=2, worker_cpus=1,
                        cache_dir=str(cache / "{worker}"), timeout_s=10)
    farm.connect_s = time.perf_counter() - started
    yield farm
    farm.close()


def test_unreachable_address_is_one_line_within_seconds():
    port = _free_port()  # nothing listens there any more
    started = time.perf_counter()
    with pytest.raises(FarmUnavailableError) as info:
        Farm.connect(f"127.0.0.1:{port}", timeout_s=2)
    assert time.perf_counter() - started < 3
    assert str(info.value) .startswith(f"render farm at 127.0.0.1:{port} is unreachable (connection refused")
    assert "\n" not in str(info.value)
    for bad in ("", "auto", "127.0.0.1", "127.0.0.1:0", "http://127.0.0.1:6379", "127.0.0.1:6379; rm -rf /"):
        with pytest.raises(FarmUnavailableError, match="is not HOST:PORT"):
            Farm.connect(bad)
    local, notice = connect_or_local(f"127.0.0.1:{port}", timeout_s=1)
    assert local.address is None and local.allow_local
    assert notice.endswith("; rendering locally") and "\n" not in notice
    assert not ray.is_initialized()  # nothing was started or connected


HOUSE = Path(__file__).resolve().parents[3] / "assets" / "house" / "full"
HOUSE_REQUEST = GenerationRequest(prompt="a red house by a lake", seed=1234, steps=4, sampler="euler_a", guidance=3.0,
                                  width=64, height=64)


def _needs_house() -> Path:
    if not (HOUSE / "model_index.json").is_file():
        pytest.skip("the house model is not installed")
    return HOUSE


def _house_vae_file(path: Path) -> Path:
    """The house VAE as one standalone .safetensors file, its decoder's output shifted so that
    renders with it differ visibly from the house model's own VAE."""
    from inference.formats.safetensors_file import save_tensors
    from inference.loader import load_vae

    state = {key: value.contiguous() for key, value in load_vae(HOUSE / "vae").state_dict().items()}
    state["decoder.conv_out.bias"] = state["decoder.conv_out.bias"] + 0.3
    save_tensors(state, path, metadata={"canvasai.norm_groups": "4"})  # the house VAE's GroupNorm groups
    return path


def test_cli_farm_with_vae_gives_the_local_pixels_on_fewer_threads(head, tmp_path, capsys):
    """`generate --farm … --vae X` = the local `--vae X` render, bit for bit: the VAE file is shipped
    by hash, and the one-CPU worker renders with this process's torch thread count."""
    import torch
    from PIL import Image

    from inference.cli import main

    _needs_house()
    assert torch.get_num_threads() >= 2  # the worker's own count is 1: the job must carry ours
    vae = _house_vae_file(tmp_path / "house_vae.safetensors")
    common = ["generate", "--prompt", HOUSE_REQUEST.prompt, "--steps", "4", "--seed", "1234", "--width", "64",
              "--height", "64", "--sampler", "euler_a", "--vae", str(vae)]
    local, farmed, plain = tmp_path / "local.png", tmp_path / "farm.png", tmp_path / "plain.png"
    assert main(common + ["--out", str(local)]) == 0
    assert main(common[:-2] + ["--out", str(plain)]) == 0
    capsys.readouterr()
    from inference.farm.connection import _refresh_ray_auth

    _refresh_ray_auth()  # a CLI process reads the head's RAY_AUTH_TOKEN at start; this one imported Ray before
    started = time.perf_counter()
    assert main(common + ["--farm", head.address, "--out", str(farmed)]) == 0
    assert time.perf_counter() - started < 120
    err = capsys.readouterr().err
    assert "sampling (w" in err and "locally" not in err, err[-2000:]  # it ran on a farm worker
    pixels = {name: np.asarray(Image.open(path)) for name, path in (("local", local), ("farm", farmed),
                                                                     ("plain", plain))}
    assert np.array_equal(pixels["farm"], pixels["local"])
    assert (pixels["farm"] != pixels["plain"]).mean() > 0.5  # the VAE file was used
    assert not ray.is_initialized()  # the CLI disconnected (and stopped its worker)


def test_farm_render_equals_local_render_bit_for_bit(farm, model, references):
    assert sorted(farm.worker_names()) == ["w0", "w1"]
    job = FarmJob(REQUEST, ModelSpec.for_path(str(model)), preview_every_s=0)
    handle = farm.submit(job)
    events = list(handle.events(timeout_s=120))
    result = handle.result(timeout_s=120)
    assert result.image.dtype == np.uint8 and result.image.shape == (64, 64, 3)
    assert np.array_equal(result.image, references["short"])  # same seed, same pixels
    assert result.image.std() > 5
    steps = [e.step for e in events if isinstance(e, Progress)]
    assert steps and steps == sorted(steps) and steps[-1] == 4 and all(e.total == 4 for e in events)
    previews = [e.preview for e in events if isinstance(e, Progress) and e.preview is not None]
    assert previews and all(p.shape == (64, 64, 3) and p.dtype == np.uint8 for p in previews)
    assert result.info["model_hash"] == job.model.content_hash and result.info["seed"] == 1234
    assert result.info["worker"] == handle.worker and result.info["steps_run"] == 4
    assert [t["worker"] for t in farm.transfers] == [handle.worker]
    assert handle.notices == []


def test_model_is_shipped_once_per_worker_and_never_resent(farm, model, references):
    spec = ModelSpec.for_path(str(model))
    first = farm.transfers[0]["worker"]
    other = "w1" if first == "w0" else "w0"
    # The scheduler sends the next job to the worker that has the model loaded: no transfer.
    again = farm.submit(FarmJob(REQUEST, spec, preview_every_s=None))
    assert np.array_equal(again.result(timeout_s=120).image, references["short"])
    assert again.worker == first and len(farm.transfers) == 1
    # A job forced onto the other worker ships it there once; a second one does not.
    for _ in range(2):
        handle = farm.submit(FarmJob(REQUEST, spec, preview_every_s=None), worker=other)
        assert np.array_equal(handle.result(timeout_s=120).image, references["short"])
    assert [t["worker"] for t in farm.transfers] == [first, other]
    facts = farm.describe()
    assert {name: f["stats"]["models_received"] for name, f in facts.items()} == {first: 1, other: 1}
    assert all(f["cached"] == [spec.content_hash] and f["loaded"] == [[spec.content_hash, []]] for f in facts.values())
    assert farm.transfers[0]["bytes"] == sum(p.stat().st_size for p in model.rglob("*")
                                             if p.suffix in (".safetensors", ".json", ".txt"))


@pytest.fixture(scope="module")
def lora(model):
    import lora_helpers
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(model)
    path = model.parent / "style.safetensors"
    lora_helpers.kohya_lora(path, {"lora_unet_": lora_helpers.unet_layers(pipe.unet),
                                   "lora_te_": lora_helpers.text_layers(pipe.text_encoder)}, seed=3)
    return path


def test_loras_are_shipped_by_hash_and_give_the_local_image(farm, model, lora):
    from inference.api import LoraSpec

    request = dataclasses.replace(REQUEST, loras=(LoraSpec(str(lora), 0.9, 0.6),))
    expected = Engine().generate(ModelRef(model), request).image
    assert not np.array_equal(expected, Engine().generate(ModelRef(model), REQUEST).image)  # the LoRA shows
    shipped = len(farm.transfers)
    for _ in range(2):
        handle = farm.submit(FarmJob(request, ModelSpec.for_path(str(model)), preview_every_s=None))
        assert np.array_equal(handle.result(timeout_s=120).image, expected)
    lora_hash = ModelSpec.for_path(str(lora)).content_hash
    assert [t["model"] for t in farm.transfers[shipped:]] == [lora_hash]  # the LoRA once, the model not again
    assert farm.transfers[-1]["bytes"] == lora.stat().st_size
    facts = farm.describe()[handle.worker]
    assert [ModelSpec.for_path(str(model)).content_hash, [lora_hash]] in facts["loaded"]


def test_variations_fan_out_across_workers(farm, model):
    job = FarmJob(REQUEST, ModelSpec.for_path(str(model)), preview_every_s=None)
    shipped = len(farm.transfers)
    handles = farm.submit_variations(job, seeds=[11, 12])
    results = [h.result(timeout_s=120) for h in handles]
    assert sorted(h.worker for h in handles) == ["w0", "w1"]  # both idle workers render at once
    assert [r.seed for r in results] == [11, 12] and [r.info["seed"] for r in results] == [11, 12]
    assert not np.array_equal(results[0].image, results[1].image)
    assert len(farm.transfers) == shipped


@pytest.fixture(scope="module")
def extra_files(model, tmp_path_factory):
    """Two standalone VAE files (the model's VAE, decoder output shifted two ways) and a UNet-only
    diffusers folder (the model's UNet, output shifted), each changing the image."""
    import json

    from safetensors.numpy import load_file, save_file

    from inference.formats.safetensors_file import save_tensors
    from inference.loader import load_vae

    root = tmp_path_factory.mktemp("farm-extras")
    groups = json.loads((model / "vae" / "config.json").read_text())["norm_num_groups"]
    state = {key: value.contiguous() for key, value in load_vae(model / "vae").state_dict().items()}
    files = {}
    for name, shift in (("vae_a", 0.2), ("vae_b", -0.2)):
        files[name] = root / f"{name}.safetensors"
        save_tensors({**state, "decoder.conv_out.bias": state["decoder.conv_out.bias"] + shift}, files[name],
                     metadata={"canvasai.norm_groups": str(groups)})
    files["unet"] = root / "unet"
    shutil.copytree(model / "unet", files["unet"])
    weights = files["unet"] / "diffusion_pytorch_model.safetensors"
    tensors = load_file(str(weights))
    tensors["conv_out.bias"] = tensors["conv_out.bias"] + np.float32(0.5)
    save_file(tensors, str(weights))
    return files


def test_vae_and_unet_files_are_shipped_once_and_key_the_loaded_model(farm, model, extra_files):
    from inference.farm.jobs import load_id

    engine = Engine()
    expected = {name: engine.generate(ModelRef(model, vae_path=path if name != "unet" else None,
                                               unet_path=path if name == "unet" else None), REQUEST).image
                for name, path in extra_files.items()}
    plain = engine.generate(ModelRef(model), REQUEST).image
    assert all(not np.array_equal(image, plain) for image in expected.values())
    assert not np.array_equal(expected["vae_a"], expected["vae_b"])
    base = ModelSpec.for_path(str(model))
    specs = {name: ModelSpec.for_path(str(path)) for name, path in extra_files.items()}
    worker, shipped = farm.worker_names()[0], len(farm.transfers)
    # base+vaeA, base+vaeB, base+vaeA again, base+UNet on one worker: each extra file shipped once,
    # and never the image of the model loaded for another file (the worker's key includes them).
    for name in ("vae_a", "vae_b", "vae_a", "unet"):
        job = FarmJob(REQUEST, base, preview_every_s=None, **{"unet" if name == "unet" else "vae": specs[name]})
        result = farm.submit(job, worker=worker).result(timeout_s=120)
        assert np.array_equal(result.image, expected[name]), name
        assert result.info.get(f"{'unet' if name == 'unet' else 'vae'}_file") == specs[name].name
    assert [(t["worker"], t["model"]) for t in farm.transfers[shipped:]] == \
        [(worker, specs[name].content_hash) for name in ("vae_a", "vae_b", "unet")]
    assert farm.transfers[-1]["bytes"] == sum(p.stat().st_size for p in extra_files["unet"].iterdir())
    facts = farm.describe()[worker]
    assert facts["loaded"] == [[load_id(base.content_hash, unet=specs["unet"].content_hash), []]]
    assert {spec.content_hash for spec in specs.values()} <= set(facts["cached"])


def test_a_job_renders_with_the_clients_thread_count(farm):
    """A one-CPU worker computes on one thread; a job carrying the client's count (2 here) is
    rendered on as many, so its pixels equal a local 2-thread render bit for bit, and the
    worker's own count comes back afterwards (the next job, without a count, uses it)."""
    house = _needs_house()
    engine = Engine()
    with torch_threads(2):
        two = engine.generate(ModelRef(house), HOUSE_REQUEST).image
    with torch_threads(1):
        one = engine.generate(ModelRef(house), HOUSE_REQUEST).image
    assert not np.array_equal(one, two)  # sums split over 2 threads round differently (±1, a few pixels)
    assert int(np.abs(one.astype(int) - two).max()) == 1
    spec = ModelSpec.for_path(str(house))
    worker = farm.worker_names()[0]
    farmed = farm.submit(FarmJob(HOUSE_REQUEST, spec, preview_every_s=None, threads=2), worker=worker)
    result = farmed.result(timeout_s=120)
    assert np.array_equal(result.image, two) and result.info["threads"] == 2
    own = farm.submit(FarmJob(HOUSE_REQUEST, spec, preview_every_s=None), worker=worker).result(timeout_s=120)
    assert own.info["threads"] == 1 and np.array_equal(own.image, one)


def test_cancel_reaches_the_worker_and_stops_within_one_step(farm, model):
    job = FarmJob(GenerationRequest(prompt="x", seed=5, steps=400, width=64, height=64), ModelSpec.for_path(str(model)),
                  preview_every_s=None)
    handle = farm.submit(job)
    for event in handle.events(timeout_s=120):
        if isinstance(event, Progress) and event.step >= 2:
            handle.cancel()
            break
    with pytest.raises(CancelledError):
        handle.result(timeout_s=60)
    info = handle.cancel_info
    assert info["total"] == 400
    assert info["cancel_step"] >= 2
    assert info["stopped_step"] <= info["cancel_step"] + 1  # within one step of the flag arriving
    assert farm.describe()[handle.worker]["busy"] == 0


def test_worker_killed_mid_job_is_retried_on_another_with_one_notice(farm, model, references):
    job = FarmJob(LONG, ModelSpec.for_path(str(model)), preview_every_s=None)
    shipped = len(farm.transfers)
    handle = farm.submit(job)
    seen: list = []
    for event in handle.events(timeout_s=180):
        seen.append(event)
        if isinstance(event, Progress) and len(handle.attempts) == 1 and event.step >= 1:
            ray.kill(farm.actor(handle.worker))  # the worker dies mid-render
    result = handle.result(timeout_s=180)
    assert np.array_equal(result.image, references["long"])  # the retry gives exactly the local image
    first, second = handle.attempts
    assert first != second and result.worker == second
    notices = [e.message for e in seen if isinstance(e, Notice)]
    assert notices == handle.notices and len(notices) == 1
    assert notices[0].startswith(f"Render farm: worker {first} was lost at step ")
    assert notices[0].endswith(f"retrying on {second}") and "\n" not in notices[0]
    assert farm.worker_names() == [second]
    assert len(farm.transfers) == shipped  # the retry found the model already on the other worker


def test_losing_the_last_worker_falls_back_to_local_rendering_when_allowed(farm, model, references):
    farm.allow_local = True  # the user's setting: render here rather than fail
    handle = farm.submit(FarmJob(LONG, ModelSpec.for_path(str(model)), preview_every_s=None))
    for event in handle.events(timeout_s=180):
        if isinstance(event, Progress) and handle.attempts[-1] != "local" and event.step >= 1:
            ray.kill(farm.actor(handle.worker))
    result = handle.result(timeout_s=180)
    assert np.array_equal(result.image, references["long"]) and result.worker == "local"
    assert len(handle.notices) == 1 and handle.notices[0].endswith("; rendering locally")
    assert farm.worker_names() == []
    # A farm without a cluster (unreachable at start-up) renders the same way, through the same API.
    local = Farm.local().submit(FarmJob(REQUEST, ModelSpec.for_path(str(model))))
    assert np.array_equal(local.result(timeout_s=120).image, references["short"])


def test_worker_uses_a_shared_library_by_path_and_refuses_bad_payloads(model, references, tmp_path):
    from inference.farm.errors import FarmPayloadError
    from inference.farm.jobs import job_to_dict
    from inference.farm.worker import FarmWorker

    worker = FarmWorker("in-process", cache_dir=str(tmp_path / "cache"), shared_roots=(str(model.parent),),
                        device="cpu")  # the class behind the actor, driven directly
    job = FarmJob(REQUEST, ModelSpec.for_path(str(model)), preview_every_s=None)
    payload = job_to_dict(job)
    assert worker.model_status(payload["model"]) == "shared"  # same library, same hash: no transfer
    assert worker.model_status({**payload["model"], "path": str(tmp_path)}) == "missing"
    worker.submit(payload)
    reply = {"seq": -1}
    while reply.get("state") not in ("done", "failed"):
        reply = worker.poll(job.job_id, reply["seq"], -1, 5.0)
    assert reply["state"] == "done", reply["error"]
    assert np.array_equal(reply["result"]["image"], references["short"])
    assert worker.describe()["stats"] == {"models_received": 0, "bytes_received": 0, "jobs_done": 1, "shared_hits": 1}
    assert worker.cache.cached() == []
    with pytest.raises(FarmPayloadError, match="^farm payload: steps must be a whole number, got float$"):
        worker.submit({**payload, "request": {**payload["request"], "steps": 4.0}})
