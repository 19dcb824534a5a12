"""Seed-exact end-to-end checks against diffusers on tiny random-weight models in real layouts.

For each case our PNG pixels must equal diffusers' `output_type="pil"` output within 2/255 per
channel (float32, CPU), with the diffusers scheduler class that corresponds to the sampler,
configured from the folder's scheduler_config the way `from_config` does.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from inference.loader import load_model
from inference.pipeline import GenerationRequest, Pipeline

from tiny_models import build_sd, build_sdxl

TOLERANCE = 2  # /255 per channel
SIZE = 64
PROMPT = "a lighthouse on a cliff at sunset, oil painting"
NEGATIVE = "blurry, low quality"


def _scheduler(name: str, config, spacing: str | None):
    import diffusers

    overrides = {} if spacing is None else {"timestep_spacing": spacing}
    if name == "euler":
        return diffusers.EulerDiscreteScheduler.from_config(config, **overrides)
    if name == "euler_a":
        return diffusers.EulerAncestralDiscreteScheduler.from_config(config, **overrides)
    if name == "dpmpp_2m_karras":
        return diffusers.DPMSolverMultistepScheduler.from_config(
            config, algorithm_type="dpmsolver++", solver_order=2, use_karras_sigmas=True, **overrides)
    if name == "ddim":
        return diffusers.DDIMScheduler.from_config(config, **overrides)
    if name == "lcm":
        return diffusers.LCMScheduler.from_config(config, **overrides)
    raise AssertionError(name)


@pytest.fixture(scope="session")
def model_root(tmp_path_factory):
    return tmp_path_factory.mktemp("oracle")


@pytest.fixture(scope="session")
def folders(model_root):
    return {}


def _folder(folders, model_root, key):
    if key not in folders:
        kind, channels = key
        folders[key] = (build_sdxl(model_root, in_channels=channels) if kind == "sdxl"
                        else build_sd(model_root, kind=kind, in_channels=channels))
    return folders[key]


_loaded = {}


def _ours(folder):
    if folder not in _loaded:
        _loaded[folder] = Pipeline(load_model(folder))
    return _loaded[folder]


def _reference_pipe(folder, kind, mode, in_channels):
    import diffusers

    if kind == "sdxl":
        cls = {"txt2img": diffusers.StableDiffusionXLPipeline, "img2img": diffusers.StableDiffusionXLImg2ImgPipeline,
               "inpaint": diffusers.StableDiffusionXLInpaintPipeline}[mode]
    else:
        cls = {"txt2img": diffusers.StableDiffusionPipeline, "img2img": diffusers.StableDiffusionImg2ImgPipeline,
               "inpaint": diffusers.StableDiffusionInpaintPipeline,
               "instruct": diffusers.StableDiffusionInstructPix2PixPipeline}[mode]
    pipe = cls.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _test_image(seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    base = np.stack([x * 4, y * 4, (x + y) * 2], axis=-1).astype(np.float64)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


def _test_mask() -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[16:48, 20:52] = 255
    return mask


def _compare(kind, channels, folders, model_root, *, sampler="euler", steps=6, guidance=7.5, spacing=None,
             mode="txt2img", strength=1.0, seed=1234, negative=NEGATIVE):
    from PIL import Image

    folder = _folder(folders, model_root, (kind, channels))
    pipe = _reference_pipe(folder, kind, mode, channels)
    pipe.scheduler = _scheduler(sampler, pipe.scheduler.config, spacing)
    kwargs = dict(prompt=PROMPT, negative_prompt=negative or None, num_inference_steps=steps, guidance_scale=guidance,
                  generator=torch.Generator().manual_seed(seed), output_type="pil")
    request = GenerationRequest(prompt=PROMPT, negative_prompt=negative, seed=seed, steps=steps, sampler=sampler,
                                timestep_spacing=spacing, guidance=guidance, width=SIZE, height=SIZE,
                                strength=strength, paste_back=False)
    if mode == "txt2img":
        kwargs.update(width=SIZE, height=SIZE)
    else:
        image = _test_image()
        kwargs.update(image=Image.fromarray(image))
        if mode == "instruct":
            kwargs.update(image_guidance_scale=1.5)
        else:
            kwargs.update(strength=strength)
        request.init_image = image
        if mode == "inpaint":
            mask = _test_mask()
            kwargs.update(mask_image=Image.fromarray(mask), width=SIZE, height=SIZE)
            request.mask = mask
    reference = np.asarray(pipe(**kwargs).images[0]).astype(np.int16)
    ours = _ours(folder).generate(request).image.astype(np.int16)
    assert reference.shape == ours.shape == (SIZE, SIZE, 3)
    assert reference.std() > 5, "degenerate reference image: the comparison would prove nothing"
    difference = np.abs(reference - ours).max()
    assert difference <= TOLERANCE, f"max difference {difference}/255"
    return ours


@pytest.mark.parametrize("sampler,steps,guidance,spacing", [
    ("euler", 6, 7.5, None),
    ("euler_a", 6, 7.5, None),
    ("dpmpp_2m_karras", 6, 7.5, None),
    ("ddim", 6, 7.5, None),
    ("lcm", 4, 1.0, None),
    ("euler", 1, 0.0, "trailing"),  # one-step turbo: t = 999
])
def test_sd1_txt2img_matches_diffusers(folders, model_root, sampler, steps, guidance, spacing):
    _compare("sd1", 4, folders, model_root, sampler=sampler, steps=steps, guidance=guidance, spacing=spacing)


@pytest.mark.parametrize("sampler", ["euler", "euler_a", "ddim", "dpmpp_2m_karras"])
def test_sd1_img2img_matches_diffusers(folders, model_root, sampler):
    _compare("sd1", 4, folders, model_root, sampler=sampler, steps=8, mode="img2img", strength=0.6)


@pytest.mark.parametrize("channels,sampler,strength", [(4, "euler", 1.0), (4, "euler_a", 0.7), (9, "euler", 1.0),
                                                       (9, "ddim", 1.0)])
def test_sd1_inpaint_matches_diffusers(folders, model_root, channels, sampler, strength):
    _compare("sd1", channels, folders, model_root, sampler=sampler, steps=6, mode="inpaint", strength=strength)


@pytest.mark.parametrize("sampler", ["euler", "ddim", "dpmpp_2m_karras", "euler_a"])
def test_sd2_vprediction_matches_diffusers(folders, model_root, sampler):
    _compare("sd2", 4, folders, model_root, sampler=sampler, steps=5)


def test_sd2_img2img_matches_diffusers(folders, model_root):
    _compare("sd2", 4, folders, model_root, sampler="euler", steps=6, mode="img2img", strength=0.5)


@pytest.mark.parametrize("sampler,negative", [("euler", NEGATIVE), ("euler_a", ""), ("dpmpp_2m_karras", NEGATIVE)])
def test_sdxl_txt2img_matches_diffusers(folders, model_root, sampler, negative):
    _compare("sdxl", 4, folders, model_root, sampler=sampler, steps=5, negative=negative)


def test_sdxl_one_step_turbo_matches_diffusers(folders, model_root):
    _compare("sdxl", 4, folders, model_root, sampler="euler_a", steps=1, guidance=0.0, spacing="trailing")


def test_sdxl_img2img_matches_diffusers(folders, model_root):
    _compare("sdxl", 4, folders, model_root, sampler="euler", steps=6, mode="img2img", strength=0.6)


def test_sdxl_inpaint_matches_diffusers(folders, model_root):
    _compare("sdxl", 4, folders, model_root, sampler="euler", steps=5, mode="inpaint", strength=0.99)


@pytest.mark.parametrize("sampler", ["euler", "euler_a"])
def test_instruct_pix2pix_matches_diffusers(folders, model_root, sampler):
    _compare("sd1", 8, folders, model_root, sampler=sampler, steps=5, mode="instruct")


def test_inpaint_paste_back_keeps_outside_pixels_bit_identical(folders, model_root):
    folder = _folder(folders, model_root, ("sd1", 9))
    image, mask = _test_image(), _test_mask()
    request = GenerationRequest(prompt=PROMPT, seed=7, steps=3, width=SIZE, height=SIZE, init_image=image, mask=mask)
    result = _ours(folder).generate(request).image
    outside = mask == 0
    assert np.array_equal(result[outside], image[outside])
    inside_core = np.zeros_like(mask, bool)
    inside_core[24:40, 28:44] = True
    assert np.abs(result[inside_core].astype(int) - image[inside_core]).mean() > 10  # it did repaint


def test_same_seed_same_image_different_seed_differs(folders, model_root):
    folder = _folder(folders, model_root, ("sd1", 4))
    request = GenerationRequest(prompt=PROMPT, seed=5, steps=3, width=SIZE, height=SIZE, sampler="euler_a")
    first = _ours(folder).generate(request).image
    again = _ours(folder).generate(request).image
    request.seed = 6
    other = _ours(folder).generate(request).image
    assert np.array_equal(first, again)
    assert np.abs(first.astype(int) - other).mean() > 1
