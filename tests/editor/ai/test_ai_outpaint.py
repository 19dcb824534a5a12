"""Outpainting: canvas growth plan, pre-fill of the empty area, masks, and
Accept growing the canvas in the same undo step as the new layer."""
import numpy as np
import pytest

from editor.ai.modes import EditMode
from editor.ai.outpaint import CanvasGrowth, empty_mask, flatten_for_model, plan_canvas_growth, plan_outpaint, prefill
from editor.ai.request import EditRequest, build_plan, finish_image
from editor.ai.results import Staging
from editor.document import Document, Rect


@pytest.mark.parametrize("rect,growth", [
    (Rect(0, 0, 100, 80), CanvasGrowth()),
    (Rect(-16, 0, 64, 64), CanvasGrowth(left=16)),
    (Rect(64, -8, 64, 96), CanvasGrowth(top=8, right=28, bottom=8)),
    (Rect(-8, -8, 116, 96), CanvasGrowth(8, 8, 8, 8)),
])
def test_growth_plan(rect, growth):
    plan = plan_canvas_growth(rect, 100, 80)
    assert plan == growth
    assert plan.needed == (growth != CanvasGrowth())
    w, h = plan.new_size(100, 80)
    assert Rect(0, 0, w, h).contains_rect(plan.shift(rect))


def half_image(h=48, w=64):
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[:, : w // 2] = (200, 40, 40)
    rgb[:, w // 4: w // 2] = (40, 40, 200)  # blue band next to the empty half
    empty = np.zeros((h, w), np.uint8)
    empty[:, w // 2:] = 255
    return rgb, empty


@pytest.mark.parametrize("method", ["telea", "edge", "neutral"])
def test_prefill_keeps_known_pixels_and_fills_the_rest(method):
    rgb, empty = half_image()
    out = prefill(rgb, empty, method)
    known = empty == 0
    assert np.array_equal(out[known], rgb[known])
    if method in ("telea", "edge"):
        # the empty pixels next to the edge continue the blue band
        assert out[:, 33:36, 2].mean() > 150 and out[:, 33:36, 0].mean() < 90


def test_prefill_at_reduced_resolution_on_large_areas():
    rgb, empty = half_image(400, 600)
    out = prefill(rgb, empty, "telea")
    assert np.array_equal(out[empty == 0], rgb[empty == 0])
    assert out[:, 300:310, 2].mean() > 140


def test_edge_stretch_is_nearest_kept_colour():
    rgb = np.zeros((5, 5, 3), np.uint8)
    rgb[2, 2] = (9, 8, 7)
    empty = np.full((5, 5), 255, np.uint8)
    empty[2, 2] = 0
    assert (prefill(rgb, empty, "edge") == (9, 8, 7)).all()


def test_flatten_blends_partial_alpha_over_the_prefill():
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[:, :8] = (100, 100, 100, 255)
    rgba[:, 8] = (200, 200, 200, 200)
    out = flatten_for_model(rgba, "edge")
    assert (out[:, :8] == 100).all()
    assert 170 < out[0, 8, 0] < 200


def test_outpaint_masks():
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[:, :40] = (50, 60, 70, 255)
    plan = plan_outpaint(rgba, seam=8, grow=4)
    assert (plan.weights[:, 40:] == 1).all()  # the empty part is filled completely
    assert (plan.weights[:, :31] == 0).all()  # content past the seam is never touched
    assert 0 < plan.weights[0, 36] < 1  # the seam fades
    assert (plan.denoise[plan.weights > 0] == 255).all()
    assert plan.ring.any() and not (plan.ring & (plan.weights > 0)).any()
    assert (empty_mask(rgba)[:, 40:] == 255).all()


def test_outpaint_through_the_document_grows_the_canvas_in_one_undo_step():
    doc = Document(64, 48)
    pixels = np.zeros((48, 64, 4), np.uint8)
    pixels[..., :3] = (30, 140, 60)
    pixels[..., 2] = np.arange(64, dtype=np.uint8)[None, :] * 2  # a picture, not a plain background
    pixels[..., 3] = 255
    doc.add_layer_from_image(pixels, name="photo")
    depth = doc.undo_stack.index
    before = doc.render_uncached()
    frame = Rect(32, -16, 64, 64)  # past the top and the right
    plan = build_plan(doc, EditRequest(frame=frame, prompt="meadow"), 64)
    assert plan.mode == EditMode.OUTPAINT
    assert plan.engine_requests[0].mask is not None and plan.engine_requests[0].init_image is not None
    # the model sees the pre-filled colours, not black, in the empty area
    assert plan.source[:8, 40:, 1].mean() > 100
    generated = np.full((plan.model_size[1], plan.model_size[0], 3), (200, 200, 30), np.uint8)
    staging = Staging(doc)
    staging.stage([finish_image(plan, generated, seed=5, model_name="m")])
    layer = staging.accept()
    assert (doc.width, doc.height) == (96, 64)
    # The top strip spans the whole new width, so the generation covers it all (not only the frame)
    assert (layer.x, layer.y) == (0, 0) and plan.crop == Rect(0, -16, 96, 64)
    assert layer.attributes["frame"] == "32,0,64,64" and layer.attributes["mode"] == "outpaint"
    after = doc.render_uncached()
    assert np.array_equal(after[16 + 9:, :24], before[9:, :24])  # old content away from the seam kept
    assert (after[:16, :, 3] == 255).all() and (after[:, 64:, 3] == 255).all()  # all the new area is filled
    assert doc.undo_stack.index == depth + 1
    doc.undo()
    assert (doc.width, doc.height) == (64, 48) and len(doc.raster_layers()) == 1
    assert np.array_equal(doc.render_uncached(), before)


def test_outpaint_default_strength_follows_the_model_kind():
    """Ordinary models start the new area from the noised pre-fill; inpainting models from noise."""
    from editor.ai.request import OUTPAINT_STRENGTH_LATENT_BLENDING, EditRequest
    from editor.ai.modes import EditMode

    request = EditRequest(frame=Rect(0, 0, 64, 64), prompt="x")
    assert request.strength_for(EditMode.OUTPAINT, inpaint_model=False) == OUTPAINT_STRENGTH_LATENT_BLENDING < 1.0
    assert request.strength_for(EditMode.OUTPAINT, inpaint_model=True) == 1.0
    assert request.replace(strength=0.9).strength_for(EditMode.OUTPAINT, inpaint_model=False) == 0.9
    assert request.strength_for(EditMode.INPAINT, inpaint_model=False) == 1.0


def test_outpaint_with_an_ordinary_model_gets_the_soft_seam():
    """4-channel models: the engine holds the new pixels near the seam on the pre-fill's trajectory;
    9-channel inpainting models see the masked image and get a plain mask."""
    doc = Document(64, 48)
    pixels = np.zeros((48, 64, 4), np.uint8)
    pixels[..., :3] = (30, 140, 60)
    pixels[..., 2] = np.arange(64, dtype=np.uint8)[None, :] * 2  # a picture, not a plain background
    pixels[..., 3] = 255
    doc.add_layer_from_image(pixels, name="photo")
    request = EditRequest(frame=Rect(32, -16, 64, 64), prompt="meadow")
    ordinary = build_plan(doc, request, 64, inpaint_model=False).engine_requests[0]
    inpainting = build_plan(doc, request, 64, inpaint_model=True).engine_requests[0]
    assert inpainting.change_map is None
    change, mask = ordinary.change_map, ordinary.mask
    assert change.shape == mask.shape
    assert (change[mask < 128] == 0).all()  # kept pixels never change
    new = change[mask >= 128]
    assert 0.3 < new.min() < 0.5 and new.max() == 1.0  # from the seam value up to free


def test_expand_paints_the_whole_new_strip_not_only_beside_the_frame():
    from editor.ai.outpaint import expand_crop

    assert expand_crop(Rect(448, 100, 128, 300), 500, 500) == Rect(448, 0, 128, 500)  # right strip, full height
    assert expand_crop(Rect(100, -64, 200, 128), 500, 500) == Rect(0, -64, 500, 128)  # top strip, full width
    assert expand_crop(Rect(8, 8, 64, 64), 500, 500) == Rect(8, 8, 64, 64)  # inside: nothing grows
    assert expand_crop(Rect(4000, 4000, 128, 128), 4096, 4096) == Rect(4000, 4000, 128, 128)  # a corner of a
    # big canvas would mean painting it all: the frame alone is generated


def test_expand_past_a_plain_canvas_paints_over_the_plain_part():
    doc = Document(64, 48)
    white = doc.add_layer("Background")
    doc.fill_selection(white, (255, 255, 255))
    plan = build_plan(doc, EditRequest(frame=Rect(32, 0, 64, 48), prompt="meadow"), 64)
    assert plan.mode == EditMode.OUTPAINT and plan.weights is None and plan.source is None
    request = plan.engine_requests[0]
    assert request.init_image is None and request.mask is None  # one picture over the frame: no seam to the white
