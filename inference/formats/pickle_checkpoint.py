"""Policy for pickle checkpoints (`.ckpt`, `.pt`, `.pth`, `.bin`): refuse them, offer conversion.

Unpickling runs whatever code the file names, so opening a downloaded `.ckpt` is equivalent to
running a downloaded program. The engine never does that implicitly: every model path goes
through `check_not_pickle`, which recognises pickles by extension *and* by their first bytes (a
pickle renamed to `.safetensors` is still a pickle). The one explicit way in is
`convert_pickle_to_safetensors`, which loads with `torch.load(weights_only=True)` — torch's
restricted unpickler that only rebuilds tensors and plain containers — and writes a safetensors
file that is then opened like any other.
"""
from __future__ import annotations

import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from inference.errors import ModelFormatError
from inference.formats.safetensors_file import DTYPES, PathLike, save_tensors

from inference.formats.pickle_sniff import (  # noqa: F401 - re-exported
    _ZIP_MAGIC,
    PICKLE_EXTENSIONS,
    check_not_pickle,
    check_not_pickle_bytes,
    refusal_message,
    sniff_pickle,
)

# weights_only=True became torch.load's safe default in 2.6, after fixes to the restricted
# unpickler; older versions had known bypasses, so we refuse to convert with them.
MIN_TORCH_FOR_CONVERSION = (2, 6)


# --------------------------------------------------------------------------------------------
# Explicit conversion
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConversionReport:
    """What `convert_pickle_to_safetensors` wrote and what it left out."""

    dst: Path
    tensors: int
    dropped: tuple[str, ...]
    unwrapped_state_dict: bool


def _torch_version(text: str) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def _require_safe_torch(src: Path) -> None:
    if _torch_version(torch.__version__) < MIN_TORCH_FOR_CONVERSION:
        need = ".".join(map(str, MIN_TORCH_FOR_CONVERSION))
        raise ModelFormatError(f"{src.name}: converting pickle checkpoints needs torch >= {need} "
                               f"(found {torch.__version__}) for a safe weights-only load")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 160 else line[:159] + "…"


def _is_plain_tensor(value: object) -> bool:
    # Sparse, quantized or meta tensors cannot be written as a flat safetensors buffer.
    return (isinstance(value, torch.Tensor) and value.layout == torch.strided
            and not value.is_quantized and value.device.type != "meta"
            and value.dtype in DTYPES.values())


def convert_pickle_to_safetensors(src: PathLike, dst: PathLike) -> ConversionReport:
    """Convert a pickle checkpoint to safetensors using only torch's weights-only unpickler.

    A top-level `state_dict` entry is unwrapped (the usual Lightning/SD `.ckpt` layout); then
    only string-keyed, plain tensors are kept — step counters, optimizer settings and the like are
    dropped and listed in the report. Raises ModelFormatError when the checkpoint holds anything
    the weights-only loader refuses (i.e. anything that could run code), or has no tensors.
    """
    src, dst = Path(src), Path(dst)
    _require_safe_torch(src)
    if not src.is_file():
        raise ModelFormatError(f"{src.name}: file not found")
    if dst.exists() and dst.resolve() == src.resolve():
        raise ModelFormatError(f"{src.name}: destination is the source file itself")
    with open(src, "rb") as handle:
        is_zip = handle.read(4) in _ZIP_MAGIC
    try:
        # mmap keeps a multi-GB zip checkpoint out of RAM; the legacy format cannot be mapped.
        loaded = torch.load(src, weights_only=True, map_location="cpu", mmap=is_zip)
    except pickle.UnpicklingError as exc:
        raise ModelFormatError(f"{src.name}: refused: the checkpoint contains objects other than "
                               f"tensors and plain containers ({_first_line(exc)})") from None
    except Exception as exc:  # torch raises many types for damaged archives
        raise ModelFormatError(f"{src.name}: not a readable torch checkpoint "
                               f"({_first_line(exc)})") from None

    unwrapped = isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict)
    if unwrapped:
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict):
        raise ModelFormatError(f"{src.name}: checkpoint holds a {type(loaded).__name__}, "
                               "not a mapping of tensor names to tensors")
    kept = {k: v for k, v in loaded.items() if isinstance(k, str) and _is_plain_tensor(v)}
    dropped = tuple(str(k) for k in loaded if k not in kept)
    if not kept:
        raise ModelFormatError(f"{src.name}: checkpoint contains no tensors to convert")
    save_tensors(kept, dst, metadata={"format": "pt", "converted_from": src.name})
    return ConversionReport(dst=dst, tensors=len(kept), dropped=dropped,
                            unwrapped_state_dict=unwrapped)


__all__ = [
    "ConversionReport", "MIN_TORCH_FOR_CONVERSION", "PICKLE_EXTENSIONS", "check_not_pickle",
    "check_not_pickle_bytes", "convert_pickle_to_safetensors", "refusal_message", "sniff_pickle",
]
