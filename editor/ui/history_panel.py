"""History panel: the undo stack as a list (like Krita's Undo History and
QUndoView). The first row is the unedited document; clicking a row undoes
or redoes until the document is in the state after that step."""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import QTimer
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QListWidget, QListWidgetItem, QVBoxLayout, QWidget

from .session import EditorSession

ORIGIN_TEXT = "Document opened"


class HistoryPanel(QWidget):
    def __init__(self, session: EditorSession, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.session = session
        self.list = QListWidget()
        self.list.setUniformItemSizes(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.list)
        self._syncing = False
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self.rebuild)
        self.list.currentRowChanged.connect(self._on_row)
        session.document_changed.connect(self._on_document_changed)
        self._on_document_changed()

    def _on_document_changed(self, *_args) -> None:
        self.session.bridge.history_changed.connect(self._schedule)
        self.rebuild()

    def _schedule(self) -> None:
        # Coalesced: a stroke or macro may announce many changes in a row.
        if not self._timer.isActive():
            self._timer.start()

    def rebuild(self) -> None:
        self._timer.stop()
        stack = self.session.document.undo_stack
        self._syncing = True
        try:
            self.list.clear()
            self.list.addItem(QListWidgetItem(ORIGIN_TEXT))
            for i in range(len(stack)):
                item = QListWidgetItem(stack.command(i).text or "Edit")
                if i >= stack.index:
                    item.setForeground(QBrush(QColor(130, 130, 130)))  # undone: can be redone
                self.list.addItem(item)
            self.list.setCurrentRow(stack.index)
            self.list.scrollToItem(self.list.currentItem())
        finally:
            self._syncing = False

    def _on_row(self, row: int) -> None:
        if self._syncing or row < 0:
            return
        self.jump_to(row)

    def jump_to(self, index: int) -> None:
        """Undo/redo until ``index`` steps are applied."""
        doc = self.session.document
        if doc.stroke_active:
            self._schedule()
            return
        stack = doc.undo_stack
        index = min(max(index, 0), len(stack))
        while stack.index > index and doc.undo():
            pass
        while stack.index < index and doc.redo():
            pass
        self._schedule()
