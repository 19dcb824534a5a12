"""How the selection is shown: a translucent tint over the selected pixels
(so a painted inpaint mask is visible as painted, soft edges included) plus
a dashed outline along the 50 % boundary ("marching ants", static).

The tint uses the same dirty-tile cache as the canvas, so painting with the
mask brush only re-tints the dab's rect.
"""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np
from PySide6.QtCore import QPointF
from PySide6.QtGui import QPainterPath, QPolygonF

from editor.document import Rect
from editor.document.selection import mask_bounds

from .tile_cache import DisplayTiles

TINT_RGB = (236, 56, 220)
TINT_ALPHA = 0.45


def outline_path(mask: Optional[np.ndarray]) -> QPainterPath:
    """Boundary of the >= 50 % part of a mask, in image coordinates."""
    path = QPainterPath()
    if mask is None:
        return path
    b = mask_bounds(mask)
    if b.is_empty():
        return path
    # Work on the bounding box (+1 px so contours close at the crop edge).
    r = Rect.from_bounds(b.x - 1, b.y - 1, b.x1 + 1, b.y1 + 1)
    crop = np.zeros((r.h, r.w), np.uint8)
    inside = r.intersect(Rect(0, 0, mask.shape[1], mask.shape[0]))
    crop[inside.slices(r.x, r.y)] = mask[inside.slices()] >= 128
    contours, _ = cv2.findContours(crop, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    for c in contours:
        pts = c.reshape(-1, 2).astype(np.float64) + (r.x + 0.5, r.y + 0.5)  # pixel centres
        if len(pts) == 1:  # a single pixel: draw its square
            x, y = pts[0] - 0.5
            path.addRect(x, y, 1, 1)
            continue
        path.addPolygon(QPolygonF([QPointF(x, y) for x, y in pts]))
        path.closeSubpath()
    return path


class SelectionOverlay:
    def __init__(self) -> None:
        self.tiles = DisplayTiles(self._produce, max_tiles=256)
        self._mask: Optional[np.ndarray] = None
        self.outline = QPainterPath()

    @property
    def mask(self) -> Optional[np.ndarray]:
        return self._mask

    def set_canvas(self, width: int, height: int) -> None:
        self.tiles.set_canvas(width, height)

    def set_mask(self, mask: Optional[np.ndarray], changed: Optional[Rect] = None, outline: bool = True) -> None:
        """Show ``mask``. ``changed`` limits the re-tint (mask brush dabs);
        by default the union of the old and new selection bounds."""
        old = self._mask
        self._mask = mask
        if changed is None:
            changed = mask_bounds(old).union(mask_bounds(mask))
        if not changed.is_empty():
            self.tiles.invalidate(changed)
        if outline:
            self.outline = outline_path(mask)

    def _produce(self, rect: Rect) -> Optional[np.ndarray]:
        mask = self._mask
        if mask is None:
            return None
        part = rect.intersect(Rect(0, 0, mask.shape[1], mask.shape[0]))
        if part.is_empty():
            return None
        m = np.zeros((rect.h, rect.w), np.float32)
        m[part.slices(rect.x, rect.y)] = mask[part.slices()]
        if not m.any():
            return None
        a = m * np.float32(TINT_ALPHA)  # 0..255 scale
        out = np.empty((rect.h, rect.w, 4), np.uint8)
        for i, c in enumerate(TINT_RGB):
            out[..., i] = np.rint(a * np.float32(c / 255.0))
        out[..., 3] = np.rint(a)
        return out
