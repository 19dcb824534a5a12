"""Engine outpainting: canvas extension with a pre-fill, and the inpaint request that fills it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference.errors import InvalidRequestError
from inference.outpaint import extend_canvas, outpaint_request, seam_change_map
from inference.pipeline import GenerationRequest

SHIPPED = Path(__file__).resolve().parents[2] / "assets" / "house"


def _image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)


@pytest.mark.parametrize("prefill", ["edge", "telea", "mirror"])
def test_extend_canvas_places_the_image_and_masks_the_new_pixels(prefill):
    image = _image()
    canvas, mask = extend_canvas(image, left=8, top=4, right=16, bottom=4, prefill=prefill)
    assert canvas.shape == (32, 64, 3) and mask.shape == (32, 64)
    assert (canvas[4:28, 8:48] == image).all()
    assert (mask[4:28, 8:48] == 0).all() and (mask == 255).sum() == 32 * 64 - 24 * 40


def test_edge_prefill_repeats_the_edge():
    image = _image()
    canvas, _ = extend_canvas(image, right=8)
    assert (canvas[:, 40:] == image[:, -1:]).all()


@pytest.mark.parametrize("kwargs,message", [
    ({"left": -8}, "non-negative"), ({"right": 2.5}, "whole"), ({"prefill": "noise"}, "pre-fill"),
])
def test_bad_margins_and_prefill_are_refused(kwargs, message):
    with pytest.raises(InvalidRequestError, match=message):
        extend_canvas(_image(), **kwargs)


def test_request_size_must_be_a_multiple_of_eight():
    base = GenerationRequest("a lake", seed=1)
    req = outpaint_request(base, _image(), right=24, bottom=8, strength=0.6)
    assert (req.width, req.height, req.strength) == (64, 32, 0.6) and req.mask.shape == (32, 64)
    with pytest.raises(InvalidRequestError, match="multiples of 8"):
        outpaint_request(base, _image(), right=3)


@pytest.mark.skipif(not (SHIPPED / "full" / "model_index.json").exists(), reason="no shipped house model")
def test_house_outpaint_keeps_the_original_pixels():
    from training.house.scene import render_scene
    from inference.loader import load_model
    from inference.pipeline import Pipeline

    scene, _ = render_scene({"time": "day", "sky": "clear", "terrain": "hills", "water": "sea", "vegetation": "none",
                             "object": "none", "colour": "red"}, 128, 128, 3)
    pipe = Pipeline(load_model(SHIPPED / "full", dtype="float32"))
    out = pipe.generate(outpaint_request(GenerationRequest("green hills and the sea", seed=2, steps=4, guidance=4.0),
                                         scene, right=64)).image
    assert out.shape == (128, 192, 3)
    assert (out[:, :128] == scene).all()
    assert np.abs(out[:, 128:].astype(int) - scene[:, -1:].astype(int)).mean() < 60  # continues, not noise


def test_seam_change_map_ramps_from_the_seam_to_one():
    _, mask = extend_canvas(_image(), right=40)
    change = seam_change_map(mask, ramp_px=20, at_seam=0.25)
    assert change.dtype == np.float32 and change.shape == mask.shape
    assert (change[:, :40] == 0).all()  # kept pixels never change
    assert np.allclose(change[:, 40], 0.25)  # touching the seam
    assert np.allclose(change[:, 50], 0.25 + 0.75 * 10 / 20, atol=0.02)
    assert (change[:, 61:] == 1).all()
    assert (np.diff(change[:, 40:], axis=1) >= 0).all()  # never falls away from the seam
    with pytest.raises(InvalidRequestError, match="seam"):
        seam_change_map(mask, ramp_px=0)


def test_outpaint_request_carries_the_soft_seam_unless_turned_off():
    base = GenerationRequest("a lake", seed=1)
    req = outpaint_request(base, _image(), right=24)
    assert req.change_map is not None and req.change_map.shape == (24, 64)
    assert outpaint_request(base, _image(), right=24, seam_change=None).change_map is None


@pytest.mark.parametrize("change,message", [
    (np.full((24, 64), 1.5, np.float32), "between 0 and 1"),
    (np.full((24, 64), np.nan, np.float32), "between 0 and 1"),
    (np.ones((24, 64), np.uint8), "floats"),
    (np.ones((8, 8), np.float32), "shape"),
])
def test_bad_change_maps_are_refused(change, message):
    from inference.pipeline import validate_request
    req = outpaint_request(GenerationRequest("a lake", seed=1), _image(), right=24)
    req.change_map = change
    with pytest.raises(InvalidRequestError, match=message):
        validate_request(req)
    req.mask = req.init_image = None
    req.change_map = np.ones((24, 64), np.float32)
    with pytest.raises(InvalidRequestError, match="needs a mask"):
        validate_request(req)


@pytest.mark.skipif(not (SHIPPED / "full" / "model_index.json").exists(), reason="no shipped house model")
def test_change_map_of_ones_is_plain_inpainting_and_zeros_keep_the_image():
    from training.house.scene import render_scene
    from inference.loader import load_model
    from inference.pipeline import Pipeline

    scene, _ = render_scene({"time": "day", "sky": "clear", "terrain": "hills", "water": "sea", "vegetation": "none",
                             "object": "none", "colour": "red"}, 128, 128, 3)
    pipe = Pipeline(load_model(SHIPPED / "full", dtype="float32"))
    mask = np.zeros((128, 128), np.uint8)
    mask[32:96, 40:104] = 255
    base = GenerationRequest("a red boat on the sea", seed=4, steps=6, guidance=4.0, width=128, height=128,
                             init_image=scene, mask=mask, paste_back=False)
    plain = pipe.generate(base).image
    ones = pipe.generate(GenerationRequest(**{**base.__dict__, "change_map": np.ones((128, 128), np.float32)})).image
    assert (ones == plain).all()
    # Zero change: the masked area stays on the image's own trajectory and ends on its latents, so
    # the result is the VAE's reconstruction of the scene, not a new boat.
    zeros = pipe.generate(GenerationRequest(**{**base.__dict__, "change_map": np.zeros((128, 128), np.float32)})).image
    inside = mask > 0
    err_zero = np.abs(zeros.astype(int) - scene.astype(int))[inside].mean()
    err_plain = np.abs(plain.astype(int) - scene.astype(int))[inside].mean()
    assert err_zero < 12 and err_zero < 0.5 * err_plain
