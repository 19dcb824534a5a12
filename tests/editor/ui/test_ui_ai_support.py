"""Shared helpers for the AI UI tests (no tests here).

The window is the real MainWindow (offscreen); ``open_ai_window`` starts its
AI host synchronously with the engine given (a FakeEngine for most tests, or
None for the engine built from the settings' models, as in the app).
"""
from __future__ import annotations

import sys
import time

import pytest
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtWidgets import QApplication

import editor.ui.ai  # noqa: F401,E402 - before torch: sets OMP_WAIT_POLICY (see editor/ui/ai/__init__.py)
from test_ui_support import _mouse, blank_document, editor_env, open_window, widget_pos  # noqa: F401,E402


import editor.ui  # noqa: F401,E402  (qt_compat: PySide 6.12 refcount workarounds)


@pytest.fixture
def ai_env(editor_env, monkeypatch):
    """Settings in tmp_path and no house model (tests that want one point CANVASAI_HOUSE_DIR at it)."""
    monkeypatch.setenv("CANVASAI_HOUSE_DIR", str(editor_env / "no-house"))
    return editor_env


def open_ai_window(qtbot, document=None, engine=None):
    win = open_window(qtbot, document)
    controller = win.ai.start(engine=engine)
    QApplication.processEvents()
    return win, controller


def close_ai_window(win) -> None:
    win.ai.shutdown()
    win.close()


def wait_final(qtbot, controller, timeout: int = 10000) -> None:
    """Until no final render runs or waits for the live preview it will refine."""
    qtbot.waitUntil(lambda: not controller.busy, timeout=timeout)


def transparent_document(width: int = 200, height: int = 150):
    from editor.document import Document

    doc = Document(width, height)
    doc.add_layer("Paint")
    doc.undo_stack.clear()
    return doc


def slow_stroke(qtbot, canvas, points, pause_ms: int = 40, during=None, until=None, timeout_s: float = 60.0) -> None:
    """A mouse stroke with the event loop running between moves (as a user's
    stroke is); ``during()`` is called after every move. With ``until``, the
    pen stays down, going back and forth over ``points``, until it returns
    True (or ``timeout_s``)."""
    pts = [widget_pos(canvas, x, y) for x, y in points]
    path = pts + pts[-2:0:-1]  # there and back
    left = Qt.MouseButton.LeftButton
    none = Qt.KeyboardModifier.NoModifier
    deadline = time.monotonic() + timeout_s
    _mouse(canvas, QEvent.Type.MouseButtonPress, pts[0], left, left, none)
    i = 1
    while i < len(pts) or (until is not None and not until() and time.monotonic() < deadline):
        p = pts[i] if i < len(pts) else path[i % len(path)]
        _mouse(canvas, QEvent.Type.MouseMove, p, Qt.MouseButton.NoButton, left, none)
        qtbot.wait(pause_ms)
        if during is not None:
            during()
        i += 1
    _mouse(canvas, QEvent.Type.MouseButtonRelease, path[(i - 1) % len(path)], left, Qt.MouseButton.NoButton, none)


def pump_until(predicate, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        QApplication.processEvents()
        if predicate():
            return True
        time.sleep(0.002)
    return False


__all__ = ["QPointF", "ai_env", "close_ai_window", "editor_env", "open_ai_window", "pump_until", "slow_stroke",
           "transparent_document", "wait_final", "blank_document"]
