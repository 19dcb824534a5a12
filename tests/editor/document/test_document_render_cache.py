"""The tile cache must give exactly what a from-scratch render gives, while
re-compositing only the tiles an edit touched."""

from __future__ import annotations

import numpy as np
import pytest

from editor.document import TILE, BlendMode, BrushSettings, Document, Rect
from editor.document.tiles import tile_range


def _random_doc(rng, w=300, h=200):
    doc = Document(w, h)
    doc.add_layer_from_image(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), name="bg")
    g = doc.add_group("g", isolated=False)
    layers = [doc.add_layer("a"), doc.add_layer("b", parent=g), doc.add_layer("c", x=-37, y=21)]
    doc.set_blend_mode(layers[1], "overlay")
    doc.set_blend_mode(layers[2], "color")
    doc.set_opacity(layers[0], 0.6)
    doc.add_mask(layers[0])
    return doc, layers


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_incremental_render_equals_full_render_after_random_dabs(seed):
    rng = np.random.default_rng(seed)
    doc, layers = _random_doc(rng)
    doc.render()
    for stroke in range(6):
        doc.begin_stroke()
        for _ in range(int(rng.integers(3, 12))):
            layer = layers[int(rng.integers(len(layers)))]
            brush = BrushSettings(
                size=float(rng.uniform(2, 90)),
                hardness=float(rng.uniform(0, 1)),
                opacity=float(rng.uniform(0.2, 1)),
                flow=float(rng.uniform(0.2, 1)),
                color=tuple(int(c) for c in rng.integers(0, 256, 3)),
            )
            target = "mask" if (layer is layers[0] and rng.random() < 0.3) else "pixels"
            doc.paint_dab(layer, rng.uniform(-40, 340), rng.uniform(-40, 240), brush, float(rng.uniform(0.1, 1)),
                          erase=bool(rng.random() < 0.2), target=target)
            # Partial renders in between: some tiles cached, some dirty.
            r = Rect(int(rng.integers(-20, 280)), int(rng.integers(-20, 180)), int(rng.integers(1, 120)),
                     int(rng.integers(1, 120)))
            assert np.array_equal(doc.render(r), doc.render_uncached(r))
        doc.end_stroke()
        if stroke == 3:
            doc.undo()
            doc.render(Rect(0, 0, 150, 100))
            doc.redo()
        if stroke == 4:
            doc.translate_layer(layers[2], 13, -7)
    assert np.array_equal(doc.render(), doc.render_uncached())


def test_dab_recomposites_only_touched_tiles():
    rng = np.random.default_rng(5)
    doc = Document(4096, 4096)
    for i in range(3):
        doc.add_layer_from_image(rng.integers(0, 256, (256, 256, 4), dtype=np.uint8), x=i * 100, y=i * 50)
    top = doc.add_layer("paint")
    doc.render(Rect(0, 0, 1024, 1024))
    cache = doc.render_cache
    before = cache.tiles_rendered
    doc.begin_stroke()
    dirty = doc.paint_dab(top, 300.5, 200.5, BrushSettings(size=64, hardness=1.0, color=(255, 0, 0)))
    doc.render(Rect(0, 0, 1024, 1024))
    doc.end_stroke()
    xs, ys = tile_range(dirty.intersect(doc.canvas_rect))
    touched = len(xs) * len(ys)
    assert touched <= 4
    assert cache.tiles_rendered - before == touched
    assert np.array_equal(doc.render(Rect(200, 100, 200, 200)), doc.render_uncached(Rect(200, 100, 200, 200)))


def test_property_changes_invalidate_the_cache():
    rng = np.random.default_rng(7)
    doc, layers = _random_doc(rng, 200, 130)
    doc.begin_stroke()
    for i in range(10):
        for lay in layers:
            doc.paint_dab(lay, 20 + 15 * i, 30 + 9 * i, BrushSettings(size=40, color=(10 * i, 200, 30)))
    doc.end_stroke()
    edits = [
        lambda: doc.set_opacity(layers[1], 0.3),
        lambda: doc.set_visible(layers[0], False),
        lambda: doc.set_blend_mode(layers[2], BlendMode.DIFFERENCE),
        lambda: doc.set_isolated(layers[1].parent, True),
        lambda: doc.move_layer(layers[2], doc.root, 1),  # right above the background
        lambda: doc.translate_layer(layers[0], -50, 3),
        lambda: doc.duplicate_layer(layers[2]),
        lambda: doc.merge_down(layers[2]),
        lambda: doc.extend_canvas(left=30, top=-10, right=5, bottom=64),
        lambda: doc.apply_mask(layers[0]),
    ]
    for edit in edits:
        doc.render()
        edit()
        assert np.array_equal(doc.render(), doc.render_uncached())
    while doc.undo():
        assert np.array_equal(doc.render(), doc.render_uncached())


def test_cache_respects_its_memory_cap():
    doc = Document(1024, 1024, render_cache_bytes=16 * TILE * TILE * 4)
    doc.add_layer_from_image(np.full((1024, 1024, 4), 9, np.uint8))
    out = doc.render()
    assert out.shape == (1024, 1024, 4)
    assert doc.render_cache.cached_tile_count() <= doc.render_cache.max_tiles
