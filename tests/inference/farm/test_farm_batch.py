"""`python -m inference batch` on a real local Ray head (127.0.0.1, 2 one-CPU slots, stopped at the
end), its resuming and hostile inputs, and `farm start-local` as a subprocess."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Before Ray is imported: without it, Ray swaps 127.0.0.1 for this machine's network address.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
ray = pytest.importorskip("ray")
from ray._private import ray_constants

if ray_constants.ENABLE_RAY_CLUSTER:  # Ray was imported earlier in this session without the setting
    pytest.skip("Ray was imported before the loopback-only setting", allow_module_level=True)

from inference.api import GenerationRequest
from inference.cli import main
from inference.engine import Engine, ModelRef
from inference.farm import client as farm_client
from inference.farm.batch import MANIFEST, read_prompts
from inference.farm.local import _free_port, start_head

pytestmark = pytest.mark.slow  # a head, two workers started three times, a dozen tiny renders
ROOT = Path(__file__).resolve().parents[3]
PROMPTS = ["a red barn", "a lake at dawn #seed=77", "", "rolling hills", "a lighthouse"]
SETTINGS = ["--steps", "3", "--sampler", "euler", "--guidance", "5", "--width", "64", "--height", "64", "--seed", "10"]


def _request(prompt: str, seed: int) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, seed=seed, steps=3, sampler="euler", guidance=5.0, width=64, height=64)


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@pytest.fixture(scope="module")
def head():
    started = start_head(2, _free_port())
    saved = os.environ.get("RAY_AUTH_TOKEN")
    os.environ["RAY_AUTH_TOKEN"] = started.token  # what the CLI's Farm.connect picks up
    yield started
    if ray.is_initialized():
        ray.shutdown()
    started.stop()
    if saved is None:
        os.environ.pop("RAY_AUTH_TOKEN", None)
    else:
        os.environ["RAY_AUTH_TOKEN"] = saved
    assert not Path(started.temp).exists()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from tiny_models import build_sd

    return build_sd(tmp_path_factory.mktemp("batch-model"), kind="sd1")


EXPECTED = {"0001-a-red-barn-10.png": ("a red barn", 10), "0002-a-lake-at-dawn-77.png": ("a lake at dawn", 77),
            "0003-rolling-hills-12.png": ("rolling hills", 12), "0004-a-lighthouse-13.png": ("a lighthouse", 13),
            "0001-a-red-barn-at-night-10.png": ("a red barn at night", 10)}


@pytest.fixture(scope="module")
def references(model):
    engine, ref = Engine(), ModelRef(model)
    return {name: engine.generate(ref, _request(prompt, seed)).image for name, (prompt, seed) in EXPECTED.items()}


def test_prompt_file_names_seeds_and_slugs(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("\n".join(PROMPTS + ["  Ünïcode / slashes!!  #seed=5", "#seed=3 is not a seed here"]) + "\n")
    items = read_prompts(path, 10)
    assert [item.name for item in items[:4]] == list(EXPECTED)[:4]
    assert items[4].name == "0005-n-code-slashes-5.png" and items[4].prompt == "Ünïcode / slashes!!"
    assert items[5].seed == 15 and items[5].prompt == "#seed=3 is not a seed here"


def _batch(prompts: Path, out: Path, model: Path, farm: str | None, capsys) -> tuple[int, str, float]:
    capsys.readouterr()
    started = time.monotonic()
    code = main(["batch", str(prompts), "--out", str(out), "--model", str(model), *SETTINGS]
                + (["--farm", farm] if farm else []))
    return code, capsys.readouterr().err, time.monotonic() - started


def _pngs(folder: Path) -> dict[str, float]:
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*.png")}


def test_batch_on_farm_equals_local_renders_and_resumes(head, model, references, tmp_path, capsys, monkeypatch):
    prompts, out = tmp_path / "prompts.txt", tmp_path / "out"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    started = time.monotonic()
    code, err, _ = _batch(prompts, out, model, head.address, capsys)
    assert code == 0, err
    files = _pngs(out)
    assert sorted(files) == ["0001-a-red-barn-10.png", "0002-a-lake-at-dawn-77.png", "0003-rolling-hills-12.png",
                             "0004-a-lighthouse-13.png"]
    assert "locally" not in err and "2 farm workers" in err
    for name in files:  # same seed, same pixels as a local render, bit for bit
        assert np.array_equal(_pixels(out / name), references[name]), name
    assert (out / MANIFEST).is_file()

    # A rerun renders nothing and does not even contact the farm.
    def no_farm(*args, **kwargs):
        raise AssertionError("the farm was contacted although every item is done")

    monkeypatch.setattr(farm_client, "connect_or_local", no_farm)
    code, err, elapsed = _batch(prompts, out, model, head.address, capsys)
    assert code == 0 and "4 of 4 images already" in err and elapsed < 15, err
    assert _pngs(out) == files
    monkeypatch.undo()

    # One prompt changed: only that item renders.
    prompts.write_text("\n".join(PROMPTS).replace("a red barn", "a red barn at night") + "\n")
    code, err, _ = _batch(prompts, out, model, head.address, capsys)
    assert code == 0 and "(1 rendered" in err, err
    now = _pngs(out)
    assert {name: now[name] for name in files if name != "0001-a-red-barn-10.png"} == \
        {name: t for name, t in files.items() if name != "0001-a-red-barn-10.png"}
    assert np.array_equal(_pixels(out / "0001-a-red-barn-at-night-10.png"), references["0001-a-red-barn-at-night-10.png"])

    # A run killed mid-way (one output missing, one cut short by a crash): the rerun finishes them.
    (out / "0003-rolling-hills-12.png").unlink()
    damaged = out / "0004-a-lighthouse-13.png"
    damaged.write_bytes(damaged.read_bytes()[:100])
    code, err, _ = _batch(prompts, out, model, head.address, capsys)
    assert code == 0 and "(2 rendered" in err, err
    for name in ("0003-rolling-hills-12.png", "0004-a-lighthouse-13.png"):
        assert np.array_equal(_pixels(out / name), references[name]), name
    assert time.monotonic() - started < 90


def test_unreachable_farm_renders_locally_with_one_line(model, references, tmp_path, capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    prompts, out = tmp_path / "p.txt", tmp_path / "out"
    prompts.write_text("a red barn\na lake at dawn #seed=77\n")
    code, err, _ = _batch(prompts, out, model, f"127.0.0.1:{closed}", capsys)
    assert code == 0, err
    notes = [line for line in err.splitlines() if "locally" in line]
    assert len(notes) == 1 and notes[0].startswith("note:"), err
    for name in ("0001-a-red-barn-10.png", "0002-a-lake-at-dawn-77.png"):
        assert np.array_equal(_pixels(out / name), references[name])


@pytest.mark.parametrize("case", ["empty", "blank-lines", "huge-line", "binary", "not-utf8", "missing",
                                  "out-is-a-file", "seed-too-big"])
def test_hostile_inputs_are_one_line_exit_2(case, tmp_path, capsys):
    prompts, out = tmp_path / "p.txt", tmp_path / "out"
    prompts.write_text("a red barn\n")
    if case == "empty":
        prompts.write_bytes(b"")
    elif case == "blank-lines":
        prompts.write_text("\n   \n\t\n")
    elif case == "huge-line":
        prompts.write_bytes(b"x" * 10_000_000 + b"\n")
    elif case == "binary":
        prompts.write_bytes(bytes(range(256)) * 100)
    elif case == "not-utf8":
        prompts.write_bytes(b"caf\xe9 au lait\n")
    elif case == "missing":
        prompts = tmp_path / "nope.txt"
    elif case == "out-is-a-file":
        out.write_text("not a folder")
    elif case == "seed-too-big":
        prompts.write_text("a barn #seed=99999999999\n")
    capsys.readouterr()
    code = main(["batch", str(prompts), "--out", str(out), "--farm", "127.0.0.1:1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error:") and len(err[0]) < 400, err
    assert case == "out-is-a-file" or not out.exists()


def _own_processes(marker: str) -> list[int]:
    """Processes whose command line names `marker` (the head's own temp folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_start_local_serves_generate_and_stops_on_ctrl_c(model, tmp_path):
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RAY_AUTH_TOKEN", None)
    server = subprocess.Popen([sys.executable, "-m", "inference", "farm", "start-local", "--workers", "1",
                               "--port", str(port)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
    temp = None
    try:
        lines = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = server.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "stop it" in line:
                break
        text = "".join(lines)
        exports = re.search(r"export (\S+=\S+) (\S+=\S+)", text)
        address = re.search(r"--farm (127\.0\.0\.1:\d+)", text)
        assert exports and address and address.group(1) == f"127.0.0.1:{port}", text
        temp = re.search(r"and (\S+) are removed", text).group(1)
        client_env = {**env, **dict(pair.split("=", 1) for pair in exports.groups())}
        out = tmp_path / "farm.png"
        render = subprocess.run([sys.executable, "-m", "inference", "generate", "--prompt", "a barn", "--steps", "2",
                                 "--width", "64", "--height", "64", "--model", str(model), "--farm", address.group(1),
                                 "--out", str(out)], check=False, cwd=ROOT, env=client_env, capture_output=True, text=True,
                                timeout=120)
        assert render.returncode == 0 and out.is_file(), render.stderr[-2000:]
        assert "locally" not in render.stderr, render.stderr[-2000:]  # it really rendered on the farm
        assert _own_processes(temp), "the head's processes are not running under its temp folder"
        server.send_signal(signal.SIGINT)  # Ctrl-C
        rest, _ = server.communicate(timeout=60)
        assert server.returncode == 0 and "stopped" in rest, rest
        time.sleep(1)
        assert not _own_processes(temp) and not Path(temp).exists()
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)  # our own session only
            server.wait(10)
        for pid in _own_processes(temp) if temp else []:
            os.kill(pid, signal.SIGKILL)


def test_start_local_refuses_a_port_in_use_in_one_line(capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        code = main(["farm", "start-local", "--workers", "1", "--port", str(sock.getsockname()[1])])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "in use" in err[0], err


def test_a_failing_item_is_one_line_and_the_others_are_kept(tmp_path):
    """run_batch (the CLI's loop) with a local farm whose runner fails one prompt."""
    from types import SimpleNamespace

    from inference.errors import InferenceError
    from inference.farm.batch import Manifest, SerialRunner, run_batch
    from inference.farm.client import Farm
    from inference.farm.jobs import FarmJob, ModelSpec

    def runner(job, progress, should_stop):
        if job.request.prompt == "boom":
            raise InferenceError("the sampler produced NaN\nsecond line never shown")
        return SimpleNamespace(image=np.full((8, 8, 3), job.request.seed, np.uint8), seed=job.request.seed, info={})

    spec = ModelSpec("0" * 64, "fake")
    work = [(FarmJob(_request(prompt, seed), spec), f"{seed}.png", prompt) for seed, prompt in
            enumerate(["a", "boom", "c"])]
    reported = []

    def save(path, result, job):
        Image.fromarray(result.image).save(path, format="PNG")

    with Farm.local(SerialRunner(runner)) as farm:
        outcome = run_batch(farm, work, tmp_path, save, Manifest(tmp_path),
                            on_done=lambda name, error: reported.append((name, error)))
    assert sorted(outcome.rendered) == ["0.png", "2.png"]
    assert outcome.failed == [("1.png", "the sampler produced NaN")]
    assert ("1.png", "the sampler produced NaN") in reported
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["0.png", "2.png"]
    manifest = Manifest(tmp_path)
    assert manifest.finished("0.png", "a") and not manifest.finished("0.png", "changed")
    assert not manifest.finished("1.png", "boom")


@pytest.mark.parametrize("content, note", [
    (b"{not json", True), (b"[1, 2, 3]", True), (b'{"files": "x"}', True), (b"\xff\xfe\x00", True),
    (b'{"files": {"0.png": "x", "../../etc/passwd": {"key": 1, "sha256": "y"}, "1.png": {"key": "k"}}}', False),
])
def test_a_damaged_manifest_renders_again_and_never_trusts_its_entries(tmp_path, content, note):
    from inference.farm.batch import Manifest

    (tmp_path / "batch-manifest.json").write_bytes(content)
    manifest = Manifest(tmp_path)
    assert manifest.entries == {}  # nothing from it is used
    assert (manifest.note is not None) == note
    if note:
        assert "\n" not in manifest.note and "rendering every item again" in manifest.note


def test_an_oversized_manifest_is_not_read(tmp_path, monkeypatch):
    import inference.farm.batch as batch
    from inference.farm.batch import Manifest

    monkeypatch.setattr(batch, "MAX_MANIFEST_BYTES", 100)
    (tmp_path / "batch-manifest.json").write_text('{"files": {}}' + " " * 200)
    manifest = Manifest(tmp_path)
    assert manifest.entries == {} and "larger than" in manifest.note
