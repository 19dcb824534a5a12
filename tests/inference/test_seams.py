"""Seam correction of inpainting: the generated colours meet the kept ones at the mask border."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from training.house.evaluate import seam_band, seam_energy
from inference.images import soft_paste_back
from inference.seams import push_pull, seam_correct


def _scene(h: int = 96, w: int = 96) -> np.ndarray:
    """A gradient sky over flat ground: smooth, with one real edge (the horizon)."""
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 2] = np.linspace(60, 200, h // 2, dtype=np.float32)[:, None, None].astype(np.uint8)
    img[h // 2:] = (90, 150, 60)
    return img


def test_push_pull_fills_holes_from_known_pixels():
    values = np.zeros((40, 40, 3), np.float32)
    weight = np.zeros((40, 40), np.float32)
    values[:, :10] = (10, 20, 30)
    weight[:, :10] = 1
    filled = push_pull(values, weight)
    assert np.allclose(filled, (10, 20, 30), atol=1e-3)  # one known value → it everywhere


def test_seam_correct_removes_a_colour_drift_at_the_border():
    original = _scene()
    mask = np.zeros(original.shape[:2], np.uint8)
    mask[30:70, 30:70] = 255
    drifted = np.clip(original.astype(np.int16) + 35, 0, 255).astype(np.uint8)  # VAE-like colour shift
    plain = soft_paste_back(drifted, original, mask, feather=8, correct_seam=False)
    fixed = soft_paste_back(drifted, original, mask, feather=8, correct_seam=True)
    floor = seam_energy(original, original, mask)
    assert seam_energy(plain, original, mask) > floor + 0.5
    assert seam_energy(fixed, original, mask) < floor + 0.15
    # Just inside the border the corrected pixels match the original closely.
    assert np.abs(fixed[30:70, 31].astype(int) - original[30:70, 31]).max() <= 3
    # Deep inside, the generated colours keep part of their own value (the correction fades).
    assert np.abs(fixed[50, 50].astype(int) - original[50, 50]).max() >= 5


@settings(max_examples=25, deadline=None)
@given(x=st.integers(0, 60), y=st.integers(0, 60), w=st.integers(4, 36), h=st.integers(4, 36),
       shift=st.integers(-60, 60), seed=st.integers(0, 2**16))
def test_paste_back_keeps_outside_and_never_worsens_the_border(x, y, w, h, shift, seed):
    rng = np.random.default_rng(seed)
    original = _scene()
    generated = np.clip(original.astype(np.int16) + shift + rng.integers(-8, 9, original.shape), 0, 255).astype(np.uint8)
    mask = np.zeros(original.shape[:2], np.uint8)
    mask[y:y + h, x:x + w] = 255
    out = soft_paste_back(generated, original, mask)
    assert out.dtype == np.uint8 and out.shape == original.shape
    assert (out[mask == 0] == original[mask == 0]).all()
    band = seam_band(mask) & (mask >= 128)
    before = np.abs(soft_paste_back(generated, original, mask, correct_seam=False)[band].astype(int) - original[band]).mean()
    after = np.abs(out[band].astype(int) - original[band]).mean()
    assert after <= before + 0.5


def test_seam_band_is_three_pixels_wide():
    mask = np.zeros((40, 40), np.uint8)
    mask[10:30, 10:30] = 255
    band = seam_band(mask)
    assert band[20, 9] and band[20, 10] and band[20, 11] and not band[20, 8] and not band[20, 12]
