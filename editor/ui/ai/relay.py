"""Carry the AI core's reports (emitted on the generation worker thread) to
the UI thread.

The core's ``Signal`` calls observers synchronously on whatever thread emits;
the AI session hands every report to ``post(handler, *args)``. This relay
implements ``post`` as a Qt signal of a QObject living on the UI thread,
connected with ``Qt.QueuedConnection``: the handler always runs later on the
UI thread's event loop, also for the few reports emitted on the UI thread
itself (cancelling a queued job), so no handler is ever re-entered from inside
a call into the core.
"""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import QObject, Qt, Signal

import editor.ui  # noqa: F401 - installs the PySide emit workaround before any emit


class CoreRelay(QObject):
    _call = Signal(object, object)  # handler, args

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._open = True
        self._call.connect(self._run, Qt.ConnectionType.QueuedConnection)

    def post(self, handler: Callable, *args) -> None:
        """Run ``handler(*args)`` on the UI thread, later (any thread may call this)."""
        if not self._open:
            return
        try:
            self._call.emit(handler, args)
        except RuntimeError:  # the relay's C++ side is gone (window closed meanwhile)
            self._open = False

    def _run(self, handler: Callable, args: tuple) -> None:
        if self._open:
            handler(*args)

    def close(self) -> None:
        """Stop delivering for good (the window is closing)."""
        self._open = False
