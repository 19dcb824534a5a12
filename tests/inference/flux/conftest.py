"""FLUX.1: transformer, T5, flow sampling and pipelines against diffusers.

Shared helpers (tiny_models, layouts, lora_helpers, flux_models) live in tests/ and are importable
from here; the root conftest marks every test with its package (`-m inference`, `-m editor`…)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest


def build_flux_variant(root: Path, variant: str, seed: int = 0) -> Path:
    """A tiny FLUX.1 Fill or Kontext folder: a dev-like `build_flux` folder whose model_index.json
    names FluxFillPipeline / FluxKontextPipeline; Fill also gets a fresh random transformer with
    FLUX Fill's input (64 noisy + 64 masked-image + 256 mask channels → 384) and 64 outputs."""
    import shutil

    import torch
    from diffusers import FluxTransformer2DModel
    from flux_models import CLIP_WIDTH, T5_WIDTH, _randomise, build_flux

    built = build_flux(root / f"base-{variant}", dev=True, seed=seed)
    folder = root / f"flux-{variant}-{seed}"
    shutil.move(str(built), folder)
    index_path = folder / "model_index.json"
    index = json.loads(index_path.read_text())
    index["_class_name"] = {"fill": "FluxFillPipeline", "kontext": "FluxKontextPipeline"}[variant]
    if variant == "fill":  # FluxFillPipeline has no IP-adapter components (FluxPipeline saves them as null)
        index.pop("image_encoder", None), index.pop("feature_extractor", None)
    index_path.write_text(json.dumps(index))
    if variant == "fill":
        torch.manual_seed(seed)
        transformer = FluxTransformer2DModel(
            patch_size=1, in_channels=384, out_channels=64, num_layers=2, num_single_layers=2, attention_head_dim=16,
            num_attention_heads=2, joint_attention_dim=T5_WIDTH, pooled_projection_dim=CLIP_WIDTH,
            guidance_embeds=True, axes_dims_rope=(4, 6, 6))
        _randomise(transformer, seed * 10 + 7)
        shutil.rmtree(folder / "transformer")
        transformer.save_pretrained(folder / "transformer")
    return folder


@pytest.fixture(scope="session")
def flux_fill_folder(tmp_path_factory) -> Path:
    return build_flux_variant(tmp_path_factory.mktemp("flux_fill"), "fill", seed=2)


@pytest.fixture(scope="session")
def flux_kontext_folder(tmp_path_factory) -> Path:
    return build_flux_variant(tmp_path_factory.mktemp("flux_kontext"), "kontext", seed=3)
