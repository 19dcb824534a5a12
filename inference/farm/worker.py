"""The farm worker: a Ray actor around one `inference.engine.Engine`.

The class is plain Python (the client wraps it with `ray.remote`; tests may drive it directly).
Jobs run one at a time on the worker's own thread, in arrival order, as the engine expects;
every other method returns at once or within a short wait, so the actor runs *threaded*
(`max_concurrency`) and a `cancel` or `poll` is served while a render is in progress.

Progress goes back by **actor-method polling** (`poll`, a long-poll: it returns as soon as
something changed, or after `wait_s`), not a Ray queue, because:
- the render never waits on the client: a slow or stalled editor cannot back-pressure the
  sampler (a bounded queue would block it, an unbounded one would grow with previews);
- previews coalesce: the worker keeps only the newest, so a slow link gets fewer, never stale ones;
- no extra actor: a `ray.util.queue.Queue` is an actor of its own (a process to start, and one
  more thing that can die separately from the worker);
- a poll that fails *is* the worker-death signal the client retries on, with no second channel.

Cancel sets a flag the sampler reads before every step (`should_stop`), so a render stops within
one step of the flag arriving. Models — and a job's separate VAE / UNet files and LoRAs — are found
by content hash: in memory (`loaded`), in the content-addressed disk cache (shipped earlier,
verified), or in a shared library folder this worker was configured with (the path the client
sent, if its content hashes the same). What is loaded is keyed by the job's load id (model + VAE +
UNet hashes), so base+vaeA in memory is never used for base+vaeB.

A job may carry the client's torch thread count; it then renders with that many threads (see
`_torch_threads`) so its pixels match the client's local render bit for bit.
"""
from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import CancelledError, InferenceError
from .errors import FarmError
from .jobs import FarmJob, FarmResult, ModelSpec, job_from_dict, load_id_files, model_from_dict, result_to_dict
from .models import ModelCache, manifest_from_dict, resolve_shared

log = logging.getLogger(__name__)
KEEP_FINISHED = 64  # finished jobs kept for a late poll


def default_cache_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("canvasai")) / "farm"


@dataclass
class _JobState:
    job: FarmJob
    state: str = "queued"  # queued, running, done, failed, cancelled
    seq: int = 0
    step: int = 0
    total: int = 0
    preview: object = None
    preview_step: int = -1
    result: dict | None = None
    error: str | None = None
    cancel_requested: bool = False
    cancel_step: int | None = None  # the step reported when the cancel arrived
    stopped_step: int | None = None  # the last step completed before stopping
    finished_at: float = 0.0


class FarmWorker:
    def __init__(self, name: str, cache_dir: str | None = None, shared_roots: tuple[str, ...] = (),
                 device: str = "auto"):
        from ..engine import Engine

        self.name = name
        # "{worker}" in the folder gives each worker of one machine its own cache (tests, or
        # several workers per node that should not share disk).
        self.cache = ModelCache(cache_dir.replace("{worker}", name) if cache_dir else default_cache_dir())
        self.shared_roots = tuple(str(root) for root in shared_roots)
        self.device = _pick_device(device)
        self.engine = Engine(device=self.device)
        self._cond = threading.Condition()
        self._jobs: dict[str, _JobState] = {}
        self._queue: queue.Queue[str] = queue.Queue()
        self._refs: dict[str, object] = {}  # load id → ModelRef (stable, so loads are reused)
        self._active_loras: dict[str, tuple[str, ...]] = {}  # load id → LoRA hashes last merged
        self.stats = {"models_received": 0, "bytes_received": 0, "jobs_done": 0, "shared_hits": 0}
        threading.Thread(target=self._run_loop, name=f"farm-{name}", daemon=True).start()

    # ------------------------------------------------------------------ facts
    def describe(self) -> dict:
        loaded = sorted([ref.tag, list(self._active_loras.get(ref.tag, ()))] for ref in self.engine.loaded())
        with self._cond:
            busy = sum(1 for st in self._jobs.values() if st.state in ("queued", "running"))
        return {"name": self.name, "device": self.device, "busy": busy, "loaded": loaded,
                "cached": self.cache.cached(), "stats": dict(self.stats), "node": _node_address()}

    def model_status(self, spec_dict: dict) -> str:
        """'loaded', 'cached', 'shared' or 'missing' for a model, VAE, UNet or LoRA file spec."""
        spec = model_from_dict(spec_dict)
        if any(spec.content_hash in load_id_files(ref.tag) for ref in self.engine.loaded()):
            return "loaded"
        if self.cache.lookup(spec.content_hash) is not None:
            return "cached"
        if resolve_shared(spec.path, spec.content_hash, self.shared_roots) is not None:
            return "shared"
        return "missing"

    # ------------------------------------------------------------------ model uploads
    def begin_model(self, digest: str, manifest: dict) -> str:
        return self.cache.begin(digest, manifest_from_dict(manifest))

    def write_chunk(self, upload_id: str, rel: str, offset: int, data: bytes) -> int:
        written = self.cache.write(upload_id, rel, offset, data)
        self.stats["bytes_received"] += written
        return written

    def finish_model(self, upload_id: str) -> str:
        path = self.cache.finish(upload_id)
        self.stats["models_received"] += 1
        return path.name

    def abort_model(self, upload_id: str) -> None:
        self.cache.abort(upload_id)

    # ------------------------------------------------------------------ jobs
    def submit(self, job_dict: dict) -> int:
        """Queue a job (validated here, on arrival); the number of jobs ahead of it."""
        job = job_from_dict(job_dict)
        with self._cond:
            existing = self._jobs.get(job.job_id)
            if existing is not None and existing.state in ("queued", "running"):
                raise FarmError(f"job {job.job_id} is already on worker {self.name}")
            ahead = sum(1 for st in self._jobs.values() if st.state in ("queued", "running"))
            self._jobs[job.job_id] = _JobState(job)
            self._forget_old()
        self._queue.put(job.job_id)
        return ahead

    def cancel(self, job_id: str) -> bool:
        with self._cond:
            st = self._jobs.get(job_id)
            if st is None or st.state not in ("queued", "running"):
                return False
            st.cancel_requested = True
            st.cancel_step = st.step
            if st.state == "queued":
                self._finish(st, "cancelled")
            self._cond.notify_all()
            return True

    def poll(self, job_id: str, seen_seq: int = -1, seen_preview: int = -1, wait_s: float = 0.5) -> dict:
        """The job's state once it differs from `seen_seq`, or after `wait_s` seconds."""
        with self._cond:
            st = self._jobs.get(job_id)
            if st is None:
                return {"state": "unknown", "seq": -1}
            if st.seq <= seen_seq and st.state in ("queued", "running"):
                self._cond.wait(timeout=max(0.0, min(float(wait_s), 5.0)))
            reply = {"state": st.state, "seq": st.seq, "progress": {"step": st.step, "total": st.total},
                     "preview_step": st.preview_step, "result": st.result, "error": st.error,
                     "cancel_step": st.cancel_step, "stopped_step": st.stopped_step}
            if st.preview is not None and st.preview_step > seen_preview:
                reply["progress"]["preview"] = st.preview
            return reply

    # ------------------------------------------------------------------ the render thread
    def _run_loop(self) -> None:
        while True:
            job_id = self._queue.get()
            with self._cond:
                st = self._jobs.get(job_id)
                if st is None or st.state != "queued":
                    continue
                st.state = "running"
                st.seq += 1
                self._cond.notify_all()
            try:
                result = self._render(st)
            except CancelledError:
                with self._cond:
                    st.stopped_step = st.step
                    self._finish(st, "cancelled")
            except InferenceError as exc:
                with self._cond:
                    st.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    self._finish(st, "failed")
            except Exception as exc:  # noqa: BLE001 - reported to the client as one line, logged here
                log.exception("farm job %s failed", job_id)
                with self._cond:
                    first = str(exc).splitlines()[0] if str(exc) else ""
                    st.error = f"worker {self.name}: {type(exc).__name__}: {first}"
                    self._finish(st, "failed")
            else:
                with self._cond:
                    st.result = result
                    self.stats["jobs_done"] += 1
                    self._finish(st, "done")

    def _render(self, st: _JobState) -> dict:
        job = st.job
        ref = self._model_ref(job)
        started = time.perf_counter()
        interval = job.preview_every_s
        last_preview = [-1e9]

        def progress(step: int, total: int, latents) -> None:
            preview = None
            now = time.perf_counter()
            if interval is not None and latents is not None and step < total and now - last_preview[0] >= interval:
                preview = self.engine.preview_image(ref, latents)
                last_preview[0] = now
            with self._cond:
                st.step, st.total = step, total
                if preview is not None:
                    st.preview, st.preview_step = preview, step
                st.seq += 1
                self._cond.notify_all()

        def should_stop() -> bool:
            return st.cancel_requested

        request = job.request
        if request.loras:  # the request names LoRAs by hash: use this worker's verified copies
            by_hash = {model.content_hash: model for model in job.loras()}
            request = dataclasses.replace(request, loras=tuple(
                dataclasses.replace(spec, path=str(self._local_path(by_hash[spec.path]))) for spec in request.loras))
        with _torch_threads(job.threads):
            threads = _threads()
            output = self.engine.generate(ref, request, progress, should_stop)
        self._active_loras[ref.tag] = job.key[1]
        request = job.request
        info = {key: value for key, value in output.info.items() if isinstance(value, (str, int, float, bool))}
        info.update(prompt=request.prompt, negative_prompt=request.negative_prompt, seed=request.seed,
                    steps=request.steps, sampler=request.sampler, guidance=float(request.guidance),
                    width=request.width, height=request.height, strength=float(request.strength),
                    model=job.model.name, model_hash=job.model.content_hash, worker=self.name, threads=threads,
                    device=self.device, elapsed_s=round(time.perf_counter() - started, 3))
        info.update({f"{part}_file": spec.name for part, spec in (("vae", job.vae), ("unet", job.unet)) if spec})
        return result_to_dict(FarmResult(job.job_id, output.image, output.seed, self.name, info))

    def _model_ref(self, job: FarmJob):
        """The engine's key for the job's model with its VAE / UNet files, reused while its files
        are still there (the same ModelRef finds the loaded pipeline)."""
        from ..engine import ModelRef

        spec, ident = job.model, job.load_id
        ref = self._refs.get(ident)
        if ref is not None and (ref.dtype, ref.prediction_type) == (spec.dtype, spec.prediction_type) \
                and all(Path(path).exists() for path in (ref.path, ref.vae_path, ref.unet_path) if path is not None):
            return ref
        vae = str(self._local_path(job.vae)) if job.vae else None
        unet = str(self._local_path(job.unet)) if job.unet else None
        ref = ModelRef(str(self._local_path(spec)), vae_path=vae, unet_path=unet, dtype=spec.dtype,
                       prediction_type=spec.prediction_type, tag=ident)
        self._refs[ident] = ref
        return ref

    def _local_path(self, spec: ModelSpec) -> Path:
        """A model, VAE, UNet or LoRA file by content: from the verified cache, else the shared library."""
        path = self.cache.lookup(spec.content_hash)
        if path is None:
            path = resolve_shared(spec.path, spec.content_hash, self.shared_roots)
            if path is not None:
                self.stats["shared_hits"] += 1
        if path is None:
            raise FarmError(f"{spec.name} ({spec.content_hash[:12]}) is not on farm worker {self.name}")
        return path

    def _finish(self, st: _JobState, state: str) -> None:
        st.state = state
        st.seq += 1
        st.finished_at = time.monotonic()
        if state != "done":
            st.preview = None
        self._cond.notify_all()

    def _forget_old(self) -> None:
        finished = sorted((st.finished_at, job_id) for job_id, st in self._jobs.items()
                          if st.state not in ("queued", "running"))
        for _, job_id in finished[:max(0, len(finished) - KEEP_FINISHED)]:
            del self._jobs[job_id]


def _threads() -> int:
    import torch

    return int(torch.get_num_threads())


@contextmanager
def _torch_threads(count: int | None) -> Iterator[None]:
    """Run the job with the client's torch thread count, then put the worker's own back.

    The trade-off: bit-identical pixels over CPU efficiency. A worker holding one CPU of its node
    (Ray sets its OMP_NUM_THREADS to its CPU share) still runs a 4-thread client's job on 4 threads,
    oversubscribing the node when its other workers are busy too: slower, never wrong. Set on this,
    the render thread: with OpenMP the count is per calling thread."""
    if count is None:
        yield
        return
    import torch

    own = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(own)


def _pick_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _node_address() -> str:
    """The IP of the node this worker runs on, for messages ('' outside Ray)."""
    try:
        import ray

        return ray.util.get_node_ip_address() if ray.is_initialized() else ""
    except Exception:  # noqa: BLE001 - diagnostics only
        return ""
