#!/usr/bin/env python3
"""Screenshot of the real editor window on an X server.

Starts ``Xvfb :99`` when DISPLAY is unset, opens the window with the xcb
platform plugin, plays a short scripted session through the canvas's real
input path (layers, fills, brush strokes with tablet pressure, a selection
painted with the mask brush), then captures the X screen with ImageMagick's
``import -window root`` (falls back to QWidget.grab if that fails).

    python scripts/editor_screenshot.py [OUT.png]      # default docs/screenshots/editor.png

Settings and autosaves go to a temporary folder, never the real home.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

from xvfb_display import ROOT, screenshot_session

SCREEN = (1600, 1000)


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screenshots" / "editor.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    with screenshot_session("canvasai-shot-", ":99", SCREEN):
        return run_session(out)


def run_session(out: Path) -> int:
    from PySide6.QtCore import QEvent, QPointF, Qt
    from PySide6.QtGui import QInputDevice, QMouseEvent, QPointingDevice, QTabletEvent
    from PySide6.QtWidgets import QApplication

    from editor.headless import new_document
    from editor.settings import Settings
    from editor.ui.application import apply_dark_theme
    from editor.ui.main_window import MainWindow

    app = QApplication([sys.argv[0]])
    apply_dark_theme(app)
    win = MainWindow(Settings(), new_document(1280, 860))
    win.ask_save_changes = lambda: "discard"
    win.setGeometry(0, 0, *SCREEN)
    win.show()
    # Without a window manager nobody activates the window; shortcuts need an active window.
    win.raise_()
    win.activateWindow()
    win.canvas.setFocus()
    settle(app, 0.5)
    if QApplication.activeWindow() is not win:
        print("warning: the window is not active; keyboard shortcuts may not fire", file=sys.stderr)
    canvas, session, doc = win.canvas, win.session, win.session.document
    canvas.fit_to_window()

    def at(x: float, y: float) -> QPointF:
        return canvas.viewport.to_widget(QPointF(x, y))

    def mouse(kind, x, y, button, buttons, mods=Qt.KeyboardModifier.NoModifier):
        p = at(x, y)
        QApplication.sendEvent(canvas, QMouseEvent(kind, p, QPointF(canvas.mapToGlobal(p.toPoint())), button,
                                                   buttons, mods))

    def drag(points, mods=Qt.KeyboardModifier.NoModifier):
        left, none = Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton
        mouse(QEvent.Type.MouseButtonPress, *points[0], left, left, mods)
        for x, y in points[1:]:
            mouse(QEvent.Type.MouseMove, x, y, none, left, mods)
        mouse(QEvent.Type.MouseButtonRelease, *points[-1], left, none, mods)
        app.processEvents()

    pen = QPointingDevice("screenshot stylus", 7, QInputDevice.DeviceType.Stylus, QPointingDevice.PointerType.Pen,
                          QInputDevice.Capability.Position | QInputDevice.Capability.Pressure, 1, 3)

    def pen_stroke(points):
        for i, (x, y, p) in enumerate(points):
            kind = QEvent.Type.TabletPress if i == 0 else QEvent.Type.TabletMove
            pos = at(x, y)
            btn = Qt.MouseButton.LeftButton if i == 0 else Qt.MouseButton.NoButton
            QApplication.sendEvent(canvas, QTabletEvent(kind, pen, pos, pos, p, 0, 0, 0, 0, 0,
                                                        Qt.KeyboardModifier.NoModifier, btn, Qt.MouseButton.LeftButton))
        pos = at(*points[-1][:2])
        QApplication.sendEvent(canvas, QTabletEvent(QEvent.Type.TabletRelease, pen, pos, pos, 0, 0, 0, 0, 0, 0,
                                                    Qt.KeyboardModifier.NoModifier, Qt.MouseButton.LeftButton,
                                                    Qt.MouseButton.NoButton))
        app.processEvents()

    def key(k, mods=Qt.KeyboardModifier.NoModifier):
        from PySide6.QtTest import QTest

        QTest.keyClick(canvas, k, mods)
        app.processEvents()

    acts = win.layer_actions
    layer1 = session.active_node()
    doc.rename_layer(layer1, "Sky")
    # Sky: select all, fill with the paint colour (Shift+Backspace).
    key(Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    session.set_color((150, 196, 236))
    acts.actions["fill_fg"].trigger()
    # Sun: ellipse selection (M, then Shift+M), orange fill.
    key(Qt.Key.Key_M)
    key(Qt.Key.Key_M, Qt.KeyboardModifier.ShiftModifier)
    acts.actions["new_layer"].trigger()
    doc.rename_layer(session.active_node(), "Sun")
    drag([(900, 90), (1080, 270)])
    session.set_color((250, 176, 60))
    acts.actions["fill_fg"].trigger()
    key(Qt.Key.Key_D, Qt.KeyboardModifier.ControlModifier)
    # Hills: lasso polygon filled green, in a group.
    acts.actions["new_layer"].trigger()
    hills = session.active_node()
    doc.rename_layer(hills, "Hills")
    key(Qt.Key.Key_L)
    ridge = [(x, 520 - 90 * math.sin(x / 180.0) - 40 * math.sin(x / 57.0)) for x in range(0, 1281, 16)]
    drag(ridge + [(1280, 860), (0, 860), (0, 520)])
    session.set_color((84, 150, 86))
    acts.actions["fill_fg"].trigger()
    key(Qt.Key.Key_D, Qt.KeyboardModifier.ControlModifier)
    acts.actions["group_layer"].trigger()
    doc.rename_layer(hills.parent, "Landscape")
    session.set_active(hills.parent)  # the next layer goes above the group, not into it
    # Ink: pressure strokes (birds and a tree trunk) on a new layer.
    acts.actions["new_layer"].trigger()
    doc.rename_layer(session.active_node(), "Ink")
    key(Qt.Key.Key_B)
    session.set_color((40, 36, 48))
    session.update_brush("paint", size=14.0, hardness=0.7)
    for bx, by, s in ((300, 170, 1.0), (420, 130, 0.8), (520, 200, 0.6)):
        wing = [(bx - 60 * s + t * 60 * s, by - 25 * s * math.sin(math.pi * t), 0.2 + 0.8 * math.sin(math.pi * t))
                for t in (i / 12 for i in range(13))]
        wing2 = [(bx + t * 60 * s, by - 25 * s * math.sin(math.pi * t), 0.2 + 0.8 * math.sin(math.pi * t))
                 for t in (i / 12 for i in range(13))]
        pen_stroke(wing)
        pen_stroke(wing2)
    session.update_brush("paint", size=34.0, hardness=0.9)
    pen_stroke([(200 + 6 * math.sin(i / 3), 700 - i * 12, 1.0 - i / 40) for i in range(26)])
    session.set_color((60, 120, 60))
    session.update_brush("paint", size=90.0, hardness=0.4)
    drag([(150, 420), (200, 380), (250, 400), (230, 450), (170, 460), (150, 420)])
    # An inpaint mask painted with the mask brush: tinted overlay + outline.
    key(Qt.Key.Key_Q)
    session.update_brush("mask", size=70.0, hardness=0.6)
    drag([(700 + 60 * math.cos(a / 8), 640 + 40 * math.sin(a / 8)) for a in range(0, 51)])
    drag([(700, 640), (760, 650), (640, 630)])
    key(Qt.Key.Key_B)
    mouse(QEvent.Type.MouseMove, 560, 420, Qt.MouseButton.NoButton, Qt.MouseButton.NoButton)  # brush outline
    win.layers_panel.rebuild()
    win.layers_panel.refresh_thumbnails()
    win.history_panel.rebuild()
    canvas.flush_all()
    settle(app, 1.0)
    return capture(win, out, app)


def settle(app, seconds: float) -> None:
    end = time.time() + seconds
    while time.time() < end:
        app.processEvents()
        time.sleep(0.02)


def capture(win, out: Path, app) -> int:
    if shutil.which("import"):
        result = subprocess.run(["import", "-window", "root", str(out)], capture_output=True, text=True, timeout=60)
        if result.returncode == 0 and out.is_file():
            print(f"wrote {out} (X screen capture)")
            return 0
        print(f"import failed ({result.stderr.strip()}); using QWidget.grab", file=sys.stderr)
    win.grab().save(str(out))
    print(f"wrote {out} (QWidget.grab)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
