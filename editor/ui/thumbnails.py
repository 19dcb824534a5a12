"""Small layer previews for the layers panel.

Built from the layer's sparse tiles by strided sampling, so the cost depends
on the number of stored tiles and the thumbnail size, not on the canvas
area (a 16k canvas does not get read in full for a 40 px icon).
"""

from __future__ import annotations

import math
from typing import Optional

import cv2
import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QIcon, QImage, QPainter, QPixmap

from editor.document import TILE, RasterLayer, Rect

THUMB_W, THUMB_H = 40, 30


def _sample(grid, origin_x: int, origin_y: int, canvas: Rect, step: int) -> np.ndarray:
    """Every ``step``-th canvas pixel of a tile grid placed at (origin_x, origin_y).

    Loops over (tile column, tile row) pairs that hold sample points, so the
    work is bounded by min(stored tiles, samples), never by the canvas area.
    """
    xs = np.arange(0, canvas.w, step) - origin_x  # layer-local sample coordinates
    ys = np.arange(0, canvas.h, step) - origin_y
    shape = (ys.size, xs.size, 4) if grid.channels == 4 else (ys.size, xs.size)
    out = np.full(shape, grid.default, np.uint8)
    col_tiles, row_tiles = xs // TILE, ys // TILE
    cols_of = {int(c): np.nonzero(col_tiles == c)[0] for c in np.unique(col_tiles)}
    rows_of = {int(r): np.nonzero(row_tiles == r)[0] for r in np.unique(row_tiles)}
    for ty, rows in rows_of.items():
        for tx, cols in cols_of.items():
            tile = grid.get((tx, ty))
            if tile is not None:
                out[np.ix_(rows, cols)] = tile[np.ix_(ys[rows] - ty * TILE, xs[cols] - tx * TILE)]
    return out


def layer_thumbnail(layer: RasterLayer, width: int, height: int, mask: bool = False) -> QImage:
    """A THUMB_W x THUMB_H preview of the layer (or its mask) over the canvas."""
    canvas = Rect(0, 0, width, height)
    scale = min(THUMB_W / width, THUMB_H / height)
    tw, th = max(1, round(width * scale)), max(1, round(height * scale))
    # Sample at about twice the thumbnail resolution, then area-average down.
    step = max(1, int(math.floor(min(width / (2 * tw), height / (2 * th)))))
    grid = layer.mask if mask else layer.tiles
    if grid is None:
        return QImage()
    arr = _sample(grid, layer.x, layer.y, canvas, step)
    small = cv2.resize(arr, (tw, th), interpolation=cv2.INTER_AREA)
    if mask:
        rgba = np.empty((th, tw, 4), np.uint8)
        rgba[..., :3] = small[..., None]
        rgba[..., 3] = 255
    else:
        rgba = np.ascontiguousarray(small)
    image = QImage(rgba.data, tw, th, tw * 4, QImage.Format.Format_RGBA8888).copy()
    return image


def thumbnail_icon(image: QImage) -> QIcon:
    """The preview centred on a checkerboard, framed."""
    pm = QPixmap(THUMB_W + 2, THUMB_H + 2)
    pm.fill(Qt.GlobalColor.transparent)
    p = QPainter(pm)
    x, y = 1 + (THUMB_W - image.width()) // 2, 1 + (THUMB_H - image.height()) // 2
    for j in range(0, image.height(), 5):
        for i in range(0, image.width(), 5):
            shade = 235 if ((i // 5) + (j // 5)) % 2 == 0 else 200
            p.fillRect(x + i, y + j, min(5, image.width() - i), min(5, image.height() - j), QColor(shade, shade, shade))
    p.drawImage(x, y, image)
    p.setPen(QColor(20, 20, 20))
    p.drawRect(x - 1, y - 1, image.width() + 1, image.height() + 1)
    p.end()
    return QIcon(pm)


def thumbnail_for(layer: RasterLayer, width: int, height: int, mask: bool = False) -> Optional[QIcon]:
    image = layer_thumbnail(layer, width, height, mask)
    return None if image.isNull() else thumbnail_icon(image)


def group_icon() -> QIcon:
    """A folder glyph the size of a thumbnail, so group rows line up with layers."""
    pm = QPixmap(THUMB_W + 2, THUMB_H + 2)
    pm.fill(Qt.GlobalColor.transparent)
    p = QPainter(pm)
    p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    p.setPen(QColor(20, 20, 20))
    p.setBrush(QColor(196, 160, 84))
    p.drawRoundedRect(6, 5, 14, 6, 2, 2)  # tab
    p.setBrush(QColor(222, 186, 104))
    p.drawRoundedRect(6, 8, 30, 19, 2, 2)  # body
    p.end()
    return QIcon(pm)

