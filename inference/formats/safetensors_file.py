"""Strict reading and atomic writing of `.safetensors` model files.

The header is validated completely — JSON syntax, every tensor entry, and the byte layout of the
whole data buffer — before a single tensor byte is read or any tensor memory is allocated, so a
hostile or damaged file fails fast with one clear line instead of an allocation of whatever size
its header claims.

Why our own validator when the `safetensors` library already checks files: the library is
deliberately lenient in places that matter to us. It accepts a header that starts with
whitespace and silently keeps the last of duplicated keys, so two programs could read the same
file as different models. We reject both.

Why tensors are then read with positional reads from the file handle we validated, not with
`safetensors.safe_open` or an mmap: the bytes we read are exactly the bytes we checked (the same
open handle, so replacing the file on disk in between cannot swap in other content), each tensor
costs one copy straight from the page cache into its own storage (or, when it is about to be cast
or moved to a GPU anyway, into one reused host buffer), and no mapping outlives the call. A live
mmap locks the file on Windows, which would stop the editor from deleting or replacing a model it
has loaded, and on every OS turns a file truncated on disk into a SIGBUS crash on next access. The
price is that a plain CPU load pays for first-touch page faults that a zero-copy mmap would defer.
"""
from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

import torch

from inference.formats.safetensors_header import (  # noqa: F401 - re-exported: the public reading API
    DTYPE_CODES,
    MAX_HEADER_BYTES,
    METADATA_KEY,
    PathLike,
    SafetensorsHeader,
    TensorInfo,
    _fail,
    _fill,
    _open,
    _read_header_from,
    _short,
    read_header,
    tensor_shapes,
)


def _build_dtype_table() -> dict[str, torch.dtype]:
    # getattr, not attribute access: older torch builds lack the unsigned and some fp8 types,
    # and a file using one of them should get a clean "unsupported dtype" rather than a crash.
    table: dict[str, torch.dtype] = {}
    for code, (_, attr) in DTYPE_CODES.items():
        dtype = getattr(torch, attr, None)
        if isinstance(dtype, torch.dtype):
            table[code] = dtype
    return table


DTYPES: dict[str, torch.dtype] = _build_dtype_table()
_CODE_OF_DTYPE: dict[torch.dtype, str] = {v: k for k, v in DTYPES.items()}


def torch_dtype_of(code: str) -> torch.dtype:
    """The torch dtype of a safetensors code; a one-line error when this torch build lacks it."""
    try:
        return DTYPES[code]
    except KeyError:
        from inference.errors import ModelFormatError

        raise ModelFormatError(f"tensor dtype {code} is not supported by this PyTorch build") from None


# --------------------------------------------------------------------------------------------
# Tensor reading
# --------------------------------------------------------------------------------------------


def _read_tensor(handle: BinaryIO, path: Path, name: str, info: TensorInfo, data_start: int,
                 staging: torch.Tensor | None = None) -> torch.Tensor:
    """Fill one tensor from the file (the only place tensor memory is allocated).

    With `staging` (a uint8 tensor of at least `info.nbytes`) the bytes land there and the
    result is a view of it, valid only until the next read; the caller must copy it.
    """
    raw = torch.empty(info.nbytes, dtype=torch.uint8) if staging is None else staging[: info.nbytes]
    if info.nbytes:
        # numpy gives a writable buffer over the tensor's storage, so readinto copies the file
        # bytes directly into place.
        handle.seek(data_start + info.begin)
        if _fill(handle, memoryview(raw.numpy())) != info.nbytes:
            raise _fail(path, f"file changed while tensor {_short(name)} was being read")
    tensor = raw.view(info.torch_dtype).reshape(info.shape)
    if sys.byteorder != "little":  # the format is little-endian; only matters on exotic hosts
        tensor = torch.from_numpy(tensor.numpy().byteswap())
    return tensor


def _needs_cast(info: TensorInfo, dtype: torch.dtype | None) -> bool:
    return dtype is not None and info.torch_dtype.is_floating_point and info.torch_dtype != dtype


def _place(tensor: torch.Tensor, device: torch.device, dtype: torch.dtype | None) -> torch.Tensor:
    if dtype is None or not tensor.is_floating_point() or tensor.dtype == dtype:
        return tensor.to(device)
    # Convert on the side where the tensor is smaller: narrowing before a host→device copy and
    # widening after it both move fewer bytes.
    if dtype.itemsize <= tensor.dtype.itemsize:
        return tensor.to(dtype).to(device)
    return tensor.to(device).to(dtype)


def _plan(header: SafetensorsHeader, keys: Iterable[str] | None,
          rename: Callable[[str], str | None] | None) -> list[tuple[str, str, TensorInfo]]:
    """Resolve which tensors to read and their output names before reading any of them."""
    path = header.path
    if keys is None:
        wanted = list(header.tensors)
    else:
        wanted = list(dict.fromkeys(keys))
        missing = [k for k in wanted if k not in header.tensors]
        if missing:
            shown = ", ".join(_short(k) for k in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise _fail(path, f"missing tensor(s) {shown}{more}")
    plan: list[tuple[str, str, TensorInfo]] = []
    source_of: dict[str, str] = {}
    for name in wanted:
        new_name = rename(name) if rename is not None else name
        if new_name is None:
            continue
        if new_name in source_of:
            raise _fail(path, f"tensors {_short(source_of[new_name])} and {_short(name)} "
                              f"both map to {_short(new_name)}")
        source_of[new_name] = name
        plan.append((name, new_name, header.tensors[name]))
    # File order makes the reads sequential, which is what disks and the page cache like best.
    plan.sort(key=lambda item: item[2].begin)
    return plan


def iter_tensors(path: PathLike, *, device: str | torch.device = "cpu",
                 dtype: torch.dtype | None = None, keys: Iterable[str] | None = None,
                 rename: Callable[[str], str | None] | None = None
                 ) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield `(name, tensor)` one at a time, after validating the whole file.

    `keys` restricts reading to those tensor names (all must exist). `rename` maps each file
    name to the name to yield, or to None to skip the tensor without reading it. `dtype` casts
    floating-point tensors only; integer and bool tensors keep their type. Holding only one
    tensor at a time lets a converter build its model without a second full copy in memory.
    """
    path = Path(path)
    target = torch.device(device)
    handle = _open(path)
    with handle:
        # Validation errors surface on the first next(), before anything is allocated.
        header = _read_header_from(handle, path)
        plan = _plan(header, keys, rename)
        # When the tensor is copied anyway (to another device, or by a cast) the file bytes go
        # through one reused host buffer: fresh memory costs a page fault per 4 kB on first
        # touch, which is most of the time of a copy from the page cache.
        copied = [info.nbytes for _, _, info in plan
                  if target.type != "cpu" or _needs_cast(info, dtype)]
        staging = torch.empty(max(copied), dtype=torch.uint8) if copied else None
        for file_name, out_name, info in plan:
            reuse = target.type != "cpu" or _needs_cast(info, dtype)
            tensor = _read_tensor(handle, path, file_name, info, header.data_start,
                                  staging if reuse else None)
            yield out_name, _place(tensor, target, dtype)


def load_tensors(path: PathLike, *, device: str | torch.device = "cpu",
                 dtype: torch.dtype | None = None, keys: Iterable[str] | None = None,
                 rename: Callable[[str], str | None] | None = None) -> dict[str, torch.Tensor]:
    """Validate `path`, then read its tensors (see `iter_tensors` for the options)."""
    return dict(iter_tensors(path, device=device, dtype=dtype, keys=keys, rename=rename))


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _prepare_for_save(path: Path, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # The library refuses tensors that share storage (tied weights, views of one checkpoint
    # buffer); such tensors are cloned so each name gets its own bytes in the file.
    seen: set[tuple[int, int]] = set()
    prepared: dict[str, torch.Tensor] = {}
    for name, tensor in tensors.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise _fail(path, f"cannot save entry {_short(name)}: expected str name and tensor")
        if tensor.dtype not in _CODE_OF_DTYPE:
            raise _fail(path, f"cannot save tensor {_short(name)}: "
                              f"unsupported dtype {tensor.dtype}")
        tensor = tensor.detach().to("cpu").contiguous()
        storage = tensor.untyped_storage()
        key = (storage.data_ptr(), storage.nbytes())
        if storage.nbytes() and key in seen:
            tensor = tensor.clone()
        elif storage.nbytes():
            seen.add(key)
        # A view that covers only part of its storage is copied for the same reason.
        if tensor.untyped_storage().nbytes() != tensor.nbytes:
            tensor = tensor.clone()
        prepared[name] = tensor
    return prepared


def save_tensors(tensors: Mapping[str, torch.Tensor], path: PathLike,
                 metadata: Mapping[str, str] | None = None) -> None:
    """Write `tensors` to `path` atomically: a temp file in the same folder, then a rename.

    A crash or full disk midway therefore never leaves a half-written model under the real
    name. The result is re-read with our own strict header check, so everything we write is
    something we will also open.
    """
    from safetensors.torch import save_file  # only writers need the library

    path = Path(path)
    prepared = _prepare_for_save(path, tensors)
    if metadata is not None and not all(isinstance(k, str) and isinstance(v, str)
                                        for k, v in metadata.items()):
        raise _fail(path, "metadata must map strings to strings")
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        save_file(prepared, str(tmp), metadata=dict(metadata) if metadata is not None else None)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())  # the rename must not become durable before the data
        read_header(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def dtype_code(dtype: torch.dtype) -> str:
    """The safetensors code ("F16", "BF16"…) for a torch dtype."""
    try:
        return _CODE_OF_DTYPE[dtype]
    except KeyError:
        raise ValueError(f"{dtype} has no safetensors dtype code") from None


__all__ = [
    "DTYPES", "MAX_HEADER_BYTES", "SafetensorsHeader", "TensorInfo", "dtype_code",
    "iter_tensors", "load_tensors", "read_header", "save_tensors", "tensor_shapes",
]
