"""The house trainer's checkpoint files (`vae.pt`, `unet.pt`, `preview.pt`, `latents.pt`, `pairs.pt`).

They hold only what torch's weights-only unpickler accepts — tensors, state dicts, optimiser state
dicts, and plain dicts/lists/tuples/ints/floats/strings/bools/None — so they are always read with
`torch.load(weights_only=True)`: a `.pt` passed to `python -m training.house export --ckpt` or
`ceiling --vae` cannot run code however it was crafted. Every problem with such a file is one
ModelFormatError line naming the file.
"""
from __future__ import annotations

import pickle
import re
from collections import OrderedDict
from pathlib import Path

import torch

from inference.errors import ModelFormatError

_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")
# Exact types: a numpy float is a float subclass that torch pickles as a numpy object.
_PLAIN = frozenset({dict, OrderedDict, list, tuple, str, int, float, bool, type(None)})


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    line = lines[0] if lines else type(exc).__name__
    line = re.sub(r"\x1b\[[0-9;]*m", "", line)
    return line if len(line) <= 160 else line[:159] + "…"


def check_plain(value: object, where: str = "checkpoint") -> None:
    """TypeError unless `value` is made only of types the weights-only unpickler accepts."""
    stack = [(value, where)]
    while stack:
        item, path = stack.pop()
        if type(item) not in _PLAIN and not isinstance(item, torch.Tensor):
            raise TypeError(f"{path} is a {type(item).__name__}: house checkpoints hold only tensors "
                            "and plain dicts/lists/numbers/strings")
        if isinstance(item, dict):
            stack.extend((v, f"{path}[{k!r}]") for k, v in item.items())
        elif isinstance(item, (list, tuple)):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(item))


def save_checkpoint(path: Path, **items) -> None:
    """Write `items` atomically (temp file, then rename); refuses anything weights-only cannot read."""
    check_plain(items, path.name)
    tmp = path.with_suffix(".tmp")
    torch.save(items, tmp)
    tmp.replace(path)


def load_checkpoint(path: str | Path, required: bool = False) -> dict | None:
    """A house checkpoint as a dict, or None when the file does not exist (unless `required`)."""
    path = Path(path)
    if not path.exists():
        if required:
            raise ModelFormatError(f"{path}: no such checkpoint")
        return None
    if path.is_dir():
        raise ModelFormatError(f"{path}: is a folder, not a checkpoint file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _GLOBAL.search(str(exc))
        what = f"it holds {found.group(1)}" if found else _first_line(exc)
        raise ModelFormatError(f"{path}: refused: {what}; house checkpoints hold only tensors and plain "
                               "values (loaded weights-only, nothing in the file was run)") from None
    except Exception as exc:  # torch raises many types for damaged or foreign files
        raise ModelFormatError(f"{path}: not a readable torch checkpoint ({_first_line(exc)})") from None
    if not isinstance(data, dict):
        raise ModelFormatError(f"{path}: holds a {type(data).__name__}, not a house checkpoint dict")
    return data


def entry(checkpoint: dict, key: str, path: str | Path, kind: type | tuple[type, ...] = dict):
    """`checkpoint[key]`, or a ModelFormatError naming the file and the missing or mistyped entry.
    With a number kind, a one-element tensor is read as its Python number."""
    if key not in checkpoint:
        raise ModelFormatError(f"{path}: not a house checkpoint (no {key!r} entry)")
    value = checkpoint[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, torch.Tensor) and value.numel() == 1 and (float in kinds or int in kinds):
        value = value.item()
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        expected = " or ".join(k.__name__ for k in kinds)
        raise ModelFormatError(f"{path}: entry {key!r} is a {type(value).__name__}, expected {expected}")
    return value


def load_state(module: torch.nn.Module, state: dict, path: str | Path, key: str) -> None:
    """`module.load_state_dict(state)`, with one ModelFormatError line naming the file, the entry and
    the first missing, unexpected or mis-shaped tensor."""
    expected = module.state_dict()
    problem = None
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing:
        problem = f"{len(missing)} missing tensors, e.g. {missing[0]!r}"
    elif unexpected:
        problem = f"{len(unexpected)} unexpected entries, e.g. {str(unexpected[0])!r}"
    else:
        for k, ref in expected.items():
            value = state[k]
            if not isinstance(value, torch.Tensor):
                problem = f"{k!r} is a {type(value).__name__}, not a tensor"
            elif tuple(value.shape) != tuple(ref.shape):
                problem = f"{k!r} has shape {tuple(value.shape)}, expected {tuple(ref.shape)}"
            if problem:
                break
    if problem is None:
        try:
            module.load_state_dict(state)
        except (RuntimeError, TypeError, ValueError, AttributeError) as exc:
            problem = _first_line(exc)
    if problem:
        raise ModelFormatError(f"{path}: {key!r} does not fit the house model ({problem})")
