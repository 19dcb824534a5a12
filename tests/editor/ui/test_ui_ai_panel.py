"""The AI features in the real window with the fake engine: the frame tool
(move, resize, new frame, grid snapping), the mode label following paint,
selection and frame, the panel's request, Generate -> staging -> Accept
(one undo step) / Discard, Cancel, faults, live preview on the canvas (one
render in flight, frames during a stroke), refine from the preview, and the
event-loop stall during a generation."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from editor.ai import FakeEngine
from editor.ai.session import REFINE_STRENGTH
from editor.document import Rect
from inference.errors import ModelFormatError

from test_ui_ai_support import (  # noqa: F401 - fixtures
    ai_env, blank_document, close_ai_window, editor_env, open_ai_window, slow_stroke, transparent_document,
    wait_final,
)
from test_ui_support import drag


@pytest.fixture
def fake(ai_env, qtbot):
    engine = FakeEngine(native_resolution=64, delay=0.05)
    win, c = open_ai_window(qtbot, transparent_document(), engine)
    yield win, c, engine
    close_ai_window(win)


def doc_state(doc):
    return doc.render_uncached().copy(), doc.undo_stack.index, [l.name for l in doc.raster_layers()], \
        (doc.width, doc.height)


def gradient(width, height):
    """An opaque picture (not a plain background, which counts as empty)."""
    pixels = np.zeros((height, width, 4), np.uint8)
    pixels[..., 0] = (np.arange(width) * 255 // max(1, width - 1)).astype(np.uint8)[None, :]
    pixels[..., 1] = (np.arange(height) * 255 // max(1, height - 1)).astype(np.uint8)[:, None]
    pixels[..., 3] = 255
    return pixels


def same_state(a, b):
    return np.array_equal(a[0], b[0]) and a[1:] == b[1:]


# --------------------------------------------------------------------------- frame tool
def test_frame_tool_moves_resizes_draws_and_snaps(fake, qtbot):
    win, c, _ = fake
    canvas = win.canvas
    qtbot.keyClick(canvas, Qt.Key.Key_G)
    assert canvas.tool.tool_id == "ai_frame" and win.tool_actions["ai_frame"].isChecked()
    c.set_frame(c.make_frame(16, 16, 80, 64))
    assert (c.frame.x, c.frame.y, c.frame.w, c.frame.h) == (16, 16, 64, 48)

    drag(canvas, [(40, 40), (50, 47), (53, 51)])  # inside: move by (13, 11) -> snapped to the grid
    assert (c.frame.x, c.frame.y, c.frame.w, c.frame.h) == (32, 24, 64, 48)
    drag(canvas, [(c.frame.x1, 40), (c.frame.x1 + 21, 40)])  # right edge: resize, left edge stays
    assert (c.frame.x, c.frame.w) == (32, 88) and c.frame.x1 % 8 == 0
    drag(canvas, [(c.frame.x, c.frame.y), (c.frame.x - 9, c.frame.y - 30)])  # top-left handle
    assert (c.frame.x, c.frame.y, c.frame.x1) == (24, -8, 120)  # may reach past the canvas (outpaint)
    drag(canvas, [(150, 100), (190, 140)])  # outside: a new frame
    assert (c.frame.x, c.frame.y, c.frame.w, c.frame.h) == (152, 104, 40, 40)
    qtbot.keyClick(canvas, Qt.Key.Key_Left)
    qtbot.keyClick(canvas, Qt.Key.Key_Up, Qt.KeyboardModifier.ShiftModifier)
    assert (c.frame.x, c.frame.y) == (144, 40)
    for v in (c.frame.x, c.frame.y, c.frame.w, c.frame.h):
        assert v % 8 == 0


def test_escape_while_dragging_restores_the_frame(fake, qtbot):
    from test_ui_support import _mouse, widget_pos
    from PySide6.QtCore import QEvent

    win, c, _ = fake
    canvas = win.canvas
    win.select_tool("ai_frame")
    before = c.frame
    left = Qt.MouseButton.LeftButton
    _mouse(canvas, QEvent.Type.MouseButtonPress, widget_pos(canvas, 50, 50), left, left, Qt.KeyboardModifier.NoModifier)
    _mouse(canvas, QEvent.Type.MouseMove, widget_pos(canvas, 90, 90), Qt.MouseButton.NoButton, left,
           Qt.KeyboardModifier.NoModifier)
    assert c.frame != before
    qtbot.keyClick(canvas, Qt.Key.Key_Escape)
    assert c.frame == before


def test_mode_label_follows_paint_selection_and_frame(fake, qtbot):
    win, c, _ = fake
    doc = win.session.document
    c.set_frame(c.make_frame(0, 0, 96, 96))
    c.poll_inputs()
    assert c.mode.label == "Generate"
    assert "Generate" in win.ai.panel.mode_label.text() and win.ai.overlay.label_text().startswith("Generate")
    win.session.update_brush("paint", size=16.0, hardness=1.0)
    drag(win.canvas, [(20, 20), (60, 20)])  # a stroke: partly transparent, inside the canvas: nothing grows
    qtbot.waitUntil(lambda: c.mode.label == "Fill empty area", timeout=2000)
    doc.select_rect(Rect(10, 10, 30, 30))
    qtbot.waitUntil(lambda: c.mode.label == "Inpaint selection", timeout=2000)
    doc.select_none()
    doc.add_layer_from_image(gradient(200, 150), 0, 0)  # a picture under the whole frame
    qtbot.waitUntil(lambda: c.mode.label == "Prompt edit", timeout=2000)
    win.select_tool("ai_frame")
    qtbot.keyClick(win.canvas, Qt.Key.Key_Right, Qt.KeyboardModifier.ShiftModifier)  # 64 px: past the canvas
    qtbot.keyClick(win.canvas, Qt.Key.Key_Right, Qt.KeyboardModifier.ShiftModifier)
    qtbot.waitUntil(lambda: c.mode.label == "Expand", timeout=2000)
    assert "past the canvas" in c.mode.reason
    assert "Expand" in win.ai.panel.mode_label.text()


# --------------------------------------------------------------------------- generate
def test_generate_variations_browse_accept_is_one_undo_step(fake, qtbot):
    win, c, engine = fake
    doc = win.session.document
    panel = win.ai.panel
    c.set_frame(c.make_frame(16, 8, 80, 72))
    qtbot.keyClicks(panel.prompt, "a red fox")
    panel.negative.setPlainText("blurry")
    panel.variations.setValue(3)
    panel.steps.setValue(4)
    seed_before = panel.seed.value()
    before = doc_state(doc)
    qtbot.mouseClick(panel.generate_button, Qt.MouseButton.LeftButton)
    assert c.final_job is not None and not panel.generate_button.isEnabled() and panel.cancel_button.isEnabled()
    wait_final(qtbot, c)
    assert panel.seed.value() != seed_before  # unlocked: a fresh seed per Generate, shown in the panel
    assert c.staging.count == 3 and panel.results.count() == 3 and panel.accept_button.isEnabled()
    assert same_state(doc_state(doc), before)  # staged results are not in the document
    seeds = [im.seed for im in c.staging.images]
    assert seeds == [panel.seed.value() + i for i in range(3)]
    prompt, negative = engine.calls[-1][1].prompt, engine.calls[-1][1].negative_prompt
    assert (prompt, negative) == ("a red fox", "blurry")
    qtbot.mouseClick(panel.next_button, Qt.MouseButton.LeftButton)
    assert c.staging.index == 1 and panel.result_index.text() == "2 / 3"
    assert c.overlay_image()[0] is c.staging.images[1]
    qtbot.mouseClick(panel.accept_button, Qt.MouseButton.LeftButton)
    layers = doc.raster_layers()
    assert len(layers) == 2 and doc.undo_stack.index == before[1] + 1
    layer = layers[-1]
    assert win.session.active_layer() is layer
    assert layer.attributes["prompt"] == "a red fox" and layer.attributes["seed"] == str(seeds[1])
    assert layer.attributes["frame"] == "16,8,64,64" and layer.attributes["mode"] == "txt2img"
    assert c.staging.count == 0 and not panel.results.isVisible()
    win.undo()
    assert same_state(doc_state(doc), before)


def test_locked_seed_repeats_and_discard_leaves_the_document(fake, qtbot):
    win, c, engine = fake
    doc = win.session.document
    panel = win.ai.panel
    panel.seed.setValue(1234)
    panel.seed_lock.setChecked(True)
    before = doc_state(doc)
    for widget in (panel.prompt, win.canvas):  # Ctrl+Enter generates, also from the prompt box
        qtbot.keyClick(widget, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
        assert c.final_job is not None and "\n" not in panel.prompt.toPlainText()
        wait_final(qtbot, c)
        assert c.staging.current.seed == 1234 and panel.seed.value() == 1234
    win.select_tool("ai_frame")
    qtbot.keyClick(win.canvas, Qt.Key.Key_Escape)  # the frame tool: Esc discards
    assert c.staging.count == 0 and "unchanged" in panel.message_label.text()
    assert same_state(doc_state(doc), before)
    assert len(engine.calls) == 2


def test_cancel_mid_render_adds_nothing_and_the_ui_stays_responsive(fake, qtbot):
    win, c, engine = fake
    engine.gate = threading.Event()  # every step waits: the render cannot finish on its own
    doc = win.session.document
    panel = win.ai.panel
    before = doc_state(doc)
    qtbot.mouseClick(panel.generate_button, Qt.MouseButton.LeftButton)
    qtbot.wait(50)
    assert c.final_job is not None
    drag(win.canvas, [(20, 20), (60, 60)])  # painting goes on during a render
    assert doc.undo_stack.index == before[1] + 1
    qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    wait_final(qtbot, c, 3000)
    assert "Cancelled" in panel.message_label.text() and c.staging.count == 0
    assert [l.name for l in doc.raster_layers()] == before[2]
    assert panel.generate_button.isEnabled() and not panel.cancel_button.isEnabled()
    assert panel.progress.value() == 0


@pytest.mark.parametrize("failure, expected", [
    (dict(fail=RuntimeError("the GPU caught fire"), fail_at_step=1), "the GPU caught fire"),
    (dict(load_errors={"house:full": ModelFormatError("full.safetensors: cannot read the model")}),
     "cannot read the model"),
])
def test_engine_faults_show_a_message_and_leave_the_document(ai_env, qtbot, failure, expected):
    engine = FakeEngine(native_resolution=64, **failure)
    win, c = open_ai_window(qtbot, blank_document(), engine)
    doc = win.session.document
    before = doc_state(doc)
    c.generate()
    wait_final(qtbot, c)
    assert expected in win.ai.panel.message_label.text() and expected in c.last_error
    assert "#ff7a6e" in win.ai.panel.message_label.styleSheet()  # shown as an error
    assert same_state(doc_state(doc), before) and c.staging.count == 0
    assert win.ai.panel.generate_button.isEnabled()
    c.generate()  # the service survives: the next one runs (and fails the same way)
    wait_final(qtbot, c)
    close_ai_window(win)


def test_missing_house_model_says_so_and_the_editor_works(ai_env, qtbot):
    win, c = open_ai_window(qtbot, blank_document(), engine=None)  # models from the settings, as in the app
    panel = win.ai.panel
    assert "(missing)" in panel.final_model.currentText()
    assert c.generate() is None
    assert "house model is not installed" in panel.message_label.text()
    panel.live.setChecked(True)
    assert not panel.live.isChecked() and not c.live_enabled
    drag(win.canvas, [(20, 20), (60, 60)])  # the rest of the editor works
    assert len(win.session.document.undo_stack) == 1
    close_ai_window(win)


def test_add_model_picks_a_user_folder_and_reports_a_bad_one(ai_env, qtbot, tmp_path, monkeypatch):
    from editor.ai import catalog

    real_inspect = catalog.inspect_model_file

    def inspect(path):  # the stand-in folder is no real model: describe it as one
        if str(path).endswith("my-model"):
            return catalog.ModelFacts("checkpoint", "sd1", "Stable Diffusion 1.x", 2_100_000_000,
                                      format="diffusers")
        return real_inspect(path)

    monkeypatch.setattr(catalog, "inspect_model_file", inspect)
    win, c = open_ai_window(qtbot, blank_document(), engine=None)
    panel = win.ai.panel
    good = tmp_path / "my-model"
    good.mkdir()
    (good / "model_index.json").write_text("{}")
    panel.choose_model_folder = lambda: str(good)
    panel._add_folder()
    assert panel.final_model.currentData() == str(good) and win.settings.final_model == str(good)
    assert panel.final_model.currentText() == "my-model"
    assert panel.preview_model.findData(str(good)) >= 0  # also offered as the preview model
    bad = tmp_path / "not-a-model"
    bad.mkdir()
    panel.choose_model_folder = lambda: str(bad)
    panel._add_folder()
    assert "Not added" in panel.message_label.text()
    assert win.settings.final_model == str(good)
    close_ai_window(win)


def test_outpaint_accept_grows_the_canvas_and_the_frame_follows(ai_env, qtbot):
    engine = FakeEngine(native_resolution=64)
    win, c = open_ai_window(qtbot, blank_document(96, 64), engine)
    doc = win.session.document
    c.set_frame(c.make_frame(-32, 0, 64, 64))  # reaches 32 px past the left edge
    c.poll_inputs()
    assert c.mode.label == "Expand"
    c.generate()
    wait_final(qtbot, c)
    c.accept()
    assert (doc.width, doc.height) == (128, 64)
    assert (c.frame.x, c.frame.y) == (0, 0)  # the frame moved with the content
    assert doc.render_uncached()[:, :32, 3].min() == 255  # the new strip is filled
    win.undo()
    assert (doc.width, doc.height) == (96, 64) and (c.frame.x, c.frame.y) == (-32, 0)
    close_ai_window(win)


# --------------------------------------------------------------------------- live
def test_live_preview_is_drawn_on_the_canvas_not_in_the_document(ai_env, qtbot):
    engine = FakeEngine(native_resolution=64, delay=0.02)
    win, c = open_ai_window(qtbot, blank_document(), engine)
    doc = win.session.document
    panel = win.ai.panel
    c.set_frame(c.make_frame(0, 0, 96, 96))
    panel.prompt.setPlainText("sunset")
    before = doc_state(doc)
    panel.live.setChecked(True)
    qtbot.waitUntil(lambda: c.live_image is not None, timeout=3000)
    assert "ms per frame" in panel.live_stats.text()  # one frame is no rate yet: "idle" or "fps"
    panel.live_opacity.setValue(100)
    assert c.overlay_image() == (c.live_image, 1.0)
    win.canvas.flush_all()
    grab = win.canvas.grab().toImage()
    pos = win.canvas.widget_point(50, 60)
    shown = grab.pixelColor(pos)
    expected = c.live_image.rgba[60 - c.live_image.y, 50 - c.live_image.x]
    assert np.allclose((shown.red(), shown.green(), shown.blue()), expected[:3], atol=3)
    assert same_state(doc_state(doc), before)
    assert all(model == "house:preview" for model, _ in engine.calls)
    panel.live.setChecked(False)
    assert c.live_image is None and c.overlay_image() is None
    close_ai_window(win)


def test_live_renders_while_a_stroke_is_drawn_with_one_request_in_flight(ai_env, qtbot):
    engine = FakeEngine(native_resolution=64, delay=0.06)
    win, c = open_ai_window(qtbot, transparent_document(), engine)
    c.set_frame(c.make_frame(0, 0, 128, 128))
    c.update_request(prompt="ink")
    c.set_live(True)
    qtbot.waitUntil(lambda: c.live.stats.finished >= 1, timeout=3000)
    first = c.live.stats.finished
    win.session.update_brush("paint", size=8.0)
    seen_during_stroke = []
    slow_stroke(qtbot, win.canvas, [(10 + 6 * i, 40 + (i % 5) * 4) for i in range(16)], pause_ms=45,
                during=lambda: seen_during_stroke.append(c.live.stats.finished))
    assert seen_during_stroke[-1] >= first + 2  # frames arrived before the pen was lifted
    qtbot.waitUntil(lambda: c.live.idle, timeout=3000)
    assert engine.max_in_flight == 1
    assert c.live.stats.finished >= 3 and len(engine.calls) == c.live.stats.started
    close_ai_window(win)


def test_generate_with_live_refines_the_preview_with_its_seed(ai_env, qtbot):
    engine = FakeEngine(native_resolution=64)
    win, c = open_ai_window(qtbot, transparent_document(), engine)
    c.set_frame(c.make_frame(0, 0, 64, 64))
    c.update_request(prompt="moon", seed=77)
    c.set_live(True)
    qtbot.waitUntil(lambda: c.live_image is not None and c.live.idle, timeout=3000)
    job = c.generate()
    assert c.refining and job.plan.refined
    wait_final(qtbot, c)
    model_id, request = engine.calls[-1]
    assert model_id == "house:full" and request.seed == 77 and request.init_image is not None
    assert request.strength == pytest.approx(REFINE_STRENGTH)  # the session's refine (docs/coherence.md)
    assert c.staging.count == 1 and c.overlay_image()[0] is c.staging.current
    n_calls = len(engine.calls)
    c.discard()  # live resumes; same inputs: nothing new to render
    qtbot.wait(200)
    assert len(engine.calls) == n_calls and c.live_image is not None
    close_ai_window(win)


# --------------------------------------------------------------------------- responsiveness
def test_event_loop_stall_during_generation_and_live(ai_env, qtbot, capsys):
    from editor.ui.ai.stall import StallMeter

    engine = FakeEngine(native_resolution=64, delay=0.6)
    win, c = open_ai_window(qtbot, blank_document(), engine)
    c.set_frame(c.make_frame(0, 0, 200, 144))
    c.update_request(prompt="a harbour", steps=20, variations=2)
    meter = StallMeter(5)
    meter.start()
    c.generate()
    wait_final(qtbot, c, 10000)
    c.discard()
    c.set_live(True)
    slow_stroke(qtbot, win.canvas, [(10 + 8 * i, 50) for i in range(12)], pause_ms=20)
    qtbot.waitUntil(lambda: c.live.idle, timeout=5000)
    worst = meter.stop()
    with capsys.disabled():
        print(f"\n[event-loop stall, fake engine] max gap {worst:.1f} ms over {meter.ticks} ticks")
    assert meter.ticks > 100
    assert worst < 250
    close_ai_window(win)


def test_panel_samplers_are_the_engines():
    from inference.samplers.config import SAMPLER_NAMES

    from editor.ui.ai.panel import SAMPLERS

    assert tuple(name for name, _ in SAMPLERS) == SAMPLER_NAMES


def test_a_live_frame_still_queued_at_shutdown_is_dropped(ai_env, qtbot):
    """A frame the worker finished just before shutdown reaches the UI thread as a queued event
    after the service is gone; it must be dropped, not crash the event loop."""
    engine = FakeEngine(native_resolution=64, delay=0.02)
    win, c = open_ai_window(qtbot, transparent_document(), engine)
    c.set_frame(c.make_frame(0, 0, 64, 64))
    c.update_request(prompt="ink")
    assert c.set_live(True)
    qtbot.waitUntil(lambda: c.live.last_frame is not None, timeout=3000)
    frame = c.live.last_frame
    win.ai.shutdown()
    assert c.live is None and c.live_enabled
    shown = c.live_image
    c._on_live_frame(frame)  # what the queued relay event calls
    assert c.live_image is shown
    win.close()
