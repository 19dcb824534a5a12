"""Keep image decoders from printing ahead of our one-line errors.

Decoders talk on two channels besides their exceptions:

* Python warnings from Pillow (``DecompressionBombWarning``, "Corrupt EXIF data", palette
  transparency notes...), which Python prints as two lines on stderr;
* the C libraries' own stderr output: libpng (inside OpenCV: "libpng error: PNG input buffer is
  incomplete", "libpng warning: iCCP: known incorrect sRGB profile"), libtiff ("tempfile.tif:
  Using code not yet in table."), libjpeg inside libtiff ("JPEGLib: Unsupported marker type").

:func:`decoder_messages` collects both while its block runs. A caller that fails folds
``messages.summary()`` into its one error line; on success the decoder chatter is dropped. What
other threads happened to print meanwhile is not the decoders' and is written back to stderr when
the outermost block ends; warnings that do not come from Pillow are re-issued.

Native output is captured by pointing file descriptor 2 at a temporary file (POSIX only; where fd 2
is not usable, e.g. a GUI process without a console, nothing is captured and nothing printed).
Blocks may nest and run in several threads at once: the first one in redirects, the last one out
restores. ``warnings.catch_warnings`` is process-wide, so take one block around a whole operation
(as the .ora reader does around its decoding threads), not one per thread.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
import warnings
from typing import Optional

# Lines the decoders print; anything else captured is given back to stderr.
_DECODER_LINE = re.compile(
    r"^\s*(libpng (error|warning)|JPEGLib|TIFF\w*|[^\s:]*\.tiff?:|Corrupt JPEG|Premature end of JPEG|"
    r"Invalid SOS)",
    re.IGNORECASE,
)
_MAX_SUMMARY = 240


class _NativeStderr:
    """Reference-counted redirection of fd 2 into a temporary file."""

    lock = threading.Lock()
    depth = 0
    saved: Optional[int] = None
    sink = None

    @classmethod
    def enter(cls) -> Optional[int]:
        """Start (or join) the capture; returns the sink offset where this block's output begins."""
        if not hasattr(os, "pread"):
            return None
        with cls.lock:
            if cls.depth == 0:
                try:
                    _flush_python_stderr()
                    saved = os.dup(2)
                except OSError:
                    return None
                try:
                    sink = tempfile.TemporaryFile()
                    os.dup2(sink.fileno(), 2)
                except OSError:
                    os.close(saved)
                    return None
                cls.saved, cls.sink = saved, sink
            cls.depth += 1
            return os.lseek(cls.sink.fileno(), 0, os.SEEK_CUR)

    @classmethod
    def read(cls, start: Optional[int]) -> str:
        if start is None:
            return ""
        with cls.lock:
            if cls.sink is None:
                return ""
            fd = cls.sink.fileno()
            end = os.lseek(fd, 0, os.SEEK_CUR)
            data = os.pread(fd, max(0, end - start), start)
        return data.decode("utf-8", "replace")

    @classmethod
    def leave(cls, start: Optional[int]) -> None:
        if start is None:
            return
        with cls.lock:
            cls.depth -= 1
            if cls.depth > 0:
                return
            _flush_python_stderr()
            sink, saved = cls.sink, cls.saved
            cls.sink = cls.saved = None
            try:
                fd = sink.fileno()
                end = os.lseek(fd, 0, os.SEEK_CUR)
                captured = os.pread(fd, end, 0).decode("utf-8", "replace")
            except OSError:
                captured = ""
            os.dup2(saved, 2)
            os.close(saved)
            sink.close()
        other = [line for line in captured.splitlines(keepends=True) if not _DECODER_LINE.match(line)]
        if other:
            try:
                os.write(2, "".join(other).encode("utf-8", "replace"))
            except OSError:
                pass


def _flush_python_stderr() -> None:
    try:
        if sys.stderr is not None:
            sys.stderr.flush()
    except Exception:  # noqa: BLE001 - a closed or odd stderr object: nothing to flush
        pass


class decoder_messages:
    """Context manager: ``with decoder_messages() as messages: ...``; ``messages.summary()`` is
    what the decoders said so far, as one line ('' if nothing)."""

    def __init__(self) -> None:
        self._start: Optional[int] = None
        self._warnings_cm = None
        self._records: list = []

    def __enter__(self) -> "decoder_messages":
        self._warnings_cm = warnings.catch_warnings(record=True)
        self._records = self._warnings_cm.__enter__()
        warnings.simplefilter("always")
        self._start = _NativeStderr.enter()
        return self

    def lines(self) -> list[str]:
        out: list[str] = []
        for record in list(self._records):
            if _is_decoder_warning(record):
                text = f"{record.category.__name__}: {record.message}"
                if text not in out:
                    out.append(text)
        for line in _NativeStderr.read(self._start).splitlines():
            line = line.strip()
            if line and _DECODER_LINE.match(line) and line not in out:
                out.append(line)
        return out

    def summary(self) -> str:
        text = "; ".join(" ".join(line.split()) for line in self.lines())
        return text if len(text) <= _MAX_SUMMARY else text[: _MAX_SUMMARY - 1] + "…"

    def __exit__(self, *exc_info) -> None:
        try:
            _NativeStderr.leave(self._start)
        finally:
            records = list(self._records)
            self._warnings_cm.__exit__(*exc_info)
            for record in records:  # not the decoders': give them back
                if not _is_decoder_warning(record):
                    warnings.warn_explicit(record.message, record.category, record.filename, record.lineno,
                                           source=record.source)


def _is_decoder_warning(record: warnings.WarningMessage) -> bool:
    filename = (record.filename or "").replace("\\", "/")
    return "/PIL/" in filename or "/cv2/" in filename or issubclass(record.category, _pil_warning_types())


def _pil_warning_types() -> tuple[type, ...]:
    from PIL import Image

    return (Image.DecompressionBombWarning,)


def with_messages(text: str, messages: "decoder_messages") -> str:
    """``text`` with what the decoders said appended in brackets, on one line."""
    said = messages.summary()
    return f"{text} [{said}]" if said else text
