"""fp8 (e4m3fn) FLUX transformer files (`flux1-dev-fp8.safetensors`, ComfyUI's "scaled fp8"): the
matrices stay fp8 in memory and are widened per layer at run time. Against the fp32 file made of
the same fp8 values the output is equal (tolerance 1e-6, measured 0: fp8 → fp32 is exact)."""
from __future__ import annotations

import pytest
import torch

from inference.flux.config import FluxConfig
from inference.flux.loader import load_bfl_transformer
from inference.flux.quant import CompressedLinear
from inference.flux.sampling import image_ids, text_ids
from inference.flux.transformer import FluxTransformer
from inference.formats.safetensors_file import save_tensors

CONFIG = FluxConfig(in_channels=64, out_channels=64, vec_in_dim=24, context_in_dim=32, hidden_size=32,
                    mlp_ratio=4.0, num_heads=2, depth=2, depth_single_blocks=2, axes_dim=(4, 6, 6),
                    guidance_embed=True)
AXES = {"canvasai.rope_axes": "4,6,6"}


def _state(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = FluxTransformer(CONFIG)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(0.1 * torch.randn_like(param))
    return {k: v.contiguous() for k, v in model.state_dict().items()}


def _inputs():
    g = torch.Generator().manual_seed(2)
    return (torch.randn(1, 12, 64, generator=g), image_ids(3, 4), torch.randn(1, 6, 32, generator=g), text_ids(6),
            torch.tensor([0.4]), torch.randn(1, 24, generator=g), torch.tensor([3.5]))


def _run(path, dtype=torch.float32):
    with torch.no_grad():
        return load_bfl_transformer(path, dtype=dtype)(*_inputs())


@pytest.mark.parametrize("prefix", ["", "model.diffusion_model."])
def test_fp8_transformer_equals_the_fp32_file_of_its_values(tmp_path, prefix):
    fp8 = {k: v.to(torch.float8_e4m3fn) if v.dim() == 2 else v for k, v in _state().items()}
    save_tensors({prefix + k: v for k, v in fp8.items()}, tmp_path / "flux1-dev-fp8.safetensors", metadata=AXES)
    save_tensors({prefix + k: v.float() for k, v in fp8.items()}, tmp_path / "widened.safetensors", metadata=AXES)
    model = load_bfl_transformer(tmp_path / "flux1-dev-fp8.safetensors", dtype=torch.float32)
    layer = model.single_blocks[0].linear1
    assert isinstance(layer, CompressedLinear) and layer.qweight.dtype == torch.float8_e4m3fn
    assert isinstance(model.img_in, CompressedLinear) and model.dtype == torch.float32
    fp8_bytes = sum(b.numel() for name, b in model.named_buffers() if name.endswith("qweight"))
    assert fp8_bytes == sum(v.numel() for v in fp8.values() if v.dim() == 2)  # one byte a weight, resident
    got, expected = _run(tmp_path / "flux1-dev-fp8.safetensors"), _run(tmp_path / "widened.safetensors")
    assert expected.abs().mean() > 0.05 and (got - expected).abs().max() <= 1e-6
    # bf16 compute: widened per call to bf16 = the bf16 model of the same values.
    half = _run(tmp_path / "flux1-dev-fp8.safetensors", torch.bfloat16)
    assert half.dtype == torch.bfloat16
    assert torch.equal(half, _run(tmp_path / "widened.safetensors", torch.bfloat16))


def test_scaled_fp8_multiplies_the_per_tensor_scale(tmp_path):
    """ComfyUI's `…fp8_scaled` files: weight = fp8 · `scale_weight`, plus `scale_input` (for fp8
    matmuls) and a `scaled_fp8` marker, both unused here."""
    state = _state(1)
    scaled, widened = {}, {}
    for key, value in state.items():
        if value.dim() == 2:
            scale = value.abs().max() / 448
            q = (value / scale).to(torch.float8_e4m3fn)
            scaled[key], widened[key] = q, q.float() * scale
            scaled[key[: -len("weight")] + "scale_weight"] = scale.reshape(1)
            scaled[key[: -len("weight")] + "scale_input"] = torch.ones(1)
        else:
            scaled[key] = widened[key] = value
    scaled["scaled_fp8"] = torch.zeros(2, dtype=torch.float8_e4m3fn)
    save_tensors(scaled, tmp_path / "flux1-dev-fp8_scaled.safetensors", metadata=AXES)
    save_tensors(widened, tmp_path / "widened.safetensors", metadata=AXES)
    got, expected = _run(tmp_path / "flux1-dev-fp8_scaled.safetensors"), _run(tmp_path / "widened.safetensors")
    assert (got - expected).abs().max() <= 1e-6


def test_fp8_file_detection(tmp_path):
    from inference.model_info import read_model_info

    fp8 = {f"model.diffusion_model.{k}": v.to(torch.float8_e4m3fn) if v.dim() == 2 else v for k, v in _state().items()}
    save_tensors(fp8, tmp_path / "flux1-kontext-dev-fp8.safetensors", metadata=AXES)
    info = read_model_info(tmp_path / "flux1-kontext-dev-fp8.safetensors")
    assert info.variant == "kontext" and "F8_E4M3" in info.dtypes and info.format == "single_file"
