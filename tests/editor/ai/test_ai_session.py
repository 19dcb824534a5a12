"""The AI session state machine without Qt: live, final, staging and the
rules between them, with worker reports delivered by hand (``pump``) so every
ordering of "a frame arrives" / "accept" / "cancel" / "discard" is stepped
explicitly. FakeEngine with a gate holds a render in flight."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from editor.ai.engine import FakeEngine
from editor.ai.frame import GenerationFrame
from editor.ai.live import LiveMeter, LiveStats
from editor.ai.request import EditRequest
from editor.ai.service import JobProgress
from editor.ai import session as session_module
from editor.ai.session import AISession, progress_text
from editor.document import Document, Rect

TIMEOUT = 10.0


class Harness:
    """An AISession over a 64x64 document; worker reports wait in ``events`` until pumped."""

    def __init__(self, engine=None, doc=None, refine_bound=lambda _final: None, **request):
        self.engine = engine or FakeEngine(native_resolution=64)
        if doc is None:
            doc = Document(64, 64)
            doc.add_layer("paint")
        self.doc = doc
        self.events: list = []
        base = dict(frame=Rect(0, 0, 8, 8), prompt="hills", seed=5, seed_locked=True, steps=4,
                    preview_model="preview", final_model="final")
        base.update(request)
        self.ai = AISession(doc, EditRequest(**base), post=self.post, engine_for=lambda _ids: (self.engine, ""),
                            preview_settings=lambda _m: (1, None), refine_bound=refine_bound)
        self.messages: list = []
        self.ai.message.connect(lambda text, level: self.messages.append((text, level)))
        self.ai.set_frame(GenerationFrame(0, 0, 64, 64))
        self.ai.poll()

    def post(self, handler, *args) -> None:
        self.events.append((handler, args))  # list.append is atomic: the worker may call this

    def deliver(self) -> int:
        n = 0
        while self.events:
            handler, args = self.events.pop(0)
            handler(*args)
            n += 1
        return n

    def settle(self, until=None, timeout: float = TIMEOUT) -> None:
        """Pump until ``until()`` (default: no render left and nothing queued)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.deliver()
            busy = self.ai.final_job is not None or (self.ai.live is not None and not self.ai.live.idle)
            if (until() if until is not None else not busy and not self.events):
                return
            time.sleep(0.005)
        raise AssertionError("the session did not settle")

    def wait_worker_idle(self) -> None:
        """Let the worker finish what it runs without delivering its reports."""
        deadline = time.monotonic() + TIMEOUT
        while self.engine.in_flight or (self.ai.live is not None and self.ai.live.in_flight):
            assert time.monotonic() < deadline
            time.sleep(0.005)
        time.sleep(0.02)


def picture(doc, colour=(200, 40, 40)):
    pixels = np.zeros((64, 64, 4), np.uint8)
    pixels[..., :3] = colour
    pixels[..., 0] = np.arange(64, dtype=np.uint8)[None, :] * 3
    pixels[..., 3] = 255
    return doc.add_layer_from_image(pixels, 0, 0, name="photo")


def live_on(h: Harness) -> None:
    assert h.ai.set_live(True)
    h.settle(until=lambda: h.ai.live_image is not None and h.ai.live.idle)


# --------------------------------------------------------------------------- live
def test_live_shows_the_newest_frame_and_skips_unchanged_inputs():
    h = Harness()
    live_on(h)
    calls = len(h.engine.calls)
    h.ai.poll()
    h.ai.poll()
    h.settle()
    assert len(h.engine.calls) == calls  # nothing changed: nothing rendered
    assert h.ai.overlay_image() == (h.ai.live_image, h.ai.live_opacity)
    h.ai.update_request(prompt="a lake")
    h.ai.poll()
    h.settle(until=lambda: h.ai.live.last_frame.request.prompt == "a lake" and h.ai.live.idle)
    h.deliver()
    assert h.ai.live_image is h.ai.live.last_frame.image and h.engine.calls[-1][1].prompt == "a lake"


def test_a_burst_of_edits_renders_first_and_last_and_counts_the_dropped():
    h = Harness(FakeEngine(native_resolution=64, gate=threading.Event()))
    assert h.ai.set_live(True)  # the first render holds in flight
    for i in range(6):
        h.ai.update_request(prompt=f"castle {i}")
        h.ai.poll()
    h.engine.gate.set()
    h.settle()
    assert [r.prompt for _, r in h.engine.calls] == ["hills", "castle 5"]
    assert h.ai.live.stats.dropped == 5 and h.engine.max_in_flight == 1


def test_accept_holds_live_until_the_inputs_change():
    h = Harness()
    live_on(h)
    h.ai.generate()
    h.settle()
    assert h.ai.staging.count == 1
    calls = len(h.engine.calls)
    layer = h.ai.accept()
    assert layer is not None and h.ai.overlay_image() is None  # the canvas shows exactly the new layer
    assert h.ai.live_state() == "Live · edit to resume"
    h.ai.poll()  # the accept's own change is the baseline ...
    h.ai.poll()
    h.settle()
    assert len(h.engine.calls) == calls and h.ai.overlay_image() is None  # ... nothing redrawn over it
    h.ai.update_request(prompt="a lake at night")  # an edit: live resumes
    h.ai.poll()
    h.settle(until=lambda: h.ai.live_image is not None and h.ai.live.idle)
    assert h.ai.live_state() == "Live" and h.ai.overlay_image()[0] is h.ai.live_image
    assert h.engine.calls[-1][0] == "preview"


def test_undoing_the_accepted_layer_also_resumes_live():
    h = Harness()
    live_on(h)
    h.ai.generate()
    h.settle()
    h.ai.accept()
    h.ai.poll()
    h.doc.undo()
    h.ai.poll()
    assert not h.ai.live_held
    h.settle(until=lambda: h.ai.live_image is not None)


# --------------------------------------------------------------------------- stale frames
def test_a_frame_arriving_after_accept_is_dropped():
    h = Harness()
    live_on(h)
    h.ai.generate()
    h.settle()
    frame = h.ai.live.last_frame
    h.ai.accept()
    h.ai.on_live_frame(frame)  # queued before the accept, delivered after it
    assert h.ai.live_image is None and h.ai.overlay_image() is None and h.ai.frames_dropped == 1


def test_a_frame_arriving_while_the_final_renders_is_dropped():
    h = Harness(FakeEngine(native_resolution=64))
    assert h.ai.set_live(True)
    h.wait_worker_idle()  # the preview finished on the worker; its report is still queued
    h.engine.gate = threading.Event()
    job = h.ai.generate()  # the finished preview shows the current inputs: it is what gets refined
    assert job is not None and job.plan.refined and job.plan.request.seed == 5
    shown = h.ai.live_image
    h.deliver()  # the preview's own report arrives during the final render: dropped, nothing redrawn
    assert h.ai.frames_dropped == 1 and h.ai.live_image is shown
    assert h.ai.overlay_image()[0] is shown  # until its first step, a refine shows what it refines
    h.engine.gate.set()
    h.settle()
    assert h.ai.overlay_image()[0] is h.ai.staging.current


def test_a_frame_for_a_canvas_of_another_size_is_dropped():
    h = Harness()
    live_on(h)
    frame = h.ai.live.last_frame
    h.doc.extend_canvas(16, 0, 0, 0)
    h.ai.canvas_resized(16, 0)
    h.ai.on_live_frame(frame)
    assert h.ai.live_image is None and h.ai.frames_dropped == 1


# --------------------------------------------------------------------------- generate
def test_generate_refines_the_current_preview_with_its_seed_and_the_final_steps():
    h = Harness(steps=20)
    live_on(h)
    job = h.ai.generate()
    assert job.plan.refined and h.ai.refining
    h.settle()
    model, request = h.engine.calls[-1]
    assert model == "final" and request.seed == 5 and request.init_image is not None
    assert request.steps == 20 and request.strength == pytest.approx(session_module.REFINE_STRENGTH) == 0.3
    assert request.guidance == session_module.REFINE_GUIDANCE == 1.5
    assert np.array_equal(request.init_image, h.ai.live.last_frame.image.rgba[..., :3])
    # The fake engine has no latents (latent_space None): the refine starts from the pixels, unheld.
    assert request.init_latents is None and request.structure_scale == 0 and request.structure_hold == 0


def test_generate_refines_from_the_frames_latents_when_the_models_share_them():
    class LatentEngine(FakeEngine):
        def generate(self, model_id, request, progress=None, should_stop=None):
            result = super().generate(model_id, request, progress, should_stop)
            result.latents = np.full((4, request.height // 8, request.width // 8), 0.5, np.float32)
            return result

        def latent_space(self, model_id):
            return {"preview": "sd", "final": "sd", "other": "sdxl"}[model_id]

    asked = []
    h = Harness(LatentEngine(native_resolution=64), steps=20,
                refine_bound=lambda final: asked.append(final) or {"final": 0.035}.get(final))
    live_on(h)
    h.ai.generate()
    h.settle()
    model, request = h.engine.calls[-1]
    assert model == "final" and request.init_latents is not None and float(request.init_latents.mean()) == 0.5
    assert request.structure_scale == session_module.REFINE_STRUCTURE_SCALE == 2
    assert request.structure_hold == session_module.REFINE_HOLD == 0.75
    # The cap is the final model's own (catalog: house.json "refine_bound"); a model without one has none.
    assert asked == ["final"] and request.structure_bound == 0.035
    from editor.ai.engine import shares_latents

    assert shares_latents(h.engine, "preview", "final") and not shares_latents(h.engine, "preview", "other")
    assert not shares_latents(FakeEngine(), "preview", "final")
    h2 = Harness(LatentEngine(native_resolution=64), steps=20)
    live_on(h2)
    h2.ai.generate()
    h2.settle()
    assert h2.engine.calls[-1][1].structure_bound == 0.0 and h2.engine.calls[-1][1].init_latents is not None


def test_generate_while_the_preview_renders_waits_for_it_then_refines_it():
    h = Harness(FakeEngine(native_resolution=64, gate=threading.Event()))
    assert h.ai.set_live(True)  # a preview of the current inputs is in flight
    assert h.ai.generate() is None and h.ai.waiting_for_preview and h.ai.busy
    assert h.ai.generate() is None  # a second Generate is refused while waiting
    h.engine.gate.set()
    h.settle()
    models = [m for m, _ in h.engine.calls]
    assert models == ["preview", "final"]  # no unrelated image: the final refines that preview
    assert h.engine.calls[-1][1].init_image is not None and h.ai.staging.count == 1


def test_cancel_while_waiting_for_the_preview_starts_nothing():
    h = Harness(FakeEngine(native_resolution=64, gate=threading.Event()))
    h.ai.set_live(True)
    h.ai.generate()
    assert h.ai.cancel() and not h.ai.busy
    h.engine.gate.set()
    h.settle()
    assert [m for m, _ in h.engine.calls] == ["preview"] and h.ai.staging.count == 0
    assert h.ai.live_image is not None  # live simply goes on


@pytest.mark.parametrize("order", ["cancel-then-report", "report-then-cancel"])
def test_cancel_under_both_orderings_stages_nothing(order):
    h = Harness(FakeEngine(native_resolution=64, gate=threading.Event()))
    before = (h.doc.undo_stack.index, len(h.doc.raster_layers()))
    job = h.ai.generate()
    assert job is not None and not job.plan.refined  # Live is off: a normal generation
    if order == "cancel-then-report":
        assert h.ai.cancel()
        h.engine.gate.set()
    else:  # the render finishes on the worker, the user cancels before its report arrives
        h.engine.gate.set()
        assert job.wait(TIMEOUT)
        assert h.ai.cancel()
    h.settle()
    assert h.ai.staging.count == 0 and h.ai.final_job is None and not h.ai.cancelling
    assert any("Cancelled" in text for text, _ in h.messages)
    assert (h.doc.undo_stack.index, len(h.doc.raster_layers())) == before


def test_accept_and_discard_are_safe_in_every_state():
    h = Harness(FakeEngine(native_resolution=64, gate=threading.Event()))
    assert h.ai.accept() is None  # nothing staged
    h.ai.discard()
    h.ai.generate()
    assert h.ai.accept() is None and h.ai.final_job is not None  # rendering: nothing to accept yet
    h.ai.discard()  # discarding nothing does not stop the render
    h.engine.gate.set()
    h.settle()
    assert h.ai.staging.count == 1
    h.ai.discard()
    assert h.ai.staging.count == 0 and h.ai.accept() is None
    assert len(h.doc.raster_layers()) == 1


def test_reports_of_an_old_job_after_a_new_document_are_ignored():
    h = Harness(FakeEngine(native_resolution=64, gate=threading.Event()))
    job = h.ai.generate()
    other = Document(32, 32)
    h.ai.set_document(other)
    assert not h.ai.busy
    h.engine.gate.set()
    job.wait(TIMEOUT)
    h.settle()
    h.ai.on_job_finished(job)
    assert h.ai.staging.count == 0 and h.ai.staging.document is other


def test_progress_explains_a_partial_schedule():
    h = Harness(steps=20)
    picture(h.doc)
    h.ai.poll()
    assert h.ai.mode.label == "Prompt edit"
    job = h.ai.generate()
    h.settle()
    text = progress_text(JobProgress(job, 0, 1, 3, 12), refining=False)
    assert text == "Generating · step 3/12 (60 % of 20 steps)"
    assert h.engine.calls[-1][1].steps == 20 and h.engine.calls[-1][1].strength == pytest.approx(0.6)


# --------------------------------------------------------------------------- readout
def test_fps_is_measured_over_the_last_seconds():
    meter = LiveMeter(window=3.0)
    stats = LiveStats(finished=2, last_frame_time=0.086, dropped=0)
    meter.record(0.0)
    meter.record(30.0)  # two frames half a minute apart: no rate, not "0.0 fps"
    assert meter.fps(30.0) == 0.0 and meter.readout(stats, 30.0) == "86 ms per frame · idle"
    for t in (30.1, 30.2, 30.3, 30.4):
        meter.record(t)
    assert meter.fps(30.4) == pytest.approx(10.0)
    stats = LiveStats(finished=6, last_frame_time=0.086, dropped=3)
    assert meter.readout(stats, 30.4) == "86 ms per frame · 10.0 fps · 3 dropped"
    assert meter.fps(40.0) == 0.0  # edits stopped: the rate decays to idle


def test_load_settings_takes_a_layers_request_and_frame():
    h = Harness()
    h.ai.generate()
    h.settle()
    layer = h.ai.accept()
    h.ai.update_request(prompt="something else", steps=9)
    h.ai.set_frame(GenerationFrame(8, 8, 16, 16))
    request = h.ai.load_settings(layer.attributes)
    assert (request.prompt, request.seed, request.steps) == ("hills", 5, 4)
    assert h.ai.frame == GenerationFrame(0, 0, 64, 64) and request.mode is None
    varied = h.ai.load_settings(layer.attributes, new_seed=True)
    assert varied.prompt == "hills" and varied.seed_locked
