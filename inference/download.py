"""Downloading a model file by URL into a library folder (torch-free, standard library only).

The body goes to `DEST/.NAME.part` (same folder, so the final move is atomic) and only a complete,
verified file appears under its real name. A `.part` from an interrupted, failed or cancelled call
is resumed with `Range: bytes=N-`; a server ignoring Range restarts from zero; a dropped connection
or a short body is retried from what is on disk (`retries` failures in a row without new bytes end
it, the `.part` kept). The SHA-256 is always computed (and returned); a wrong one removes the file.
The bytes must then be a model the engine's torch-free readers recognise for the extension (a valid
safetensors header, a pickle/zip checkpoint, GGUF magic): an HTML error page is removed, never
placed in the library. The name is `filename`, else the server's Content-Disposition (cut to its
last path component, as browsers do), else the URL path; a caller's name with folders in it, a
hidden name or an unknown extension is refused, and an existing file is never overwritten.
`should_stop()` and Ctrl-C raise `CancelledError` and keep the `.part`: the same call resumes.
Only http(s) is fetched, also after redirects. Errors are one line naming the URL (its query, which
may hold a token, left out) or the file: `InvalidRequestError` for bad arguments, `DownloadError`
for the network, the server or a hash mismatch, `ModelFormatError` for content that is no model.
"""
from __future__ import annotations

import codecs
import errno
import hashlib
import http.client
import os
import re
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import NamedTuple
from urllib.parse import unquote, urljoin, urlsplit

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

from .errors import (
    CancelledError,
    InferenceError,
    InvalidRequestError,
    ModelFormatError,
)

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
ALLOWED_SUFFIXES = SAFETENSORS_SUFFIXES + (".gguf",) + PICKLE_SUFFIXES
RETRY_DELAY_S = 0.5  # first pause before a retry, doubled per consecutive failure (tests set 0)
_MAX_DELAY_S = 8.0
_CHUNK = 64 * 1024  # small enough that a cancel is noticed within one network read
_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                     *(f"LPT{i}" for i in range(1, 10))}
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)
_USER_AGENT = "canvasai-model-download/1"

Progress = Callable[[int, "int | None"], None]


class DownloadError(InferenceError):
    """The network, the server or the bytes it sent failed us (kept `.part` files resume)."""


@dataclass(frozen=True)
class DownloadResult:
    path: Path  # the file now in the library folder
    sha256: str  # hex digest of the whole file (computed whether or not one was given)
    size: int
    resumed_from: int  # bytes already on disk from an earlier call (0: a fresh download)


def check_url(url: str) -> str:
    """The URL if it is http(s) with a host; InvalidRequestError otherwise."""
    text = str(url).strip()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise InvalidRequestError(f"{shown_url(text)}: not a usable URL") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidRequestError(f"{shown_url(text)}: only http:// and https:// URLs are downloaded, "
                                  f"not {parts.scheme or 'a bare path'}")
    if not parts.hostname or any(ord(c) < 33 or c == "\x7f" for c in text):
        raise InvalidRequestError(f"{shown_url(text)}: not a usable URL (no host, or spaces/control characters)")
    return text


def shown_url(url: str) -> str:
    """The URL for messages: without a query or user:password (tokens live there), at most 200 chars."""
    try:
        parts = urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
        text = f"{parts.scheme}://{host}{parts.path}" + ("?…" if parts.query else "") if host else url
    except ValueError:
        text = url
    return text if len(text) <= 200 else text[:199] + "…"


def check_sha256(value: str | None) -> str | None:
    """The hex digest in lower case (a `sha256:` prefix is accepted), None for None."""
    if value is None:
        return None
    digest = str(value).strip().lower().removeprefix("sha256:")
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise InvalidRequestError(f"sha256 {str(value)[:80]!r}: expected 64 hexadecimal digits")
    return digest


def check_filename(name: str, source: str = "file name") -> str:
    """One plain file name with a model extension, or InvalidRequestError naming it."""
    shown = repr(name[:120])
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise InvalidRequestError(f"{source} {shown}: must be a plain file name, without folders")
    if any(ord(c) < 32 or c in ':*?"<>|\x7f' for c in name):
        raise InvalidRequestError(f"{source} {shown}: contains characters file names cannot hold")
    if name.startswith("."):
        raise InvalidRequestError(f"{source} {shown}: must not start with a dot (hidden file)")
    if len(name.encode("utf-8")) > 200:  # room for the `.NAME.part` temp name under the 255-byte limit
        raise InvalidRequestError(f"{source} {shown}: too long (over 200 bytes)")
    suffix = Path(name).suffix.lower()
    if suffix not in ALLOWED_SUFFIXES or name[: -len(suffix)].strip(" .") == "":
        raise InvalidRequestError(f"{source} {shown}: not a model file name; expected one ending in "
                                  f"{', '.join(ALLOWED_SUFFIXES)}")
    if Path(name).stem.split(".")[0].upper() in _WINDOWS_RESERVED:
        raise InvalidRequestError(f"{source} {shown}: a reserved device name on Windows")
    return name


def content_disposition_name(value: str | None) -> str | None:
    """The file name a Content-Disposition header suggests (RFC 6266/5987 `filename*` first)."""
    message = Message()
    message["content-disposition"] = value or ""
    name = message.get_filename()  # decodes filename*=UTF-8''… as well as plain filename="…"
    return str(name).strip() if name else None


def _last_component(name: str) -> str:
    # A server-sent name such as "../../x.safetensors" keeps only its last part, as browsers do.
    return re.split(r"[/\\]", name)[-1]


def _url_name(url: str) -> str:
    return _last_component(unquote(urlsplit(url).path))  # decoded first: "%2F" must not survive


def download(url: str, dest_dir: str | os.PathLike[str], *, sha256: str | None = None, filename: str | None = None,
             progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
             timeout_s: float = 30, retries: int = 3) -> Path:
    """Download `url` into the folder `dest_dir` and return the new file's path (see the module doc);
    `download_file` also returns the SHA-256."""
    return download_file(url, dest_dir, sha256=sha256, filename=filename, progress=progress,
                         should_stop=should_stop, timeout_s=timeout_s, retries=retries).path


def download_file(url: str, dest_dir: str | os.PathLike[str], *, sha256: str | None = None,
                  filename: str | None = None, progress: Progress | None = None,
                  should_stop: Callable[[], bool] | None = None, timeout_s: float = 30,
                  retries: int = 3) -> DownloadResult:
    """Like `download`, returning the path, the SHA-256, the size and how much was resumed.

    `progress(done_bytes, total_bytes_or_None)` is called as bytes arrive (done counts resumed
    bytes too; it goes back to 0 only when a server ignores Range and the file restarts)."""
    url = check_url(url)
    expected = check_sha256(sha256)
    dest = Path(dest_dir)
    if not dest.is_dir():
        raise InvalidRequestError(f"{dest}: no such folder to download into")
    if not os.access(dest, os.W_OK | os.X_OK):
        raise InvalidRequestError(f"{dest}: folder is not writable")
    if retries < 0 or timeout_s <= 0:
        raise InvalidRequestError(f"retries {retries} / timeout {timeout_s}: need retries ≥ 0 and timeout > 0")
    job = _Download(url, dest, check_filename(filename) if filename is not None else None, progress,
                    should_stop or (lambda: False), timeout_s, retries)
    try:
        job.fetch()
    except KeyboardInterrupt:  # Ctrl-C in the CLI: the same as a cancel, the .part stays
        raise CancelledError(job.cancel_message()) from None
    return job.finish(expected)


class _RedirectsHttpOnly(urllib.request.HTTPRedirectHandler):
    """Follows redirects only to http(s): urllib alone would follow one to ftp://."""

    def http_error_302(self, req, fp, code, msg, headers):  # urllib's signature
        target = urljoin(req.full_url, headers.get("location") or headers.get("uri") or "")
        scheme = urlsplit(target).scheme.lower()
        if scheme not in ("http", "https"):
            fp.close()
            raise InvalidRequestError(f"{shown_url(req.full_url)}: redirected to {shown_url(target)!r}; "
                                      f"only http and https are followed")
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


class _Download:
    def __init__(self, url: str, dest: Path, name: str | None, progress: Progress | None,
                 should_stop: Callable[[], bool], timeout_s: float, retries: int) -> None:
        self.url, self.shown, self.dest, self.name = url, shown_url(url), dest, name
        self.progress, self.should_stop = progress or (lambda done, total: None), should_stop
        self.timeout_s, self.retries = timeout_s, retries
        self.hasher, self.hashed = hashlib.sha256(), 0  # digest of the part's first `hashed` bytes
        self.resumed_from: int | None = None
        if name is not None:
            self._refuse_existing()

    # ------------------------------------------------------------------ names and paths
    @property
    def final(self) -> Path:
        return self.dest / str(self.name)

    @property
    def part(self) -> Path:
        return self.dest / f".{self.name}.part"

    def cancel_message(self) -> str:
        where = f"the partial download is kept as {self.part}" if self.name else "nothing was written"
        return f"download of {self.shown} cancelled; {where} — run it again to resume"

    def _refuse_existing(self) -> None:
        if self.final.exists() or self.final.is_symlink():
            raise InvalidRequestError(f"{self.final}: already exists and is not overwritten "
                                      f"(remove it or choose another name)")
        if self.part.is_symlink() or (self.part.exists() and not self.part.is_file()):
            raise InvalidRequestError(f"{self.part}: exists and is not a regular file; remove it")

    def _name_from(self, response) -> str:  # response: an http.client.HTTPResponse
        disposition = content_disposition_name(response.headers.get("Content-Disposition"))
        if disposition:
            return check_filename(_last_component(disposition), f"{self.shown}: the server's file name")
        for candidate in (_url_name(self.url), _url_name(response.geturl())):
            if Path(candidate).suffix.lower() in ALLOWED_SUFFIXES:
                return check_filename(candidate, f"{self.shown}: the URL's file name")
        raise InvalidRequestError(f"{self.shown}: cannot tell the file name (no Content-Disposition, the URL ends "
                                  f"in {_url_name(self.url)[:80]!r}); give one (--name FILE)")

    # ------------------------------------------------------------------ transfer
    def _on_disk(self) -> int:
        try:
            return self.part.lstat().st_size if self.name else 0
        except FileNotFoundError:
            return 0

    def fetch(self) -> None:
        failures, furthest = 0, self._on_disk()  # progress = more bytes on disk than ever before
        while True:
            if self.should_stop():
                raise CancelledError(self.cancel_message())
            offset = self._on_disk()
            if self.resumed_from is None and self.name is not None:
                self.resumed_from = offset
            try:
                outcome = self._attempt(offset)
                furthest = max(furthest, self._on_disk())  # "again": the name is known now, so is the part
            except _Retry as retry:
                failures = 1 if retry.done > furthest else failures + 1  # progress starts a new count
                furthest = max(furthest, retry.done)
                if failures > self.retries:
                    kept = f"run again to resume from {self.part}" if self._on_disk() else "nothing was kept"
                    raise DownloadError(f"{self.shown}: {retry.reason}, {self.retries} retries failed; "
                                        f"{kept}") from None
                self._pause(failures)
                continue
            if outcome == "complete":
                return

    def _pause(self, failures: int) -> None:
        deadline = time.monotonic() + min(RETRY_DELAY_S * 2 ** max(failures - 1, 0), _MAX_DELAY_S)
        while time.monotonic() < deadline:  # in slices, so a cancel is not held up by the back-off
            if self.should_stop():
                raise CancelledError(self.cancel_message())
            time.sleep(0.05)

    def _open(self, offset: int):  # an http.client.HTTPResponse
        headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}  # byte counts are file bytes
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            # Built per call: proxy settings are read from the environment when the opener is made.
            opener = urllib.request.build_opener(_RedirectsHttpOnly)
            return opener.open(urllib.request.Request(self.url, headers=headers), timeout=self.timeout_s)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 416 and offset:
                return _RangeNotSatisfiable(_content_range(exc.headers.get("Content-Range"))[1])
            reason = f"HTTP {exc.code} {exc.reason}".strip()
            if exc.code in _RETRY_STATUSES:
                raise _Retry(reason, offset) from None
            raise DownloadError(f"{self.shown}: {reason}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            if isinstance(getattr(exc, "reason", exc), ssl.SSLCertVerificationError):  # retrying cannot help
                raise DownloadError(f"{self.shown}: {_reason(exc)}") from None
            raise _Retry(_reason(exc), offset) from None

    def _attempt(self, offset: int) -> str:
        response = self._open(offset)
        if isinstance(response, _RangeNotSatisfiable):
            if response.total == offset:  # the part already holds the whole file (cut off at the very end)
                return "complete"
            self.part.unlink(missing_ok=True)  # larger than the file now is: stale, start over
            raise _Retry(f"HTTP 416 for bytes {offset}- (file size {response.total})", -1)
        with response:
            if self.name is None:  # the name comes from this response's headers
                self.name = self._name_from(response)
                self._refuse_existing()
                if self._on_disk():  # an earlier call left a part under that name: ask for the rest
                    return "again"
                self.resumed_from = 0
            raw = response.headers.get("Content-Length", "").strip()
            status, length = response.status, int(raw) if raw.isascii() and raw.isdigit() else None
            if status == 206:
                start, total = _content_range(response.headers.get("Content-Range"))
                if start != offset:  # not the bytes we asked for: start over rather than guess
                    self.part.unlink(missing_ok=True)
                    raise _Retry(f"the server sent bytes from {start}, not {offset}", -1)
                total = total if total is not None else (offset + length if length is not None else None)
            elif 200 <= status < 300:
                if offset:  # no Range support: the whole file again, nothing of the old part is kept
                    self.resumed_from = 0
                offset, total = 0, length
            else:
                raise DownloadError(f"{self.shown}: unexpected HTTP {status} {response.reason}")
            done = self._stream(response, offset, total)
        if length is not None and done - offset < length:
            raise _Retry(f"connection dropped at {done} bytes (Content-Length said {offset + length})", done)
        if total is not None and done < total:
            raise _Retry(f"connection dropped at {done} of {total} bytes", done)
        if total is not None and done > total:
            self.part.unlink(missing_ok=True)
            raise DownloadError(f"{self.shown}: the server sent {done} bytes, more than the {total} it announced")
        return "complete"

    def _sync_hash(self, offset: int) -> None:
        if offset == self.hashed:
            return
        self.hasher, self.hashed = hashlib.sha256(), 0  # resuming a part from an earlier call: hash it first
        if offset:
            with open(self.part, "rb") as handle:
                while self.hashed < offset and (block := handle.read(min(1 << 20, offset - self.hashed))):
                    self.hasher.update(block)
                    self.hashed += len(block)

    def _stream(self, response, offset: int, total: int | None) -> int:
        """Append the body to the part (from `offset`); returns the bytes now on disk."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | _O_NOFOLLOW | _O_BINARY  # O_NOFOLLOW: no planted link
        try:
            fd = os.open(self.part, flags, 0o644)
        except OSError as exc:
            raise DownloadError(f"{self.part}: cannot write ({_os_reason(exc)})") from None
        done = offset
        # Unbuffered writes: however this ends (even Ctrl-C), the part is an exact prefix of the file.
        with os.fdopen(fd, "wb", buffering=0) as out:
            self._lock(fd)  # truncate only once the part is ours: another process may be appending to it
            if offset == 0:
                os.ftruncate(fd, 0)
            elif os.fstat(fd).st_size != offset:
                raise DownloadError(f"{self.part}: changed while this download was starting; run again")
            self._sync_hash(offset)
            self.progress(done, total)
            while True:
                if self.should_stop():
                    raise CancelledError(self.cancel_message())
                try:
                    chunk = response.read1(_CHUNK)
                except (OSError, http.client.HTTPException) as exc:  # reset, timeout, bad chunking
                    raise _Retry(f"{_reason(exc)} at {done} bytes", done) from None
                if not chunk:
                    break
                self._write(out, chunk)
                self.hasher.update(chunk)
                done += len(chunk)
                self.hashed = done
                self.progress(done, total)
            self._write(out, b"")
        return done

    def _lock(self, fd: int) -> None:
        if fcntl is None:  # Windows: no advisory lock; one download per file is up to the caller
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released by the OS however we end
        except BlockingIOError:
            raise DownloadError(f"{self.part}: another download is writing this file; let it finish "
                                f"or stop it first") from None
        except OSError:  # a file system without locks (some network shares): go on unlocked
            pass

    def _write(self, out, chunk: bytes) -> None:  # out: an unbuffered file
        try:
            view = memoryview(chunk)
            while view:  # an unbuffered write may take only part of the chunk
                view = view[out.write(view):]
            if not chunk:  # the end: on disk before the rename makes it visible
                os.fsync(out.fileno())
        except OSError as exc:
            raise DownloadError(f"{self.part}: cannot write ({_os_reason(exc)}); "
                                f"fix that and run again to resume") from None

    # ------------------------------------------------------------------ verification and the move
    def finish(self, expected: str | None) -> DownloadResult:
        size = self._on_disk()
        self._sync_hash(size)
        digest = self.hasher.hexdigest()
        if expected is not None and digest != expected:
            self.part.unlink(missing_ok=True)
            raise DownloadError(f"{self.name} from {self.shown}: SHA-256 mismatch, expected {expected} but got "
                                f"{digest}; the download was removed")
        problem = _not_a_model(self.part, str(self.name))
        if problem:
            self.part.unlink(missing_ok=True)
            raise ModelFormatError(f"{self.name} from {self.shown}: not a model file ({problem}); removed, "
                                   f"nothing was added to {self.dest}")
        self._move()
        return DownloadResult(self.final, digest, size, self.resumed_from or 0)

    def _move(self) -> None:
        # A hard link never replaces an existing file, atomically; a rename would silently overwrite
        # one that appeared while we downloaded. File systems without hard links get exists + rename.
        kept = (f"{self.final}: appeared during the download and is not overwritten; "
                f"the download is kept as {self.part}")
        try:
            os.link(self.part, self.final)
        except FileExistsError:
            raise InvalidRequestError(kept) from None
        except OSError:
            if self.final.exists() or self.final.is_symlink():
                raise InvalidRequestError(kept) from None
            try:
                os.replace(self.part, self.final)
            except OSError as exc:
                raise DownloadError(f"{self.final}: cannot move the download there ({_os_reason(exc)})") from None
        else:
            self.part.unlink()


class _Retry(Exception):
    def __init__(self, reason: str, done: int) -> None:
        super().__init__(reason)
        self.reason, self.done = reason, done  # done: bytes on disk after the failure (-1: none counted)


class _RangeNotSatisfiable(NamedTuple):  # a 416 answer: the file's size, when the server said it
    total: int | None


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, complete length) of `bytes A-B/N` or `bytes */N`; None where absent."""
    match = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", value or "")
    if not match:
        return None, None
    return (int(match[1]) if match[1] else None), (int(match[2]) if match[2] != "*" else None)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        exc = exc.reason if isinstance(exc.reason, BaseException) else exc
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    text = " ".join(str(getattr(exc, "strerror", None) or exc or type(exc).__name__).split())
    return text[:160] or type(exc).__name__


def _os_reason(exc: OSError) -> str:
    return "disk full" if exc.errno == errno.ENOSPC else " ".join(str(exc.strerror or exc).split())


def _not_a_model(path: Path, name: str) -> str | None:
    """Why the downloaded bytes are not a model file of `name`'s kind, or None when they are."""
    from .formats.pickle_sniff import sniff_pickle
    from .formats.safetensors_header import read_header

    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(512)
    suffix = Path(name).suffix.lower()
    if size == 0:
        return "the server sent an empty file"
    looks = _looks_like_text(head)
    if suffix == ".gguf":
        return None if head[:4] == b"GGUF" else (looks or "no GGUF signature")
    if suffix in PICKLE_SUFFIXES and sniff_pickle(head, size) is not None:
        return None  # a torch checkpoint; never unpickled here (the engine asks to convert it)
    if suffix in SAFETENSORS_SUFFIXES or suffix == ".bin":  # diffusers' .bin may also be safetensors
        try:
            read_header(path)
            return None
        except ModelFormatError as exc:
            return looks or str(exc).splitlines()[0].removeprefix(f"{path.name}: ")
    return looks or "no pickle or zip checkpoint signature"


def _looks_like_text(head: bytes) -> str | None:
    start = head.lstrip()[:64].lower()
    if start.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in head.lower():
        return "looks like an HTML page, perhaps an error or login page"
    if start.startswith((b"{", b"[")) and b"\x00" not in head:
        return "looks like a JSON document, perhaps an error message"
    try:  # incremental: a character cut at the end of the 512 bytes is not an error
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return None
    if all(c.isprintable() or c in "\r\n\t" for c in text):
        return f"looks like a text file: {' '.join(text.split())[:60]!r}"
    return None
