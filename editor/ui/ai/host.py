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

from PySide6.QtCore import QEvent, QObject, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDockWidget, QMainWindow, QScrollArea

from .overlay import FrameOverlay
from .panel import AIPanel

log = logging.getLogger(__name__)

FRAME_TOOL = "ai_frame"
REVEAL_DELAY_MS = 150


class _CoreLoader(QObject):
    """Imports the AI core and probes the device off the UI thread."""

    done = Signal(object, str)  # device string (None on failure), error text

    def start(self, device_setting: str) -> None:
        def work() -> None:
            device, error = None, ""
            try:
                import editor.ai.engine  # noqa: F401 - torch and the engine: the slow part
                from inference.engine import warm_up_imports

                warm_up_imports()

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
        # Esc stops the running generation wherever the focus is (like a render viewport). The action
        # is enabled only while something runs, so Esc keeps its other meanings the rest of the time.
        self.cancel_action = QAction("&Cancel Generation", window)
        self.cancel_action.setShortcut(QKeySequence(Qt.Key.Key_Escape))
        self.cancel_action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        self.cancel_action.setStatusTip("Stop the running generation; the document stays as it was")
        self.cancel_action.setEnabled(False)
        self.cancel_action.triggered.connect(lambda _c=False: self.cancel())
        window.addAction(self.cancel_action)
        self.canvas.installEventFilter(self)
        # A frame moved past the visible area (an Expand beside the canvas) is brought back into
        # view once the drag ends, so it never sits hidden under a dock.
        self._reveal_timer = QTimer(self)
        self._reveal_timer.setSingleShot(True)
        self._reveal_timer.setInterval(REVEAL_DELAY_MS)
        self._reveal_timer.timeout.connect(self.reveal_frame)
        # Re-editing a generated layer (its settings live in its attributes): right-click in the
        # layers panel, or the Layer menu, on the active layer.
        self.regenerate_action = QAction("Re&generate", window)
        self.regenerate_action.setStatusTip("Generate this layer again with its prompt, seed and settings")
        self.regenerate_action.triggered.connect(lambda _c=False: self._on_layer(regenerate=True))
        self.vary_action = QAction("&Vary (New Seed)", window)
        self.vary_action.setStatusTip("Generate this layer again with its settings and a new seed")
        self.vary_action.triggered.connect(lambda _c=False: self._on_layer(regenerate=True, vary=True))
        self.load_settings_action = QAction("&Use These Settings", window)
        self.load_settings_action.setStatusTip("Put this layer's prompt, seed, steps and frame into the AI panel")
        self.load_settings_action.triggered.connect(lambda _c=False: self._on_layer())
        self.layer_ai_actions = (self.regenerate_action, self.vary_action, self.load_settings_action)
        layers_panel = getattr(window, "layers_panel", None)
        if layers_panel is not None:
            layers_panel.context_actions = self.actions_for_layer
        self.panel.set_layer_actions(self.layer_ai_actions)
        window.session.active_changed.connect(self._update_layer_actions)
        window.session.document_changed.connect(lambda _d: self._connect_layer_watch())
        self._connect_layer_watch()
        self._update_layer_actions()
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
        layer = menus.get("Layer")
        if layer is not None:
            layer.addSeparator()
            for action in self.layer_ai_actions:
                layer.addAction(action)
        tools = menus.get("Tools")
        if tools is not None:
            tools.addSeparator()
            tools.addAction(self.generate_action)
            tools.addAction(self.cancel_action)
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

    def start(self, engine=None, device: str = "cpu", auto_live: Optional[bool] = None):
        """Create the controller (UI thread). ``engine``: use this engine (a
        FakeEngine in tests) instead of one built from the settings' models.
        ``auto_live`` (default: when the engine comes from the settings, as in
        the app): switch Live on if the first preview frame is fast enough."""
        if self.controller is not None:  # the background start-up got here first
            if engine is not None:
                self.controller.use_engine(engine)
                if auto_live:
                    self.probe_live()
            return self.controller
        from .controller import AIController

        self.controller = c = AIController(self.window.session, self.window.settings, engine=engine,
                                           device=device, farm=getattr(self.window, "farm", None), parent=self)
        self.unavailable_reason = ""
        c.overlay_changed.connect(self.canvas.update)
        c.message.connect(self._on_message)
        c.busy_changed.connect(self.cancel_action.setEnabled)
        c.frame_changed.connect(self._reveal_timer.start)
        self.panel.bind(c)
        self._update_layer_actions()
        if engine is None if auto_live is None else auto_live:
            self.probe_live()
        self.canvas.update()
        self.ready.emit()
        return c

    def probe_live(self) -> bool:
        """Live on by default where it is fast: render one preview frame now and
        keep Live on only if it took at most ``LIVE_AUTO_MAX_S`` (measured here,
        on this machine, with this model). Quietly stays off if the preview
        model is missing."""
        c = self.controller
        if c is None or not c.entry(c.request.preview_model).available and c._injected_engine is None:
            return False
        return c.set_live(True, probe=True)

    def _on_message(self, text: str, level: str) -> None:
        if text and (level not in ("info", "") or not self.dock.isVisible()):
            self.window.statusBar().showMessage(text, 10000 if level == "error" else 5000)

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt override
        """Enter accepts and Esc discards staged results with any tool (the frame tool
        does the same itself); a tool's own drag keeps Esc for cancelling it."""
        if watched is self.canvas and event.type() == QEvent.Type.KeyPress and self.has_staged():
            plain = not event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
            if plain and not self.canvas.tool.active and not self.controller.busy:
                if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
                    self.accept()
                    return True
                if event.key() == Qt.Key.Key_Escape:
                    self.discard()
                    return True
        return super().eventFilter(watched, event)

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

    def cancel(self) -> None:
        if self.canvas.tool.active:  # Esc during a drag undoes the drag first, as it always did
            self.canvas.tool.cancel()
            return
        if self.controller is not None:
            self.controller.cancel()

    def accept(self) -> None:
        self.controller.accept()

    def discard(self) -> None:
        self.controller.discard()

    def frame_visible(self) -> bool:
        """The frame is drawn while the AI dock is shown or the frame tool is in use."""
        return self.dock.isVisible() or self.canvas.tool.tool_id == FRAME_TOOL

    def reveal_frame(self) -> bool:
        if self.controller is None or not self.frame_visible():
            return False
        if self.canvas.tool.active:  # still dragging: look again when it ends
            self._reveal_timer.start()
            return False
        f = self.controller.frame
        return self.canvas.reveal(QRectF(f.x, f.y, f.w, f.h))

    # ------------------------------------------------------- generated layers
    def _generated_active(self):
        from editor.ai.layer_info import is_generated

        node = self.window.session.active_layer()
        return node if node is not None and is_generated(node.attributes) else None

    def _connect_layer_watch(self) -> None:
        self.window.session.bridge.layers_changed.connect(lambda *_a: self._update_layer_actions())

    def _update_layer_actions(self) -> None:
        from editor.ai.layer_info import generation_lines

        layer = self._generated_active()
        on = layer is not None and self.controller is not None
        for action in self.layer_ai_actions:
            action.setEnabled(on)
        self.panel.show_layer(layer.name if layer is not None else "",
                              generation_lines(layer.attributes) if layer is not None else [])

    def actions_for_layer(self, node) -> list:
        """The layers panel's extra right-click actions for ``node`` (made active first)."""
        self._update_layer_actions()
        return list(self.layer_ai_actions) if self._generated_active() is node and node is not None else []

    def _on_layer(self, regenerate: bool = False, vary: bool = False) -> None:
        layer = self._generated_active()
        if layer is None or self.controller is None:
            return
        if not self.dock.isVisible():
            self.dock.show()
        if regenerate:
            self.controller.regenerate_layer(layer, vary=vary)
        else:
            self.controller.load_layer_settings(layer)

    # -------------------------------------------------------------- shut down
    def shutdown(self) -> None:
        if self.controller is not None:
            self.controller.shutdown()
