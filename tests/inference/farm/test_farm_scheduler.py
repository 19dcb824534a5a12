"""The farm's placement rule (pure): loaded-model affinity, then least busy; variations fan out."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.farm.errors import FarmUnavailableError
from inference.farm.scheduler import WorkerState, fan_out, place

A = ("a" * 64, ())
A_STYLE = ("a" * 64, ("c" * 64,))  # the same model with a LoRA merged
B = ("b" * 64, ())

workers_strategy = st.lists(
    st.builds(WorkerState,
              name=st.text("wxyz0123", min_size=1, max_size=3),
              busy=st.integers(0, 6),
              loaded=st.sets(st.sampled_from([A, A_STYLE, B]), max_size=2).map(frozenset),
              cached=st.sets(st.sampled_from([A[0], B[0]]), max_size=2).map(frozenset),
              alive=st.booleans()),
    min_size=1, max_size=6, unique_by=lambda w: w.name)


def _usable(workers):
    return [w for w in workers if w.alive]


@settings(max_examples=300, deadline=None)
@given(workers_strategy, st.sampled_from([A, A_STYLE, B]))
def test_place_prefers_loaded_then_least_busy(workers, key):
    usable = _usable(workers)
    if not usable:
        with pytest.raises(FarmUnavailableError):
            place(key, workers)
        return
    chosen = {w.name: w for w in workers}[place(key, workers)]
    assert chosen.alive
    loaded = [w for w in usable if any(k[0] == key[0] for k in w.loaded)]
    if loaded:  # InvokeAI's rule: a worker with the model (any LoRAs) wins, the least busy of them
        assert any(k[0] == key[0] for k in chosen.loaded)
        assert chosen.busy == min(w.busy for w in loaded)
        exact = [w for w in loaded if w.busy == chosen.busy and key in w.loaded]
        assert not exact or key in chosen.loaded  # at equal load, the one with the job's LoRAs merged
    else:
        assert chosen.busy == min(w.busy for w in usable)
        idle_cached = [w for w in usable if w.busy == chosen.busy and key[0] in w.cached]
        assert not idle_cached or key[0] in chosen.cached  # a disk hit beats a transfer at equal load


@settings(max_examples=200, deadline=None)
@given(workers_strategy, st.sampled_from([A, A_STYLE, B]), st.data())
def test_place_never_returns_an_excluded_worker(workers, key, data):
    names = [w.name for w in workers]
    excluded = data.draw(st.sets(st.sampled_from(names)))
    if not [w for w in _usable(workers) if w.name not in excluded]:
        with pytest.raises(FarmUnavailableError):
            place(key, workers, excluded)
    else:
        assert place(key, workers, excluded) not in excluded


@settings(max_examples=300, deadline=None)
@given(workers_strategy, st.sampled_from([A, A_STYLE, B]), st.integers(1, 20))
def test_fan_out_balances_load(workers, key, count):
    usable = _usable(workers)
    if not usable:
        with pytest.raises(FarmUnavailableError):
            fan_out(key, count, workers)
        return
    names = fan_out(key, count, workers)
    assert len(names) == count
    final = {w.name: w.busy + names.count(w.name) for w in usable}
    # Greedy least-loaded: no worker that got a variation ends more than one job above the
    # least loaded worker (else that variation would have started sooner elsewhere).
    for name in set(names):
        assert final[name] <= min(final.values()) + 1


def test_variations_spread_over_idle_workers_and_start_on_the_loaded_one():
    workers = [WorkerState("w0"), WorkerState("w1", loaded=frozenset({A})), WorkerState("w2"),
               WorkerState("w3", busy=2)]
    names = fan_out(A, 4, workers)
    assert names[0] == "w1"  # idle and loaded first
    assert sorted(names[:3]) == ["w0", "w1", "w2"]  # one per idle worker before any doubles up
    assert names.count("w3") == 0  # the busy one gets nothing while others are at 1
    # A single job queues behind the loaded worker rather than loading elsewhere.
    assert place(A, [WorkerState("w0"), WorkerState("w1", busy=1, loaded=frozenset({A}))]) == "w1"
    assert place(B, [WorkerState("w0", busy=1), WorkerState("w1", busy=1, cached=frozenset({B[0]}))]) == "w1"
    # Another LoRA set on the loaded model still beats loading the model elsewhere.
    assert place(A_STYLE, [WorkerState("w0"), WorkerState("w1", busy=1, loaded=frozenset({A}))]) == "w1"
    assert place(A_STYLE, [WorkerState("w0", loaded=frozenset({A})), WorkerState("w1", loaded=frozenset({A_STYLE}))]) \
        == "w1"


def test_a_separate_vae_is_another_model_in_memory_and_on_disk():
    from inference.farm.jobs import load_id

    vae_a, vae_b = "d" * 64, "e" * 64
    with_a, with_b = (load_id(A[0], vae=vae_a), ()), (load_id(A[0], vae=vae_b), ())
    # base+vaeA loaded is not base+vaeB: the worker with the bare model has no edge over an idle one.
    assert place(with_b, [WorkerState("w0", loaded=frozenset({with_a})), WorkerState("w1")]) == "w0"
    assert place(with_b, [WorkerState("w0", busy=1, loaded=frozenset({with_a})), WorkerState("w1")]) == "w1"
    assert place(with_a, [WorkerState("w0", busy=1, loaded=frozenset({with_a})), WorkerState("w1")]) == "w0"
    # On disk, only a worker with the model *and* the VAE saves a transfer.
    assert place(with_a, [WorkerState("w0", cached=frozenset({A[0]})),
                          WorkerState("w1", cached=frozenset({A[0], vae_a}))]) == "w1"
    assert place(with_a, [WorkerState("w0", cached=frozenset({A[0], vae_b})),
                          WorkerState("w1", cached=frozenset({vae_a}))]) == "w0"  # neither has both: by name
