"""Crash-safe file replacement (what Krita gets from QSaveFile).

The new content goes to a temporary file in the target's folder (same
filesystem, so the final rename is atomic), is flushed and fsync'ed, checked
by ``verify`` and only then renamed over the target; the folder is fsync'ed
so the rename itself survives a power cut. Until that rename the old file is
untouched: a crash, SIGKILL, full disk or failed check leaves it
byte-identical.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from typing import BinaryIO, Callable, Optional

from .errors import DocumentFileError

TEMP_SUFFIX = ".tmp"


def temp_prefix(target: str) -> str:
    # The PID in the name lets a later session recognise leftovers of a dead one.
    return f".{os.path.basename(target)}.{os.getpid()}."


def _describe(exc: OSError) -> str:
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"permission denied or read-only location ({exc.strerror})"
    if exc.errno == errno.ENOSPC:
        return "disk full"
    if exc.errno == errno.ENOENT:
        return "folder does not exist"
    return exc.strerror or str(exc)


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_dir(folder: str) -> None:
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the rename is still done
    finally:
        os.close(fd)


def atomic_write(
    path: "str | os.PathLike[str]",
    write: Callable[[BinaryIO], None],
    verify: Optional[Callable[[str], None]] = None,
) -> None:
    """Write ``path`` via ``write(fileobj)`` atomically; raise DocumentFileError on failure.

    ``verify(temp_path)`` may raise DocumentFileError (or any exception) to
    veto the replacement.
    """
    target = os.path.abspath(os.fspath(path))
    if os.path.islink(target):
        target = os.path.realpath(target)  # replace the file, keep the link
    if os.path.isdir(target):
        raise DocumentFileError(target, "cannot save: the target is a folder")
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise DocumentFileError(target, "cannot save: folder does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(target), suffix=TEMP_SUFFIX, dir=folder)
    except OSError as exc:
        raise DocumentFileError(target, f"cannot save: {_describe(exc)}") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if verify is not None:
            verify(tmp)
        try:
            mode = stat.S_IMODE(os.stat(target).st_mode)
        except FileNotFoundError:
            mode = _default_mode()
        os.chmod(tmp, mode)
        os.replace(tmp, target)
        _fsync_dir(folder)
    except DocumentFileError as exc:
        _remove_quietly(tmp)
        raise DocumentFileError(target, f"save failed, previous file kept: {exc.problem}") from exc
    except OSError as exc:
        _remove_quietly(tmp)
        raise DocumentFileError(target, f"save failed, previous file kept: {_describe(exc)}") from exc
    except Exception as exc:
        _remove_quietly(tmp)
        raise DocumentFileError(target, f"save failed, previous file kept: {exc}") from exc
    except BaseException:
        _remove_quietly(tmp)
        raise


def cleanup_stale_temp_files(folder: "str | os.PathLike[str]") -> int:
    """Delete temporary files that saves of dead processes left in ``folder``
    (a SIGKILL between mkstemp and rename leaves one); returns the count."""
    from .recovery import pid_alive  # local import: recovery imports this module

    removed = 0
    try:
        entries = os.listdir(folder)
    except OSError:
        return 0
    for name in entries:
        if not (name.startswith(".") and name.endswith(TEMP_SUFFIX)):
            continue
        parts = name[: -len(TEMP_SUFFIX)].split(".")
        # .<target name>.<pid>.<random>.tmp -> the pid is the second-to-last part
        if len(parts) < 4 or not parts[-2].isdigit() or pid_alive(int(parts[-2])):
            continue
        try:
            os.unlink(os.path.join(folder, name))
            removed += 1
        except OSError:
            pass
    return removed


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
