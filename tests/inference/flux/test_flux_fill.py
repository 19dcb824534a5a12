"""FLUX.1 Fill against diffusers' FluxFillPipeline on a tiny random-weight Fill folder (384-channel
transformer input, fp32, CPU): inpaint and outpaint within 2/255 per channel on the raw output
(paste_back=False); paste-back, routing facts and one-line refusals separately."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from inference.api import GenerationRequest
from inference.errors import InvalidRequestError
from inference.flux.fill import fold_mask
from inference.flux.loader import load_flux_folder
from inference.flux.pipeline import FluxPipeline
from inference.flux.sampling import pack_latents
from inference.outpaint import outpaint_request

TOLERANCE = 2  # /255 per channel
LATENT_TOLERANCE = 1e-4  # fp32 through the same operations: rounding only
PROMPT = "a lighthouse on a cliff at sunset, oil painting"

_ours: dict = {}


def _pipeline(folder) -> FluxPipeline:
    if folder not in _ours:
        _ours[folder] = FluxPipeline(load_flux_folder(folder))
    return _ours[folder]


def _image(width: int, height: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 3, y * 3, (x + y) * 2], axis=-1).astype(np.float64)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


def _mask(width: int, height: int) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    mask[height // 4:3 * height // 4, width // 3:width - 4] = 255
    return mask


def _compare(folder, request: GenerationRequest, name: str) -> float:
    """Image within TOLERANCE and latents to rounding; → the max latent difference."""
    import diffusers
    from PIL import Image

    ours = _pipeline(folder)
    pipe = diffusers.FluxFillPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    packed = pipe(prompt=request.prompt, image=Image.fromarray(request.init_image),
                  mask_image=Image.fromarray(request.mask), height=request.height, width=request.width,
                  strength=request.strength, num_inference_steps=request.steps, guidance_scale=request.guidance,
                  max_sequence_length=ours.model.max_sequence_length, output_type="latent",
                  generator=torch.Generator().manual_seed(request.seed)).images
    with torch.no_grad():  # the pipeline's own decode, kept apart to see the latents too
        latents = pipe._unpack_latents(packed, request.height, request.width, pipe.vae_scale_factor)
        latents = latents / pipe.vae.config.scaling_factor + pipe.vae.config.shift_factor
        decoded = pipe.image_processor.postprocess(pipe.vae.decode(latents, return_dict=False)[0], output_type="pil")
    reference = np.asarray(decoded[0]).astype(np.int16)
    result = ours.generate(request, return_latents=True)
    got = result.image.astype(np.int16)
    assert result.info["variant"] == "fill" and result.info["mode"] == "inpaint"
    assert reference.shape == got.shape == (request.height, request.width, 3)
    assert reference.std() > 5, "degenerate reference image: the comparison would prove nothing"
    difference = int(np.abs(reference - got).max())
    latent_difference = float((pack_latents(result.latents) - packed).abs().max())
    print(f"{name}: max difference {difference}/255, latents {latent_difference:.2e}")
    assert difference <= TOLERANCE, f"max difference {difference}/255"
    assert latent_difference < LATENT_TOLERANCE, f"latents differ by {latent_difference:.2e}"
    return latent_difference


def _conditioning_effect(folder, request: GenerationRequest) -> float:
    """Max latent change when the init image (at strength 1 seen only through Fill's masked-image
    conditioning) is replaced by its negative."""
    ours = _pipeline(folder)
    other = GenerationRequest(**{**request.__dict__, "init_image": 255 - request.init_image})
    a, b = (ours.generate(r, return_latents=True).latents for r in (request, other))
    effect = float((a - b).abs().max())
    print(f"conditioning effect on the latents: {effect:.2e}")
    return effect


@pytest.mark.parametrize("strength", [1.0, 0.7])
def test_fill_inpaint_matches_diffusers(flux_fill_folder, strength):
    # Non-square, guidance at Fill's recommended 30: rows/columns and the guidance input both count.
    request = GenerationRequest(prompt=PROMPT, seed=5, steps=3, guidance=30.0, width=96, height=64,
                                init_image=_image(96, 64), mask=_mask(96, 64), strength=strength, paste_back=False)
    latent_difference = _compare(flux_fill_folder, request, f"fill inpaint strength {strength}")
    if strength == 1.0:
        assert latent_difference * 50 < _conditioning_effect(flux_fill_folder, request)


def test_fill_outpaint_matches_diffusers(flux_fill_folder):
    """The editor's outpaint request (edge pre-fill, strength 0.75, soft-seam change map) on a
    larger canvas: Fill ignores the change map (no latent blending), as diffusers has none."""
    base = GenerationRequest(prompt=PROMPT, seed=8, steps=3, guidance=30.0, paste_back=False)
    request = outpaint_request(base, _image(48, 48, seed=4), left=16, top=0, right=32, bottom=16)
    assert (request.width, request.height) == (96, 64) and request.change_map is not None
    _compare(flux_fill_folder, request, "fill outpaint")
    assert "ignored" in _pipeline(flux_fill_folder).generate(request).info["change_map"]


def test_fill_paste_back_keeps_outside_pixels_bit_identical(flux_fill_folder):
    image, mask = _image(64, 64), _mask(64, 64)
    request = GenerationRequest(prompt=PROMPT, seed=3, steps=2, guidance=30.0, width=64, height=64,
                                init_image=image, mask=mask)
    pipe = _pipeline(flux_fill_folder)
    pasted = pipe.generate(request).image
    raw = pipe.generate(GenerationRequest(**{**request.__dict__, "paste_back": False})).image
    outside = mask == 0
    assert np.array_equal(pasted[outside], image[outside])
    assert not np.array_equal(raw[outside], image[outside])  # the raw output does differ there
    inner = slice(24, 40), slice(30, 56)  # inside the mask: repainted
    assert np.abs(pasted[inner].astype(int) - image[inner]).mean() > 10


def test_fill_mask_folding_equals_diffusers():
    """The 8×8 fold of the full-resolution mask into latent channels, against FluxFillPipeline's own code."""
    from diffusers import FluxFillPipeline

    mask = (torch.rand(1, 1, 32, 48, generator=torch.Generator().manual_seed(0)) > 0.5).float()

    class Shim:  # prepare_mask_latents' packing path, given latents already (no VAE)
        vae_scale_factor = 8
        _pack_latents = staticmethod(FluxFillPipeline._pack_latents)

        class vae:
            class config:
                shift_factor, scaling_factor = 0.0, 1.0

    latents = torch.zeros(1, 16, 4, 6)
    expected, _ = FluxFillPipeline.prepare_mask_latents(Shim(), mask, latents, 1, 16, 1, 32, 48, torch.float32,
                                                        torch.device("cpu"), None)
    assert torch.equal(pack_latents(fold_mask(mask, 8)), expected)


def test_fill_routing_facts_and_refusals(flux_fill_folder):
    from inference.flux.info import flux_folder_info, is_flux_folder

    info = flux_folder_info(flux_fill_folder)
    assert is_flux_folder(flux_fill_folder)
    assert (info.family, info.variant, info.unet_in_channels) == ("flux1-fill", "fill", 384)
    assert (info.preset.steps, info.preset.guidance) == (50, 30.0)
    pipe = _pipeline(flux_fill_folder)
    assert pipe.variant == "fill"
    for request in (GenerationRequest(prompt="x", width=64, height=64, steps=1),
                    GenerationRequest(prompt="x", width=64, height=64, steps=1, init_image=_image(64, 64))):
        with pytest.raises(InvalidRequestError) as caught:
            pipe.generate(request)
        assert "needs an init image and a mask" in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(InvalidRequestError, match="not a FLUX Kontext model"):
        pipe.generate(GenerationRequest(prompt="x", width=64, height=64, steps=1, init_image=_image(64, 64),
                                        mask=_mask(64, 64), reference_image=_image(32, 32)))
