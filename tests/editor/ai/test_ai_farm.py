"""The editor's render-farm adapter (editor.ai.farm), Qt-free.

The queue model, the unreachable-cluster fall-back and the variations' failure/cancel rules need
no Ray. The rest runs on a real Ray head on 127.0.0.1 (token auth, stopped at the end; the same
`_Head` helper as tests/inference/farm/test_farm_ray.py) with two one-CPU workers and the bundled
house model: a final render through the farm gives exactly the local (two-thread) pixels,
variations run in parallel on both workers, each equal to its local render, and Cancel (the
session's or the queue panel's) ends the job with no result and the document unchanged.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import socket
import threading
import time
from pathlib import Path
from typing import Optional

import numpy as np
import pytest

from editor.ai.engine import FakeEngine
from editor.ai.farm import (FarmEngine, FarmLink, FarmStatus, RenderQueue, RenderState, farm_engine_factory,
                            status_text)
from inference.api import GenerationRequest
from inference.errors import CancelledError

HOUSE = Path(__file__).resolve().parents[3] / "assets" / "house"
REQUEST = GenerationRequest(prompt="a red house by a lake", seed=1234, steps=4, sampler="euler_a", guidance=3.0,
                            width=64, height=64)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- the queue model (no Ray)
def test_queue_model_transitions_and_cancel():
    queue = RenderQueue()
    seen: list[tuple[int, str]] = []
    queue.changed.connect(lambda e: seen.append((e.id, e.state.value)))
    job = queue.add("a house · seed 1")
    assert job.state is RenderState.QUEUED and queue.pending() == 1 and job.fraction == 0.0
    queue.update(job, state=RenderState.RUNNING, step=2, total=8, worker="w0")
    assert job.fraction == 0.25 and queue.pending() == 1
    queue.update(job, state=RenderState.DONE, step=8)
    assert job.finished and job.fraction == 1.0 and queue.pending() == 0
    queue.update(job, state=RenderState.RUNNING, step=3)  # a late progress report does not revive it
    assert job.state is RenderState.DONE and not queue.cancel(job.id)  # nothing left to cancel
    other = queue.add("a boat · seed 2")
    assert queue.cancel(other.id) and other.cancel_requested and other.state is RenderState.QUEUED
    queue.update(other, state=RenderState.CANCELLED)
    assert [s for i, s in seen if i == job.id] == ["queued", "running", "done"]
    assert [s for i, s in seen if i == other.id] == ["queued", "queued", "cancelled"]
    for n in range(30):  # finished jobs are kept for the panel, up to a limit
        queue.update(queue.add(f"job {n}"), state=RenderState.DONE)
    assert len(queue.entries()) == 21 and queue.entries()[-1].title == "job 29"


def test_status_text():
    assert status_text(FarmStatus(False)) == ""
    assert status_text(FarmStatus(True, "10.0.0.5:6379", "idle")) == "Farm 10.0.0.5:6379"
    assert status_text(FarmStatus(True, "10.0.0.5:6379", "connected", 3, 2, 1)) == \
        "Farm 10.0.0.5:6379 · 3 workers · 2 GPUs · 1 in queue"
    assert status_text(FarmStatus(True, "h:1", "connected", 1, 0)) == "Farm h:1 · 1 worker · CPU only"
    assert status_text(FarmStatus(True, "h:1", "fallback")) == "Farm unreachable — rendering here"


def test_link_settings_validation():
    link = FarmLink("farm", " 10.0.0.5:6379 ")
    assert link.enabled and link.address == "10.0.0.5:6379" and link.status().state == "idle"
    link.configure("farm", "10.0.0.5")  # not HOST:PORT: the farm is off (the dialog refuses it)
    assert not link.enabled and link.status().state == "off"
    link.configure("cloud", "h:1")
    assert link.render_on == "local" and not link.enabled


class _FakeHandle:
    """A farm job handle as the client gives it (events, then a result)."""

    def __init__(self, job, worker: str, notices: list[str]):
        self.job, self.worker, self.notices = job, worker, notices
        self._sent = False

    def pending_events(self, timeout_s: float = 0.0):
        from inference.farm.api import Notice, Progress

        if self._sent:
            return [], True
        self._sent = True
        return [*(Notice(self.job.job_id, n) for n in self.notices), Progress(self.job.job_id, 4, 4, self.worker)], True

    def cancel(self) -> None:
        pass

    def result(self):
        from inference.farm.api import FarmResult

        image = np.full((self.job.request.height, self.job.request.width, 3), 9, np.uint8)
        return FarmResult(self.job.job_id, image, self.job.request.seed, self.worker, {})


class _FakeFarm:
    """A connected cluster whose only worker is lost in the first job (the client then renders it here)."""

    def __init__(self, lose_worker: bool, local_runner):
        self.address, self.lose_worker, self.local_runner = "127.0.0.1:6379", lose_worker, local_runner
        self.closed = False

    def worker_names(self):
        return [] if self.closed else ["w0"]

    def describe(self):
        return {"w0": {"device": "cuda:0"}}

    def submit(self, job):
        if self.lose_worker:
            return _FakeHandle(job, "local", ["Render farm: worker w0 was lost at step 1/4 (gone); rendering locally"])
        return _FakeHandle(job, "w0", [])

    def close(self):
        self.closed = True


def test_lost_workers_render_here_until_the_retry(monkeypatch):
    from inference.farm import api as farm_api

    connects: list[_FakeFarm] = []

    def connect_or_local(address, **kwargs):
        connects.append(_FakeFarm(lose_worker=not connects, local_runner=kwargs["local_runner"]))
        return connects[-1], None

    monkeypatch.setattr(farm_api, "connect_or_local", connect_or_local)
    clock = [0.0]
    link = FarmLink("farm", "127.0.0.1:6379", worker_gpus=1, clock=lambda: clock[0])
    here: list[int] = []

    def local_generate(request, progress, should_stop):
        from inference.api import GenerationResult

        here.append(request.seed)
        return GenerationResult(np.zeros((64, 64, 3), np.uint8), request.seed)

    model = farm_api.ModelSpec("0" * 64, "fake")
    link.render(REQUEST, model, local_generate)  # the worker is lost: the client rendered it here
    assert link.status().state == "fallback" and connects[0].closed
    assert status_text(link.status()) == "Farm unreachable — rendering here"
    assert link.notices == ["Render farm: worker w0 was lost at step 1/4 (gone); rendering locally"]
    second = link.render(REQUEST, model, local_generate)  # within the retry time: here, no new notice
    assert here == [1234] and second.info["farm_worker"] == "local" and len(connects) == 1
    clock[0] = 61.0
    third = link.render(REQUEST, model, local_generate)  # the retry connects again, and it works
    assert len(connects) == 2 and third.info["farm_worker"] == "w0" and len(link.notices) == 1
    status = link.status()
    assert (status.state, status.workers, status.gpus, status.message) == ("connected", 1, 1, "")
    assert [e.worker for e in link.queue.entries()] == ["local", "local", "w0"]


class _GroupHandle:
    """One of several variations: runs until cancelled, or fails at once when ``fail``."""

    def __init__(self, job, worker: str, fail: bool):
        self.job, self.worker, self.notices, self.fail = job, worker, [], fail
        self.cancelled = False

    def pending_events(self, timeout_s: float = 0.0):
        from inference.farm.api import Progress

        time.sleep(min(timeout_s, 0.01))
        return [Progress(self.job.job_id, 1, 4, self.worker)], self.fail or self.cancelled

    def cancel(self) -> None:
        self.cancelled = True

    def result(self):
        from inference.farm.api import FarmError

        if self.fail:
            raise FarmError("render farm worker w1: RuntimeError: the GPU fell off the bus")
        raise CancelledError(f"render cancelled on {self.worker}")


class _GroupFarm:
    """A connected cluster running a group of variations, the second of which fails (or none)."""

    def __init__(self, fail: bool, local_runner):
        self.address, self.fail, self.local_runner = "127.0.0.1:6379", fail, local_runner
        self.handles: list[_GroupHandle] = []
        self.jobs: list = []

    def worker_names(self):
        return ["w0", "w1"]

    def describe(self):
        return {"w0": {"device": "cpu"}, "w1": {"device": "cpu"}}

    def submit_many(self, jobs):
        self.jobs = list(jobs)
        self.handles = [_GroupHandle(job, f"w{i % 2}", self.fail and i == 1) for i, job in enumerate(jobs)]
        return self.handles

    def close(self):
        pass


def _group_link(monkeypatch, fail: bool) -> tuple[FarmLink, list[_GroupFarm]]:
    from inference.farm import api as farm_api

    farms: list[_GroupFarm] = []

    def connect_or_local(address, **kwargs):
        farms.append(_GroupFarm(fail, kwargs["local_runner"]))
        return farms[-1], None

    monkeypatch.setattr(farm_api, "connect_or_local", connect_or_local)
    return FarmLink("farm", "127.0.0.1:6379"), farms


def test_one_failing_variation_fails_the_group_in_one_line_and_cancels_the_others(monkeypatch):
    from inference.farm.api import FarmError, ModelSpec

    link, farms = _group_link(monkeypatch, fail=True)
    requests = [dataclasses.replace(REQUEST, seed=seed) for seed in (1, 2, 3)]
    started = time.perf_counter()
    with pytest.raises(FarmError) as info:
        link.render_many(requests, ModelSpec("0" * 64, "fake"), lambda *a: None)
    assert time.perf_counter() - started < 5
    assert str(info.value) == "render farm worker w1: RuntimeError: the GPU fell off the bus"
    assert [h.cancelled for h in farms[0].handles] == [True, True, True]  # the others stopped at once
    entries = link.queue.entries()
    assert [e.state for e in entries] == [RenderState.CANCELLED, RenderState.FAILED, RenderState.CANCELLED]
    assert entries[1].message == str(info.value) and entries[0].message.startswith("cancelled: another variation")
    assert [job.request.seed for job in farms[0].jobs] == [1, 2, 3]
    import torch  # loaded by the editor's engine: jobs carry its thread count

    assert {job.threads for job in farms[0].jobs} == {torch.get_num_threads()}


def test_cancel_stops_every_variation(monkeypatch):
    from inference.farm.api import ModelSpec

    link, farms = _group_link(monkeypatch, fail=False)
    requests = [dataclasses.replace(REQUEST, seed=seed) for seed in (1, 2, 3)]
    stop_after = time.perf_counter() + 0.2
    with pytest.raises(CancelledError):
        link.render_many(requests, ModelSpec("0" * 64, "fake"), lambda *a: None,
                         should_stop=lambda: time.perf_counter() > stop_after)
    assert [h.cancelled for h in farms[0].handles] == [True, True, True]
    assert [e.state for e in link.queue.entries()] == [RenderState.CANCELLED] * 3
    # The queue panel's Cancel on any one of them stops the whole group too (one editor job).
    panel = threading.Timer(0.2, lambda: link.queue.cancel(link.queue.entries()[-2].id))
    panel.start()
    with pytest.raises(CancelledError):
        link.render_many(requests, ModelSpec("0" * 64, "fake"), lambda *a: None)
    assert [h.cancelled for h in farms[0].handles] == [True, True, True]
    assert [e.state for e in link.queue.entries()[-3:]] == [RenderState.CANCELLED] * 3


class _ManyEngine(FakeEngine):
    """The fake engine with ``generate_many`` (what FarmEngine adds): records the calls."""

    def __init__(self, fail: Optional[BaseException] = None):
        super().__init__()
        self.many_calls: list[list[int]] = []
        self.many_fail = fail

    def generate_many(self, model_id, requests, progress_for, should_stop=None):
        self.many_calls.append([r.seed for r in requests])
        if self.many_fail is not None:
            raise self.many_fail
        results = []
        for index, request in reversed(list(enumerate(requests))):  # finish out of order, like a farm
            results.append((index, self.generate(model_id, request, progress_for(index), should_stop)))
        return [result for _, result in sorted(results, key=lambda item: item[0])]


def test_service_sends_variations_to_generate_many_in_one_call():
    from editor.ai.request import EditRequest
    from editor.ai.service import GenerationService, JobState
    from editor.document import Document, Rect
    from inference.farm.api import FarmError

    engine = _ManyEngine()
    service = GenerationService(engine)
    fractions: list[float] = []
    service.job_progress.connect(lambda p: fractions.append(p.fraction))
    try:
        doc = Document(64, 64)
        job = service.submit_edit(doc, EditRequest(frame=Rect(0, 0, 64, 64), prompt="x", seed=40, steps=4,
                                                   variations=3))
        assert job.wait(10) and job.state == JobState.DONE, job.error
        assert engine.many_calls == [[40, 41, 42]] and [image.seed for image in job.images] == [40, 41, 42]
        assert fractions and fractions[-1] == pytest.approx(1.0)
        single = service.submit_edit(doc, EditRequest(frame=Rect(0, 0, 64, 64), prompt="x", seed=7, steps=4))
        assert single.wait(10) and single.state == JobState.DONE
        assert len(engine.many_calls) == 1 and engine.calls[-1][1].seed == 7  # one request: plain generate
        engine.many_fail = FarmError("render farm worker w1: RuntimeError: boom")
        failed = service.submit_edit(doc, EditRequest(frame=Rect(0, 0, 64, 64), prompt="x", seed=1, steps=4,
                                                      variations=2))
        assert failed.wait(10) and failed.state == JobState.FAILED and failed.images == []
        assert failed.error == "render farm worker w1: RuntimeError: boom"
    finally:
        service.close()


def test_models_with_a_separate_vae_or_unet_go_to_the_farm(tmp_path):
    from types import SimpleNamespace

    from editor.ai.engine import ModelSpec

    models = {"vae": ModelSpec(tmp_path / "m", vae_path=tmp_path / "v.safetensors"),
              "unet": ModelSpec(tmp_path / "m", unet_path=tmp_path / "u.safetensors"),
              "preview": ModelSpec(tmp_path / "m", resident=True)}
    engine = FarmEngine(SimpleNamespace(models=models), FarmLink("farm", "10.0.0.5:6379"))
    assert engine.routes("vae") and engine.routes("unet") and not engine.routes("preview")


# --------------------------------------------------------------------------- engines
@pytest.fixture(scope="module")
def local_engine():
    from editor.ai.engine import ModelSpec, TorchEngine

    if not (HOUSE / "full" / "model_index.json").is_file():
        pytest.skip("the house model is not installed")
    return TorchEngine({"preview": ModelSpec(HOUSE / "preview", resident=True),
                        "final": ModelSpec(HOUSE / "full")}, device="cpu")


@pytest.fixture(scope="module")
def local_image(local_engine):
    """The local render on two torch threads (the farm's workers have one CPU each)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        return local_engine.generate("final", REQUEST).image
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def one_thread_image(local_engine):
    """The local render on one torch thread, a one-CPU worker's own count (Ray sets its
    OMP_NUM_THREADS from its CPUs): the house model's sums split over two threads round
    differently in about 0.04 % of pixels (±1), which is why a job carries the client's count."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return local_engine.generate("final", REQUEST).image
    finally:
        torch.set_num_threads(threads)


def test_unreachable_farm_renders_here_with_one_notice(local_engine, local_image):
    clock = [0.0]
    link = FarmLink("farm", f"127.0.0.1:{_free_port()}", timeout_s=1, retry_s=60, clock=lambda: clock[0])
    engine = farm_engine_factory(link, lambda specs, device: local_engine)({}, "cpu")
    assert isinstance(engine, FarmEngine) and engine.routes("final") and not engine.routes("preview")
    statuses: list[FarmStatus] = []
    link.status_changed.connect(statuses.append)
    steps, previews = [], []

    def progress(step, total, latents):
        steps.append((step, total))
        if latents is not None and step < total:
            previews.append(engine.preview_image("final", latents))

    started = time.perf_counter()
    first = engine.generate("final", REQUEST, progress, None)
    assert time.perf_counter() - started < 20
    assert np.array_equal(first.image, local_image) and first.info["farm_worker"] == "local"
    assert steps[-1] == (4, 4) and previews and previews[0].shape == (64, 64, 3)  # local previews still come
    clock[0] = 61.0  # past retry_s: the next render tries the cluster again, still unreachable
    second = engine.generate("final", REQUEST, None, None)
    assert np.array_equal(second.image, local_image)
    assert len(link.notices) == 1, link.notices  # one line for the whole episode
    assert link.notices[0].startswith("Render farm: render farm at 127.0.0.1:")
    assert link.notices[0].endswith("; rendering locally") and "\n" not in link.notices[0]
    assert status_text(link.status()) == "Farm unreachable — rendering here"
    assert any(s.state == "connecting" for s in statuses)
    assert [e.state for e in link.queue.entries()] == [RenderState.DONE, RenderState.DONE]
    assert link.queue.entries()[0].worker == "local"
    link.configure("local", link.address)  # switched off: final renders are local again, no queue entry
    assert not engine.routes("final")
    engine.generate("final", REQUEST, None, None)
    assert len(link.queue.entries()) == 2


# --------------------------------------------------------------------------- a real Ray head
def _head_class():
    """`_Head` of the engine's farm tests (loaded by path: test folders are not packages)."""
    path = Path(__file__).resolve().parents[2] / "inference" / "farm" / "test_farm_ray.py"
    spec = importlib.util.spec_from_file_location("_farm_ray_helpers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module._Head


@pytest.fixture(scope="module")
def head():
    pytest.importorskip("ray")
    started = _head_class()()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def farm_engine(head, local_engine, local_image, one_thread_image, tmp_path_factory):
    link = FarmLink("farm", head.address, token=head.token, workers=2, worker_cpus=1, timeout_s=10,
                    cache_dir=str(tmp_path_factory.mktemp("farm-cache") / "{worker}"), preview_every_s=0)
    yield FarmEngine(local_engine, link)
    link.close()


@pytest.mark.slow
def test_farm_render_gives_the_local_pixels(farm_engine, local_image, one_thread_image):
    link = farm_engine.link
    events = []

    def progress(step, total, latents):
        events.append((step, total, farm_engine.preview_image("final", latents) if latents is not None else None))

    result = farm_engine.generate("final", REQUEST, progress, None)
    # Same seed, same pixels, bit for bit: the one-CPU worker renders on this process's two threads.
    assert not np.array_equal(local_image, one_thread_image)
    assert np.array_equal(result.image, local_image)
    assert result.seed == 1234 and result.info["farm_worker"] in ("w0", "w1") and result.info["threads"] == 2
    assert [(s, t) for s, t, _ in events][-1] == (4, 4)
    previews = [p for _, _, p in events if p is not None]
    assert previews and all(p.shape == (64, 64, 3) and p.dtype == np.uint8 for p in previews)
    assert link.notices == []
    status = link.status()
    assert (status.state, status.workers, status.gpus, status.queued) == ("connected", 2, 0, 0)
    assert status_text(status) == f"Farm {link.address} · 2 workers · CPU only"
    entry = link.queue.entries()[-1]
    assert (entry.state, entry.worker, entry.step, entry.total) == (RenderState.DONE, result.info["farm_worker"], 4, 4)


@pytest.mark.slow
def test_variations_run_in_parallel_on_the_farm_each_equal_to_its_local_render(farm_engine, local_engine):
    import torch

    from editor.ai.request import EditRequest, finish_image
    from editor.ai.service import GenerationService, JobState
    from editor.document import Document, Rect

    service = GenerationService(farm_engine)
    progress = []
    service.job_progress.connect(progress.append)
    queue = farm_engine.link.queue
    try:
        job = service.submit_edit(Document(64, 64), EditRequest(frame=Rect(0, 0, 64, 64), prompt="a red house",
                                                                seed=500, steps=4, guidance=3.0, variations=3))
        assert job.wait(120) and job.state == JobState.DONE, job.error
    finally:
        service.close()
    assert job.render_time < 60
    plan = job.plan
    assert [image.seed for image in job.images] == [500, 501, 502]  # in seed order
    entries = queue.entries()[-3:]
    assert [e.state for e in entries] == [RenderState.DONE] * 3
    assert {e.worker for e in entries} == {"w0", "w1"}  # fanned out over both workers
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for image, request in zip(job.images, plan.engine_requests):
            expected = finish_image(plan, local_engine.generate("final", request).image, request.seed,
                                    local_engine.model_label("final"))
            assert np.array_equal(image.rgba, expected.rgba), request.seed
    finally:
        torch.set_num_threads(threads)
    fractions = [p.fraction for p in progress]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)  # one steady bar
    assert {p.variation for p in progress} == {0, 1, 2}
    assert farm_engine.link.status().queued == 0


@pytest.mark.slow
def test_cancel_ends_the_job_without_a_result_and_the_document_unchanged(farm_engine):
    from editor.ai.request import EditRequest
    from editor.ai.service import GenerationService, JobState
    from editor.document import Document, Rect

    doc = Document(64, 64)
    doc.add_layer_from_image(np.full((64, 64, 4), 200, np.uint8), name="photo")
    doc.undo_stack.clear()
    before = doc.render_uncached().copy()
    service = GenerationService(farm_engine)
    queue = farm_engine.link.queue
    try:
        for how in ("session", "queue panel"):
            running = threading.Event()
            service.job_progress.connect(lambda p, ev=running: ev.set() if p.step >= 1 else None)
            # Two variations, one per worker: a cancel stops both (the panel's, on either of them, too).
            job = service.submit_edit(doc, EditRequest(frame=Rect(0, 0, 64, 64), prompt="a long render", seed=3,
                                                       steps=300, guidance=3.0, variations=2))
            assert running.wait(60), how
            if how == "session":
                service.cancel(job)  # what Esc does: the service's should_stop
            else:
                assert queue.cancel(queue.entries()[-1].id)  # the panel's Cancel button
            assert job.wait(30) and job.state == JobState.CANCELLED, (how, job.error)
            assert job.images == []
            assert [e.state for e in queue.entries()[-2:]] == [RenderState.CANCELLED] * 2
            assert all(e.step < 300 for e in queue.entries()[-2:])
    finally:
        service.close()
    assert np.array_equal(doc.render_uncached(), before) and len(doc.undo_stack) == 0
    # The workers are free again: the next render runs at once.
    assert farm_engine.link.status().queued == 0
    assert all(facts["busy"] == 0 for facts in farm_engine.link._farm.describe().values())


def test_farm_cancel_before_start_raises_without_connecting():
    link = FarmLink("farm", "127.0.0.1:9")  # never contacted: cancelled first
    with pytest.raises(CancelledError):
        link.render(REQUEST, None, lambda *a: None, None, lambda: True)
    assert link.queue.entries()[-1].state is RenderState.CANCELLED and link.notices == []
    assert link.status().state == "idle"
