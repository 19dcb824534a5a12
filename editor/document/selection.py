"""Pixel selection: an 8-bit coverage mask the size of the canvas.

``None`` means "nothing selected" (tools then act on the whole layer, as in
Krita and GIMP). Shape functions build masks with OpenCV; feathering is a
Gaussian blur and grow/shrink are grey-level morphology with a disc, both
restricted to the selection's bounding box (plus margin) so a small
selection on a huge canvas stays cheap.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Optional, Sequence

import cv2
import numpy as np

from .geometry import EMPTY_RECT, Rect


class SelectionOp(str, Enum):
    REPLACE = "replace"
    ADD = "add"
    SUBTRACT = "subtract"
    INTERSECT = "intersect"


def mask_bounds(mask: Optional[np.ndarray]) -> Rect:
    """Bounding box of the non-zero pixels of a mask."""
    if mask is None:
        return EMPTY_RECT
    x, y, w, h = cv2.boundingRect(mask)  # treats any non-zero as set
    return Rect(x, y, w, h)


def _blank(width: int, height: int) -> np.ndarray:
    return np.zeros((height, width), dtype=np.uint8)


# Subpixel precision for OpenCV drawing (coordinates are scaled by 2**shift).
_SHIFT = 4


def _fixed(points: Sequence[tuple[float, float]]) -> np.ndarray:
    return np.round(np.asarray(points, dtype=np.float64) * (1 << _SHIFT)).astype(np.int32)


def rect_mask(width: int, height: int, rect: Rect) -> np.ndarray:
    mask = _blank(width, height)
    r = rect.intersect(Rect(0, 0, width, height))
    if not r.is_empty():
        mask[r.slices()] = 255
    return mask


def ellipse_mask(width: int, height: int, rect: Rect, antialias: bool = True) -> np.ndarray:
    """Ellipse inscribed in ``rect`` (pixel edges, so a 10x10 rect gives a 10 px circle)."""
    mask = _blank(width, height)
    if rect.is_empty():
        return mask
    cx, cy = rect.x + rect.w / 2.0 - 0.5, rect.y + rect.h / 2.0 - 0.5
    axes = (rect.w / 2.0 - 0.5, rect.h / 2.0 - 0.5)
    if axes[0] <= 0 or axes[1] <= 0:
        return rect_mask(width, height, rect)
    centre = tuple(int(v) for v in _fixed([(cx, cy)])[0])
    ax = tuple(int(v) for v in _fixed([axes])[0])
    cv2.ellipse(mask, centre, ax, 0, 0, 360, 255, thickness=-1,
                lineType=cv2.LINE_AA if antialias else cv2.LINE_8, shift=_SHIFT)
    return mask


def polygon_mask(width: int, height: int, points: Sequence[tuple[float, float]], antialias: bool = True) -> np.ndarray:
    """Lasso: a closed polygon in canvas coordinates, where pixel (i, j)
    covers [i, i+1) x [j, j+1); OpenCV addresses pixel centres, hence -0.5."""
    mask = _blank(width, height)
    if len(points) >= 3:
        pts = np.asarray(points, dtype=np.float64) - 0.5
        cv2.fillPoly(mask, [_fixed(pts)], 255, lineType=cv2.LINE_AA if antialias else cv2.LINE_8, shift=_SHIFT)
    return mask


def combine(old: Optional[np.ndarray], shape: np.ndarray, op: SelectionOp) -> Optional[np.ndarray]:
    op = SelectionOp(op)
    if op is SelectionOp.REPLACE or (old is None and op is SelectionOp.ADD):
        out = shape
    elif old is None:
        # Subtracting from / intersecting with nothing leaves nothing.
        return None
    elif op is SelectionOp.ADD:
        out = np.maximum(old, shape)
    elif op is SelectionOp.SUBTRACT:
        out = cv2.multiply(old, cv2.bitwise_not(shape), scale=1.0 / 255.0)
    else:
        out = cv2.multiply(old, shape, scale=1.0 / 255.0)
    return out if out.any() else None


def _working_rect(mask: np.ndarray, margin: int) -> Rect:
    h, w = mask.shape
    b = mask_bounds(mask)
    return Rect.from_bounds(b.x - margin, b.y - margin, b.x1 + margin, b.y1 + margin).intersect(Rect(0, 0, w, h))


def feather(mask: Optional[np.ndarray], radius: float) -> Optional[np.ndarray]:
    """Gaussian feather. ``radius`` is the half-width of the soft band in px
    (sigma = radius / 3, so the kernel's +-3 sigma spans the radius)."""
    if mask is None or radius <= 0:
        return mask
    sigma = radius / 3.0
    margin = int(math.ceil(3 * sigma)) + 1
    r = _working_rect(mask, margin)
    out = np.zeros_like(mask)
    ksize = 2 * margin + 1
    # BORDER_CONSTANT (0): outside the canvas counts as unselected.
    out[r.slices()] = cv2.GaussianBlur(
        mask[r.slices()], (ksize, ksize), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_CONSTANT
    )
    return out if out.any() else None


def _disc(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def grow(mask: Optional[np.ndarray], radius: int) -> Optional[np.ndarray]:
    if mask is None or radius <= 0:
        return mask
    r = _working_rect(mask, radius + 1)
    out = np.zeros_like(mask)
    out[r.slices()] = cv2.dilate(mask[r.slices()], _disc(radius), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return out


def shrink(mask: Optional[np.ndarray], radius: int) -> Optional[np.ndarray]:
    if mask is None or radius <= 0:
        return mask
    h, w = mask.shape
    b = mask_bounds(mask)
    # Erosion never leaves the bounding box; pad by one pixel so the canvas
    # edge is treated as unselected (GIMP's default), like the inside edge.
    r = Rect.from_bounds(b.x - 1, b.y - 1, b.x1 + 1, b.y1 + 1)
    padded = np.zeros((r.h, r.w), dtype=np.uint8)
    inner = r.intersect(Rect(0, 0, w, h))
    padded[inner.slices(r.x, r.y)] = mask[inner.slices()]
    eroded = cv2.erode(padded, _disc(radius), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    out = np.zeros_like(mask)
    out[inner.slices()] = eroded[inner.slices(r.x, r.y)]
    return out if out.any() else None


def invert(mask: Optional[np.ndarray], width: int, height: int) -> Optional[np.ndarray]:
    if mask is None:
        return np.full((height, width), 255, dtype=np.uint8)
    out = cv2.bitwise_not(mask)
    return out if out.any() else None


def shift_mask(mask: Optional[np.ndarray], width: int, height: int, dx: int, dy: int) -> Optional[np.ndarray]:
    """Place an old mask at (dx, dy) on a canvas of a new size (canvas resize)."""
    if mask is None:
        return None
    out = _blank(width, height)
    oh, ow = mask.shape
    dst = Rect(dx, dy, ow, oh).intersect(Rect(0, 0, width, height))
    if not dst.is_empty():
        out[dst.slices()] = mask[dst.slices(dx, dy)]
    return out if out.any() else None


class Selection:
    """Read access to the document's selection (edits go through commands)."""

    def __init__(self, width: int, height: int, mask: Optional[np.ndarray] = None) -> None:
        self.width = width
        self.height = height
        self._mask: Optional[np.ndarray] = None
        self._set(mask)

    def _set(self, mask: Optional[np.ndarray]) -> None:
        if mask is not None:
            if mask.shape != (self.height, self.width) or mask.dtype != np.uint8:
                raise ValueError(f"selection mask must be uint8 {(self.height, self.width)}")
            mask = np.ascontiguousarray(mask)
            mask.flags.writeable = False  # shared with undo commands; never edited in place
            if not mask.any():
                mask = None
        self._mask = mask

    @property
    def mask(self) -> Optional[np.ndarray]:
        """Full-canvas uint8 mask (read-only) or None when nothing is selected."""
        return self._mask

    def is_active(self) -> bool:
        return self._mask is not None

    def bounds(self) -> Rect:
        return mask_bounds(self._mask)

    def region(self, rect: Rect) -> Optional[np.ndarray]:
        """Coverage of a canvas rect (zeros outside the canvas); None if no selection."""
        if self._mask is None:
            return None
        out = np.zeros((rect.h, rect.w), dtype=np.uint8)
        part = rect.intersect(Rect(0, 0, self.width, self.height))
        if not part.is_empty():
            out[part.slices(rect.x, rect.y)] = self._mask[part.slices()]
        return out
