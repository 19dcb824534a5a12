"""Brush dabs, strokes, erase, alpha lock, selection limits and observers."""

from __future__ import annotations

import numpy as np
import pytest

from editor.document import BrushSettings, Document, Rect, StrokeSpacer, dab_mask


def test_dab_mask_shape_and_hardness():
    x0, y0, m = dab_mask(20, 1.0, 50.5, 50.5)
    assert m.max() == pytest.approx(1.0)
    # Area of a hard 20 px dab is close to pi r^2 thanks to the 1 px AA rim.
    assert abs(m.sum() - np.pi * 100) < 3
    cy, cx = 50 - y0, 50 - x0
    assert m[cy, cx] == pytest.approx(1.0)
    assert m[cy, -1] == 0.0 and m[cy, cx + 10] == pytest.approx(0.5)  # AA rim at the radius
    _, _, soft = dab_mask(20, 0.0, 50.0, 50.0)
    assert soft.sum() < m.sum() * 0.6  # soft brush: much less coverage
    _, _, tiny = dab_mask(0.3, 1.0, 5.2, 5.7)
    assert 0 < tiny.sum() < 1


def test_stroke_opacity_caps_overlapping_dabs():
    doc = Document(64, 64)
    lay = doc.add_layer()
    brush = BrushSettings(size=30, hardness=1.0, opacity=0.5, flow=0.5, color=(255, 0, 0))
    doc.begin_stroke()
    for _ in range(20):
        doc.paint_dab(lay, 32, 32, brush)
    doc.end_stroke()
    px = doc.render()[32, 32]
    # Coverage approaches the stroke opacity (0.5) and never passes it.
    assert 127 <= px[3] <= 128 and tuple(px[:3]) == (255, 0, 0)
    # A second stroke builds on the first (opacity is per stroke).
    doc.begin_stroke()
    doc.paint_dab(lay, 32, 32, brush)
    doc.paint_dab(lay, 32, 32, brush)
    doc.end_stroke()
    a = int(doc.render()[32, 32, 3])
    assert 128 < a <= 128 + 64


def test_erase_and_alpha_lock():
    doc = Document(64, 64)
    lay = doc.add_layer_from_image(np.full((64, 64, 4), (0, 0, 255, 255), np.uint8))
    doc.set_alpha_locked(lay, True)
    doc.begin_stroke()
    doc.paint_dab(lay, 10, 10, BrushSettings(size=8, hardness=1, color=(255, 255, 0)))
    doc.paint_dab(lay, 40, 40, BrushSettings(size=8, hardness=1), erase=True)  # locked: no effect
    doc.end_stroke()
    out = doc.render()
    assert tuple(out[10, 10]) == (255, 255, 0, 255)
    assert tuple(out[40, 40]) == (0, 0, 255, 255)
    doc.set_alpha_locked(lay, False)
    doc.begin_stroke()
    doc.paint_dab(lay, 40, 40, BrushSettings(size=8, hardness=1), erase=True)
    doc.end_stroke()
    assert tuple(doc.render()[40, 40]) == (0, 0, 0, 0)


def test_selection_limits_painting_and_fill():
    doc = Document(100, 100)
    lay = doc.add_layer()
    doc.select_rect(Rect(0, 0, 50, 100))
    doc.begin_stroke()
    doc.paint_dab(lay, 50, 50, BrushSettings(size=40, hardness=1, color=(9, 9, 9)))
    doc.end_stroke()
    out = doc.render()
    assert out[50, 40, 3] == 255 and out[50, 60, 3] == 0
    doc.invert_selection()
    doc.fill_selection(lay, (1, 2, 3))
    out = doc.render()
    assert tuple(out[5, 90]) == (1, 2, 3, 255)
    assert out[5, 10, 3] == 0


def test_patch_dab_and_cancel_stroke():
    doc = Document(128, 128)
    lay = doc.add_layer()
    patch = np.zeros((10, 10, 4), np.uint8)
    patch[..., 1] = 200
    patch[..., 3] = 255
    doc.begin_stroke()
    rect = doc.apply_dab(lay, 60, 60, patch)
    assert rect == Rect(60, 60, 10, 10)
    assert tuple(doc.render()[65, 65]) == (0, 200, 0, 255)
    doc.cancel_stroke()
    assert doc.render()[65, 65, 3] == 0 and len(lay.tiles) == 0
    assert not doc.undo_stack.can_undo() or doc.undo_stack.undo_text() == "Add layer"


def test_stroke_is_one_undo_step_and_undo_blocked_mid_stroke():
    doc = Document(256, 256)
    a, b = doc.add_layer("a"), doc.add_layer("b")
    n = len(doc.undo_stack)
    doc.begin_stroke("Brush")
    for i in range(30):
        doc.paint_dab(a if i % 2 else b, 10 + i * 7, 100, BrushSettings(size=12))
    with pytest.raises(RuntimeError):
        doc.undo()
    doc.end_stroke()
    assert len(doc.undo_stack) == n + 1
    assert doc.undo_stack.undo_text() == "Brush"
    doc.undo()
    assert len(a.tiles) == 0 and len(b.tiles) == 0


def test_spacer_spacing_is_independent_of_event_rate():
    brush = BrushSettings(size=20, spacing=0.25)
    coarse = StrokeSpacer(brush)
    pts_a = list(coarse.add_point(0, 0)) + list(coarse.add_point(100, 0))
    fine = StrokeSpacer(brush)
    pts_b = list(fine.add_point(0, 0))
    for x in range(1, 101):
        pts_b += list(fine.add_point(float(x), 0))
    assert len(pts_a) == len(pts_b) == 21
    assert np.allclose([p[0] for p in pts_a], [p[0] for p in pts_b], atol=1e-6)


def test_signals_fire():
    doc = Document(64, 64)
    got = {"layers": 0, "pixels": [], "sel": 0, "resize": [], "hist": 0}
    doc.layers_changed.connect(lambda n: got.__setitem__("layers", got["layers"] + 1))
    doc.pixels_changed.connect(lambda r: got["pixels"].append(r))
    doc.selection_changed.connect(lambda: got.__setitem__("sel", got["sel"] + 1))
    doc.canvas_resized.connect(lambda *a: got["resize"].append(a))
    doc.history_changed.connect(lambda: got.__setitem__("hist", got["hist"] + 1))
    lay = doc.add_layer()
    doc.begin_stroke()
    doc.paint_dab(lay, 5, 5, BrushSettings(size=4))
    doc.end_stroke()
    doc.select_all()
    doc.extend_canvas(left=10)
    assert got["layers"] == 1 and got["sel"] >= 2 and got["resize"] == [(74, 64, 10, 0)]
    assert got["hist"] == 4
    assert got["pixels"] and got["pixels"][0].intersect(Rect(0, 0, 10, 10)) == got["pixels"][0]
