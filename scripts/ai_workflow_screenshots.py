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
from pathlib import Path

from ai_screenshots import capture, open_editor, run_with_house_models, settle

DISPLAY = ":98"


def main() -> int:
    return run_with_house_models("canvasai-workflow-", DISPLAY, run)


def run(out_dir: Path) -> int:
    from PySide6.QtCore import QPointF

    app, win, wait_for = open_editor(384, 256)
    canvas, session = win.canvas, win.session
    c = win.ai.controller
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
        wait_for(lambda: not c.busy, f"the {mode_word} render", 600)
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
    wait_for(lambda: not c.busy, "the regenerate render", 600)
    show("workflow-5-regenerate.png")
    print(f"layers: {[layer.name for layer in session.document.raster_layers()]}")
    win.ai.shutdown()
    return 0


def _rect(x: int, y: int, w: int, h: int):
    from editor.document.geometry import Rect

    return Rect(x, y, w, h)


if __name__ == "__main__":
    sys.exit(main())
