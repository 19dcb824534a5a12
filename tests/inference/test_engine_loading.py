"""Loading choices (dtype, device, no random init) and prompt conditioning beyond what diffusers does."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from inference.conditioning import build_conditioning
from inference.errors import InvalidRequestError, ModelFormatError
from inference.loader import load_model
from inference.pipeline import GenerationRequest, Pipeline
from inference.tokenizer import tokenize_weighted

from tiny_models import build_sd, build_sdxl


@pytest.fixture(scope="module")
def sd1(tmp_path_factory):
    return build_sd(tmp_path_factory.mktemp("load"), kind="sd1")


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory):
    return build_sdxl(tmp_path_factory.mktemp("loadxl"))


def test_no_random_initialisation_while_loading(sd1, monkeypatch):
    """Modules are built on the meta device: init functions may be called, but never on real memory."""
    real_inits = []

    def guard(original):
        def wrapper(tensor, *args, **kwargs):
            if not tensor.is_meta:
                real_inits.append(tuple(tensor.shape))
            return original(tensor, *args, **kwargs)
        return wrapper

    for name in ("kaiming_uniform_", "uniform_", "normal_", "xavier_uniform_", "trunc_normal_", "zeros_", "ones_"):
        monkeypatch.setattr(torch.nn.init, name, guard(getattr(torch.nn.init, name)))
    model = load_model(sd1)
    assert real_inits == []
    assert all(p.device.type == "cpu" and not p.is_meta for p in model.unet.parameters())


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_load_runs_and_stays_close_to_float32(sd1, dtype):
    request = GenerationRequest(prompt="a boat", seed=3, steps=3, width=64, height=64)
    reference = Pipeline(load_model(sd1, dtype="float32")).generate(request).image.astype(int)
    model = load_model(sd1, dtype=dtype)
    assert next(model.unet.parameters()).dtype == getattr(torch, dtype)
    assert next(model.text_encoders[0].model.parameters()).dtype == getattr(torch, dtype)
    result = Pipeline(model).generate(request).image.astype(int)
    assert np.abs(result - reference).mean() < 12  # half precision on random weights: close, not equal


def test_unknown_dtype_is_refused(sd1):
    with pytest.raises(ModelFormatError, match="float8"):
        load_model(sd1, dtype="float8")


def test_long_prompts_are_chunked_and_weights_change_the_context(sd1):
    model = load_model(sd1)
    long_prompt = ", ".join(f"word{i}" for i in range(60))  # > 75 tokens
    chunks = tokenize_weighted(model.text_encoders[0].tokenizer, long_prompt).n_chunks
    assert chunks > 1
    cond = build_conditioning(model, long_prompt, "", 7.5, 64, 64)
    assert cond.context.shape[:2] == (2, 77 * chunks)  # the empty negative is padded to match
    plain = build_conditioning(model, "a red house", "", 1.0, 64, 64).context
    weighted = build_conditioning(model, "a (red:1.5) house", "", 1.0, 64, 64).context
    assert plain.shape == weighted.shape == (1, 77, 32)
    assert (plain - weighted).abs().max() > 1e-3
    broken = build_conditioning(model, "a red house BREAK at night", "", 1.0, 64, 64).context
    assert broken.shape[1] == 154


def test_sdxl_conditioning_has_pooled_time_vector(sdxl):
    model = load_model(sdxl)
    cond = build_conditioning(model, "a castle", "", 5.0, 64, 96)
    assert cond.context.shape == (2, 77, 64)  # CLIP-L ‖ bigG widths
    assert cond.y.shape == (2, 32 + 6 * 256)
    assert torch.count_nonzero(cond.context[0]) == 0  # empty negative → zeros, as diffusers does


def test_bad_request_values_are_named(sd1):
    pipeline = Pipeline(load_model(sd1))
    with pytest.raises(InvalidRequestError, match="height 70"):
        pipeline.generate(GenerationRequest(prompt="x", width=64, height=70))
    with pytest.raises(InvalidRequestError, match="strength"):
        pipeline.generate(GenerationRequest(prompt="x", width=64, height=64, steps=2, strength=0.2,
                                            init_image=np.zeros((64, 64, 3), np.uint8)))
    with pytest.raises(InvalidRequestError, match="mask"):
        pipeline.generate(GenerationRequest(prompt="x", width=64, height=64, mask=np.zeros((64, 64), np.uint8)))


def test_cancel_stops_within_one_step(sd1):
    from inference.errors import CancelledError

    pipeline = Pipeline(load_model(sd1))
    calls = []

    def progress(step, total, _):
        calls.append(step)

    with pytest.raises(CancelledError):
        pipeline.generate(GenerationRequest(prompt="x", width=64, height=64, steps=20), progress=progress,
                          should_stop=lambda: len(calls) >= 3)
    assert calls == [1, 2, 3]


@pytest.mark.gpu
def test_cuda_half_matches_cpu_float32(sd1):
    """GPU path agrees with the fp32 CPU path within 6/255 mean (fp16 rounding on random weights)."""
    request = GenerationRequest(prompt="a boat", seed=3, steps=4, width=64, height=64)
    cpu = Pipeline(load_model(sd1)).generate(request).image.astype(int)
    gpu = Pipeline(load_model(sd1, device="cuda", dtype="float16")).generate(request).image.astype(int)
    assert np.abs(cpu - gpu).mean() < 6


def test_standalone_vae_and_taesd_files_load_and_replace_the_models_vae(sd1, tmp_path):
    from inference.formats.safetensors_file import save_tensors
    from inference.loader import load_vae
    from inference.models.taesd import TAESD

    model = load_model(sd1)
    vae_file = tmp_path / "vae.safetensors"
    save_tensors({k: v.contiguous() for k, v in model.vae.state_dict().items()}, vae_file,
                 metadata={"canvasai.norm_groups": "8"})
    torch.manual_seed(0)
    taesd = TAESD()
    taesd_file = tmp_path / "taesd.safetensors"
    save_tensors({k: v.contiguous() for k, v in taesd.state_dict().items()}, taesd_file)

    latents = torch.randn(1, 4, 8, 8)
    loaded_taesd = load_vae(taesd_file)
    assert isinstance(loaded_taesd, TAESD)
    with torch.no_grad():
        assert torch.allclose(loaded_taesd.decode(latents), taesd.decode(latents), atol=1e-5)
    request = GenerationRequest(prompt="a boat", seed=3, steps=2, width=64, height=64)
    with_taesd = Pipeline(load_model(sd1, vae_path=taesd_file)).generate(request).image
    with_own = Pipeline(model).generate(request).image
    assert with_taesd.shape == with_own.shape and not np.array_equal(with_taesd, with_own)
    try:
        loaded_vae = load_vae(vae_file)
    except Exception as exc:  # tiny VAE needs its group count from metadata
        pytest.fail(f"standalone VAE did not load: {exc}")
    with torch.no_grad():
        assert torch.allclose(loaded_vae.decode(latents), model.vae.decode(latents), atol=1e-5)
