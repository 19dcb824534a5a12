"""Seed-exact FLUX.1 generation against diffusers' FluxPipeline / FluxImg2ImgPipeline on tiny
random-weight folders in the real layout (fp32, CPU): every case within 2/255 per channel."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from flux_models import DEV_SCHEDULER, SCHNELL_SCHEDULER, build_flux

from inference.api import GenerationRequest
from inference.errors import InvalidRequestError
from inference.flux.loader import is_flux_folder, load_flux_folder
from inference.flux.pipeline import FluxPipeline
from inference.flux.sampling import flow_schedule
from inference.images import rgb_to_tensor

TOLERANCE = 2  # /255 per channel
PROMPT = "a lighthouse on a cliff at sunset, oil painting"
NEGATIVE = "blurry, low quality"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("flux")
    return {"schnell": build_flux(root, dev=False), "dev": build_flux(root, dev=True, seed=1)}


_ours: dict = {}


def _pipeline(folder) -> FluxPipeline:
    if folder not in _ours:
        _ours[folder] = FluxPipeline(load_flux_folder(folder))
    return _ours[folder]


def _test_image(width: int, height: int) -> np.ndarray:
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 3, y * 3, (x + y) * 2], axis=-1).astype(np.float64)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


def _test_mask(width: int, height: int) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    mask[height // 4:3 * height // 4, width // 3:width - 4] = 255
    return mask


def _compare(folder, *, steps: int, guidance: float, seed: int = 7, width: int = 64, height: int = 64,
             strength: float | None = None, inpaint: bool = False, true_cfg: float = 1.0) -> int:
    import diffusers
    from PIL import Image

    ours = _pipeline(folder)
    cls = (diffusers.FluxInpaintPipeline if inpaint else diffusers.FluxPipeline if strength is None
           else diffusers.FluxImg2ImgPipeline)
    reference_pipe = cls.from_pretrained(folder)
    reference_pipe.set_progress_bar_config(disable=True)
    kwargs = dict(prompt=PROMPT, num_inference_steps=steps, guidance_scale=guidance, width=width, height=height,
                  max_sequence_length=ours.model.max_sequence_length, generator=torch.Generator().manual_seed(seed))
    request = GenerationRequest(prompt=PROMPT, seed=seed, steps=steps, guidance=guidance, width=width, height=height)
    if strength is not None:
        image = _test_image(width, height)
        kwargs.update(image=Image.fromarray(image), strength=strength)
        request.init_image, request.strength = image, strength
    if inpaint:
        mask = _test_mask(width, height)
        kwargs.update(mask_image=Image.fromarray(mask))
        request.mask, request.paste_back = mask, False
    if true_cfg > 1:
        kwargs.update(negative_prompt=NEGATIVE, true_cfg_scale=true_cfg)
        request.negative_prompt = NEGATIVE
    reference = np.asarray(reference_pipe(**kwargs).images[0]).astype(np.int16)
    result = ours.generate(request, true_cfg=true_cfg)
    got = result.image.astype(np.int16)
    assert reference.shape == got.shape == (height, width, 3)
    assert reference.std() > 5, "degenerate reference image: the comparison would prove nothing"
    difference = int(np.abs(reference - got).max())
    assert difference <= TOLERANCE, f"max difference {difference}/255"
    return difference


@pytest.mark.parametrize("steps", [1, 4])
def test_schnell_txt2img_matches_diffusers(folders, steps):
    _compare(folders["schnell"], steps=steps, guidance=0.0)


def test_dev_txt2img_with_guidance_and_shift_matches_diffusers(folders):
    # Non-square, so rows and columns of the position ids cannot be swapped unnoticed.
    _compare(folders["dev"], steps=3, guidance=4.0, width=96, height=64)


def test_true_cfg_with_negative_prompt_matches_diffusers(folders):
    _compare(folders["dev"], steps=3, guidance=3.5, true_cfg=2.5, seed=9)


def test_dev_guidance_changes_the_image(folders):
    pipe = _pipeline(folders["dev"])
    a = pipe.generate(GenerationRequest(prompt=PROMPT, seed=2, steps=2, guidance=1.0, width=64, height=64)).image
    b = pipe.generate(GenerationRequest(prompt=PROMPT, seed=2, steps=2, guidance=6.0, width=64, height=64)).image
    assert np.abs(a.astype(int) - b).mean() > 1.0


def test_img2img_matches_diffusers(folders):
    _compare(folders["dev"], steps=5, guidance=3.5, strength=0.6, seed=11)


@pytest.mark.parametrize("strength", [1.0, 0.7])
def test_inpaint_matches_diffusers(folders, strength):
    _compare(folders["dev"], steps=4, guidance=3.5, strength=strength, inpaint=True, seed=5, width=96, height=64)


def test_inpaint_paste_back_keeps_outside_pixels_bit_identical(folders):
    image, mask = _test_image(64, 64), _test_mask(64, 64)
    request = GenerationRequest(prompt=PROMPT, seed=3, steps=2, guidance=0.0, width=64, height=64,
                                init_image=image, mask=mask)
    result = _pipeline(folders["schnell"]).generate(request)
    outside = mask == 0
    assert result.info["mode"] == "inpaint"
    assert np.array_equal(result.image[outside], image[outside])
    assert np.abs(result.image[24:40, 30:56].astype(int) - image[24:40, 30:56]).mean() > 10  # it did repaint


def test_inpaint_change_map_frees_cells_by_their_value(folders):
    """A change map of ones frees exactly the mask (same image as none); of zeros, nothing."""
    image, mask = _test_image(64, 64), _test_mask(64, 64)
    pipe = _pipeline(folders["schnell"])

    def run(change):
        request = GenerationRequest(prompt=PROMPT, seed=3, steps=3, guidance=0.0, width=64, height=64,
                                    init_image=image, mask=mask, paste_back=False, change_map=change)
        return pipe.generate(request, return_latents=True)

    plain, ones = run(None), run(np.ones((64, 64), np.float32))
    zeros = run(np.zeros((64, 64), np.float32))
    assert np.array_equal(plain.image, ones.image)
    assert not np.array_equal(plain.image, zeros.image)
    # The zero map ends exactly on the init image's latents (the seed's first draw).
    with torch.no_grad():
        known = pipe._posterior_sample(rgb_to_tensor(image, torch.device("cpu"), torch.float32),
                                       torch.Generator().manual_seed(3))
    assert torch.equal(zeros.latents, known)
    assert (plain.latents - known).abs().amax(dim=1)[0, 2:6, 3:7].min() > 0.05  # the mask area changed


def test_folder_recognised_and_sizes_checked(folders, tmp_path):
    assert is_flux_folder(folders["dev"]) and not is_flux_folder(tmp_path)
    pipe = _pipeline(folders["schnell"])
    assert pipe.model.max_sequence_length == 256 and _pipeline(folders["dev"]).model.max_sequence_length == 512
    with pytest.raises(InvalidRequestError, match="multiple of 16"):
        pipe.generate(GenerationRequest(prompt="x", width=72, height=64, steps=1))


@pytest.mark.parametrize("config,steps,seq_len,strength", [
    (SCHNELL_SCHEDULER, 4, 4096, 1.0), (SCHNELL_SCHEDULER, 1, 16, 1.0),
    (DEV_SCHEDULER, 28, 4096, 1.0), (DEV_SCHEDULER, 20, 1024, 1.0), (DEV_SCHEDULER, 7, 24, 1.0),
    (DEV_SCHEDULER, 10, 1024, 0.55), (SCHNELL_SCHEDULER, 4, 256, 0.3),
    ({**SCHNELL_SCHEDULER, "shift": 3.0}, 12, 1024, 1.0)])
def test_flow_schedule_equals_diffusers_scheduler(config, steps, seq_len, strength):
    """Bit-equal σ and timesteps to FlowMatchEulerDiscreteScheduler as Flux(Img2Img)Pipeline sets it."""
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    scheduler = FlowMatchEulerDiscreteScheduler(**config)
    mu = calculate_shift(seq_len, config["base_image_seq_len"], config["max_image_seq_len"], config["base_shift"],
                         config["max_shift"])
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
    ours = flow_schedule(config, steps, seq_len, strength=strength)
    assert torch.equal(ours.sigmas, scheduler.sigmas) and torch.equal(ours.timesteps, scheduler.timesteps)
    expected_start = int(max(steps - min(steps * strength, steps), 0))
    assert ours.start == expected_start and ours.num_steps == steps - expected_start


def test_folder_info_and_inspection_without_weights(folders):
    from inference.flux.info import flux_folder_info

    info = flux_folder_info(folders["dev"])
    assert (info.family, info.preset.steps, info.preset.guidance, info.latent_channels) == ("flux1-dev", 28, 3.5, 16)
    assert flux_folder_info(folders["schnell"]).preset.steps == 4
    model = _pipeline(folders["dev"]).model
    assert info.parameters["transformer"] == sum(p.numel() for p in model.transformer.parameters())
    assert info.parameters["text_encoder_2"] == sum(p.numel() for p in model.t5.parameters())
    meta = load_flux_folder(folders["dev"], meta=True)
    assert meta.transformer.img_in.weight.device.type == "meta"
    assert meta.report["missing_keys"] == [] and meta.report["unexpected_keys"] == []


def test_progress_previews_and_cancel(folders):
    from inference.errors import CancelledError

    pipe = _pipeline(folders["schnell"])
    seen = []
    request = GenerationRequest(prompt=PROMPT, seed=1, steps=3, guidance=0.0, width=64, height=96)
    pipe.generate(request, progress=lambda i, n, latents: seen.append((i, n, tuple(latents.shape))))
    assert seen == [(1, 3, (1, 16, 12, 8)), (2, 3, (1, 16, 12, 8)), (3, 3, (1, 16, 12, 8))]
    calls = []
    with pytest.raises(CancelledError):
        pipe.generate(request, progress=lambda *a: calls.append(a), should_stop=lambda: len(calls) >= 1)
    assert len(calls) == 1


def test_bfl_transformer_file_replaces_the_folders(folders, tmp_path, monkeypatch):
    """A BFL single-file transformer on top of a folder's VAE and text encoders: same image."""
    from inference.flux.info import is_bfl_transformer_file
    from inference.formats.safetensors_file import save_tensors

    folder = folders["dev"]
    model = _pipeline(folder).model
    path = tmp_path / "flux1-tiny.safetensors"
    save_tensors({f"model.diffusion_model.{k}": v for k, v in model.transformer.state_dict().items()}, path)
    assert is_bfl_transformer_file(path) and not is_bfl_transformer_file(folder / "vae" / "diffusion_pytorch_model.safetensors")
    from inference.flux import loader

    def refuse(*args, **kwargs):
        raise AssertionError("the folder's transformer was read")

    monkeypatch.setattr(loader, "load_transformer", refuse)
    swapped = load_flux_folder(folder, transformer_path=path)
    request = GenerationRequest(prompt=PROMPT, seed=4, steps=2, guidance=3.5, width=64, height=64)
    assert np.array_equal(FluxPipeline(swapped).generate(request).image, _pipeline(folder).generate(request).image)
