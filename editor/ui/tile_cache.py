"""Screen-ready tiles of the composite, refreshed only where the model says
pixels changed.

The canvas never recomposites the whole image: the model reports dirty
rects, we mark the overlapping display tiles dirty, and ``refresh`` (run
from a zero-timer, never from paintEvent) re-renders just those rects into
the tiles' QImage memory. Paint events then only blit QImages.

Zoomed out, tiles hold a 2^level downsampled copy (a simple mip level), so
blitting a big canvas at 10 % stays cheap and smooth.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from typing import Callable, Iterator, Optional

import cv2
import numpy as np
from PySide6.QtCore import QRectF
from PySide6.QtGui import QImage

from editor.document import Rect
from editor.document.geometry import EMPTY_RECT

DISPLAY_TILE = 256  # display pixels per tile side (4x4 model tiles at level 0)
MAX_LEVEL = 6

# Premultiplied straight-order RGBA uint8 of a canvas rect (full resolution),
# or None when the rect is known to be fully transparent.
Producer = Callable[[Rect], Optional[np.ndarray]]


def level_for_zoom(zoom: float) -> int:
    """Mip level whose resolution is just above what the zoom shows."""
    if zoom >= 0.5:
        return 0
    return int(min(MAX_LEVEL, math.floor(math.log2(1.0 / zoom))))


class _Tile:
    __slots__ = ("image", "view", "dirty", "blank")

    def __init__(self) -> None:
        self.image = QImage(DISPLAY_TILE, DISPLAY_TILE, QImage.Format.Format_ARGB32_Premultiplied)
        # Write straight into the QImage's memory (BGRA byte order on little endian).
        self.view = np.ndarray(
            (DISPLAY_TILE, DISPLAY_TILE, 4), np.uint8, buffer=self.image.bits(),
            strides=(self.image.bytesPerLine(), 4, 1),
        )
        self.view[...] = 0
        self.dirty = EMPTY_RECT
        self.blank = True


class DisplayTiles:
    def __init__(self, producer: Producer, max_tiles: int = 384) -> None:
        self._producer = producer
        self._tiles: "OrderedDict[tuple[int, int], _Tile]" = OrderedDict()
        self._canvas = EMPTY_RECT
        self._level = 0
        self.max_tiles = max_tiles
        self.pixels_rendered = 0  # statistics for tests: full-resolution pixels re-rendered

    # ----------------------------------------------------------- state
    @property
    def level(self) -> int:
        return self._level

    @property
    def span(self) -> int:
        """Image pixels covered by one tile side at the current level."""
        return DISPLAY_TILE << self._level

    def set_canvas(self, width: int, height: int) -> None:
        rect = Rect(0, 0, width, height)
        if rect != self._canvas:
            self._canvas = rect
            self._tiles.clear()

    def set_level(self, level: int) -> None:
        if level != self._level:
            self._level = level
            self._tiles.clear()

    def clear(self) -> None:
        self._tiles.clear()

    def _keys(self, rect: Rect) -> Iterator[tuple[int, int]]:
        rect = rect.intersect(self._canvas)
        if rect.is_empty():
            return
        s = self.span
        for ty in range(rect.y // s, (rect.y1 - 1) // s + 1):
            for tx in range(rect.x // s, (rect.x1 - 1) // s + 1):
                yield tx, ty

    def _tile_rect(self, key: tuple[int, int]) -> Rect:
        s = self.span
        return Rect(key[0] * s, key[1] * s, s, s).intersect(self._canvas)

    # ------------------------------------------------------ invalidation
    def invalidate(self, rect: Optional[Rect] = None) -> None:
        """Mark cached tiles dirty where ``rect`` (image coords) changed."""
        if rect is None:
            rect = self._canvas
        for key in self._keys(rect):
            tile = self._tiles.get(key)
            if tile is not None:
                tile.dirty = tile.dirty.union(rect.intersect(self._tile_rect(key)))

    def needs_refresh(self, visible: Rect) -> bool:
        return any(
            (t := self._tiles.get(k)) is None or not t.dirty.is_empty() for k in self._keys(visible)
        )

    def refresh(self, visible: Rect, budget_s: Optional[float] = None) -> tuple[Rect, bool]:
        """Repair dirty and create missing tiles inside ``visible``.

        Dirty tiles go first (they are what the user is painting), then
        missing ones. With ``budget_s`` it stops once that much time is spent,
        so a big first render never freezes the UI; the caller calls again.
        Returns (image-space area that changed, whether everything is done).
        Dirty tiles outside the view stay dirty until they are scrolled in.
        """
        start = time.perf_counter()
        changed = EMPTY_RECT
        keys = list(self._keys(visible))
        dirty = [k for k in keys if k in self._tiles and not self._tiles[k].dirty.is_empty()]
        missing = [k for k in keys if k not in self._tiles]
        for i, key in enumerate(dirty + missing):
            if budget_s is not None and i > 0 and time.perf_counter() - start > budget_s:
                return changed, False
            tile = self._tiles.get(key)
            if tile is None:
                tile = self._tiles[key] = _Tile()
                area = self._tile_rect(key)
                self._render_into(key, tile, area, full=True)
            else:
                area = tile.dirty
                self._render_into(key, tile, area, full=False)
            tile.dirty = EMPTY_RECT
            changed = changed.union(area)
        for key in keys:
            if key in self._tiles:
                self._tiles.move_to_end(key)
        self._evict(set(keys))
        return changed, True

    def _render_into(self, key: tuple[int, int], tile: _Tile, area: Rect, full: bool) -> None:
        f = 1 << self._level
        s = self.span
        ox, oy = key[0] * s, key[1] * s
        # Align to whole display pixels of this level.
        x0, y0 = (area.x // f) * f, (area.y // f) * f
        x1, y1 = -(-area.x1 // f) * f, -(-area.y1 // f) * f
        x1, y1 = min(x1, ox + s), min(y1, oy + s)
        region = Rect.from_bounds(x0, y0, x1, y1)
        if region.is_empty():
            return
        self.pixels_rendered += region.area()
        pixels = self._producer(region)
        dst = tile.view[(y0 - oy) // f : (y1 - oy) // f, (x0 - ox) // f : (x1 - ox) // f]
        if pixels is None:
            dst[...] = 0
            return
        if f > 1:
            # INTER_AREA averages premultiplied values: correct for alpha.
            pixels = cv2.resize(pixels, (dst.shape[1], dst.shape[0]), interpolation=cv2.INTER_AREA)
        dst[...] = cv2.cvtColor(pixels, cv2.COLOR_RGBA2BGRA)
        has_alpha = bool(pixels[..., 3].any())
        tile.blank = (not has_alpha) if full else (tile.blank and not has_alpha)

    def _evict(self, keep: set) -> None:
        if len(self._tiles) <= self.max_tiles:
            return
        for key in list(self._tiles.keys()):
            if len(self._tiles) <= self.max_tiles:
                break
            if key not in keep:
                del self._tiles[key]

    # ------------------------------------------------------------ drawing
    def drawable(self, visible: Rect) -> Iterator[tuple[QRectF, QImage, QRectF]]:
        """(target rect in image coords, image, source rect) of cached, non-blank tiles."""
        f = 1 << self._level
        for key in self._keys(visible):
            tile = self._tiles.get(key)
            if tile is None or tile.blank:
                continue
            r = self._tile_rect(key)
            w, h = -(-r.w // f), -(-r.h // f)
            yield QRectF(r.x, r.y, w * f, h * f), tile.image, QRectF(0, 0, w, h)

    def cached_count(self) -> int:
        return len(self._tiles)
