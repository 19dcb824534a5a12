"""The editor window: canvas in the centre, tool bar on the left, tool
options / layers / history docks on the right, status bar below, menus
with the usual shortcuts (Krita/Photoshop/GIMP conventions)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from PySide6.QtCore import QByteArray, QEvent, QObject, Qt, Signal
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QGuiApplication, QIcon, QKeySequence
from PySide6.QtWidgets import (QDockWidget, QFrame, QHBoxLayout, QInputDialog, QLabel, QMainWindow, QMessageBox,
                               QPushButton, QToolBar, QWidget)

from editor.ai.farm import FarmLink
from editor.document import Document, Node
from editor.headless import new_document
from editor.io import DocumentFileError, RecoveryFile, discard_recovery, find_recovery, load_ora

from ..device import DeviceChoice, probe_device
from ..settings import Settings, recovery_dir
from .ai import AIHost
from .ai.queue_panel import RenderQueuePanel
from .autosave import AutosaveController
from .canvas import CanvasView
from .dialogs import CanvasSizeDialog, PreferencesDialog, RecoveryDialog
from .file_actions import FileController
from .history_panel import HistoryPanel
from .icons import tool_icon
from .layer_actions import LayerActions
from .layers_panel import LayersPanel
from .session import EditorSession
from .status import StatusInfo
from .tool_options import ToolOptionsPanel
from .tools import TOOL_SPECS

if TYPE_CHECKING:
    from .download_dialog import DownloadDialog

APP_TITLE = "CanvasAI"
APP_ID = "io.github.canvasai.CanvasAI"  # the .desktop file / AppStream id (packaging/linux)
ICON_DIR = Path(__file__).resolve().parents[2] / "packaging" / "icons"  # the bundle keeps this layout
FIRST_RUN_HINT = (
    "<b>Welcome to CanvasAI.</b> Sketch with the brush (B) or drag an image onto the canvas, "
    "select an area (M, L, or paint a mask with Q), describe what should be there in the AI panel "
    "and press Generate: the built-in house models render it right here on your computer."
)
BRUSH_STEP = 1.15  # [ and ]: about 15 % per press
MIB = 1024 * 1024


class MainWindow(QMainWindow):
    _farm_notice = Signal(str)  # a render-farm notice (fall-back, lost worker), shown in the status bar

    def __init__(self, settings: Optional[Settings] = None, document: Optional[Document] = None,
                 select: Optional[Node] = None, open_window: Optional[Callable[[Document], "MainWindow"]] = None,
                 modified: bool = False) -> None:
        super().__init__()
        self.settings = settings if settings is not None else Settings.load()
        self._open_window = open_window  # makes a sibling window (recovery of several documents)
        self.last_error: Optional[str] = None
        self.imported_from: Optional[str] = None  # a flat image opened as the document (not its save target)
        self._error_box: Optional[QMessageBox] = None
        doc = document if document is not None else new_document(1024, 1024)
        doc.undo_stack.set_limits(memory_limit=self.settings.undo_memory_mb * MIB)
        self.session = EditorSession(doc, self)
        self.session.smoothing = self.settings.stroke_smoothing
        if select is not None or modified:
            self.session.set_document(doc, select, modified)

        self.canvas = CanvasView(self.session, self)
        self.setCentralWidget(self.canvas)
        self.layer_actions = LayerActions(self.session, self)
        self.files = FileController(self)
        self.tool_options = ToolOptionsPanel(self.session)
        self.layers_panel = LayersPanel(self.session, self.layer_actions)
        self.history_panel = HistoryPanel(self.session)
        # The render farm (Edit ▸ Preferences ▸ Render on): connected on the first final render sent
        # to it, never at start-up; its jobs are listed in the "Render queue" dock.
        self.farm = FarmLink(self.settings.render_on, self.settings.farm_address,
                             worker_gpus=self.settings.farm_gpus)
        self.queue_panel = RenderQueuePanel(self.farm.queue)
        self.actions: dict[str, QAction] = {}
        self.tool_actions: dict[str, QAction] = {}
        self._last_marquee = "rect_select"

        self._build_docks()
        self._build_tool_bar()
        self._build_menus()
        self.ai = AIHost(self)  # AI dock, generation frame, engine (the AI core loads in the background)
        self.status = StatusInfo(self.statusBar(), self.canvas, self.session)
        self.status.watch_farm(self.farm)
        self._farm_notice.connect(lambda text: self.show_message(text, 15000))
        self.farm.notice.connect(self._farm_notice.emit)  # from the render thread: queued to this one
        self.compute_device: Optional[DeviceChoice] = None  # set once probed (see editor.device)
        self.device_probe = _DeviceProbe(self)
        self.device_probe.done.connect(self._on_device)
        self.device_probe.start(self.settings.device)
        self.autosave = AutosaveController(self.session, recovery_dir(), self.settings.autosave_minutes,
                                           self.settings.autosave_idle_seconds, self)
        self.autosave.failed.connect(lambda reason: self.show_message(f"Autosave failed: {reason}", 10000))

        self.canvas.message.connect(lambda text: self.show_message(text, 5000))
        self.layer_actions.message.connect(lambda text: self.show_message(text, 5000))
        self.canvas.tool_changed.connect(self._on_tool_changed)
        self.canvas.files_dropped.connect(self.files.import_dropped)
        self.session.brush_changed.connect(lambda _k: self.canvas.update())
        self.session.modified_changed.connect(lambda _m: self._update_title())
        self.session.document_changed.connect(self._on_document_changed)
        self._on_document_changed(doc)
        self._on_tool_changed(self.canvas.tool.tool_id)
        self.resize(1400, 900)
        self._restore_geometry()
        self._set_app_identity()
        self.first_run_hint: Optional[FirstRunHint] = None
        if document is None and not self.settings.first_run_hint_seen:
            self._show_first_run_hint()

    # ------------------------------------------------------ device/first run
    def _on_device(self, choice: DeviceChoice) -> None:
        self.compute_device = choice
        self.status.set_device(choice.label, choice.warning)
        if choice.warning:
            self.show_message(choice.warning, 20000)

    def _set_app_identity(self) -> None:
        icon = QIcon()
        for size in (256, 48):
            path = ICON_DIR / f"canvasai-{size}.png"
            if path.is_file():
                icon.addFile(str(path))
        if not icon.isNull():
            self.setWindowIcon(icon)
        if not QGuiApplication.desktopFileName():  # ties the window to the installed .desktop file
            QGuiApplication.setDesktopFileName(APP_ID)

    def _show_first_run_hint(self) -> None:
        """Empty canvas on the first start: say what to do, once (remembered in the settings)."""
        self.settings.first_run_hint_seen = True  # saved with the other settings
        self.first_run_hint = FirstRunHint(self.canvas)
        self.first_run_hint.dismissed.connect(self._hint_dismissed)
        # Starting to work (an edit, an opened or restored document) is as good as "Got it".
        self.session.modified_changed.connect(self._hide_first_run_hint)
        self.session.document_changed.connect(self._hide_first_run_hint)

    def _hide_first_run_hint(self, *_args) -> None:
        if self.first_run_hint is not None:
            self.first_run_hint.hide()

    def _hint_dismissed(self) -> None:
        self.save_settings()

    # ---------------------------------------------------------------- layout
    def _build_docks(self) -> None:
        for title, widget, name in (("Tool Options", self.tool_options, "tool_options"),
                                    ("Layers", self.layers_panel, "layers"),
                                    ("History", self.history_panel, "history")):
            dock = QDockWidget(title, self)
            dock.setObjectName(name)
            dock.setWidget(widget)
            dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                             | QDockWidget.DockWidgetFeature.DockWidgetClosable
                             | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
            self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
            setattr(self, f"{name}_dock", dock)
        self.resizeDocks([self.tool_options_dock, self.layers_dock, self.history_dock], [300, 380, 180],
                         Qt.Orientation.Vertical)
        self.resizeDocks([self.layers_dock], [320], Qt.Orientation.Horizontal)
        dock = QDockWidget("Render Queue", self)
        dock.setObjectName("render_queue")
        dock.setWidget(self.queue_panel)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QDockWidget.DockWidgetFeature.DockWidgetClosable
                         | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        self.tabifyDockWidget(self.history_dock, dock)  # next to History: it matters only with a farm
        self.history_dock.raise_()
        dock.setVisible(self.farm.enabled)
        self.queue_dock = dock

    def _build_tool_bar(self) -> None:
        bar = QToolBar("Tools", self)
        bar.setObjectName("tools")
        bar.setMovable(False)
        bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextUnderIcon)
        self.addToolBar(Qt.ToolBarArea.LeftToolBarArea, bar)
        group = QActionGroup(self)
        group.setExclusive(True)
        for spec in TOOL_SPECS:
            act = QAction(tool_icon(spec.tool_id), spec.label, self)
            act.setCheckable(True)
            act.setToolTip(f"{spec.label} ({spec.shortcut}) — {spec.tip}" if spec.shortcut else spec.tip)
            if spec.shortcut:
                act.setShortcut(QKeySequence(spec.shortcut))
            act.triggered.connect(lambda _c=False, t=spec.tool_id: self.select_tool(t))
            group.addAction(act)
            bar.addAction(act)
            self.tool_actions[spec.tool_id] = act
        self.tool_bar = bar

    def _action(self, key: str, text: str, slot: Callable[[], object], shortcut=None, tip: str = "") -> QAction:
        act = QAction(text, self)
        if shortcut:
            seqs = [QKeySequence(s) for s in (shortcut if isinstance(shortcut, (list, tuple)) else [shortcut])]
            act.setShortcuts(seqs)
        if tip:
            act.setStatusTip(tip)
        act.triggered.connect(lambda _c=False: slot())
        self.addAction(act)  # shortcuts work even when the menu bar is hidden
        self.actions[key] = act
        return act

    def _build_menus(self) -> None:
        a, mb = self._action, self.menuBar()
        f = mb.addMenu("&File")
        f.addAction(a("new", "&New…", self.files.new_dialog, QKeySequence.StandardKey.New))
        f.addAction(a("open", "&Open…", self.files.open_dialog, QKeySequence.StandardKey.Open))
        self.recent_menu = f.addMenu("Open &Recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        f.addAction(a("import", "&Import as Layer…", self.files.import_dialog, "Ctrl+Shift+O"))
        f.addSeparator()
        f.addAction(a("save", "&Save", self.files.save, QKeySequence.StandardKey.Save))
        f.addAction(a("save_as", "Save &As…", self.files.save_as_dialog, "Ctrl+Shift+S"))
        f.addAction(a("export", "&Export…", self.files.export_dialog, "Ctrl+Shift+E",
                      "Write a flattened PNG, JPEG or WebP"))
        f.addSeparator()
        f.addAction(a("download_model", "Download &Model…", self.download_model_dialog,
                      tip="Download a model file by URL into a model folder (resumable, SHA-256 checked)"))
        f.addSeparator()
        f.addAction(a("quit", "&Quit", self.close, QKeySequence.StandardKey.Quit))

        e = mb.addMenu("&Edit")
        e.addAction(a("undo", "&Undo", self.undo, "Ctrl+Z"))
        e.addAction(a("redo", "&Redo", self.redo, ["Ctrl+Shift+Z", "Ctrl+Y"]))
        e.addSeparator()
        e.addAction(self.layer_actions.actions["clear"])
        e.addAction(self.layer_actions.actions["fill_fg"])
        e.addSeparator()
        e.addAction(a("preferences", "Pre&ferences…", self.preferences_dialog))

        s = mb.addMenu("&Select")
        s.addAction(a("select_all", "Select &All", lambda: self._doc_call("select_all"), "Ctrl+A"))
        s.addAction(a("deselect", "&Deselect", lambda: self._doc_call("select_none"), ["Ctrl+D", "Ctrl+Shift+A"]))
        s.addAction(a("invert", "&Invert Selection", lambda: self._doc_call("invert_selection"), "Ctrl+Shift+I"))
        s.addSeparator()
        s.addAction(a("grow", "&Grow…", lambda: self.modify_selection("grow")))
        s.addAction(a("shrink", "S&hrink…", lambda: self.modify_selection("shrink")))
        s.addAction(a("feather", "&Feather…", lambda: self.modify_selection("feather"), "Shift+F6"))

        i = mb.addMenu("&Image")
        i.addAction(a("canvas_size", "&Canvas Size…", self.canvas_size_dialog, "Ctrl+Alt+C",
                      "Resize or extend the canvas in any direction"))

        layer = mb.addMenu("&Layer")
        for key in ("new_layer", "new_group", "group_layer", "duplicate", "delete", None, "raise", "lower",
                    "merge_down", None, "add_mask", "mask_from_selection", "delete_mask", "apply_mask"):
            if key is None:
                layer.addSeparator()
            else:
                act = self.layer_actions.actions[key]
                layer.addAction(act)
                self.addAction(act)

        v = mb.addMenu("&View")
        v.addAction(a("zoom_in", "Zoom &In", lambda: self.canvas.zoom_step(1), ["Ctrl++", "Ctrl+="]))
        v.addAction(a("zoom_out", "Zoom &Out", lambda: self.canvas.zoom_step(-1), "Ctrl+-"))
        v.addAction(a("zoom_fit", "&Fit to Window", self.canvas.fit_to_window, "Ctrl+0"))
        v.addAction(a("zoom_100", "&Actual Pixels (100 %)", lambda: self.canvas.set_zoom(1.0), "Ctrl+1"))
        v.addSeparator()
        for dock in (self.tool_options_dock, self.layers_dock, self.history_dock, self.queue_dock):
            v.addAction(dock.toggleViewAction())

        t = mb.addMenu("&Tools")
        for act in self.tool_actions.values():
            t.addAction(act)
        t.addSeparator()
        t.addAction(a("cycle_marquee", "Cycle Rectangle/Ellipse", self.cycle_marquee, "Shift+M"))
        t.addAction(a("brush_smaller", "Smaller Brush", lambda: self.scale_brush(1 / BRUSH_STEP), "["))
        t.addAction(a("brush_bigger", "Bigger Brush", lambda: self.scale_brush(BRUSH_STEP), "]"))

    # ------------------------------------------------------------------ tools
    def select_tool(self, tool_id: str) -> None:
        if tool_id in ("rect_select", "ellipse_select"):
            self._last_marquee = tool_id
        self.canvas.set_tool(tool_id)
        self.tool_actions[tool_id].setChecked(True)

    def cycle_marquee(self) -> None:
        """Shift+M (Photoshop): switch between rectangle and ellipse selection."""
        current = self.canvas.tool.tool_id
        if current == "rect_select":
            self.select_tool("ellipse_select")
        elif current == "ellipse_select":
            self.select_tool("rect_select")
        else:
            self.select_tool(self._last_marquee)

    def _on_tool_changed(self, tool_id: str) -> None:
        self.tool_actions[tool_id].setChecked(True)
        tool = self.canvas.tool
        spec = next(s for s in TOOL_SPECS if s.tool_id == tool_id)
        self.tool_options.show_tool(tool_id, tool.brush_kind, spec.tip)

    def scale_brush(self, factor: float) -> None:
        kind = self.canvas.tool.brush_kind or self.tool_options.brush_kind
        self.session.scale_brush(kind, factor)
        self.show_message(f"Brush size {self.session.brush(kind).size:.0f} px", 1500)

    # ------------------------------------------------------------ edit/select
    def _busy(self) -> bool:
        """True while a stroke is in progress: history must not move under it."""
        return self.session.document.stroke_active

    def undo(self) -> None:
        if self.canvas.tool.active:
            self.canvas.tool.cancel()
        if self._busy():
            return
        stack = self.session.document.undo_stack
        text = stack.undo_text()
        if self.session.document.undo():
            self.show_message(f"Undo: {text}", 2000)

    def redo(self) -> None:
        if self._busy() or self.canvas.tool.active:
            return
        stack = self.session.document.undo_stack
        text = stack.redo_text()
        if self.session.document.redo():
            inserted = _inserted_node(stack.command(stack.index - 1))
            if inserted is not None and self.session.document.find(inserted.uid) is not None:
                self.session.set_active(inserted)  # the layer a redo brings back is the one to work on
            self.show_message(f"Redo: {text}", 2000)

    def _doc_call(self, name: str, *args) -> None:
        if self._busy():
            return
        getattr(self.session.document, name)(*args)

    def modify_selection(self, how: str, radius: Optional[float] = None) -> None:
        doc = self.session.document
        if not doc.selection.is_active():
            self.show_message("Nothing is selected", 3000)
            return
        if radius is None:
            title = {"grow": "Grow Selection", "shrink": "Shrink Selection", "feather": "Feather Selection"}[how]
            value, ok = QInputDialog.getInt(self, title, "Radius (px):", 4, 1, 1000)
            if not ok:
                return
            radius = value
        self._doc_call(f"{how}_selection", radius)

    def canvas_size_dialog(self) -> None:
        doc = self.session.document
        dlg = CanvasSizeDialog(doc.width, doc.height, self)
        if dlg.exec():
            self.extend_canvas(*dlg.sides())

    def extend_canvas(self, left: int, top: int, right: int, bottom: int) -> bool:
        if self._busy():
            return False
        try:
            self.session.document.extend_canvas(left, top, right, bottom)
        except ValueError as exc:
            self.show_error("Cannot change the canvas size", str(exc))
            return False
        return True

    def download_model_dialog(self) -> "DownloadDialog":
        """File ▸ Download Model…: the non-modal dialog (editor.ui.download_dialog), returned for tests."""
        from .download_dialog import open_download_dialog  # loaded on first use, like the dialog itself

        return open_download_dialog(self)

    def preferences_dialog(self) -> None:
        dlg = PreferencesDialog(self.settings, self)
        if dlg.exec():
            dlg.apply_to(self.settings)
            self.apply_settings()

    def apply_settings(self) -> None:
        s = self.settings
        self.autosave.configure(s.autosave_minutes, s.autosave_idle_seconds)
        self.session.document.undo_stack.set_limits(memory_limit=s.undo_memory_mb * MIB)
        was_on = self.farm.enabled
        self.farm.configure(s.render_on, s.farm_address, s.farm_gpus)
        if self.farm.enabled and not was_on:
            self.queue_dock.show()
        self.save_settings()

    # -------------------------------------------------------- documents/title
    def _on_document_changed(self, doc: Document) -> None:
        doc.undo_stack.set_limits(memory_limit=self.settings.undo_memory_mb * MIB)
        self._update_title()

    def _update_title(self) -> None:
        path = self.session.document.file_path
        if path:
            name = os.path.basename(path)
        elif self.imported_from:
            name = f"{os.path.basename(self.imported_from)} (imported)"
        else:
            name = "Untitled"
        self.setWindowTitle(f"{name}[*] — {APP_TITLE}")
        self.setWindowModified(self.session.is_modified())

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for path in self.settings.recent_files:
            act = self.recent_menu.addAction(path)
            act.triggered.connect(lambda _c=False, p=path: self.files.open_path(p))
        if not self.settings.recent_files:
            self.recent_menu.addAction("(none)").setEnabled(False)

    # ------------------------------------------------------- messages/prompts
    def show_message(self, text: str, timeout_ms: int = 4000) -> None:
        self.statusBar().showMessage(text, timeout_ms)

    def show_error(self, title: str, text: str) -> None:
        """Non-blocking message box (no nested event loop) plus the status bar."""
        self.last_error = text
        self.show_message(f"{title}: {text}", 15000)
        box = QMessageBox(QMessageBox.Icon.Warning, title, text, QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
        self._error_box = box

    def ask_save_changes(self) -> str:
        """"save", "discard" or "cancel" (tests replace this method)."""
        answer = QMessageBox.question(
            self, "Unsaved changes", "The document has unsaved changes. Save them first?",
            QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Save,
        )
        return {QMessageBox.StandardButton.Save: "save",
                QMessageBox.StandardButton.Discard: "discard"}.get(answer, "cancel")

    def maybe_save(self) -> bool:
        """Before replacing or closing the document: False means "stop"."""
        if not self.session.is_modified():
            return True
        answer = self.ask_save_changes()
        if answer == "save":
            return self.files.save()
        return answer == "discard"

    # --------------------------------------------------------------- recovery
    def offer_recovery(self, mode: str = "ask") -> list["MainWindow"]:
        """Look for autosaves of crashed sessions; ``mode`` is ask, restore,
        discard or keep. Returns the windows showing restored documents."""
        try:
            found = find_recovery(recovery_dir())
        except OSError:
            return []
        if not found or mode == "keep":
            return []
        chosen: list[RecoveryFile] = found
        if mode == "ask":
            dlg = RecoveryDialog(found, self)
            dlg.exec()
            if dlg.choice == RecoveryDialog.LATER:
                return []
            chosen = dlg.checked()
            if dlg.choice == RecoveryDialog.DISCARD:
                mode = "discard"
        windows: list[MainWindow] = []
        for rec in chosen:
            if mode == "discard":
                self._discard_recovery_file(rec)
                continue
            win = self.restore_recovery(rec)
            if win is not None:
                windows.append(win)
        return windows

    def _is_pristine(self) -> bool:
        doc = self.session.document
        return not self.session.is_modified() and doc.file_path is None and len(doc.undo_stack) == 0

    def restore_recovery(self, rec: RecoveryFile) -> Optional["MainWindow"]:
        try:
            doc = load_ora(rec.path).document
        except DocumentFileError as exc:
            self.show_error("Cannot restore the autosave", str(exc))
            return None
        doc.file_path = rec.source_path  # save goes back to the original file, not the autosave
        if self._is_pristine():
            target = self
            self.imported_from = None
            self.session.set_document(doc, modified=True)
        elif self._open_window is not None:
            target = self._open_window(doc)
            target.session.set_document(doc, modified=True)
        else:
            self.show_message("Another document is open: restore it from a new window", 8000)
            return None
        # Secure it under this process's name before deleting the old file.
        target.autosave.autosave_now(wait=True)
        self._discard_recovery_file(rec)
        target.show_message("Restored the autosaved document: save it to keep it", 10000)
        return target

    def _discard_recovery_file(self, rec: RecoveryFile) -> None:
        try:
            discard_recovery(rec)
        except DocumentFileError as exc:
            self.show_message(str(exc), 8000)

    # ---------------------------------------------------------- settings/close
    def save_settings(self) -> None:
        try:
            self.settings.save()
        except OSError as exc:
            self.show_message(f"Cannot save settings: {exc}", 8000)

    def _restore_geometry(self) -> None:
        if self.settings.window_geometry:
            self.restoreGeometry(QByteArray.fromBase64(self.settings.window_geometry.encode("ascii")))
        if self.settings.window_state:
            self.restoreState(QByteArray.fromBase64(self.settings.window_state.encode("ascii")))

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt override
        if self.canvas.tool.active:
            self.canvas.tool.cancel()
        if not self.maybe_save():
            event.ignore()
            return
        self.autosave.shutdown()  # a clean close leaves no recovery file behind
        self.ai.shutdown()
        self.queue_panel.detach()
        self.farm.close()  # stops this editor's farm workers and disconnects (nothing if never used)
        if getattr(self, "download_dialog", None) is not None:
            self.download_dialog.cancel()  # a running download stops; its .part stays for a resume
        self.settings.window_geometry = bytes(self.saveGeometry().toBase64()).decode("ascii")
        self.settings.window_state = bytes(self.saveState().toBase64()).decode("ascii")
        self.settings.stroke_smoothing = self.session.smoothing
        self.save_settings()
        event.accept()


class _DeviceProbe(QObject):
    """Probes the compute device in a worker thread (importing torch takes seconds)."""

    done = Signal(object)  # DeviceChoice, delivered in the GUI thread

    def start(self, setting: str) -> None:
        def work() -> None:
            choice = probe_device(setting)
            try:
                self.done.emit(choice)
            except RuntimeError:  # the window was closed meanwhile
                pass

        threading.Thread(target=work, name="canvasai-device-probe", daemon=True).start()


class FirstRunHint(QFrame):
    """A dismissible card over the top of the canvas."""

    dismissed = Signal()
    MAX_WIDTH = 600

    def __init__(self, canvas: QWidget) -> None:
        super().__init__(canvas)
        self.setObjectName("firstRunHint")
        self.setStyleSheet(
            "#firstRunHint { background: rgba(32, 34, 40, 235); border: 1px solid rgb(90, 130, 190);"
            " border-radius: 8px; }"
            "#firstRunHint QLabel { color: rgb(230, 230, 230); background: transparent; }")
        self.label = QLabel(FIRST_RUN_HINT, self)
        self.label.setWordWrap(True)
        self.label.setTextFormat(Qt.TextFormat.RichText)
        self.button = QPushButton("Got it", self)
        self.button.setToolTip("Hide this hint (it is shown on the first start only)")
        self.button.clicked.connect(self._dismiss)
        row = QHBoxLayout(self)
        row.setContentsMargins(14, 10, 10, 10)
        row.setSpacing(12)
        row.addWidget(self.label, 1)
        row.addWidget(self.button, 0, Qt.AlignmentFlag.AlignVCenter)
        canvas.installEventFilter(self)
        self._place()
        self.show()
        self.raise_()

    def _dismiss(self) -> None:
        self.hide()
        self.dismissed.emit()

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        if obj is self.parent() and event.type() == QEvent.Type.Resize:
            self._place()
        return False

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override; fonts are final once polished
        super().showEvent(event)
        self._place()

    def _place(self) -> None:
        canvas = self.parentWidget()
        width = max(200, min(self.MAX_WIDTH, canvas.width() - 40))
        self.ensurePolished()
        self.label.ensurePolished()
        margins = self.layout().contentsMargins()
        button = self.button.sizeHint()
        text_width = width - margins.left() - margins.right() - self.layout().spacing() - button.width()
        text_height = self.label.heightForWidth(max(50, text_width))
        height = max(text_height, button.height()) + margins.top() + margins.bottom() + 2
        self.setGeometry((canvas.width() - width) // 2, 16, width, height)


def _inserted_node(command):
    """The node an (redone) insert command or macro adds, if any (the last one of a macro)."""
    from editor.document.commands import InsertNodeCommand

    if isinstance(command, InsertNodeCommand):
        return command.node
    for child in reversed(getattr(command, "children", [])):
        node = _inserted_node(child)
        if node is not None:
            return node
    return None
