"""LCM-distilled UNets (`time_cond_proj_dim`: SimianLuo/LCM_Dreamshaper_v7, latent-consistency/lcm-sdxl).

Their UNet takes the guidance scale as an embedding (w = guidance − 1) added to the timestep
features, and the pipeline runs no CFG pass. A tiny SD1-style LCM folder must render what
diffusers' `LatentConsistencyModelPipeline` renders at 4 steps.
"""
from __future__ import annotations

import pytest
import torch

from inference.conditioning import guidance_embedding
from inference.loader import inspect_model, load_model
from inference.model_info import read_model_info
from inference.pipeline import GenerationRequest, Pipeline
from tiny_models import build_sd, max_difference_vs_diffusers


@pytest.fixture(scope="module")
def lcm_folder(tmp_path_factory):
    return build_sd(tmp_path_factory.mktemp("lcm"), kind="sd1", time_cond_proj_dim=32)


@pytest.mark.parametrize("guidance,dim", [(8.5, 256), (1.0, 32), (3.0, 7)])
def test_guidance_embedding_is_diffusers(guidance, dim):
    from diffusers import LatentConsistencyModelPipeline

    expected = LatentConsistencyModelPipeline.get_guidance_scale_embedding(
        None, torch.tensor([guidance - 1.0]), embedding_dim=dim)
    torch.testing.assert_close(guidance_embedding(guidance, dim), expected, rtol=0, atol=0)


@pytest.mark.parametrize("guidance,seed", [(8.0, 5), (2.0, 9)])
def test_lcm_unet_renders_like_latent_consistency_pipeline(lcm_folder, guidance, seed):
    from diffusers import LatentConsistencyModelPipeline

    model = load_model(lcm_folder)
    assert model.unet.config.time_cond_proj_dim == 32
    pipe = LatentConsistencyModelPipeline.from_pretrained(lcm_folder)
    request = GenerationRequest(prompt="a lighthouse on a cliff at sunset", seed=seed, steps=4, sampler="lcm",
                                guidance=guidance, width=64, height=64)
    difference = max_difference_vs_diffusers(pipe, Pipeline(model), request)
    print(f"LCM guidance {guidance}: max difference {difference}/255")
    assert difference <= 2


def test_guidance_changes_an_lcm_image(lcm_folder):
    """The embedding is really in play (the test above would pass with it ignored otherwise)."""
    pipeline = Pipeline(load_model(lcm_folder))
    request = GenerationRequest(prompt="a lighthouse", seed=5, steps=4, sampler="lcm", guidance=8.0, width=64, height=64)
    first = pipeline.generate(request).image.astype(int)
    request.guidance = 1.0
    assert abs(pipeline.generate(request).image - first).max() > 10


def test_lcm_folder_is_described_with_its_preset(lcm_folder):
    info = read_model_info(lcm_folder)
    assert (info.family, info.prediction_type, info.native_resolution) == ("sd1", "epsilon", 64)
    assert (info.preset.sampler, info.preset.steps, info.preset.guidance) == ("lcm", 4, 8.0)
    report = inspect_model(lcm_folder)
    assert report["unet_config"]["time_cond_proj_dim"] == 32
    assert report["missing_keys"] == report["unexpected_keys"] == []


@pytest.mark.parametrize("kind,expected", [("sd15", 859_602_884), ("sdxl", 2_567_545_604)])
def test_full_size_lcm_folders_inspect_cleanly(tmp_path, kind, expected):
    """LCM_Dreamshaper_v7 (SD 1.5) and latent-consistency/lcm-sdxl: the published UNet configs plus
    `time_cond_proj_dim: 256`, i.e. one more 256→320 projection than their base models."""
    import dataclasses

    import layouts

    layout = layouts.full_layout(kind)
    unet = layouts.meta_unet(dict(layout.unet.config, time_cond_proj_dim=256))
    assert layouts.count(unet) == expected == layouts.UNET_PARAMETERS[kind] + 256 * 320
    folder = layouts.write_diffusers_folder(tmp_path / kind, dataclasses.replace(layout, unet=unet))
    report = inspect_model(folder)
    assert report["missing_keys"] == report["unexpected_keys"] == report["shape_mismatches"] == []
    assert report["parameters"]["unet"] == expected
    assert report["unet_config"]["time_cond_proj_dim"] == 256
    info = read_model_info(folder)
    assert (info.preset.sampler, info.preset.steps, info.preset.guidance) == ("lcm", 4, 8.0)
    assert info.native_resolution == (512 if kind == "sd15" else 1024)
