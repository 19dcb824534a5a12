"""Move layer, eyedropper, fill, zoom and pan tools."""

from __future__ import annotations

from typing import Optional

import numpy as np
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QCursor, QKeyEvent

from editor.document import RasterLayer, Rect
from editor.document.selection import mask_bounds

from ..session import ToolRefused
from .base import PointerEvent, Tool
from .brush_tools import grey_level, pick_color
from .flood import flood_region


class MoveTool(Tool):
    """Drag the active raster layer. Offsets set during one drag merge into
    one undo step (the model merges consecutive offset changes); the merge is
    broken at press and release so two drags stay two steps."""

    tool_id = "move"
    label = "Move layer"

    def __init__(self, host) -> None:
        super().__init__(host)
        self._layer: Optional[RasterLayer] = None
        self._start = QPointF()
        self._origin = (0, 0)

    def cursor(self) -> QCursor:
        return QCursor(Qt.CursorShape.SizeAllCursor)

    def press(self, ev: PointerEvent) -> None:
        if ev.button != Qt.MouseButton.LeftButton:
            return
        layer = self.session.active_layer()
        if layer is None:
            self.host.show_message("Select a paint layer to move")
            return
        self.session.document.undo_stack.break_merge()
        self._layer, self._start, self._origin = layer, QPointF(ev.pos), (layer.x, layer.y)
        self.active = True

    def move(self, ev: PointerEvent) -> None:
        if not self.active or self._layer is None:
            return
        d = ev.pos - self._start
        dx, dy = round(d.x()), round(d.y())
        if ev.modifiers & Qt.KeyboardModifier.ShiftModifier:  # constrain to one axis
            if abs(dx) > abs(dy):
                dy = 0
            else:
                dx = 0
        self.session.document.set_layer_offset(self._layer, self._origin[0] + dx, self._origin[1] + dy)

    def release(self, ev: PointerEvent) -> None:
        if self.active:
            self.move(ev)
            self.session.document.undo_stack.break_merge()
        self.active = False
        self._layer = None

    def cancel(self) -> None:
        if self.active and self._layer is not None:
            self.session.document.set_layer_offset(self._layer, *self._origin)
            self.session.document.undo_stack.break_merge()
        self.active = False
        self._layer = None

    def key_press(self, event: QKeyEvent) -> bool:
        """Arrow keys nudge by 1 px (Shift: 10 px)."""
        steps = {Qt.Key.Key_Left: (-1, 0), Qt.Key.Key_Right: (1, 0), Qt.Key.Key_Up: (0, -1), Qt.Key.Key_Down: (0, 1)}
        step = steps.get(Qt.Key(event.key()))
        layer = self.session.active_layer()
        if step is None or layer is None or self.active:
            return False
        n = 10 if event.modifiers() & Qt.KeyboardModifier.ShiftModifier else 1
        self.session.document.translate_layer(layer, step[0] * n, step[1] * n)
        return True


class EyedropperTool(Tool):
    tool_id = "eyedropper"
    label = "Colour picker"

    def press(self, ev: PointerEvent) -> None:
        if ev.button == Qt.MouseButton.LeftButton:
            self.active = True
            pick_color(self.host, ev.pos)

    def move(self, ev: PointerEvent) -> None:
        if self.active:
            pick_color(self.host, ev.pos)

    def release(self, ev: PointerEvent) -> None:
        self.active = False


class FillTool(Tool):
    """Click fills the contiguous similar-colour area of the active layer (or
    of the composite with "sample merged"), limited by the selection. With
    "fill whole selection" or Shift+click it fills the selection (the whole
    layer when nothing is selected). One undo step either way."""

    tool_id = "fill"
    label = "Fill"

    def press(self, ev: PointerEvent) -> None:
        if ev.button != Qt.MouseButton.LeftButton:
            return
        try:
            layer, target = self.session.paint_target()
        except ToolRefused as exc:
            self.host.show_message(str(exc))
            return
        doc = self.session.document
        if doc.stroke_active:
            return
        color = self.session.color
        if target == "mask":
            g = grey_level(color)
            color = (g, g, g)
        whole = self.session.fill_whole_selection or bool(ev.modifiers & Qt.KeyboardModifier.ShiftModifier)
        if whole:
            doc.fill_selection(layer, color, target=target)
            return
        x, y = int(ev.pos.x() // 1), int(ev.pos.y() // 1)
        if not (0 <= x < doc.width and 0 <= y < doc.height):
            return
        canvas = Rect(0, 0, doc.width, doc.height)
        if target == "mask":
            source = layer.read_mask(canvas)
        elif self.session.fill_sample_merged:
            source = doc.render(canvas)
        else:
            source = layer.read(canvas)
        region = flood_region(source, x, y, self.session.fill_tolerance)
        box = mask_bounds(region.view(np.uint8))
        if box.is_empty():
            return
        coverage = region[box.slices()].astype(np.float32)
        # A one-dab stroke: the model applies selection, alpha lock and undo.
        doc.begin_stroke("Fill")
        try:
            doc.apply_dab(layer, box.x, box.y, mask=coverage, color=color, target=target)
        finally:
            doc.end_stroke()


class ZoomTool(Tool):
    tool_id = "zoom"
    label = "Zoom"

    def cursor(self) -> QCursor:
        return QCursor(Qt.CursorShape.CrossCursor)

    def press(self, ev: PointerEvent) -> None:
        out = ev.button == Qt.MouseButton.RightButton or bool(ev.modifiers & Qt.KeyboardModifier.AltModifier)
        if ev.button in (Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton):
            self.host.zoom_step(-1 if out else 1, ev.widget_pos)


class PanTool(Tool):
    tool_id = "pan"
    label = "Pan"

    def __init__(self, host) -> None:
        super().__init__(host)
        self._last = QPointF()

    def cursor(self) -> QCursor:
        return QCursor(Qt.CursorShape.ClosedHandCursor if self.active else Qt.CursorShape.OpenHandCursor)

    def press(self, ev: PointerEvent) -> None:
        if ev.button == Qt.MouseButton.LeftButton:
            self.active = True
            self._last = QPointF(ev.widget_pos)

    def move(self, ev: PointerEvent) -> None:
        if self.active:
            d = ev.widget_pos - self._last
            self._last = QPointF(ev.widget_pos)
            self.host.pan_by(d.x(), d.y())

    def release(self, ev: PointerEvent) -> None:
        self.active = False
