"""Painting through the real canvas widget: mouse and tablet strokes, undo,
tool shortcuts, brush size keys, fill/eyedropper/move, and dirty-rect
rendering (a dab never recomposites the whole canvas)."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from editor.document import Rect

from test_ui_support import (  # noqa: F401 - fixtures
    alpha_columns, blank_document, click, drag, editor_env, layer_pixels, open_window, tablet_stroke, window,
)


def paint_layer(win):
    return win.session.document.raster_layers()[-1]


def test_mouse_stroke_paints_the_right_pixels_as_one_undo_step(window):
    doc = window.session.document
    layer = paint_layer(window)
    window.session.set_color((200, 30, 30))
    window.session.update_brush("paint", size=10.0, hardness=1.0)
    window.session.smoothing = 0.0
    before = len(doc.undo_stack)
    drag(window.canvas, [(20, 50), (60, 50), (100, 50), (140, 50)])

    px = layer_pixels(layer, doc)
    # Along the stroke: opaque red; 20 px above and below: untouched.
    assert np.array_equal(px[50, 25:135], np.tile([200, 30, 30, 255], (110, 1)))
    assert px[30, :, 3].max() == 0 and px[70, :, 3].max() == 0
    # Nothing left of the start or right of the end (beyond the brush radius).
    assert px[:, :13, 3].max() == 0 and px[:, 147:, 3].max() == 0
    assert len(doc.undo_stack) == before + 1
    assert doc.undo_stack.undo_text() == "Paint stroke"

    window.undo()
    assert layer_pixels(layer, doc)[..., 3].max() == 0
    window.redo()
    assert np.array_equal(layer_pixels(layer, doc), px)


def test_undo_redo_via_keyboard(window, qtbot):
    doc = window.session.document
    layer = paint_layer(window)
    window.session.smoothing = 0.0
    drag(window.canvas, [(30, 30), (80, 30)])
    painted = layer_pixels(layer, doc)
    assert painted[..., 3].any()
    qtbot.keyClick(window.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert not layer_pixels(layer, doc)[..., 3].any()
    qtbot.keyClick(window.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert np.array_equal(layer_pixels(layer, doc), painted)
    qtbot.keyClick(window.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClick(window.canvas, Qt.Key.Key_Y, Qt.KeyboardModifier.ControlModifier)
    assert np.array_equal(layer_pixels(layer, doc), painted)


def test_tablet_pressure_changes_dab_size(window):
    doc = window.session.document
    layer = paint_layer(window)
    window.session.update_brush("paint", size=30.0, hardness=1.0, pressure_size=True, spacing=0.05)
    window.session.smoothing = 0.0
    # Pressure rises from 0.1 to 1.0 along a horizontal line at y = 70.
    points = [(20 + i * 10, 70, 0.1 + 0.9 * i / 15) for i in range(16)]
    tablet_stroke(window.canvas, points)
    alpha = layer_pixels(layer, doc)[..., 3]
    thin = alpha_columns(alpha[:, 30])   # low pressure end
    thick = alpha_columns(alpha[:, 160])  # high pressure end
    assert 1 <= thin <= 8, thin
    assert 24 <= thick <= 32, thick
    # Monotonic growth along the stroke (tolerate 1 px of rasterisation noise).
    widths = [alpha_columns(alpha[:, x]) for x in range(30, 161, 10)]
    assert all(b >= a - 1 for a, b in zip(widths, widths[1:])), widths
    assert len(doc.undo_stack) == 1


def test_eraser_and_stylus_eraser(window, qtbot):
    doc = window.session.document
    bg = doc.raster_layers()[0]
    window.session.set_active(bg)
    window.session.update_brush("erase", size=12.0, hardness=1.0)
    window.session.smoothing = 0.0
    qtbot.keyClick(window.canvas, Qt.Key.Key_E)
    assert window.canvas.tool.tool_id == "eraser"
    drag(window.canvas, [(50, 40), (120, 40)])
    alpha = layer_pixels(bg, doc)[..., 3]
    assert alpha[40, 60:110].max() == 0  # erased to transparency
    assert alpha[80, :].min() == 255      # untouched row


def test_tool_shortcuts_and_brush_size_keys(window, qtbot):
    canvas = window.canvas
    expected = {Qt.Key.Key_B: "brush", Qt.Key.Key_E: "eraser", Qt.Key.Key_M: "rect_select", Qt.Key.Key_L: "lasso",
                Qt.Key.Key_V: "move", Qt.Key.Key_I: "eyedropper", Qt.Key.Key_F: "fill", Qt.Key.Key_G: "ai_frame", Qt.Key.Key_Q: "mask_brush",
                Qt.Key.Key_Z: "zoom", Qt.Key.Key_H: "pan"}
    for key, tool_id in expected.items():
        qtbot.keyClick(canvas, key)
        assert canvas.tool.tool_id == tool_id, key
        assert window.tool_actions[tool_id].isChecked()
    qtbot.keyClick(canvas, Qt.Key.Key_M)
    qtbot.keyClick(canvas, Qt.Key.Key_M, Qt.KeyboardModifier.ShiftModifier)
    assert canvas.tool.tool_id == "ellipse_select"
    qtbot.keyClick(canvas, Qt.Key.Key_M, Qt.KeyboardModifier.ShiftModifier)
    assert canvas.tool.tool_id == "rect_select"

    qtbot.keyClick(canvas, Qt.Key.Key_B)
    size = window.session.brush("paint").size
    qtbot.keyClick(canvas, Qt.Key.Key_BracketRight)
    bigger = window.session.brush("paint").size
    assert bigger > size
    qtbot.keyClick(canvas, Qt.Key.Key_BracketLeft)
    qtbot.keyClick(canvas, Qt.Key.Key_BracketLeft)
    assert window.session.brush("paint").size < size
    assert window.tool_options.size.value() == window.session.brush("paint").size
    # The mask brush keeps its own size.
    mask_size = window.session.brush("mask").size
    qtbot.keyClick(canvas, Qt.Key.Key_Q)
    qtbot.keyClick(canvas, Qt.Key.Key_BracketRight)
    assert window.session.brush("mask").size > mask_size
    assert window.session.brush("paint").size < size


def test_ctrl_click_and_eyedropper_pick_colours(window, qtbot):
    doc = window.session.document
    layer = paint_layer(window)
    doc.select_rect(Rect(100, 100, 20, 20))
    window.session.set_color((10, 200, 90))
    doc.fill_selection(layer, (10, 200, 90))
    doc.select_none()
    window.session.set_color((0, 0, 0))
    click(window.canvas, 110, 110, modifiers=Qt.KeyboardModifier.ControlModifier)
    assert window.session.color == (10, 200, 90)
    window.session.set_color((0, 0, 0))
    qtbot.keyClick(window.canvas, Qt.Key.Key_I)
    click(window.canvas, 5, 5)
    assert window.session.color == (255, 255, 255)


def test_fill_tool_fills_contiguous_area_in_one_step(window, qtbot):
    doc = window.session.document
    layer = paint_layer(window)
    window.session.smoothing = 0.0
    window.session.set_color((0, 0, 0))
    window.session.update_brush("paint", size=4.0, hardness=1.0)
    drag(window.canvas, [(100, 0), (100, 149)])  # a vertical wall splits the layer
    qtbot.keyClick(window.canvas, Qt.Key.Key_F)
    window.session.set_color((0, 0, 255))
    steps = len(doc.undo_stack)
    click(window.canvas, 20, 20)
    px = layer_pixels(layer, doc)
    assert tuple(px[20, 20]) == (0, 0, 255, 255)
    assert tuple(px[140, 90]) == (0, 0, 255, 255)
    assert px[20, 150, 3] == 0  # the other side of the wall stays empty
    assert len(doc.undo_stack) == steps + 1


def test_move_tool_drag_is_one_step(window, qtbot):
    doc = window.session.document
    layer = paint_layer(window)
    qtbot.keyClick(window.canvas, Qt.Key.Key_V)
    drag(window.canvas, [(10, 10), (20, 15), (40, 30)])
    assert (layer.x, layer.y) == (30, 20)
    assert doc.undo_stack.undo_text() == "Move layer"
    drag(window.canvas, [(10, 10), (15, 10)])
    assert (layer.x, layer.y) == (35, 20)
    window.undo()
    assert (layer.x, layer.y) == (30, 20)
    window.undo()
    assert (layer.x, layer.y) == (0, 0)


def test_painting_a_hidden_layer_is_refused_with_a_message(window):
    doc = window.session.document
    layer = paint_layer(window)
    doc.set_visible(layer, False)
    steps = len(doc.undo_stack)
    drag(window.canvas, [(30, 30), (60, 30)])
    assert len(doc.undo_stack) == steps
    assert "hidden" in window.statusBar().currentMessage()


def test_a_dab_rerenders_only_dirty_tiles(editor_env, qtbot):
    doc = blank_document(2048, 2048)
    win = open_window(qtbot, doc)
    win.canvas.set_zoom(0.25)  # the whole 2048 px canvas is on screen
    QApplication.processEvents()
    win.canvas.flush_all()
    # Background renders (idle autosave's merged image, layer thumbnails) also count on the shared
    # render cache; under CPU load their timers can fire mid-stroke. Only the canvas is measured here.
    win.autosave._idle.setInterval(3_600_000)
    win.autosave._periodic.stop()
    win.layers_panel._thumb_timer.setInterval(3_600_000)
    cache = doc.render_cache
    display = win.canvas.tiles
    model_before, display_before = cache.tiles_rendered, display.pixels_rendered
    win.session.smoothing = 0.0
    win.session.update_brush("paint", size=20.0)
    drag(win.canvas, [(1000, 1000), (1010, 1000)])
    win.canvas.flush_all()
    # A short stroke touches a handful of 64 px model tiles, far from the 1024 of the canvas.
    assert 0 < cache.tiles_rendered - model_before <= 16
    assert 0 < display.pixels_rendered - display_before <= 4 * 64 * 64 * 4


def test_smoothing_keeps_stroke_end(window):
    doc = window.session.document
    layer = paint_layer(window)
    window.session.smoothing = 0.9
    window.session.update_brush("paint", size=6.0, hardness=1.0)
    drag(window.canvas, [(20, 20), (60, 20), (120, 20)])
    alpha = layer_pixels(layer, doc)[..., 3]
    assert alpha[20, 118] > 0  # the tail reaches where the pointer was released
