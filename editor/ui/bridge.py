"""Forward a Document's plain-Python signals to Qt signals.

The model is Qt-free (napari's boundary): it calls observers synchronously.
One bridge per document; views connect to the bridge, and replacing the
document replaces the bridge, so no view ever holds a stale connection.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from editor.document import Document


class DocumentBridge(QObject):
    layers_changed = Signal(object)  # Node or None
    pixels_changed = Signal(object)  # Rect in canvas coordinates
    selection_changed = Signal()
    canvas_resized = Signal(int, int, int, int)  # width, height, dx, dy
    history_changed = Signal()

    def __init__(self, document: Document, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.document = document
        self._links = [
            (document.layers_changed, self.layers_changed.emit),
            (document.pixels_changed, self.pixels_changed.emit),
            (document.selection_changed, self.selection_changed.emit),
            (document.canvas_resized, self.canvas_resized.emit),
            (document.history_changed, self.history_changed.emit),
        ]
        for model_signal, slot in self._links:
            model_signal.connect(slot)

    def detach(self) -> None:
        """Stop forwarding (the document is being replaced)."""
        for model_signal, slot in self._links:
            try:
                model_signal.disconnect(slot)
            except ValueError:
                pass
        self._links = []
