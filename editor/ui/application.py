"""Start the GUI: application object, theme, first window, recovery offer."""

from __future__ import annotations

import signal
import sys
from typing import Optional

from PySide6.QtCore import QTimer
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

from editor.document import Document

from ..settings import Settings
from .main_window import MainWindow


def apply_dark_theme(app: QApplication) -> None:
    """A neutral dark theme (as Krita and most paint programs use): colours
    on the canvas are judged against grey, not against bright chrome."""
    app.setStyle("Fusion")
    p = QPalette()
    base, window, text = QColor(43, 44, 47), QColor(53, 54, 58), QColor(222, 222, 222)
    p.setColor(QPalette.ColorRole.Window, window)
    p.setColor(QPalette.ColorRole.WindowText, text)
    p.setColor(QPalette.ColorRole.Base, base)
    p.setColor(QPalette.ColorRole.AlternateBase, window)
    p.setColor(QPalette.ColorRole.ToolTipBase, QColor(30, 30, 32))
    p.setColor(QPalette.ColorRole.ToolTipText, text)
    p.setColor(QPalette.ColorRole.Text, text)
    p.setColor(QPalette.ColorRole.Button, QColor(60, 61, 66))
    p.setColor(QPalette.ColorRole.ButtonText, text)
    p.setColor(QPalette.ColorRole.Highlight, QColor(58, 110, 165))
    p.setColor(QPalette.ColorRole.HighlightedText, QColor(255, 255, 255))
    p.setColor(QPalette.ColorRole.Link, QColor(100, 160, 230))
    p.setColor(QPalette.ColorRole.PlaceholderText, QColor(140, 140, 140))
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        p.setColor(QPalette.ColorGroup.Disabled, role, QColor(120, 120, 120))
    app.setPalette(p)


class WindowRegistry:
    """Keeps the open windows alive (one document per window)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.windows: list[MainWindow] = []

    def open(self, document: Optional[Document] = None) -> MainWindow:
        win = MainWindow(self.settings, document, open_window=self.open)
        self.windows.append(win)
        win.show()
        return win


def run_gui(path: Optional[str], recovery_mode: str = "ask") -> int:
    # Ctrl+C in the terminal ends the process at once, like a crash: the
    # autosave stays and is offered on the next start (Python's default
    # handler would only run once Qt returns control, i.e. never while idle).
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("CanvasAI")
    app.setApplicationDisplayName("CanvasAI")
    apply_dark_theme(app)
    registry = WindowRegistry(Settings.load())
    win = registry.open()
    if path:
        win.files.open_path(path, ask_to_save=False)  # on failure: error box, new document stays
    # After the window is on screen, so the dialog has a parent to sit on.
    QTimer.singleShot(0, lambda: win.offer_recovery(recovery_mode))
    return app.exec()
