"""Generation frame: grid snapping, move/resize helpers, frame <-> model size."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from editor.ai.frame import GRID, GenerationFrame, ResolutionMap, model_size, resize_image, resize_mask
from editor.document.geometry import Rect

coords = st.floats(-2000, 2000, allow_nan=False)
sizes = st.floats(0, 3000, allow_nan=False)


def on_grid(f: GenerationFrame) -> bool:
    return all(v % GRID == 0 for v in (f.x, f.y, f.w, f.h)) and f.w >= GRID and f.h >= GRID


def test_snapped_rounds_to_nearest_cell():
    f = GenerationFrame.snapped(13, -3, 250, 4)
    assert (f.x, f.y, f.w, f.h) == (16, 0, 248, 8)
    with pytest.raises(ValueError):
        GenerationFrame(1, 0, 8, 8)


def test_covering_snaps_outward():
    f = GenerationFrame.covering(Rect(13, 9, 20, 7))
    assert f.rect.contains_rect(Rect(13, 9, 20, 7))
    assert (f.x, f.y, f.x1, f.y1) == (8, 8, 40, 16)


@settings(max_examples=60, deadline=None)
@given(coords, coords, sizes, sizes, coords, coords)
def test_every_helper_keeps_the_snap(x, y, w, h, dx, dy):
    f = GenerationFrame.snapped(x, y, w, h)
    assert on_grid(f)
    for g in (f.moved(dx, dy), f.moved_to(dx, dy), f.resized(w + dx, h + dy), f.resized(w, h, "center"),
              f.with_edges(left=dx), f.with_edges(right=dx), f.with_edges(top=dy, bottom=dy + h),
              f.clamped_into(Rect(0, 0, 512, 512))):
        assert on_grid(g)


def test_edge_drag_keeps_the_opposite_edge():
    f = GenerationFrame(64, 64, 128, 128)
    g = f.with_edges(left=30)
    assert (g.x, g.x1) == (32, f.x1)
    h = f.with_edges(right=1000, bottom=20)  # bottom dragged above the top: one cell high
    assert (h.x1, h.y, h.y1) == (1000, 64, 64 + GRID)
    k = f.with_edges(top=500)  # top dragged below the bottom: stops one cell above it
    assert (k.y, k.y1) == (f.y1 - GRID, f.y1)


def test_clamped_into_canvas():
    f = GenerationFrame(480, -40, 128, 64).clamped_into(Rect(0, 0, 512, 512))
    assert f.rect == Rect(384, 0, 128, 64)


@pytest.mark.parametrize("w,h,native,fit,expected", [
    (512, 512, 512, "shorter", (512, 512)),
    (256, 128, 512, "shorter", (1024, 512)),   # small frame scaled up, shorter side = native
    (2048, 1024, 512, "shorter", (1024, 512)),  # large frame scaled down
    (2048, 512, 512, "shorter", (1024, 256)),  # very wide: long side capped at 2 x native
    (300, 200, 128, "longer", (128, 88)),
    (100, 100, 64, "area", (64, 64)),
])
def test_model_size(w, h, native, fit, expected):
    assert model_size(w, h, native, fit) == expected


@settings(max_examples=60, deadline=None)
@given(st.integers(8, 4000), st.integers(8, 4000), st.sampled_from([64, 128, 512, 768, 1024]))
def test_model_size_is_on_grid_and_near_native(w, h, native):
    mw, mh = model_size(w, h, native)
    assert mw % 8 == 0 and mh % 8 == 0
    assert min(mw, mh) <= native + 8 and max(mw, mh) <= 2 * native + 8
    # the aspect ratio survives up to the rounding to 8 px
    if min(mw, mh) >= 64:
        assert abs(mw / mh - w / h) / (w / h) < 0.2


def test_resolution_map_round_trip_and_filters():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (96, 120, 3), dtype=np.uint8)
    rmap = ResolutionMap.for_size(120, 96, 64)
    small = rmap.to_model(frame)
    assert small.shape == (64, 80, 3)
    back = rmap.from_model(small)
    assert back.shape == frame.shape
    # area averaging down: a flat image stays flat exactly
    flat = np.full((96, 120, 3), 77, np.uint8)
    assert (rmap.to_model(flat) == 77).all() and (rmap.from_model(rmap.to_model(flat)) == 77).all()
    mask = np.zeros((96, 120), np.uint8)
    mask[:, :60] = 255
    up = resize_mask(mask, (240, 192))
    assert up.min() == 0 and up.max() == 255  # bilinear: no ringing past the range
    assert resize_image(frame, (120, 96)) is not frame
