"""Puts the AI features into a main window: the dock, the canvas overlay, the
frame tool's target and the Generate shortcut.

The AI core imports torch (seconds), so the window opens without it: the
dock says "Loading…" while a background thread imports the core and probes
the compute device, then :meth:`AIHost.start` (UI thread) creates the
controller. If the import fails, the dock says why and the rest of the
editor works as before. Tests call ``start(engine=FakeEngine())`` directly.
"""

from __future__ import annotations

import logging
import threading
from typing import Optional

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDockWidget, QMainWindow, QScrollArea

from .overlay import FrameOverlay
from .panel import AIPanel

log = logging.getLogger(__name__)

FRAME_TOOL = "ai_frame"


class _CoreLoader(QObject):
    """Imports the AI core and probes the device off the UI thread."""

    done = Signal(object, str)  # device string (None on failure), error text

    def start(self, device_setting: str) -> None:
        def work() -> None:
            device, error = None, ""
            try:
                import editor.ai  # noqa: F401 - torch and the engine: the slow part
                import inference.loader  # noqa: F401

                device = "cpu"
                try:
                    from editor.device import probe_device
                except ImportError:
                    probe_device = None
                if probe_device is not None:
                    device = probe_device(device_setting).device
            except Exception as exc:  # noqa: BLE001 - any failure means "no AI", never a crash
                log.exception("loading the AI core failed")
                error = f"The AI engine could not be loaded ({type(exc).__name__}: {exc})."
            try:
                self.done.emit(device, error)
            except RuntimeError:  # the window was closed meanwhile
                pass

        threading.Thread(target=work, name="canvasai-ai-loader", daemon=True).start()


class AIHost(QObject):
    ready = Signal()

    def __init__(self, window: QMainWindow, *, load: bool = True) -> None:
        super().__init__(window)
        self.window = window
        self.canvas = window.canvas
        self.controller = None
        self.unavailable_reason = "The AI features are still loading…"

        self.panel = AIPanel()
        scroll = QScrollArea()
        scroll.setWidget(self.panel)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.dock = QDockWidget("AI", window)
        self.dock.setObjectName("ai")
        self.dock.setWidget(scroll)
        self.dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                              | QDockWidget.DockWidgetFeature.DockWidgetClosable
                              | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        window.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.dock)
        window.resizeDocks([self.dock], [300], Qt.Orientation.Horizontal)
        self.dock.visibilityChanged.connect(lambda _v: self.canvas.update())

        self.overlay = FrameOverlay(self)
        self.canvas.overlays.append(self.overlay)
        self.canvas.frame_target = self
        self.canvas.tool_changed.connect(lambda _t: self.canvas.update())

        self.generate_action = QAction("&Generate", window)
        self.generate_action.setShortcuts([QKeySequence("Ctrl+Return"), QKeySequence("Ctrl+Enter")])
        self.generate_action.setStatusTip("Render the generation frame with the final model")
        self.generate_action.triggered.connect(lambda _c=False: self.generate())
        window.addAction(self.generate_action)
        self._add_to_menus()

        self._loader: Optional[_CoreLoader] = None
        if load:
            self._loader = _CoreLoader(self)
            self._loader.done.connect(self._on_core_loaded)
            self._loader.start(getattr(window.settings, "device", "auto"))

    def _add_to_menus(self) -> None:
        menus = {a.text().replace("&", ""): a.menu() for a in self.window.menuBar().actions() if a.menu()}
        view = menus.get("View")
        if view is not None:
            view.addAction(self.dock.toggleViewAction())
        tools = menus.get("Tools")
        if tools is not None:
            tools.addSeparator()
            tools.addAction(self.generate_action)
        action = getattr(self.window, "tool_actions", {}).get(FRAME_TOOL)
        if action is not None:
            from .icons import frame_icon

            action.setIcon(frame_icon())

    # -------------------------------------------------------------- start-up
    def _on_core_loaded(self, device: Optional[str], error: str) -> None:
        if self.controller is not None:
            return
        if device is None:
            self.unavailable_reason = error
            self.panel.set_unavailable(error)
            self.window.statusBar().showMessage(error, 15000)
            return
        self.start(device=device)

    def start(self, engine=None, device: str = "cpu"):
        """Create the controller (UI thread). ``engine``: use this engine (a
        FakeEngine in tests) instead of one built from the settings' models."""
        if self.controller is not None:
            if engine is not None:
                self.controller.use_engine(engine)
            return self.controller
        from .controller import AIController

        self.controller = c = AIController(self.window.session, self.window.settings, engine=engine,
                                           device=device, parent=self)
        self.unavailable_reason = ""
        c.overlay_changed.connect(self.canvas.update)
        c.message.connect(self._on_message)
        self.panel.bind(c)
        self.canvas.update()
        self.ready.emit()
        return c

    def _on_message(self, text: str, level: str) -> None:
        if level != "info" or not self.dock.isVisible():
            self.window.statusBar().showMessage(text, 10000 if level == "error" else 5000)

    # ------------------------------------------------------ frame tool target
    @property
    def frame(self):
        return self.controller.frame if self.controller is not None else None

    def set_frame(self, frame) -> None:
        self.controller.set_frame(frame)

    def make_frame(self, x0: float, y0: float, x1: float, y1: float):
        return self.controller.make_frame(x0, y0, x1, y1)

    def has_staged(self) -> bool:
        return self.controller is not None and self.controller.staging.count > 0

    def generate(self) -> None:
        if self.controller is None:
            self.window.statusBar().showMessage(self.unavailable_reason, 5000)
            return
        self.controller.generate()

    def accept(self) -> None:
        self.controller.accept()

    def discard(self) -> None:
        self.controller.discard()

    def frame_visible(self) -> bool:
        """The frame is drawn while the AI dock is shown or the frame tool is in use."""
        return self.dock.isVisible() or self.canvas.tool.tool_id == FRAME_TOOL

    # -------------------------------------------------------------- shut down
    def shutdown(self) -> None:
        if self.controller is not None:
            self.controller.shutdown()
