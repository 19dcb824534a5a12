"""GGUF files of FLUX.1 transformers (city96 / ComfyUI-GGUF): read with the `gguf` package.

Such a file holds the transformer only, under BFL's key names (sometimes still prefixed
`model.diffusion_model.`), big matrices as GGML blocks (Q8_0, Q5_K, Q4_K, Q4_0…) and small
tensors (norm scales, biases, sometimes the input/output projections) as F32/F16/BF16.
GGUF stores dimensions innermost first: the torch shape is the reversed `shape`. ComfyUI-GGUF
writes the true shape of tensors it had to flatten as `comfy.gguf.orig_shape.<name>` metadata.

This module is torch-free (numpy memory maps), so `read_model_info` can describe a GGUF file;
`gguf_state` (torch) turns it into tensors and `quant.Compressed` blocks for the loader.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ModelFormatError, UnsupportedModelError

# GGML types we decode (quant.BLOCKS, kept in step by a test) and plain float types.
QUANTISED = ("Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K")
PLAIN = ("F32", "F16", "BF16")
FLUX_MARKER = "double_blocks.0.img_attn.qkv.weight"
PREFIXES = ("model.diffusion_model.", "diffusion_model.")
_ORIG_SHAPE = "comfy.gguf.orig_shape."


@dataclass(frozen=True)
class GGUFTensor:
    name: str  # prefix stripped
    qtype: str  # GGML type name
    shape: tuple[int, ...]  # torch order (outermost first)
    data: np.ndarray  # a read-only view of the file: uint8 blocks, or float values

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass
class GGUFFile:
    path: Path
    architecture: str | None
    tensors: dict[str, GGUFTensor] = field(default_factory=dict)
    metadata: dict[str, object] = field(default_factory=dict)

    def type_counts(self) -> dict[str, int]:
        """Tensors per GGML type, e.g. {"Q4_K": 300, "F32": 470}."""
        return dict(sorted(Counter(t.qtype for t in self.tensors.values()).items()))

    @property
    def is_flux(self) -> bool:
        return FLUX_MARKER in self.tensors


def _require_gguf():
    try:
        import gguf
    except ImportError:  # an optional dependency: say which one
        raise UnsupportedModelError("reading .gguf files needs the `gguf` package (pip install gguf)") from None
    return gguf


def _field_value(reader, name: str) -> object:
    """A scalar, string or list metadata value (the reader keeps them as raw parts)."""
    entry = reader.fields.get(name)
    if entry is None or not entry.data:
        return None
    try:
        return entry.contents()
    except Exception:  # noqa: BLE001 - older gguf releases lack contents(): decode by hand
        parts = [entry.parts[i] for i in entry.data]
        values = [bytes(p).decode("utf-8", "replace") if p.dtype == np.uint8 else p.tolist()[0] for p in parts]
        return values[0] if len(values) == 1 else values


def _strip(name: str) -> str:
    for prefix in PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def read_gguf(path: str | Path) -> GGUFFile:
    """The tensor table of a GGUF file (data stays memory-mapped, nothing is decoded).
    Any damage (wrong magic, truncation, an unknown type id, sizes that do not add up) is one
    `ModelFormatError` naming the file."""
    path = Path(path)
    gguf = _require_gguf()
    try:
        reader = gguf.GGUFReader(str(path), "r")
    except (ValueError, IndexError, KeyError, OverflowError, TypeError, UnicodeDecodeError) as exc:
        raise ModelFormatError(f"{path.name}: not a readable GGUF file ({str(exc)[:120] or type(exc).__name__})") from None
    except OSError as exc:
        raise ModelFormatError(f"{path.name}: cannot read the file ({exc.strerror or exc})") from None
    architecture = _field_value(reader, "general.architecture")
    out = GGUFFile(path=path, architecture=architecture if isinstance(architecture, str) else None)
    for key in reader.fields:
        if key.startswith(("general.", "comfy.", "canvasai.")):
            out.metadata[key] = _field_value(reader, key)
    for tensor in reader.tensors:
        qtype = tensor.tensor_type.name
        name = _strip(tensor.name)
        shape = tuple(int(d) for d in reversed(tensor.shape.tolist()))
        original = out.metadata.get(_ORIG_SHAPE + tensor.name)
        if original is not None:
            if not isinstance(original, list) or not all(isinstance(d, int) and d > 0 for d in original) \
                    or int(np.prod(original)) != int(np.prod(shape)):
                raise ModelFormatError(f"{path.name}: {tensor.name}: orig_shape {original!r:.60} does not "
                                       f"hold its {int(np.prod(shape))} values")
            shape = tuple(original)
        if qtype not in QUANTISED + PLAIN:
            raise UnsupportedModelError(f"{path.name}: tensor {tensor.name} is {qtype}, which the engine does not "
                                        f"decode (supported: {', '.join(QUANTISED + PLAIN)})")
        expected = _nbytes(gguf, tensor.tensor_type, shape)
        if expected is None or tensor.data.nbytes != expected:
            raise ModelFormatError(f"{path.name}: tensor {tensor.name} ({qtype}, shape {shape}) has "
                                   f"{tensor.data.nbytes} bytes of data, expected {expected} (truncated or damaged)")
        if name in out.tensors:
            raise ModelFormatError(f"{path.name}: tensor {name} appears twice (with and without a prefix)")
        out.tensors[name] = GGUFTensor(name, qtype, shape, tensor.data)
    return out


def _nbytes(gguf, qtype, shape: tuple[int, ...]) -> int | None:
    """Bytes a tensor of `shape` takes in `qtype`; None when rows do not split into whole blocks."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    if not shape or shape[-1] % block:
        return None if shape else size // block
    return int(np.prod(shape, dtype=np.int64)) // block * size


def read_flux_gguf(path: str | Path) -> GGUFFile:
    """`read_gguf`, refusing a file that is not a FLUX.1 transformer in one line."""
    contents = read_gguf(path)
    if not contents.is_flux:
        arch = f" (general.architecture={contents.architecture})" if contents.architecture else ""
        raise UnsupportedModelError(f"{Path(path).name}: a GGUF file without FLUX.1 transformer keys{arch}; "
                                    "the engine runs GGUF FLUX.1 transformers only")
    return contents
