"""Where a farm job runs: a pure placement rule over worker snapshots (no Ray, no I/O).

One job goes to a worker that already has its model loaded (InvokeAI's multi-GPU rule: loading a
model costs more than waiting for one render), the least busy of those, preferring one whose
merged LoRA set is already the job's (switching LoRAs re-merges weights but never reloads); with
none loaded, to the least busy worker, preferring one that has the model (and its VAE / UNet files)
cached on disk (a load without a transfer). A model key is (load id, LoRA content hashes in order),
the load id naming the model and any separate VAE / UNet file (jobs.load_id).

Variations of one request fan out: each goes where it would start soonest, counting the
variations already placed, with a loaded model, then a cached one, as tie-breakers — so N
variations on N idle workers run in parallel rather than queueing behind the one that has the
model (for several jobs the parallelism outweighs the extra loads).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .errors import FarmUnavailableError
from .jobs import ModelKey, load_id_files


@dataclass(frozen=True)
class WorkerState:
    name: str
    busy: int = 0  # jobs queued or running on the worker
    loaded: frozenset = field(default_factory=frozenset)  # ModelKeys held in memory
    cached: frozenset = field(default_factory=frozenset)  # content hashes on the worker's disk
    alive: bool = True


def _has_model(worker: WorkerState, key: ModelKey) -> bool:
    """The worker holds the key's model (with the same VAE / UNet files) in memory, any LoRA set."""
    return any(loaded[0] == key[0] for loaded in worker.loaded)


def _has_files(worker: WorkerState, key: ModelKey) -> bool:
    """The worker has every file of the key's model on disk (no transfer needed)."""
    return all(digest in worker.cached for digest in load_id_files(key[0]))


def _candidates(workers: Iterable[WorkerState], exclude: Iterable[str]) -> list[WorkerState]:
    excluded = set(exclude)
    usable = [w for w in workers if w.alive and w.name not in excluded]
    if not usable:
        raise FarmUnavailableError("no render-farm worker is available")
    return usable


def place(key: ModelKey, workers: Sequence[WorkerState], exclude: Iterable[str] = ()) -> str:
    """The worker for one job needing model `key`."""
    usable = _candidates(workers, exclude)
    loaded = [w for w in usable if _has_model(w, key)]
    if loaded:
        return min(loaded, key=lambda w: (w.busy, key not in w.loaded, w.name)).name
    return min(usable, key=lambda w: (w.busy, not _has_files(w, key), w.name)).name


def fan_out(key: ModelKey, count: int, workers: Sequence[WorkerState], exclude: Iterable[str] = ()) -> list[str]:
    """Workers for `count` variations (one name per variation, in order)."""
    usable = _candidates(workers, exclude)
    projected = {w.name: w.busy for w in usable}
    names = []
    for _ in range(count):
        chosen = min(usable, key=lambda w: (projected[w.name], not _has_model(w, key), key not in w.loaded,
                                            not _has_files(w, key), w.name))
        projected[chosen.name] += 1
        names.append(chosen.name)
    return names
