"""Recognising pickle checkpoints without opening them (torch-free).

Unpickling runs whatever code the file names, so the engine never does it implicitly: every model
path goes through `check_not_pickle`, which recognises pickles by extension *and* by their first
bytes (a pickle renamed to `.safetensors` is still a pickle). Conversion lives in
`pickle_checkpoint`.
"""
from __future__ import annotations

import struct
from pathlib import Path

from inference.errors import ModelFormatError
from inference.formats.safetensors_header import MAX_HEADER_BYTES, PathLike

PICKLE_EXTENSIONS = frozenset({".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle"})
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # torch.save's default format is a zip archive
_HEAD_BYTES = 16


def sniff_pickle(head: bytes, file_size: int) -> str | None:
    """'zip' or 'pickle' when the first bytes say so, else None.

    A real safetensors file can by chance start with 0x80 0x02 (a header length whose low bytes
    are 0x0280), so anything that is plausible as safetensors — a sane length followed by '{' —
    is never called a pickle. Plain protocol 0/1 pickles have no magic; they simply fail the
    safetensors header check, and are never unpickled either way.
    """
    if len(head) >= 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        if 2 <= header_len <= min(MAX_HEADER_BYTES, file_size - 8) and head[8:9] == b"{":
            return None
    if head[:4] in _ZIP_MAGIC:
        return "zip"
    # Protocols 2–5 start with the PROTO opcode; torch.save's legacy format uses protocol 2.
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    return None


def refusal_message(path: PathLike) -> str:
    name = Path(path).name
    stem = Path(name).stem or name
    # A pickle already named .safetensors needs a different output name in the example.
    converted = ".converted" if name.endswith(".safetensors") else ""
    target = f"{stem}{converted}.safetensors"
    return (f"{name}: pickle checkpoints can run code when loaded and are not opened; convert it "
            f"to .safetensors first (e.g. with `python -m inference convert {name} {target}`)")


def check_not_pickle_bytes(path: PathLike, head: bytes, file_size: int) -> None:
    """Raise ModelFormatError if `head` (the file's first bytes) is a pickle or zip checkpoint."""
    if sniff_pickle(head, file_size) is not None:
        raise ModelFormatError(refusal_message(path))


def check_not_pickle(path: PathLike) -> None:
    """Raise ModelFormatError for a pickle checkpoint, judged by extension and by content.

    Reads at most 16 bytes; a missing file is left for the real loader to report.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(_HEAD_BYTES)
            file_size = handle.seek(0, 2)
    except OSError:
        head, file_size = b"", 0
    if path.suffix.lower() in PICKLE_EXTENSIONS:
        if head and sniff_pickle(head, file_size) is None and head[8:9] == b"{":
            # Some tools save safetensors data under a .bin name; tell the user the cheap fix.
            raise ModelFormatError(f"{path.name}: looks like safetensors data under a pickle "
                                   f"extension; rename it to {path.stem}.safetensors")
        raise ModelFormatError(refusal_message(path))
    check_not_pickle_bytes(path, head, file_size)
