"""Strict, torch-free validation of a `.safetensors` header (see `safetensors_file` for why).

The header is validated completely — JSON syntax, every tensor entry, and the byte layout of the
whole data buffer — before a single tensor byte is read, so a hostile or damaged file fails fast
with one clear line. Reading tensors (which needs torch) lives in `safetensors_file`.
"""
from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Union

from inference.errors import ModelFormatError

PathLike = Union[str, "os.PathLike[str]"]

# The same limit the safetensors library uses: real headers are a few hundred kB at most.
MAX_HEADER_BYTES = 100_000_000
METADATA_KEY = "__metadata__"
_ENTRY_FIELDS = frozenset({"dtype", "shape", "data_offsets"})
_MAX_BYTES = 2**64  # no real file is larger; byte-size arithmetic stops here


# Code → (byte size of one element, torch dtype attribute). Reading a header needs only the sizes,
# so this module imports no torch: model inspection (`inference.api`) runs without it.
DTYPE_CODES: dict[str, tuple[int, str]] = {
    "F64": (8, "float64"), "F32": (4, "float32"), "F16": (2, "float16"), "BF16": (2, "bfloat16"),
    "I64": (8, "int64"), "I32": (4, "int32"), "I16": (2, "int16"), "I8": (1, "int8"),
    "U64": (8, "uint64"), "U32": (4, "uint32"), "U16": (2, "uint16"), "U8": (1, "uint8"),
    "BOOL": (1, "bool"), "C64": (8, "complex64"),
    "F8_E4M3": (1, "float8_e4m3fn"), "F8_E4M3FNUZ": (1, "float8_e4m3fnuz"),
    "F8_E5M2": (1, "float8_e5m2"), "F8_E5M2FNUZ": (1, "float8_e5m2fnuz"),
    "F8_E8M0": (1, "float8_e8m0fnu"),
}
# Sub-byte codes (F4, F6_*) are deliberately absent: no model we run uses them and their byte
# size is not shape × itemsize, so they would need a second set of layout rules.


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
    def torch_dtype(self):  # -> torch.dtype; torch is imported only by callers that read tensors
        from inference.formats.safetensors_file import torch_dtype_of

        return torch_dtype_of(self.dtype)


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
    if not isinstance(dtype, str) or dtype not in DTYPE_CODES:
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

    needed = _byte_size(shape, DTYPE_CODES[dtype][0])
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
    # Imported here because pickle_sniff imports this module (for MAX_HEADER_BYTES).
    from inference.formats.pickle_sniff import check_not_pickle_bytes

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


