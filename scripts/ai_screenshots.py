#!/usr/bin/env python3
"""Screenshots of the AI editing features in the real editor window.

Starts ``Xvfb :97`` when DISPLAY is unset, opens the window (xcb), paints a
small scene through the canvas's input path, then:

1. ``ai-frame.png``   — the generation frame tool: frame with handles and its
   mode label, the AI dock with a prompt;
2. ``ai-live.png``    — Live on, a stroke drawn inside the frame, the preview
   drawn on the canvas, frame time / fps in the dock;
3. ``ai-staging.png`` — Generate with three variations: the staged result in
   the frame, thumbnails, Accept / Discard.

The models are the settings' defaults ("house:preview" / "house:full"): the
house model in assets/house when it is installed, else a tiny random model
(tests/tiny_models.py) put in its place. Settings and autosaves go to a
temporary folder.

    python scripts/ai_screenshots.py [OUT_DIR]     # default docs/screenshots
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from xvfb_display import ROOT, screenshot_session

SCREEN = (1600, 1000)
DISPLAY = ":97"
PROMPT = "a landscape at sunset with mountains, clouds, a lake, pine trees"


def tiny_house(tmp: Path) -> Path:
    """A tiny random SD model laid out as the house model (native 64)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_models import build_sd

    tiny = build_sd(tmp / "tiny", kind="sd1")
    for name, steps, guidance in (("full", 8, 4.0), ("preview", 2, 0.0)):
        folder = tmp / "house" / name
        folder.mkdir(parents=True)
        for component in ("model_index.json", "scheduler", "text_encoder", "tokenizer", "unet", "vae"):
            (folder / component).symlink_to(tiny / component)
        (folder / "house.json").write_text(json.dumps({"native_resolution": 64, "steps": steps,
                                                       "guidance": guidance}))
    return tmp / "house"


def main() -> int:
    return run_with_house_models("canvasai-ai-shot-", DISPLAY, run_session)


def run_with_house_models(prefix: str, display: str, run) -> int:
    """`run(out_dir)` in a screenshot session with the house models (a tiny stand-in when absent)."""
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screenshots"
    out_dir.mkdir(parents=True, exist_ok=True)
    with screenshot_session(prefix, display, SCREEN) as tmp:
        if not (ROOT / "assets" / "house" / "full" / "model_index.json").is_file():
            print("house model not installed: using a tiny random model", file=sys.stderr)
            os.environ["CANVASAI_HOUSE_DIR"] = str(tiny_house(tmp))
        return run(out_dir)


def open_editor(width: int, height: int):
    """(app, window, wait_for) with the AI core loaded, as the app starts it in the background."""
    import editor.ui  # noqa: F401  (qt_compat: PySide 6.12 refcount workarounds)
    from PySide6.QtWidgets import QApplication

    from editor.headless import new_document
    from editor.settings import Settings
    from editor.ui.application import apply_dark_theme
    from editor.ui.main_window import MainWindow

    app = QApplication([sys.argv[0]])
    apply_dark_theme(app)
    settings = Settings()
    settings.first_run_hint_seen = True
    win = MainWindow(settings, new_document(width, height))
    win.ask_save_changes = lambda: "discard"
    win.setGeometry(0, 0, *SCREEN)
    win.show()
    win.raise_()
    win.activateWindow()
    win.canvas.setFocus()
    settle(app, 0.5)

    def wait_for(predicate, what: str, timeout: float = 120.0) -> None:
        end = time.time() + timeout
        while not predicate():
            if time.time() > end:
                raise SystemExit(f"timed out waiting for {what}")
            app.processEvents()
            time.sleep(0.01)

    wait_for(lambda: win.ai.controller is not None or win.ai.unavailable_reason.startswith("The AI engine"),
             "the AI core")
    if win.ai.controller is None:
        raise SystemExit(win.ai.unavailable_reason)
    return app, win, wait_for


def run_session(out_dir: Path) -> int:
    from PySide6.QtCore import QEvent, QPointF, Qt
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication

    app, win, wait_for = open_editor(768, 512)
    canvas, session, doc = win.canvas, win.session, win.session.document
    canvas.fit_to_window()

    def mouse(kind, x, y, button, buttons):
        p = canvas.viewport.to_widget(QPointF(x, y))
        QApplication.sendEvent(canvas, QMouseEvent(kind, p, QPointF(canvas.mapToGlobal(p.toPoint())), button,
                                                   buttons, Qt.KeyboardModifier.NoModifier))

    def drag(points, pause: float = 0.0):
        left, none = Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton
        mouse(QEvent.Type.MouseButtonPress, *points[0], left, left)
        for x, y in points[1:]:
            mouse(QEvent.Type.MouseMove, x, y, none, left)
            if pause:
                settle(app, pause)
        mouse(QEvent.Type.MouseButtonRelease, *points[-1], left, none)
        app.processEvents()

    def key(k, mods=Qt.KeyboardModifier.NoModifier):
        from PySide6.QtTest import QTest

        QTest.keyClick(canvas, k, mods)
        app.processEvents()

    c = win.ai.controller
    panel = win.ai.panel

    # A scene: sky, hills (lasso + fill), a lake, a few strokes.
    acts = win.layer_actions
    layer = session.active_node()
    doc.rename_layer(layer, "Sketch")
    key(Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    session.set_color((236, 150, 96))
    acts.actions["fill_fg"].trigger()
    key(Qt.Key.Key_L)
    ridge = [(x, 250 - 70 * math.sin(x / 120.0) - 30 * math.sin(x / 41.0)) for x in range(0, 769, 16)]
    drag(ridge + [(768, 512), (0, 512), (0, 250)])
    session.set_color((70, 80, 110))
    acts.actions["fill_fg"].trigger()
    key(Qt.Key.Key_M)
    drag([(180, 360), (620, 470)])
    session.set_color((70, 120, 190))
    acts.actions["fill_fg"].trigger()
    key(Qt.Key.Key_D, Qt.KeyboardModifier.ControlModifier)
    key(Qt.Key.Key_B)
    session.set_color((250, 220, 140))
    session.update_brush("paint", size=40.0, hardness=0.9)
    drag([(560 + 12 * math.cos(a / 4), 110 + 12 * math.sin(a / 4)) for a in range(0, 26)])

    # 1. The frame tool: a frame dragged over the lake, its mode label and handles.
    key(Qt.Key.Key_G)
    drag([(120, 120), (300, 250), (440, 376)])
    panel.prompt.setPlainText(PROMPT)
    panel.negative.setPlainText("(blurry:1.2), text")
    c.poll_inputs()
    mouse(QEvent.Type.MouseMove, 280, 250, Qt.MouseButton.NoButton, Qt.MouseButton.NoButton)
    canvas.flush_all()
    settle(app, 0.8)
    capture(win, out_dir / "ai-frame.png")

    # 2. Live: the preview is drawn in the frame while a stroke is painted.
    panel.live.setChecked(True)
    wait_for(lambda: c.live_image is not None, "the first live frame")
    key(Qt.Key.Key_B)
    session.set_color((40, 90, 60))
    session.update_brush("paint", size=26.0, hardness=0.8)
    frames = c.live.stats.finished
    drag([(150 + 10 * i, 300 - 40 * abs(math.sin(i / 2.5))) for i in range(16)], pause=0.05)
    wait_for(lambda: c.live.stats.finished > frames and c.live.idle, "a live frame after the stroke")
    mouse(QEvent.Type.MouseMove, 700, 60, Qt.MouseButton.NoButton, Qt.MouseButton.NoButton)
    canvas.flush_all()
    settle(app, 0.8)
    capture(win, out_dir / "ai-live.png")

    # 3. Generate three variations (Live off: a normal generation), browse to the second.
    panel.live.setChecked(False)
    panel.variations.setValue(3)
    panel.generate_button.click()
    wait_for(lambda: c.final_job is None, "the final render", 600)
    if c.staging.count < 2:
        raise SystemExit(f"no results: {c.last_error}")
    panel.next_button.click()
    key(Qt.Key.Key_G)
    mouse(QEvent.Type.MouseMove, 700, 60, Qt.MouseButton.NoButton, Qt.MouseButton.NoButton)
    canvas.flush_all()
    settle(app, 0.8)
    capture(win, out_dir / "ai-staging.png")
    print(f"live: {c.live.stats.finished} frames, last {c.live.stats.last_frame_time * 1000:.0f} ms")
    win.ai.shutdown()
    return 0


def settle(app, seconds: float) -> None:
    end = time.time() + seconds
    while time.time() < end:
        app.processEvents()
        time.sleep(0.02)


def capture(win, out: Path) -> None:
    if shutil.which("import"):
        result = subprocess.run(["import", "-window", "root", str(out)], capture_output=True, text=True, timeout=60)
        if result.returncode == 0 and out.is_file():
            print(f"wrote {out} (X screen capture)")
            return
        print(f"import failed ({result.stderr.strip()}); using QWidget.grab", file=sys.stderr)
    win.grab().save(str(out))
    print(f"wrote {out} (QWidget.grab)")


if __name__ == "__main__":
    sys.exit(main())
