"""Carry the AI core's plain signals (emitted on the generation worker thread)
to the UI thread as queued Qt signals.

The core's ``Signal`` calls observers synchronously on whatever thread
emits; this relay re-emits each call as a Qt signal of a QObject that lives
on the UI thread. Receivers connect with ``Qt.QueuedConnection``, so a slot
always runs later on the UI thread's event loop, also for the few emits that
happen on the UI thread itself (cancelling a queued job): no slot is ever
re-entered from inside a call into the core.
"""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import QObject, Qt, Signal, SignalInstance

import editor.ui  # noqa: F401 - installs the PySide emit workaround before any emit


class CoreRelay(QObject):
    job_started = Signal(object)  # Job
    job_progress = Signal(object)  # JobProgress
    job_finished = Signal(object)  # Job
    job_failed = Signal(object)  # Job
    job_cancelled = Signal(object)  # Job
    live_frame = Signal(object)  # LiveFrame
    live_failed = Signal(object)  # Job

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._links: list[tuple[object, Callable]] = []
        self._open = True

    def link(self, core_signal, qt_signal: SignalInstance) -> None:
        """Forward ``core_signal`` (a plain editor.document.Signal) to ``qt_signal``."""

        def forward(*args) -> None:
            if not self._open:
                return
            try:
                qt_signal.emit(*args)
            except RuntimeError:  # the relay's C++ side is gone (window closed meanwhile)
                self._open = False

        core_signal.connect(forward)
        self._links.append((core_signal, forward))

    def bind(self, qt_signal: SignalInstance, slot: Callable) -> None:
        """Connect a UI-thread slot, always queued."""
        qt_signal.connect(slot, Qt.ConnectionType.QueuedConnection)

    def close(self) -> None:
        """Stop forwarding for good (the window is closing)."""
        self._open = False
        self.unlink()

    def unlink(self) -> None:
        """Disconnect from the core's signals (before its service shuts down)."""
        for core_signal, forward in self._links:
            try:
                core_signal.disconnect(forward)
            except ValueError:
                pass
        self._links = []
