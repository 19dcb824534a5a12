"""What every canvas tool sees: pointer events in image coordinates and a
small host interface (the canvas widget) for view changes and feedback."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Protocol

import numpy as np
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QCursor, QKeyEvent, QPainter

from editor.document import Rect, SelectionOp

from ..session import EditorSession
from ..viewport import Viewport


@dataclass
class PointerEvent:
    pos: QPointF  # image coordinates (float; pixel (i, j) spans [i, i+1))
    widget_pos: QPointF
    pressure: float = 1.0  # 1.0 for mice
    button: Qt.MouseButton = Qt.MouseButton.LeftButton
    modifiers: Qt.KeyboardModifier = field(default_factory=lambda: Qt.KeyboardModifier.NoModifier)
    tablet: bool = False
    eraser: bool = False  # the eraser end of a stylus


class ToolHost(Protocol):
    session: EditorSession
    viewport: Viewport

    def show_message(self, text: str) -> None: ...

    def update_overlay(self) -> None: ...

    def set_working_selection(self, mask: Optional[np.ndarray], changed: Rect) -> None: ...

    def zoom_step(self, direction: int, anchor: QPointF) -> None: ...

    def pan_by(self, dx: float, dy: float) -> None: ...


class Tool:
    """Base class: override what the tool needs. ``brush_kind`` names the
    brush settings the tool uses ([ and ] resize it; the canvas draws its
    outline)."""

    tool_id = ""
    label = ""
    brush_kind: Optional[str] = None

    def __init__(self, host: ToolHost) -> None:
        self.host = host
        self.active = False  # a press is in progress

    @property
    def session(self) -> EditorSession:
        return self.host.session

    def cursor(self) -> QCursor:
        return QCursor(Qt.CursorShape.CrossCursor)

    def press(self, ev: PointerEvent) -> None:
        pass

    def move(self, ev: PointerEvent) -> None:
        pass

    def release(self, ev: PointerEvent) -> None:
        pass

    def hover(self, ev: PointerEvent) -> None:
        pass

    def cancel(self) -> None:
        """Abort what a press started (Escape, focus loss, tool switch)."""
        self.active = False

    def key_press(self, event: QKeyEvent) -> bool:
        return False

    def paint_overlay(self, painter: QPainter, viewport: Viewport) -> None:
        """Draw previews in widget coordinates (rubber bands, lasso path)."""


def selection_op(modifiers: Qt.KeyboardModifier, default: SelectionOp) -> SelectionOp:
    """Krita's modifiers: Shift adds, Alt subtracts, Shift+Alt intersects."""
    shift = bool(modifiers & Qt.KeyboardModifier.ShiftModifier)
    alt = bool(modifiers & Qt.KeyboardModifier.AltModifier)
    if shift and alt:
        return SelectionOp.INTERSECT
    if shift:
        return SelectionOp.ADD
    if alt:
        return SelectionOp.SUBTRACT
    return default
