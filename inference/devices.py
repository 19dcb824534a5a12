"""`--device` values: parsed strictly, checked against what this machine has.

Accepted (case-insensitive, surrounding whitespace ignored): `cpu`, `cuda`, `cuda:N`, `mps`.
Anything else, or a device this machine lacks, is one InferenceError line naming the value. torch
is imported only inside `parse_device`, so importing this module stays cheap.
"""
from __future__ import annotations

import re

from inference.errors import InferenceError

_DEVICE = re.compile(r"(cpu|cuda|mps)(?::([0-9]{1,4}))?\Z")
MAX_SHOWN = 40


def _shown(text: str) -> str:
    shown = repr(text)
    return shown if len(shown) <= MAX_SHOWN else shown[: MAX_SHOWN - 4] + "…" + shown[-3:]


def parse_device(text: str) -> str:
    """The canonical device string ("cpu", "cuda", "cuda:1", "mps"), or InferenceError."""
    if not isinstance(text, str):
        raise InferenceError(f"--device {text!r}: expected cpu, cuda, cuda:N or mps")
    value = text.strip().lower()
    match = _DEVICE.match(value) if value.isascii() else None
    if match is None:
        raise InferenceError(f"--device {_shown(text)}: expected cpu, cuda, cuda:N or mps")
    kind, index = match.group(1), match.group(2)
    if kind != "cuda" and index is not None:
        raise InferenceError(f"--device {_shown(text)}: only cuda takes an index (cuda:N)")
    if kind == "cpu":
        return "cpu"
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - a broken torch install is the user's to know, in one line
        raise InferenceError(f"--device {value}: torch cannot be imported ({type(exc).__name__})") from None
    if kind == "mps":
        backend = getattr(torch.backends, "mps", None)
        if backend is None or not backend.is_available():
            raise InferenceError("--device mps: Apple MPS is not available on this machine (use cpu)")
        return "mps"
    try:
        available = torch.cuda.is_available()
        count = torch.cuda.device_count() if available else 0
    except Exception:  # noqa: BLE001 - a driver problem reads as no CUDA
        available, count = False, 0
    if not available or count == 0:
        raise InferenceError(f"--device {value}: CUDA is not available on this machine (use cpu)")
    if index is None:
        return "cuda"
    number = int(index)
    if number >= count:
        plural = "GPU" if count == 1 else "GPUs"
        raise InferenceError(f"--device {value}: this machine has {count} CUDA {plural} "
                             f"(cuda:0{'' if count == 1 else f' … cuda:{count - 1}'})")
    return f"cuda:{number}"


__all__ = ["parse_device"]
