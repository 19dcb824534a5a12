"""GenerationService: runs plans on ONE background worker thread.

The UI thread builds a plan (it reads the document) and submits it; the
worker loads the model if needed, runs the engine, composes the layer images
and reports through signals. Signals are emitted on the worker thread: the
Qt adapter re-emits them as queued Qt signals. The service never touches the
document, so no failure or cancel can change it.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Optional

from editor.document.signals import Signal
from inference.errors import CancelledError, InferenceError

from .engine import Engine
from .request import EditRequest, GeneratedImage, GenerationPlan, build_plan, finish_image
from .tiled_decode import is_out_of_memory

log = logging.getLogger(__name__)


class JobState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


_job_ids = itertools.count(1)


@dataclass(eq=False)
class Job:
    plan: Optional[GenerationPlan]
    previews: bool = True
    id: int = field(default_factory=lambda: next(_job_ids))
    state: JobState = JobState.QUEUED
    images: list[GeneratedImage] = field(default_factory=list)
    error: str = ""  # user-facing message when FAILED
    exception: Optional[BaseException] = None
    submitted_at: float = field(default_factory=time.monotonic)
    started_at: Optional[float] = None
    loaded_at: Optional[float] = None  # the model was ready (after a first load, if any)
    finished_at: Optional[float] = None
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    @property
    def finished(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        return self._done.wait(timeout)

    @property
    def render_time(self) -> Optional[float]:
        """Seconds from start to end of the run (None until finished)."""
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    @property
    def compute_time(self) -> Optional[float]:
        """Seconds of rendering, a model load excluded (None until finished)."""
        start = self.loaded_at if self.loaded_at is not None else self.started_at
        return None if start is None or self.finished_at is None else self.finished_at - start

    @property
    def latency(self) -> Optional[float]:
        """Seconds from submit to end (queueing included)."""
        return None if self.finished_at is None else self.finished_at - self.submitted_at


@dataclass
class JobProgress:
    job: Job
    variation: int  # 0-based index of the image being made
    variations: int
    step: int
    total: int
    preview: Optional[GeneratedImage] = None  # intermediate image, when previews are on

    @property
    def fraction(self) -> float:
        return (self.variation + self.step / max(1, self.total)) / max(1, self.variations)


_STOP = object()


class GenerationService:
    """``submit(plan) -> Job``, ``cancel(job)``; signals ``job_started(job)``,
    ``job_progress(JobProgress)``, ``job_finished(job)`` (``job.images``),
    ``job_failed(job)`` (``job.error``), ``job_cancelled(job)``, all emitted on
    the worker thread (or on the caller's for a plan that cannot be built)."""

    def __init__(self, engine: Engine, *, previews: bool = True, preview_every: int = 1,
                 preview_interval: float = 0.0):
        self.engine = engine
        self.previews = previews
        self.preview_every = max(1, int(preview_every))  # decode a preview every n-th step ...
        self.preview_interval = float(preview_interval)  # ... and at most this often (seconds)
        self.job_started = Signal("job_started")
        self.job_progress = Signal("job_progress")
        self.job_finished = Signal("job_finished")
        self.job_failed = Signal("job_failed")
        self.job_cancelled = Signal("job_cancelled")
        self._queue: "queue.Queue[object]" = queue.Queue()
        self._lock = threading.Lock()
        self._pending: list[Job] = []
        self._current: Optional[Job] = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="ai-generation", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------- UI thread
    def native_resolution(self, model_id: str) -> int:
        return self.engine.native_resolution(model_id)

    def plan(self, document, request: EditRequest, *, model_id: Optional[str] = None) -> GenerationPlan:
        model_id = model_id or request.model_id
        return build_plan(document, request, self.native_resolution(model_id), model_id=model_id,
                          inpaint_model=self.engine.unet_in_channels(model_id) == 9)

    def submit(self, plan: GenerationPlan, *, previews: Optional[bool] = None) -> Job:
        job = Job(plan, previews=self.previews if previews is None else previews)
        with self._lock:
            if self._closed:
                raise RuntimeError("the generation service is closed")
            self._pending.append(job)
        self._queue.put(job)
        return job

    def submit_edit(self, document, request: EditRequest, *, previews: Optional[bool] = None) -> Job:
        """Plan on the calling (UI) thread and submit. A request that cannot be
        planned gives a FAILED job (and ``job_failed``) instead of raising."""
        try:
            plan = self.plan(document, request)
        except (ValueError, InferenceError) as exc:
            job = Job(None)
            self._fail(job, str(exc) or "the request cannot run", exc)
            return job
        return self.submit(plan, previews=previews)

    def cancel(self, job: Job) -> None:
        """Queued: dropped at once (``job_cancelled`` on the caller's thread).
        Running: stops before the next sampling step."""
        job._cancel.set()
        with self._lock:
            queued = job in self._pending
            if queued:
                self._pending.remove(job)
        if queued:
            self._finish(job, JobState.CANCELLED, self.job_cancelled)

    def cancel_all(self) -> None:
        with self._lock:
            jobs = list(self._pending) + ([self._current] if self._current else [])
        for job in jobs:
            job._cancel.set()

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._current is not None or bool(self._pending)

    def close(self, timeout: float = 10.0) -> None:
        with self._lock:
            self._closed = True
        self.cancel_all()
        self._queue.put(_STOP)
        self._thread.join(timeout)

    # ----------------------------------------------------------- worker thread
    def _emit(self, signal: Signal, *args) -> None:
        try:
            signal.emit(*args)
        except Exception:  # noqa: BLE001 - a faulty observer must not kill the worker
            log.exception("observer of %r failed", signal)

    def _finish(self, job: Job, state: JobState, signal: Signal) -> None:
        job.state = state
        job.finished_at = time.monotonic()
        with self._lock:
            if self._current is job:
                self._current = None
        self._emit(signal, job)
        job._done.set()

    def _fail(self, job: Job, message: str, exc: Optional[BaseException]) -> None:
        job.error = message
        job.exception = exc
        self._finish(job, JobState.FAILED, self.job_failed)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            job = item
            assert isinstance(job, Job)
            with self._lock:
                if job not in self._pending:  # cancelled while queued
                    continue
                self._pending.remove(job)
                self._current = job
            self._run_job(job)

    def _run_job(self, job: Job) -> None:
        plan = job.plan
        assert plan is not None
        job.state = JobState.RUNNING
        job.started_at = time.monotonic()
        self._emit(self.job_started, job)
        try:
            self.engine.ensure_loaded(plan.model_id)
            job.loaded_at = time.monotonic()
            label = self.engine.model_label(plan.model_id)
            images = []
            count = len(plan.engine_requests)
            generate_many = getattr(self.engine, "generate_many", None)
            if generate_many is not None and count > 1:
                # An engine that can run variations at once (the farm's, across its workers): one
                # call, results in seed order; a cancel stops them all, one failure fails the job.
                results = generate_many(plan.model_id, list(plan.engine_requests),
                                        self._many_progress(job, plan, count), lambda: job.cancel_requested)
            else:
                results = None
            for index, request in enumerate(plan.engine_requests):
                if job.cancel_requested:
                    raise CancelledError("cancelled")
                if results is not None:
                    result = results[index]
                else:
                    progress = self._progress_callback(job, plan, index, count, request.seed)
                    result = self.engine.generate(plan.model_id, request, progress, lambda: job.cancel_requested)
                if job.cancel_requested:
                    raise CancelledError("cancelled")
                image = finish_image(plan, result.image, result.seed, label)
                image.latents = getattr(result, "latents", None)  # refine_plan checks they fit
                images.append(image)
            job.images = images
            self._finish(job, JobState.DONE, self.job_finished)
        except CancelledError:
            self._finish(job, JobState.CANCELLED, self.job_cancelled)
        except InferenceError as exc:
            self._fail(job, str(exc), exc)
        except Exception as exc:  # noqa: BLE001 - report, never kill the worker
            if is_out_of_memory(exc):
                self._fail(job, "Out of memory. Try a smaller frame or a smaller model.", exc)
            else:
                log.exception("generation failed")
                self._fail(job, f"Generation failed: {type(exc).__name__}: {exc}", exc)

    def _many_progress(self, job: Job, plan: GenerationPlan, count: int):
        """Per-request progress callbacks for variations running at once: each reports its own
        step and previews, and the job's fraction is the mean over all of them (so the bar
        advances steadily instead of jumping between variations)."""
        done = [0.0] * count
        lock = threading.Lock()

        def progress_for(index: int):
            inner = self._progress_callback(job, plan, index, count, plan.engine_requests[index].seed,
                                            lambda: sum(done) / count)

            def progress(step: int, total: int, latents) -> None:
                with lock:
                    done[index] = step / max(1, total)
                inner(step, total, latents)

            return progress

        return progress_for

    def _progress_callback(self, job: Job, plan: GenerationPlan, index: int, count: int, seed: int,
                           overall=None):
        last_preview = [float("-inf")]

        def progress(step: int, total: int, latents) -> None:
            preview = None
            want = job.previews and latents is not None and step < total and step % self.preview_every == 0
            now = time.monotonic()
            if want and not job.cancel_requested and now - last_preview[0] >= self.preview_interval:
                last_preview[0] = now
                try:
                    rgb = self.engine.preview_image(plan.model_id, latents)
                    if rgb is not None:
                        preview = finish_image(plan, rgb, seed, preview=True)
                except Exception:  # noqa: BLE001 - a preview is optional
                    log.debug("preview decode failed", exc_info=True)
            report = JobProgress(job, index, count, step, total, preview) if overall is None \
                else _ManyProgress(job, index, count, step, total, preview, overall())
            self._emit(self.job_progress, report)

        return progress


@dataclass
class _ManyProgress(JobProgress):
    """Progress of one of several variations rendering at once: its own step, the job's mean fraction."""

    overall: float = 0.0

    @property
    def fraction(self) -> float:
        return self.overall
