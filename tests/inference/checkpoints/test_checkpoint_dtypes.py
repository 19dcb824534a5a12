"""Checkpoints stored in bf16, fp16 and fp8 (`F8_E4M3`, `F8_E5M2`) load upcast to the requested dtype.

Each reduced-precision file is compared with the same values converted to fp32 and saved again:
the loaded weights must be bit-identical and render the same pixels.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import layouts
from inference.formats.safetensors_file import read_header, save_tensors
from inference.loader import load_model
from inference.model_info import read_model_info
from inference.pipeline import GenerationRequest, Pipeline

STORAGE = {"bf16": (torch.bfloat16, torch.bfloat16), "fp16": (torch.float16, torch.float16),
           "f8_e4m3": (torch.float8_e4m3fn, torch.bfloat16), "f8_e5m2": (torch.float8_e5m2, torch.float16)}
CODES = {torch.bfloat16: "BF16", torch.float16: "F16", torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2"}


def _stored(state: dict[str, torch.Tensor], weights: torch.dtype, vectors: torch.dtype) -> dict[str, torch.Tensor]:
    """Matrices and kernels in `weights`, biases and norms in `vectors` (as fp8 checkpoints ship:
    fp8 is only used where there is a lot of it). fp8 needs small values: scale into its range."""
    out = {}
    for key, value in state.items():
        if not value.is_floating_point():
            out[key] = value
        elif value.dim() >= 2:
            out[key] = value.float().clamp(-400, 400).to(weights)
        else:
            out[key] = value.to(vectors)
    return out


@pytest.fixture(scope="module")
def tiny():
    return layouts.tiny_checkpoint(seed=4)


@pytest.mark.parametrize("storage", list(STORAGE))
def test_reduced_precision_file_equals_its_fp32_conversion(tiny, tmp_path, storage):
    state, metadata = tiny
    stored = _stored(state, *STORAGE[storage])
    low = tmp_path / f"tiny-{storage}.safetensors"
    save_tensors(stored, low, metadata=metadata)
    full = tmp_path / "tiny-fp32.safetensors"
    save_tensors({k: v.float() if v.is_floating_point() else v for k, v in stored.items()}, full, metadata=metadata)
    weights_dtype = STORAGE[storage][0]
    codes = {t.dtype for t in read_header(low).tensors.values()}
    assert CODES[weights_dtype] in codes
    assert CODES[weights_dtype] in read_model_info(low).dtypes

    a, b = load_model(low, dtype="float32"), load_model(full, dtype="float32")
    for name, tensor in a.unet.state_dict().items():
        assert tensor.dtype == torch.float32, name
        assert torch.equal(tensor, b.unet.state_dict()[name]), name
    for x, y in zip(a.text_encoders, b.text_encoders):
        for name, tensor in x.model.state_dict().items():
            assert torch.equal(tensor, y.model.state_dict()[name]), name
    request = GenerationRequest(prompt="a red boat", seed=5, steps=3, width=64, height=64, guidance=5.0)
    first, second = Pipeline(a).generate(request).image, Pipeline(b).generate(request).image
    assert first.std() > 5
    assert np.array_equal(first, second)


def test_fp8_file_loads_into_bfloat16_too(tiny, tmp_path):
    state, metadata = tiny
    low = tmp_path / "tiny-f8.safetensors"
    save_tensors(_stored(state, torch.float8_e4m3fn, torch.float16), low, metadata=metadata)
    model = load_model(low, dtype="bfloat16")
    weight = model.unet.state_dict()["input_blocks.0.0.weight"]
    assert weight.dtype == torch.bfloat16
    expected = state["model.diffusion_model.input_blocks.0.0.weight"].float().to(torch.float8_e4m3fn).to(torch.bfloat16)
    assert torch.equal(weight, expected)
