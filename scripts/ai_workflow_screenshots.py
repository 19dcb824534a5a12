#!/usr/bin/env python3
"""The AI canvas workflow in a real editor window, with a screenshot after each stage.

Starts ``Xvfb :98`` when DISPLAY is unset (see scripts/xvfb_display.py), opens the editor on a new
white document with the house models and drives it as a user would:

1. ``workflow-1-txt2img.png``   — a frame on the white canvas says *Generate*; the result staged;
2. ``workflow-2-accepted.png``  — Accept: one new layer carrying the settings, the preview held;
3. ``workflow-3-inpaint.png``   — a selection inside the picture, *Inpaint selection*, staged;
4. ``workflow-4-expand.png``    — a frame past the right edge, *Expand*: the canvas grew, staged;
5. ``workflow-5-regenerate.png``— the first AI layer regenerated from its stored settings.

    python scripts/ai_workflow_screenshots.py [OUT_DIR]     # default docs/screenshots
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from ai_screenshots import capture, settle, tiny_house
from xvfb_display import ROOT, screenshot_session

SCREEN = (1600, 1000)
DISPLAY = ":98"


def main() -> int:
    import os

    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screenshots"
    out_dir.mkdir(parents=True, exist_ok=True)
    with screenshot_session("canvasai-workflow-", DISPLAY, SCREEN) as tmp:
        if not (ROOT / "assets" / "house" / "full" / "model_index.json").is_file():
            print("house model not installed: using a tiny random model", file=sys.stderr)
            os.environ["CANVASAI_HOUSE_DIR"] = str(tiny_house(tmp))
        return run(out_dir)


def run(out_dir: Path) -> int:
    import editor.ui  # noqa: F401  (qt_compat: PySide 6.12 refcount workarounds)
    from PySide6.QtCore import QPointF
    from PySide6.QtWidgets import QApplication

    from editor.headless import new_document
    from editor.settings import Settings
    from editor.ui.application import apply_dark_theme
    from editor.ui.main_window import MainWindow

    app = QApplication([sys.argv[0]])
    apply_dark_theme(app)
    settings = Settings()
    settings.first_run_hint_seen = True
    win = MainWindow(settings, new_document(384, 256))
    win.ask_save_changes = lambda: "discard"
    win.setGeometry(0, 0, *SCREEN)
    win.show()
    win.raise_()
    win.activateWindow()
    settle(app, 0.5)
    canvas, session = win.canvas, win.session

    def wait_for(predicate, what: str, timeout: float = 600.0) -> None:
        end = time.time() + timeout
        while not predicate():
            if time.time() > end:
                raise SystemExit(f"timed out waiting for {what}")
            app.processEvents()
            time.sleep(0.01)

    wait_for(lambda: win.ai.controller is not None or win.ai.unavailable_reason.startswith("The AI engine"),
             "the AI core")
    c = win.ai.controller
    if c is None:
        raise SystemExit(win.ai.unavailable_reason)
    panel = win.ai.panel
    c.set_live(False)  # each stage below is one Generate: the screenshots show finals, not live frames

    def stage(frame: tuple[int, int, int, int], prompt: str, shot: str, *, mode_word: str) -> None:
        c.set_frame(c.make_frame(*frame))
        panel.prompt.setPlainText(prompt)
        c.poll_inputs()
        label = c.mode.label
        if mode_word not in label:
            raise SystemExit(f"the frame says {label!r}, expected {mode_word!r}")
        panel.generate_button.click()
        wait_for(lambda: not c.busy, f"the {mode_word} render")
        if c.staging.count < 1:
            raise SystemExit(f"no result for {mode_word}: {c.last_error}")
        show(shot)

    def show(shot: str) -> None:
        canvas.fit_to_window()
        canvas.viewport.to_widget(QPointF(0, 0))
        canvas.flush_all()
        settle(app, 0.8)
        capture(win, out_dir / shot)

    # 1. txt2img on the white canvas (plain counts as empty: the frame says Generate).
    stage((0, 0, 256, 256), "a lake at sunset with mountains and pine trees", "workflow-1-txt2img.png",
          mode_word="Generate")
    # 2. Accept: one layer with the generation settings; the live preview stays held.
    first = c.accept()
    if first is None:
        raise SystemExit("accept added no layer")
    show("workflow-2-accepted.png")
    # 3. Inpaint: a rectangular selection over the lake, a frame around it.
    session.document.select_rect(_rect(80, 150, 96, 64))
    stage((48, 112, 208, 240), "a small red boat on the lake", "workflow-3-inpaint.png", mode_word="Inpaint")
    c.accept()
    session.document.select_none()
    # 4. Expand: a frame past the right edge grows the canvas and fills the whole new strip.
    stage((256, 0, 448, 256), "mountains and pine trees at sunset", "workflow-4-expand.png", mode_word="Expand")
    c.accept()
    # 5. Regenerate the first AI layer from the settings it carries.
    session.set_active(first)
    c.regenerate_layer(first)
    wait_for(lambda: not c.busy, "the regenerate render")
    show("workflow-5-regenerate.png")
    print(f"layers: {[layer.name for layer in session.document.raster_layers()]}")
    win.ai.shutdown()
    return 0


def _rect(x: int, y: int, w: int, h: int):
    from editor.document.geometry import Rect

    return Rect(x, y, w, h)


if __name__ == "__main__":
    sys.exit(main())
