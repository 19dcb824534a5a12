"""Inpainting preparation and composition.

Two masks, as in Krita AI Diffusion:

* the *denoise mask* says what the model repaints: the selection grown by a
  few pixels and, at the model's resolution, dilated to whole 8x8 latent
  cells (the UNet works per cell; a half-covered cell would be blended
  against stale latents and leave a visible block edge);
* the *blend weights* say how much of the generated image ends up on the
  canvas: the selection's own coverage times a ramp that rises from the
  selection edge inwards over a band of about 10 % of the selection size.
  They are zero wherever the selection is, so pixels outside it never change.

Small selections are cut out with context around them and scaled up to the
model's resolution, generated, and scaled back ("make the region big, then
shrink it"); the generated colours are matched to the original over a ring
just outside the selection before blending (fixes the usual colour shift).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from editor.document.geometry import Rect

from .frame import GRID, ResolutionMap, snap_down, snap_up


@dataclass(frozen=True)
class InpaintSettings:
    grow: int = 4  # the model repaints this far past the selection (canvas px)
    feather_fraction: float = 0.10  # blend band, as a fraction of the selection size ...
    min_feather: float = 4.0  # ... but at least this wide (px)
    max_feather: float = 25.0  # ... and at most Krita's blend band
    context_fraction: float = 0.5  # context margin around the selection, fraction of its size ...
    min_context: int = 32  # ... but at least this (Krita's minimum transition)
    min_crop_fraction: float = 0.5  # the crop is at least this x native where the canvas allows
    colour_match: bool = True
    colour_space: str = "lab"  # "lab" or "rgb"
    ring_width: int = 12  # colour-match ring outside the selection (px, at least)


def selection_size(bbox: Rect) -> float:
    return (bbox.w + bbox.h) / 2.0


def binary(mask: np.ndarray, threshold: int = 1) -> np.ndarray:
    """uint8 0/255 where ``mask >= threshold``."""
    return np.where(mask >= threshold, np.uint8(255), np.uint8(0))


def _disc(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def grow_mask(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary mask grown by ``radius`` px (disc); pixels past the array edge count as unset."""
    out = binary(mask)
    if radius <= 0:
        return out
    return cv2.dilate(out, _disc(int(radius)), borderType=cv2.BORDER_CONSTANT, borderValue=0)


def align_to_grid(mask: np.ndarray, grid: int = GRID) -> np.ndarray:
    """Every ``grid`` x ``grid`` cell (from the array origin) that holds any set
    pixel becomes fully set: the mask covers whole latent cells."""
    h, w = mask.shape
    ch, cw = -(-h // grid), -(-w // grid)
    padded = np.zeros((ch * grid, cw * grid), np.uint8)
    padded[:h, :w] = mask > 0
    cells = padded.reshape(ch, grid, cw, grid).max(axis=(1, 3))
    full = np.repeat(np.repeat(cells, grid, axis=0), grid, axis=1)[:h, :w]
    return full.astype(np.uint8) * 255


def feather_width(bbox: Rect, settings: InpaintSettings) -> float:
    """Blend band width for a selection with bounding box ``bbox``."""
    band = settings.feather_fraction * selection_size(bbox)
    return float(min(max(band, settings.min_feather), settings.max_feather))


def blend_weights(selection: np.ndarray, band: float) -> np.ndarray:
    """float32 0..1: coverage of ``selection`` (uint8) times a ramp rising from its
    edge inwards over ``band`` px. Exactly 0 wherever the selection is 0; the
    ramp is capped at half the selection's inner radius so thin selections
    still get fully replaced along their middle."""
    inside = (selection > 0).astype(np.uint8)
    if not inside.any():
        return np.zeros(selection.shape, np.float32)
    # Distance to the nearest unselected pixel; the array edge is not an
    # edge of the selection (the crop may end at the canvas border).
    distance = cv2.distanceTransform(inside, cv2.DIST_L2, 5)
    band = min(float(band), 0.5 * float(distance.max()))
    ramp = np.clip(distance / band, 0.0, 1.0) if band > 1.0 else inside.astype(np.float32)
    weights = ramp * (selection.astype(np.float32) / 255.0)
    weights[inside == 0] = 0.0
    return weights.astype(np.float32)


def ring_around(mask: np.ndarray, width: int) -> np.ndarray:
    """bool: pixels within ``width`` px outside ``mask``."""
    grown = grow_mask(mask, width)
    return (grown > 0) & (mask == 0)


def expand_to_min(rect: Rect, min_w: int, min_h: int, bounds: Rect) -> Rect:
    """Grow ``rect`` about its centre to at least ``min_w`` x ``min_h``, shifted
    back inside ``bounds`` and clipped to it (the minimum holds where it fits)."""
    def axis(start: int, length: int, minimum: int, lo: int, hi: int) -> tuple[int, int]:
        if length < minimum:
            start -= (minimum - length) // 2
            length = minimum
        start = max(lo, min(start, hi - length))
        end = min(hi, start + length)
        return max(lo, start), end

    x0, x1 = axis(rect.x, rect.w, min_w, bounds.x, bounds.x1)
    y0, y1 = axis(rect.y, rect.h, min_h, bounds.y, bounds.y1)
    return Rect.from_bounds(x0, y0, x1, y1)


def plan_crop(bbox: Rect, bounds: Rect, native: int, settings: InpaintSettings) -> Rect:
    """Canvas area the model sees for a selection with bounding box ``bbox``:
    the box grown by a context margin, at least ``min_crop_fraction`` x
    ``native`` square where ``bounds`` allows, snapped outward to the 8 px grid
    inside ``bounds``."""
    margin = max(settings.min_context, int(round(settings.context_fraction * selection_size(bbox))))
    crop = Rect.from_bounds(bbox.x - margin, bbox.y - margin, bbox.x1 + margin, bbox.y1 + margin)
    minimum = int(round(settings.min_crop_fraction * native))
    crop = expand_to_min(crop, minimum, minimum, bounds).intersect(bounds)
    # Grid-aligned edges where the bounds allow: a 1:1 mapping then keeps
    # latent cells on canvas pixels.
    snapped = Rect.from_bounds(snap_down(crop.x), snap_down(crop.y), snap_up(crop.x1), snap_up(crop.y1))
    return snapped.intersect(bounds)


@dataclass
class InpaintPlan:
    """Everything about an inpaint that does not depend on the model (crop coordinates)."""

    crop: Rect  # canvas area the model sees
    selection: np.ndarray  # uint8 (h, w) of the crop: the selection limited to the frame
    denoise: np.ndarray  # uint8 0/255: what the model repaints (before grid alignment)
    weights: np.ndarray  # float32 0..1: blend weights (0 outside the selection)
    ring: np.ndarray  # bool: where the colour match measures the shift
    band: float  # blend band width (px)


def plan_inpaint(selection: np.ndarray, canvas: Rect, frame: Rect, native: int,
                 settings: InpaintSettings = InpaintSettings()) -> InpaintPlan:
    """Plan an inpaint of the canvas-sized ``selection`` inside ``frame``."""
    limit = frame.intersect(canvas)
    limited = np.zeros_like(selection)
    if not limit.is_empty():
        limited[limit.slices()] = selection[limit.slices()]
    x, y, w, h = cv2.boundingRect(limited)
    bbox = Rect(x, y, w, h)
    if bbox.is_empty():
        raise ValueError("no selection inside the frame")
    crop = plan_crop(bbox, canvas, native, settings)
    sel = np.ascontiguousarray(limited[crop.slices()])
    band = feather_width(bbox, settings)
    ring_width = max(settings.ring_width, int(round(band)))
    return InpaintPlan(
        crop=crop,
        selection=sel,
        denoise=grow_mask(sel, settings.grow),
        weights=blend_weights(sel, band),
        ring=ring_around(binary(sel), ring_width),
        band=band,
    )


def model_mask(denoise: np.ndarray, rmap: ResolutionMap) -> np.ndarray:
    """Denoise mask at the model's resolution, covering whole latent cells."""
    scaled = rmap.mask_to_model(denoise)
    return align_to_grid(binary(scaled), GRID)


# --------------------------------------------------------------------------- colour
def _to_space(rgb: np.ndarray, space: str) -> np.ndarray:
    as_float = rgb.astype(np.float32) / 255.0
    if space == "lab":
        return cv2.cvtColor(as_float, cv2.COLOR_RGB2Lab)
    if space == "rgb":
        return as_float * 255.0
    raise ValueError(f"unknown colour space {space!r}")


def _from_space(values: np.ndarray, space: str) -> np.ndarray:
    if space == "lab":
        values = cv2.cvtColor(values.astype(np.float32), cv2.COLOR_Lab2RGB) * 255.0
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def colour_match(generated: np.ndarray, reference: np.ndarray, ring: np.ndarray, *,
                 region: np.ndarray | None = None, space: str = "lab", strength: float = 1.0,
                 max_gain: float = 2.0, min_pixels: int = 16) -> np.ndarray:
    """Correct the colour drift of ``generated`` (uint8 HxWx3) against ``reference``.

    The drift is measured where both should agree — the ``ring`` of context
    just outside the repainted area — as per-channel mean and standard
    deviation, and undone on ``region`` (bool, default everywhere). Matching
    the generated region's own statistics to its surroundings instead would
    recolour new content (a red apple on a green lawn would turn green).
    """
    ring = ring.astype(bool)
    if ring.sum() < min_pixels or strength <= 0:
        return generated.copy()
    gen = _to_space(generated, space)
    ref = _to_space(reference, space)
    g, r = gen[ring], ref[ring]  # (n, 3)
    mean_g, mean_r = g.mean(axis=0), r.mean(axis=0)
    std_g, std_r = g.std(axis=0), r.std(axis=0)
    gain = np.where(std_g > 1e-3, std_r / np.maximum(std_g, 1e-3), 1.0)
    gain = np.clip(gain, 1.0 / max_gain, max_gain)
    corrected = (gen - mean_g) * gain + mean_r
    corrected = gen + float(strength) * (corrected - gen)
    out = _from_space(corrected, space)
    if region is not None:
        keep = ~region.astype(bool)
        out[keep] = generated[keep]
    return out


# --------------------------------------------------------------------------- compose
def compose(original: np.ndarray, generated: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``generated`` over ``original`` (uint8 HxWxC, same size) with float
    ``weights``; where a weight is 0 the original comes back bit-identical."""
    w = weights[..., None].astype(np.float32)
    out = np.rint(generated.astype(np.float32) * w + original.astype(np.float32) * (1.0 - w)).astype(np.uint8)
    untouched = weights <= 0
    out[untouched] = original[untouched]
    return out


def weights_to_alpha(weights: np.ndarray) -> np.ndarray:
    """Layer alpha from blend weights; a positive weight never rounds to 0
    and only a weight of 1 gives full opacity."""
    alpha = np.rint(weights * 255.0)
    alpha = np.where(weights > 0, np.maximum(alpha, 1), 0)
    return alpha.astype(np.uint8)


def layer_rgba(generated: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Straight RGBA layer pixels: the generated colours, alpha from the weights."""
    return np.dstack([generated[..., :3], weights_to_alpha(weights)])
