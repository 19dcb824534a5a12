"""Preview → final coherence: the metrics on images with known answers, and a
small run of scripts/measure_coherence.py on the editor's default path with the
house models (so a change that breaks "Generate refines what you saw" fails)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from editor.ai import catalog
from editor.ai.coherence import (BLOB_MIN_AREA, colour_difference, compare, mean_abs_rgb, new_blobs, ssim,
                                 ssim_quarter)

ROOT = Path(__file__).resolve().parents[3]


def scene(seed: int = 0, size: int = 128) -> np.ndarray:
    """A smooth picture with some structure: a gradient sky, a ground band, noise."""
    rng = np.random.default_rng(seed)
    img = np.zeros((size, size, 3), np.float64)
    img[..., 0] = np.linspace(60, 200, size)[:, None]
    img[..., 1] = np.linspace(90, 160, size)[None, :]
    img[..., 2] = 180
    img[size * 2 // 3:] = (70, 120, 50)
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def with_disc(img: np.ndarray, centre=(64, 50), radius=14, colour=(220, 30, 30)) -> np.ndarray:
    out = img.copy()
    cv2.circle(out, centre, radius, colour, -1)
    return out


def test_identical_images_are_fully_coherent():
    img = scene()
    result = compare(img, img)
    assert result.ssim == pytest.approx(1.0, abs=1e-12)
    assert result.delta_e == 0.0 and result.mean_abs_rgb == 0.0
    assert result.new_blobs == 0


def test_ssim_matches_the_closed_form_for_flat_images():
    # Flat images: the variances and covariance are 0, so SSIM = (2 mx my + C1) / (mx^2 + my^2 + C1).
    a = np.full((64, 64, 3), 100, np.uint8)
    b = np.full((64, 64, 3), 120, np.uint8)
    c1 = (0.01 * 255) ** 2
    expected = (2 * 100 * 120 + c1) / (100 ** 2 + 120 ** 2 + c1)
    assert expected == pytest.approx(0.98361, abs=1e-5)
    assert ssim(a, b) == pytest.approx(expected, abs=1e-9)
    assert ssim_quarter(a, b) == pytest.approx(expected, abs=1e-9)


def test_ssim_falls_with_noise_and_is_symmetric():
    img = scene()
    rng = np.random.default_rng(1)
    noisy = np.clip(img + rng.normal(0, 40, img.shape), 0, 255).astype(np.uint8)
    # quarter resolution averages most of the noise away; full resolution does not
    assert ssim(img, noisy) < ssim_quarter(img, noisy) < 1.0
    assert ssim_quarter(img, noisy) == pytest.approx(ssim_quarter(noisy, img), abs=1e-12)


def test_an_added_disc_is_one_new_blob_and_a_removed_one_is_none():
    img = scene()
    disc = with_disc(img)
    assert np.pi * 14 ** 2 > BLOB_MIN_AREA * img.shape[0] * img.shape[1]  # the disc is above the minimum area
    assert new_blobs(img, disc) == 1
    assert new_blobs(disc, img) == 0  # the final dropped an object: not a *new* one
    two = with_disc(disc, centre=(30, 100), radius=10, colour=(250, 250, 40))
    assert new_blobs(img, two) == 2
    speck = with_disc(img, radius=3)  # 29 px < 1 % of 128²
    assert new_blobs(img, speck) == 0


def test_a_global_colour_shift_gives_its_colour_difference():
    grey = np.full((32, 32, 3), 128, np.uint8)
    shifted = grey + np.uint8(10)
    assert mean_abs_rgb(grey, shifted) == pytest.approx(10.0)

    def lightness(v: float) -> float:  # sRGB grey level -> CIE L* (a* = b* = 0 for greys)
        c = v / 255.0
        y = c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
        return 116 * y ** (1 / 3) - 16 if y > 0.008856 else 903.3 * y

    expected = lightness(138) - lightness(128)
    assert expected == pytest.approx(3.89, abs=0.01)
    assert colour_difference(grey, shifted) == pytest.approx(expected, abs=0.05)
    assert new_blobs(grey, shifted) == 0  # a colour shift is not an object


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError):
        compare(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8))


# --------------------------------------------------------------------------- the default path
def _measure_module():
    spec = importlib.util.spec_from_file_location("measure_coherence", ROOT / "scripts" / "measure_coherence.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("measure_coherence", module)  # dataclasses look their module up there
    spec.loader.exec_module(sys.modules["measure_coherence"])
    module = sys.modules["measure_coherence"]
    return module


HOUSE = (catalog.resolve(catalog.HOUSE_FULL).available and catalog.resolve(catalog.HOUSE_PREVIEW).available)


@pytest.fixture(scope="module")
def default_path():
    """4 cases (one per mode) on the editor's default refine, house models: about 8 s on 2 cores."""
    if not HOUSE:
        pytest.skip("the house models are not installed")
    measure = _measure_module()
    return measure, measure.measure(per_mode=1)


def test_default_path_refines_the_preview_in_every_mode(default_path):
    _measure, report = default_path
    assert report["refine_strength"] == report["default_strength"]
    assert [r["mode"] for r in report["cases"]] == ["txt2img", "img2img", "inpaint", "outpaint"]
    assert all(r["strength"] == report["default_strength"] for r in report["cases"] if r["mode"] != "txt2img")
    # The house student can't render frames that start from the canvas usefully (house.json
    # partial_denoise: false): img2img and expand frames come from the full model at a few steps.
    assert [r["preview_by"] for r in report["cases"]] == ["preview", "final", "preview", "final"]


def test_default_path_coherence_does_not_regress(default_path):
    # Floors under today's figures on these 4 cases (SSIM 0.99 / 0.99 / 1.00 / 0.98, 0.99 overall,
    # ΔE 1.2, no new blob; before the latent refine: 0.68 / 0.58 / 0.68 / 0.34, 0.57, 2 blobs): a final that
    # ignores the preview (a fresh generation, ~0.23) or refines it from pixels falls far below.
    _measure, report = default_path
    summary = report["summary"]
    assert summary["overall"]["ssim"] >= 0.9, summary["overall"]
    for mode in ("txt2img", "img2img", "inpaint", "outpaint"):
        assert summary[mode]["ssim"] >= 0.85, (mode, summary[mode])
    assert summary["overall"]["delta_e"] <= 5.0, summary["overall"]
    assert summary["overall"]["delta_e"] > 0.5  # the final is not just the preview again


def test_default_path_meets_the_issue_20_target(default_path):
    measure, report = default_path
    summary = report["summary"]
    for mode in ("txt2img", "img2img", "inpaint", "outpaint", "overall"):
        assert summary[mode]["ssim"] >= measure.SSIM_MIN, (mode, summary[mode])
        assert summary[mode]["new_blobs"] == 0, (mode, summary[mode])


def test_without_the_bound_the_same_cases_grow_an_object(default_path):
    """The cases can fail: with the house model's latent-change bound off, the refine reshapes an
    object in the inpaint case (the bound is what meets the target, not an easy test set)."""
    measure, report = default_path
    unbounded = measure.measure(per_mode=1, bound=0.0)
    assert unbounded["settings"]["refine_bound"] == 0.0 and report["settings"]["refine_bound"] == 0.035
    assert unbounded["summary"]["overall"]["new_blobs_total"] >= 1, unbounded["summary"]
    assert unbounded["summary"]["overall"]["delta_e"] > report["summary"]["overall"]["delta_e"]
