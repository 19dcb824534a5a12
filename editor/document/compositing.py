"""Compositing of the layer tree, region by region, with a tile cache.

``composite_region`` renders any canvas rectangle from scratch (vectorised
float32, premultiplied internally). ``RenderCache`` keeps the composited
canvas as 64x64 tiles and re-renders only the tiles an edit dirtied, so a
brush dab costs a few small composites instead of a full-canvas one.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Optional, Protocol

import numpy as np

from .blendmodes import composite, premultiplied_to_straight_u8, straight_u8_to_planar, unpremultiply
from .geometry import Rect
from .layers import LayerGroup, Node, RasterLayer
from .tiles import TILE, tile_range

_INV255 = np.float32(1.0 / 255.0)


class _Canvas(Protocol):
    root: LayerGroup
    width: int
    height: int


def _has_content(node: Node, rect: Rect) -> bool:
    """Could this node change pixels of ``rect``? (Cheap, conservative.)"""
    if not node.visible:
        return False
    if not node.blend_mode.is_local:
        return True
    if isinstance(node, RasterLayer):
        return node.opacity > 0 and node.tiles.has_tiles_in(node.to_local(rect))
    assert isinstance(node, LayerGroup)
    return any(_has_content(c, rect) for c in node.children)


def _composite_layer(layer: RasterLayer, rect: Rect, dst: np.ndarray) -> None:
    local = layer.to_local(rect)
    px = layer.tiles.read_region_or_none(local)
    if px is None:
        if layer.blend_mode.is_local:
            return
        px = np.zeros((rect.h, rect.w, 4), dtype=np.uint8)
    colour, alpha = straight_u8_to_planar(px, layer.opacity)
    if layer.mask is not None:
        mask = layer.mask.read_region_or_none(local)
        if mask is not None:
            alpha *= mask.astype(np.float32) * _INV255
        elif layer.mask.default != 255:
            alpha *= np.float32(layer.mask.default / 255.0)
    composite(dst, colour, alpha, layer.blend_mode)


def _composite_children(group: LayerGroup, rect: Rect, dst: np.ndarray) -> None:
    for child in group.children:  # bottom to top
        if not _has_content(child, rect):
            continue
        if isinstance(child, RasterLayer):
            _composite_layer(child, rect, dst)
            continue
        assert isinstance(child, LayerGroup)
        if child.renders_isolated():
            buf = np.zeros_like(dst)
            _composite_children(child, rect, buf)
            alpha = buf[3] * np.float32(child.opacity)
            composite(dst, unpremultiply(buf), alpha, child.blend_mode)
        else:
            # Pass-through: the children blend directly with what is below.
            _composite_children(child, rect, dst)


def composite_region(root: LayerGroup, rect: Rect) -> np.ndarray:
    """Premultiplied planar float32 (4, h, w) composite of ``rect`` over transparency.

    The root stack is an isolated group over a transparent background
    (OpenRaster); the UI draws its checkerboard underneath.
    """
    dst = np.zeros((4, max(rect.h, 0), max(rect.w, 0)), dtype=np.float32)
    if rect.is_empty() or not root.visible:
        return dst
    _composite_children(root, rect, dst)
    if root.opacity < 1.0:
        dst *= np.float32(root.opacity)
    return dst


def render_region(root: LayerGroup, rect: Rect) -> np.ndarray:
    """Straight RGBA uint8 of ``rect``, computed from scratch (no cache)."""
    return premultiplied_to_straight_u8(composite_region(root, rect))


def straight_to_premultiplied(rgba: np.ndarray) -> np.ndarray:
    """Premultiplied RGBA uint8 for QImage.Format_RGBA8888_Premultiplied."""
    out = rgba.copy()
    a = rgba[..., 3:4].astype(np.uint16)
    out[..., :3] = ((rgba[..., :3].astype(np.uint16) * a + 127) // 255).astype(np.uint8)
    return out


class RenderCache:
    """Composited canvas kept as canvas-aligned 64x64 tiles (straight RGBA).

    Tiles are computed lazily on ``render`` and dropped by ``invalidate``.
    Memory is bounded by an LRU cap, so a 16k canvas viewed at 1:1 in
    pieces never holds the whole composite.
    """

    # Batches up to this many tiles per side into one composite call:
    # numpy overhead per call matters for small tiles, memory for big batches.
    _MAX_BATCH = 16

    def __init__(self, canvas: _Canvas, max_bytes: int = 256 * 1024 * 1024) -> None:
        self._canvas = canvas
        self._tiles: "OrderedDict[tuple[int, int], np.ndarray]" = OrderedDict()
        self.max_tiles = max(16, max_bytes // (TILE * TILE * 4))
        self.tiles_rendered = 0  # statistics, used by tests and the benchmark

    def canvas_rect(self) -> Rect:
        return Rect(0, 0, self._canvas.width, self._canvas.height)

    def invalidate(self, rect: Optional[Rect] = None) -> None:
        if rect is None:
            self._tiles.clear()
            return
        rect = rect.intersect(self.canvas_rect())
        xs, ys = tile_range(rect)
        if len(xs) * len(ys) > len(self._tiles):
            for key in [k for k in self._tiles if k[0] in xs and k[1] in ys]:
                del self._tiles[key]
        else:
            for ty in ys:
                for tx in xs:
                    self._tiles.pop((tx, ty), None)

    def cached_tile_count(self) -> int:
        return len(self._tiles)

    def _compute(self, tx0: int, ty0: int, tx1: int, ty1: int) -> None:
        """Composite tiles [tx0, tx1) x [ty0, ty1) in one call and store them."""
        canvas = self.canvas_rect()
        area = Rect.from_bounds(tx0 * TILE, ty0 * TILE, tx1 * TILE, ty1 * TILE)
        clipped = area.intersect(canvas)
        block = np.zeros((area.h, area.w, 4), dtype=np.uint8)
        if not clipped.is_empty():
            block[clipped.slices(area.x, area.y)] = render_region(self._canvas.root, clipped)
        for ty in range(ty0, ty1):
            for tx in range(tx0, tx1):
                y, x = (ty - ty0) * TILE, (tx - tx0) * TILE
                tile = block[y : y + TILE, x : x + TILE].copy()
                tile.flags.writeable = False
                self._tiles[(tx, ty)] = tile
                self.tiles_rendered += 1

    def _fill_missing(self, rect: Rect) -> None:
        xs, ys = tile_range(rect)
        missing = [(tx, ty) for ty in ys for tx in xs if (tx, ty) not in self._tiles]
        if not missing:
            return
        mx0 = min(k[0] for k in missing)
        mx1 = max(k[0] for k in missing) + 1
        my0 = min(k[1] for k in missing)
        my1 = max(k[1] for k in missing) + 1
        box = (mx1 - mx0) * (my1 - my0)
        if box <= self._MAX_BATCH * self._MAX_BATCH and 2 * len(missing) >= box:
            self._compute(mx0, my0, mx1, my1)  # dense enough: one call
            return
        # Otherwise batch horizontal runs of missing tiles row by row.
        missing_set = set(missing)
        for ty in range(my0, my1):
            tx = mx0
            while tx < mx1:
                if (tx, ty) not in missing_set:
                    tx += 1
                    continue
                start = tx
                while tx < mx1 and (tx, ty) in missing_set and tx - start < self._MAX_BATCH:
                    tx += 1
                self._compute(start, ty, tx, ty + 1)

    def render(self, rect: Optional[Rect] = None, premultiplied: bool = False) -> np.ndarray:
        """Straight (default) or premultiplied RGBA uint8 of a canvas region.

        Parts of ``rect`` outside the canvas come back transparent.
        """
        canvas = self.canvas_rect()
        rect = canvas if rect is None else rect
        out = np.zeros((max(rect.h, 0), max(rect.w, 0), 4), dtype=np.uint8)
        inside = rect.intersect(canvas)
        if inside.is_empty():
            return out
        self._fill_missing(inside)
        xs, ys = tile_range(inside)
        for ty in ys:
            for tx in xs:
                key = (tx, ty)
                tile = self._tiles[key]
                self._tiles.move_to_end(key)
                tr = Rect(tx * TILE, ty * TILE, TILE, TILE)
                part = inside.intersect(tr)
                out[part.slices(rect.x, rect.y)] = tile[part.slices(tr.x, tr.y)]
        while len(self._tiles) > self.max_tiles:
            self._tiles.popitem(last=False)
        return straight_to_premultiplied(out) if premultiplied else out

