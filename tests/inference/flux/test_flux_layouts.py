"""Full-size FLUX.1 dev / schnell / Fill / Kontext transformer layouts, header-only (sparse files,
no weights): the BFL single-file layout (`model.diffusion_model.` keys, as flux1-dev.safetensors)
and the diffusers folder layout both map onto our module with zero missing / unexpected / misshapen
keys, and the parameter counts equal diffusers' FluxTransformer2DModel built on meta with the
released configs."""
from __future__ import annotations

import json

import pytest
import torch
from layouts import write_header_only

from inference.flux.config import FluxConfig
from inference.flux.loader import load_transformer
from inference.flux.transformer import FluxTransformer
from inference.flux.weights import load_transformer_file

DEV = 11_901_408_320
SCHNELL = 11_891_178_560
FILL = DEV + (384 - 64) * 3072  # img_in takes 384 channels: + masked-image latents and the packed mask
# name → (diffusers kwargs of the released transformer/config.json, parameters, file name, variant).
RELEASES = {
    "dev": ({"guidance_embeds": True}, DEV, "flux1-dev.safetensors", "base"),
    "schnell": ({"guidance_embeds": False}, SCHNELL, "flux1-schnell.safetensors", "base"),
    "fill": ({"guidance_embeds": True, "in_channels": 384, "out_channels": 64}, FILL, "flux1-fill-dev.safetensors", "fill"),
    "kontext": ({"guidance_embeds": True}, DEV, "flux1-kontext-dev.safetensors", "kontext"),
}


def _reference(kwargs):
    from diffusers import FluxTransformer2DModel

    with torch.device("meta"):
        return FluxTransformer2DModel(**kwargs)


def _clean(report: dict) -> None:
    assert not report.get("missing_keys") and not report.get("unexpected_keys") and not report.get("shape_mismatches"), report


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_bfl_single_file_layout(tmp_path, release):
    from inference.model_info import read_model_info

    kwargs, count, name, variant = RELEASES[release]
    reference = _reference(kwargs)
    config = FluxConfig.from_diffusers(reference.config)
    with torch.device("meta"):
        ours = FluxTransformer(config)
    tensors = {f"model.diffusion_model.{k}": torch.empty(v.shape, dtype=torch.bfloat16, device="meta")
               for k, v in ours.state_dict().items()}
    path = write_header_only(tmp_path / name, tensors)
    report: dict = {}
    loaded = load_transformer_file(path, device=torch.device("cpu"), dtype=torch.bfloat16, report=report, meta=True)
    _clean(report)
    assert loaded.config == config and len(tensors) == len(loaded.state_dict())
    assert sum(p.numel() for p in loaded.parameters()) == sum(p.numel() for p in reference.parameters()) == count
    info = read_model_info(path)
    assert info.variant == variant and info.parameters["transformer"] == count and info.unet_in_channels == config.in_channels
    if variant == "base":
        assert info.family == f"flux1-{release}"


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_diffusers_folder_layout(tmp_path, release):
    kwargs, count, _, _ = RELEASES[release]
    reference = _reference(kwargs)
    folder = tmp_path / "transformer"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"_class_name": "FluxTransformer2DModel", **dict(reference.config)}))
    write_header_only(folder / "diffusion_pytorch_model.safetensors",
                      {k: torch.empty(v.shape, dtype=torch.bfloat16, device="meta")
                       for k, v in reference.state_dict().items()})
    report: dict = {}
    loaded = load_transformer(folder, torch.bfloat16, report, meta=True)
    _clean(report)
    assert loaded.config == FluxConfig.from_diffusers(reference.config)
    assert sum(p.numel() for p in loaded.parameters()) == count
