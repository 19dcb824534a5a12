"""Live preview scheduler: one render in flight, the newest input replaces the
pending one, identical inputs skip, frame timing, refine from the preview."""
import threading
import time

import numpy as np

from editor.ai.engine import FakeEngine
from editor.ai.live import QUEUED, STARTED, UNCHANGED, LivePreview
from editor.ai.request import EditRequest
from editor.ai.service import GenerationService, JobState
from editor.document import Document, Rect

TIMEOUT = 10


def make_document():
    doc = Document(64, 64)
    layer = doc.add_layer("paint")
    doc.fill_selection(layer, (120, 130, 140))
    return doc, layer


def wait_idle(live, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if live.idle:
            return True
        time.sleep(0.01)
    return False


def setup(delay):
    engine = FakeEngine(native_resolution=64, delay=delay)
    service = GenerationService(engine)
    live = LivePreview(service, model_id="preview", steps=2)
    frames = []
    live.frame_ready.connect(frames.append)
    return engine, service, live, frames


def test_burst_of_changes_runs_at_most_two_renders():
    engine, service, live, frames = setup(delay=0.02)
    engine.gate = threading.Event()  # the first render stays in flight during the burst
    doc, _ = make_document()
    base = EditRequest(frame=Rect(0, 0, 64, 64), prompt="p", seed=3)
    outcomes = [live.update(doc, base.replace(prompt=f"castle {i}")) for i in range(50)]
    assert outcomes[0] == STARTED and set(outcomes[1:]) == {QUEUED}
    engine.gate.set()
    assert wait_idle(live)
    assert len(engine.calls) <= 2 and engine.max_in_flight == 1
    assert [c[1].prompt for c in engine.calls] == ["castle 0", "castle 49"]  # stale inputs dropped
    assert all(model == "preview" for model, _ in engine.calls)
    assert live.stats.dropped == 48 and live.stats.started == 2
    assert frames[-1].plan.request.prompt == "castle 49"
    assert frames[-1].render_time > 0 and live.stats.fps > 0 and frames[-1].sequence == 2
    service.close()


def test_identical_inputs_skip_and_pixel_changes_render():
    engine, service, live, frames = setup(delay=0.0)
    doc, layer = make_document()
    request = EditRequest(frame=Rect(0, 0, 64, 64), prompt="lake", seed=1)
    assert live.update(doc, request) == STARTED
    assert wait_idle(live)
    assert live.update(doc, request) == UNCHANGED
    assert live.update(doc, request.replace()) == UNCHANGED  # an equal copy
    assert wait_idle(live) and len(engine.calls) == 1
    doc.select_rect(Rect(0, 0, 8, 8))
    doc.fill_selection(layer, (0, 0, 0))
    doc.select_none()
    assert live.update(doc, request) == STARTED  # the frame's pixels changed
    assert wait_idle(live) and len(engine.calls) == 2
    assert live.stats.skipped == 2 and len(frames) == 2
    service.close()


def test_back_to_the_rendering_inputs_drops_the_pending_one():
    gate = threading.Event()
    engine = FakeEngine(gate=gate)
    service = GenerationService(engine)
    live = LivePreview(service, steps=1)
    doc, _ = make_document()
    a = EditRequest(frame=Rect(0, 0, 64, 64), prompt="a")
    assert live.update(doc, a) == STARTED
    assert live.update(doc, a.replace(prompt="b")) == QUEUED
    assert live.update(doc, a) == UNCHANGED  # "a" is already rendering
    gate.set()
    assert wait_idle(live)
    assert [c[1].prompt for c in engine.calls] == ["a"]
    service.close()


def test_back_to_the_shown_inputs_cancels_the_stale_render():
    gate = threading.Event()
    engine = FakeEngine(gate=gate)
    service = GenerationService(engine)
    live = LivePreview(service, steps=1)
    frames = []
    live.frame_ready.connect(frames.append)
    doc, _ = make_document()
    a = EditRequest(frame=Rect(0, 0, 64, 64), prompt="a")
    gate.set()
    live.update(doc, a)
    assert wait_idle(live) and len(frames) == 1
    gate.clear()
    assert live.update(doc, a.replace(prompt="b")) == STARTED
    assert live.update(doc, a) == UNCHANGED  # "a" is on screen: "b" is stale
    assert wait_idle(live)
    assert len(frames) == 1 and frames[-1].plan.request.prompt == "a"
    assert live.update(doc, a.replace(prompt="b")) == STARTED  # "b" wanted again: it renders
    gate.set()
    assert wait_idle(live) and frames[-1].plan.request.prompt == "b"
    service.close()


def test_failed_render_reports_and_the_next_input_runs():
    engine = FakeEngine(fail=RuntimeError("boom"), delay=0.05)
    service = GenerationService(engine)
    live = LivePreview(service, steps=1)
    failed = []
    live.frame_failed.connect(failed.append)
    doc, _ = make_document()
    request = EditRequest(frame=Rect(0, 0, 64, 64), prompt="a")
    live.update(doc, request)
    assert wait_idle(live) and len(failed) == 1 and live.stats.failed == 1
    engine.fail = None
    assert live.update(doc, request) == STARTED  # same inputs may try again after a failure
    assert wait_idle(live) and live.last_frame is not None
    service.close()


def test_refine_is_img2img_from_the_preview_with_the_same_seed():
    engine, service, live, frames = setup(delay=0.0)
    doc, _ = make_document()
    request = EditRequest(frame=Rect(0, 0, 64, 64), prompt="harbour", seed=1234, steps=6)
    live.update(doc, request)
    assert wait_idle(live) and frames
    preview = frames[-1].image
    job = live.refine(strength=0.5, model_id="final")
    assert job.wait(TIMEOUT) and job.state == JobState.DONE
    model, engine_request = engine.calls[-1]
    assert model == "final" and engine_request.seed == 1234 and engine_request.strength == 0.5
    assert np.array_equal(engine_request.init_image, preview.rgba[..., :3])  # starts from what was shown
    assert engine_request.steps == 6  # the final keeps the request's steps; previews used 2
    assert engine.calls[0][1].steps == 2
    assert job.images[0].seed == 1234 and job.plan.refined
    service.close()


def test_refine_keeps_the_inpaint_mask():
    engine, service, live, frames = setup(delay=0.0)
    doc, _ = make_document()
    doc.select_rect(Rect(24, 24, 16, 16))
    live.update(doc, EditRequest(frame=Rect(0, 0, 64, 64), prompt="x", seed=9))
    assert wait_idle(live)
    job = live.refine()
    assert job.wait(TIMEOUT)
    first, refined = engine.calls[0][1], engine.calls[-1][1]
    assert first.mask is not None and np.array_equal(first.mask, refined.mask)
    out = job.images[0].rgba
    assert (out[..., 3][doc.selection.mask[job.images[0].rect.slices()] == 0] == 0).all()
    service.close()


def test_stop_and_close():
    gate = threading.Event()
    engine = FakeEngine(gate=gate)
    service = GenerationService(engine)
    live = LivePreview(service, steps=1)
    doc, _ = make_document()
    live.update(doc, EditRequest(frame=Rect(0, 0, 64, 64), prompt="a"))
    live.stop()
    assert not live.in_flight
    live.close()
    assert live.update(doc, EditRequest(frame=Rect(0, 0, 64, 64), prompt="b")) == UNCHANGED
    service.close()
    assert len(engine.calls) <= 1
