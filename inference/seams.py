"""Seam correction for inpainting: make generated pixels meet the kept ones without a step.

A latent-space model re-decodes the whole image, so even where the sampler kept the known latents
the decoded colours differ slightly from the original (VAE error, a few levels), and the repainted
region's border shows that difference as an edge once the original is pasted back around it.

`seam_correct` measures the residual `original − generated` on a ring of kept pixels just outside
the mask, spreads it smoothly into the mask (push-pull: normalised averaging over an image
pyramid, which fills any hole in O(pixels), unlike Telea/Poisson solvers) and adds it to the
generated pixels with a weight that fades with the distance from the border. Near the border the
generated image then agrees with the original; deep inside, the model's own colours stay. This is
the membrane idea of Poisson image editing, in its cheap smooth form.
"""
from __future__ import annotations

import cv2
import numpy as np


# How fast a pyramid level trusts its own average as known pixels appear in a neighbourhood: high,
# so values next to the ring come from the ring itself (measured: 4 → seams 1.52, 100 → 1.46).
CONFIDENCE_GAIN = 100.0


def push_pull(values: np.ndarray, weight: np.ndarray, min_side: int = 2) -> np.ndarray:
    """Fill every pixel of ``values`` (H, W, C float32) from the pixels where ``weight`` (H, W, 0..1)
    is positive: each level of a Gaussian pyramid averages the known values, coarse levels fill
    the holes of the finer ones."""
    v = values.astype(np.float32) * weight[..., None]
    w = weight.astype(np.float32)
    levels = [(v, w)]
    while min(w.shape[:2]) > min_side:
        v, w = cv2.pyrDown(v), cv2.pyrDown(w)
        if v.ndim == 2:
            v = v[..., None]
        levels.append((v, w))
    v, w = levels[-1]
    estimate = v / np.maximum(w, 1e-6)[..., None]
    if (w <= 1e-6).all():
        estimate = np.zeros_like(v)
    for v, w in reversed(levels[:-1]):
        up = cv2.resize(estimate, (w.shape[1], w.shape[0]), interpolation=cv2.INTER_LINEAR)
        if up.ndim == 2:
            up = up[..., None]
        confidence = np.clip(w * CONFIDENCE_GAIN, 0.0, 1.0)[..., None]
        own = v / np.maximum(w, 1e-6)[..., None]
        estimate = confidence * own + (1.0 - confidence) * up
    return estimate


def seam_correct(generated: np.ndarray, original: np.ndarray, mask: np.ndarray, *, ring: int = 6,
                 fade: float = 32.0) -> np.ndarray:
    """``generated`` (uint8 H×W×3) with its colours inside ``mask`` (uint8, ≥128 = repainted) pulled
    towards ``original`` near the mask border. Pixels outside the mask are returned unchanged
    (they are the generated ones there: pasting the original back is the caller's step)."""
    inside = (np.asarray(mask) >= 128).astype(np.uint8)
    if not inside.any() or inside.all():
        return generated.copy()
    distance_out = cv2.distanceTransform(1 - inside, cv2.DIST_L2, 3)
    known = ((distance_out > 0) & (distance_out <= ring)).astype(np.float32)
    residual = original.astype(np.float32) - generated.astype(np.float32)
    spread = push_pull(residual, known)
    distance_in = cv2.distanceTransform(inside, cv2.DIST_L2, 3)
    weight = (np.exp(-distance_in / float(fade)) if fade > 0 else np.ones_like(distance_in))[..., None]
    corrected = generated.astype(np.float32) + spread * weight * inside[..., None]
    return np.clip(np.rint(corrected), 0, 255).astype(np.uint8)
