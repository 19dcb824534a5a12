"""Farm job wire form: lossless round trips, and hostile payloads refused with one line."""
from __future__ import annotations

import dataclasses
import hashlib
import pickle
import subprocess
import sys

import numpy as np
import pytest

from inference.api import GenerationRequest
from inference.farm.errors import FarmPayloadError, ModelTransferError
from inference.farm.jobs import (FarmJob, FarmResult, ModelSpec, job_from_dict, job_to_dict, progress_from_dict,
                                 result_from_dict, result_to_dict, _REQUEST_FIELDS)

HASH = "0123456789abcdef" * 4
MODEL = {"content_hash": HASH, "name": "vae.safetensors", "path": "", "dtype": None, "prediction_type": None}


def _inpaint_job() -> FarmJob:
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    mask = np.zeros((48, 64), np.uint8)
    mask[10:30, 20:50] = 255
    change = np.clip(rng.random((48, 64)), 0, 1).astype(np.float32)
    request = GenerationRequest(prompt="a boat, (sunset:1.2)", negative_prompt="blurry", seed=2**32 - 1, steps=7,
                                sampler="dpmpp_2m_karras", timestep_spacing="trailing", guidance=6.5, width=64,
                                height=48, init_image=image, strength=0.6, mask=mask, paste_back=False,
                                paste_feather=3, change_map=change, image_guidance=1.25, guidance_rescale=0.7,
                                tcd_gamma=0.45, structure_scale=2, structure_hold=0.75, structure_bound=0.05,
                                init_latents=rng.standard_normal((4, 6, 8)).astype(np.float32))
    return FarmJob(request, ModelSpec(HASH, "m.safetensors", "/lib/m.safetensors", "float16", "epsilon"),
                   "job-1", 0.25)


def _wire(obj):
    """What Ray does to a payload on the way (pickle protocol 5, out-of-band array buffers)."""
    buffers = []
    data = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    return pickle.loads(data, buffers=buffers)


def test_request_table_covers_every_request_field():
    assert set(_REQUEST_FIELDS) == {f.name for f in dataclasses.fields(GenerationRequest)}


def test_job_round_trip_is_lossless():
    job = _inpaint_job()
    back = job_from_dict(_wire(job_to_dict(job)))
    assert back.job_id == "job-1" and back.preview_every_s == 0.25 and back.model == job.model
    assert back.key == (HASH, ()) and back.loras() == ()
    for f in dataclasses.fields(GenerationRequest):
        mine, theirs = getattr(job.request, f.name), getattr(back.request, f.name)
        if isinstance(mine, np.ndarray):
            assert theirs.dtype == mine.dtype and theirs.shape == mine.shape
            assert np.array_equal(theirs, mine)
        else:
            assert theirs == mine and type(theirs) is type(mine), f.name


def test_loras_travel_by_content_hash(tmp_path):
    from safetensors.numpy import save_file

    from inference.api import LoraSpec

    style, detail = tmp_path / "style.safetensors", tmp_path / "detail.safetensors"
    save_file({"lora_unet_x.lora_down.weight": np.ones((2, 2), np.float32)}, str(style))
    save_file({"lora_unet_x.lora_down.weight": np.zeros((2, 2), np.float32)}, str(detail))
    job = _inpaint_job()
    job.request.loras = (LoraSpec(str(style), 0.8), LoraSpec(str(detail), -0.5, 0.25), LoraSpec(str(style), 0.1))
    payload = _wire(job_to_dict(job))
    hashes = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (style, detail)]
    assert [m["content_hash"] for m in payload["loras"]] == hashes  # each file once
    assert payload["request"]["loras"] == [{"hash": hashes[0], "unet": 0.8, "text": None},
                                           {"hash": hashes[1], "unet": -0.5, "text": 0.25},
                                           {"hash": hashes[0], "unet": 0.1, "text": None}]
    assert str(tmp_path) not in repr(payload["request"]["loras"])  # no client paths in the request
    back = job_from_dict(payload)
    assert back.request.loras == (LoraSpec(hashes[0], 0.8), LoraSpec(hashes[1], -0.5, 0.25), LoraSpec(hashes[0], 0.1))
    assert back.key == job.key == (HASH, (hashes[0], hashes[1], hashes[0]))


def test_vae_unet_and_threads_travel_by_hash_and_key_the_loaded_model(tmp_path):
    from safetensors.numpy import save_file

    from inference.farm.jobs import load_id_files

    files = {}
    for name, value in (("vae_a", 1.0), ("vae_b", 2.0), ("unet", 3.0)):
        files[name] = tmp_path / f"{name}.safetensors"
        save_file({"decoder.conv_out.bias": np.full((3,), value, np.float32)}, str(files[name]))
    digests = {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in files.items()}
    job = dataclasses.replace(_inpaint_job(), vae=ModelSpec.for_path(str(files["vae_a"])),
                              unet=ModelSpec.for_path(str(files["unet"])), threads=3)
    payload = _wire(job_to_dict(job))
    assert payload["vae"]["content_hash"] == digests["vae_a"] and payload["threads"] == 3
    back = job_from_dict(payload)
    assert (back.vae, back.unet, back.threads) == (job.vae, job.unet, 3)
    assert [spec.content_hash for spec in back.files()] == [HASH, digests["vae_a"], digests["unet"]]
    assert back.key == job.key and load_id_files(back.key[0]) == (HASH, digests["vae_a"], digests["unet"])
    # base+vaeA and base+vaeB are different models in memory; the bare model is a third.
    other = dataclasses.replace(job, vae=ModelSpec.for_path(str(files["vae_b"])))
    plain = _inpaint_job()
    assert len({job.key[0], other.key[0], plain.key[0]}) == 3 and plain.key[0] == HASH
    assert job_from_dict(job_to_dict(plain)).threads is None  # None: the worker's own count
    pickled = tmp_path / "vae.pt"  # never shipped: only .safetensors files (and configs) travel
    pickled.write_bytes(b"\x80\x04N.")
    with pytest.raises(ModelTransferError, match="only .safetensors files can be sent to the farm"):
        ModelSpec.for_path(str(pickled))


def test_bool_masks_travel_as_uint8():
    job = _inpaint_job()
    job.request.mask = job.request.mask > 0
    back = job_from_dict(job_to_dict(job))
    assert back.request.mask.dtype == np.uint8 and int(back.request.mask.max()) == 255
    assert int(back.request.mask.sum()) == 255 * 20 * 30


def _with(payload: dict, path: tuple, value):
    target = payload
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return payload


@pytest.mark.parametrize("path, value, words", [
    (("request", "steps"), "20", "steps must be a whole number, got str"),
    (("request", "steps"), True, "steps must be a whole number, got bool"),
    (("request", "steps"), 0, "steps 0 must be between 1 and 1000"),
    (("request", "seed"), -1, "seed -1 is out of range"),
    (("request", "guidance"), float("nan"), "guidance must be finite"),
    (("request", "width"), 63, "width 63 must be a multiple of 8"),
    (("request", "prompt"), b"bytes", "prompt must be text, got bytes"),
    (("request", "prompt"), "x" * 30_000, "prompt is 30000 characters long"),
    (("request", "sampler"), "rm -rf", "sampler"),
    (("request", "init_image"), [[[0, 0, 0]]], "init image must be a numpy array, got list"),
    (("request", "init_image"), np.zeros((48, 64, 3), np.float32), "init image has dtype float32"),
    (("request", "init_image"), np.zeros((48, 64, 4), np.uint8), "init image has shape (48, 64, 4)"),
    (("request", "init_image"), np.zeros((48, 8, 3), np.uint8), "init image is 8x48 but the request is 64x48"),
    (("request", "init_image"), np.empty((48, 64, 3), object), "init image has dtype object"),
    (("request", "init_image"), np.zeros((5000, 64, 3), np.uint8), "init image has shape (5000, 64, 3)"),
    (("request", "mask"), np.zeros((48, 64, 3), np.uint8), "mask has shape (48, 64, 3)"),
    (("request", "mask"), np.zeros((48, 60), np.uint8), "mask is 60x48 but the image is 64x48"),
    (("request", "change_map"), np.full((48, 64), 2.0, np.float32), "change map must be finite floats"),
    (("request", "change_map"), np.zeros((48, 64), np.int64), "change map has dtype int64"),
    (("request", "paste_back"), 1, "paste back must be true or false, got int"),
    (("request", "tcd_gamma"), 1.5, "TCD gamma 1.5 must be between 0 and 1"),
    (("request", "init_latents"), np.zeros((4, 6, 8), np.int32), "init latents has dtype int32"),
    (("request", "init_latents"), np.zeros((4, 6), np.float32), "init latents has shape (4, 6)"),
    (("request", "init_latents"), np.zeros((4, 5, 8), np.float32), "init latents must be an array (C, 6, 8)"),
    (("request", "init_latents"), np.full((4, 6, 8), np.nan, np.float32), "init latents must be finite"),
    (("request", "init_latents"), [[[0.0]]], "init latents has shape list"),
    (("request", "structure_scale"), 65, "structure scale 65 is out of range [0, 64]"),
    (("request", "structure_scale"), True, "structure scale must be a whole number, got bool"),
    (("request", "structure_hold"), 1.5, "structure hold 1.5 must be between 0 and 1"),
    (("request", "structure_bound"), "0.05", "structure bound must be a number, got str"),
    (("request", "structure_bound"), float("inf"), "structure bound must be finite"),
    (("request", "structure_bound"), -0.5, "structure bound -0.5 must be between 0 and 10"),
    (("request", "evil"), 1, "request has unknown fields ['evil']"),
    (("request", "seed"), KeyError, "request lacks fields ['seed']"),
    (("model", "content_hash"), "ab" * 16, "model hash must be 64 lowercase hex digits"),
    (("model", "loras"), [HASH], "model has unknown fields ['loras']"),
    (("loras",), [{"content_hash": HASH, "name": "x", "path": "", "dtype": None, "prediction_type": None}],
     "LoRA files do not match the request's LoRAs"),
    (("loras",), "x", "LoRA files must be a list"),
    (("job_id",), "../../etc", "job id must be 1-64 letters"),
    (("version",), 1, "wire version 1 is not 3"),
    (("vae",), "/models/vae.safetensors", "VAE must be a mapping, got str"),  # a path instead of a hash
    (("vae",), {**MODEL, "content_hash": "/models/vae.safetensors"}, "VAE hash must be 64 lowercase hex digits"),
    (("vae",), {**MODEL, "content_hash": HASH.upper()}, "VAE hash must be 64 lowercase hex digits"),
    (("vae",), {**MODEL, "content_hash": "sha256:" + HASH[7:]}, "VAE hash must be 64 lowercase hex digits"),
    (("vae",), {**MODEL, "url": "http://x"}, "VAE has unknown fields ['url']"),
    (("vae",), {"content_hash": HASH}, "VAE lacks fields"),
    (("vae",), {**MODEL, "path": b"/x"}, "VAE path must be text, got bytes"),
    (("unet",), ["/models/unet.safetensors"], "UNet must be a mapping, got list"),
    (("unet",), {**MODEL, "content_hash": HASH[:-1] + "g"}, "UNet hash must be 64 lowercase hex digits"),
    (("unet",), {**MODEL, "pickle": True}, "UNet has unknown fields ['pickle']"),
    (("unet",), KeyError, "job lacks fields ['unet']"),
    (("threads",), 0, "torch threads 0 is out of range [1, 1024]"),
    (("threads",), 10**6, "torch threads 1000000 is out of range"),
    (("threads",), 2.0, "torch threads must be a whole number, got float"),
    (("threads",), True, "torch threads must be a whole number, got bool"),
    (("threads",), "2", "torch threads must be a whole number, got str"),
    (("preview_every_s",), -1.0, "preview interval -1.0 must be between 0 and 3600 s"),
    (("request", "loras"), [{"hash": HASH, "unet": 1.0, "text": None}], "LoRA files do not match"),
    (("request", "loras"), [{"hash": "../x", "unet": 1.0, "text": None}], "LoRA hash must be 64 lowercase hex"),
    (("request", "loras"), [{"hash": HASH, "unet": "1", "text": None}], "LoRA weight must be a number, got str"),
    (("request", "loras"), [{"hash": HASH, "unet": 99.0, "text": None}], "weight 99.0 is outside"),
    (("request", "loras"), [["/x.safetensors", 1.0, None]], "LoRA entry must be a mapping, got list"),
    (("request", "loras"), "none", "LoRA list must be a list of at most 32, got str"),
])
def test_hostile_job_payloads_are_refused_with_one_line(path, value, words):
    payload = _with(job_to_dict(_inpaint_job()), path, value)
    with pytest.raises(FarmPayloadError) as info:
        job_from_dict(payload)
    message = str(info.value)
    assert "\n" not in message and message.startswith("farm payload:")
    assert words in message


@pytest.mark.parametrize("payload", [None, [], "job", 42, {"version": 1}])
def test_payloads_that_are_not_jobs(payload):
    with pytest.raises(FarmPayloadError, match="^farm payload: job"):
        job_from_dict(payload)


def test_results_and_progress_are_checked_against_the_job():
    job = _inpaint_job()
    image = np.full((48, 64, 3), 7, np.uint8)
    good = result_to_dict(FarmResult("job-1", image, job.request.seed, "w0", {"mode": "inpaint", "steps_run": 7}))
    back = result_from_dict(_wire(good), job)
    assert back.image.shape == (48, 64, 3) and int(back.image.sum()) == 7 * 48 * 64 * 3
    assert back.info == {"mode": "inpaint", "steps_run": 7}
    bad_cases = [
        ({**good, "image": np.zeros((64, 64, 3), np.uint8)}, "result image is 64x64, the job asked for 64x48"),
        ({**good, "image": np.zeros((48, 64, 3), np.float32)}, "result image has dtype float32"),
        ({**good, "seed": 1}, "result seed 1 is not the job's seed 4294967295"),
        ({**good, "job_id": "other"}, "result is for job 'other'"),
        ({**good, "info": {"x": object()}}, "result info 'x' has a value of type object"),
        ({**good, "extra": 1}, "result has unknown fields ['extra']"),
    ]
    for payload, words in bad_cases:
        with pytest.raises(FarmPayloadError) as info:
            result_from_dict(payload, job)
        assert words in str(info.value)
    assert progress_from_dict({"step": 3, "total": 7}, job, "w0").step == 3
    with pytest.raises(FarmPayloadError, match="progress step 9 is out of range"):
        progress_from_dict({"step": 9, "total": 7}, job, "w0")
    with pytest.raises(FarmPayloadError, match="preview has shape"):
        progress_from_dict({"step": 1, "total": 7, "preview": np.zeros((4, 4), np.uint8)}, job, "w0")


def test_farm_package_imports_neither_torch_nor_ray():
    code = ("import sys; import inference.farm, inference.farm.jobs, inference.farm.scheduler, "
            "inference.farm.models, inference.farm.client, inference.farm.worker; "
            "print(sorted(m for m in ('torch', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
