"""Selection tools through the canvas: rectangle, ellipse, lasso, modifiers,
click-to-deselect, Select menu shortcuts, mask brush (one undo step, shown
as a tinted overlay), and that painting respects the selection."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt

from editor.document import Rect
from editor.document.selection import ellipse_mask, polygon_mask

from test_ui_support import click, drag, editor_env, layer_pixels, window  # noqa: F401 - fixtures


def mask_of(win) -> np.ndarray:
    m = win.session.document.selection.mask
    doc = win.session.document
    return np.zeros((doc.height, doc.width), np.uint8) if m is None else m


def test_rectangle_selection_mask(window, qtbot):
    qtbot.keyClick(window.canvas, Qt.Key.Key_M)
    drag(window.canvas, [(20, 30), (50, 50), (80, 90)])
    m = mask_of(window)
    assert m[30:90, 20:80].min() == 255
    assert m.sum() == 255 * 60 * 60
    assert window.session.document.undo_stack.undo_text() == "Rectangle select"


def test_modifiers_add_and_subtract_then_click_deselects(window, qtbot):
    qtbot.keyClick(window.canvas, Qt.Key.Key_M)
    drag(window.canvas, [(10, 10), (60, 60)])
    drag(window.canvas, [(100, 10), (150, 60)], modifiers=Qt.KeyboardModifier.ShiftModifier)
    m = mask_of(window)
    assert m[10:60, 10:60].min() == 255 and m[10:60, 100:150].min() == 255
    drag(window.canvas, [(20, 20), (40, 40)], modifiers=Qt.KeyboardModifier.AltModifier)
    m = mask_of(window)
    assert m[20:40, 20:40].max() == 0 and m[10, 10] == 255
    click(window.canvas, 120, 120)
    assert window.session.document.selection.mask is None


def test_ellipse_selection_matches_model_shape(window, qtbot):
    qtbot.keyClick(window.canvas, Qt.Key.Key_M)
    qtbot.keyClick(window.canvas, Qt.Key.Key_M, Qt.KeyboardModifier.ShiftModifier)
    assert window.canvas.tool.tool_id == "ellipse_select"
    drag(window.canvas, [(40, 20), (140, 120)])
    doc = window.session.document
    expected = ellipse_mask(doc.width, doc.height, Rect(40, 20, 100, 100))
    assert np.array_equal(mask_of(window), expected)
    assert mask_of(window)[70, 90] == 255 and mask_of(window)[22, 42] == 0  # centre in, corner out


def test_lasso_selection(window, qtbot):
    qtbot.keyClick(window.canvas, Qt.Key.Key_L)
    pts = [(20, 20), (120, 20), (120, 100), (20, 100)]
    drag(window.canvas, pts + [(20, 21)])
    doc = window.session.document
    m = mask_of(window)
    assert m[30:90, 30:110].min() == 255
    assert m[110:, :].max() == 0 and m[:, 130:].max() == 0
    expected = polygon_mask(doc.width, doc.height, pts + [(20, 21)])
    assert np.abs(m.astype(int) - expected.astype(int)).max() <= 16  # same polygon up to edge AA


def test_feather_option_softens_the_edge(window, qtbot):
    window.session.set_option("selection_feather", 6.0)
    qtbot.keyClick(window.canvas, Qt.Key.Key_M)
    drag(window.canvas, [(40, 40), (120, 110)])
    m = mask_of(window)
    assert m[75, 80] == 255
    assert 0 < m[75, 40] < 255  # the edge is soft


def test_select_menu_shortcuts(window, qtbot):
    doc = window.session.document
    qtbot.keyClick(window.canvas, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    assert mask_of(window).min() == 255
    qtbot.keyClick(window.canvas, Qt.Key.Key_D, Qt.KeyboardModifier.ControlModifier)
    assert doc.selection.mask is None
    doc.select_rect(Rect(0, 0, 50, 150))
    qtbot.keyClick(window.canvas, Qt.Key.Key_I, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    m = mask_of(window)
    assert m[:, :50].max() == 0 and m[:, 50:].min() == 255
    window.modify_selection("shrink", 5)
    assert mask_of(window)[:, 50:55].max() == 0
    window.modify_selection("grow", 5)
    assert mask_of(window)[10:140, 56:].min() == 255
    window.actions["invert"].trigger()
    assert mask_of(window)[75, 20] == 255


def test_painting_is_limited_to_the_selection(window):
    doc = window.session.document
    layer = doc.raster_layers()[-1]
    doc.select_rect(Rect(0, 0, 100, 150))
    window.session.smoothing = 0.0
    window.session.update_brush("paint", size=10.0, hardness=1.0)
    drag(window.canvas, [(50, 70), (150, 70)])
    alpha = layer_pixels(layer, doc)[..., 3]
    assert alpha[70, 60:99].min() == 255
    assert alpha[:, 100:].max() == 0


def test_mask_brush_paints_the_selection_in_one_step(window, qtbot):
    doc = window.session.document
    canvas = window.canvas
    qtbot.keyClick(canvas, Qt.Key.Key_Q)
    window.session.smoothing = 0.0
    window.session.update_brush("mask", size=20.0, hardness=1.0)
    steps = len(doc.undo_stack)
    drag(canvas, [(30, 75), (90, 75), (150, 75)])
    m = mask_of(window)
    assert m[75, 35:145].min() == 255
    assert m[50, :].max() == 0 and m[100, :].max() == 0
    assert len(doc.undo_stack) == steps + 1
    assert doc.undo_stack.undo_text() == "Mask brush"
    # The overlay shows exactly the model's selection, tinted, with an outline.
    assert canvas.overlay.mask is doc.selection.mask
    assert not canvas.overlay.outline.isEmpty()
    canvas.flush_all()
    assert any(True for _ in canvas.overlay.tiles.drawable(canvas.visible_image_rect()))
    # Alt removes.
    drag(canvas, [(80, 60), (80, 90)], modifiers=Qt.KeyboardModifier.AltModifier)
    assert mask_of(window)[75, 80] == 0 and mask_of(window)[75, 40] == 255
    window.undo()
    window.undo()
    assert doc.selection.mask is None
    assert canvas.overlay.mask is None


def test_mask_from_selection_and_painting_on_the_layer_mask(window, qtbot):
    doc = window.session.document
    layer = doc.raster_layers()[0]  # the white background
    window.session.set_active(layer)
    doc.select_rect(Rect(0, 0, 100, 150))
    window.layer_actions.actions["mask_from_selection"].trigger()
    assert layer.mask is not None and window.session.edit_target == "mask"
    doc.select_none()
    composite = doc.render()
    assert composite[70, 50, 3] == 255 and composite[70, 150, 3] == 0
    # Painting white on the mask reveals the right half again; pixels untouched.
    window.session.set_color((255, 255, 255))
    window.session.smoothing = 0.0
    window.session.update_brush("paint", size=20.0, hardness=1.0)
    qtbot.keyClick(window.canvas, Qt.Key.Key_B)
    drag(window.canvas, [(150, 20), (150, 120)])
    assert doc.render()[70, 150, 3] == 255
    assert layer_pixels(layer, doc)[..., 3].min() == 255
