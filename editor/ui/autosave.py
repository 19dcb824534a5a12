"""Crash safety: autosave the document to a recovery file, off the UI thread.

When: every N minutes if something changed, and once the user has been
idle for a few seconds after an edit (so a crash right after a long
session of work loses at most the last seconds). Never during a stroke.

How: a cheap snapshot of the layer tree is taken on the UI thread (tiles
are immutable, copy-on-write arrays, so cloning shares them), then a worker
thread composites and writes it with the model's ``save_recovery`` (atomic,
verified). A clean close (or a save that makes the document clean) removes
the recovery file; ``find_recovery`` on the next start only reports files of
processes that are gone.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Optional

from PySide6.QtCore import QObject, QTimer, Signal

from editor.document import Document
from editor.document.layers import clone_node
from editor.io import DocumentFileError, discard_recovery, save_recovery

from .session import EditorSession

RETRY_MS = 1000  # when a stroke is in progress, try again this much later


def snapshot_document(doc: Document) -> Document:
    """An independent Document sharing ``doc``'s (read-only) tile arrays.

    Adapter until the model offers ``Document.snapshot()``: built from the
    public layer classes; undo history and selection are not part of it.
    """
    snap = Document(doc.width, doc.height, undo_memory_limit=0, min_undo_steps=0,
                    render_cache_bytes=16 * 1024 * 1024)
    snap.uid = doc.uid  # recovery files are named after the document
    snap.file_path = doc.file_path
    for i, child in enumerate(doc.root.children):
        snap.root.insert(i, clone_node(child))
    snap.root.opacity = doc.root.opacity
    snap.root.visible = doc.root.visible
    return snap


class _Relay(QObject):
    """Wakes the UI thread when the worker is done (queued signal)."""

    done = Signal()


class AutosaveController(QObject):
    saved = Signal(str)  # path of the recovery file
    failed = Signal(str)  # reason

    def __init__(self, session: EditorSession, folder: Path, minutes: float, idle_seconds: float,
                 parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.session = session
        self.folder = Path(folder)
        self.last_path: Optional[Path] = None
        self._generation = 0
        self._saved_generation = 0
        self._worker: Optional[threading.Thread] = None
        self._result: Optional[tuple[Optional[Path], Optional[str], int]] = None
        self._lock = threading.Lock()
        self._pending = False
        self._closing = False
        self._relay = _Relay(self)
        self._relay.done.connect(self._collect)
        self._periodic = QTimer(self)
        self._periodic.timeout.connect(self.autosave_if_needed)
        self._idle = QTimer(self)
        self._idle.setSingleShot(True)
        self._idle.timeout.connect(self.autosave_if_needed)
        self._document = session.document
        self.configure(minutes, idle_seconds)
        session.document_changed.connect(self._on_document_changed)
        session.modified_changed.connect(self._on_modified_changed)
        self._connect()

    def configure(self, minutes: float, idle_seconds: float) -> None:
        self._periodic.start(max(int(minutes * 60_000), 1000))
        self._idle.setInterval(max(int(idle_seconds * 1000), 100))

    def _connect(self) -> None:
        self.session.bridge.history_changed.connect(self._on_edit)

    def _on_edit(self) -> None:
        self._generation += 1
        self._idle.start()

    def _on_modified_changed(self, modified: bool) -> None:
        if not modified:
            # Saved (or undone back to the saved state): the recovery file is obsolete.
            self.wait()
            self._discard(self.session.document)
            self._saved_generation = self._generation

    def _on_document_changed(self, doc: Document) -> None:
        # The old document is gone from this window: so is its recovery file.
        self.wait()
        self._discard(self._document)
        self._document = doc
        self._generation = 1 if self.session.is_modified() else 0
        self._saved_generation = 0
        self._connect()
        if self._generation:
            self._idle.start()

    # ----------------------------------------------------------------- saving
    def needs_save(self) -> bool:
        return self._generation != self._saved_generation

    def autosave_if_needed(self) -> None:
        if self.needs_save():
            self.autosave_now()

    def autosave_now(self, wait: bool = False) -> bool:
        """Start an autosave (``wait``: do it synchronously, for tests and
        shutdown paths). Returns False if it had to be postponed."""
        doc = self.session.document
        if self._closing:
            return False
        if doc.stroke_active or doc.undo_stack.in_macro():
            self._idle.start(RETRY_MS)
            return False
        if self._worker is not None:
            self._pending = True
            return False
        generation = self._generation
        if not self.session.is_modified():
            self._discard(doc)
            self._saved_generation = generation
            return True
        snapshot = snapshot_document(doc)
        if wait:
            self._on_done(*self._save(snapshot, generation))
            return True
        self._worker = threading.Thread(target=self._work, args=(snapshot, generation), daemon=True,
                                        name="autosave")
        self._worker.start()
        return True

    def _save(self, snapshot: Document, generation: int) -> tuple[Optional[Path], Optional[str], int]:
        try:
            return save_recovery(snapshot, self.folder), None, generation
        except DocumentFileError as exc:
            return None, str(exc), generation
        except Exception as exc:  # noqa: BLE001 - an autosave must never take the editor down
            return None, f"{type(exc).__name__}: {exc}", generation

    def _work(self, snapshot: Document, generation: int) -> None:
        result = self._save(snapshot, generation)
        with self._lock:
            self._result = result
        self._relay.done.emit()

    def _collect(self) -> None:
        """Handle the worker's result on the UI thread (once)."""
        with self._lock:
            result, self._result = self._result, None
        if self._worker is not None and not self._worker.is_alive():
            self._worker = None
        if result is not None:  # None: already handled by wait()
            self._on_done(*result)

    def _on_done(self, path: Optional[Path], error: Optional[str], generation: int) -> None:
        if error is not None:
            self.failed.emit(error)
        else:
            self._saved_generation = max(self._saved_generation, generation)
            self.last_path = path
            self.saved.emit(str(path))
        if self._pending:
            self._pending = False
            self.autosave_if_needed()

    def wait(self) -> None:
        """Let a running autosave finish (its result is handled now)."""
        while self._worker is not None:
            self._worker.join()
            self._collect()

    def _discard(self, doc: Document) -> None:
        if not self.folder.is_dir():
            return
        try:
            discard_recovery(self.folder, doc)
        except DocumentFileError as exc:
            self.failed.emit(str(exc))

    def shutdown(self) -> None:
        """Clean close: stop timers, finish any write, delete our recovery file."""
        self._closing = True
        self._periodic.stop()
        self._idle.stop()
        self.wait()
        self._discard(self.session.document)
