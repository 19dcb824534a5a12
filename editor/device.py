"""Which compute device the engine runs on: the user's choice, probed safely.

Qt-free (the status bar, the AI panel and the bundle's self-test all use it).
The preference comes from the settings (``"auto"``, ``"cpu"``, ``"cuda"`` or
``"mps"``); the environment variable ``CANVASAI_DEVICE`` overrides it for one
run. A device is only used after a tiny tensor computation on it succeeded and
gave the right answer: a CPU-only PyTorch build, a missing or too old NVIDIA
driver, a GPU that PyTorch was not built for or an MPS backend that is not
there all end on the CPU with a message that says why, never with a crash.

``probe_device()`` returns a :class:`DeviceChoice` (device, short label for
the status bar, warning); ``choose_device()`` is the same as the pair
``(device, message)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from types import ModuleType
from typing import Optional

DEVICE_ENV = "CANVASAI_DEVICE"
PREFERENCES = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True)
class DeviceChoice:
    device: str  # a torch device string: "cpu", "cuda" or "mps"
    label: str  # for the status bar: "CUDA · NVIDIA GeForce RTX 4090", "Apple GPU (MPS)", "CPU · 8 threads"
    warning: str = ""  # why the preferred device is not used ("" when nothing went wrong)

    @property
    def message(self) -> str:
        return self.warning or f"Running on {self.label}"


def preference_from(setting: Optional[str]) -> str:
    """The effective preference: ``CANVASAI_DEVICE`` if set, else the setting; unknown → "auto"."""
    value = (os.environ.get(DEVICE_ENV) or setting or "auto").strip().lower()
    return value if value in PREFERENCES else "auto"


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = text if len(text) <= 160 else text[:157] + "…"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _tensor_check(torch: ModuleType, device: str) -> None:
    """A tiny computation on ``device``; raises if it fails or gives a wrong answer."""
    x = torch.arange(8, dtype=torch.float32, device=device)
    total = float((x * 2.0).sum().to("cpu").item())
    if total != 56.0:
        raise RuntimeError(f"a test computation gave {total} instead of 56")


def _cuda(torch: ModuleType) -> tuple[Optional[str], str]:
    """(label, "") when CUDA works, else (None, reason)."""
    try:
        if not torch.cuda.is_available():
            if getattr(torch.version, "cuda", None) is None:
                return None, "this PyTorch is a CPU-only build (see README: CUDA builds)"
            return None, "no usable NVIDIA GPU or driver was found"
        _tensor_check(torch, "cuda")
        name = torch.cuda.get_device_name(0)
    except Exception as exc:  # noqa: BLE001 - any failure of the driver/runtime means "not usable"
        return None, f"the CUDA test failed ({_short(exc)})"
    return f"CUDA · {name}", ""


def _mps(torch: ModuleType) -> tuple[Optional[str], str]:
    try:
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_built():
            return None, "this PyTorch has no Apple Metal (MPS) support"
        if not mps.is_available():
            return None, "Apple Metal (MPS) is not available on this machine (it needs Apple Silicon, macOS 12.3+)"
        _tensor_check(torch, "mps")
    except Exception as exc:  # noqa: BLE001
        return None, f"the MPS test failed ({_short(exc)})"
    return "Apple GPU (MPS)", ""


def _cpu_label(torch: Optional[ModuleType]) -> str:
    try:
        threads = int(torch.get_num_threads()) if torch is not None else 0
    except Exception:  # noqa: BLE001
        threads = 0
    return f"CPU · {threads} threads" if threads > 1 else "CPU"


def probe_device(setting: Optional[str] = "auto", torch_module: Optional[ModuleType] = None) -> DeviceChoice:
    """Pick and probe the device for ``setting`` ("auto", "cpu", "cuda", "mps")."""
    preference = preference_from(setting)
    torch = torch_module
    if torch is None:
        try:
            import torch  # noqa: PLC0415 - imported on demand: it takes seconds
        except Exception as exc:  # noqa: BLE001
            return DeviceChoice("cpu", "CPU", f"PyTorch could not be loaded ({_short(exc)}): AI features are off")
    if preference == "cpu":
        return DeviceChoice("cpu", _cpu_label(torch))
    if preference == "cuda":
        label, why = _cuda(torch)
        if label:
            return DeviceChoice("cuda", label)
        return DeviceChoice("cpu", _cpu_label(torch), f"CUDA was requested but {why}: running on the CPU")
    if preference == "mps":
        label, why = _mps(torch)
        if label:
            return DeviceChoice("mps", label)
        return DeviceChoice("cpu", _cpu_label(torch), f"MPS was requested but {why}: running on the CPU")
    # auto: CUDA, then MPS, then the CPU. A CPU-only build is no reason to warn; a CUDA build
    # whose GPU is missing or broken is (the user installed it to use the GPU).
    label, why = _cuda(torch)
    if label:
        return DeviceChoice("cuda", label)
    cuda_warning = "" if getattr(torch.version, "cuda", None) is None else f"CUDA is not usable: {why}"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and _safe_bool(getattr(mps, "is_built", None)):
        label, _why = _mps(torch)
        if label:
            return DeviceChoice("mps", label)
    warning = f"{cuda_warning}: running on the CPU" if cuda_warning else ""
    return DeviceChoice("cpu", _cpu_label(torch), warning)


def _safe_bool(fn) -> bool:
    try:
        return bool(fn()) if callable(fn) else False
    except Exception:  # noqa: BLE001
        return False


def choose_device(setting: Optional[str] = "auto", torch_module: Optional[ModuleType] = None) -> tuple[str, str]:
    """``(device, message)``: the device to hand to the engine and a line for the user."""
    choice = probe_device(setting, torch_module)
    return choice.device, choice.message
