"""The "Render queue" dock: the render farm's jobs with their progress and a Cancel each.

It observes :class:`editor.ai.farm.RenderQueue`, whose ``changed`` is emitted on the render
thread; a Qt signal carries each change to the UI thread (a queued connection), where the row
of that job is created or refreshed. Cancel asks the queue (the job stops before its next step;
the session then says "Cancelled: the document is unchanged").
"""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QFrame, QGridLayout, QLabel, QProgressBar, QPushButton,
                               QScrollArea, QVBoxLayout, QWidget)

from editor.ai.farm import QueuedRender, RenderQueue, RenderState

STATE_TEXT = {RenderState.QUEUED: "Queued", RenderState.RUNNING: "Running", RenderState.DONE: "Done",
              RenderState.FAILED: "Failed", RenderState.CANCELLED: "Cancelled"}


def describe(entry: QueuedRender) -> str:
    """"Running on w0 · step 3/20", "Queued · cancelling…", "Failed: <reason>"."""
    text = STATE_TEXT[entry.state]
    if entry.state is RenderState.RUNNING and entry.worker:
        text += f" on {'this machine' if entry.worker == 'local' else entry.worker}"
    if entry.state is RenderState.RUNNING and entry.total:
        text += f" · step {entry.step}/{entry.total}"
    if entry.cancel_requested and not entry.finished:
        text += " · cancelling…"
    if entry.state is RenderState.DONE and entry.worker:
        text += f" ({'here' if entry.worker == 'local' else entry.worker})"
    if entry.state is RenderState.FAILED and entry.message:
        text += f": {entry.message}"
    return text


class _JobRow(QFrame):
    def __init__(self, entry: QueuedRender, queue: RenderQueue, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.entry_id = entry.id
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.title = QLabel(entry.title)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.state = QLabel()
        self.state.setWordWrap(True)
        self.bar = QProgressBar()
        self.bar.setRange(0, 100)
        self.bar.setTextVisible(False)
        self.bar.setMaximumHeight(8)
        self.cancel = QPushButton("Cancel")
        self.cancel.setToolTip("Stop this render (before its next step); the document stays as it is")
        self.cancel.clicked.connect(lambda: queue.cancel(self.entry_id))
        grid = QGridLayout(self)
        grid.setContentsMargins(6, 4, 6, 4)
        grid.addWidget(self.title, 0, 0)
        grid.addWidget(self.cancel, 0, 1, 2, 1)
        grid.addWidget(self.bar, 1, 0)
        grid.addWidget(self.state, 2, 0, 1, 2)
        self.refresh(entry)

    def refresh(self, entry: QueuedRender) -> None:
        self.bar.setValue(round(entry.fraction * 100))
        self.state.setText(describe(entry))
        self.state.setToolTip(entry.message)
        self.cancel.setEnabled(not entry.finished and not entry.cancel_requested)


class RenderQueuePanel(QWidget):
    entry_changed = Signal(int)  # a job's id; emitted on any thread, handled on the UI thread

    def __init__(self, queue: RenderQueue, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.queue = queue
        self.rows: dict[int, _JobRow] = {}
        self.empty = QLabel("No farm renders yet. Final renders go to the farm when "
                            "Edit ▸ Preferences ▸ Render on is set to a Ray cluster.")
        self.empty.setWordWrap(True)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignTop)
        inner = QWidget()
        self.rows_layout = QVBoxLayout(inner)
        self.rows_layout.setContentsMargins(0, 0, 0, 0)
        self.rows_layout.addWidget(self.empty)
        self.rows_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(inner)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(scroll)
        self.entry_changed.connect(self._refresh)  # auto: queued when emitted on the render thread
        self._forward = lambda entry: self.entry_changed.emit(entry.id)
        queue.changed.connect(self._forward)
        for entry in queue.entries():
            self._refresh(entry.id)

    def detach(self) -> None:
        """Stop observing the queue (the window is closing)."""
        try:
            self.queue.changed.disconnect(self._forward)
        except ValueError:
            pass

    def _refresh(self, entry_id: int) -> None:
        entries = {e.id: e for e in self.queue.entries()}
        for gone in [i for i in self.rows if i not in entries]:  # pruned from the queue's history
            self.rows.pop(gone).deleteLater()
        entry = entries.get(entry_id)
        if entry is not None:
            row = self.rows.get(entry_id)
            if row is None:
                row = self.rows[entry_id] = _JobRow(entry, self.queue)
                self.rows_layout.insertWidget(0, row)  # newest on top
            row.refresh(entry)
        self.empty.setVisible(not self.rows)
