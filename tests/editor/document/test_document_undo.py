"""Undo/redo exactness (property-based), undo memory, and stack semantics."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from editor.document import (
    TILE,
    BlendMode,
    BrushSettings,
    Command,
    Document,
    LayerGroup,
    RasterLayer,
    Rect,
    UndoStack,
)

W, H = 150, 110


def grid_snapshot(grid):
    if grid is None:
        return None
    return (grid.channels, grid.default, tuple(sorted((k, a.tobytes()) for k, a in grid.items())))


def node_snapshot(node):
    base = (type(node).__name__, node.uid, node.name, node.opacity, node.visible, node.blend_mode,
            tuple(sorted(node.attributes.items())))
    if isinstance(node, RasterLayer):
        return base + (node.x, node.y, node.alpha_locked, grid_snapshot(node.tiles), grid_snapshot(node.mask))
    assert isinstance(node, LayerGroup)
    return base + (node.isolated, tuple(node_snapshot(c) for c in node.children))


def snapshot(doc):
    sel = doc.selection.mask
    return (doc.width, doc.height, None if sel is None else sel.tobytes(), node_snapshot(doc.root))


# -- random operations -------------------------------------------------------
coord = st.integers(-60, 200)
ops = st.one_of(
    st.tuples(st.just("paint"), st.integers(0, 99), coord, coord, st.floats(1, 70), st.booleans(),
              st.integers(0, 255), st.floats(0.1, 1)),
    st.tuples(st.just("patch"), st.integers(0, 99), coord, coord, st.integers(1, 90), st.integers(0, 2**31)),
    st.tuples(st.just("add_layer"), st.integers(0, 99), st.integers(0, 99)),
    st.tuples(st.just("add_group"), st.integers(0, 99), st.booleans()),
    st.tuples(st.just("add_image"), coord, coord, st.integers(1, 80), st.integers(0, 2**31)),
    st.tuples(st.just("remove"), st.integers(0, 99)),
    st.tuples(st.just("move"), st.integers(0, 99), st.integers(0, 99), st.integers(0, 99)),
    st.tuples(st.just("duplicate"), st.integers(0, 99)),
    st.tuples(st.just("opacity"), st.integers(0, 99), st.floats(0, 1)),
    st.tuples(st.just("visible"), st.integers(0, 99), st.booleans()),
    st.tuples(st.just("blend"), st.integers(0, 99), st.sampled_from(list(BlendMode))),
    st.tuples(st.just("rename"), st.integers(0, 99), st.text(max_size=8)),
    st.tuples(st.just("attrs"), st.integers(0, 99), st.dictionaries(st.sampled_from(["seed", "prompt"]), st.text(max_size=5))),
    st.tuples(st.just("alpha_lock"), st.integers(0, 99), st.booleans()),
    st.tuples(st.just("offset"), st.integers(0, 99), st.integers(-70, 70), st.integers(-70, 70)),
    st.tuples(st.just("add_mask"), st.integers(0, 99), st.booleans()),
    st.tuples(st.just("paint_mask"), st.integers(0, 99), coord, coord, st.integers(0, 255)),
    st.tuples(st.just("apply_mask"), st.integers(0, 99)),
    st.tuples(st.just("delete_mask"), st.integers(0, 99)),
    st.tuples(st.just("select"), st.sampled_from(["rect", "ellipse", "lasso"]), coord, coord, st.integers(1, 120),
              st.sampled_from(["replace", "add", "subtract", "intersect"]), st.floats(0, 8)),
    st.tuples(st.just("selmod"), st.sampled_from(["invert", "grow", "shrink", "feather", "none", "all"]),
              st.integers(1, 6)),
    st.tuples(st.just("resize"), st.integers(-40, 70), st.integers(-40, 70), st.integers(-50, 50), st.integers(-50, 50)),
    st.tuples(st.just("fill"), st.integers(0, 99), st.integers(0, 255), st.booleans()),
    st.tuples(st.just("merge_down"), st.integers(0, 99)),
)


def apply_op(doc: Document, op) -> None:
    kind = op[0]
    nodes = list(doc.nodes())
    layers = [n for n in nodes if isinstance(n, RasterLayer)]
    groups = [doc.root] + [n for n in nodes if isinstance(n, LayerGroup)]
    pick = lambda seq, i: seq[i % len(seq)] if seq else None  # noqa: E731
    if kind == "paint" and layers:
        _, i, x, y, size, erase, c, opacity = op
        doc.begin_stroke()
        lay = pick(layers, i)
        brush = BrushSettings(size=size, hardness=0.5, opacity=opacity, color=(c, 255 - c, c // 2))
        for k in range(3):
            doc.paint_dab(lay, x + 9 * k, y + 5 * k, brush, erase=erase)
        doc.end_stroke()
    elif kind == "patch" and layers:
        _, i, x, y, size, seed = op
        patch = np.random.default_rng(seed).integers(0, 256, (size, size, 4), dtype=np.uint8)
        doc.begin_stroke()
        doc.apply_dab(pick(layers, i), x, y, patch)
        doc.end_stroke()
    elif kind == "add_layer":
        g = pick(groups, op[1])
        doc.add_layer("L", parent=g, index=op[2] % (len(g.children) + 1))
    elif kind == "add_group":
        doc.add_group("G", parent=pick(groups, op[1]), isolated=op[2])
    elif kind == "add_image":
        _, x, y, size, seed = op
        img = np.random.default_rng(seed).integers(0, 256, (size, size + 3, 4), dtype=np.uint8)
        doc.add_layer_from_image(img, x, y, attributes={"seed": str(seed)})
    elif kind == "remove" and nodes:
        doc.remove_layer(pick(nodes, op[1]))
    elif kind == "move" and nodes:
        node = pick(nodes, op[1])
        targets = [g for g in groups if g is not node and not any(a is node for a in g.ancestors())]
        g = pick(targets, op[2])
        n = len(g.children) - (1 if node.parent is g else 0)
        doc.move_layer(node, g, op[3] % (n + 1))
    elif kind == "duplicate" and nodes:
        doc.duplicate_layer(pick(nodes, op[1]))
    elif kind == "opacity" and nodes:
        doc.set_opacity(pick(nodes, op[1]), op[2])
    elif kind == "visible" and nodes:
        doc.set_visible(pick(nodes, op[1]), op[2])
    elif kind == "blend" and nodes:
        doc.set_blend_mode(pick(nodes, op[1]), op[2])
    elif kind == "rename" and nodes:
        doc.rename_layer(pick(nodes, op[1]), op[2])
    elif kind == "attrs" and nodes:
        doc.set_attributes(pick(nodes, op[1]), op[2])
    elif kind == "alpha_lock" and layers:
        doc.set_alpha_locked(pick(layers, op[1]), op[2])
    elif kind == "offset" and layers:
        doc.translate_layer(pick(layers, op[1]), op[2], op[3])
    elif kind == "add_mask" and layers:
        lay = pick(layers, op[1])
        if lay.mask is None:
            doc.add_mask(lay, from_selection=op[2])
    elif kind == "paint_mask" and layers:
        lay = pick(layers, op[1])
        if lay.mask is not None:
            doc.begin_stroke()
            doc.paint_dab(lay, op[2], op[3], BrushSettings(size=30, color=(op[4],) * 3), target="mask")
            doc.end_stroke()
    elif kind == "apply_mask" and layers:
        doc.apply_mask(pick(layers, op[1]))
    elif kind == "delete_mask" and layers:
        doc.delete_mask(pick(layers, op[1]))
    elif kind == "select":
        _, shape, x, y, size, mode, feather = op
        r = Rect(x, y, size, size // 2 + 1)
        if shape == "rect":
            doc.select_rect(r, mode, feather)
        elif shape == "ellipse":
            doc.select_ellipse(r, mode, feather)
        else:
            doc.select_polygon([(x, y), (x + size, y + 3), (x + size // 2, y + size)], mode, feather)
    elif kind == "selmod":
        _, what, r = op
        {"invert": doc.invert_selection, "none": doc.select_none, "all": doc.select_all}.get(
            what, lambda: getattr(doc, f"{what}_selection")(r)
        )()
    elif kind == "resize":
        _, dw, dh, dx, dy = op
        doc.resize_canvas(max(1, doc.width + dw), max(1, doc.height + dh), dx, dy)
    elif kind == "fill" and layers:
        doc.fill_selection(pick(layers, op[1]), (op[2], 0, 255 - op[2]), opacity=0.7, erase=op[3])
    elif kind == "merge_down" and layers:
        lay = pick(layers, op[1])
        idx = lay.index_in_parent()
        if idx > 0 and isinstance(lay.parent.children[idx - 1], RasterLayer):
            doc.merge_down(lay)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ops, min_size=6, max_size=24), st.integers(0, 2**31))
def test_undo_all_restores_everything_and_redo_all_reproduces(op_list, seed):
    doc = Document(W, H)
    doc.add_layer_from_image(np.random.default_rng(seed).integers(0, 256, (H, W, 4), dtype=np.uint8))
    doc.add_layer("top")
    doc.undo_stack.clear()
    initial = snapshot(doc)
    initial_render = doc.render().copy()
    for op in op_list:
        apply_op(doc, op)
    final = snapshot(doc)
    final_render = doc.render().copy()
    assert np.array_equal(final_render, doc.render_uncached())
    steps = 0
    while doc.undo():
        steps += 1
    assert snapshot(doc) == initial
    assert np.array_equal(doc.render(), initial_render)
    while doc.redo():
        steps -= 1
    assert steps == 0
    assert snapshot(doc) == final
    assert np.array_equal(doc.render(), final_render)


def test_one_dab_on_16k_canvas_stores_only_touched_tiles():
    doc = Document(16384, 16384)
    layer = doc.add_layer_from_image(np.full((512, 512, 4), 77, np.uint8), x=8000, y=8000)
    doc.undo_stack.clear()
    doc.begin_stroke()
    rect = doc.paint_dab(layer, 8130.0, 8100.0, BrushSettings(size=64, hardness=0.9, color=(255, 0, 0)))
    cmd = doc.end_stroke()
    assert cmd is not None
    local = rect.translated(-layer.x, -layer.y)
    touched = ((local.x1 - 1) // TILE - local.x // TILE + 1) * ((local.y1 - 1) // TILE - local.y // TILE + 1)
    assert 1 <= touched <= 4
    # before + after copy of each touched tile, nothing else.
    tile_bytes = TILE * TILE * 4
    assert doc.undo_stack.byte_size() == 2 * touched * tile_bytes
    # On an empty area the "before" side is free.
    empty = doc.add_layer("empty")
    doc.undo_stack.clear()
    doc.begin_stroke()
    doc.paint_dab(empty, 100.0, 16000.0, BrushSettings(size=64))
    doc.end_stroke()
    assert doc.undo_stack.byte_size() <= 4 * tile_bytes
    assert len(empty.tiles) <= 4


def test_undo_memory_cap_drops_oldest_but_keeps_minimum():
    tile_bytes = TILE * TILE * 4
    doc = Document(2048, 2048, undo_memory_limit=40 * tile_bytes, min_undo_steps=3)
    layer = doc.add_layer()
    snapshots = []
    for i in range(20):
        doc.begin_stroke()
        for k in range(8):  # ~8-16 tiles per stroke
            doc.paint_dab(layer, 40 + 130 * k, 60 + 100 * i, BrushSettings(size=50, color=(i * 10, 0, 0)))
        doc.end_stroke()
        snapshots.append(grid_snapshot(layer.tiles))
        assert doc.undo_stack.byte_size() <= 40 * tile_bytes or len(doc.undo_stack) == 3
    kept = len(doc.undo_stack)
    assert 3 <= kept < 20
    for i in range(kept):
        assert doc.undo()
        assert grid_snapshot(layer.tiles) == snapshots[-2 - i]
    assert not doc.undo()

    # Steps bigger than the cap: exactly the minimum number survives.
    doc2 = Document(1024, 1024, undo_memory_limit=tile_bytes, min_undo_steps=3)
    big = doc2.add_layer()
    for i in range(6):
        doc2.fill_selection(big, (i, i, i))
    assert len(doc2.undo_stack) == 3
    assert doc2.undo() and doc2.undo() and doc2.undo() and not doc2.undo()
    assert doc2.render()[0, 0, 0] == 2  # back to the state after the 3rd fill


class _Counter(Command):
    def __init__(self, box, key=None, n=1):
        self.box, self.key, self.n, self.text = box, key, n, "count"

    def redo(self):
        self.box[0] += self.n

    def undo(self):
        self.box[0] -= self.n

    def merge_key(self):
        return self.key

    def merge_with(self, newer):
        self.n += newer.n
        return True


def test_undo_stack_merge_macro_clean_and_branching():
    box = [0]
    s = UndoStack()
    s.push(_Counter(box, "k"))
    s.push(_Counter(box, "k"))
    assert box == [2] and len(s) == 1  # merged
    s.break_merge()
    s.push(_Counter(box, "k"))
    assert len(s) == 2
    s.set_clean()
    s.push(_Counter(box, "k"))
    assert len(s) == 3 and not s.is_clean()  # never merge into the saved state
    with s.macro("macro"):
        s.push(_Counter(box, None, 10))
        s.push(_Counter(box, None, 100))
    assert box == [114] and len(s) == 4 and s.undo_text() == "macro"
    s.undo()
    assert box == [4]
    s.undo()
    assert s.is_clean() and s.can_redo()
    s.push(_Counter(box, None, 5))  # new branch drops the redo tail
    assert not s.can_redo() and len(s) == 3
    with pytest.raises(ZeroDivisionError):
        with s.macro("fails"):
            s.push(_Counter(box, None, 1000))
            raise ZeroDivisionError
    assert box == [8] and len(s) == 3  # rolled back, nothing recorded
    s.clear()
    assert not s.can_undo() and s.is_clean()


def test_merge_down_and_opacity_slider_are_single_steps():
    doc = Document(64, 64)
    lower = doc.add_layer_from_image(np.full((64, 64, 4), (0, 0, 255, 255), np.uint8))
    upper = doc.add_layer_from_image(np.full((32, 32, 4), (255, 0, 0, 255), np.uint8), 16, 16)
    for v in np.linspace(1, 0.5, 10):
        doc.set_opacity(upper, float(v))
    n = len(doc.undo_stack)
    expected = doc.render().copy()
    doc.merge_down(upper)
    assert len(doc.undo_stack) == n + 1 and upper.parent is None
    assert np.abs(doc.render().astype(int) - expected).max() <= 1
    doc.undo()
    assert upper.parent is doc.root and upper.opacity == 0.5
    doc.undo()
    assert upper.opacity == 1.0  # the ten slider moves were one step
