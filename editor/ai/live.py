"""Live preview: re-render the frame with the preview model as the user edits.

Rules (what Krita's live mode and StreamDiffusion do, made explicit):

* every change submits the new inputs; a hash of the exact inputs (frame
  pixels, mask, prompt, settings, model) skips renders that would repeat;
* at most one render is in flight; while it runs, only the newest inputs wait
  (a newer pending input replaces an older one, which is dropped unrendered);
* when a render ends, the waiting input (if any) starts at once;
* frame time is measured per finished frame; fps counts the frames that
  finished in the last ``FPS_WINDOW_S`` seconds (:class:`LiveMeter`), so a
  pause in editing reads "idle", not a rate averaged over minutes;
* ``refine()`` starts the final render as img2img from the current preview
  with the same seed, so the final image stays close to what was shown.

``update`` is called on the UI thread (it reads the document); ``frame_ready``
is emitted on the service's worker thread.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

from editor.document.signals import Signal

from .request import EditRequest, GeneratedImage, GenerationPlan, refine_plan
from .service import GenerationService, Job

STARTED, QUEUED, UNCHANGED = "started", "queued", "unchanged"
FPS_WINDOW_S = 3.0  # fps is measured over the frames of the last few seconds


@dataclass(frozen=True)
class PartialPreview:
    """Who renders the live frames that start from the canvas (img2img, expand: strength < 1) when
    the preview model cannot: a one-step student distilled only from pure noise (the house
    preview) turns a half-noised canvas into blotches that no final render can stay coherent with.
    Those frames come from the final model at a few steps instead (a 3D viewport's "same renderer,
    fewer samples"), with the final's LoRAs, sampler and guidance, so the final refines a picture
    from its own distribution."""

    steps: int  # sampling steps that actually run (the request's steps are scaled by 1/strength)
    model_id: Optional[str] = None  # None: the request's final model
    guidance: Optional[float] = None  # None: the request's


@dataclass
class LiveFrame:
    image: GeneratedImage
    plan: GenerationPlan
    request: EditRequest  # the user's request (before the preview overrides)
    sequence: int  # 1, 2, ... in completion order
    render_time: float  # seconds the engine worked on it
    latency: float  # seconds from the input change to the frame
    fps: float  # finished frames per second over the last FPS_WINDOW_S seconds (0.0: fewer than two)
    compute_time: float = 0.0  # render_time without a model load (what the next frames will take)


@dataclass
class LiveStats:
    submitted: int = 0  # inputs handed to update()/submit_plan()
    started: int = 0  # renders started
    skipped: int = 0  # inputs identical to the wanted ones
    dropped: int = 0  # pending inputs replaced before they ran
    finished: int = 0
    failed: int = 0
    last_frame_time: float = 0.0
    fps: float = 0.0  # over the last FPS_WINDOW_S seconds, at the last frame (LiveMeter.fps(now) decays it)


class LiveMeter:
    """The latency readout of a viewport: time per frame, frames per second
    over the last ``window`` seconds, and frames dropped (inputs replaced
    before they were rendered). Times come from the caller, so tests step it."""

    def __init__(self, window: float = FPS_WINDOW_S) -> None:
        self.window = float(window)
        self._times: collections.deque[float] = collections.deque()

    def record(self, finished_at: float) -> None:
        self._times.append(float(finished_at))
        self._trim(finished_at)

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] <= now - self.window:
            self._times.popleft()

    def fps(self, now: float) -> float:
        """Frames per second over the window ending at ``now``; 0.0 when fewer
        than two frames finished in it (one frame is no rate)."""
        self._trim(now)
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0

    def readout(self, stats: "LiveStats", now: float) -> str:
        """"86 ms per frame · 11.6 fps · 3 dropped" (or "· idle" with no recent rate)."""
        if not stats.finished:
            return ""
        fps = self.fps(now)
        rate = f"{fps:.1f} fps" if fps > 0 else "idle"
        text = f"{stats.last_frame_time * 1000:.0f} ms per frame · {rate}"
        return text + (f" · {stats.dropped} dropped" if stats.dropped else "")


class LivePreview:
    def __init__(self, service: GenerationService, *, model_id: str = "preview", steps: Optional[int] = None,
                 strength: Optional[float] = None, fps_window: Optional[float] = None,
                 clock: Callable[[], float] = time.monotonic):
        self.service = service
        self.model_id = model_id
        self.steps = steps  # overrides the request's steps for previews (few-step models)
        self.strength = strength  # overrides the request's strength for previews
        self.guidance: Optional[float] = None  # the preview model's own (a distilled model runs without CFG)
        self.partial: Optional[PartialPreview] = None  # renders strength < 1 frames, if the preview model can't
        self.frame_ready = Signal("frame_ready")  # (LiveFrame), worker thread
        self.frame_failed = Signal("frame_failed")  # (Job), worker thread
        self.stats = LiveStats()
        self.last_frame: Optional[LiveFrame] = None
        self._clock = clock
        self._lock = threading.Lock()
        self._in_flight: Optional[Job] = None
        self._pending: Optional[GenerationPlan] = None
        self._wanted_key: Optional[str] = None  # newest inputs accepted
        self._shown_key: Optional[str] = None  # inputs of the last frame
        self._origin: dict[str, EditRequest] = {}  # plan key -> the user's request
        self.meter = LiveMeter(FPS_WINDOW_S if fps_window is None else fps_window)
        self._enabled = True
        service.job_finished.connect(self._on_finished)
        service.job_failed.connect(self._on_ended)
        service.job_cancelled.connect(self._on_ended)

    # ------------------------------------------------------------ UI thread
    def preview_request(self, request: EditRequest) -> EditRequest:
        changes: dict = {"quality": "preview", "preview_model": self.model_id, "variations": 1}
        if self.steps is not None:
            changes["steps"] = self.steps
        if self.strength is not None:
            changes["strength"] = self.strength
        if self.guidance is not None:
            changes["guidance"] = self.guidance
        return request.replace(**changes)

    def update(self, document, request: EditRequest) -> str:
        """The inputs changed (or may have): plan them and schedule a render.
        Returns "started", "queued" or "unchanged"."""
        plan = self.service.plan(document, self.preview_request(request), model_id=self.model_id)
        partial = self.partial
        if partial is not None and plan.source is not None and plan.strength < 1.0:
            # The engine runs int(steps × strength) of the requested steps: ask for enough.
            steps = math.ceil(partial.steps / plan.strength - 1e-9)
            guidance = request.guidance if partial.guidance is None else partial.guidance
            final = self.preview_request(request).replace(quality="final", steps=steps, guidance=guidance)
            plan = self.service.plan(document, final, model_id=partial.model_id or request.final_model)
        return self.submit_plan(plan, request)

    def submit_plan(self, plan: GenerationPlan, request: Optional[EditRequest] = None) -> str:
        """Schedule an already built plan (``request``: the user's, for refine)."""
        stale: list[Job] = []
        outcome = self._submit_locked(plan, request, stale)
        for job in stale:  # outside the lock: cancelling reports back through _on_ended
            self.service.cancel(job)
        return outcome

    def _submit_locked(self, plan: GenerationPlan, request: Optional[EditRequest], stale: list[Job]) -> str:
        with self._lock:
            if not self._enabled:
                return UNCHANGED
            self.stats.submitted += 1
            self._origin[plan.key] = request or plan.request
            live_keys = {self._shown_key, plan.key}
            live_keys |= {p.key for p in (self._pending, self._in_flight and self._in_flight.plan) if p}
            for key in [k for k in self._origin if k not in live_keys]:
                del self._origin[key]
            if plan.key == self._wanted_key:
                self.stats.skipped += 1
                return UNCHANGED
            self._wanted_key = plan.key
            if self._pending is not None:
                self._pending = None
                self.stats.dropped += 1
            in_flight_key = self._in_flight.plan.key if self._in_flight is not None else None
            if plan.key in (in_flight_key, self._shown_key):
                # Back to inputs already rendered or rendering: nothing new to
                # run. A render of other inputs in flight is stale: the frame
                # on screen already shows what is wanted.
                if self._in_flight is not None and in_flight_key != plan.key:
                    stale.append(self._in_flight)
                self.stats.skipped += 1
                return UNCHANGED
            if self._in_flight is not None:
                self._pending = plan
                return QUEUED
            self._start_locked(plan)
            return STARTED

    def refine(self, *, strength: float = 0.5, model_id: str = "final") -> Optional[Job]:
        """Final render from the current preview (same seed, img2img at
        ``strength``); None when no frame has been shown yet."""
        frame = self.last_frame
        if frame is None:
            return None
        native = self.service.native_resolution(model_id)
        plan = refine_plan(frame.plan, frame.image, native, model_id=model_id, strength=strength,
                           request=frame.request.replace(quality="final", final_model=model_id, variations=1))
        return self.service.submit(plan)

    @property
    def current_frame(self) -> Optional[LiveFrame]:
        """The last frame when it shows the newest inputs given to ``update`` (else None)."""
        with self._lock:
            shown = self._shown_key is not None and self._wanted_key == self._shown_key
            return self.last_frame if shown else None

    @property
    def in_flight(self) -> bool:
        with self._lock:
            return self._in_flight is not None

    @property
    def idle(self) -> bool:
        """No render in flight and none waiting."""
        with self._lock:
            return self._in_flight is None and self._pending is None

    def readout(self) -> str:
        """The latency line for the panel, as of now."""
        with self._lock:
            return self.meter.readout(self.stats, self._clock())

    def stop(self) -> None:
        """Pause: cancel the render in flight and forget the pending input."""
        with self._lock:
            job, self._in_flight = self._in_flight, None
            self._pending = None
            self._wanted_key = None
        if job is not None:
            self.service.cancel(job)

    def close(self) -> None:
        self.stop()
        with self._lock:
            self._enabled = False
        for signal, slot in ((self.service.job_finished, self._on_finished),
                             (self.service.job_failed, self._on_ended),
                             (self.service.job_cancelled, self._on_ended)):
            try:
                signal.disconnect(slot)
            except ValueError:
                pass

    # -------------------------------------------------------------- internals
    def _start_locked(self, plan: GenerationPlan) -> None:
        self.stats.started += 1
        self._in_flight = self.service.submit(plan, previews=False)

    def _take_turn_locked(self, job: Job) -> bool:
        """Clear ``job`` from the in-flight slot and start the pending input."""
        if self._in_flight is not job:
            return False
        self._in_flight = None
        if self._pending is not None:
            plan, self._pending = self._pending, None
            self._start_locked(plan)
        return True

    def _on_finished(self, job: Job) -> None:
        with self._lock:
            if not self._take_turn_locked(job):
                return
            now = self._clock()
            self.meter.record(now)
            render_time = job.render_time or 0.0
            compute_time = job.compute_time or render_time
            fps = self.meter.fps(now)
            self.stats.finished += 1
            self.stats.last_frame_time = compute_time  # a first frame's model load is not a frame time
            self.stats.fps = fps
            self._shown_key = job.plan.key
            request = self._origin.get(job.plan.key, job.plan.request)
            frame = LiveFrame(job.images[0], job.plan, request, self.stats.finished, render_time,
                              job.latency or 0.0, fps, compute_time)
            self.last_frame = frame
        self.frame_ready.emit(frame)

    def _on_ended(self, job: Job) -> None:
        with self._lock:
            if not self._take_turn_locked(job):
                return
            if job.state.value == "failed":
                self.stats.failed += 1
                if self._wanted_key == job.plan.key:
                    self._wanted_key = None  # let the same inputs try again
        if job.state.value == "failed":
            self.frame_failed.emit(job)
