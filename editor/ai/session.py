"""The AI editing state of one window, without Qt: the frame and its mode, the
request, live preview, the final render and the staged results, and the rules
between them.

Everything here runs on one thread (the UI thread in the app). The generation
service reports on its worker thread; the session never handles those reports
there: it hands each one to ``post(handler, *args)``, which the Qt adapter
implements as a queued signal and tests as a list they pump in any order. So
every ordering of "a frame arrives" / "the user accepts" / "the render is
cancelled" can be stepped in a plain unit test.

Rules (the user-visible contract):

* **Live** re-renders the frame with the preview model when the inputs change
  (``poll``); frames for other inputs, a resized canvas, or arriving while a
  final render runs or results are staged are dropped (``frames_dropped``).
* **Accept** adds the staged image as a layer and *holds* live: nothing is drawn
  over the new layer until the inputs change again (an edit, a new prompt, a
  moved frame, an undo), so the canvas shows exactly what was committed.
* **Generate** with Live on refines what the preview shows (same seed, img2img
  from the preview); if the preview of the current inputs is still rendering,
  Generate waits for it ("Waiting for the preview…") rather than starting an
  unrelated image. Without a current preview it is a normal generation.
* **Cancel** (Esc) stops the final render or the wait for the preview; it has
  no other target (a live render is replaced by newer inputs on its own).

Why one module of ~650 lines: the rules above are transitions between live,
final and staging states that each read the others; kept in one class they can
be checked against each other in one place. The pieces that do not need the
state live beside it (live.py, request.py, flux_route.py, loras.py, engine.py).
"""

from __future__ import annotations

import hashlib
import logging
import random
from typing import Callable, Optional

from editor.document.geometry import Rect
from editor.document.signals import Signal

from . import flux, flux_route
from .catalog import engine_model_id
from .engine import shares_latents
from .frame import GRID, GenerationFrame, snap_down
from .live import LiveFrame, LivePreview, PartialPreview
from .modes import ModeDecision, detect_mode
from .request import EditRequest, GeneratedImage, refine_plan, request_from_attributes
from .results import Staging
from .service import GenerationService, Job, JobProgress

log = logging.getLogger(__name__)

DEFAULT_FRAME_SIDE = 512
# Generate with Live on refines the frame on screen (issue 20, docs/coherence.md, measured with
# scripts/measure_coherence.py on 24 cases): img2img from the frame's own latents at REFINE_STRENGTH
# (pixels would go through the lossy VAE round trip first); for the first REFINE_HOLD share of those
# steps the latent stays on the frame's noise trajectory, after that only its structure coarser than
# REFINE_STRUCTURE_SCALE latent cells does (ILVR), so the final model adds detail without moving the
# composition. A final model that declares a refine bound (catalog.ModelEntry.refine_bound, the house
# model) may not move any latent cell further than that, so it cannot grow new objects either.
REFINE_STRENGTH = 0.3
REFINE_HOLD = 0.75
REFINE_STRUCTURE_SCALE = 2
# The refine's CFG; None: the request's (the final model's).
REFINE_GUIDANCE: Optional[float] = 1.5
# Live frames that start from the canvas, when the preview model can't render them usefully
# (catalog.ModelEntry.partial_denoise): the final model at this many steps (see live.PartialPreview).
PARTIAL_PREVIEW_STEPS = 6
PREVIEW_INTERVAL_S = 0.1  # intermediate previews of a final render: at most 10 per second
LIVE_AUTO_MAX_S = 0.75  # Live starts on when one preview frame takes at most this long
SEED_LIMIT = 2**32  # seeds are 32-bit (inference.api.SEED_MAX + 1)

Post = Callable[..., None]  # post(handler, *args): run handler(*args) later on the session's thread


def default_frame(document) -> GenerationFrame:
    """A frame centred on the canvas, at most ``DEFAULT_FRAME_SIDE`` and inside it."""
    w = max(GRID, snap_down(min(DEFAULT_FRAME_SIDE, document.width)))
    h = max(GRID, snap_down(min(DEFAULT_FRAME_SIDE, document.height)))
    x = max(0, snap_down((document.width - w) / 2))
    y = max(0, snap_down((document.height - h) / 2))
    return GenerationFrame(x, y, w, h)


def progress_text(progress: JobProgress, refining: bool) -> str:
    """"Refining · step 3/10 (50 % of 20 steps)": the real step count, and why
    it is smaller than Steps when only part of the schedule runs (img2img)."""
    plan = progress.job.plan
    what = plan.status if plan is not None and plan.status else "Refining the preview" if refining else "Generating"
    count = f" {progress.variation + 1}/{progress.variations}" if progress.variations > 1 else ""
    text = f"{what}{count} · step {progress.step}/{progress.total}"
    if plan is not None and progress.total < plan.request.steps:
        text += f" ({plan.strength * 100:.0f} % of {plan.request.steps} steps)"
    return text


class _Hold:
    """Live held after Accept until the inputs change (see the module doc)."""

    NEXT = object()  # take the next inputs as the baseline


class AISession:
    """The state machine. ``engine_for(model_ids) -> (engine | None, problem)``
    gives the engine that can run the models (built or updated by the caller's
    catalog) or says why not; ``post`` carries worker reports to this thread."""

    def __init__(self, document, request: EditRequest, *, post: Post,
                 engine_for: Callable[[tuple[str, ...]], tuple[object, str]],
                 preview_settings: Callable[[str], tuple[Optional[int], Optional[float]]] = lambda _m: (None, None),
                 partial_denoise: Callable[[str], bool] = lambda _m: True,
                 refine_bound: Callable[[str], Optional[float]] = lambda _final: None,
                 fill_model: Callable[[str], Optional[str]] = lambda _final: None,
                 rng: Optional[random.Random] = None) -> None:
        self.document = document
        self.request = request
        self.frame = default_frame(document)
        self.mode: Optional[ModeDecision] = None
        self.inputs_key = ""
        self.staging = Staging(document)
        self.engine = None
        self.service: Optional[GenerationService] = None
        self.live: Optional[LivePreview] = None
        self.live_enabled = False
        self.live_opacity = 0.85
        self.live_image: Optional[GeneratedImage] = None
        self.live_probe = False  # the start-up frame decides whether Live stays on
        self.progress_image: Optional[GeneratedImage] = None
        self.progress_fraction = 0.0
        self.final_job: Optional[Job] = None
        self.refining = False
        self.waiting_for_preview = False
        self.cancelling = False  # Cancel was asked: a result that still arrives is not staged
        self.frames_dropped = 0  # live frames that arrived too late to show
        self.last_error = ""
        self._hold: object = None
        self._post = post
        self._engine_for = engine_for
        self._preview_settings = preview_settings
        self._partial_denoise = partial_denoise
        self._refine_bound = refine_bound  # final id -> its refine's latent-change cap (None: none)
        self._fill_model = fill_model  # final id -> the FLUX Fill model that repaints its masks, if any
        self._rng = rng or random.Random()
        self._links: list[tuple[Signal, Callable]] = []

        self.frame_changed = Signal("frame_changed")
        self.mode_changed = Signal("mode_changed")  # (ModeDecision)
        self.overlay_changed = Signal("overlay_changed")
        self.progress_changed = Signal("progress_changed")  # (fraction 0..1 or -1 when idle, text)
        self.progress_preview = Signal("progress_preview")  # (GeneratedImage or None)
        self.message = Signal("message")  # (text, level: "info" | "warning" | "error" | "" to clear)
        self.busy_changed = Signal("busy_changed")  # (bool): a final render runs or waits
        self.live_changed = Signal("live_changed")  # (bool)
        self.live_stats_changed = Signal("live_stats_changed")  # (LiveStats)
        self.staging_changed = Signal("staging_changed")
        self.request_changed = Signal("request_changed")  # changed from here (seed, settings loaded)
        self.staging.changed.connect(self._on_staging_changed)

    # ------------------------------------------------------------- queries
    @property
    def busy(self) -> bool:
        return self.final_job is not None or self.waiting_for_preview

    @property
    def live_held(self) -> bool:
        return self._hold is not None

    @property
    def live_paused(self) -> bool:
        """Live waits while a final render runs, results are staged, or after Accept
        (not while Generate waits for the preview: that frame is what it waits for)."""
        return self.final_job is not None or self.staging.count > 0 or self.live_held

    def current_request(self) -> EditRequest:
        return self.request.replace(frame=self.frame.rect)

    def overlay_image(self) -> Optional[tuple[GeneratedImage, float]]:
        """What to draw in the frame, and its opacity: a staged result, the final
        render's latest step, or the live preview (never while held)."""
        if self.staging.current is not None:
            return self.staging.current, 1.0
        if self.progress_image is not None:
            return self.progress_image, 1.0
        if self.live_enabled and self.live_image is not None and not self.staging.count and not self.live_held:
            if self.final_job is None or self.refining:  # a refine shows what it refines until its first step
                return self.live_image, self.live_opacity
        return None

    def live_state(self) -> str:
        """"" (off), "Live", "Live · paused" (a render or results), "Live · edit to resume" (after Accept)."""
        if not self.live_enabled:
            return ""
        if self.live_held:
            return "Live · edit to resume"
        if self.busy or self.staging.count:
            return "Live · paused"
        return "Live"

    # ------------------------------------------------------------- document
    def set_document(self, document) -> None:
        self.stop_work()
        self.document = document
        self.staging.changed.disconnect(self._on_staging_changed)
        self.staging = Staging(document)
        self.staging.changed.connect(self._on_staging_changed)
        self.frame = default_frame(document)
        self._hold = None
        self.staging_changed.emit()
        self.frame_changed.emit()
        self.poll()

    def canvas_resized(self, dx: int, dy: int) -> None:
        """Content moved by (dx, dy) (canvas grown left/top, or that undone): the frame follows it."""
        self.live_image = None
        self.progress_image = None
        if dx or dy:
            self.set_frame(self.frame.moved(dx, dy))

    def set_frame(self, frame: GenerationFrame) -> bool:
        if frame == self.frame:
            return False
        self.frame = frame
        self.frame_changed.emit()
        self.overlay_changed.emit()
        return True

    def update_request(self, **changes) -> bool:
        request = self.request.replace(**changes)
        if request == self.request:
            return False
        self.request = request
        self.clear_error()
        return True

    def randomize_seed(self) -> int:
        seed = self._rng.randrange(SEED_LIMIT)
        self.request = self.request.replace(seed=seed)
        self.request_changed.emit()
        return seed

    # ---------------------------------------------------------------- poll
    def poll(self) -> ModeDecision:
        """Read the inputs (mode, hold) and, with Live on, schedule a preview."""
        rect = self.frame.rect
        rgba = self.document.render(rect)
        selection = self.document.selection.region(rect)
        decision = detect_mode(rgba, selection, off_canvas=not self.document.canvas_rect.contains_rect(rect))
        decision = flux.adjust_decision(decision, flux.family_of(self.request.final_model),
                                        flux.family_of(self.request.preview_model))
        if self.mode is None or decision != self.mode:
            self.mode = decision
            self.mode_changed.emit(decision)
            self.overlay_changed.emit()
        self.inputs_key = self._inputs_key(rgba, selection)
        if self._hold is _Hold.NEXT:
            self._hold = self.inputs_key
        elif self._hold is not None and self._hold != self.inputs_key:
            self._hold = None  # the user changed something: live resumes
            self.overlay_changed.emit()
        self._update_live()
        return decision

    def _inputs_key(self, rgba, selection) -> str:
        r = self.current_request()
        digest = hashlib.blake2b(digest_size=16)
        digest.update(repr((r.frame, r.prompt, r.negative_prompt, r.seed, r.steps, r.guidance, r.strength,
                            r.sampler, r.preview_model, r.loras, r.preview_loras, r.preview_sampler,
                            self.document.width, self.document.height)).encode())
        digest.update(rgba.tobytes())
        if selection is not None:
            digest.update(selection.tobytes())
        return digest.hexdigest()

    # ---------------------------------------------------------------- engine
    def _ensure_service(self, model_ids: tuple[str, ...]) -> bool:
        engine, problem = self._engine_for(model_ids)
        if engine is None:
            self.say(problem or "The AI engine is not available", "error")
            return False
        if engine is not self.engine:
            self.close_service()
            self.engine = engine
        if self.service is None:
            self.service = GenerationService(engine, preview_interval=PREVIEW_INTERVAL_S)
            self.live = LivePreview(self.service, model_id=self.request.preview_model)
            self.configure_live()
            post, service, live = self._post, self.service, self.live
            for signal, handler in ((service.job_started, self.on_job_started),
                                    (service.job_progress, self.on_job_progress),
                                    (service.job_finished, self.on_job_finished),
                                    (service.job_failed, self.on_job_failed),
                                    (service.job_cancelled, self.on_job_cancelled),
                                    (live.frame_ready, self.on_live_frame),
                                    (live.frame_failed, self.on_live_failed)):
                def forward(*args, _handler=handler) -> None:
                    post(_handler, *args)

                signal.connect(forward)
                self._links.append((signal, forward))
        return True

    def _final_ids(self) -> tuple[str, ...]:
        """The final model, and the FLUX Fill model its masks go to (the engine must know both)."""
        fill = self._fill_model(self.request.final_model)
        return (self.request.final_model,) + ((fill,) if fill else ())

    def configure_live(self) -> None:
        """The preview model's own steps and guidance (a distilled one-step model runs without CFG)."""
        if self.live is None:
            return
        steps, guidance = self._preview_settings(self.request.preview_model)
        # FLUX previews at a few steps (schnell: 2, without guidance).
        steps, guidance = flux.live_settings(flux.family_of(self.request.preview_model), steps, guidance)
        # "FINAL + speed LoRA" runs on the final model's engine entry (one checkpoint in memory):
        # its LoRA and sampler come with the request (EditRequest.preview_loras).
        self.live.model_id = engine_model_id(self.request.preview_model)
        self.live.steps = steps
        self.live.guidance = guidance
        partial = self._partial_denoise(self.request.preview_model)
        self.live.partial = None if partial else PartialPreview(PARTIAL_PREVIEW_STEPS)

    def preview_model_changed(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.configure_live()
        self.live_image = None
        self.overlay_changed.emit()

    def close_service(self, timeout: float = 5.0) -> None:
        for signal, forward in self._links:
            try:
                signal.disconnect(forward)
            except ValueError:
                pass
        self._links = []
        if self.live is not None:
            self.live.close()
        if self.service is not None:
            self.service.close(timeout)
        self.service = None
        self.live = None

    # ------------------------------------------------------------------ live
    def set_live(self, enabled: bool, *, probe: bool = False) -> bool:
        """Live toggle; returns the state it ended in (a missing model keeps it off).
        ``probe``: the start-up check — the first frame's time decides whether it stays on."""
        self.live_probe = bool(probe and enabled)
        if enabled == self.live_enabled:
            return enabled
        if enabled and not self._ensure_service((self.request.preview_model,)):
            self.live_changed.emit(False)
            return False
        self.live_enabled = enabled
        if enabled:
            self._hold = None
            self.poll()
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
        preview_family = flux.family_of(self.request.preview_model)
        if not flux.live_shows(self.mode, preview_family):
            self.live.stop()  # a Kontext edit without a Kontext preview model: nothing to show (the reason says so)
            if self.live_image is not None:
                self.live_image = None
                self.overlay_changed.emit()
            return
        try:
            request = self.current_request().replace(mode=flux.live_mode(self.mode, preview_family))
            self.live.update(self.document, request)
            current = self.live.current_frame
            if self.live_image is None and current is not None and not self._frame_is_stale(current):
                self.live_image = current.image  # back to inputs already rendered (an undo): show that frame
                self.overlay_changed.emit()
        except ValueError as exc:
            self.say(str(exc), "warning")
        except Exception as exc:  # noqa: BLE001 - InferenceError and friends: say it, keep editing
            self.say(f"Live preview: {exc}", "warning")

    def _frame_is_stale(self, frame: LiveFrame) -> bool:
        return (not self.live_enabled or self.live is None or self.live_paused
                or frame.image.canvas_size != (self.document.width, self.document.height))

    def on_live_frame(self, frame: LiveFrame) -> None:
        if self._frame_is_stale(frame):
            # Finished just as live was paused, held or switched off, after the canvas changed size,
            # or still queued when its service was closed: showing it would lie about the canvas.
            self.frames_dropped += 1
            self._finish_waiting()
            return
        if self.live_probe:
            self.live_probe = False
            seconds = frame.compute_time or frame.render_time  # the model's first load does not count
            if seconds > LIVE_AUTO_MAX_S:
                self.set_live(False)
                self.say(f"Live preview is off: one preview frame takes {seconds:.1f} s here "
                         "(tick Live to use it anyway)", "info")
                return
        self.live_image = frame.image
        self.live_stats_changed.emit(self.live.stats)
        self.overlay_changed.emit()
        self._finish_waiting()

    def on_live_failed(self, job: Job) -> None:
        if self.live_enabled and self.live is not None:
            self.say(f"Live preview: {job.error}", "error")
            self.live_stats_changed.emit(self.live.stats)
        self._finish_waiting()

    def _preview_is_current(self) -> bool:
        """The preview on screen shows exactly the current inputs (so refining it is honest)."""
        frame = self.live.last_frame if self.live is not None else None
        if frame is None or not self.live_enabled or self.live_image is not frame.image or not self.live.idle:
            return False
        shown, wanted = frame.request, self.current_request()
        if self.mode is not None and frame.plan.mode != self.mode.mode:
            return False  # e.g. a prompt-edit preview under a Kontext final: not what Generate makes
        return (shown.frame == wanted.frame and shown.prompt == wanted.prompt
                and shown.negative_prompt == wanted.negative_prompt and shown.seed == wanted.seed
                and shown.loras == wanted.loras
                and frame.image.canvas_size == (self.document.width, self.document.height))

    # ----------------------------------------------------------------- final
    def generate(self) -> Optional[Job]:
        """Generate (final model): refine the live preview when it shows the
        current inputs; wait for it when it is rendering them; else a normal
        generation with the request's variations."""
        if self.busy:
            self.say("A generation is already running (Esc or Cancel stops it)", "warning")
            return None
        if self.document.stroke_active:
            return None
        self.clear_error()
        if not self._ensure_service(self._final_ids()):
            return None
        if self.live_enabled and not self.live_paused:
            self.poll()  # submit any change still waiting for the poll timer
            if not self.live.idle:
                self.waiting_for_preview = True
                self.staging.discard()
                self.busy_changed.emit(True)
                self.progress_changed.emit(0.0, "Waiting for the preview…")
                return None
        return self._start_final()

    def _finish_waiting(self) -> None:
        if self.waiting_for_preview and self.live is not None and self.live.idle:
            self.waiting_for_preview = False
            if self._start_final() is None:
                self._end_final()

    def _start_final(self) -> Optional[Job]:
        final_id = self.request.final_model
        job: Optional[Job] = None
        self.refining = False
        if self._preview_is_current():
            try:
                job = self._refine(final_id)
                self.refining = True
            except Exception as exc:  # noqa: BLE001 - fall back to a normal generation
                log.info("refine failed, generating instead: %s", exc)
        if self.live is not None:
            self.live.stop()
        if job is None:
            request = self.current_request().replace(quality="final")
            if not self.request.seed_locked:
                request = request.replace(seed=self.randomize_seed())
            job = flux_route.submit_final(self.service, self.document, request, self._fill_model(final_id))
        self.staging.discard()
        self.final_job = job
        self.waiting_for_preview = False
        self.progress_fraction = 0.0
        self.busy_changed.emit(True)
        status = job.plan.status if job.plan is not None else ""
        self.progress_changed.emit(0.0, f"{status}…" if status else "Refining the preview…" if self.refining
                                   else "Starting…")
        self.overlay_changed.emit()
        return job

    def _refine(self, final_id: str) -> Job:
        frame = self.live.last_frame
        guidance = self.request.guidance if REFINE_GUIDANCE is None else REFINE_GUIDANCE
        final_id, guidance, status = flux_route.refine_target(frame.plan, final_id, self._fill_model(final_id),
                                                              guidance, self.request.guidance)
        request = frame.request.replace(quality="final", final_model=final_id, steps=self.request.steps,
                                        guidance=guidance, sampler=self.request.sampler,
                                        variations=self.request.variations)
        native = self.service.native_resolution(final_id)
        plan = refine_plan(frame.plan, frame.image, native, model_id=final_id, strength=REFINE_STRENGTH,
                           request=request, seeds=request.seeds(),
                           latents=shares_latents(self.engine, frame.plan.model_id, engine_model_id(final_id)),
                           structure_scale=REFINE_STRUCTURE_SCALE, structure_hold=REFINE_HOLD,
                           structure_bound=self._refine_bound(final_id) or 0.0)
        plan.status = status
        return self.service.submit(plan)

    def cancel(self) -> bool:
        """Stop the final render (before its next step) or the wait for the
        preview. Returns whether there was anything to stop."""
        if self.waiting_for_preview:
            self.waiting_for_preview = False
            self._end_final()
            self.say("Cancelled: the document is unchanged", "info")
            return True
        if self.final_job is not None:
            self.cancelling = True
            self.service.cancel(self.final_job)
            self.progress_changed.emit(self.progress_fraction, "Cancelling…")
            return True
        return False

    def on_job_started(self, job: Job, loading: str = "") -> None:
        if job is self.final_job:
            status = job.plan.status if job.plan is not None else ""
            text = f"{status}…" if status else "Refining the preview…" if self.refining else "Generating…"
            self.progress_changed.emit(0.0, f"Loading {loading}…" if loading else text)

    def on_job_progress(self, progress: JobProgress) -> None:
        if progress.job is not self.final_job or self.cancelling:
            return
        self.progress_fraction = progress.fraction
        self.progress_changed.emit(progress.fraction, progress_text(progress, self.refining))
        if progress.preview is not None:
            self.progress_image = progress.preview
            self.progress_preview.emit(progress.preview)
            self.overlay_changed.emit()

    def on_job_finished(self, job: Job) -> None:
        if job is not self.final_job:
            return
        if self.cancelling:  # it finished before the cancel reached it: the user said no
            self.on_job_cancelled(job)
            return
        self._end_final()
        self.staging.stage(job.images)
        n = len(job.images)
        seconds = f" in {job.render_time:.1f} s" if job.render_time is not None else ""
        self.say(f"{n} result{'s' if n != 1 else ''}{seconds}: Enter accepts, Esc discards", "info")

    def on_job_failed(self, job: Job) -> None:
        if job is not self.final_job:
            return
        self._end_final()
        self.say(job.error or "The generation failed", "error")
        self.poll()

    def on_job_cancelled(self, job: Job) -> None:
        if job is not self.final_job:
            return
        self._end_final()
        self.say("Cancelled: the document is unchanged", "info")
        self.poll()

    def _end_final(self) -> None:
        self.final_job = None
        self.cancelling = False
        self.waiting_for_preview = False
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
        """Add the current result as a new layer (one undo step); live holds
        until the inputs change, so nothing is drawn over the new layer."""
        if self.staging.current is None or self.document.stroke_active:
            return None
        layer = self.staging.accept()
        if layer is not None:
            self._hold = _Hold.NEXT
            self.live_image = None
            if self.live is not None:
                self.live.stop()
            self.say(f"Added the layer “{layer.name}” (Ctrl+Z removes it)", "info")
        self.overlay_changed.emit()
        return layer

    def discard(self) -> None:
        if self.staging.count:
            self.staging.discard()
            self.say("Discarded: the document is unchanged", "info")
        self.poll()

    # ------------------------------------------------------------- re-editing
    def load_settings(self, attributes: dict[str, str], *, new_seed: bool = False) -> EditRequest:
        """Take a generated layer's settings (prompt, seed, steps... and its frame).
        Raises ValueError for a layer without generation metadata."""
        loaded = request_from_attributes(attributes, self.request)
        frame = GenerationFrame.from_rect(loaded.frame)
        seed = self._rng.randrange(SEED_LIMIT) if new_seed else loaded.seed
        self.request = loaded.replace(frame=Rect(0, 0, GRID, GRID), mode=None, seed=seed, seed_locked=True,
                                      variations=1)
        self.set_frame(frame)
        self.request_changed.emit()
        return self.request

    def regenerate(self, mode: Optional[str]) -> Optional[Job]:
        """Run the loaded settings again as a normal generation in the layer's
        own mode (a txt2img layer is not turned into a prompt edit of itself)."""
        if self.busy or self.document.stroke_active:
            return None
        if not self._ensure_service(self._final_ids()):
            return None
        from .modes import EditMode

        request = self.current_request().replace(quality="final")
        if mode in {m.value for m in EditMode}:
            request = request.replace(mode=EditMode(mode))
        if self.live is not None:
            self.live.stop()
        self.staging.discard()
        self.refining = False
        self.final_job = flux_route.submit_final(self.service, self.document, request,
                                                 self._fill_model(request.final_model))
        self.progress_fraction = 0.0
        self.busy_changed.emit(True)
        self.progress_changed.emit(0.0, "Starting…")
        self.overlay_changed.emit()
        return self.final_job

    # ---------------------------------------------------------------- faults
    def say(self, text: str, level: str) -> None:
        if level == "error":
            self.last_error = text
        self.message.emit(text, level)

    def clear_error(self) -> None:
        """A user action after an error: the error has been read, take it away."""
        if self.last_error:
            self.last_error = ""
            self.message.emit("", "")

    def stop_work(self) -> None:
        if self.final_job is not None and self.service is not None:
            self.service.cancel(self.final_job)
        if self.busy:
            self._end_final()
        if self.live is not None:
            self.live.stop()
        self.live_image = None
