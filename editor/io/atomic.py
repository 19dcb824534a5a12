"""Crash-safe file replacement (what Krita gets from QSaveFile).

The new content goes to a temporary file in the target's folder (same
filesystem, so the final rename is atomic), is flushed and fsync'ed, checked
by ``verify`` and only then renamed over the target; the folder is fsync'ed
so the rename itself survives a power cut. Until that rename the old file is
untouched: a crash, SIGKILL, full disk or failed check leaves it
byte-identical.

A SIGKILL between the temp file's creation and the rename leaves
``.NAME.PID.RANDOM.tmp`` next to the target; the next successful save of the
same file removes such leftovers (`cleanup_stale_temp_files_of`: only that
file's pattern, only regular files, only when the PID is not a live process
or the file is older than `STALE_TEMP_AGE`).
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tempfile
import time
from typing import BinaryIO, Callable, Optional

from .errors import DocumentFileError

TEMP_SUFFIX = ".tmp"


def temp_prefix(target: str) -> str:
    # The PID in the name lets a later session recognise leftovers of a dead one.
    return f"{temp_prefix_base(target)}{os.getpid()}."


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
        cleanup_stale_temp_files_of(target)
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


# A temp file of a live PID is someone's save in progress, unless it is older than this (PIDs are
# reused: a killed save's PID may belong to an unrelated live process by now). No save takes an hour.
STALE_TEMP_AGE = 3600.0


def temp_name_pattern(target: str) -> "re.Pattern[str]":
    """Names `atomic_write` gives the temp files of ``target``: ``.NAME.PID.RANDOM.tmp``."""
    return re.compile(re.escape(temp_prefix_base(target)) + r"(\d+)\.([A-Za-z0-9_]+)" + re.escape(TEMP_SUFFIX) + "$")


def temp_prefix_base(target: str) -> str:
    return f".{os.path.basename(target)}."


def cleanup_stale_temp_files_of(
    path: "str | os.PathLike[str]", *, max_age: float = STALE_TEMP_AGE, now: Optional[float] = None
) -> int:
    """Delete the temp files that killed saves of *this* file left next to it: the ones whose PID
    is not a live process, or that are older than ``max_age`` seconds. Only regular files whose
    name is exactly ``.NAME.PID.RANDOM.tmp``; never the one of a save in progress in this process.
    Returns how many were removed; errors are ignored (cleaning up is best effort)."""
    from .recovery import pid_alive  # local import: recovery imports this module

    target = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(target)
    pattern = temp_name_pattern(target)
    now = time.time() if now is None else now
    removed = 0
    try:
        entries = os.listdir(folder)
    except OSError:
        return 0
    for name in entries:
        match = pattern.match(name)
        if match is None:
            continue
        full = os.path.join(folder, name)
        try:
            info = os.lstat(full)
        except OSError:
            continue
        if not stat.S_ISREG(info.st_mode):
            continue  # a planted link or folder: not ours to touch
        pid = int(match.group(1))
        old = now - info.st_mtime > max_age
        if pid == os.getpid() and not old:
            continue  # another save of this process (autosave, export) may be writing it now
        if pid != os.getpid() and pid_alive(pid) and not old:
            continue
        try:
            os.unlink(full)
            removed += 1
        except OSError:
            pass
    return removed


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
