"""Autosave/recovery files (Krita-style), driven by a UI timer.

``save_recovery`` writes ``canvasai-recovery-<pid>-<doc uid>.ora`` into a
folder (atomically, fast compression). On the next start ``find_recovery``
lists files left by processes that are no longer running - i.e. crashed or
killed sessions - and the UI offers them; a clean close calls
``discard_recovery`` for its own files. PID reuse can hide a file until the
unrelated process exits; that errs on the side of keeping data.
"""

from __future__ import annotations

import os
import re
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from editor.document import Document

from .atomic import cleanup_stale_temp_files
from .errors import DocumentFileError
from .ora_common import DOC_NS, attr, check_zip_directory, parse_stack_xml
from .ora_write import save_ora

PREFIX = "canvasai-recovery"
_NAME_RE = re.compile(rf"^{PREFIX}-(\d+)-([0-9a-f]+)\.ora$")


@dataclass(frozen=True)
class RecoveryFile:
    path: Path
    pid: int
    document_uid: str
    mtime: float
    source_path: Optional[str]  # the file the document was saved as, if any


def pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name != "posix":
        return False  # cannot probe cheaply; offering a copy is the safe side
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def recovery_path(folder: "str | os.PathLike[str]", document: Document) -> Path:
    return Path(folder) / f"{PREFIX}-{os.getpid()}-{document.uid}.ora"


def save_recovery(document: Document, folder: "str | os.PathLike[str]") -> Path:
    """Write (or refresh) this document's recovery file; returns its path."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    path = recovery_path(folder, document)
    extra = {"source-path": document.file_path} if document.file_path else {}
    save_ora(document, path, compress_level=1, verify=True, image_attributes=extra, mark_clean=False)
    return path


def _source_path(path: Path) -> Optional[str]:
    try:
        with zipfile.ZipFile(path) as zf:
            check_zip_directory(str(path), zf.infolist())
            root = parse_stack_xml(str(path), zf.read("stack.xml"))
            return root.get(attr(DOC_NS, "source-path"))
    except (zipfile.BadZipFile, OSError, KeyError, DocumentFileError):
        return None


def find_recovery(folder: "str | os.PathLike[str]", *, include_running: bool = False) -> list[RecoveryFile]:
    """Recovery files of sessions that ended without a clean close, newest first.

    Also deletes half-written temporary files that dead sessions left behind.
    """
    base = Path(folder)
    if not base.is_dir():
        return []
    cleanup_stale_temp_files(base)
    found: list[RecoveryFile] = []
    for entry in base.iterdir():
        m = _NAME_RE.match(entry.name)
        if not m or not entry.is_file():
            continue
        pid = int(m.group(1))
        if not include_running and pid_alive(pid):
            continue
        try:
            mtime = entry.stat().st_mtime
        except OSError:
            continue
        found.append(RecoveryFile(entry, pid, m.group(2), mtime, _source_path(entry)))
    found.sort(key=lambda r: r.mtime, reverse=True)
    return found


def discard_recovery(
    target: Union[RecoveryFile, str, "os.PathLike[str]"], document: Optional[Document] = None
) -> int:
    """Delete recovery data; returns how many files were removed.

    ``target`` is a RecoveryFile or file path (after the user restored or
    declined it), or a folder: then this process's own files are removed
    (only ``document``'s if given) - call that on a clean close.
    """
    path = target.path if isinstance(target, RecoveryFile) else Path(target)
    if path.is_dir():
        removed = 0
        for entry in path.iterdir():
            m = _NAME_RE.match(entry.name)
            if not m or int(m.group(1)) != os.getpid():
                continue
            if document is not None and m.group(2) != document.uid:
                continue
            removed += _unlink(entry)
        return removed
    return _unlink(path)


def _unlink(path: Path) -> int:
    try:
        path.unlink()
        return 1
    except FileNotFoundError:
        return 0
    except OSError as exc:
        raise DocumentFileError(path, f"cannot delete recovery file ({exc.strerror})") from exc


def age_seconds(rec: RecoveryFile) -> float:
    return max(0.0, time.time() - rec.mtime)
