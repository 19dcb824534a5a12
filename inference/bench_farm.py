"""Bench case `farm-batch`: render-farm batch throughput with 1 and 2 local workers, same run.

A local Ray head (inference/farm/local.py, 127.0.0.1 only) with 2 CPU slots; the house model at
128², 20 steps; each job renders on one torch thread, so one worker uses one core and the two
configurations compare like 1 vs 2 machines. Each timed run is one `run_batch` (the CLI `batch`
path: `submit_many` fan-out, PNG encode + atomic write + manifest) of a few images; the first
batch after each worker starts is a warm-up that also ships the model to it (timed separately,
as the capacity model's "first job per worker"). Reported: images/s medians and their ratio,
and the parts the README's capacity model is built from.
"""
from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def bench_farm_batch(quick: bool, runs: int, log: Callable[[str], None] = print):
    """A bench.CaseResult, or None (with one log line) when Ray or the house model is missing."""
    from .bench import CaseResult, _percentile
    from .cli import house_model_path

    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # before Ray's import: stay on 127.0.0.1
    try:
        import ray  # noqa: F401
    except ImportError:
        log("bench: farm-batch skipped: Ray is not installed (the farm extra: pip install -e '.[farm]')")
        return None
    model = house_model_path()
    if not (model / "model_index.json").is_file():
        return None
    from .api import GenerationRequest
    from .farm.batch import Manifest, run_batch
    from .farm.client import Farm
    from .farm.jobs import FarmJob, ModelSpec
    from .farm.local import _free_port, start_head

    images, runs = (4, min(runs, 3)) if quick else (8, min(runs, 5))
    spec = ModelSpec.for_path(str(model))
    saves: list[float] = []
    renders: list[float] = []

    def save(path: Path, result, job) -> None:
        from PIL import Image

        from .outputs import write_atomically

        started = time.perf_counter()
        write_atomically(path, lambda handle: Image.fromarray(result.image).save(handle, format="PNG"))
        saves.append(time.perf_counter() - started)
        renders.append(float(result.info.get("elapsed_s", 0.0)))

    def batch(farm: Farm, count: int, folder: Path) -> float:
        folder.mkdir()
        work = []
        for i in range(count):
            request = GenerationRequest(prompt=f"a house by a lake at sunset, view {i}", seed=i, steps=20,
                                        sampler="euler", guidance=5.0, width=128, height=128)
            work.append((FarmJob(request, spec, preview_every_s=None, threads=1), f"{i:04d}.png", str(i)))
        outcome = run_batch(farm, work, folder, save, Manifest(folder))
        if outcome.failed:
            raise RuntimeError(f"farm-batch: {outcome.failed[0][0]}: {outcome.failed[0][1]}")
        return outcome.elapsed_s

    head = start_head(2, _free_port())
    scratch = Path(tempfile.mkdtemp(prefix="farm-bench-"))
    try:
        farm = Farm.connect(head.address, token=head.token, workers=1, worker_cpus=1,
                            cache_dir=str(scratch / "cache" / "{worker}"), timeout_s=10)
        with farm:
            per_config: dict[int, list[float]] = {}
            render_s: dict[int, float] = {}
            first_job: list[float] = []
            for workers in (1, 2):
                if workers == 2:
                    farm.add_workers(1, worker_cpus=1, cache_dir=str(scratch / "cache" / "{worker}"))
                first_job.append(batch(farm, workers, scratch / f"warm{workers}"))  # ships + loads the model
                saves.clear()
                renders.clear()
                per_config[workers] = [images / batch(farm, images, scratch / f"w{workers}-{run}")
                                       for run in range(runs)]
                render_s[workers] = statistics.median(renders)  # the worker's own time per image
                if workers == 1:  # one job alone: its end-to-end time minus its render is the farm's
                    renders.clear()  # per-job cost (placement, submit, polls, result, PNG, manifest)
                    alone = [batch(farm, 1, scratch / f"alone-{run}") for run in range(runs)]
                    overhead = statistics.median(t - r for t, r in zip(alone, renders))
                log(f"bench: farm-batch: {workers} worker(s): {statistics.median(per_config[workers]):.2f} images/s")
            shipped = farm.transfers[0]["bytes"] if farm.transfers else 0
    finally:
        head.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    one, two = statistics.median(per_config[1]), statistics.median(per_config[2])
    per_image_ms = [1000.0 / rate for rate in per_config[2]]
    result = CaseResult("farm-batch", "cpu", "float32", "128x128", 20, statistics.median(per_image_ms),
                        _percentile(per_image_ms, 90), runs,
                        note=f"{images} images/batch, house model, 1 thread per job; images/s 1 worker {one:.2f}, "
                             f"2 workers {two:.2f} (x{two / one:.2f}); median_ms is per image with 2 workers")
    # Extra fields for the README's capacity model (CaseResult.to_json reports every attribute).
    result.images_per_s_1_worker = round(one, 3)
    result.images_per_s_2_workers = round(two, 3)
    result.ratio_2_vs_1 = round(two / one, 3)
    result.worker_render_s_median = {f"{n}_worker": round(render_s[n], 3) for n in render_s}
    # In a batch this cost overlaps the renders (two jobs in flight per worker); alone it shows.
    result.overhead_s_per_job_alone = round(overhead, 3)
    result.client_save_ms_median = round(1000 * statistics.median(saves), 2) if saves else None
    result.first_job_s = [round(t, 2) for t in first_job]  # per config: model shipping + load + one render
    result.model_bytes_shipped = shipped
    return result
