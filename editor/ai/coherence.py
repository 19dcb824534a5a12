"""Preview → final coherence: how far Generate's final render strays from the
live preview the user saw ("Generate refines what you saw").

Three numbers per pair of same-size RGB uint8 images (preview, final):

* ``ssim_quarter``: SSIM (Wang et al. 2004: 11-tap Gaussian window, sigma 1.5,
  K1 0.01, K2 0.03, data range 255), mean over R, G, B, on both images shrunk
  to 1/4 per side (area averaging). At 1/4 the figure measures layout and
  shapes, not the texture a refine is *meant* to change. scikit-image is not
  installed here, so this is the reference formula on OpenCV blurs, tested
  against the closed form for flat images.
* ``colour_difference``: mean CIE76 ΔE (Lab, D65) per pixel; ``mean_abs_rgb``
  is reported beside it (mean |ΔRGB| over pixels and channels, 0..255).
* ``new_blobs``: connected regions where the two differ by ΔE > ``BLOB_DELTA_E``
  (after a small blur, so texture noise does not count), at least
  ``BLOB_MIN_AREA`` of the image, that stand out from their surroundings
  more in the final than in the preview: an object the final added. A region
  the final *removed* or merely recoloured the same as its neighbours is not
  a new object.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

SSIM_SCALE = 4  # compare at 1/4 per side
SSIM_SIGMA = 1.5
SSIM_WINDOW = 11
SSIM_K1, SSIM_K2 = 0.01, 0.03
DATA_RANGE = 255.0

BLOB_BLUR_SIGMA = 1.0  # px: ignore pixel-level texture before thresholding
BLOB_DELTA_E = 25.0  # per-pixel ΔE76 above which preview and final "differ" (a clearly different colour)
BLOB_MIN_AREA = 0.01  # of the image area: 1 % (164 px at 128²), so specks and edge shifts do not count
BLOB_RING = 5  # px around a blob that stand for its surroundings
BLOB_CONTRAST_MARGIN = 10.0  # ΔE: the blob must stand out this much more in the final than in the preview


def _check(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape or a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"need two RGB images of one size, got {a.shape} and {b.shape}")


def quarter(rgb: np.ndarray, scale: int = SSIM_SCALE) -> np.ndarray:
    h, w = rgb.shape[:2]
    size = (max(1, w // scale), max(1, h // scale))
    return cv2.resize(np.ascontiguousarray(rgb), size, interpolation=cv2.INTER_AREA)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two same-size images (grey or RGB; channels averaged), full resolution."""
    x = np.asarray(a, np.float64)
    y = np.asarray(b, np.float64)
    if x.shape != y.shape:
        raise ValueError(f"shapes differ: {x.shape} vs {y.shape}")

    def blur(img: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(img, (SSIM_WINDOW, SSIM_WINDOW), SSIM_SIGMA, borderType=cv2.BORDER_REFLECT)

    c1 = (SSIM_K1 * DATA_RANGE) ** 2
    c2 = (SSIM_K2 * DATA_RANGE) ** 2
    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cxy = blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s.mean())


def ssim_quarter(preview: np.ndarray, final: np.ndarray) -> float:
    _check(preview, final)
    return ssim(quarter(preview), quarter(final))


def lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB uint8 -> CIE Lab (L 0..100), float32 (OpenCV's D65 conversion)."""
    return cv2.cvtColor(np.ascontiguousarray(rgb).astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)


def delta_e_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel CIE76 ΔE."""
    return np.sqrt(((lab(a) - lab(b)) ** 2).sum(axis=2))


def colour_difference(preview: np.ndarray, final: np.ndarray) -> float:
    """Mean CIE76 ΔE (about 2.3 is a just-noticeable difference)."""
    _check(preview, final)
    return float(delta_e_map(preview, final).mean())


def mean_abs_rgb(preview: np.ndarray, final: np.ndarray) -> float:
    _check(preview, final)
    return float(np.abs(preview.astype(np.float64) - final.astype(np.float64)).mean())


def _contrast(lab_img: np.ndarray, blob: np.ndarray, ring: np.ndarray) -> float:
    """ΔE between a region's mean colour and its surroundings' mean colour."""
    return float(np.linalg.norm(lab_img[blob].mean(axis=0) - lab_img[ring].mean(axis=0)))


def new_blobs(preview: np.ndarray, final: np.ndarray) -> int:
    """Objects in the final that the preview did not have (see the module doc)."""
    _check(preview, final)
    smooth = lambda img: cv2.GaussianBlur(np.ascontiguousarray(img), (0, 0), BLOB_BLUR_SIGMA)  # noqa: E731
    lp, lf = lab(smooth(preview)), lab(smooth(final))
    differ = (np.sqrt(((lp - lf) ** 2).sum(axis=2)) > BLOB_DELTA_E).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(differ, connectivity=8)
    min_area = BLOB_MIN_AREA * differ.size
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * BLOB_RING + 1, 2 * BLOB_RING + 1))
    found = 0
    for index in range(1, count):
        if stats[index, cv2.CC_STAT_AREA] < min_area:
            continue
        blob = labels == index
        ring = cv2.dilate(blob.astype(np.uint8), kernel).astype(bool) & ~blob
        if not ring.any():  # the whole image changed: a new picture, not a new object in it
            found += 1
            continue
        if _contrast(lf, blob, ring) > _contrast(lp, blob, ring) + BLOB_CONTRAST_MARGIN:
            found += 1
    return found


def laplacian_variance(rgb: np.ndarray) -> float:
    """Sharpness: variance of the Laplacian of the grey image (higher = more detail)."""
    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY).astype(np.float64)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


@dataclass(frozen=True)
class Coherence:
    ssim: float
    delta_e: float
    mean_abs_rgb: float
    new_blobs: int
    sharpness_preview: float
    sharpness_final: float

    def as_dict(self) -> dict:
        return asdict(self)


def compare(preview: np.ndarray, final: np.ndarray) -> Coherence:
    """All the figures for one preview/final pair (RGB uint8, same size)."""
    return Coherence(ssim_quarter(preview, final), colour_difference(preview, final), mean_abs_rgb(preview, final),
                     new_blobs(preview, final), laplacian_variance(preview), laplacian_variance(final))
