"""Shared fixtures and input helpers for the editor UI tests (no tests here).

Everything runs offscreen (tests/conftest.py) with the settings and
recovery folders redirected into tmp_path, so no test touches the real home.
Pointer input is sent as real QMouseEvent / QTabletEvent objects through
QApplication.sendEvent, i.e. through the same code path as a user's input.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QInputDevice, QMouseEvent, QPointingDevice, QTabletEvent
from PySide6.QtWidgets import QApplication

from editor.document import Document


@pytest.fixture
def editor_env(tmp_path, monkeypatch):
    monkeypatch.setenv("CANVASAI_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("CANVASAI_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CANVASAI_RECOVERY", "keep")
    return tmp_path


def blank_document(width: int = 200, height: int = 150) -> Document:
    """A white background plus an empty "Paint" layer on top, history cleared."""
    doc = Document(width, height)
    bg = doc.add_layer("Background")
    doc.fill_selection(bg, (255, 255, 255))
    doc.add_layer("Paint")
    doc.undo_stack.clear()
    return doc


def open_window(qtbot, document: Document | None = None):
    from editor.settings import Settings
    from editor.ui.main_window import MainWindow

    win = MainWindow(Settings(), document if document is not None else blank_document())
    win.ask_save_changes = lambda: "discard"  # never block on a modal question
    qtbot.addWidget(win)
    win.resize(900, 650)
    win.show()
    qtbot.waitExposed(win)
    win.canvas.set_zoom(1.0)
    win.canvas.viewport.offset = QPointF(10.0, 10.0)  # image (x, y) is at widget (x + 10, y + 10)
    win.canvas._view_changed()
    QApplication.processEvents()
    return win


@pytest.fixture
def window(editor_env, qtbot):
    return open_window(qtbot)


def widget_pos(canvas, x: float, y: float) -> QPointF:
    return canvas.viewport.to_widget(QPointF(x, y))


def _mouse(canvas, kind, pos: QPointF, button, buttons, modifiers) -> None:
    global_pos = QPointF(canvas.mapToGlobal(pos.toPoint()))
    ev = QMouseEvent(kind, pos, global_pos, button, buttons, modifiers)
    QApplication.sendEvent(canvas, ev)


def drag(canvas, points: Sequence[tuple[float, float]], button=Qt.MouseButton.LeftButton,
         modifiers=Qt.KeyboardModifier.NoModifier) -> None:
    """Press at the first image point, move through the rest, release at the last."""
    pts = [widget_pos(canvas, x, y) for x, y in points]
    _mouse(canvas, QEvent.Type.MouseButtonPress, pts[0], button, button, modifiers)
    for p in pts[1:]:
        _mouse(canvas, QEvent.Type.MouseMove, p, Qt.MouseButton.NoButton, button, modifiers)
    _mouse(canvas, QEvent.Type.MouseButtonRelease, pts[-1], button, Qt.MouseButton.NoButton, modifiers)


def click(canvas, x: float, y: float, button=Qt.MouseButton.LeftButton,
          modifiers=Qt.KeyboardModifier.NoModifier) -> None:
    drag(canvas, [(x, y)], button, modifiers)


def hover(canvas, x: float, y: float) -> None:
    _mouse(canvas, QEvent.Type.MouseMove, widget_pos(canvas, x, y), Qt.MouseButton.NoButton,
           Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier)


_STYLUS = None


def stylus() -> QPointingDevice:
    global _STYLUS
    if _STYLUS is None:
        _STYLUS = QPointingDevice(
            "test stylus", 4242, QInputDevice.DeviceType.Stylus, QPointingDevice.PointerType.Pen,
            QInputDevice.Capability.Position | QInputDevice.Capability.Pressure, 1, 3,
        )
    return _STYLUS


def tablet_stroke(canvas, points: Iterable[tuple[float, float, float]]) -> None:
    """A pen stroke through image points (x, y, pressure)."""
    pts = list(points)
    for i, (x, y, p) in enumerate(pts):
        kind = QEvent.Type.TabletPress if i == 0 else QEvent.Type.TabletMove
        pos = widget_pos(canvas, x, y)
        buttons = Qt.MouseButton.LeftButton
        button = Qt.MouseButton.LeftButton if i == 0 else Qt.MouseButton.NoButton
        ev = QTabletEvent(kind, stylus(), pos, QPointF(canvas.mapToGlobal(pos.toPoint())), p, 0.0, 0.0, 0.0,
                          0.0, 0.0, Qt.KeyboardModifier.NoModifier, button, buttons)
        QApplication.sendEvent(canvas, ev)
    x, y, p = pts[-1]
    pos = widget_pos(canvas, x, y)
    ev = QTabletEvent(QEvent.Type.TabletRelease, stylus(), pos, QPointF(canvas.mapToGlobal(pos.toPoint())), 0.0,
                      0.0, 0.0, 0.0, 0.0, 0.0, Qt.KeyboardModifier.NoModifier, Qt.MouseButton.LeftButton,
                      Qt.MouseButton.NoButton)
    QApplication.sendEvent(canvas, ev)


def layer_pixels(layer, doc) -> np.ndarray:
    from editor.document import Rect

    return layer.read(Rect(0, 0, doc.width, doc.height))


def alpha_columns(alpha_rows: np.ndarray) -> int:
    """Number of painted (alpha > 0) pixels in a 1-D alpha slice."""
    return int((alpha_rows > 0).sum())
