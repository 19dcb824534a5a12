"""Writing the engine's output files: checked before any work, replaced atomically.

`check_destination(path)` runs before a model is loaded, so a typo in `--out` costs nothing: the
folder must exist and be writable, the path must not be a folder and must end in the expected
suffix. `write_atomically(path, write)` writes through a uniquely named temporary file in the
destination folder, created with O_EXCL|O_NOFOLLOW (a file or symlink planted at a predictable name
such as the old `OUT.partial` is never opened, let alone followed), fsyncs it, renames it over the
destination and fsyncs the folder. On any failure — the writer raising, a full disk, a kill — the
temp file is removed (a SIGKILL leaves only the temp file) and the previous file stays
byte-identical. OSErrors become one-line InferenceErrors naming the path. Torch-free.
"""
from __future__ import annotations

import errno
import os
import secrets
import stat
from pathlib import Path
from typing import BinaryIO, Callable

from inference.errors import InferenceError

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def _describe(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC or exc.errno == getattr(errno, "EDQUOT", -1):
        return "disk full"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.EROFS:
        return "read-only file system"
    if exc.errno == errno.ENOENT:
        return "folder does not exist"
    if exc.errno == errno.EISDIR:
        return "is a folder"
    return " ".join((exc.strerror or str(exc) or type(exc).__name__).split())


def check_destination(path: str | os.PathLike[str], suffix: str = ".png") -> Path:
    """The output path, checked before any work; InferenceError (one line, naming it) otherwise."""
    raw = os.fspath(path)
    if not raw or "\x00" in raw:
        raise InferenceError(f"{raw!r}: not a usable output path")
    out = Path(raw)
    if out.is_dir():
        raise InferenceError(f"{out}: is a folder; give a file name ending in {suffix}")
    if suffix and out.suffix.lower() != suffix.lower():
        raise InferenceError(f"{out}: the output must end in {suffix}")
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.exists():
        raise InferenceError(f"{out}: folder {folder} does not exist")
    if not folder.is_dir():
        raise InferenceError(f"{out}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InferenceError(f"{out}: folder {folder} is not writable")
    if out.is_symlink() and not out.exists():
        raise InferenceError(f"{out}: is a dangling symbolic link")
    if out.exists() and not out.is_file():
        raise InferenceError(f"{out}: exists and is not a regular file")
    return out


def _temp_name(out: Path) -> Path:
    return out.with_name(f".{out.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")


def _fsync_folder(folder: Path) -> None:
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on folders; the rename is done all the same
    finally:
        os.close(fd)


def write_atomically(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> None:
    """Replace `path` with what `write(file)` writes, atomically (see the module docstring)."""
    out = Path(os.fspath(path))
    folder = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise InferenceError(f"{out}: is a folder; give a file name")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_BINARY | _O_CLOEXEC
    fd, tmp = -1, None
    for _ in range(16):  # a clash with an existing name (planted or not) just picks another
        tmp = _temp_name(out)
        try:
            fd = os.open(tmp, flags, 0o666)
            break
        except FileExistsError:
            continue
        except OSError as exc:
            raise InferenceError(f"{out}: cannot write: {_describe(exc)}") from None
    if fd < 0:
        raise InferenceError(f"{out}: cannot create a temporary file in {folder}")
    try:
        try:
            mode = stat.S_IMODE(os.stat(out).st_mode)
        except OSError:
            mode = None
        with os.fdopen(fd, "wb") as handle:
            fd = -1
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp, mode)  # keep the replaced file's permissions
        os.replace(tmp, out)
        tmp = None
        _fsync_folder(folder)
    except OSError as exc:
        raise InferenceError(f"{out}: cannot write, previous file kept: {_describe(exc)}") from None
    finally:
        if fd >= 0:
            os.close(fd)
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


__all__ = ["check_destination", "write_atomically"]
