"""SDXL v-prediction / zero-terminal-SNR single files (NoobAI-XL and Illustrious v-pred releases).

Such files carry two top-level marker tensors, `v_pred` and `ztsnr`, and nothing else that says
how they were trained. They must load as v-prediction with a zero-terminal-SNR scheduler
(rescaled betas, trailing spacing) and a preset with guidance_rescale 0.7, and render what
diffusers' `StableDiffusionXLPipeline(..., guidance_rescale=0.7)` renders with that scheduler.
"""
from __future__ import annotations

import pytest
import torch

import layouts
from inference.formats.safetensors_file import save_tensors
from inference.loader import inspect_model, load_model
from inference.model_info import read_model_info
from inference.pipeline import GenerationRequest, Pipeline
from test_single_file_oracle import file_metadata, single_file_state
from tiny_models import build_sdxl, max_difference_vs_diffusers

MARKERS = {"v_pred": torch.tensor([]), "ztsnr": torch.tensor([])}


@pytest.fixture(scope="module")
def vpred_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("vpred")
    folder = build_sdxl(root)
    state = single_file_state(load_model(folder), "sdxl")
    path = root / "noob-vpred-tiny.safetensors"
    save_tensors({**state, **MARKERS}, path, metadata=file_metadata(folder, "sdxl"))
    return folder, path


def test_markers_make_a_zero_snr_v_prediction_model(vpred_file):
    _, path = vpred_file
    model = load_model(path)
    assert model.prediction_type == "v_prediction"
    assert model.scheduler_config["rescale_betas_zero_snr"] is True
    assert model.scheduler_config["timestep_spacing"] == "trailing"
    info = read_model_info(path)
    assert (info.family, info.prediction_type, info.zero_terminal_snr) == ("sdxl", "v_prediction", True)
    assert (info.preset.sampler, info.preset.guidance_rescale) == ("euler", 0.7)
    report = inspect_model(path)
    assert report["markers"] == ["v_pred", "ztsnr"] and report["zero_terminal_snr"] is True
    assert report["prediction_type"] == "v_prediction" and report["unexpected_keys"] == []


def test_zero_snr_vpred_file_renders_like_diffusers_with_rescaled_cfg(vpred_file):
    import diffusers

    folder, path = vpred_file
    pipe = diffusers.StableDiffusionXLPipeline.from_pretrained(folder)
    pipe.scheduler = diffusers.EulerDiscreteScheduler.from_config(
        pipe.scheduler.config, prediction_type="v_prediction", rescale_betas_zero_snr=True,
        timestep_spacing="trailing")
    request = GenerationRequest(prompt="a lighthouse on a cliff at sunset", negative_prompt="blurry", seed=21,
                                steps=5, sampler="euler", guidance=6.0, guidance_rescale=0.7, width=64, height=64)
    difference = max_difference_vs_diffusers(pipe, Pipeline(load_model(path)), request, guidance_rescale=0.7)
    print(f"v-pred ztsnr max difference {difference}/255")
    assert difference <= 2


def test_rescale_is_diffusers_rescale_noise_cfg():
    """Random weights keep the guided and text predictions' stds close, so the image test above
    barely exercises the rescale; check the formula itself on predictions whose stds differ."""
    from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import rescale_noise_cfg

    from inference.pipeline import _rescale_guidance

    generator = torch.Generator().manual_seed(0)
    text = torch.randn(2, 4, 8, 8, generator=generator)
    guided = 3.0 * torch.randn(2, 4, 8, 8, generator=generator) + 0.5
    ours = _rescale_guidance(guided, text, 0.7)
    torch.testing.assert_close(ours, rescale_noise_cfg(guided, text, guidance_rescale=0.7), rtol=1e-6, atol=1e-6)
    assert (ours - guided).abs().max() > 1.0


def test_full_size_vpred_file_inspects_cleanly(tmp_path):
    layout = layouts.full_layout("sdxl")
    markers = {k: torch.empty(0, dtype=torch.float32, device="meta") for k in MARKERS}
    path = layouts.write_header_only(tmp_path / "noobai-xl-vpred-1.0.safetensors", {**layout.tensors, **markers})
    report = inspect_model(path)
    assert (report["family"], report["prediction_type"], report["zero_terminal_snr"]) == ("sdxl", "v_prediction", True)
    assert report["missing_keys"] == report["unexpected_keys"] == report["shape_mismatches"] == []
    assert report["parameters"]["unet"] == 2_567_463_684
    info = read_model_info(path)
    assert (info.prediction_type, info.native_resolution, info.latent_channels) == ("v_prediction", 1024, 4)
    assert info.preset.guidance_rescale == 0.7
