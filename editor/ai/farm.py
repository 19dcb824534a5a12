"""Final renders and variations on the Ray render farm, Qt-free.

Three parts, all driven from the generation service's worker thread except where noted:

* :class:`RenderQueue` — the jobs sent through the farm (queued, running, done, failed,
  cancelled; step/total, worker, the last notice). A UI panel observes ``changed`` (emitted on
  any thread: relay it) and cancels a job with :meth:`RenderQueue.cancel` (any thread).
* :class:`FarmLink` — one per window: the setting (``render_on``, ``farm_address``), the Ray
  connection (made on the first farm render, kept while it works, so models stay loaded on the
  workers), the fall-back to local rendering when the cluster is unreachable or loses its workers
  (one notice per episode), and the facts the status bar shows (:meth:`FarmLink.status`).
* :class:`FarmEngine` — a drop-in for the editor's engine (:class:`editor.ai.engine.Engine`): it
  wraps the local engine and sends ``generate`` of the *final* models to the farm when the link
  is on, with their separate VAE / UNet files if any; ``generate_many`` sends a plan's variations
  at once, fanned out across the workers. The live preview's model (the resident one) always
  renders here.

Pixels: the request travels unchanged (``inference.api.GenerationRequest``), the workers draw
noise with the CPU generator like the local engine and render with this process's torch thread
count, so the same seed gives the same image, bit for bit, as a local render on the same kind of
device. Security: only the configured address is contacted (the
farm client ignores ``RAY_ADDRESS`` and auto-discovery); see the README's farm section.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

from editor.document.signals import Signal
from inference.api import GenerationRequest, GenerationResult
from inference.errors import CancelledError, InferenceError
from inference.farm import api as farm_api

log = logging.getLogger(__name__)

RENDER_ON = ("local", "farm")
RETRY_S = 60.0  # after a fall-back, try the cluster again on the first render after this long
KEEP_FINISHED = 20  # finished jobs the queue keeps for the panel
PREVIEW_EVERY_S = 0.5  # intermediate images from a worker: at most two a second over the network


class RenderState(str, Enum):
    # The same names as editor.ai.service.JobState (which imports torch; this module must not).
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


_entry_ids = itertools.count(1)


@dataclass(eq=False)
class QueuedRender:
    title: str
    id: int = field(default_factory=lambda: next(_entry_ids))
    state: RenderState = RenderState.QUEUED
    step: int = 0
    total: int = 0
    worker: str = ""  # "w0"…, or "local" when it fell back to this machine
    message: str = ""  # the last notice or the error, one line
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def finished(self) -> bool:
        return self.state in (RenderState.DONE, RenderState.FAILED, RenderState.CANCELLED)

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    @property
    def fraction(self) -> float:
        return 1.0 if self.state is RenderState.DONE else self.step / self.total if self.total else 0.0


class RenderQueue:
    """The farm's jobs for a UI to list: ``changed(entry)`` after every change (any thread)."""

    def __init__(self) -> None:
        self.changed = Signal("changed")
        self._lock = threading.Lock()
        self._entries: list[QueuedRender] = []

    def entries(self) -> list[QueuedRender]:
        with self._lock:
            return list(self._entries)

    def pending(self) -> int:
        """Jobs queued or running (the status bar's queue length)."""
        with self._lock:
            return sum(1 for e in self._entries if not e.finished)

    def get(self, entry_id: int) -> Optional[QueuedRender]:
        with self._lock:
            return next((e for e in self._entries if e.id == entry_id), None)

    def add(self, title: str) -> QueuedRender:
        entry = QueuedRender(title)
        with self._lock:
            self._entries.append(entry)
            finished = [e for e in self._entries if e.finished]
            for old in finished[:max(0, len(finished) - KEEP_FINISHED)]:
                self._entries.remove(old)
        self._emit(entry)
        return entry

    def update(self, entry: QueuedRender, **changes: Any) -> None:
        if entry.finished:  # a late event (a cancelled job's last poll) must not revive it
            return
        for name, value in changes.items():
            setattr(entry, name, value)
        self._emit(entry)

    def cancel(self, entry_id: int) -> bool:
        """Ask the job to stop (it stops before its next step); False if it already ended."""
        entry = self.get(entry_id)
        if entry is None or entry.finished:
            return False
        entry._cancel.set()
        self._emit(entry)
        return True

    def _emit(self, entry: QueuedRender) -> None:
        try:
            self.changed.emit(entry)
        except Exception:  # noqa: BLE001 - a faulty observer must not break a render
            log.exception("render queue observer failed")


# --------------------------------------------------------------------------- the connection
@dataclass(frozen=True)
class FarmStatus:
    enabled: bool
    address: str = ""
    state: str = "off"  # off, idle (connects on the next render), connecting, connected, fallback
    workers: int = 0
    gpus: int = 0
    queued: int = 0
    message: str = ""  # the fall-back's reason


def status_text(status: FarmStatus) -> str:
    """The status bar's line ("" when the farm is off)."""
    if not status.enabled:
        return ""
    if status.state == "fallback":
        return "Farm unreachable — rendering here"
    queue = f" · {status.queued} in queue" if status.queued else ""
    if status.state == "connected":
        gpus = f" · {status.gpus} GPU{'s' if status.gpus != 1 else ''}" if status.gpus else " · CPU only"
        return f"Farm {status.address} · {status.workers} worker{'s' if status.workers != 1 else ''}{gpus}{queue}"
    if status.state == "connecting":
        return f"Farm {status.address}: connecting…{queue}"
    return f"Farm {status.address}{queue}"


class FarmLink:
    """The window's render farm: settings, connection, fall-back, queue and status.

    ``connect_kwargs`` go to the farm client's ``Farm.connect`` (``token``, ``workers``,
    ``worker_cpus``, ``worker_gpus``, ``cache_dir``, ``timeout_s``…). ``notice(text)`` and
    ``status_changed(FarmStatus)`` are emitted on the render thread: relay them to the UI.
    """

    def __init__(self, render_on: str = "local", address: str = "", *, queue: Optional[RenderQueue] = None,
                 retry_s: float = RETRY_S, preview_every_s: Optional[float] = PREVIEW_EVERY_S,
                 clock: Callable[[], float] = time.monotonic, **connect_kwargs: Any) -> None:
        self.queue = queue or RenderQueue()
        self.retry_s = retry_s
        self.preview_every_s = preview_every_s
        self.connect_kwargs = {"timeout_s": 3.0, **connect_kwargs}
        self.notices: list[str] = []
        self.notice = Signal("notice")
        self.status_changed = Signal("status_changed")
        self._clock = clock
        self._lock = threading.RLock()
        self._render_lock = threading.Lock()  # one connect at a time (two windows' engines could race)
        self._farm: Any = None  # farm_api.Farm; address None when it fell back to local-only
        self._farm_address: tuple[str, float] = ("", 0.0)  # what the current farm was connected with
        self._state = "off"
        self._fallback_reason = ""
        self._fallback_at = 0.0
        self._facts = (0, 0)  # workers, GPUs
        self.render_on, self.address, self.worker_gpus = "local", "", 0.0
        self.queue.changed.connect(lambda _e: self._emit_status())
        self.configure(render_on, address, float(connect_kwargs.get("worker_gpus", 0.0)))

    # ------------------------------------------------------------ settings (UI thread)
    @property
    def enabled(self) -> bool:
        return self.render_on == "farm" and bool(self.address)

    def configure(self, render_on: str, address: str, worker_gpus: float = 0.0) -> None:
        """Take the settings; a changed address (or GPUs per worker) is connected on the next farm
        render (never here: connecting can take seconds). An invalid address turns the farm off
        (the settings dialog refuses one, so only a hand-edited settings file gets here)."""
        try:
            address = farm_api.check_address(address) if address.strip() else ""
        except farm_api.FarmUnavailableError as exc:
            log.warning("%s", exc)
            address = ""
        with self._lock:
            changed = address != self.address or worker_gpus != self.worker_gpus
            self.render_on = render_on if render_on in RENDER_ON else "local"
            self.address, self.worker_gpus = address, worker_gpus
            self.connect_kwargs["worker_gpus"] = worker_gpus
            if changed:
                self._fallback_reason, self._fallback_at = "", 0.0
            self._state = ("idle" if self._farm is None or changed else self._state) if self.enabled else "off"
        self._emit_status()

    def status(self) -> FarmStatus:
        with self._lock:
            workers, gpus = self._facts
            return FarmStatus(self.enabled, self.address, self._state if self.enabled else "off", workers, gpus,
                              self.queue.pending(), self._fallback_reason)

    def _emit_status(self) -> None:
        try:
            self.status_changed.emit(self.status())
        except Exception:  # noqa: BLE001 - observers must not break a render
            log.exception("farm status observer failed")

    def _say(self, message: str, entry: Optional[QueuedRender] = None) -> None:
        self.notices.append(message)
        log.warning("%s", message)
        if entry is not None:
            self.queue.update(entry, message=message)
        try:
            self.notice.emit(message)
        except Exception:  # noqa: BLE001 - observers must not break a render
            log.exception("farm notice observer failed")

    # ------------------------------------------------------------ connection (render thread)
    def _connected(self, local_runner, entry: QueuedRender):
        """The farm to submit to: the cluster, or a local-only farm while it is unreachable (then
        retried after ``retry_s``). The first fall-back of an episode is said once."""
        with self._lock:
            farm, address = self._farm, self.address
            stale = farm is not None and self._farm_address != (address, self.worker_gpus)
            retry = (farm is not None and farm.address is None
                     and self._clock() - self._fallback_at >= self.retry_s)
        # Workers that died between renders need no check here: the job then falls back on its own
        # (with the client's notice) and _after_job switches to local rendering until the retry.
        if farm is not None and not (stale or retry):
            return farm
        if farm is not None:
            self._close_farm()
        with self._lock:
            self._state = "connecting"
        self.queue.update(entry, message=f"Connecting to the render farm at {address}…")
        with self._lock:
            kwargs = dict(self.connect_kwargs)
        farm, reason = farm_api.connect_or_local(address, allow_local=True, local_runner=local_runner, **kwargs)
        facts = (0, 0)
        if farm.address is not None:
            facts = self._describe(farm)
        with self._lock:
            self._farm, self._farm_address, self._facts = farm, (address, self.worker_gpus), facts
            said = bool(self._fallback_reason)
            if reason:
                self._state, self._fallback_at = "fallback", self._clock()
                self._fallback_reason = reason
            else:
                self._state, self._fallback_reason = "connected", ""
        if reason and not said:
            self._say(f"Render farm: {reason}", entry)
        self._emit_status()
        return farm

    @staticmethod
    def _describe(farm) -> tuple[int, int]:
        """(workers, GPUs) of a connected farm, for the status bar."""
        try:
            facts = farm.describe()
        except Exception:  # noqa: BLE001 - diagnostics only
            return len(farm.worker_names()), 0
        return len(facts), sum(1 for f in facts.values() if str(f.get("device", "")).startswith("cuda"))

    def _after_job(self, farm, handle) -> None:
        """A job that lost its last worker rendered here: render here until the retry (reconnecting
        at once would wait minutes for workers that may never start), and show the fall-back."""
        if farm.address is not None and handle.worker == "local":
            self._close_farm()
            with self._lock:
                self._farm = farm_api.Farm.local(farm.local_runner)
                self._state, self._fallback_at = "fallback", self._clock()
                self._fallback_reason = handle.notices[-1] if handle.notices else "the farm lost its workers"
        elif farm.address is not None:
            with self._lock:
                self._facts = (len(farm.worker_names()), self._facts[1])
        self._emit_status()

    def _close_farm(self) -> None:
        with self._lock:
            farm, self._farm = self._farm, None
            self._facts = (0, 0)
        if farm is not None:
            try:
                farm.close()
            except Exception:  # noqa: BLE001 - a dead cluster cannot be closed cleanly
                log.debug("closing the farm failed", exc_info=True)

    def close(self) -> None:
        """Cancel farm jobs, stop this editor's workers, disconnect (window closing)."""
        for entry in self.queue.entries():
            self.queue.cancel(entry.id)
        self._close_farm()
        with self._lock:
            self._state = "idle" if self.enabled else "off"

    # ------------------------------------------------------------ renders (render thread)
    def render(self, request: GenerationRequest, model: "farm_api.ModelSpec", local_generate,
               progress: Optional[Callable[[int, int, object], None]] = None,
               should_stop: Optional[Callable[[], bool]] = None, *, vae: Optional["farm_api.ModelSpec"] = None,
               unet: Optional["farm_api.ModelSpec"] = None) -> GenerationResult:
        """Render ``request`` on the farm (or here, on a fall-back) with queue entry and notices.
        ``local_generate(request, progress, should_stop)`` renders here; ``vae``/``unet`` are the
        model's separate files, if any. Raises CancelledError when stopped (from ``should_stop``
        or the queue's Cancel), InferenceError on failure."""
        return self.render_many([request], model, local_generate, lambda _index: progress, should_stop,
                                vae=vae, unet=unet)[0]

    def render_many(self, requests: list[GenerationRequest], model: "farm_api.ModelSpec", local_generate,
                    progress_for: Optional[Callable[[int], Optional[Callable[[int, int, object], None]]]] = None,
                    should_stop: Optional[Callable[[], bool]] = None, *, vae: Optional["farm_api.ModelSpec"] = None,
                    unet: Optional["farm_api.ModelSpec"] = None) -> list[GenerationResult]:
        """Render ``requests`` (variations of one model) at once, fanned out across the workers;
        the results in request order. ``progress_for(i)`` is request i's progress callback.

        They are one job for the editor: Cancel (``should_stop``, or the queue's Cancel on any of
        their entries) stops them all, and the first failure cancels the others and is raised as
        its one line. Local renders (a fall-back) take turns: the local engine runs one at a time."""
        entries = [self.queue.add(_title(request)) for request in requests]
        stop = should_stop or (lambda: False)

        def stopped() -> bool:
            return stop() or any(entry.cancel_requested for entry in entries)

        latents: dict[str, object] = {}  # job id → the newest latents of a local fall-back
        here = threading.Lock()

        def run_here(job, job_progress, job_stop):
            def relay(step: int, total: int, lat) -> None:
                latents[job.job_id] = lat  # decoded by the caller's preview, like a local render
                job_progress(step, total, lat)

            with here:
                if job_stop():
                    raise CancelledError("render cancelled before it started")
                return local_generate(job.request, relay, job_stop)

        failed: Optional[int] = None
        try:
            with self._render_lock:
                if stopped():
                    raise CancelledError("render cancelled before it started")
                farm = self._connected(run_here, entries[0])
                if stopped():
                    raise CancelledError("render cancelled before it started")
            farm.local_runner = run_here  # this render's model and callbacks on a fall-back
            jobs = [farm_api.FarmJob(request, model, preview_every_s=self.preview_every_s, vae=vae, unet=unet,
                                     threads=farm_api.local_threads()) for request in requests]
            handles = [farm.submit(jobs[0])] if len(jobs) == 1 else farm.submit_many(jobs)
            progress = [progress_for(index) if progress_for else None for index in range(len(handles))]
            failure = self._follow(handles, entries, progress, latents, stopped)
            self._after_jobs(farm, handles)
            if failure is not None:
                failed = failure[0]
                raise failure[1]
            results = [handle.result() for handle in handles]
        except CancelledError:
            for entry in entries:
                self.queue.update(entry, state=RenderState.CANCELLED)
            raise
        except InferenceError as exc:
            self._failed(entries, failed, _one_line(exc))
            raise
        except Exception as exc:  # noqa: BLE001 - the service reports it; the queue shows it too
            self._failed(entries, failed, f"{type(exc).__name__}: {_one_line(exc)}")
            raise
        if stopped():  # finished just as Cancel arrived: the user said no
            for entry in entries:
                self.queue.update(entry, state=RenderState.CANCELLED)
            raise CancelledError("render cancelled")
        out = []
        for entry, result in zip(entries, results):
            self.queue.update(entry, state=RenderState.DONE, worker=result.worker,
                              step=entry.total or entry.step, message=entry.message)
            out.append(GenerationResult(result.image, result.seed, None, {**result.info, "farm_worker": result.worker}))
        return out

    def _follow(self, handles: list, entries: list[QueuedRender], progress: list, latents: dict,
                stopped: Callable[[], bool]) -> Optional[tuple[Optional[int], BaseException]]:
        """Relay the handles' events until all have ended; cancel them all on a stop or on the
        first failure. Returns (index, error) of that failure, (None, CancelledError) after a
        stop, or None when all rendered."""
        live = list(range(len(handles)))
        failure: Optional[tuple[Optional[int], BaseException]] = None
        cancelled = False
        while live:
            for position, index in enumerate(list(live)):
                handle, entry = handles[index], entries[index]
                # Wait on one handle at a time (0.1 s), so a stop is seen within about that long.
                events, ended = handle.pending_events(0.1 if position == 0 else 0.0)
                for event in events:
                    if isinstance(event, farm_api.Notice):
                        self._say(event.message, entry)
                    elif isinstance(event, farm_api.Progress) and event.total:
                        self.queue.update(entry, state=RenderState.RUNNING, step=event.step, total=event.total,
                                          worker=event.worker)
                        if progress[index] is not None:
                            shown = (_Preview(event.preview) if event.preview is not None
                                     else latents.pop(handle.job.job_id, None) if event.worker == "local" else None)
                            progress[index](event.step, event.total, shown)
                if ended:
                    live.remove(index)
                    error = None if failure is not None or cancelled else _error_of(handle)
                    if error is not None:
                        failure = (index, error)
            if not cancelled and (failure is not None or stopped()):
                cancelled = True
                for handle in handles:
                    handle.cancel()
        if failure is None and (cancelled or stopped()):
            return None, CancelledError("render cancelled")
        return failure

    def _failed(self, entries: list[QueuedRender], failed: Optional[int], message: str) -> None:
        """The failed variation's entry says why; its siblings were cancelled because of it."""
        for index, entry in enumerate(entries):
            if failed is None or index == failed:
                self.queue.update(entry, state=RenderState.FAILED, message=message)
            else:
                self.queue.update(entry, state=RenderState.CANCELLED, message="cancelled: another variation failed")

    def _after_jobs(self, farm, handles: list) -> None:
        """`_after_job` for a group: a fall-back to local rendering in any of them counts."""
        local = next((h for h in handles if h.worker == "local"), None)
        self._after_job(farm, local or handles[-1])


def _error_of(handle) -> Optional[BaseException]:
    """A finished handle's error other than a cancel, or None."""
    try:
        handle.result()
    except CancelledError:
        return None
    except Exception as exc:  # noqa: BLE001 - inspected here, raised by the caller
        return exc
    return None


def _title(request: GenerationRequest) -> str:
    prompt = " ".join(request.prompt.split()) or "(no prompt)"
    prompt = prompt if len(prompt) <= 48 else prompt[:47] + "…"
    return f"{prompt} · seed {request.seed}"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


class _Preview:
    """A worker's intermediate image passed where the service expects latents: ``FarmEngine.
    preview_image`` hands it back as is (it was decoded on the worker)."""

    __slots__ = ("rgb",)

    def __init__(self, rgb) -> None:
        self.rgb = rgb


# --------------------------------------------------------------------------- the engine adapter
class FarmEngine:
    """The editor's engine with final renders routed to ``link`` when it is on.

    Everything but ``generate``/``generate_many``/``ensure_loaded``/``preview_image`` goes to the local engine
    unchanged (``set_models``, ``loaded``, ``unload``, ``models``… through ``__getattr__``), so
    the controller's catalog code works on it as on a TorchEngine.
    """

    def __init__(self, local, link: FarmLink) -> None:
        self.local = local
        self.link = link
        self._specs: dict[tuple, Any] = {}  # (path, dtype) → farm ModelSpec (hashing reads the files)

    def __getattr__(self, name: str):
        if name in ("local", "link", "_specs"):
            raise AttributeError(name)
        return getattr(self.local, name)

    # ------------------------------------------------------------ routing
    def routes(self, model_id: str) -> bool:
        """Whether ``generate(model_id, …)`` goes to the farm now: the link is on and the model
        is a final one (the resident live-preview model never is). A separate VAE or UNet file
        travels with the model, by content hash like it."""
        if not self.link.enabled:
            return False
        spec = getattr(self.local, "models", {}).get(model_id)
        return spec is not None and not spec.resident

    def _farm_specs(self, model_id: str) -> tuple[Any, Any, Any]:
        """(model, VAE, UNet) farm specs of a model id (hashing reads the files once per path)."""
        spec = self.local.models[model_id]
        return (self._hashed(spec.path, spec.dtype),
                self._hashed(spec.vae_path) if spec.vae_path else None,
                self._hashed(spec.unet_path) if spec.unet_path else None)

    def _hashed(self, path, dtype: Optional[str] = None):
        key = (str(path), dtype)
        if key not in self._specs:
            self._specs[key] = farm_api.ModelSpec.for_path(str(path), dtype=dtype)
        return self._specs[key]

    # ------------------------------------------------------------ Engine protocol
    def native_resolution(self, model_id: str) -> int:
        return self.local.native_resolution(model_id)

    def model_label(self, model_id: str) -> str:
        return self.local.model_label(model_id)

    def unet_in_channels(self, model_id: str) -> int:
        return self.local.unet_in_channels(model_id)

    def ensure_loaded(self, model_id: str) -> None:
        if not self.routes(model_id):  # a farm render loads the model on a worker, not here
            self.local.ensure_loaded(model_id)

    def generate(self, model_id: str, request: GenerationRequest, progress=None, should_stop=None) -> GenerationResult:
        if not self.routes(model_id):
            return self.local.generate(model_id, request, progress, should_stop)
        model, vae, unet = self._farm_specs(model_id)
        return self.link.render(request, model, self._here(model_id), progress, should_stop, vae=vae, unet=unet)

    def generate_many(self, model_id: str, requests: list[GenerationRequest],
                      progress_for: Callable[[int], Optional[Callable[[int, int, object], None]]],
                      should_stop: Optional[Callable[[], bool]] = None) -> list[GenerationResult]:
        """All of a plan's requests (its variations) at once: fanned out across the farm's
        workers when the model routes there, else one after another here. Results in request
        order; a stop cancels them all; the first failure fails them all (one line)."""
        if not self.routes(model_id):
            results = []
            for index, request in enumerate(requests):
                if should_stop is not None and should_stop():
                    raise CancelledError("cancelled")
                results.append(self.local.generate(model_id, request, progress_for(index), should_stop))
            return results
        model, vae, unet = self._farm_specs(model_id)
        return self.link.render_many(list(requests), model, self._here(model_id), progress_for, should_stop,
                                     vae=vae, unet=unet)

    def _here(self, model_id: str) -> Callable[..., GenerationResult]:
        def here(request, progress, should_stop) -> GenerationResult:
            return self.local.generate(model_id, request, progress, should_stop)

        return here

    def preview_image(self, model_id: str, latents):
        if isinstance(latents, _Preview):
            return latents.rgb
        return self.local.preview_image(model_id, latents)


def farm_engine_factory(link: FarmLink, base: Callable[[dict, str], object]) -> Callable[[dict, str], object]:
    """An engine factory (as ``AIController(engine_factory=…)`` takes) whose engines route final
    renders through ``link``; ``base`` builds the local engine."""

    def build(specs: dict, device: str) -> FarmEngine:
        return FarmEngine(base(specs, device), link)

    build.farm_link = link  # type: ignore[attr-defined] - lets a caller see it is wrapped already
    return build

