"""Engine outpainting: canvas extension with a pre-fill, and the inpaint request that fills it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference.errors import InvalidRequestError
from inference.outpaint import extend_canvas, outpaint_request
from inference.pipeline import GenerationRequest

SHIPPED = Path(__file__).resolve().parents[1] / "assets" / "house"


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
    from inference.house.scene import render_scene
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
