"""Inpaint preparation and composition: grid-aligned masks, crop geometry,
pixels outside the selection never change, colour match."""
import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from editor.ai.frame import GenerationFrame, ResolutionMap
from editor.ai.inpaint import (
    InpaintSettings, align_to_grid, blend_weights, colour_match, compose, feather_width, grow_mask, model_mask,
    plan_crop, plan_inpaint, weights_to_alpha,
)
from editor.ai.modes import EditMode
from editor.ai.request import EditRequest, build_plan, finish_image
from editor.ai.results import Staging
from editor.document import Document, Rect


def textured(h, w, seed=0):
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8), (w, h),
                      interpolation=cv2.INTER_CUBIC)
    return np.ascontiguousarray(base)


def test_align_to_grid_covers_whole_cells():
    mask = np.zeros((32, 40), np.uint8)
    mask[9, 17] = 255  # one pixel in cell (1, 2)
    mask[30, 39] = 1  # faint pixel in the last cell
    out = align_to_grid(mask)
    assert out[8:16, 16:24].min() == 255 and out[24:32, 32:40].min() == 255
    assert out.sum() == 2 * 64 * 255
    assert (out[mask > 0] == 255).all()


def test_model_mask_is_on_the_latent_grid_and_covers_the_selection():
    sel = np.zeros((100, 120), np.uint8)
    cv2.ellipse(sel, (60, 50), (20, 13), 0, 0, 360, 255, -1)
    rmap = ResolutionMap.for_size(120, 100, 64)
    m = model_mask(grow_mask(sel, 4), rmap)
    assert m.shape == (rmap.model_height, rmap.model_width)
    cells = m.reshape(m.shape[0] // 8, 8, m.shape[1] // 8, 8)
    assert ((cells.min(axis=(1, 3)) == cells.max(axis=(1, 3)))).all()  # every cell all-or-nothing
    back = rmap.mask_from_model(m)
    assert (back[sel > 0] > 0).all()  # the repainted area contains the selection


def test_grow_and_feather_numbers():
    sel = np.zeros((64, 64), np.uint8)
    sel[20:40, 20:40] = 255
    grown = grow_mask(sel, 4)
    assert grown[16:44, 20:40].min() == 255 and grown[15, 30] == 0
    s = InpaintSettings()
    assert feather_width(Rect(0, 0, 100, 100), s) == pytest.approx(10.0)  # 10 % of the size
    assert feather_width(Rect(0, 0, 10, 10), s) == s.min_feather
    assert feather_width(Rect(0, 0, 2000, 2000), s) == s.max_feather


def test_blend_weights_ramp_inside_and_zero_outside():
    sel = np.zeros((64, 64), np.uint8)
    sel[10:54, 10:54] = 255
    w = blend_weights(sel, 8.0)
    assert (w[sel == 0] == 0).all()
    assert w[32, 32] == 1.0
    assert 0 < w[10, 32] < 0.25  # soft at the edge
    assert np.all(np.diff(w[32, 10:32]) >= 0)  # rising inwards
    a = weights_to_alpha(w)
    assert (a[sel == 0] == 0).all() and (a[sel > 0] > 0).all()


def test_small_selection_crop_has_context_and_is_upscaled_then_shrunk():
    canvas = Rect(0, 0, 1000, 800)
    bbox = Rect(500, 400, 20, 12)  # a "mouth"
    crop = plan_crop(bbox, canvas, 512, InpaintSettings())
    assert crop.contains_rect(bbox)
    assert crop.w >= 256 and crop.h >= 256  # min_crop_fraction x native
    assert all(v % 8 == 0 for v in (crop.x, crop.y, crop.w, crop.h))
    rmap = ResolutionMap.for_size(crop.w, crop.h, 512)
    assert rmap.scale > 1.5  # made big for the model ...
    image = np.zeros((crop.h, crop.w, 3), np.uint8)
    assert rmap.from_model(rmap.to_model(image)).shape == image.shape  # ... and shrunk back exactly


def test_crop_stays_inside_the_canvas_and_the_frame_limits_the_selection():
    canvas = Rect(0, 0, 200, 150)
    sel = np.zeros((150, 200), np.uint8)
    sel[2:12, 185:198] = 255  # in a corner
    sel[100:120, 10:30] = 255  # outside the frame below
    plan = plan_inpaint(sel, canvas, Rect(96, 0, 104, 64), 512)
    assert canvas.contains_rect(plan.crop)
    assert plan.crop.w == 200 and plan.crop.h == 150  # the canvas is smaller than the minimum crop
    inside = plan.selection
    assert inside[100:120, 10:30].max() == 0  # the selection outside the frame is ignored
    assert inside[2:12, 185:198].min() == 255
    with pytest.raises(ValueError):
        plan_inpaint(sel, canvas, Rect(0, 16, 64, 64), 512)


def test_colour_match_reduces_a_constructed_shift():
    reference = textured(96, 96, seed=3)
    mask = np.zeros((96, 96), np.uint8)
    cv2.circle(mask, (48, 48), 25, 255, -1)
    ring = (grow_mask(mask, 12) > 0) & (mask == 0)
    shifted = (reference.astype(np.float32) - 128) * 0.85 + 128 + np.array([30.0, -20.0, 25.0])  # cast + flatter
    generated = np.clip(shifted, 0, 255).astype(np.uint8)
    inside = mask > 0
    before = np.abs(generated[inside].astype(float) - reference[inside]).mean()
    for space in ("lab", "rgb"):
        fixed = colour_match(generated, reference, ring, region=inside, space=space)
        after = np.abs(fixed[inside].astype(float) - reference[inside]).mean()
        assert after < 0.35 * before, (space, before, after)
        assert (fixed[~inside] == generated[~inside]).all()
    # new content (a different colour) keeps its own colour when nothing drifted
    apple = reference.copy()
    apple[inside] = (220, 20, 20)
    same = colour_match(apple, reference, ring, region=inside)
    assert np.abs(same[inside].astype(int) - apple[inside]).max() <= 3


def test_compose_keeps_outside_identical():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
    w = np.zeros((20, 20), np.float32)
    w[5:15, 5:15] = 0.5
    out = compose(a, b, w)
    assert (out[w == 0] == a[w == 0]).all()


def _document(h, w, seed):
    doc = Document(w, h)
    pixels = textured(h, w, seed)
    alpha = np.full((h, w, 1), 255, np.uint8)
    doc.add_layer_from_image(np.concatenate([pixels, alpha], axis=2), name="photo")
    return doc


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    w=st.integers(24, 72), h=st.integers(24, 72), seed=st.integers(0, 1000),
    shape=st.sampled_from(["rect", "ellipse", "noise"]), feathered=st.booleans(),
    fx=st.integers(-16, 40), fy=st.integers(-16, 40), native=st.sampled_from([32, 64]),
)
def test_pixels_outside_the_selection_never_change(w, h, seed, shape, feathered, fx, fy, native):
    doc = _document(h, w, seed)
    rng = np.random.default_rng(seed)
    x0, y0 = int(rng.integers(0, w - 8)), int(rng.integers(0, h - 8))
    x1, y1 = int(rng.integers(x0 + 4, w + 1)), int(rng.integers(y0 + 4, h + 1))
    if shape == "rect":
        doc.select_rect(Rect.from_bounds(x0, y0, x1, y1), feather=3.0 if feathered else 0.0)
    elif shape == "ellipse":
        doc.select_ellipse(Rect.from_bounds(x0, y0, x1, y1), feather=3.0 if feathered else 0.0)
    else:
        noise = (rng.random((h, w)) < 0.15).astype(np.uint8) * rng.integers(1, 256, (h, w)).astype(np.uint8)
        doc.set_selection(noise if noise.any() else None)
    frame = GenerationFrame.from_rect(Rect(fx, fy, 48, 48)).rect  # as build_plan snaps it
    sel_in_frame = doc.selection.region(frame)
    if sel_in_frame is None or not sel_in_frame.any():
        return
    before = doc.render_uncached()
    request = EditRequest(frame=frame, prompt="x", mode=EditMode.INPAINT)
    plan = build_plan(doc, request, native)
    generated = rng.integers(0, 256, (plan.model_size[1], plan.model_size[0], 3), dtype=np.uint8)
    image = finish_image(plan, generated, seed=1)
    staging = Staging(doc)
    staging.stage([image])
    staging.accept()
    after = doc.render_uncached()
    untouched = doc.selection.mask == 0
    limit = np.zeros_like(untouched)
    assert plan.frame == frame
    limit[frame.intersect(doc.canvas_rect).slices()] = True
    assert np.array_equal(after[untouched], before[untouched])
    assert np.array_equal(after[~limit], before[~limit])  # nor outside the frame
    doc.undo()
    assert np.array_equal(doc.render_uncached(), before)


def test_accepted_inpaint_has_no_seam_from_a_local_colour_drift():
    """A model whose colours drift unevenly (brighter on one side) leaves no step at the selection edge."""
    from training.house.evaluate import seam_energy

    h = w = 64
    doc = Document(w, h)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    pixels = np.dstack([60 + 2 * xx, 90 + yy, np.full((h, w), 140.0)]).clip(0, 255).astype(np.uint8)
    doc.add_layer_from_image(np.dstack([pixels, np.full((h, w), 255, np.uint8)]), name="photo")
    doc.select_rect(Rect(16, 16, 32, 32))
    before = doc.render_uncached()[..., :3]
    plan = build_plan(doc, EditRequest(frame=Rect(0, 0, 64, 64), prompt="x", mode=EditMode.INPAINT), 64)
    truth = plan.rmap.to_model(before[plan.crop.slices()])
    drift = np.linspace(0, 45, truth.shape[1], dtype=np.float32)[None, :, None]  # uneven: no global match fixes it
    generated = np.clip(truth.astype(np.float32) + drift, 0, 255).astype(np.uint8)
    staging = Staging(doc)
    staging.stage([finish_image(plan, generated, seed=1)])
    staging.accept()
    after = doc.render_uncached()[..., :3]
    mask = np.zeros((h, w), np.uint8)
    mask[16:48, 16:48] = 255
    assert seam_energy(after, before, mask) < seam_energy(before, before, mask) + 0.3
