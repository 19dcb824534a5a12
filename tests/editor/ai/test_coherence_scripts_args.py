"""Hostile command lines for the coherence scripts (scripts/measure_coherence.py,
scripts/decoder_sensitivity.py): one stderr line naming the value, exit 2, and no model loaded."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _script(name: str):
    if name not in sys.modules:  # dataclasses look their module up there
        spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


@pytest.fixture
def no_models(monkeypatch):
    """Fail the test if a script gets as far as measuring."""
    def refuse(*_a, **_k):
        raise AssertionError("measured despite a bad command line")

    for name in ("measure_coherence", "decoder_sensitivity"):
        monkeypatch.setattr(_script(name), "measure", refuse)


def _refused(capsys, name: str, argv: list[str], words: str) -> None:
    assert _script(name).main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"{name}: "), err
    assert words in err, err


@pytest.mark.parametrize("argv, words", [
    (["--cases", "0"], "--cases 0"),
    (["--cases", "-3"], "--cases -3"),
    (["--cases", "100000"], "--cases 100000"),
    (["--threads", "0"], "--threads 0"),
    (["--case-set", "-1"], "--case-set -1"),
    (["--case-set", "0", "5000"], "--case-set 5000"),
    (["--bound", "-0.1"], "--bound -0.1"),
    (["--bound", "nan"], "--bound nan"),
    (["--bound", "inf"], "--bound inf"),
    (["--bound", "11"], "--bound 11"),
    (["--strength", "1.5"], "--strength 1.5"),
    (["--strength", "0"], "--strength 0"),
    (["--guidance", "-1"], "--guidance -1"),
    (["--hold", "2"], "--hold 2"),
    (["--structure-scale", "99"], "--structure-scale 99"),
    (["--partial-steps", "0"], "--partial-steps 0"),
])
def test_measure_coherence_refuses_hostile_values(capsys, no_models, argv, words):
    _refused(capsys, "measure_coherence", argv, words)


def test_measure_coherence_refuses_paths_it_cannot_write(capsys, no_models, tmp_path):
    a_file = tmp_path / "taken.png"
    a_file.write_bytes(b"x")
    _refused(capsys, "measure_coherence", ["--save", str(a_file)], "is a file")
    _refused(capsys, "measure_coherence", ["--json", str(tmp_path)], "is a folder")
    _refused(capsys, "measure_coherence", ["--json", str(tmp_path / "nowhere" / "out.json")], "does not exist")


def test_measure_coherence_accepts_a_held_out_bound_sweep(monkeypatch):
    module = _script("measure_coherence")
    captured = {}

    def fake_measure(*a, **k):
        captured.setdefault("calls", 0)
        captured["calls"] += 1
        return {"settings": {}, "runtime_s": 0, "case_set": k["case_set"], "summary": {"meets": True}}

    monkeypatch.setattr(module, "measure", fake_measure)
    assert module.main(["--cases", "2", "--case-set", "3", "4", "--bound", "0", "0.035"]) == 0
    assert captured["calls"] == 4  # 2 case sets × 2 bounds


@pytest.mark.parametrize("argv, words", [
    (["--rms"], "--rms needs"),
    (["--rms", "0"], "--rms 0"),
    (["--rms", "-0.05"], "--rms -0.05"),
    (["--rms", "nan"], "--rms nan"),
    (["--rms", "inf"], "--rms inf"),
    (["--rms", "0.05", "1e9"], "--rms 1e+09"),
    (["--draws", "0"], "--draws 0"),
    (["--draws", "-2"], "--draws -2"),
    (["--draws", "10000000"], "--draws 10000000"),
])
def test_decoder_sensitivity_refuses_hostile_values(capsys, no_models, argv, words):
    _refused(capsys, "decoder_sensitivity", argv, words)


def test_decoder_sensitivity_refuses_folders_that_are_not_models(capsys, no_models, tmp_path):
    a_file = tmp_path / "model.safetensors"
    a_file.write_bytes(b"\x00" * 16)
    _refused(capsys, "decoder_sensitivity", ["--model", str(tmp_path / "missing")], "--model")
    _refused(capsys, "decoder_sensitivity", ["--preview", str(a_file)], "--preview")
    _refused(capsys, "decoder_sensitivity", ["--model", str(tmp_path)], "no model_index.json")
