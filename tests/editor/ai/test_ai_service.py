"""GenerationService with the fake engine: results, progress previews,
cancel, errors, variations; staging: Accept is one undo step with metadata,
Discard leaves the document alone."""
import threading

import numpy as np
import pytest

from editor.ai.engine import FakeEngine
from editor.ai.modes import EditMode
from editor.ai.request import ATTRIBUTE_KEYS, EditRequest, request_from_attributes
from editor.ai.results import Staging
from editor.ai.service import GenerationService, JobState
from editor.ai.tiled_decode import OutOfMemoryError
from editor.document import Document, Rect
from inference.errors import InvalidRequestError, ModelFormatError

TIMEOUT = 10


def make_document(w=96, h=64):
    doc = Document(w, h)
    pixels = np.zeros((h, w, 4), np.uint8)
    pixels[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    pixels[..., 1] = 90
    pixels[..., 3] = 255
    doc.add_layer_from_image(pixels, name="photo")
    doc.undo_stack.clear()
    return doc


class Recorder:
    def __init__(self, service):
        self.events = []
        self.progress = []
        self.lock = threading.Lock()
        for name in ("job_started", "job_finished", "job_failed", "job_cancelled"):
            getattr(service, name).connect(lambda job, name=name: self._add(name, job))
        service.job_progress.connect(self._on_progress)

    def _add(self, name, job):
        with self.lock:
            self.events.append((name, job.id))

    def _on_progress(self, p):
        with self.lock:
            self.progress.append(p)

    def names(self, job):
        return [n for n, i in self.events if i == job.id]


@pytest.fixture
def doc():
    return make_document()


def snapshot(doc):
    return doc.render_uncached(), doc.undo_stack.index, [l.name for l in doc.raster_layers()], \
        (doc.width, doc.height)


def same(a, b):
    return np.array_equal(a[0], b[0]) and a[1:] == b[1:]


def test_generate_variations_and_accept_one_undo_step(doc):
    engine = FakeEngine(native_resolution=64)
    service = GenerationService(engine)
    rec = Recorder(service)
    request = EditRequest(frame=Rect(8, 8, 64, 48), prompt="a red fox", negative_prompt="blurry", seed=41,
                          steps=4, variations=3, guidance=5.5)
    before = snapshot(doc)
    job = service.submit_edit(doc, request)
    assert job.wait(TIMEOUT) and job.state == JobState.DONE, job.error
    assert rec.names(job) == ["job_started", "job_finished"]
    assert [im.seed for im in job.images] == [41, 42, 43]
    assert all(im.rect == Rect(8, 8, 64, 48) for im in job.images)
    assert len({im.rgba.tobytes() for im in job.images}) == 3  # seeds give different images
    steps = [(p.variation, p.step) for p in rec.progress if p.job is job]
    run = max(1, int(4 * job.plan.strength))  # img2img runs strength × steps, as the real engine does
    assert run < 4 and steps == [(v, s) for v in range(3) for s in range(1, run + 1)]
    previews = [p.preview for p in rec.progress if p.preview is not None]
    assert previews and all(p.preview and p.rect == Rect(8, 8, 64, 48) for p in previews)
    assert same(snapshot(doc), before)  # generating never touches the document

    staging = Staging(doc)
    changes = []
    staging.changed.connect(lambda: changes.append(staging.index))
    staging.stage(job.images)
    staging.next()
    staging.next()
    staging.next()  # wraps
    staging.previous()
    assert staging.index == 2 and staging.current.seed == 43
    layer = staging.accept()
    assert staging.count == 0 and changes
    assert set(ATTRIBUTE_KEYS) <= set(layer.attributes)
    attrs = layer.attributes
    assert (attrs["prompt"], attrs["negative"], attrs["seed"], attrs["model"], attrs["mode"]) == \
        ("a red fox", "blurry", "43", "fake-final", "img2img")
    assert (attrs["frame"], attrs["sampler"], attrs["steps"], attrs["guidance"], attrs["strength"]) == \
        ("8,8,64,48", "euler", "4", "5.5", "0.6")
    assert (layer.x, layer.y) == (8, 8) and layer.name.startswith("AI: a red fox")
    assert doc.undo_stack.index == before[1] + 1
    assert doc.undo()
    assert same(snapshot(doc), before)
    again = request_from_attributes(attrs)
    assert (again.seed, again.seed_locked, again.mode, again.frame) == (43, True, EditMode.IMG2IMG, Rect(8, 8, 64, 48))
    service.close()


def test_discard_leaves_the_document_untouched(doc):
    service = GenerationService(FakeEngine())
    before = snapshot(doc)
    job = service.submit_edit(doc, EditRequest(frame=Rect(0, 0, 64, 64), prompt="x", steps=2))
    assert job.wait(TIMEOUT)
    staging = Staging(doc)
    staging.stage(job.images)
    staging.discard()
    assert staging.current is None and staging.accept() is None
    assert same(snapshot(doc), before)
    service.close()


def test_cancel_mid_render_stops_within_a_step_and_adds_nothing(doc):
    gate = threading.Event()
    engine = FakeEngine(gate=gate)
    service = GenerationService(engine)
    rec = Recorder(service)
    before = snapshot(doc)
    started = threading.Event()

    def hold_after_two_steps(progress):
        if progress.step == 2:  # runs on the worker, before step 3 waits at the gate
            gate.clear()
            started.set()

    service.job_progress.connect(hold_after_two_steps)
    job = service.submit_edit(doc, EditRequest(frame=Rect(0, 0, 64, 64), prompt="x", steps=50))
    queued = service.submit_edit(doc, EditRequest(frame=Rect(0, 0, 64, 64), prompt="y", steps=5))
    gate.set()
    assert started.wait(TIMEOUT)
    service.cancel(queued)
    assert queued.state == JobState.CANCELLED  # a queued job is dropped at once
    service.cancel(job)
    assert job.wait(TIMEOUT) and job.state == JobState.CANCELLED
    assert engine.steps_run == 2  # stopped before the next step
    assert rec.names(job) == ["job_started", "job_cancelled"] and job.images == []
    assert rec.names(queued) == ["job_cancelled"]
    assert [c[1].prompt for c in engine.calls] == ["x"]
    assert same(snapshot(doc), before)
    service.close()


@pytest.mark.parametrize("error,expected", [
    (InvalidRequestError("steps 0 must be between 1 and 1000"), "steps 0"),
    (OutOfMemoryError("Out of memory while decoding the 512x512 image"), "Out of memory"),
    (RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"), "Out of memory"),
    (ZeroDivisionError("bug"), "Generation failed: ZeroDivisionError"),
])
def test_engine_errors_become_messages_and_never_touch_the_document(doc, error, expected):
    engine = FakeEngine(fail=error, fail_at_step=1)
    service = GenerationService(engine)
    rec = Recorder(service)
    before = snapshot(doc)
    # steps=10: the prompt edit runs strength × 10 ≥ 2 steps, so the failure at step 1 is mid-run
    job = service.submit_edit(doc, EditRequest(frame=Rect(0, 0, 64, 64), prompt="x", steps=10))
    assert job.wait(TIMEOUT) and job.state == JobState.FAILED
    assert expected in job.error
    assert rec.names(job) == ["job_started", "job_failed"]
    assert same(snapshot(doc), before)
    # the worker survives: the next job runs
    engine.fail = None
    ok = service.submit_edit(doc, EditRequest(frame=Rect(0, 0, 64, 64), prompt="x", steps=1))
    assert ok.wait(TIMEOUT) and ok.state == JobState.DONE
    service.close()


def test_model_load_error_is_reported_not_raised(doc):
    engine = FakeEngine(load_errors={"final": ModelFormatError("final.safetensors: truncated file")})
    service = GenerationService(engine)
    job = service.submit_edit(doc, EditRequest(frame=Rect(0, 0, 64, 64), prompt="x"))
    assert job.wait(TIMEOUT) and job.state == JobState.FAILED and "truncated" in job.error
    preview = service.submit_edit(doc, EditRequest(frame=Rect(0, 0, 64, 64), prompt="x", quality="preview",
                                                   steps=1))
    assert preview.wait(TIMEOUT) and preview.state == JobState.DONE
    service.close()


def test_unplannable_request_fails_without_raising(doc):
    service = GenerationService(FakeEngine())
    failed = []
    service.job_failed.connect(failed.append)
    job = service.submit_edit(doc, EditRequest(frame=Rect(0, 0, 64, 64), prompt="x", mode=EditMode.INPAINT))
    assert job.state == JobState.FAILED and "selection" in job.error and failed == [job]
    service.close()


def test_seed_handling():
    r = EditRequest(frame=Rect(0, 0, 8, 8), seed=7)
    assert r.for_generate().seed != 7 or r.for_generate().seed != 7  # fresh seeds (2 tries vs 1/2^32)
    locked = r.replace(seed_locked=True)
    assert locked.for_generate().seed == 7
    assert EditRequest(frame=Rect(0, 0, 8, 8), seed=2**32 - 1, variations=2).seeds() == [2**32 - 1, 0]
