"""FLUX.1 Kontext against diffusers' FluxKontextPipeline on a tiny random-weight Kontext folder (a
dev-shaped transformer, model_index FluxKontextPipeline; fp32, CPU), within 2/255 per channel.

diffusers rescales the *output* size to `max_area` (default 1 MP) keeping the aspect ratio; our
engine renders the request's size, so the oracle gets max_area = width × height (which keeps it).
The reference is resized as diffusers does: to the nearest preferred Kontext resolution
(`_auto_resize`, both engines' default; one case runs it, ~1 MP of reference) or, with it off in
both, only rounded down to a multiple of 16 (PIL Lanczos)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from inference.api import GenerationRequest
from inference.errors import InvalidRequestError
from inference.flux.kontext import reference_size
from inference.flux.loader import load_flux_folder
from inference.flux.pipeline import FluxPipeline
from inference.flux.sampling import pack_latents
from inference.requests import validate_request

TOLERANCE = 2  # /255 per channel
LATENT_TOLERANCE = 1e-4
PROMPT = "make the sky a stormy night, oil painting"

_ours: dict = {}


def _pipeline(folder, auto_resize: bool = False) -> FluxPipeline:
    key = (folder, auto_resize)
    if key not in _ours:
        model = _ours[(folder, not auto_resize)].model if (folder, not auto_resize) in _ours else load_flux_folder(folder)
        _ours[key] = FluxPipeline(model, reference_auto_resize=auto_resize)
    return _ours[key]


def _image(width: int, height: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 3, 255 - y * 3, (x + y) * 2], axis=-1).astype(np.float64)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


def _compare(folder, request: GenerationRequest, name: str, auto_resize: bool = False) -> float:
    """Image within TOLERANCE; → the max latent difference (packed, before decoding), which the
    callers hold against the reference's own effect (random weights make that effect small)."""
    import diffusers
    from PIL import Image

    ours = _pipeline(folder, auto_resize)
    pipe = diffusers.FluxKontextPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    image = None if request.reference_image is None else Image.fromarray(request.reference_image)
    packed = pipe(prompt=request.prompt, image=image, height=request.height, width=request.width,
                  max_area=request.width * request.height, _auto_resize=auto_resize,
                  num_inference_steps=request.steps, guidance_scale=request.guidance,
                  max_sequence_length=ours.model.max_sequence_length, output_type="latent",
                  generator=torch.Generator().manual_seed(request.seed)).images
    with torch.no_grad():  # the pipeline's own decode, kept apart to see the latents too
        latents = pipe._unpack_latents(packed, request.height, request.width, pipe.vae_scale_factor)
        latents = latents / pipe.vae.config.scaling_factor + pipe.vae.config.shift_factor
        decoded = pipe.image_processor.postprocess(pipe.vae.decode(latents, return_dict=False)[0], output_type="pil")
    expected = np.asarray(decoded[0]).astype(np.int16)
    result = ours.generate(request, return_latents=True)
    got = result.image.astype(np.int16)
    assert result.info["variant"] == "kontext" and result.info["mode"] == "txt2img"
    assert expected.shape == got.shape == (request.height, request.width, 3)
    assert expected.std() > 5, "degenerate reference image: the comparison would prove nothing"
    difference = int(np.abs(expected - got).max())
    latent_difference = float((pack_latents(result.latents) - packed).abs().max())
    print(f"{name}: max difference {difference}/255, latents {latent_difference:.2e}")
    assert difference <= TOLERANCE, f"max difference {difference}/255"
    # The images alone would let a wrong reference position slip through (2/255 on these weights);
    # the latents, fp32 through the same operations, must agree to rounding.
    assert latent_difference < LATENT_TOLERANCE, f"latents differ by {latent_difference:.2e}"
    return latent_difference


def _reference_effect(folder, request: GenerationRequest) -> float:
    """Max latent change when the reference is replaced by its negative."""
    ours = _pipeline(folder)
    other = GenerationRequest(**{**request.__dict__, "reference_image": 255 - request.reference_image})
    a, b = (ours.generate(r, return_latents=True).latents for r in (request, other))
    effect = float((a - b).abs().max())
    print(f"reference effect on the latents: {effect:.2e}")
    return effect


def test_kontext_edit_matches_diffusers(flux_kontext_folder):
    # Non-square, guidance at Kontext's recommended 2.5.
    request = GenerationRequest(prompt=PROMPT, seed=5, steps=3, guidance=2.5, width=96, height=64,
                                reference_image=_image(96, 64))
    latent_difference = _compare(flux_kontext_folder, request, "kontext edit 96x64")
    assert latent_difference * 50 < _reference_effect(flux_kontext_folder, request)


def test_kontext_reference_of_another_size_matches_diffusers(flux_kontext_folder):
    """A 100×70 reference for a 64×80 output: resized (Lanczos) to 96×64, then 24 tokens beside 20."""
    request = GenerationRequest(prompt=PROMPT, seed=6, steps=2, guidance=2.5, width=64, height=80,
                                reference_image=_image(100, 70, seed=1))
    latent_difference = _compare(flux_kontext_folder, request, "kontext reference 100x70 -> output 64x80")
    assert latent_difference * 50 < _reference_effect(flux_kontext_folder, request)
    assert _pipeline(flux_kontext_folder).generate(request).info["reference_size"] == (96, 64)


@pytest.mark.slow  # ~20 s: a 1 MP reference through both VAEs; the resize itself is checked below, fast
def test_kontext_auto_resized_reference_matches_diffusers(flux_kontext_folder):
    """diffusers' default: the 64×48 reference goes to the preferred resolution of nearest aspect (1184×880)."""
    assert reference_size(64, 48) == (1184, 880)
    request = GenerationRequest(prompt=PROMPT, seed=7, steps=2, guidance=2.5, width=64, height=48,
                                reference_image=_image(64, 48, seed=2))
    _compare(flux_kontext_folder, request, "kontext auto-resized reference", auto_resize=True)


def test_kontext_without_reference_is_txt2img_as_diffusers(flux_kontext_folder):
    request = GenerationRequest(prompt=PROMPT, seed=9, steps=2, guidance=2.5, width=64, height=64)
    _compare(flux_kontext_folder, request, "kontext without reference")


def test_auto_resized_reference_pixels_equal_diffusers_preprocessing():
    """The reference tensor our engine encodes with auto-resize on, against diffusers' image
    processor driven as FluxKontextPipeline.__call__ step 3 drives it."""
    from diffusers.image_processor import VaeImageProcessor
    from diffusers.pipelines.flux.pipeline_flux_kontext import PREFERRED_KONTEXT_RESOLUTIONS
    from PIL import Image

    from inference.flux.kontext import resize_reference
    from inference.images import rgb_to_tensor

    processor = VaeImageProcessor(vae_scale_factor=16, vae_latent_channels=16)
    for rgb in (_image(64, 48, seed=2), _image(100, 70, seed=1), _image(50, 170, seed=4)):
        image = Image.fromarray(rgb)
        height, width = processor.get_default_height_width(image)
        _, width, height = min((abs(width / height - w / h), w, h) for w, h in PREFERRED_KONTEXT_RESOLUTIONS)
        expected = processor.preprocess(processor.resize(image, height, width), height, width)
        ours_size = reference_size(rgb.shape[1], rgb.shape[0])
        assert ours_size == (width, height)
        ours = rgb_to_tensor(resize_reference(rgb, *ours_size), torch.device("cpu"), torch.float32)
        assert torch.equal(ours, expected)


@pytest.mark.parametrize("width,height,expected", [
    (1024, 1024, (1024, 1024)), (1920, 1080, (1392, 752)), (1080, 1920, (752, 1392)), (100, 70, (1248, 832))])
def test_reference_size_follows_diffusers_choice(width, height, expected):
    assert reference_size(width, height) == expected
    assert reference_size(width, height, auto_resize=False) == (width // 16 * 16, height // 16 * 16)


def test_kontext_routing_facts(flux_kontext_folder):
    from inference.flux.info import flux_folder_info, is_flux_folder

    info = flux_folder_info(flux_kontext_folder)
    assert is_flux_folder(flux_kontext_folder)
    assert (info.family, info.variant, info.unet_in_channels) == ("flux1-kontext", "kontext", 64)
    assert (info.preset.steps, info.preset.guidance) == (28, 2.5)
    assert _pipeline(flux_kontext_folder).variant == "kontext"


@pytest.mark.parametrize("reference,needle", [
    (np.zeros((32, 32, 3), np.float32), "float32"), (np.zeros((32, 32), np.uint8), "(32, 32)"),
    (np.zeros((32, 32, 2), np.uint8), "(32, 32, 2)"), ([[1, 2, 3]], "list"),
    (np.zeros((8, 64, 3), np.uint8), "64x8")])
def test_bad_reference_is_one_line_naming_the_value(reference, needle):
    request = GenerationRequest(prompt="x", width=64, height=64, steps=1, reference_image=reference)
    with pytest.raises(InvalidRequestError) as caught:
        validate_request(request)
    message = str(caught.value)
    assert "reference image" in message and needle in message and "\n" not in message


def test_reference_refused_by_non_kontext_models(flux_kontext_folder, tmp_path):
    """A FLUX dev folder (the Kontext folder under FluxPipeline's name) and, through the engine, any model."""
    import json
    import shutil

    from inference.engine import Engine, ModelRef

    dev = tmp_path / "flux-dev"
    shutil.copytree(flux_kontext_folder, dev)
    index = json.loads((dev / "model_index.json").read_text())
    (dev / "model_index.json").write_text(json.dumps({**index, "_class_name": "FluxPipeline"}))
    request = GenerationRequest(prompt="x", width=64, height=64, steps=1, reference_image=_image(64, 64))
    pipe = FluxPipeline(load_flux_folder(dev))
    assert pipe.variant == "base"
    for run in (lambda: pipe.generate(request), lambda: Engine("cpu").generate(ModelRef(dev), request)):
        with pytest.raises(InvalidRequestError) as caught:
            run()
        assert "not a FLUX Kontext model" in str(caught.value) and "\n" not in str(caught.value)


def test_reference_travels_to_farm_workers_and_through_the_engine(flux_kontext_folder):
    from inference.engine import Engine, ModelRef
    from inference.farm.jobs import request_from_dict, request_to_dict

    request = GenerationRequest(prompt=PROMPT, seed=4, steps=1, guidance=2.5, width=64, height=64,
                                reference_image=_image(80, 48))
    back = request_from_dict(request_to_dict(request))
    assert np.array_equal(back.reference_image, request.reference_image)
    assert request_from_dict(request_to_dict(GenerationRequest(prompt="x"))).reference_image is None
    # The engine runs Kontext with diffusers' default auto-resize: 80×48 → 1328×800 (nearest aspect).
    result = Engine("cpu").generate(ModelRef(flux_kontext_folder), request)
    assert result.info["variant"] == "kontext" and result.info["reference_size"] == (1328, 800)
    assert result.image.shape == (64, 64, 3)


def test_reference_encoding_is_cached_for_the_same_canvas(flux_kontext_folder, monkeypatch):
    pipe = FluxPipeline(_pipeline(flux_kontext_folder).model, reference_auto_resize=False)
    calls = []
    encode = pipe.model.vae.encode_moments
    monkeypatch.setattr(pipe.model.vae, "encode_moments", lambda image: calls.append(1) or encode(image))
    canvas = _image(64, 64, seed=5)
    request = GenerationRequest(prompt=PROMPT, seed=1, steps=1, guidance=2.5, width=64, height=64,
                                reference_image=canvas)
    first = pipe.generate(request).image
    again = pipe.generate(GenerationRequest(**{**request.__dict__, "reference_image": canvas.copy()})).image
    assert len(calls) == 1 and np.array_equal(first, again)
    edited = canvas.copy()
    edited[0, 0] ^= 1  # one changed pixel is a new reference
    pipe.generate(GenerationRequest(**{**request.__dict__, "reference_image": edited}))
    assert len(calls) == 2
