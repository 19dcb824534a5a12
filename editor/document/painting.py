"""Pixel edits on layer tiles: dabs, fills, mask application, merge down.

All edits run through a :class:`~.tiles.TileTransaction`, so undo stores
only the touched tiles. Strokes use an indirect "wash" buffer (as Krita
does): each dab raises a per-stroke coverage buffer and the pixels are
recomputed from the pre-stroke tiles, so a stroke never exceeds its opacity
however often its dabs overlap, and rounding never accumulates.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .blendmodes import composite, premultiplied_to_straight_u8, straight_u8_to_planar
from .geometry import Rect
from .layers import RasterLayer
from .selection import Selection
from .tiles import TILE, TileDelta, TileGrid, TileKey, TileTransaction, canonicalize_rgba, tile_range, tile_rect

_INV255 = np.float32(1.0 / 255.0)

MODES = ("normal", "erase")
TARGETS = ("pixels", "mask")


def _rgb(color: Sequence[float] | int | float) -> np.ndarray:
    if isinstance(color, (int, float, np.integer, np.floating)):
        color = (color, color, color)
    c = np.asarray(color, dtype=np.float32)[:3]
    return c * _INV255


def _source_over(base: np.ndarray, colour: np.ndarray, a: np.ndarray, mode: str, alpha_lock: bool) -> np.ndarray:
    """Source-over (or erase) straight colour ``colour`` (floats 0..1, broadcastable to the
    pixels) with coverage ``a`` onto straight RGBA uint8 ``base``."""
    ab = base[..., 3].astype(np.float32) * _INV255
    cb = base[..., :3].astype(np.float32) * _INV255
    out = np.empty_like(base)
    if mode == "erase":
        if alpha_lock:
            return base.copy()  # erasing cannot change a locked alpha
        out[..., :3] = base[..., :3]
        out[..., 3] = np.rint(ab * (1.0 - a) * 255.0)
    elif alpha_lock:
        # Alpha lock is src-atop: recolour what is there, keep its alpha.
        out[..., :3] = np.rint((cb + (colour - cb) * a[..., None]) * 255.0)
        out[..., 3] = base[..., 3]
    else:
        ao = a + ab * (1.0 - a)
        num = colour * a[..., None] + cb * (ab * (1.0 - a))[..., None]
        col = np.zeros_like(cb)
        np.divide(num, ao[..., None], out=col, where=ao[..., None] > 0)
        out[..., :3] = np.rint(np.clip(col, 0.0, 1.0) * 255.0)
        out[..., 3] = np.rint(ao * 255.0)
    return canonicalize_rgba(out)


def blend_pixels(base: np.ndarray, eff: np.ndarray, rgb: np.ndarray, mode: str, alpha_lock: bool) -> np.ndarray:
    """Paint a flat colour with coverage ``eff`` onto straight RGBA uint8 ``base``."""
    return _source_over(base, rgb, eff, mode, alpha_lock)


def blend_patch(base: np.ndarray, patch: np.ndarray, strength: np.ndarray, mode: str, alpha_lock: bool) -> np.ndarray:
    """Source-over (or erase) a straight RGBA patch onto straight RGBA ``base``."""
    a = patch[..., 3].astype(np.float32) * _INV255 * strength
    colour = patch[..., :3].astype(np.float32) * _INV255
    return _source_over(base, colour, a, mode, alpha_lock)


def blend_mask(base: np.ndarray, eff: np.ndarray, value: float, mode: str) -> np.ndarray:
    """Paint a grey ``value`` (erase: 0, i.e. hide) into an 8-bit mask."""
    b = base.astype(np.float32)
    target = 0.0 if mode == "erase" else float(value)
    return np.rint(b + (target - b) * eff).astype(np.uint8)


class LayerEdit:
    """The transaction and wash buffer of one (layer, target) inside a stroke."""

    def __init__(self, layer: RasterLayer, target: str) -> None:
        if target == "mask" and layer.mask is None:
            raise ValueError(f"layer {layer.name!r} has no mask to paint on")
        self.layer = layer
        self.target = target
        self.grid: TileGrid = layer.tiles if target == "pixels" else layer.mask  # type: ignore[assignment]
        self.txn = TileTransaction(self.grid)
        self.coverage: dict[TileKey, np.ndarray] = {}

    def base_part(self, key: TileKey, part: Rect, tr: Rect) -> np.ndarray:
        orig = self.txn.original(key)
        if orig is None:
            shape = (part.h, part.w) if self.grid.channels == 1 else (part.h, part.w, 4)
            return np.full(shape, self.grid.default, dtype=np.uint8)
        return orig[part.slices(tr.x, tr.y)]


def _selection_part(selection: Optional[Selection], canvas_rect: Rect) -> Optional[np.ndarray]:
    if selection is None or not selection.is_active():
        return None
    return selection.region(canvas_rect).astype(np.float32) * _INV255


def dab_coverage(
    edit: LayerEdit,
    x0: int,
    y0: int,
    mask: np.ndarray,
    color,
    mode: str,
    opacity: float,
    selection: Optional[Selection],
) -> Rect:
    """Add one coverage dab (canvas position x0, y0) to a stroke; return its canvas rect."""
    layer = edit.layer
    dab = Rect(int(x0) - layer.x, int(y0) - layer.y, mask.shape[1], mask.shape[0])  # layer-local
    mask = mask.astype(np.float32, copy=False)
    opacity = np.float32(min(max(opacity, 0.0), 1.0))
    rgb = _rgb(color) if color is not None else np.zeros(3, np.float32)
    value = float(rgb[0] * 255.0)
    xs, ys = tile_range(dab)
    for ty in ys:
        for tx in xs:
            key = (tx, ty)
            tr = tile_rect(key)
            part = dab.intersect(tr)
            m = mask[part.slices(dab.x, dab.y)]
            if not m.any():
                continue
            cov = edit.coverage.get(key)
            if cov is None:
                cov = edit.coverage[key] = np.zeros((TILE, TILE), dtype=np.float32)
            c = cov[part.slices(tr.x, tr.y)]
            # Build-up towards the dab's opacity, never past the highest one used.
            np.maximum(c, c + m * (opacity - c), out=c)
            eff = c
            sel = _selection_part(selection, part.translated(layer.x, layer.y))
            if sel is not None:
                eff = c * sel
            base = edit.base_part(key, part, tr)
            if edit.target == "pixels":
                new = blend_pixels(base, eff, rgb, mode, layer.alpha_locked)
            else:
                new = blend_mask(base, eff, value, mode)
            cur = edit.grid.get(key)
            if cur is not None and np.array_equal(cur[part.slices(tr.x, tr.y)], new):
                continue  # nothing visible changed: do not copy the tile for undo
            if cur is None and edit.txn.original(key) is None and edit.grid.is_blank_tile_part(new):
                continue
            edit.txn.writable(key)[part.slices(tr.x, tr.y)] = new
    return dab.translated(layer.x, layer.y)


def dab_patch(
    edit: LayerEdit,
    x0: int,
    y0: int,
    patch: np.ndarray,
    mode: str,
    opacity: float,
    selection: Optional[Selection],
) -> Rect:
    """Composite a straight RGBA uint8 patch directly (no wash buffer)."""
    if edit.target != "pixels":
        raise ValueError("RGBA patches paint pixels; use a coverage mask for layer masks")
    if patch.ndim != 3 or patch.shape[2] != 4 or patch.dtype != np.uint8:
        raise ValueError("patch must be straight RGBA uint8 (h, w, 4)")
    layer = edit.layer
    dab = Rect(int(x0) - layer.x, int(y0) - layer.y, patch.shape[1], patch.shape[0])
    xs, ys = tile_range(dab)
    for ty in ys:
        for tx in xs:
            key = (tx, ty)
            tr = tile_rect(key)
            part = dab.intersect(tr)
            p = patch[part.slices(dab.x, dab.y)]
            if not p[..., 3].any():
                continue
            strength = np.full(p.shape[:2], np.float32(opacity), dtype=np.float32)
            sel = _selection_part(selection, part.translated(layer.x, layer.y))
            if sel is not None:
                strength *= sel
            cur = edit.grid.get(key)
            base = cur[part.slices(tr.x, tr.y)] if cur is not None else np.zeros((part.h, part.w, 4), np.uint8)
            new = blend_patch(base, p, strength, mode, layer.alpha_locked)
            if np.array_equal(base, new):
                continue
            edit.txn.writable(key)[part.slices(tr.x, tr.y)] = new
    return dab.translated(layer.x, layer.y)


def fill_region(
    layer: RasterLayer,
    canvas_rect: Rect,
    color,
    mode: str,
    opacity: float,
    selection: Optional[Selection],
    target: str = "pixels",
) -> TileDelta:
    """Fill (or erase) ``canvas_rect`` limited by the selection; one transaction."""
    edit = LayerEdit(layer, target)
    local = canvas_rect.translated(-layer.x, -layer.y)
    rgb = _rgb(color) if color is not None else np.zeros(3, np.float32)
    xs, ys = tile_range(local)
    for ty in ys:
        for tx in xs:
            key = (tx, ty)
            tr = tile_rect(key)
            part = local.intersect(tr)
            sel = _selection_part(selection, part.translated(layer.x, layer.y))
            if sel is not None and not sel.any():
                continue
            eff = np.full((part.h, part.w), np.float32(opacity), dtype=np.float32)
            if sel is not None:
                eff *= sel
            cur = edit.grid.get(key)
            if cur is None and target == "pixels" and (mode == "erase" or layer.alpha_locked):
                continue  # nothing to erase or recolour
            base = edit.base_part(key, part, tr)
            if target == "pixels":
                new = blend_pixels(base, eff, rgb, mode, layer.alpha_locked)
            else:
                new = blend_mask(base, eff, float(rgb[0] * 255.0), mode)
            if np.array_equal(base, new):
                continue
            edit.txn.writable(key)[part.slices(tr.x, tr.y)] = new
    return edit.txn.commit()


def apply_mask_to_pixels(layer: RasterLayer) -> TileDelta:
    """Multiply the layer's alpha by its mask (the pixel half of "apply mask")."""
    assert layer.mask is not None
    txn = TileTransaction(layer.tiles)
    for key in layer.tiles.keys():
        tr = tile_rect(key)
        m = layer.mask.read_region(tr)
        if m.min() == 255:
            continue
        tile = txn.writable(key)
        tile[..., 3] = ((tile[..., 3].astype(np.uint16) * m + 127) // 255).astype(np.uint8)
        canonicalize_rgba(tile)
    return txn.commit()


def merge_pixels(upper: RasterLayer, lower: RasterLayer) -> TileDelta:
    """Composite ``upper`` (its opacity, mask, blend mode) into ``lower``'s pixels."""
    txn = TileTransaction(lower.tiles)
    if not upper.visible:
        return txn.commit()
    region = upper.canvas_bounds()
    if not upper.blend_mode.is_local:
        region = region.union(lower.canvas_bounds())
    local = region.translated(-lower.x, -lower.y)
    xs, ys = tile_range(local)
    for ty in ys:
        for tx in xs:
            key = (tx, ty)
            tr = tile_rect(key)
            canvas_r = tr.translated(lower.x, lower.y)
            px = upper.tiles.read_region_or_none(upper.to_local(canvas_r))
            if px is None:
                if upper.blend_mode.is_local:
                    continue
                px = np.zeros((TILE, TILE, 4), np.uint8)
            cur = lower.tiles.get(key)
            base = cur if cur is not None else np.zeros((TILE, TILE, 4), np.uint8)
            bcol, balpha = straight_u8_to_planar(base)
            dst = np.empty((4, TILE, TILE), np.float32)
            dst[:3] = bcol * balpha
            dst[3] = balpha
            colour, alpha = straight_u8_to_planar(px, upper.opacity)
            m = upper.read_mask(canvas_r)
            if m is not None:
                alpha *= m.astype(np.float32) * _INV255
            composite(dst, colour, alpha, upper.blend_mode)
            new = premultiplied_to_straight_u8(dst)
            if np.array_equal(base, new):
                continue
            txn.writable(key)[...] = new
    return txn.commit()
