"""Playground v2.5: an SDXL whose VAE latents are normalised per channel (`latents_mean`/`latents_std`
in the folder's vae/config.json, `edm_mean`/`edm_std` tensors in single files, scaling factor 0.5).

The normalisation must apply in both directions, as diffusers' SDXL pipelines do: before decoding
(txt2img) and after encoding (img2img). The EDM scheduler is another piece of work; these checks
sample with Euler so that they isolate the latent handling.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from inference.formats.safetensors_file import save_tensors
from inference.loader import inspect_model, load_model
from inference.model_info import read_model_info
from inference.pipeline import GenerationRequest, Pipeline
from test_single_file_oracle import file_metadata, single_file_state
from tiny_models import build_sdxl, max_difference_vs_diffusers

# playgroundai/playground-v2.5-1024px-aesthetic vae/config.json
MEAN = [-1.6574, 1.886, -1.383, 2.5155]
STD = [8.4927, 5.9022, 6.5498, 5.2299]
PLAYGROUND_VAE = {"latents_mean": MEAN, "latents_std": STD, "scaling_factor": 0.5}


@pytest.fixture(scope="module")
def playground(tmp_path_factory):
    root = tmp_path_factory.mktemp("playground")
    folder = build_sdxl(root, vae_overrides=PLAYGROUND_VAE, name="playground-tiny")
    model = load_model(folder)
    path = root / "playground-v2.5-tiny.safetensors"
    markers = {"edm_mean": torch.tensor(MEAN), "edm_std": torch.tensor(STD)}
    save_tensors({**single_file_state(model, "sdxl"), **markers}, path, metadata=file_metadata(folder, "sdxl"))
    return folder, model, path


def _image(seed=3):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:64, 0:64]
    base = np.stack([x * 4, y * 4, (x + y) * 2], axis=-1).astype(np.float64)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


def test_txt2img_decodes_with_the_latent_statistics_like_diffusers(playground):
    import diffusers

    folder, model, _ = playground
    assert model.vae.config.latents_mean == tuple(MEAN) and model.vae.config.scaling_factor == 0.5
    pipe = diffusers.StableDiffusionXLPipeline.from_pretrained(folder)
    request = GenerationRequest(prompt="a lighthouse on a cliff", negative_prompt="blurry", seed=6, steps=4,
                                sampler="euler", guidance=5.0, width=64, height=64)
    difference = max_difference_vs_diffusers(pipe, Pipeline(model), request)
    print(f"playground txt2img: max difference {difference}/255")
    assert difference <= 2


def test_img2img_encodes_with_the_latent_statistics_like_diffusers(playground):
    import diffusers
    from PIL import Image

    folder, model, _ = playground
    pipe = diffusers.StableDiffusionXLImg2ImgPipeline.from_pretrained(folder)
    image = _image()
    request = GenerationRequest(prompt="a lighthouse on a cliff", negative_prompt="blurry", seed=6, steps=6,
                                sampler="euler", guidance=5.0, width=64, height=64, strength=0.5, init_image=image)
    difference = max_difference_vs_diffusers(pipe, Pipeline(model), request, image=Image.fromarray(image),
                                             strength=0.5)
    print(f"playground img2img: max difference {difference}/255")
    assert difference <= 2


def test_normalisation_round_trips_and_matters(playground):
    _, model, _ = playground
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * 5
    latents = model.vae.to_model_latents(z)
    expected = (z - torch.tensor(MEAN).view(1, 4, 1, 1)) * 0.5 / torch.tensor(STD).view(1, 4, 1, 1)
    torch.testing.assert_close(latents, expected)
    torch.testing.assert_close(model.vae.from_model_latents(latents), z)


def test_single_file_edm_markers_give_the_same_vae_as_diffusers_reads(playground):
    from diffusers.loaders.single_file_utils import create_vae_diffusers_config_from_ldm

    import layouts

    _, model, path = playground
    loaded = load_model(path)
    config = loaded.vae.config
    assert config.scaling_factor == 0.5
    np.testing.assert_allclose(config.latents_mean, MEAN, rtol=1e-6)
    np.testing.assert_allclose(config.latents_std, STD, rtol=1e-6)
    checkpoint = {"edm_mean": torch.tensor(MEAN), "edm_std": torch.tensor(STD)}
    theirs = create_vae_diffusers_config_from_ldm(layouts.LDM_CONFIGS["sdxl"], checkpoint)
    assert theirs["scaling_factor"] == config.scaling_factor
    np.testing.assert_allclose(np.asarray(theirs["latents_mean"]), config.latents_mean, rtol=1e-6)
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(loaded.vae.decode(loaded.vae.from_model_latents(z)),
                               model.vae.decode(model.vae.from_model_latents(z)), rtol=1e-5, atol=1e-5)
    assert loaded.scheduler_config["_class_name"] == "EDMDPMSolverMultistepScheduler"


def test_playground_is_described_with_its_latent_statistics(playground):
    folder, _, path = playground
    for info in (read_model_info(folder), read_model_info(path)):
        assert (info.family, info.latent_scaling_factor) == ("sdxl", 0.5)
        np.testing.assert_allclose(info.latents_mean, MEAN, rtol=1e-6)
        np.testing.assert_allclose(info.latents_std, STD, rtol=1e-6)
    info = read_model_info(path)
    assert info.scheduler_class == "EDMDPMSolverMultistepScheduler"
    assert (info.preset.sampler, info.preset.guidance) == ("dpmpp_2m_karras", 3.0)
    report = inspect_model(path)
    assert report["markers"] == ["edm_mean", "edm_std"] and report["unexpected_keys"] == []


# ----------------------------------------------------------------------------- EDM sampling
@pytest.mark.parametrize("sampler,scheduler_class", [("dpmpp_2m_karras", "EDMDPMSolverMultistepScheduler"),
                                                     ("euler", "EDMEulerScheduler")])
def test_single_file_samples_with_edm_like_diffusers(playground, sampler, scheduler_class):
    """The single file's implied scheduler (EDM, σ 0.002…80, σ_data 0.5) against diffusers' EDM
    schedulers from Playground's published scheduler config, on the folder the file came from."""
    import diffusers

    from inference.registry import PLAYGROUND_SCHEDULER

    folder, _, path = playground
    pipe = diffusers.StableDiffusionXLPipeline.from_pretrained(folder)
    config = {k: v for k, v in PLAYGROUND_SCHEDULER.items() if k != "_class_name"}
    pipe.scheduler = getattr(diffusers, scheduler_class).from_config(config)
    request = GenerationRequest(prompt="a lighthouse on a cliff", negative_prompt="blurry", seed=6, steps=6,
                                sampler=sampler, guidance=3.0, width=64, height=64)
    difference = max_difference_vs_diffusers(pipe, Pipeline(load_model(path)), request)
    print(f"playground EDM {sampler}: max difference {difference}/255")
    assert difference <= 2
