"""Status bar fields: zoom, cursor position in image pixels, canvas size,
memory use (process RSS and undo history), compute device of the engine, and
the render farm when final renders go to one (address, workers, GPUs, queue)."""

from __future__ import annotations

import math
import os
from typing import Optional

from PySide6.QtCore import QObject, QPointF, QTimer, Signal
from PySide6.QtWidgets import QLabel, QStatusBar

from editor.ai.farm import FarmLink, FarmStatus, status_text

from .canvas import CanvasView
from .session import EditorSession

MEMORY_REFRESH_MS = 2000


def process_memory_bytes() -> Optional[int]:
    """Resident memory of this process (Linux /proc; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if os.uname().sysname == "Darwin" else peak * 1024
    except (ImportError, OSError, AttributeError):
        return None


def format_mib(n: int) -> str:
    mib = n / (1024 * 1024)
    return f"{mib:.0f} MiB" if mib >= 10 else f"{mib:.1f} MiB"


def format_zoom(zoom: float) -> str:
    pct = zoom * 100.0
    return f"{pct:.0f} %" if pct >= 10 else f"{pct:.1f} %"


class StatusInfo(QObject):
    farm_status = Signal(object)  # FarmStatus, emitted on the render thread, shown on the UI thread

    def __init__(self, bar: QStatusBar, canvas: CanvasView, session: EditorSession) -> None:
        super().__init__(bar)
        self.session = session
        self.zoom_label = QLabel()
        self.position_label = QLabel()
        self.size_label = QLabel()
        self.memory_label = QLabel()
        self.device_label = QLabel("Device: …")
        self.zoom_label.setToolTip("Zoom (Ctrl+0 fit, Ctrl+1 100 %)")
        self.position_label.setToolTip("Cursor position in image pixels")
        self.position_label.setMinimumWidth(110)
        self.memory_label.setToolTip("Memory used by the editor (undo history in brackets)")
        self.device_label.setToolTip("Compute device of the AI engine (being detected)")
        self.farm_label = QLabel()
        self.farm_label.hide()  # shown while final renders go to a farm
        for w in (self.position_label, self.size_label, self.zoom_label, self.memory_label, self.device_label,
                  self.farm_label):
            bar.addPermanentWidget(w)
        self.farm_status.connect(self.set_farm)  # auto: direct on this thread, queued from others
        canvas.zoom_changed.connect(self.set_zoom)
        canvas.cursor_moved.connect(self.set_position)
        session.document_changed.connect(self._on_document)
        self.set_zoom(canvas.viewport.zoom)
        self.set_position(None)
        self._on_document()
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.refresh_memory)
        self._timer.start(MEMORY_REFRESH_MS)
        self.refresh_memory()

    def _on_document(self, *_args) -> None:
        self.session.bridge.canvas_resized.connect(lambda *_a: self._show_size())
        self._show_size()

    def _show_size(self) -> None:
        doc = self.session.document
        self.size_label.setText(f"{doc.width} × {doc.height} px")

    def set_zoom(self, zoom: float) -> None:
        self.zoom_label.setText(format_zoom(zoom))

    def set_position(self, pos: Optional[QPointF]) -> None:
        if pos is None:
            self.position_label.setText("x –, y –")
            return
        self.position_label.setText(f"x {math.floor(pos.x())}, y {math.floor(pos.y())}")

    def refresh_memory(self) -> None:
        rss = process_memory_bytes()
        undo = self.session.document.undo_stack.byte_size()
        text = f"Mem {format_mib(rss)}" if rss is not None else "Mem ?"
        self.memory_label.setText(f"{text} (undo {format_mib(undo)})")

    def set_device(self, label: str, warning: str = "") -> None:
        """Show the engine's device ("CUDA · <GPU name>", "Apple GPU (MPS)", "CPU · N threads");
        a fallback is marked with ⚠ and its reason is in the tooltip."""
        self.device_label.setText(f"⚠ {label}" if warning else label)
        tip = "Compute device of the AI engine (setting \"device\": auto, cpu, cuda or mps; env CANVASAI_DEVICE)"
        self.device_label.setToolTip(f"{warning}\n\n{tip}" if warning else tip)

    def watch_farm(self, link: FarmLink) -> None:
        """Follow ``link``'s status (its reports come from the render thread: queued here)."""
        link.status_changed.connect(self.farm_status.emit)
        self.set_farm(link.status())

    def set_farm(self, status: FarmStatus) -> None:
        text = status_text(status)
        self.farm_label.setText(text)
        self.farm_label.setVisible(bool(text))
        if status.state == "fallback":
            tip = f"{status.message}\n\nFinal renders run on this machine until the farm answers again."
        else:
            tip = ("Final renders and variations go to this Ray cluster; the live preview stays here "
                   "(Edit ▸ Preferences ▸ Render on)")
        self.farm_label.setToolTip(tip)
