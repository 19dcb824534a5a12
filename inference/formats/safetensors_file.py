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

import json
import os
import struct
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Union

import torch

from inference.errors import ModelFormatError

PathLike = Union[str, "os.PathLike[str]"]

# The same limit the safetensors library uses: real headers are a few hundred kB at most.
MAX_HEADER_BYTES = 100_000_000
METADATA_KEY = "__metadata__"
_ENTRY_FIELDS = frozenset({"dtype", "shape", "data_offsets"})
_MAX_BYTES = 2**64  # no real file is larger; byte-size arithmetic stops here


def _build_dtype_table() -> dict[str, torch.dtype]:
    # getattr, not attribute access: older torch builds lack the unsigned and some fp8 types,
    # and a file using one of them should get a clean "unsupported dtype" rather than a crash.
    names = {
        "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
        "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8",
        "U64": "uint64", "U32": "uint32", "U16": "uint16", "U8": "uint8",
        "BOOL": "bool", "C64": "complex64",
        "F8_E4M3": "float8_e4m3fn", "F8_E4M3FNUZ": "float8_e4m3fnuz",
        "F8_E5M2": "float8_e5m2", "F8_E5M2FNUZ": "float8_e5m2fnuz",
        "F8_E8M0": "float8_e8m0fnu",
    }
    table: dict[str, torch.dtype] = {}
    for code, attr in names.items():
        dtype = getattr(torch, attr, None)
        if isinstance(dtype, torch.dtype):
            table[code] = dtype
    return table


# Sub-byte codes (F4, F6_*) are deliberately absent: no model we run uses them and their byte
# size is not shape × itemsize, so they would need a second set of layout rules.
DTYPES: dict[str, torch.dtype] = _build_dtype_table()
_CODE_OF_DTYPE: dict[torch.dtype, str] = {v: k for k, v in DTYPES.items()}


@dataclass(frozen=True)
class TensorInfo:
    """One header entry. `begin`/`end` are byte offsets relative to the start of the data buffer."""

    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]


@dataclass(frozen=True)
class SafetensorsHeader:
    """A fully validated header. `data_start` is the absolute file offset of the data buffer."""

    path: Path
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str] = field(default_factory=dict)
    data_start: int = 8
    file_size: int = 8


# --------------------------------------------------------------------------------------------
# Header validation
# --------------------------------------------------------------------------------------------


def _fail(path: Path, problem: str) -> ModelFormatError:
    return ModelFormatError(f"{path.name}: {problem}")


def _short(value: object, limit: int = 60) -> str:
    # Error messages must stay one readable line even when the offending value is huge.
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _pairs_no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    # The library keeps the last of duplicated keys; two readers could disagree on what the file
    # contains, so any duplicate at any nesting level is an error for us.
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _reject_constant(name: str) -> object:
    # Python's json accepts NaN/Infinity, which are not JSON and never appear in valid headers.
    raise ValueError(f"non-standard JSON constant {name}")


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs_no_duplicates, parse_constant=_reject_constant)
# The format allows padding after the JSON object (the library pads with spaces to 8 bytes).
_PADDING = frozenset(b" \t\r\n")


def _parse_json(path: Path, raw: bytes | bytearray) -> object:
    if raw[:1] in (b" ", b"\t", b"\r", b"\n"):
        raise _fail(path, "header starts with whitespace; it must start with '{'")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(path, f"header is not valid UTF-8 (byte {exc.start})") from None
    try:
        value, end = _DECODER.raw_decode(text)
    except _DuplicateKey as exc:
        raise _fail(path, f"header has duplicate key {_short(exc.key)}") from None
    except (ValueError, RecursionError) as exc:
        raise _fail(path, f"header is not valid JSON ({str(exc).splitlines()[0]})") from None
    if any(ord(ch) not in _PADDING for ch in text[end:]):
        raise _fail(path, f"header has unexpected bytes after the JSON object (at byte {end})")
    return value


def _is_count(value: object) -> bool:
    # bool is a subclass of int in Python; `true` is not a valid dimension or offset.
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _byte_size(shape: tuple[int, ...], itemsize: int) -> int | None:
    """prod(shape) * itemsize, or None once it passes 2**64 bytes (no file is that large).

    Python ints cannot overflow, but stopping early keeps a hostile shape (thousands of huge
    dimensions) from making us build enormous integers.
    """
    if 0 in shape:
        return 0
    total = itemsize
    for dim in shape:
        total *= dim
        if total > _MAX_BYTES:
            return None
    return total


def _check_text(path: Path, text: str, what: str) -> None:
    # Python's json turns "\ud800" escapes into lone surrogates that no UTF-8 writer (nor the
    # safetensors library) accepts; such a name could never be saved back.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _fail(path, f"{what} {_short(text)} contains an invalid unicode escape") from None


def _parse_entry(path: Path, name: str, entry: object, data_len: int) -> TensorInfo:
    label = f"tensor {_short(name)}"
    _check_text(path, name, "tensor name")
    if not isinstance(entry, dict):
        raise _fail(path, f"{label} entry is not a JSON object")
    missing = _ENTRY_FIELDS - entry.keys()
    if missing:
        raise _fail(path, f"{label} is missing field(s) {', '.join(sorted(missing))}")
    extra = entry.keys() - _ENTRY_FIELDS
    if extra:
        raise _fail(path, f"{label} has unexpected field(s) {_short(sorted(extra))}")

    dtype = entry["dtype"]
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise _fail(path, f"{label} has unknown dtype {_short(dtype)}")

    raw_shape = entry["shape"]
    if not isinstance(raw_shape, list) or not all(_is_count(d) for d in raw_shape):
        raise _fail(path, f"{label} has invalid shape {_short(raw_shape)}: "
                          "expected a list of non-negative integers")
    shape = tuple(raw_shape)

    offsets = entry["data_offsets"]
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)):
        raise _fail(path, f"{label} has invalid data_offsets {_short(offsets)}: "
                          "expected [begin, end] as non-negative integers")
    begin, end = offsets
    if end < begin:
        raise _fail(path, f"{label} data_offsets end {end} is before begin {begin}")

    needed = _byte_size(shape, DTYPES[dtype].itemsize)
    if needed != end - begin:
        want = "more than 2**64 bytes" if needed is None else f"{needed} bytes"
        raise _fail(path, f"{label} byte size mismatch: data_offsets give {end - begin} bytes "
                          f"but shape {list(shape)} of {dtype} needs {want}")
    return TensorInfo(dtype=dtype, shape=shape, begin=begin, end=end)


def _parse_metadata(path: Path, value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _fail(path, f"{METADATA_KEY} is not a mapping of strings to strings")
    for key, item in value.items():
        if not isinstance(item, str):
            raise _fail(path, f"{METADATA_KEY} value for {_short(key)} is not a string "
                              f"({type(item).__name__})")
        _check_text(path, key, f"{METADATA_KEY} key")
        _check_text(path, item, f"{METADATA_KEY} value")
    return dict(value)


def _check_layout(path: Path, tensors: Mapping[str, TensorInfo], data_len: int) -> None:
    # The buffer must be tiled exactly: starting at 0, no overlap (two names sharing bytes could
    # alias weights), no gaps (hidden payload) and nothing after the last tensor.
    ordered = sorted(tensors.items(), key=lambda item: (item[1].begin, item[1].end))
    position, previous = 0, None
    for name, info in ordered:
        if info.begin != position:
            if previous is None:
                problem = f"data of tensor {_short(name)} starts at byte {info.begin}, not 0"
            elif info.begin < position:
                problem = f"tensors {_short(previous)} and {_short(name)} overlap"
            else:
                problem = (f"gap of {info.begin - position} bytes between tensors "
                           f"{_short(previous)} and {_short(name)}")
            raise _fail(path, problem)
        position, previous = info.end, name
    if position > data_len:
        raise _fail(path, f"file is truncated: tensor data needs {position} bytes "
                          f"but only {data_len} are present")
    if position < data_len:
        raise _fail(path, f"{data_len - position} trailing bytes after the last tensor")


def _fill(handle: BinaryIO, view: memoryview) -> int:
    """Read into `view` until it is full or the file ends; returns the bytes read."""
    # An unbuffered read may legally return fewer bytes than asked for, so loop.
    filled = 0
    while filled < len(view):
        count = handle.readinto(view[filled:])
        if not count:
            break
        filled += count
    return filled


def _refuse_if_pickle(path: Path, head: bytes, file_size: int) -> None:
    # Imported here because pickle_checkpoint imports this module (for save_tensors).
    from inference.formats.pickle_checkpoint import check_not_pickle_bytes

    check_not_pickle_bytes(path, head, file_size)


def _read_header_from(handle: BinaryIO, path: Path) -> SafetensorsHeader:
    file_size = os.fstat(handle.fileno()).st_size
    if file_size == 0:
        raise _fail(path, "file is empty")
    head = handle.read(16)
    if file_size < 8 or len(head) < 8:
        raise _fail(path, f"file is too short to be safetensors ({file_size} bytes)")
    (header_len,) = struct.unpack("<Q", head[:8])
    if (header_len > MAX_HEADER_BYTES or header_len > file_size - 8
            or head[8:9] not in (b"{", b" ", b"\t", b"\r", b"\n")):
        # A pickle or zip checkpoint lands here; say so rather than report a nonsense length.
        _refuse_if_pickle(path, head, file_size)
    if header_len > MAX_HEADER_BYTES:
        raise _fail(path, f"header length {header_len} bytes exceeds the "
                          f"{MAX_HEADER_BYTES // 1_000_000} MB limit")
    if header_len > file_size - 8:
        raise _fail(path, f"header length {header_len} bytes runs past the end of the file "
                          f"({file_size} bytes)")
    if header_len < 2:
        raise _fail(path, f"header length {header_len} bytes is too short for a JSON object")

    handle.seek(8)
    raw = bytearray(header_len)
    if _fill(handle, memoryview(raw)) != header_len:
        raise _fail(path, "file changed while its header was being read")
    parsed = _parse_json(path, raw)
    if not isinstance(parsed, dict):
        raise _fail(path, f"header is a JSON {type(parsed).__name__}, not an object")

    data_start = 8 + header_len
    data_len = file_size - data_start
    metadata: dict[str, str] = {}
    tensors: dict[str, TensorInfo] = {}
    for name, entry in parsed.items():
        if name == METADATA_KEY:
            metadata = _parse_metadata(path, entry)
        else:
            tensors[name] = _parse_entry(path, name, entry, data_len)
    _check_layout(path, tensors, data_len)
    return SafetensorsHeader(path=path, tensors=tensors, metadata=metadata,
                             data_start=data_start, file_size=file_size)


def _open(path: Path) -> BinaryIO:
    try:
        # Unbuffered: we read whole tensors straight into their storage, a buffer only copies.
        return open(path, "rb", buffering=0)  # noqa: SIM115 - closed by the caller
    except OSError as exc:
        raise _fail(path, f"cannot open file ({exc.strerror or exc})") from None


def read_header(path: PathLike) -> SafetensorsHeader:
    """Validate the whole header of `path` and its data layout; reads only 8 + header bytes."""
    path = Path(path)
    with _open(path) as handle:
        return _read_header_from(handle, path)


def tensor_shapes(path: PathLike) -> dict[str, tuple[int, ...]]:
    """Tensor name → shape, straight from the validated header; never touches tensor data."""
    return {name: info.shape for name, info in read_header(path).tensors.items()}


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
