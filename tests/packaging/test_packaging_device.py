"""editor.device: the compute device is probed safely and falls back to the CPU
with a clear message when CUDA (or MPS) is missing or broken. torch.cuda is
monkeypatched: these run on the CPU build."""

from __future__ import annotations

import pytest
import torch

from editor import device as dev
from editor.device import DeviceChoice, choose_device, preference_from, probe_device
from editor.settings import Settings


@pytest.fixture(autouse=True)
def no_env_override(monkeypatch):
    monkeypatch.delenv(dev.DEVICE_ENV, raising=False)


def _no_mps(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_built", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def test_cpu_is_always_cpu_without_warning():
    choice = probe_device("cpu")
    assert choice.device == "cpu" and choice.warning == "" and choice.label.startswith("CPU")
    device, message = choose_device("cpu")
    assert device == "cpu" and message.startswith("Running on CPU")


def test_cuda_requested_on_a_cpu_only_build(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)
    device, message = choose_device("cuda")
    assert device == "cpu"
    assert "CUDA was requested" in message and "CPU-only build" in message and "running on the CPU" in message


def test_cuda_build_without_a_driver(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    choice = probe_device("cuda")
    assert choice.device == "cpu" and "no usable NVIDIA GPU" in choice.warning


def test_cuda_that_claims_to_work_but_fails_the_probe(monkeypatch):
    # is_available() says yes, but the CPU build cannot put a tensor on "cuda": the probe catches it.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    choice = probe_device("cuda")
    assert choice.device == "cpu"
    assert "the CUDA test failed" in choice.warning and "running on the CPU" in choice.warning


def test_cuda_is_available_itself_raising(monkeypatch):
    def broken():
        raise RuntimeError("CUDA driver initialization failed, you might not have a CUDA gpu.\nmore")

    monkeypatch.setattr(torch.cuda, "is_available", broken)
    choice = probe_device("cuda")
    assert choice.device == "cpu" and "driver initialization failed" in choice.warning
    assert "\n" not in choice.warning  # one line for the status bar


def test_cuda_wrong_answer_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)

    def wrong(_torch, _device):
        raise RuntimeError("a test computation gave 0.0 instead of 56")

    monkeypatch.setattr(dev, "_tensor_check", wrong)
    assert probe_device("cuda").device == "cpu"


def test_working_cuda_is_used_with_the_gpu_name(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda _i=0: "NVIDIA Fake 9000")
    monkeypatch.setattr(dev, "_tensor_check", lambda _torch, _device: None)
    assert probe_device("cuda") == DeviceChoice("cuda", "CUDA · NVIDIA Fake 9000", "")
    assert choose_device("auto") == ("cuda", "Running on CUDA · NVIDIA Fake 9000")


def test_auto_on_a_cpu_only_build_is_quiet(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)
    _no_mps(monkeypatch)
    choice = probe_device("auto")
    assert choice.device == "cpu" and choice.warning == ""


def test_auto_with_a_broken_cuda_build_warns(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    _no_mps(monkeypatch)
    choice = probe_device("auto")
    assert choice.device == "cpu" and choice.warning.startswith("CUDA is not usable")


def test_mps_requested_where_there_is_none(monkeypatch):
    _no_mps(monkeypatch)
    device, message = choose_device("mps")
    assert device == "cpu" and "MPS was requested" in message


def test_auto_picks_mps_when_it_works(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_built", lambda: True)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(dev, "_tensor_check", lambda _torch, _device: None)
    assert probe_device("auto").device == "mps"


def test_env_override_and_unknown_values(monkeypatch):
    assert preference_from("bogus") == "auto"
    assert preference_from(None) == "auto"
    monkeypatch.setenv(dev.DEVICE_ENV, "CPU")
    assert preference_from("cuda") == "cpu"


def test_settings_defaults_persist_and_validate(tmp_path):
    path = tmp_path / "settings.json"
    s = Settings()
    assert (s.preview_model, s.final_model, s.device, s.model_folders) == ("house:preview", "house:full", "auto", [])
    assert s.first_run_hint_seen is False
    s.device, s.model_folders, s.first_run_hint_seen = "cuda", ["/models/a", "/models/a", "/models/b"], True
    s.clamped()
    s.save(path)
    again = Settings.load(path)
    assert again.device == "cuda" and again.model_folders == ["/models/a", "/models/b"]
    assert again.first_run_hint_seen is True
    path.write_text('{"device": "tpu", "first_run_hint_seen": 1, "final_model": ""}')
    bad = Settings.load(path)
    assert bad.device == "auto" and bad.first_run_hint_seen is False and bad.final_model == "house:full"
