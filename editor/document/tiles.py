"""Sparse tiled pixel storage with copy-on-write undo deltas.

Pixel format (decided here, used everywhere): 8-bit **straight** (not
premultiplied) RGBA, sRGB values. Straight alpha is what PNG/OpenRaster store,
so load/save is lossless and round-trips are bit exact; compositing converts
to float32 premultiplied internally. Fully transparent pixels are kept in the
canonical form (0, 0, 0, 0): colour under alpha 0 is invisible, and a single
representation lets an all-zero tile be dropped to keep layers sparse.

Tiles are 64x64 (Krita's size): one 64 px dab touches at most 4 tiles, so undo
data per dab is at most ~64 KiB and re-compositing stays local.

Copy-on-write rule: an array stored in a grid is read-only (numpy
``writeable=False``). Edits go through :class:`TileTransaction`, which swaps a
private writable copy into the grid on first touch and freezes it on commit.
Undo deltas and duplicated layers can therefore share tile arrays safely.
"""

from __future__ import annotations

from typing import Iterator, Optional

import numpy as np

from .geometry import EMPTY_RECT, Rect

TILE = 64

TileKey = tuple[int, int]


def freeze(arr: np.ndarray) -> np.ndarray:
    arr.flags.writeable = False
    return arr


def canonicalize_rgba(arr: np.ndarray) -> np.ndarray:
    """Zero the colour of fully transparent pixels, in place."""
    clear = arr[..., 3] == 0
    if clear.any():
        arr[clear] = 0
    return arr


def tile_range(rect: Rect) -> tuple[range, range]:
    """Tile column and row indices overlapping a local-coordinate rect."""
    if rect.is_empty():
        return range(0), range(0)
    return (
        range(rect.x // TILE, (rect.x1 - 1) // TILE + 1),
        range(rect.y // TILE, (rect.y1 - 1) // TILE + 1),
    )


def tile_rect(key: TileKey) -> Rect:
    return Rect(key[0] * TILE, key[1] * TILE, TILE, TILE)


class TileGrid:
    """An unbounded sparse raster: missing tiles read as ``default``.

    ``channels`` is 4 for RGBA layers (default 0 = transparent) and 1 for
    8-bit masks (default 255 = fully revealed); 1-channel tiles are 2-D.
    """

    __slots__ = ("channels", "default", "_tiles")

    def __init__(self, channels: int = 4, default: int = 0) -> None:
        if channels not in (1, 4):
            raise ValueError("channels must be 1 or 4")
        self.channels = channels
        self.default = int(default)
        self._tiles: dict[TileKey, np.ndarray] = {}

    # -- basic access -----------------------------------------------------
    @property
    def tile_shape(self) -> tuple[int, ...]:
        return (TILE, TILE) if self.channels == 1 else (TILE, TILE, self.channels)

    def new_tile(self) -> np.ndarray:
        return np.full(self.tile_shape, self.default, dtype=np.uint8)

    def get(self, key: TileKey) -> Optional[np.ndarray]:
        return self._tiles.get(key)

    def put(self, key: TileKey, arr: Optional[np.ndarray]) -> None:
        if arr is None:
            self._tiles.pop(key, None)
            return
        if arr.shape != self.tile_shape or arr.dtype != np.uint8:
            raise ValueError(f"tile must be uint8 {self.tile_shape}, got {arr.dtype} {arr.shape}")
        self._tiles[key] = arr

    def keys(self) -> list[TileKey]:
        return list(self._tiles.keys())

    def items(self) -> Iterator[tuple[TileKey, np.ndarray]]:
        return iter(list(self._tiles.items()))

    def __len__(self) -> int:
        return len(self._tiles)

    def byte_size(self) -> int:
        return sum(a.nbytes for a in self._tiles.values())

    def is_blank_tile(self, arr: np.ndarray) -> bool:
        """True when a tile equals the default everywhere (so it need not be stored)."""
        if self.channels == 4:
            return not arr[..., 3].any()  # canonical form: alpha 0 means all zero
        return bool(arr.min() == self.default and arr.max() == self.default)

    def is_blank_tile_part(self, part: np.ndarray) -> bool:
        """Like is_blank_tile for any sub-array of a tile."""
        if self.channels == 4:
            return not part[..., 3].any()
        return bool(part.min() == self.default and part.max() == self.default)

    def copy(self) -> "TileGrid":
        """Shallow copy; tiles are shared, which is safe because they are read-only."""
        out = TileGrid(self.channels, self.default)
        out._tiles = dict(self._tiles)
        return out

    def same_content(self, other: "TileGrid") -> bool:
        if self.channels != other.channels or self.default != other.default:
            return False
        if self._tiles.keys() != other._tiles.keys():
            return False
        return all(a is other._tiles[k] or np.array_equal(a, other._tiles[k]) for k, a in self._tiles.items())

    # -- geometry ---------------------------------------------------------
    def tile_bounds(self) -> Rect:
        """Tile-aligned bounding box of the stored tiles, in local coordinates."""
        if not self._tiles:
            return EMPTY_RECT
        xs = [k[0] for k in self._tiles]
        ys = [k[1] for k in self._tiles]
        return Rect.from_bounds(min(xs) * TILE, min(ys) * TILE, (max(xs) + 1) * TILE, (max(ys) + 1) * TILE)

    def _diff_mask(self, arr: np.ndarray) -> np.ndarray:
        return arr[..., 3] != 0 if self.channels == 4 else arr != self.default

    def content_bounds(self) -> Rect:
        """Tight bounding box of the pixels that differ from the default.

        Stored tiles are never blank (commits drop blank tiles), so only the
        tiles in the outermost tile rows/columns can hold the extreme pixels;
        if one of those is blank (mid-edit), fall back to scanning all tiles.
        """
        if not self._tiles:
            return EMPTY_RECT
        keys = list(self._tiles)
        min_tx = min(k[0] for k in keys)
        max_tx = max(k[0] for k in keys)
        min_ty = min(k[1] for k in keys)
        max_ty = max(k[1] for k in keys)
        edge = [k for k in keys if k[0] in (min_tx, max_tx) or k[1] in (min_ty, max_ty)]
        x0 = y0 = 1 << 62
        x1 = y1 = -(1 << 62)
        for key in edge:
            diff = self._diff_mask(self._tiles[key])
            cols = np.flatnonzero(diff.any(axis=0))
            if cols.size == 0:
                return self._content_bounds_full()
            rows = np.flatnonzero(diff.any(axis=1))
            bx, by = key[0] * TILE, key[1] * TILE
            x0, x1 = min(x0, bx + int(cols[0])), max(x1, bx + int(cols[-1]) + 1)
            y0, y1 = min(y0, by + int(rows[0])), max(y1, by + int(rows[-1]) + 1)
        return Rect.from_bounds(x0, y0, x1, y1)

    def _content_bounds_full(self) -> Rect:
        out = EMPTY_RECT
        for key, arr in self._tiles.items():
            diff = self._diff_mask(arr)
            rows = np.flatnonzero(diff.any(axis=1))
            if rows.size == 0:
                continue
            cols = np.flatnonzero(diff.any(axis=0))
            x0, y0 = key[0] * TILE, key[1] * TILE
            out = out.union(Rect.from_bounds(x0 + cols[0], y0 + rows[0], x0 + cols[-1] + 1, y0 + rows[-1] + 1))
        return out

    def has_tiles_in(self, rect: Rect) -> bool:
        xs, ys = tile_range(rect)
        if len(xs) * len(ys) > len(self._tiles):
            return any(k[0] in xs and k[1] in ys for k in self._tiles)
        return any((tx, ty) in self._tiles for ty in ys for tx in xs)

    def keys_in(self, rect: Rect) -> list[TileKey]:
        xs, ys = tile_range(rect)
        if len(xs) * len(ys) > len(self._tiles):
            return [k for k in self._tiles if k[0] in xs and k[1] in ys]
        return [(tx, ty) for ty in ys for tx in xs if (tx, ty) in self._tiles]

    # -- bulk read/write --------------------------------------------------
    def read_region(self, rect: Rect) -> np.ndarray:
        """Copy of a local-coordinate region; missing tiles read as the default."""
        shape = (rect.h, rect.w) if self.channels == 1 else (rect.h, rect.w, self.channels)
        out = np.full(shape, self.default, dtype=np.uint8)
        for key in self.keys_in(rect):
            tr = tile_rect(key)
            part = rect.intersect(tr)
            out[part.slices(rect.x, rect.y)] = self._tiles[key][part.slices(tr.x, tr.y)]
        return out

    def read_region_or_none(self, rect: Rect) -> Optional[np.ndarray]:
        """Like read_region but None when no stored tile overlaps (fast skip)."""
        if not self.has_tiles_in(rect):
            return None
        return self.read_region(rect)

    @classmethod
    def from_array(cls, arr: np.ndarray, x: int = 0, y: int = 0, default: int = 0) -> "TileGrid":
        """Tile a dense array placed with its top-left at local (x, y).

        Blank tiles are found with one vectorised reduction over a padded
        copy of the alpha plane; only non-blank tiles are copied (each into
        its own array, so undo memory accounting stays exact).
        """
        channels = 1 if arr.ndim == 2 else arr.shape[2]
        grid = cls(channels, default)
        h, w = arr.shape[:2]
        if h == 0 or w == 0:
            return grid
        ox, oy = x % TILE, y % TILE
        tx0, ty0 = (x - ox) // TILE, (y - oy) // TILE
        nty, ntx = -(-(h + oy) // TILE), -(-(w + ox) // TILE)
        plane_default = 0 if channels == 4 else default
        plane = np.full((nty * TILE, ntx * TILE), plane_default, dtype=np.uint8)
        plane[oy : oy + h, ox : ox + w] = arr[..., 3] if channels == 4 else arr
        blocks = plane.reshape(nty, TILE, ntx, TILE)
        hi = blocks.max(axis=(1, 3))
        lo = blocks.min(axis=(1, 3))
        if channels == 4:
            nonblank = hi > 0
            has_clear = lo == 0  # only these tiles can need canonicalising
        else:
            nonblank = (hi != default) | (lo != default)
        shape = grid.tile_shape
        for j, i in zip(*np.nonzero(nonblank)):
            y0, x0 = int(j) * TILE - oy, int(i) * TILE - ox
            sy0, sy1, sx0, sx1 = max(y0, 0), min(y0 + TILE, h), max(x0, 0), min(x0 + TILE, w)
            if sy1 - sy0 == TILE and sx1 - sx0 == TILE:
                tile = arr[sy0:sy1, sx0:sx1].copy()
            else:
                tile = np.full(shape, default, dtype=np.uint8)
                tile[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = arr[sy0:sy1, sx0:sx1]
            if channels == 4 and has_clear[j, i]:
                # Canonical form without fancy indexing: colour * (alpha != 0).
                np.multiply(tile, tile[..., 3:4] != 0, out=tile)
            grid._tiles[(tx0 + int(i), ty0 + int(j))] = freeze(tile)
        return grid


class TileDelta:
    """Before/after tiles of one edit to one grid; the unit of pixel undo.

    Only touched tiles are recorded, and ``None`` stands for "no tile", so a
    dab on a huge empty canvas costs only the few tiles it changed.
    """

    __slots__ = ("before", "after")

    def __init__(self, before: dict[TileKey, Optional[np.ndarray]], after: dict[TileKey, Optional[np.ndarray]]):
        self.before = before
        self.after = after

    def is_empty(self) -> bool:
        return not self.before

    def apply(self, grid: TileGrid, which: str) -> None:
        src = self.after if which == "after" else self.before
        for key, arr in src.items():
            grid.put(key, arr)

    def bounds(self) -> Rect:
        out = EMPTY_RECT
        for key in self.before:
            out = out.union(tile_rect(key))
        return out

    def byte_size(self) -> int:
        seen: set[int] = set()
        total = 0
        for d in (self.before, self.after):
            for arr in d.values():
                if arr is not None and id(arr) not in seen:
                    seen.add(id(arr))
                    total += arr.nbytes
        return total


class TileTransaction:
    """Collects copy-on-write edits to one grid until ``commit``."""

    def __init__(self, grid: TileGrid) -> None:
        self.grid = grid
        self.before: dict[TileKey, Optional[np.ndarray]] = {}

    def original(self, key: TileKey) -> Optional[np.ndarray]:
        """The tile as it was before this transaction touched it."""
        if key in self.before:
            return self.before[key]
        return self.grid.get(key)

    def writable(self, key: TileKey) -> np.ndarray:
        if key not in self.before:
            old = self.grid.get(key)
            self.before[key] = old
            new = old.copy() if old is not None else self.grid.new_tile()
            self.grid.put(key, new)
            return new
        tile = self.grid.get(key)
        if tile is None or not tile.flags.writeable:
            # A previous commit froze it or it was dropped; start a fresh copy.
            tile = tile.copy() if tile is not None else self.grid.new_tile()
            self.grid.put(key, tile)
        return tile

    def commit(self) -> TileDelta:
        """Freeze the edited tiles, drop blank ones and no-op changes."""
        before: dict[TileKey, Optional[np.ndarray]] = {}
        after: dict[TileKey, Optional[np.ndarray]] = {}
        for key, old in self.before.items():
            new = self.grid.get(key)
            if new is not None and self.grid.is_blank_tile(new):
                self.grid.put(key, None)
                new = None
            if new is not None and new.flags.writeable:
                freeze(new)
            if old is None and new is None:
                continue
            if old is not None and new is not None and np.array_equal(old, new):
                self.grid.put(key, old)  # keep sharing the original array
                continue
            before[key] = old
            after[key] = new
        self.before = {}
        return TileDelta(before, after)

    def rollback(self) -> None:
        for key, old in self.before.items():
            self.grid.put(key, old)
        self.before = {}
