"""The AI editing state of one window, bound to Qt: the generation frame, the
request the panel edits, the engine and its service, live preview, the final
render and the staged results.

Everything here runs on the UI thread. The core's service reports on its
worker thread; :class:`~editor.ui.ai.relay.CoreRelay` brings those reports
here as queued signals, so no slot runs on the worker and nothing here ever
waits for inference (the UI thread plans a generation, which reads the
document, and hands the plan over).

Input changes (strokes, selection, layers, frame, prompt) are polled at most
every ``INPUT_POLL_MS`` — like Krita's live mode — which updates the frame's
mode label and, with Live on, calls ``LivePreview.update``; a stroke keeps
producing frames while it is drawn because the poll is a throttle, not a
debounce.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
from typing import Callable, Optional

from PySide6.QtCore import QObject, QTimer, Signal

from editor.ai import (EditRequest, GeneratedImage, GenerationFrame, GenerationService, Job, JobProgress,
                       LiveFrame, LivePreview, ModeDecision, Staging, detect_mode_in_document)
from editor.ai.frame import GRID, snap_down
from editor.document import Document, Rect
from inference.errors import InferenceError

from . import models
from .relay import CoreRelay

log = logging.getLogger(__name__)

INPUT_POLL_MS = 80  # inputs are read at most this often (12 Hz)
DEFAULT_FRAME_SIDE = 512
REFINE_STRENGTH = 0.5  # Generate with Live on: img2img from the preview at this strength
PREVIEW_INTERVAL_S = 0.1  # intermediate previews of a final render: at most 10 per second
SEED_MAX = 2**31 - 1  # what a QSpinBox can show
DEFAULT_STEPS, DEFAULT_GUIDANCE = 20, 7.0

EngineFactory = Callable[[dict, str], object]  # ({id: ModelSpec}, device) -> Engine


def default_frame(document: Document) -> GenerationFrame:
    """A frame centred on the canvas, at most ``DEFAULT_FRAME_SIDE`` and inside it."""
    w = max(GRID, snap_down(min(DEFAULT_FRAME_SIDE, document.width)))
    h = max(GRID, snap_down(min(DEFAULT_FRAME_SIDE, document.height)))
    x = max(0, snap_down((document.width - w) / 2))
    y = max(0, snap_down((document.height - h) / 2))
    return GenerationFrame(x, y, w, h)


class PanelLivePreview(LivePreview):
    """Live preview whose requests also take the preview model's guidance
    (a distilled one-step model runs without classifier-free guidance)."""

    guidance: Optional[float] = None

    def preview_request(self, request: EditRequest) -> EditRequest:
        request = super().preview_request(request)
        return request if self.guidance is None else request.replace(guidance=self.guidance)


def _torch_engine(specs: dict, device: str):
    from editor.ai import TorchEngine

    return TorchEngine(specs, device)


class AIController(QObject):
    frame_changed = Signal()
    mode_changed = Signal(object)  # ModeDecision
    overlay_changed = Signal()  # what is drawn over the canvas changed
    progress_changed = Signal(float, str)  # fraction 0..1 of the final render (-1: idle), text
    progress_preview = Signal(object)  # GeneratedImage of a final render's intermediate step, or None
    message = Signal(str, str)  # text, level: "info", "warning" or "error"
    busy_changed = Signal(bool)  # a final render is running
    live_changed = Signal(bool)
    live_stats_changed = Signal(object)  # LiveStats
    staging_changed = Signal()
    request_changed = Signal()  # the request changed from here (new seed, model defaults)
    models_changed = Signal()

    def __init__(self, session, settings, *, engine=None, device: str = "cpu",
                 engine_factory: Optional[EngineFactory] = None, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.session = session
        self.settings = settings
        self.device = device
        self._injected_engine = engine  # tests / custom set-ups: use as is, no catalog checks
        self._engine_factory = engine_factory or _torch_engine
        self.engine = engine
        self.service: Optional[GenerationService] = None
        self.live: Optional[PanelLivePreview] = None
        self.relay = CoreRelay(self)
        for qt, slot in ((self.relay.job_started, self._on_job_started),
                         (self.relay.job_progress, self._on_job_progress),
                         (self.relay.job_finished, self._on_job_finished),
                         (self.relay.job_failed, self._on_job_failed),
                         (self.relay.job_cancelled, self._on_job_cancelled),
                         (self.relay.live_frame, self._on_live_frame),
                         (self.relay.live_failed, self._on_live_failed)):
            self.relay.bind(qt, slot)
        self._rng = random.Random()

        self.entries: dict[str, models.ModelEntry] = {}
        self.reload_models()
        final = self.entries.get(settings.final_model)
        self.request = EditRequest(
            frame=Rect(0, 0, GRID, GRID), seed=self._rng.randint(0, SEED_MAX),
            steps=(final.steps if final and final.steps else DEFAULT_STEPS),
            guidance=(final.guidance if final and final.guidance is not None else DEFAULT_GUIDANCE),
            preview_model=settings.preview_model, final_model=settings.final_model,
        )
        self.frame = default_frame(session.document)
        self.mode: Optional[ModeDecision] = None
        self.live_enabled = False
        self.live_opacity = 0.85
        self.live_image: Optional[GeneratedImage] = None
        self.progress_image: Optional[GeneratedImage] = None
        self.final_job: Optional[Job] = None
        self.refining = False
        self.last_error = ""
        self.staging = Staging(session.document)
        self.staging.changed.connect(self._on_staging_changed)

        self._poll = QTimer(self)
        self._poll.setSingleShot(True)
        self._poll.setInterval(INPUT_POLL_MS)
        self._poll.timeout.connect(self.poll_inputs)
        session.document_changed.connect(self._on_document_changed)
        self._connect_bridge()
        self.poll_inputs()

    # ------------------------------------------------------------- document
    @property
    def document(self) -> Document:
        return self.session.document

    def _connect_bridge(self) -> None:
        bridge = self.session.bridge  # replaced with the document: its connections go with it
        bridge.pixels_changed.connect(self.inputs_changed)
        bridge.selection_changed.connect(self.inputs_changed)
        bridge.layers_changed.connect(self.inputs_changed)
        bridge.canvas_resized.connect(self._on_canvas_resized)

    def _on_document_changed(self, document: Document) -> None:
        self._stop_work()
        self.staging.changed.disconnect(self._on_staging_changed)
        self.staging = Staging(document)
        self.staging.changed.connect(self._on_staging_changed)
        self.frame = default_frame(document)
        self._connect_bridge()
        self.staging_changed.emit()
        self.frame_changed.emit()
        self.poll_inputs()

    def _on_canvas_resized(self, _w: int, _h: int, dx: int, dy: int) -> None:
        # Content moved by (dx, dy) (canvas grown left/top, or that undone): the frame follows it.
        self.live_image = None
        self.progress_image = None
        if dx or dy:
            self.set_frame(self.frame.moved(dx, dy))
        self.inputs_changed()

    # ---------------------------------------------------------------- frame
    def set_frame(self, frame: GenerationFrame) -> None:
        if frame == self.frame:
            return
        self.frame = frame
        self.frame_changed.emit()
        self.overlay_changed.emit()
        self.inputs_changed()

    @staticmethod
    def make_frame(x0: float, y0: float, x1: float, y1: float) -> GenerationFrame:
        """The grid frame spanning two corners dragged out on the canvas."""
        return GenerationFrame.snapped(min(x0, x1), min(y0, y1), abs(x1 - x0), abs(y1 - y0))

    # -------------------------------------------------------------- request
    def current_request(self) -> EditRequest:
        return self.request.replace(frame=self.frame.rect)

    def update_request(self, **changes) -> None:
        """Panel edits (prompt, seed, steps...): take them and re-read the inputs."""
        request = self.request.replace(**changes)
        if request != self.request:
            self.request = request
            self.inputs_changed()

    def randomize_seed(self) -> int:
        seed = self._rng.randint(0, SEED_MAX)
        self.request = self.request.replace(seed=seed)
        self.request_changed.emit()
        self.inputs_changed()
        return seed

    # --------------------------------------------------------------- models
    def reload_models(self) -> None:
        self.entries = {entry.id: entry for entry in models.catalog(self.settings)}
        self.models_changed.emit()

    def entry(self, model_id: str) -> models.ModelEntry:
        entry = models.resolve(model_id)  # fresh: the house model may have been installed meanwhile
        self.entries[model_id] = entry
        return entry

    def set_models(self, preview: Optional[str] = None, final: Optional[str] = None) -> None:
        """Choose the preview and/or final model (ids as in the settings, which keep them)."""
        changes = {}
        if preview is not None and preview != self.request.preview_model:
            self.settings.preview_model = preview
            changes["preview_model"] = preview
        if final is not None and final != self.request.final_model:
            self.settings.final_model = final
            changes["final_model"] = final
            entry = self.entry(final)
            if entry.steps:  # the model's recommended settings (house.json)
                changes["steps"] = entry.steps
            if entry.guidance is not None:
                changes["guidance"] = entry.guidance
        if not changes:
            return
        known = set(self.entries)
        chosen = [m for m in (preview, final) if m is not None]
        problems = [self.entry(m).problem for m in chosen]  # entry() also adds new ids to the list
        if set(self.entries) != known:
            self.models_changed.emit()
        self.request = self.request.replace(**changes)
        self.request_changed.emit()
        if self.live is not None:
            if "preview_model" in changes:
                self.live.stop()
            self._configure_live()
        if self._injected_engine is None:
            for problem in filter(None, problems):
                self._say(problem, "warning")
        self.inputs_changed()

    def add_model(self, path: str, role: str = "final") -> models.ModelEntry:
        """"Add model…": remember a checkpoint file or diffusers folder and pick it."""
        entry = self.entry(path)
        self.entries[entry.id] = entry
        self.models_changed.emit()
        if entry.available:
            self.set_models(**{role: entry.id})
            self._warm_native_resolution(entry.id)
        else:
            self._say(entry.problem, "error")
        return entry

    def _warm_native_resolution(self, model_id: str) -> None:
        """Read a user model's native size off the UI thread (its headers), so
        planning never stalls on it."""
        engine = self.engine
        if engine is None or self.entry(model_id).native_resolution:
            return
        threading.Thread(target=lambda: _quiet(engine.native_resolution, model_id),
                         name="canvasai-model-header", daemon=True).start()

    # --------------------------------------------------------------- engine
    def _ensure_service(self, model_id: str) -> bool:
        """Make sure the engine can run ``model_id``; say why not otherwise."""
        if self._injected_engine is None:
            entry = self.entry(model_id)
            if not entry.available:
                self._say(entry.problem, "error")
                return False
            self._sync_engine_models()
        if self.service is None:
            self.service = GenerationService(self.engine, preview_interval=PREVIEW_INTERVAL_S)
            self.live = PanelLivePreview(self.service, model_id=self.request.preview_model)
            self._configure_live()
            relay, service = self.relay, self.service
            for core, qt in ((service.job_started, relay.job_started), (service.job_progress, relay.job_progress),
                             (service.job_finished, relay.job_finished), (service.job_failed, relay.job_failed),
                             (service.job_cancelled, relay.job_cancelled), (self.live.frame_ready, relay.live_frame),
                             (self.live.frame_failed, relay.live_failed)):
                relay.link(core, qt)
        return True

    def use_engine(self, engine) -> None:
        """Run on ``engine`` from now on (tests, custom set-ups): no catalog checks."""
        self._stop_work()
        self.set_live(False)
        self._close_service()
        self._injected_engine = self.engine = engine

    def _sync_engine_models(self) -> None:
        """Build the engine, or give it the models chosen since (the preview one resident)."""
        preview_id, final_id = self.request.preview_model, self.request.final_model
        wanted = [self.entry(i) for i in dict.fromkeys((preview_id, final_id))]
        specs = models.engine_specs(wanted, resident=[preview_id])
        if self.engine is None:
            self.engine = self._engine_factory(specs, self.device)
            return
        table = self.engine.models  # TorchEngine: ids are only added, never removed (loaded pipelines)
        for model_id, spec in specs.items():
            table[model_id] = spec
        for model_id, spec in list(table.items()):
            if spec.resident != (model_id == preview_id):
                table[model_id] = dataclasses.replace(spec, resident=model_id == preview_id)

    def _configure_live(self) -> None:
        entry = self.entries.get(self.request.preview_model) or self.entry(self.request.preview_model)
        self.live.model_id = self.request.preview_model
        self.live.steps = entry.steps or models.DEFAULT_PREVIEW_STEPS
        self.live.guidance = entry.guidance

    def engine_has_loaded(self, model_id: str) -> bool:
        loaded = getattr(self.engine, "loaded", None)
        return True if loaded is None else model_id in loaded()

    # ----------------------------------------------------------------- input
    def inputs_changed(self, *_args) -> None:
        """Something the generation reads changed: poll soon (a throttle, so a
        long stroke still polls every ``INPUT_POLL_MS``)."""
        if not self._poll.isActive():
            self._poll.start()

    def poll_inputs(self) -> None:
        self._poll.stop()
        decision = detect_mode_in_document(self.document, self.frame.rect)
        if self.mode is None or decision != self.mode:
            self.mode = decision
            self.mode_changed.emit(decision)
            self.overlay_changed.emit()
        self._update_live()

    # ------------------------------------------------------------------ live
    @property
    def live_paused(self) -> bool:
        """Live waits while a final render runs or results are staged."""
        return self.final_job is not None or self.staging.count > 0

    def set_live(self, enabled: bool) -> bool:
        """Live toggle; returns the state it ended in (a missing model keeps it off)."""
        if enabled == self.live_enabled:
            return enabled
        if enabled and not self._ensure_service(self.request.preview_model):
            self.live_changed.emit(False)
            return False
        self.live_enabled = enabled
        if enabled:
            self._say("Live preview on: the frame re-renders as you edit", "info")
            self.poll_inputs()
        else:
            if self.live is not None:
                self.live.stop()
            self.live_image = None
            self.overlay_changed.emit()
        self.live_changed.emit(enabled)
        return enabled

    def set_live_opacity(self, opacity: float) -> None:
        self.live_opacity = min(max(float(opacity), 0.0), 1.0)
        self.overlay_changed.emit()

    def _update_live(self) -> None:
        if not self.live_enabled or self.live is None or self.live_paused:
            return
        try:
            self.live.update(self.document, self.current_request())
        except (ValueError, InferenceError) as exc:
            self._say(str(exc), "warning")

    def _on_live_frame(self, frame: LiveFrame) -> None:
        if not self.live_enabled or self.live_paused or self.live is None:
            # A frame that finished just as live was paused or switched off, or one still queued
            # in the event loop when its service was closed (engine switch, shutdown).
            return
        self.live_image = frame.image
        self.live_stats_changed.emit(self.live.stats)
        self.overlay_changed.emit()

    def _on_live_failed(self, job: Job) -> None:
        if self.live_enabled and self.live is not None:
            self._say(f"Live preview: {job.error}", "error")
            self.live_stats_changed.emit(self.live.stats)

    def _live_frame_is_current(self, request: EditRequest) -> bool:
        """The preview on screen shows exactly the current inputs (so refining it is honest)."""
        frame = self.live.last_frame if self.live is not None else None
        if frame is None or not self.live_enabled or self.live_image is None:
            return False
        self.poll_inputs()  # submit any change still waiting for the poll
        shown = frame.request
        return (self.live.idle and shown.frame == request.frame and shown.prompt == request.prompt
                and shown.negative_prompt == request.negative_prompt and shown.seed == request.seed)

    # ----------------------------------------------------------------- final
    def generate(self) -> Optional[Job]:
        """Generate (final model): refine the live preview when Live shows the
        current inputs, else a normal generation with the request's variations."""
        if self.final_job is not None:
            self._say("A generation is already running (Cancel stops it)", "warning")
            return None
        if self.document.stroke_active:
            return None
        final_id = self.request.final_model
        if not self._ensure_service(final_id):
            return None
        request = self.current_request().replace(quality="final")
        job: Optional[Job] = None
        self.refining = False
        if self._live_frame_is_current(request):
            try:
                job = self.live.refine(strength=REFINE_STRENGTH, model_id=final_id)
                self.refining = job is not None
            except (ValueError, InferenceError) as exc:
                log.info("refine failed, generating instead: %s", exc)
        if self.live is not None:
            self.live.stop()
        if job is None:
            if not self.request.seed_locked:
                request = request.replace(seed=self.randomize_seed())
            job = self.service.submit_edit(self.document, request)
        self.staging.discard()
        self.final_job = job
        self.last_error = ""
        self.busy_changed.emit(True)
        self.progress_changed.emit(0.0, "Refining the preview…" if self.refining else "Starting…")
        return job

    def cancel(self) -> None:
        """Cancel the final render (it stops before its next step) or the live render in flight."""
        if self.final_job is not None:
            self.service.cancel(self.final_job)
            self.progress_changed.emit(self.progress_fraction, "Cancelling…")
        elif self.live is not None and self.live_enabled:
            self.live.stop()

    progress_fraction = 0.0  # of the final render

    def _is_final(self, job: Job) -> bool:
        return job is self.final_job

    def _on_job_started(self, job: Job) -> None:
        if not self._is_final(job):
            return
        model_id = job.plan.model_id if job.plan is not None else self.request.final_model
        text = "Refining the preview…" if self.refining else "Generating…"
        if not self.engine_has_loaded(model_id):
            text = f"Loading {self.entries.get(model_id).label if model_id in self.entries else model_id}…"
        self.progress_changed.emit(0.0, text)

    def _on_job_progress(self, progress: JobProgress) -> None:
        if not self._is_final(progress.job):
            return
        self.progress_fraction = progress.fraction
        what = "Refining" if self.refining else "Generating"
        count = f" {progress.variation + 1}/{progress.variations}" if progress.variations > 1 else ""
        self.progress_changed.emit(progress.fraction, f"{what}{count} · step {progress.step}/{progress.total}")
        if progress.preview is not None:
            self.progress_image = progress.preview
            self.progress_preview.emit(progress.preview)
            self.overlay_changed.emit()

    def _on_job_finished(self, job: Job) -> None:
        if not self._is_final(job):
            return
        self._end_final()
        self.staging.stage(job.images)
        n = len(job.images)
        seconds = f" in {job.render_time:.1f} s" if job.render_time is not None else ""
        self._say(f"{n} result{'s' if n != 1 else ''}{seconds}: Accept adds it as a layer, Discard leaves "
                  "the document as it was", "info")

    def _on_job_failed(self, job: Job) -> None:
        if not self._is_final(job):
            return
        self._end_final()
        self._say(job.error or "The generation failed", "error")
        self._resume_live()

    def _on_job_cancelled(self, job: Job) -> None:
        if not self._is_final(job):
            return
        self._end_final()
        self._say("Cancelled: the document is unchanged", "info")
        self._resume_live()

    def _end_final(self) -> None:
        self.final_job = None
        self.refining = False
        self.progress_fraction = 0.0
        self.progress_image = None
        self.progress_preview.emit(None)
        self.progress_changed.emit(-1.0, "")
        self.busy_changed.emit(False)
        self.overlay_changed.emit()

    # --------------------------------------------------------------- staging
    def _on_staging_changed(self) -> None:
        self.staging_changed.emit()
        self.overlay_changed.emit()

    def accept(self):
        """Add the current result as a new layer (one undo step)."""
        if self.staging.current is None or self.document.stroke_active:
            return None
        layer = self.staging.accept()
        if layer is not None:
            self.session.set_active(layer)
            self._say(f"Added the layer “{layer.name}” (Ctrl+Z removes it)", "info")
        self._resume_live()
        return layer

    def discard(self) -> None:
        if self.staging.count:
            self.staging.discard()
            self._say("Discarded: the document is unchanged", "info")
        self._resume_live()

    def _resume_live(self) -> None:
        self.live_image = None if self.staging.count else self.live_image
        self.inputs_changed()

    # ---------------------------------------------------------------- canvas
    def overlay_image(self) -> Optional[tuple[GeneratedImage, float]]:
        """What to draw in the frame, and its opacity: a staged result, the final
        render's latest step, or the live preview."""
        if self.staging.current is not None:
            return self.staging.current, 1.0
        if self.progress_image is not None:
            return self.progress_image, 1.0
        if self.live_enabled and self.live_image is not None:
            return self.live_image, self.live_opacity
        return None

    # ---------------------------------------------------------------- faults
    def _say(self, text: str, level: str) -> None:
        if level == "error":
            self.last_error = text
        self.message.emit(text, level)

    def _stop_work(self) -> None:
        if self.final_job is not None:
            if self.service is not None:
                self.service.cancel(self.final_job)
            self._end_final()
        if self.live is not None:
            self.live.stop()
        self.live_image = None

    def _close_service(self, timeout: float = 5.0) -> None:
        self.relay.unlink()
        if self.live is not None:
            self.live.close()
        if self.service is not None:
            self.service.close(timeout)
        self.service = None
        self.live = None

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop the worker (cancelled jobs end within one step)."""
        self._poll.stop()
        self.relay.close()
        self._close_service(timeout)


def _quiet(fn, *args) -> None:
    try:
        fn(*args)
    except Exception:  # noqa: BLE001 - the real load reports the problem
        log.debug("reading model header failed", exc_info=True)
