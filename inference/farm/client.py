"""The farm client: connect to the configured Ray cluster, start workers, place and run jobs.

    farm = Farm.connect("10.0.0.5:6379", allow_local=True)      # one-line FarmUnavailableError if not
    handle = farm.submit(FarmJob(request, ModelSpec.for_path(model)))
    for event in handle.events():                                 # Progress / Notice, until the end
        ...
    result = handle.result()                                      # FarmResult, or CancelledError/FarmError
    handles = farm.submit_variations(job, seeds=[1, 2, 3, 4])     # fanned out across workers
    handles = farm.submit_many([job_a, job_b])                    # any jobs of one model, likewise

Security: we connect only to the address given (RAY_ADDRESS and "auto" discovery are ignored),
and only after a plain TCP check with a short timeout. A Ray cluster runs whatever code its
clients send, so it must stay on a trusted network (see the README). Models travel only as
`.safetensors`/JSON/text bytes checked against SHA-256 and read by the engine's strict parser;
results are checked for shape, dtype, size and seed before anyone sees them.

Every job is driven by one thread of its handle: place (scheduler) → make sure the worker has
the model (ship it chunk by chunk through Ray's object store when missing, never again once its
hash is cached) → submit → long-poll progress. If the worker dies (actor error, or no answer for
`poll_timeout_s`), the job is placed again without that worker — or rendered locally when
allowed — and the user gets one `Notice` line about it.
"""
from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import CancelledError, InferenceError
from .connection import (NAMESPACE, _connect_environment, _first_line, _init_with_deadline,  # noqa: F401
                         _refuse_address_rewrite, _same_address, check_reachable, parse_address)
from .errors import FarmError, FarmUnavailableError
from .jobs import (FarmJob, FarmResult, ModelSpec, Notice, Progress, job_to_dict, model_to_dict, progress_from_dict,
                   result_from_dict)
from .models import iter_chunks, model_manifest
from .scheduler import WorkerState, fan_out, place

log = logging.getLogger(__name__)
_END = object()

LocalRunner = Callable[[FarmJob, Callable[[int, int, object], None], Callable[[], bool]], Any]


class _WorkerLost(Exception):
    """The worker stopped answering or died; the job may be retried elsewhere."""


@dataclass
class _Worker:
    name: str
    actor: Any
    alive: bool = True
    node: str = ""


class DefaultLocalRunner:
    """Renders a farm job with a local `Engine` (created on first use unless one is given)."""

    def __init__(self, engine=None, device: str = "cpu"):
        self._engine = engine
        self._device = device

    def __call__(self, job: FarmJob, progress, should_stop):
        from ..engine import Engine, ModelRef

        if self._engine is None:
            self._engine = Engine(device=self._device)
        ref = ModelRef(job.model.path, vae_path=job.vae.path if job.vae else None,
                       unet_path=job.unet.path if job.unet else None, dtype=job.model.dtype,
                       prediction_type=job.model.prediction_type)
        return self._engine.generate(ref, job.request, progress, should_stop)


def local_threads() -> int | None:
    """This process's torch thread count, for `FarmJob.threads` (a worker then renders with as many,
    so its pixels equal a local render's bit for bit); None when torch is not loaded here."""
    torch = sys.modules.get("torch")
    return int(torch.get_num_threads()) if torch is not None else None


class Farm:
    def __init__(self, address: str | None = None, *, allow_local: bool = False,
                 local_runner: LocalRunner | None = None, owns_ray: bool = False,
                 poll_timeout_s: float = 30.0, call_timeout_s: float = 600.0):
        self.address = address
        self.allow_local = allow_local
        self.local_runner = local_runner or DefaultLocalRunner()
        self.poll_timeout_s = poll_timeout_s  # a worker silent this long is treated as lost
        self.call_timeout_s = call_timeout_s  # model checks and uploads (hashing GBs takes a while)
        self.transfers: list[dict] = []  # one entry per model shipped to a worker
        self._workers: dict[str, _Worker] = {}
        self._owns_ray = owns_ray
        self._lock = threading.Lock()
        self._ship_locks: dict[tuple[str, str], threading.Lock] = {}
        self._counter = 0
        self._handles: list[FarmJobHandle] = []

    # ------------------------------------------------------------------ connecting
    @classmethod
    def connect(cls, address: str, *, token: str | None = None, timeout_s: float = 5.0,
                workers: int | None = None, worker_cpus: float = 1.0, worker_gpus: float = 0.0,
                cache_dir: str | None = None, shared_roots: Sequence[str] = (), device: str = "auto",
                worker_start_timeout_s: float = 120.0, allow_local: bool = False,
                local_runner: LocalRunner | None = None) -> Farm:
        """Connect to the Ray cluster at `address` (its head's GCS port, 6379 by default) and start
        `workers` farm workers (default: one per node with `worker_cpus` CPUs, or per GPU when
        `worker_gpus` is set). Raises FarmUnavailableError with one line when that fails."""
        scheme, host, port = parse_address(address)
        check_reachable(host, port, timeout_s)
        try:
            import ray
        except ImportError:
            raise FarmUnavailableError("the render farm needs Ray: pip install 'ray==2.60.0'") from None
        if scheme == "ray":
            try:
                import grpc  # noqa: F401 - Ray Client's transport
            except ImportError:
                raise FarmUnavailableError("ray:// addresses need Ray Client: pip install 'ray[client]==2.60.0'") \
                    from None
        target = f"{'ray://' if scheme else ''}{host}:{port}"
        owns = False
        if ray.is_initialized():
            current = ray.get_runtime_context().gcs_address
            if not _same_address(current, f"{host}:{port}"):
                raise FarmError(f"already connected to the Ray cluster at {current}; close that farm first")
        else:
            _refuse_address_rewrite(host)
            with _connect_environment(timeout_s, token):
                _init_with_deadline(ray, target, f"{host}:{port}", max(15.0, 3 * timeout_s))
            owns = True
        farm = cls(f"{host}:{port}", allow_local=allow_local, local_runner=local_runner, owns_ray=owns)
        try:
            count = workers if workers is not None else _default_worker_count(worker_cpus, worker_gpus)
            farm.add_workers(count, worker_cpus=worker_cpus, worker_gpus=worker_gpus, cache_dir=cache_dir,
                             shared_roots=shared_roots, device=device, timeout_s=worker_start_timeout_s)
        except BaseException:
            farm.close()
            raise
        return farm

    @classmethod
    def local(cls, local_runner: LocalRunner | None = None) -> Farm:
        """A farm without a cluster: every job renders locally, through the same handle API."""
        return cls(None, allow_local=True, local_runner=local_runner)

    def add_workers(self, count: int, *, worker_cpus: float = 1.0, worker_gpus: float = 0.0,
                    cache_dir: str | None = None, shared_roots: Sequence[str] = (), device: str = "auto",
                    timeout_s: float = 120.0) -> list[str]:
        """Start `count` workers (spread across nodes); the names of those that came up in time."""
        import ray

        from .worker import FarmWorker

        actor_class = ray.remote(FarmWorker)
        started = []
        for _ in range(count):
            with self._lock:
                name = f"w{self._counter}"
                self._counter += 1
            actor = actor_class.options(num_cpus=worker_cpus, num_gpus=worker_gpus, max_concurrency=16,
                                        max_restarts=0, max_task_retries=0, scheduling_strategy="SPREAD") \
                .remote(name, cache_dir, tuple(shared_roots), device)
            started.append(_Worker(name, actor))
        refs = [w.actor.describe.remote() for w in started]
        ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
        up = []
        for worker, ref in zip(started, refs):
            try:
                facts = ray.get(ref, timeout=0.01)
            except Exception:  # noqa: BLE001 - did not start in time (no room on the cluster, import error…)
                facts = None
            if facts is None:
                ray.kill(worker.actor)
                continue
            worker.node = str(facts.get("node", ""))
            with self._lock:
                self._workers[worker.name] = worker
            up.append(worker.name)
        if count and not up:
            raise FarmUnavailableError(f"render farm at {self.address}: no worker started within {timeout_s:.0f} s "
                                       f"(does the cluster have {worker_cpus:g} free CPUs per worker?)")
        return up

    def __enter__(self) -> Farm:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Cancel running jobs, stop this farm's workers and disconnect."""
        for handle in list(self._handles):
            handle.cancel()
        if self.address is None:
            return
        import ray

        with self._lock:
            workers = list(self._workers.values())
            self._workers.clear()
        for worker in workers:
            try:
                ray.kill(worker.actor)
            except Exception:  # noqa: BLE001 - already gone
                pass
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()

    # ------------------------------------------------------------------ state
    def worker_names(self) -> list[str]:
        with self._lock:
            return [name for name, worker in self._workers.items() if worker.alive]

    def actor(self, name: str):
        """The Ray actor handle of a worker (diagnostics and tests)."""
        return self._workers[name].actor

    def describe(self, exclude: Sequence[str] = (), timeout_s: float = 5.0) -> dict[str, dict]:
        """Fresh facts from each live worker; a worker whose actor died is marked dead."""
        import ray

        with self._lock:
            workers = [w for w in self._workers.values() if w.alive and w.name not in exclude]
        refs = {w.name: w.actor.describe.remote() for w in workers}
        ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout_s)
        facts = {}
        for name, ref in refs.items():
            try:
                facts[name] = ray.get(ref, timeout=0.01)
            except ray.exceptions.RayActorError:
                self._mark_dead(name)
            except Exception:  # noqa: BLE001 - slow to answer: skip it this time
                continue
        return facts

    def snapshot(self, exclude: Sequence[str] = ()) -> list[WorkerState]:
        return [WorkerState(name, int(f["busy"]), frozenset((h, tuple(loras)) for h, loras in f["loaded"]),
                            frozenset(f["cached"]))
                for name, f in self.describe(exclude).items()]

    def _mark_dead(self, name: str) -> None:
        with self._lock:
            if name in self._workers:
                self._workers[name].alive = False

    # ------------------------------------------------------------------ jobs
    def submit(self, job: FarmJob, *, worker: str | None = None) -> FarmJobHandle:
        """Start `job` (placed by the scheduler unless `worker` names one); returns at once."""
        job_to_dict(job)  # refuse an unserialisable job here, in the caller's thread
        handle = FarmJobHandle(self, job, worker)
        self._handles = [h for h in self._handles if not h.done()] + [handle]
        return handle

    def submit_variations(self, job: FarmJob, seeds: Sequence[int]) -> list[FarmJobHandle]:
        """One job per seed, fanned out across the workers (scheduler.fan_out)."""
        return self.submit_many([replace(job, request=replace(job.request, seed=int(seed)), job_id=f"{job.job_id}-{i}")
                                 for i, seed in enumerate(seeds)])

    def submit_many(self, jobs: Sequence[FarmJob]) -> list[FarmJobHandle]:
        """Jobs of one model (the editor's variations), fanned out across the workers so they run in
        parallel (scheduler.fan_out); one handle per job, in order. A lost worker's job is placed
        again on its own, like a single job's."""
        if not jobs:
            return []
        for job in jobs:
            job_to_dict(job)  # refuse an unserialisable job before any starts
        names: list[str | None] = [None] * len(jobs)
        if self.address is not None:
            try:
                names = fan_out(jobs[0].key, len(jobs), self.snapshot())
            except FarmUnavailableError:
                pass  # each handle then falls back (or fails) on its own
        return [self.submit(j, worker=name) for j, name in zip(jobs, names)]

    def ensure_model(self, name: str, job: FarmJob) -> list[str]:
        """Make sure worker `name` has the job's model, VAE, UNet and LoRA files, shipping what it
        lacks; one of 'loaded', 'cached', 'shared' or 'shipped' per file."""
        return [self._ensure(name, spec) for spec in job.files()]

    def _ensure(self, name: str, spec: ModelSpec) -> str:
        actor = self._workers[name].actor
        status = self._call(actor.model_status.remote(model_to_dict(spec)), self.call_timeout_s)
        if status != "missing":
            return status
        with self._lock:
            lock = self._ship_locks.setdefault((name, spec.content_hash), threading.Lock())
        with lock:  # two variations on one worker: one upload
            status = self._call(actor.model_status.remote(model_to_dict(spec)), self.call_timeout_s)
            if status != "missing":
                return status
            manifest = model_manifest(spec.path)
            if manifest.content_hash != spec.content_hash:
                raise FarmError(f"{spec.name} changed on disk since the job was made; start the render again")
            root = Path(spec.path)
            upload = self._call(actor.begin_model.remote(spec.content_hash, manifest.to_dict()), self.call_timeout_s)
            try:
                pending = []
                for entry in manifest.entries:
                    file = root if manifest.kind == "file" else root / entry.path
                    for offset, block in iter_chunks(file):
                        # Each chunk goes through the object store; a few in flight bound the memory.
                        pending.append(actor.write_chunk.remote(upload, entry.path, offset, block))
                        if len(pending) >= 4:
                            self._call(pending.pop(0), self.call_timeout_s)
                for ref in pending:
                    self._call(ref, self.call_timeout_s)
                self._call(actor.finish_model.remote(upload), self.call_timeout_s)
            except (InferenceError, OSError):
                actor.abort_model.remote(upload)  # the worker drops the partial upload (best effort)
                raise
            with self._lock:
                self.transfers.append({"worker": name, "model": spec.content_hash, "bytes": manifest.total_bytes})
            return "shipped"

    def _call(self, ref, timeout_s: float):
        """ray.get with worker death and silence turned into _WorkerLost, and a worker-side error
        re-raised as itself (one line), not as Ray's wrapper with a remote traceback."""
        import ray

        try:
            return ray.get(ref, timeout=timeout_s)
        except ray.exceptions.RayActorError as exc:
            raise _WorkerLost(_first_line(exc)) from None
        except ray.exceptions.GetTimeoutError:
            raise _WorkerLost(f"no answer for {timeout_s:.0f} s") from None
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if isinstance(exc.cause, BaseException) else None
            if isinstance(cause, InferenceError):
                raise type(cause)(_first_line(cause)) from None
            raise FarmError(f"farm worker error: {_first_line(cause or exc)}") from None


def _default_worker_count(worker_cpus: float, worker_gpus: float) -> int:
    import ray

    count = 0
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        resources = node.get("Resources", {})
        if worker_gpus:
            count += int(resources.get("GPU", 0) // worker_gpus)
        elif resources.get("CPU", 0) >= worker_cpus:
            count += 1
    return count


class FarmJobHandle:
    """A submitted job: `events()` (Progress and Notice, in order), `cancel()`, `result()`."""

    def __init__(self, farm: Farm, job: FarmJob, preferred: str | None = None):
        self.farm = farm
        self.job = job
        self.notices: list[str] = []
        self.worker: str | None = None  # where it runs now ("local" when rendered here)
        self.attempts: list[str] = []
        self.cancel_info: dict = {}  # cancel_step / stopped_step reported by the worker
        self._preferred = preferred
        self._events: queue.Queue = queue.Queue()
        self._cancel = threading.Event()
        self._done = threading.Event()
        self._result: FarmResult | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drive, name=f"farm-job-{job.job_id[:8]}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ caller side
    def events(self, timeout_s: float | None = None) -> Iterator[Progress | Notice]:
        """Progress and notices until the job ends (then call `result()`)."""
        while True:
            event = self._events.get(timeout=timeout_s)
            if event is _END:
                self._events.put(_END)  # a second iteration ends at once too
                return
            yield event

    def pending_events(self, timeout_s: float = 0.0) -> tuple[list[Progress | Notice], bool]:
        """(events queued so far, whether the job has ended), waiting up to `timeout_s` for the first;
        for callers that must also watch something else (a Ctrl+C flag, a UI event loop)."""
        events, ended = [], False
        try:
            event = self._events.get(timeout=timeout_s) if timeout_s > 0 else self._events.get_nowait()
            while True:
                if event is _END:
                    self._events.put(_END)
                    ended = True
                    break
                events.append(event)
                event = self._events.get_nowait()
        except queue.Empty:
            pass
        return events, ended

    def cancel(self) -> None:
        """Stop the job: the worker stops before its next step; nothing is returned."""
        self._cancel.set()
        worker = self.worker
        if worker and worker != "local" and self.farm.address is not None:
            try:
                self.farm.actor(worker).cancel.remote(self.job.job_id)
            except Exception:  # noqa: BLE001 - the worker is gone; the job thread notices
                pass

    def done(self) -> bool:
        return self._done.is_set()

    def result(self, timeout_s: float | None = None) -> FarmResult:
        if not self._done.wait(timeout_s):
            raise TimeoutError(f"farm job {self.job.job_id} still running after {timeout_s} s")
        if self._error is not None:
            raise self._error
        return self._result

    # ------------------------------------------------------------------ the job thread
    def _drive(self) -> None:
        try:
            self._result = self._run()
        except BaseException as exc:  # noqa: BLE001 - handed to result()
            self._error = exc
        finally:
            self._done.set()
            self._events.put(_END)

    def _notice(self, message: str) -> None:
        self.notices.append(message)
        self._events.put(Notice(self.job.job_id, message))
        log.warning("%s", message)

    def _run(self) -> FarmResult:
        farm = self.farm
        if farm.address is None:
            return self._run_local()
        lost: list[str] = []
        preferred = self._preferred
        while True:
            if self._cancel.is_set():
                raise CancelledError("render cancelled before it started")
            try:
                states = farm.snapshot(lost)
                names = {s.name for s in states}
                name = preferred if preferred in names else place(self.job.key, states, lost)
            except FarmUnavailableError as exc:
                if farm.allow_local:
                    self._notice(f"Render farm: {_first_line(exc)}; rendering locally")
                    return self._run_local()
                raise
            preferred = None
            try:
                return self._run_on(name)
            except _WorkerLost as exc:
                farm._mark_dead(name)
                lost.append(name)
                where = self._next_place(lost)
                step = f" at step {self._last_step[0]}/{self._last_step[1]}" if self._last_step[1] else ""
                self._notice(f"Render farm: worker {name} was lost{step} ({exc}); "
                             + (f"retrying on {where}" if where else
                                "rendering locally" if farm.allow_local else "no other worker is available"))
                if where is None and not farm.allow_local:
                    raise FarmUnavailableError(f"render farm worker {name} was lost ({exc}) and no other "
                                               "worker is available") from None
                preferred = where
                if where is None:
                    return self._run_local()

    def _next_place(self, lost: list[str]) -> str | None:
        try:
            return place(self.job.key, self.farm.snapshot(lost), lost)
        except FarmUnavailableError:
            return None

    _last_step = (0, 0)

    def _run_on(self, name: str) -> FarmResult:
        farm, job = self.farm, self.job
        actor = farm.actor(name)
        self._last_step = (0, 0)
        farm.ensure_model(name, job)
        if self._cancel.is_set():
            raise CancelledError("render cancelled before it started")
        self.worker = name
        self.attempts.append(name)
        farm._call(actor.submit.remote(job_to_dict(job)), farm.call_timeout_s)
        if self._cancel.is_set():  # cancelled while submitting: make sure the worker hears it
            actor.cancel.remote(job.job_id)
        seq, seen_preview = -1, -1
        while True:
            reply = farm._call(actor.poll.remote(job.job_id, seq, seen_preview, 0.5), farm.poll_timeout_s)
            state = reply.get("state")
            if state == "unknown":
                raise _WorkerLost("the worker no longer knows the job")
            if reply["seq"] != seq and state in ("running", "done"):
                progress = progress_from_dict(reply["progress"], job, name)
                if progress.preview is not None:
                    seen_preview = int(reply["preview_step"])
                if progress.total:
                    self._last_step = (progress.step, progress.total)
                    self._events.put(progress)
            seq = reply["seq"]
            if state == "done":
                return result_from_dict(reply["result"], job)
            if state == "failed":
                raise FarmError(f"render farm worker {name}: {str(reply.get('error'))[:300]}")
            if state == "cancelled":
                self.cancel_info = {"cancel_step": reply.get("cancel_step"), "stopped_step": reply.get("stopped_step"),
                                    "total": reply["progress"]["total"]}
                raise CancelledError(f"render cancelled on {name} after step {reply.get('stopped_step') or 0}")

    def _run_local(self) -> FarmResult:
        job = self.job
        self.worker = "local"
        self.attempts.append("local")

        def progress(step: int, total: int, _latents) -> None:
            self._events.put(Progress(job.job_id, step, total, "local"))

        started = time.perf_counter()
        output = self.farm.local_runner(job, progress, self._cancel.is_set)
        info = {key: value for key, value in getattr(output, "info", {}).items()
                if isinstance(value, (str, int, float, bool))}
        info.update(prompt=job.request.prompt, seed=job.request.seed, model=job.model.name,
                    model_hash=job.model.content_hash, worker="local",
                    elapsed_s=round(time.perf_counter() - started, 3))
        return FarmResult(job.job_id, output.image, output.seed, "local", info)


def connect_or_local(address: str | None, **kwargs) -> tuple[Farm, str | None]:
    """`Farm.connect(address, **kwargs)`, or a local-only farm and the one-line reason."""
    runner = kwargs.get("local_runner")
    if not address:
        return Farm.local(runner), None
    try:
        return Farm.connect(address, **kwargs), None
    except FarmUnavailableError as exc:
        return Farm.local(runner), f"{exc}; rendering locally"


def render(address: str | None, job: FarmJob, *, on_event: Callable[[Progress | Notice], None] | None = None,
           should_stop: Callable[[], bool] | None = None, allow_local: bool = True, **connect_kwargs) -> FarmResult:
    """Connect, run one job, disconnect (the CLI's `--farm`): events go to `on_event`, including a
    Notice when the farm is unreachable and the job renders locally; `should_stop` cancels."""
    if allow_local:
        farm, notice = connect_or_local(address, allow_local=True, **connect_kwargs)
    else:
        farm, notice = Farm.connect(address, **connect_kwargs), None
    with farm:
        if notice and on_event is not None:
            on_event(Notice(job.job_id, notice))
        handle = farm.submit(job)
        ended = False
        while not ended:
            events, ended = handle.pending_events(0.1)
            for event in events:
                if on_event is not None:
                    on_event(event)
            if should_stop is not None and should_stop():
                handle.cancel()
        return handle.result()
