"""`python -m inference batch PROMPTS.txt --farm ADDRESS --out DIR`: one image per prompt line,
fanned out across the farm's workers, resumable.

Resuming: every item has a deterministic file name, `NNNN-<slug>-<seed>.png` (NNNN its number
among the non-empty lines), and a *key* — the SHA-256 of everything its pixels depend on (request
fields, model content hash, dtype, prediction type, torch thread count). `DIR/batch-manifest.json`
maps each finished file to its key and its own SHA-256; a rerun skips an item only when the file
is there, its bytes hash as recorded and the key is the same, so a changed prompt or setting, a
deleted or damaged file re-renders, and nothing else does. PNGs and the manifest are written with
`outputs.write_atomically` (O_EXCL temp + fsync + rename): a killed run leaves finished files and
a manifest that lists only them.

Prompt file: UTF-8 text, one prompt per line; blank lines are skipped. A line ending in
` #seed=N` renders with seed N; other lines use `--seed` + their number − 1.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from ..api import SEED_MAX, GenerationRequest
from ..errors import CancelledError, InferenceError
from ..outputs import write_atomically
from .client import Farm, FarmJobHandle
from .jobs import MAX_TEXT, FarmJob, FarmResult

MANIFEST = "batch-manifest.json"
MAX_MANIFEST_BYTES = 64 * 2**20
MAX_FILE_BYTES = 64 * 2**20  # a prompt file is text; a bigger one is surely something else
MAX_ITEMS = 100_000
_SEED_RE = re.compile(r"\s+#seed=(\d{1,20})\s*$")
_SLUG_RE = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class BatchItem:
    number: int  # 1-based, among the non-empty lines
    prompt: str
    seed: int

    @property
    def name(self) -> str:
        slug = _SLUG_RE.sub("-", self.prompt.lower()).strip("-")[:40].strip("-") or "prompt"
        return f"{self.number:04d}-{slug}-{self.seed}.png"


def read_prompts(path: str | os.PathLike[str], base_seed: int = 0) -> list[BatchItem]:
    """The items of a prompt file; InferenceError with one line for a missing, binary, oversized,
    non-UTF-8 or empty file, or a line too long for a farm job."""
    file = Path(path)
    try:
        size = file.stat().st_size
        if not file.is_file():
            raise InferenceError(f"{file}: not a file")
        if size > MAX_FILE_BYTES:
            raise InferenceError(f"{file}: {size / 2**20:.0f} MB is too big for a prompt file "
                                 f"(at most {MAX_FILE_BYTES // 2**20} MB)")
        data = file.read_bytes()
    except FileNotFoundError:
        raise InferenceError(f"{file}: no such file") from None
    except OSError as exc:
        raise InferenceError(f"{file}: cannot read: {exc.strerror or exc}") from None
    if b"\x00" in data:
        raise InferenceError(f"{file}: a binary file, not a text file of prompts")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InferenceError(f"{file}: not UTF-8 text (byte {exc.start})") from None
    items: list[BatchItem] = []
    for line_no, line in enumerate(text.splitlines(), 1):
        if len(line) > MAX_TEXT:
            raise InferenceError(f"{file}:{line_no}: a {len(line)}-character line; a prompt may have at most "
                                 f"{MAX_TEXT}")
        prompt = line.strip()
        if not prompt:
            continue
        number = len(items) + 1
        seed = (base_seed + number - 1) % (SEED_MAX + 1)
        match = _SEED_RE.search(prompt)
        if match:
            seed = int(match.group(1))
            if seed > SEED_MAX:
                raise InferenceError(f"{file}:{line_no}: #seed={seed} is above {SEED_MAX}")
            prompt = prompt[:match.start()].strip()
            if not prompt:
                raise InferenceError(f"{file}:{line_no}: a seed without a prompt")
        items.append(BatchItem(number, prompt, seed))
        if len(items) > MAX_ITEMS:
            raise InferenceError(f"{file}: more than {MAX_ITEMS} prompts")
    if not items:
        raise InferenceError(f"{file}: no prompts (one per line)")
    return items


def job_key(job: FarmJob) -> str:
    """What the item's pixels depend on, hashed: a changed prompt or setting gives another key."""
    request = {}
    for f in fields(GenerationRequest):
        value = getattr(job.request, f.name)
        if isinstance(value, np.ndarray):  # init images and masks (not used by batch; hashed all the same)
            value = hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest() + str(value.shape)
        request[f.name] = repr(value)
    extras = {name: (spec.content_hash if spec else None) for name, spec in (("vae", job.vae), ("unet", job.unet))}
    data = {"request": request, "model": job.model.content_hash, "dtype": job.model.dtype,
            "prediction_type": job.model.prediction_type, "threads": job.threads, **extras}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _file_hash(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


class Manifest:
    """`DIR/batch-manifest.json`: {file name: {"key": ..., "sha256": ...}} of the finished items."""

    def __init__(self, folder: Path):
        self.path = folder / MANIFEST
        self.entries: dict[str, dict] = {}
        self.note: str | None = None
        self._lock = threading.Lock()
        try:
            if self.path.stat().st_size > MAX_MANIFEST_BYTES:  # bounded memory: no batch writes one so big
                raise ValueError(f"larger than {MAX_MANIFEST_BYTES // 2**20} MB")
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            files = raw.get("files") if isinstance(raw, dict) else None
            if not isinstance(files, dict):
                raise TypeError("no 'files' table")
            self.entries = {name: entry for name, entry in files.items()
                            if isinstance(entry, dict) and isinstance(entry.get("key"), str)
                            and isinstance(entry.get("sha256"), str)}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError) as exc:  # a damaged manifest: start over, say so
            self.note = f"{self.path}: unreadable ({str(exc)[:80]}); rendering every item again"

    def finished(self, name: str, key: str) -> bool:
        entry = self.entries.get(name)
        return bool(entry and entry["key"] == key and _file_hash(self.path.parent / name) == entry["sha256"])

    def record(self, name: str, key: str, digest: str) -> None:
        with self._lock:
            self.entries[name] = {"key": key, "sha256": digest}
            text = json.dumps({"version": 1, "files": self.entries}, indent=1, sort_keys=True) + "\n"
            write_atomically(self.path, lambda handle: handle.write(text.encode("utf-8")))


def prepare_folder(out: str | os.PathLike[str]) -> Path:
    """The output folder, created if missing; one line if it is a file or cannot be written."""
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise InferenceError(f"--out {folder}: is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InferenceError(f"--out {folder}: cannot create the folder: {exc.strerror or exc}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InferenceError(f"--out {folder}: the folder is not writable")
    return folder


def room_for_workers(worker_cpus: float, worker_gpus: float, limit: int = 64) -> int:
    """How many farm workers the connected cluster has room for: a batch wants every CPU slot (or
    GPU) busy, where a single render wants one worker per node (the client's default)."""
    import ray

    count = 0
    for node in ray.nodes():
        if node.get("Alive"):
            resources = node.get("Resources", {})
            count += int(resources.get("GPU", 0) // worker_gpus) if worker_gpus else \
                int(resources.get("CPU", 0) // max(worker_cpus, 1e-3))
    return max(0, min(count, limit))


def connect(address: str | None, workers: int | None, *, worker_cpus: float, worker_gpus: float,
            local_runner) -> tuple[Farm, str | None]:
    """A farm with `workers` workers (None: `room_for_workers`), or a local one and the one-line
    reason (unreachable, no room, Ray missing) — generate's policy."""
    from .client import connect_or_local
    from .errors import FarmUnavailableError

    farm, notice = connect_or_local(address, allow_local=True, workers=0, worker_cpus=worker_cpus,
                                    worker_gpus=worker_gpus, local_runner=local_runner)
    if farm.address is None:
        return farm, notice
    try:
        count = workers if workers is not None else room_for_workers(worker_cpus, worker_gpus)
        if count < 1:
            raise FarmUnavailableError(f"render farm at {address}: no room for a worker of {worker_cpus:g} CPUs"
                                       + (f" and {worker_gpus:g} GPUs" if worker_gpus else ""))
        farm.add_workers(count, worker_cpus=worker_cpus, worker_gpus=worker_gpus)
    except FarmUnavailableError as exc:
        farm.close()
        return Farm.local(local_runner), f"{exc}; rendering locally"
    return farm, None


class SerialRunner:
    """A local runner that renders one job at a time: the farm's fall-back runs each job on its
    own thread, and one engine must not sample several jobs at once (nor would that be faster)."""

    def __init__(self, runner):
        self._runner = runner
        self._lock = threading.Lock()

    def __call__(self, job, progress, should_stop):
        with self._lock:
            if should_stop():
                raise CancelledError("render cancelled before it started")
            return self._runner(job, progress, should_stop)


@dataclass
class BatchOutcome:
    rendered: list[str]
    failed: list[tuple[str, str]]  # (file name, one line)
    cancelled: bool = False
    elapsed_s: float = 0.0


def run_batch(farm: Farm, work: Sequence[tuple[FarmJob, str, str]], folder: Path,
              save: Callable[[Path, FarmResult, FarmJob], None], manifest: Manifest, *,
              in_flight: int | None = None, on_done: Callable[[str, str | None], None] = lambda name, error: None,
              on_event: Callable[[object], None] = lambda event: None,
              should_stop: Callable[[], bool] = lambda: False) -> BatchOutcome:
    """Render `work` ((job, file name, key) triples) on `farm`, writing each image with `save` and
    recording it in `manifest` as it finishes. At most `in_flight` jobs are submitted at a time
    (default: two per worker, so each has its next job queued while it renders), each batch of
    new jobs fanned out with `Farm.submit_many`. A failed item is reported through `on_done` and
    the others go on; `should_stop` cancels everything still running."""
    started = time.perf_counter()
    limit = in_flight or max(2, 2 * len(farm.worker_names()) if farm.address else 1)
    pending = list(work)
    running: list[tuple[FarmJobHandle, str, str]] = []
    outcome = BatchOutcome([], [])
    while pending or running:
        if should_stop():
            for handle, _, _ in running:
                handle.cancel()
            for handle, _, _ in running:
                try:
                    handle.result(60)
                except BaseException:  # noqa: BLE001, S110 - cancelled or failed: nothing to keep
                    pass
            outcome.cancelled = True
            break
        if pending and len(running) < limit:
            batch, pending = pending[:limit - len(running)], pending[limit - len(running):]
            handles = farm.submit_many([job for job, _, _ in batch])
            running += [(handle, name, key) for handle, (_, name, key) in zip(handles, batch)]
        still = []
        for handle, name, key in running:
            events, ended = handle.pending_events(0.0)
            for event in events:
                on_event(event)
            if not ended:
                still.append((handle, name, key))
                continue
            try:
                result = handle.result()
                path = folder / name
                save(path, result, handle.job)
                digest = _file_hash(path)
                if digest is None:
                    raise InferenceError(f"{path}: written but cannot be read back")
                manifest.record(name, key, digest)
                outcome.rendered.append(name)
                on_done(name, None)
            except CancelledError:
                still_stopping = should_stop()
                if not still_stopping:
                    outcome.failed.append((name, "cancelled"))
                    on_done(name, "cancelled")
            except Exception as exc:  # noqa: BLE001 - one item's failure: one line, the others go on
                line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
                outcome.failed.append((name, line))
                on_done(name, line)
        running = still
        if running:
            time.sleep(0.05)
    outcome.elapsed_s = time.perf_counter() - started
    return outcome


__all__ = ["MANIFEST", "BatchItem", "BatchOutcome", "Manifest", "SerialRunner", "connect", "job_key",
           "prepare_folder", "read_prompts", "room_for_workers", "run_batch"]
