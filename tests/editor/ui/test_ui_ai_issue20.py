"""Issue 20, "the AI canvas as a user meets it": one test per reported problem
(1-11), in the real window with the fake engine. Each failed before its fix."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QRectF, Qt
from PySide6.QtWidgets import QApplication

from editor.ai import FakeEngine
from editor.document import Document, Rect

from test_ui_ai_support import (  # noqa: F401 - fixtures
    ai_env, blank_document, close_ai_window, editor_env, open_ai_window, pump_until, slow_stroke,
    transparent_document, wait_final,
)

HOUSE_FULL = "assets/house/full"


def photo(width: int, height: int) -> Document:
    """An opaque picture (a gradient: not a plain background)."""
    doc = Document(width, height)
    pixels = np.zeros((height, width, 4), np.uint8)
    pixels[..., 0] = (np.arange(width) * 255 // max(1, width - 1)).astype(np.uint8)[None, :]
    pixels[..., 1] = (np.arange(height) * 255 // max(1, height - 1)).astype(np.uint8)[:, None]
    pixels[..., 2] = 90
    pixels[..., 3] = 255
    doc.add_layer_from_image(pixels, name="photo")
    doc.undo_stack.clear()
    return doc


def canvas_rgb(win, x: int, y: int) -> tuple[int, int, int]:
    win.canvas.flush_all()
    colour = win.canvas.grab().toImage().pixelColor(win.canvas.widget_point(x, y))
    return colour.red(), colour.green(), colour.blue()


def live_ready(qtbot, c) -> None:
    qtbot.waitUntil(lambda: c.live_image is not None and c.live.idle, timeout=5000)


# --------------------------------------------------------------------------- 1
def test_1_after_accept_the_canvas_shows_the_accepted_layer_not_the_live_preview(ai_env, qtbot):
    engine = FakeEngine(native_resolution=64, delay=0.02)
    win, c = open_ai_window(qtbot, transparent_document(), engine)
    c.set_frame(c.make_frame(0, 0, 64, 64))
    c.update_request(prompt="a red fox", seed=7, seed_locked=True)
    win.ai.panel.live_opacity.setValue(100)
    assert c.set_live(True)
    live_ready(qtbot, c)
    c.generate()
    wait_final(qtbot, c)
    layer = c.accept()
    calls = len(engine.calls)
    qtbot.wait(400)  # several poll periods: live must not draw over the new layer
    assert c.overlay_image() is None and len(engine.calls) == calls
    accepted = tuple(int(v) for v in layer.to_array()[30, 40, :3]) if hasattr(layer, "to_array") else None
    expected = accepted or tuple(int(v) for v in win.session.document.render_uncached(Rect(40, 30, 1, 1))[0, 0, :3])
    assert np.allclose(canvas_rgb(win, 40, 30), expected, atol=3)
    assert "edit to resume" in win.ai.overlay.label_text()
    c.update_request(prompt="a red fox at night")  # an edit: live comes back
    qtbot.waitUntil(lambda: c.overlay_image() is not None, timeout=5000)
    close_ai_window(win)


# --------------------------------------------------------------------------- 2
def test_2_generate_right_after_an_edit_refines_the_preview_of_that_edit(ai_env, qtbot):
    engine = FakeEngine(native_resolution=64, delay=0.15)
    win, c = open_ai_window(qtbot, transparent_document(), engine)
    c.set_frame(c.make_frame(0, 0, 64, 64))
    c.update_request(prompt="moon", seed=77, seed_locked=False)
    assert c.set_live(True)
    live_ready(qtbot, c)
    c.update_request(prompt="moon over a lake")
    c.poll_inputs()  # the preview of the new prompt is rendering ...
    assert c.generate() is None and c.waiting_for_preview  # ... Generate waits for it instead of a new image
    assert "waiting for the preview" in win.ai.overlay.label_text()
    wait_final(qtbot, c)
    qtbot.waitUntil(lambda: c.staging.count == 1, timeout=5000)
    model, request = engine.calls[-1]
    shown = c.live.last_frame
    assert model == "house:full" and shown.request.prompt == "moon over a lake"
    assert request.seed == 77 and np.array_equal(request.init_image, shown.image.rgba[..., :3])
    close_ai_window(win)


# --------------------------------------------------------------------------- 3
def test_3_the_latency_readout_agrees_with_itself(ai_env, qtbot):
    engine = FakeEngine(native_resolution=64, delay=0.03)
    win, c = open_ai_window(qtbot, transparent_document(), engine)
    panel = win.ai.panel
    c.set_frame(c.make_frame(0, 0, 64, 64))
    c.update_request(prompt="ink")
    assert c.set_live(True)
    live_ready(qtbot, c)
    assert "0.0 fps" not in panel.live_stats.text() and "idle" in panel.live_stats.text()  # one frame: no rate
    win.session.update_brush("paint", size=8.0)
    slow_stroke(qtbot, win.canvas, [(6 + 4 * i, 30) for i in range(12)], pause_ms=40)
    qtbot.waitUntil(lambda: c.live.idle, timeout=5000)
    panel._refresh_live_stats()
    text = panel.live_stats.text()
    ms = float(text.split("Preview: ")[1].split(" ms")[0])
    fps = float(text.split(" · ")[1].split(" fps")[0])
    assert 20 <= ms <= 1000 and 0.5 < fps <= 1000.0 / ms + 1  # a rate a frame time of `ms` allows
    assert "frames" not in text.replace("per frame", "")
    real_clock = c.live._clock
    c.live._clock = lambda: real_clock() + 10.0  # ten seconds without edits
    panel._refresh_live_stats()
    assert panel.live_stats.text().endswith("idle") or "idle ·" in panel.live_stats.text()
    close_ai_window(win)


# --------------------------------------------------------------------------- 4
def test_4_add_model_inspects_the_file_and_refuses_a_text_file_at_once(ai_env, qtbot, tmp_path):
    win, c = open_ai_window(qtbot, blank_document(), engine=None)
    panel = win.ai.panel
    text_file = tmp_path / "notes.safetensors"
    text_file.write_text("this is not a model\n" * 10)
    final_before = win.settings.final_model
    panel.choose_model_file = lambda: str(text_file)
    panel._add_checkpoint()
    message = panel.message_label.text()
    assert message.startswith("Not added") and "notes.safetensors" in message
    assert win.settings.final_model == final_before and str(text_file) not in c.entries
    assert panel.final_model.findData(str(text_file)) < 0
    assert "#ff7a6e" not in panel.message_label.styleSheet()  # a refusal, not a red error
    panel.choose_model_folder = lambda: HOUSE_FULL
    panel._add_folder()
    assert win.settings.final_model == HOUSE_FULL
    assert "Stable Diffusion" in panel.message_label.text() and "MB" in panel.message_label.text()
    index = panel.final_model.findData(HOUSE_FULL)
    assert "MB" in panel.final_model.itemData(index, Qt.ItemDataRole.ToolTipRole)
    close_ai_window(win)


def test_4_an_error_goes_away_after_the_next_action(ai_env, qtbot):
    engine = FakeEngine(native_resolution=64, fail=RuntimeError("the GPU caught fire"))
    win, c = open_ai_window(qtbot, blank_document(), engine)
    panel = win.ai.panel
    c.generate()
    wait_final(qtbot, c)
    assert "caught fire" in panel.message_label.text()
    qtbot.keyClicks(panel.prompt, "a lighthouse")  # an unrelated edit: the error has been read
    assert panel.message_label.text() == "" and c.last_error == ""
    close_ai_window(win)


# --------------------------------------------------------------------------- 5
def test_5_the_panel_does_not_move_when_messages_modes_and_progress_change(ai_env, qtbot):
    engine = FakeEngine(native_resolution=64, gate=threading.Event())
    win, c = open_ai_window(qtbot, photo(200, 150), engine)
    panel = win.ai.panel
    QApplication.processEvents()

    def positions():
        return [w.mapTo(panel, QPoint(0, 0)) for w in (panel.prompt, panel.generate_button, panel.cancel_button,
                                                      panel.live, panel.progress)]

    before = positions()
    header = panel.mode_label.height()
    c.ai.say("A very long error message that goes on and on about a model file that could not be read "
             "because its header is damaged, and then some more words", "error")
    win.session.document.select_rect(Rect(10, 10, 30, 30))
    c.set_frame(c.make_frame(0, 0, 64, 64))
    c.poll_inputs()
    assert c.mode.label == "Inpaint selection"
    c.generate()
    qtbot.waitUntil(lambda: panel.progress_text.text() != "", timeout=3000)
    QApplication.processEvents()
    assert positions() == before and panel.mode_label.height() == header
    assert panel.cancel_button.isEnabled()
    c.cancel()
    engine.gate.set()
    wait_final(qtbot, c)
    QApplication.processEvents()
    assert positions() == before
    close_ai_window(win)


# --------------------------------------------------------------------------- 6
def test_6_live_is_on_by_default_when_fast_and_shown_on_the_frame(ai_env, qtbot):
    from test_ui_support import open_window

    win = open_window(qtbot, blank_document())
    c = win.ai.start(engine=FakeEngine(native_resolution=64, delay=0.02), auto_live=True)
    panel = win.ai.panel
    qtbot.waitUntil(lambda: c.live_image is not None, timeout=5000)
    assert panel.live.isChecked() and c.live_enabled
    assert win.ai.overlay.label_text().startswith("Generate")  # a white canvas is empty, not "Prompt edit"
    assert win.ai.overlay.label_text().endswith("Live")
    assert panel.live_opacity_label.text() == "Opacity" and panel.live_opacity_label.buddy() is panel.live_opacity
    close_ai_window(win)


def test_6_live_stays_off_when_the_preview_is_slow(ai_env, qtbot):
    from test_ui_support import open_window

    win = open_window(qtbot, blank_document())
    c = win.ai.start(engine=FakeEngine(native_resolution=64, delay=1.0, labels={}), auto_live=True)
    assert c.live_enabled  # on while the first frame is measured ...
    qtbot.waitUntil(lambda: "Live preview is off" in win.ai.panel.message_label.text(), timeout=8000)
    assert not c.live_enabled and not win.ai.panel.live.isChecked() and c.overlay_image() is None  # ... then off
    close_ai_window(win)


def test_6_a_transparent_area_inside_the_canvas_is_filled_not_expanded(ai_env, qtbot):
    engine = FakeEngine(native_resolution=64)
    doc = transparent_document()
    doc.add_layer_from_image(photo(40, 64).render_uncached(), 0, 0)  # a picture on the left part only
    win, c = open_ai_window(qtbot, doc, engine)
    c.set_frame(c.make_frame(0, 0, 96, 64))
    c.poll_inputs()
    assert c.mode.label == "Fill empty area" and "grows" not in c.mode.reason
    close_ai_window(win)


# --------------------------------------------------------------------------- 7
def test_7_esc_cancels_a_running_generation_wherever_the_focus_is(ai_env, qtbot):
    engine = FakeEngine(native_resolution=64, gate=threading.Event())
    win, c = open_ai_window(qtbot, transparent_document(), engine)
    panel = win.ai.panel
    doc = win.session.document
    before = (doc.undo_stack.index, len(doc.raster_layers()))
    c.generate()
    assert win.ai.cancel_action.isEnabled()
    panel.prompt.setFocus()
    qtbot.keyClick(panel.prompt, Qt.Key.Key_Escape)
    wait_final(qtbot, c, 3000)
    assert "Cancelled" in panel.message_label.text() and c.staging.count == 0
    assert (doc.undo_stack.index, len(doc.raster_layers())) == before
    assert not win.ai.cancel_action.isEnabled()
    close_ai_window(win)


def test_7_cancel_is_disabled_in_live_mode_with_nothing_to_stop(ai_env, qtbot):
    engine = FakeEngine(native_resolution=64, delay=0.02)
    win, c = open_ai_window(qtbot, transparent_document(), engine)
    assert c.set_live(True)
    live_ready(qtbot, c)
    assert not win.ai.panel.cancel_button.isEnabled() and not win.ai.cancel_action.isEnabled()
    close_ai_window(win)


def test_7_enter_accepts_and_ctrl_enter_generates_with_any_tool(ai_env, qtbot):
    engine = FakeEngine(native_resolution=64)
    win, c = open_ai_window(qtbot, transparent_document(), engine)
    win.select_tool("brush")
    qtbot.keyClick(win.canvas, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    wait_final(qtbot, c)
    assert c.staging.count == 1
    qtbot.keyClick(win.canvas, Qt.Key.Key_Return)
    assert c.staging.count == 0 and win.session.active_layer().name.startswith("AI")
    close_ai_window(win)


# --------------------------------------------------------------------------- 8
def test_8_expand_fills_the_whole_new_strip(ai_env, qtbot):
    engine = FakeEngine(native_resolution=64)
    win, c = open_ai_window(qtbot, photo(96, 96), engine)
    doc = win.session.document
    c.set_frame(c.make_frame(64, 24, 128, 72))  # 48 tall, 32 px past the right edge of a 96 tall canvas
    c.poll_inputs()
    assert c.mode.label == "Expand"
    c.generate()
    wait_final(qtbot, c)
    c.accept()
    assert (doc.width, doc.height) == (128, 96)
    assert doc.render_uncached()[:, 96:, 3].min() == 255  # no transparent bands above or below the frame
    close_ai_window(win)


def test_8_expand_past_a_white_canvas_leaves_no_seam(ai_env, qtbot):
    engine = FakeEngine(native_resolution=64)
    win, c = open_ai_window(qtbot, blank_document(96, 64), engine)
    c.set_frame(c.make_frame(64, 0, 128, 64))
    c.poll_inputs()
    assert c.mode.label == "Expand" and c.mode.blank
    c.generate()
    wait_final(qtbot, c)
    image = c.staging.current
    assert (image.rgba[..., 3] == 255).all()  # one picture over the frame, no half-faded band on the white
    layer = c.accept()
    assert (layer.x, layer.y) == (64, 0)
    close_ai_window(win)


# --------------------------------------------------------------------------- 9
def test_9_progress_shows_the_real_step_count_and_why(ai_env, qtbot):
    engine = FakeEngine(native_resolution=64)  # reports img2img progress as the real engine: strength × steps
    win, c = open_ai_window(qtbot, photo(64, 64), engine)
    texts: list[str] = []
    c.progress_changed.connect(lambda _f, text: texts.append(text))
    c.set_frame(c.make_frame(0, 0, 64, 64))
    c.update_request(steps=20)
    c.poll_inputs()
    assert c.mode.label == "Prompt edit"
    c.generate()
    wait_final(qtbot, c)
    steps = [t for t in texts if "step" in t]
    assert steps and steps[-1] == "Generating · step 12/12 (60 % of 20 steps)"
    close_ai_window(win)


# --------------------------------------------------------------------------- 10
def test_10_an_ai_layer_shows_its_settings_and_can_be_regenerated_varied_and_reused(ai_env, qtbot):
    engine = FakeEngine(native_resolution=64)
    win, c = open_ai_window(qtbot, transparent_document(), engine)
    panel = win.ai.panel
    c.set_frame(c.make_frame(0, 0, 64, 64))
    c.update_request(prompt="a red fox", seed=1234, seed_locked=True, steps=6)
    c.generate()
    wait_final(qtbot, c)
    layer = c.accept()
    win.layers_panel.rebuild()
    item = win.layers_panel.item_for(layer.uid)
    tip = item.toolTip(0)
    assert "Prompt: a red fox" in tip and "Seed 1234" in tip and "6 steps" in tip
    names = [a.text().replace("&", "") for a in win.layers_panel.context_menu_actions(layer)]
    assert {"Regenerate", "Vary (New Seed)", "Use These Settings"} <= set(names)
    assert win.session.active_layer() is layer and panel.layer_box.isVisible()  # its properties in the AI panel
    assert "Prompt: a red fox" in panel.layer_info.text() and "Seed 1234" in panel.layer_info.text()
    win.session.set_active(win.session.document.raster_layers()[0])
    assert not panel.layer_box.isVisible()  # not an AI layer
    win.session.set_active(layer)

    panel.prompt.setPlainText("something else")
    c.set_frame(c.make_frame(8, 8, 24, 24))
    win.ai.load_settings_action.trigger()
    assert panel.prompt.toPlainText() == "a red fox" and int(panel.seed.value()) == 1234
    assert (c.frame.x, c.frame.y, c.frame.w, c.frame.h) == (0, 0, 64, 64)

    win.ai.regenerate_action.trigger()
    wait_final(qtbot, c)
    assert engine.calls[-1][1].seed == 1234 and engine.calls[-1][1].init_image is None  # its own mode: txt2img
    c.discard()
    win.session.set_active(layer)
    win.ai.vary_action.trigger()
    wait_final(qtbot, c)
    assert engine.calls[-1][1].seed != 1234 and engine.calls[-1][1].prompt == "a red fox"
    close_ai_window(win)


# --------------------------------------------------------------------------- 11
def test_11_small_things(ai_env, qtbot):
    from editor.headless import new_document

    engine = FakeEngine(native_resolution=64)
    win, c = open_ai_window(qtbot, new_document(256, 256), engine)
    doc = win.session.document
    # a new layer after "Layer 1" is "Layer 2"
    win.layer_actions.actions["new_layer"].trigger()
    assert win.session.active_layer().name == "Layer 2"
    # the history names an accepted result, and redo makes the restored layer active
    c.update_request(prompt="a red fox")
    c.generate()
    wait_final(qtbot, c)
    layer = c.accept()
    assert doc.undo_stack.undo_text() == "Accept “AI: a red fox”"
    win.undo()
    win.session.set_active(doc.raster_layers()[0])
    win.redo()
    assert win.session.active_layer() is layer
    # Tool Options of the frame tool shows no colour palette
    win.select_tool("ai_frame")
    assert not win.tool_options.color_row.isVisible()
    win.select_tool("brush")
    assert win.tool_options.color_row.isVisible()
    close_ai_window(win)


def test_11_at_the_default_zoom_a_frame_past_the_canvas_is_brought_into_view(ai_env, qtbot):
    from editor.headless import new_document
    from editor.settings import Settings
    from editor.ui.main_window import MainWindow

    win = MainWindow(Settings(), new_document(1024, 1024))
    win.ask_save_changes = lambda: "discard"
    qtbot.addWidget(win)
    win.resize(1200, 800)
    win.show()
    qtbot.waitExposed(win)
    c = win.ai.start(engine=FakeEngine(native_resolution=64))
    QApplication.processEvents()
    canvas = win.canvas
    inside = QRectF(canvas.rect())
    assert inside.contains(canvas.viewport.rect_to_widget(QRectF(0, 0, 1024, 1024)))  # default zoom: all of it
    c.set_frame(c.make_frame(896, 256, 1408, 768))  # dragged past the right edge (an Expand)
    qtbot.waitUntil(lambda: inside.contains(canvas.viewport.rect_to_widget(QRectF(896, 256, 512, 512))),
                    timeout=2000)
    win.ai.shutdown()
    win.close()
