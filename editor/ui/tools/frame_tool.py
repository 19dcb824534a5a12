"""The generation frame tool (G): drag inside the frame to move it, drag a
handle or an edge to resize it, drag outside it to draw a new one. The frame
snaps to the 8-pixel latent grid (the frame type does the snapping); arrow
keys nudge it by one cell (Shift: eight), Enter generates or accepts the
staged result, Escape discards it.

The tool edits the frame through ``host.frame_target`` (the AI host), so it
needs nothing from the AI core itself; while the core is still loading the
target has no frame and the tool says so.
"""

from __future__ import annotations

from typing import Optional, Protocol

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QCursor, QKeyEvent, QPainter, QPen

from ..viewport import Viewport
from .base import PointerEvent, Tool

HANDLE = 4.0  # half the side of a drawn handle (widget px)
GRAB = 6.0  # how close to an edge or handle a press grabs it (widget px)
CELL = 8  # arrow-key nudge (the latent grid)


class FrameTarget(Protocol):
    """What the tool edits (implemented by the AI host)."""

    unavailable_reason: str

    @property
    def frame(self): ...  # a GenerationFrame (x, y, w, h, x1, y1, moved(), with_edges()) or None

    def set_frame(self, frame) -> None: ...

    def make_frame(self, x0: float, y0: float, x1: float, y1: float): ...

    def has_staged(self) -> bool: ...

    def generate(self) -> None: ...

    def accept(self) -> None: ...

    def discard(self) -> None: ...


_CURSORS = {
    "move": Qt.CursorShape.SizeAllCursor, "l": Qt.CursorShape.SizeHorCursor, "r": Qt.CursorShape.SizeHorCursor,
    "t": Qt.CursorShape.SizeVerCursor, "b": Qt.CursorShape.SizeVerCursor, "lt": Qt.CursorShape.SizeFDiagCursor,
    "rb": Qt.CursorShape.SizeFDiagCursor, "rt": Qt.CursorShape.SizeBDiagCursor, "lb": Qt.CursorShape.SizeBDiagCursor,
}


class FrameTool(Tool):
    tool_id = "ai_frame"
    label = "Generation frame"

    def __init__(self, host) -> None:
        super().__init__(host)
        self._grip = ""  # "move", "new" or the edges held: "l", "rt", ...
        self._start = QPointF()
        self._origin = None  # the frame when the drag began

    # ------------------------------------------------------------- helpers
    def _target(self) -> Optional[FrameTarget]:
        target = getattr(self.host, "frame_target", None)
        return target if target is not None and target.frame is not None else None

    def _box(self, frame, viewport: Viewport) -> QRectF:
        return viewport.rect_to_widget(QRectF(frame.x, frame.y, frame.w, frame.h))

    def hit(self, widget_pos: QPointF) -> str:
        """"" (outside), "move" (inside) or the edges under the pointer."""
        target = self._target()
        if target is None:
            return ""
        box = self._box(target.frame, self.host.viewport)
        x, y = widget_pos.x(), widget_pos.y()
        inside_x = box.left() - GRAB <= x <= box.right() + GRAB
        inside_y = box.top() - GRAB <= y <= box.bottom() + GRAB
        if not (inside_x and inside_y):
            return ""
        grip = ""
        if abs(x - box.left()) <= GRAB:
            grip += "l"
        elif abs(x - box.right()) <= GRAB:
            grip += "r"
        if abs(y - box.top()) <= GRAB:
            grip += "t"
        elif abs(y - box.bottom()) <= GRAB:
            grip += "b"
        return grip or "move"

    def _set_cursor(self, grip: str) -> None:
        set_cursor = getattr(self.host, "setCursor", None)
        if set_cursor is not None:
            set_cursor(QCursor(_CURSORS.get(grip, Qt.CursorShape.CrossCursor)))

    # --------------------------------------------------------------- input
    def press(self, ev: PointerEvent) -> None:
        if ev.button != Qt.MouseButton.LeftButton:
            return
        target = self._target()
        if target is None:
            reason = getattr(getattr(self.host, "frame_target", None), "unavailable_reason", "")
            self.host.show_message(reason or "The AI features are not available")
            return
        self._grip = self.hit(ev.widget_pos) or "new"
        self._start = QPointF(ev.pos)
        self._origin = target.frame
        self.active = True

    def move(self, ev: PointerEvent) -> None:
        target = self._target()
        if not self.active or target is None:
            return
        target.set_frame(self._dragged(target, ev.pos))

    def release(self, ev: PointerEvent) -> None:
        if not self.active:
            return
        self.move(ev)
        self.active = False
        self._grip = ""

    def _dragged(self, target: FrameTarget, pos: QPointF):
        origin, grip = self._origin, self._grip
        dx, dy = pos.x() - self._start.x(), pos.y() - self._start.y()
        if grip == "move":
            return origin.moved(dx, dy)
        if grip == "new":
            if abs(dx) < CELL / 2 and abs(dy) < CELL / 2:
                return origin  # a click outside: keep the frame
            return target.make_frame(self._start.x(), self._start.y(), pos.x(), pos.y())
        edges = {}
        if "l" in grip:
            edges["left"] = origin.x + dx
        if "r" in grip:
            edges["right"] = origin.x1 + dx
        if "t" in grip:
            edges["top"] = origin.y + dy
        if "b" in grip:
            edges["bottom"] = origin.y1 + dy
        return origin.with_edges(**edges)

    def hover(self, ev: PointerEvent) -> None:
        self._set_cursor(self.hit(ev.widget_pos))

    def cancel(self) -> None:
        target = self._target()
        if self.active and target is not None and self._origin is not None:
            target.set_frame(self._origin)
        self.active = False
        self._grip = ""

    def key_press(self, event: QKeyEvent) -> bool:
        target = self._target()
        if target is None or self.active:
            return False
        key = Qt.Key(event.key())
        step = CELL * (8 if event.modifiers() & Qt.KeyboardModifier.ShiftModifier else 1)
        nudge = {Qt.Key.Key_Left: (-step, 0), Qt.Key.Key_Right: (step, 0), Qt.Key.Key_Up: (0, -step),
                 Qt.Key.Key_Down: (0, step)}.get(key)
        if nudge is not None:
            target.set_frame(target.frame.moved(*nudge))
            return True
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            if target.has_staged():
                target.accept()
            else:
                target.generate()
            return True
        if key == Qt.Key.Key_Escape and target.has_staged():
            target.discard()
            return True
        return False

    # ------------------------------------------------------------- drawing
    def paint_overlay(self, painter: QPainter, viewport: Viewport) -> None:
        """Resize handles on the frame the AI overlay draws."""
        target = self._target()
        if target is None:
            return
        box = self._box(target.frame, viewport)
        xs = (box.left(), box.center().x(), box.right())
        ys = (box.top(), box.center().y(), box.bottom())
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        painter.setPen(QPen(QColor(15, 15, 18), 1))
        painter.setBrush(QColor(245, 245, 245))
        for i, x in enumerate(xs):
            for j, y in enumerate(ys):
                if i == 1 and j == 1:
                    continue
                painter.drawRect(QRectF(x - HANDLE, y - HANDLE, 2 * HANDLE, 2 * HANDLE))
        painter.restore()
