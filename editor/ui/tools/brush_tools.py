"""Round brush, eraser and mask brush.

Each press..release is one model stroke (``begin_stroke``/``end_stroke``),
hence exactly one undo step however many dabs it lays. Dabs are placed by
the model's ``StrokeSpacer`` along the smoothed pointer path, so density does
not depend on the event rate; tablet pressure scales size (and optionally
flow) through ``BrushSettings``.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np
from PySide6.QtCore import QPointF, Qt

from editor.document import TILE, BrushSettings, RasterLayer, Rect, StrokeSpacer, dab_mask

from ..session import ToolRefused
from .base import PointerEvent, Tool
from .smoothing import StrokeSmoother


def pick_color(host, pos: QPointF) -> bool:
    """Set the paint colour from the composite under ``pos`` (Ctrl+click, eyedropper)."""
    doc = host.session.document
    x, y = int(pos.x() // 1), int(pos.y() // 1)
    if not (0 <= x < doc.width and 0 <= y < doc.height):
        return False
    px = doc.render(Rect(x, y, 1, 1))[0, 0]
    if px[3] == 0:
        host.show_message("Nothing to pick there (transparent)")
        return False
    host.session.set_color((int(px[0]), int(px[1]), int(px[2])))
    return True


def grey_level(rgb: tuple[int, int, int]) -> int:
    """Mask painting uses the colour's luminance (GIMP paints masks in grey)."""
    r, g, b = rgb
    return int(round(0.299 * r + 0.587 * g + 0.114 * b))


class BrushTool(Tool):
    """Paint (``kind="paint"``) or erase (``kind="erase"``) on the active
    layer, or on its mask when the mask is the edit target."""

    def __init__(self, host, kind: str) -> None:
        super().__init__(host)
        self.brush_kind = kind
        self.tool_id = "brush" if kind == "paint" else "eraser"
        self.label = "Brush" if kind == "paint" else "Eraser"
        self._layer: Optional[RasterLayer] = None
        self._target = "pixels"
        self._brush: Optional[BrushSettings] = None
        self._erase = False
        self._spacer: Optional[StrokeSpacer] = None
        self._smoother = StrokeSmoother(0.0)
        self._last_end: Optional[QPointF] = None  # for Shift+click straight lines
        self._last_pressure = 1.0

    def press(self, ev: PointerEvent) -> None:
        if ev.button != Qt.MouseButton.LeftButton:
            return
        if self.brush_kind == "paint" and ev.modifiers & Qt.KeyboardModifier.ControlModifier:
            pick_color(self.host, ev.pos)  # Krita: Ctrl+click picks a colour
            return
        try:
            self._layer, self._target = self.session.paint_target()
        except ToolRefused as exc:
            self.host.show_message(str(exc))
            return
        doc = self.session.document
        if doc.stroke_active:
            return
        self._erase = self.brush_kind == "erase" or ev.eraser
        brush = self.session.brush("erase" if self._erase else "paint")
        color = self.session.color
        if self._target == "mask":
            g = grey_level(color)
            color = (g, g, g)
        self._brush = dataclasses.replace(brush, color=color)
        self._spacer = StrokeSpacer(self._brush)
        self._smoother = StrokeSmoother(self.session.smoothing)
        what = "Erase" if self._erase else "Paint"
        doc.begin_stroke(f"{what} on mask" if self._target == "mask" else f"{what} stroke")
        self.active = True
        p = ev.pressure
        if ev.modifiers & Qt.KeyboardModifier.ShiftModifier and self._last_end is not None:
            # Straight line from the previous stroke's end (Krita, GIMP, Photoshop).
            self._feed(self._last_end.x(), self._last_end.y(), self._last_pressure)
            self._feed(ev.pos.x(), ev.pos.y(), p)
            self._smoother.start(ev.pos.x(), ev.pos.y(), p)
        else:
            x, y, p = self._smoother.start(ev.pos.x(), ev.pos.y(), p)
            self._feed(x, y, p)

    def move(self, ev: PointerEvent) -> None:
        if not self.active:
            return
        self._feed(*self._smoother.add(ev.pos.x(), ev.pos.y(), ev.pressure))

    def release(self, ev: PointerEvent) -> None:
        if not self.active:
            return
        # Pens report ~0 pressure on lift; keep the last real value for the tail.
        pressure = ev.pressure if not ev.tablet or ev.pressure > 0 else self._smoother.pressure
        try:
            for x, y, p in self._smoother.finish(ev.pos.x(), ev.pos.y(), pressure):
                self._feed(x, y, p)
        finally:
            self.active = False
            self.session.document.end_stroke()
            self._last_end = QPointF(ev.pos)
            self._last_pressure = pressure
            self._spacer = None

    def cancel(self) -> None:
        if self.active:
            self.session.document.cancel_stroke()
        self.active = False
        self._spacer = None

    def _feed(self, x: float, y: float, pressure: float) -> None:
        assert self._spacer is not None and self._layer is not None and self._brush is not None
        doc = self.session.document
        for dx, dy, dp in self._spacer.add_point(x, y, pressure):
            doc.paint_dab(self._layer, dx, dy, self._brush, dp, erase=self._erase, target=self._target)


class _Coverage:
    """Per-stroke coverage (Krita's "wash"): dabs build up to the brush
    opacity and no further, however often they overlap. Sparse 64 px tiles."""

    def __init__(self) -> None:
        self._tiles: dict[tuple[int, int], np.ndarray] = {}

    def add(self, x0: int, y0: int, m: np.ndarray, opacity: float) -> None:
        h, w = m.shape
        for ty in range(y0 // TILE, (y0 + h - 1) // TILE + 1):
            for tx in range(x0 // TILE, (x0 + w - 1) // TILE + 1):
                tr = Rect(tx * TILE, ty * TILE, TILE, TILE)
                part = tr.intersect(Rect(x0, y0, w, h))
                mp = m[part.slices(x0, y0)]
                if not mp.any():
                    continue
                tile = self._tiles.get((tx, ty))
                if tile is None:
                    tile = self._tiles[(tx, ty)] = np.zeros((TILE, TILE), np.float32)
                c = tile[part.slices(tr.x, tr.y)]
                np.maximum(c, c + mp * (np.float32(opacity) - c), out=c)

    def read(self, rect: Rect) -> np.ndarray:
        out = np.zeros((rect.h, rect.w), np.float32)
        for ty in range(rect.y // TILE, (rect.y1 - 1) // TILE + 1):
            for tx in range(rect.x // TILE, (rect.x1 - 1) // TILE + 1):
                tile = self._tiles.get((tx, ty))
                if tile is None:
                    continue
                tr = Rect(tx * TILE, ty * TILE, TILE, TILE)
                part = tr.intersect(rect)
                out[part.slices(rect.x, rect.y)] = tile[part.slices(tr.x, tr.y)]
        return out


class MaskBrushTool(Tool):
    """Paint the selection itself (GIMP's quick mask, Krita AI's inpaint
    mask). Alt or the stylus eraser removes. The selection is edited on a
    working copy while the pen is down and committed as one undo step."""

    tool_id = "mask_brush"
    label = "Mask brush"
    brush_kind = "mask"

    def __init__(self, host) -> None:
        super().__init__(host)
        self._base: Optional[np.ndarray] = None
        self._work: Optional[np.ndarray] = None
        self._coverage = _Coverage()
        self._spacer: Optional[StrokeSpacer] = None
        self._brush: Optional[BrushSettings] = None
        self._value = 255
        self._smoother = StrokeSmoother(0.0)

    def press(self, ev: PointerEvent) -> None:
        if ev.button != Qt.MouseButton.LeftButton or self.session.document.stroke_active:
            return
        doc = self.session.document
        current = doc.selection.mask
        self._base = current if current is not None else np.zeros((doc.height, doc.width), np.uint8)
        self._work = self._base.copy()
        self._coverage = _Coverage()
        self._brush = self.session.brush("mask")
        self._spacer = StrokeSpacer(self._brush)
        self._smoother = StrokeSmoother(self.session.smoothing)
        subtract = ev.eraser or bool(ev.modifiers & Qt.KeyboardModifier.AltModifier)
        self._value = 0 if subtract else 255
        self.active = True
        self._feed(*self._smoother.start(ev.pos.x(), ev.pos.y(), ev.pressure))

    def move(self, ev: PointerEvent) -> None:
        if self.active:
            self._feed(*self._smoother.add(ev.pos.x(), ev.pos.y(), ev.pressure))

    def release(self, ev: PointerEvent) -> None:
        if not self.active:
            return
        pressure = ev.pressure if not ev.tablet or ev.pressure > 0 else self._smoother.pressure
        for x, y, p in self._smoother.finish(ev.pos.x(), ev.pos.y(), pressure):
            self._feed(x, y, p)
        self.active = False
        work = self._work
        self._work = self._base = None
        assert work is not None
        doc = self.session.document
        doc.set_selection(work if work.any() else None, "Mask brush")
        if doc.selection.mask is None or doc.selection.mask is not work:
            # Nothing changed (or the selection emptied): show the model's state again.
            self.host.set_working_selection(None, Rect(0, 0, doc.width, doc.height))

    def cancel(self) -> None:
        if self.active:
            self.active = False
            doc = self.session.document
            self._work = self._base = None
            self.host.set_working_selection(None, Rect(0, 0, doc.width, doc.height))

    def _feed(self, x: float, y: float, pressure: float) -> None:
        assert self._spacer is not None and self._brush is not None
        assert self._work is not None and self._base is not None
        doc = self.session.document
        canvas = Rect(0, 0, doc.width, doc.height)
        dirty = Rect(0, 0, 0, 0)
        for dx, dy, dp in self._spacer.add_point(x, y, pressure):
            p = min(max(dp, 0.0), 1.0)
            b = self._brush
            size = max(b.size * p if b.pressure_size else b.size, b.min_size)
            x0, y0, m = dab_mask(size, b.hardness, dx, dy)
            flow = b.flow * (p if b.pressure_flow else 1.0)
            if flow < 1.0:
                m *= np.float32(flow)
            self._coverage.add(x0, y0, m, b.opacity)
            dirty = dirty.union(Rect(x0, y0, m.shape[1], m.shape[0]).intersect(canvas))
        if dirty.is_empty():
            return
        cov = self._coverage.read(dirty)
        base = self._base[dirty.slices()].astype(np.float32)
        self._work[dirty.slices()] = np.rint(base + (np.float32(self._value) - base) * cov).astype(np.uint8)
        self.host.set_working_selection(self._work, dirty)
