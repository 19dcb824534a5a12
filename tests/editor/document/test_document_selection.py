"""Selection shapes, modifiers and canvas resizing."""

from __future__ import annotations

import numpy as np
import pytest

from editor.document import Document, Rect


def test_rect_ellipse_polygon_areas():
    doc = Document(200, 100)
    doc.select_rect(Rect(10, 20, 30, 40))
    m = doc.selection.mask
    assert m is not None and int((m == 255).sum()) == 1200 and doc.selection.bounds() == Rect(10, 20, 30, 40)
    doc.select_ellipse(Rect(50, 10, 80, 80))
    area = doc.selection.mask.astype(np.float64).sum() / 255
    assert abs(area - np.pi * 40 * 40) / (np.pi * 1600) < 0.02
    doc.select_polygon([(0, 0), (100, 0), (0, 100)])
    area = doc.selection.mask.astype(np.float64).sum() / 255
    assert abs(area - 5000) / 5000 < 0.03


def test_combine_modes():
    doc = Document(100, 100)
    doc.select_rect(Rect(0, 0, 50, 100))
    doc.select_rect(Rect(25, 0, 50, 100), "add")
    assert doc.selection.bounds() == Rect(0, 0, 75, 100)
    doc.select_rect(Rect(0, 0, 30, 100), "subtract")
    assert doc.selection.bounds() == Rect(30, 0, 45, 100)
    doc.select_rect(Rect(0, 0, 40, 100), "intersect")
    assert doc.selection.bounds() == Rect(30, 0, 10, 100)
    doc.select_rect(Rect(90, 90, 5, 5), "intersect")
    assert not doc.selection.is_active()


def test_feather_grow_shrink_invert():
    doc = Document(120, 120)
    doc.select_rect(Rect(40, 40, 40, 40))
    doc.feather_selection(6)
    m = doc.selection.mask
    assert m[60, 60] == 255 and 0 < m[60, 40] < 255 and m[60, 30] == 0
    assert doc.selection.bounds().x >= 40 - 7
    doc.select_rect(Rect(40, 40, 40, 40))
    doc.grow_selection(5)
    assert doc.selection.bounds() == Rect(35, 35, 50, 50)
    assert doc.selection.mask[36, 36] == 0  # disc, not square: corners stay round
    doc.shrink_selection(10)
    assert doc.selection.bounds() == Rect(45, 45, 30, 30)
    doc.invert_selection()
    assert doc.selection.mask[0, 0] == 255 and doc.selection.mask[60, 60] == 0
    doc.select_all()
    doc.shrink_selection(3)  # the canvas edge counts as unselected
    assert doc.selection.bounds() == Rect(3, 3, 114, 114)
    doc.select_none()
    assert doc.selection.mask is None
    doc.invert_selection()  # nothing selected -> everything
    assert doc.selection.mask.min() == 255


def test_selection_undo_and_memory_is_cropped():
    doc = Document(4000, 4000)
    doc.select_rect(Rect(100, 100, 10, 10))
    doc.select_rect(Rect(200, 200, 20, 20))
    # Undo stores bounding-box crops, not two 16 MB masks.
    assert doc.undo_stack.byte_size() < 2000
    doc.undo()
    assert doc.selection.bounds() == Rect(100, 100, 10, 10)
    doc.undo()
    assert not doc.selection.is_active()


@pytest.mark.parametrize("left,top,right,bottom", [(100, 0, 0, 0), (0, 50, 30, 0), (-20, -10, 40, 8), (7, 9, -11, -13)])
def test_extend_canvas_keeps_content_in_place(left, top, right, bottom):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (60, 80, 4), dtype=np.uint8)
    doc = Document(80, 60)
    doc.add_layer_from_image(img)
    doc.select_rect(Rect(10, 10, 20, 20))
    before = doc.render().copy()
    doc.extend_canvas(left, top, right, bottom)
    assert (doc.width, doc.height) == (80 + left + right, 60 + top + bottom)
    after = doc.render()
    # Old pixel (x, y) is now at (x + left, y + top) wherever both exist.
    old = Rect(0, 0, 80, 60).translated(left, top).intersect(doc.canvas_rect)
    assert np.array_equal(after[old.slices()], before[old.translated(-left, -top).slices()])
    assert doc.selection.bounds() == Rect(10 + left, 10 + top, 20, 20).intersect(doc.canvas_rect)
    doc.undo()
    assert np.array_equal(doc.render(), before)
