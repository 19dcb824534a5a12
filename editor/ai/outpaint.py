"""Outpainting: growing the canvas under a frame that reaches past it,
pre-filling the empty area so the model has colours to start from, and the
masks of the inpaint pass that fills it.

The canvas is only grown when the user accepts a result (see
:mod:`editor.ai.results`); until then the frame simply reads transparent
pixels past the canvas edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from editor.document.geometry import Rect

from inference.api import fill_empty as prefill  # one pre-fill for the editor and the CLI

from .inpaint import grow_mask, ring_around
from .modes import EMPTY_ALPHA

Prefill = Literal["telea", "edge", "neutral"]  # what `inference.api.fill_empty` offers for any empty area



@dataclass(frozen=True)
class CanvasGrowth:
    """How far each canvas side must move out so a rect fits (all >= 0)."""

    left: int = 0
    top: int = 0
    right: int = 0
    bottom: int = 0

    @property
    def needed(self) -> bool:
        return any((self.left, self.top, self.right, self.bottom))

    def new_size(self, width: int, height: int) -> tuple[int, int]:
        return width + self.left + self.right, height + self.top + self.bottom

    def shift(self, rect: Rect) -> Rect:
        """Where a rect in old canvas coordinates lies after the growth."""
        return rect.translated(self.left, self.top)


def plan_canvas_growth(rect: Rect, width: int, height: int) -> CanvasGrowth:
    """Growth of a ``width`` x ``height`` canvas that makes it contain ``rect``."""
    if rect.is_empty():
        return CanvasGrowth()
    return CanvasGrowth(
        left=max(0, -rect.x), top=max(0, -rect.y), right=max(0, rect.x1 - width), bottom=max(0, rect.y1 - height)
    )


# The new area is generated with the frame unless that makes the generation this much larger:
# beyond it (a frame past a corner of a big canvas) the frame alone is generated.
EXPAND_MAX_AREA_FACTOR = 3.0


def expand_crop(frame: Rect, width: int, height: int, max_area_factor: float = EXPAND_MAX_AREA_FACTOR) -> Rect:
    """The area an Expand generates: the frame plus the WHOLE new strip(s) of
    canvas it makes (a frame 300 px tall past the right edge of a 500 px
    canvas grows the canvas by a strip 500 px tall; all of it is painted, not
    only the 300 px beside the frame, so no transparent bands are left)."""
    growth = plan_canvas_growth(frame, width, height)
    if not growth.needed:
        return frame
    new_w, new_h = growth.new_size(width, height)
    x0, y0, x1, y1 = frame.x, frame.y, frame.x1, frame.y1
    if growth.left or growth.right:  # side strips span the new canvas height
        y0, y1 = min(y0, -growth.top), max(y1, height + growth.bottom)
    if growth.top or growth.bottom:  # top/bottom strips span the new canvas width
        x0, x1 = min(x0, -growth.left), max(x1, width + growth.right)
    crop = Rect(x0, y0, x1 - x0, y1 - y0)
    if crop.w * crop.h > max_area_factor * frame.w * frame.h:
        return frame
    return crop


def empty_mask(rgba: np.ndarray, threshold: int = EMPTY_ALPHA) -> np.ndarray:
    """uint8 0/255: pixels with too little alpha to keep."""
    return np.where(rgba[..., 3] < threshold, np.uint8(255), np.uint8(0))


def flatten_for_model(rgba: np.ndarray, method: Prefill = "telea") -> np.ndarray:
    """RGB the model can read from a straight RGBA composite: empty pixels are
    pre-filled and partly transparent ones blended over the pre-fill."""
    rgb = np.ascontiguousarray(rgba[..., :3])
    alpha = rgba[..., 3]
    if (alpha == 255).all():
        return rgb.copy()
    # What lies behind partly transparent pixels is unknown too: fill it from
    # the opaque ones, then lay the partial pixels over it.
    filled = prefill(rgb, np.where(alpha < 255, np.uint8(255), np.uint8(0)), method)
    a = alpha.astype(np.float32)[..., None] / 255.0
    partial = (alpha >= EMPTY_ALPHA) & (alpha < 255)
    out = filled.copy()
    mixed = np.rint(rgb.astype(np.float32) * a + filled.astype(np.float32) * (1.0 - a)).astype(np.uint8)
    out[partial] = mixed[partial]
    return out


@dataclass
class OutpaintPlan:
    """Masks of the inpaint pass of an outpaint, in frame coordinates."""

    empty: np.ndarray  # uint8 0/255: pixels the model must invent
    denoise: np.ndarray  # uint8 0/255: what the model repaints (empty + seam + grow)
    weights: np.ndarray  # float32 0..1: 1 on empty pixels, fading into content over the seam
    ring: np.ndarray  # bool: kept content next to the seam (colour match)


def plan_outpaint(rgba: np.ndarray, seam: int = 8, grow: int = 4, ring_width: int = 16) -> OutpaintPlan:
    """Masks for filling the empty part of a frame's composite ``rgba``.

    The generated image covers the empty area fully and fades out over
    ``seam`` px of the existing content, so the join is regenerated rather
    than a hard edge; content farther in is never touched."""
    empty = empty_mask(rgba)
    kept = (empty == 0).astype(np.uint8)
    if seam > 0 and kept.any() and not kept.all():
        distance = cv2.distanceTransform(kept, cv2.DIST_L2, 5)  # distance to the empty area
        weights = np.clip(1.0 - distance / float(seam + 1), 0.0, 1.0).astype(np.float32)
    else:
        weights = (empty > 0).astype(np.float32)
    weights[empty > 0] = 1.0
    covered = np.where(weights > 0, np.uint8(255), np.uint8(0))
    return OutpaintPlan(
        empty=empty,
        denoise=grow_mask(covered, grow),
        weights=weights,
        ring=ring_around(covered, ring_width) & (kept > 0),
    )
