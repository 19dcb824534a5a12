"""File ▸ Download Model…: fetch a model file by URL into a model folder, off the UI thread.

The transfer is the engine's `download_file` (resumable `.NAME.part`, SHA-256, content check,
atomic no-overwrite move): the editor adds no download logic of its own, so the CLI and the dialog
behave alike. It runs on a daemon thread; progress, the result or a one-line error come back to the
UI thread as queued signals. Cancel, closing the dialog or the window going away set a flag the
download polls between network reads: the partial file stays and Download again resumes it.

A finished file shows up in the AI panel's model pickers: its folder is (if the user keeps the box
ticked) added to the settings' model folders, and the window's AI controller re-scans them.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from pathlib import Path
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QFileDialog, QFormLayout, QHBoxLayout, QLabel,
                               QLineEdit, QMainWindow, QProgressBar, QPushButton, QVBoxLayout, QWidget)

from inference.api import (DownloadResult, check_download_url, check_model_filename, check_sha256,
                           download_file)
from inference.errors import CancelledError, InferenceError

from ..settings import Settings

CHOOSE = ""  # the folder combo's data for its last item, "Choose…"
PROGRESS_STEPS = 1000  # the bar counts per mille: QProgressBar is 32-bit, model files pass 2 GiB
EMIT_INTERVAL_S = 0.1  # progress reaches the UI at most this often (the engine reports every 64 KiB)
SPEED_WINDOW_S = 3.0  # the speed shown is the average over this many seconds
ERROR_STYLE = "color: #d04040;"


def format_size(size: float) -> str:
    """Bytes in decimal units, as download sites and file managers show them."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(size) < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"  # not reached; keeps type checkers content


def one_line(text: str) -> str:
    """A message for a label: the engine's errors are one line already, anything else is made one."""
    return " ".join(str(text).split()) or "unknown error"


def same_folder(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b))


class _DownloadJob(QObject):
    """One `download_file` call on a daemon thread; its outcome arrives as signals in the UI thread."""

    progress = Signal(object, object)  # bytes on disk, total bytes or None (Python ints: past 2 GiB)
    succeeded = Signal(object)  # DownloadResult
    failed = Signal(str)  # one line
    cancelled = Signal(str)  # the engine's one line (names the kept .part)

    def __init__(self, url: str, folder: str, sha256: str | None, filename: str | None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.url, self.folder, self.sha256, self.filename = url, folder, sha256, filename
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="canvasai-model-download", daemon=True)
        self._last_emit = 0.0

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()

    def running(self) -> bool:
        return self.thread.is_alive()

    def _on_progress(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - self._last_emit >= EMIT_INTERVAL_S or done == total:  # the last one always gets through
            self._last_emit = now
            self._emit(self.progress, done, total)

    def _run(self) -> None:
        try:
            result = download_file(self.url, self.folder, sha256=self.sha256, filename=self.filename,
                                   progress=self._on_progress, should_stop=self.stop_event.is_set)
        except CancelledError as exc:
            self._emit(self.cancelled, one_line(str(exc)))
        except InferenceError as exc:  # DownloadError, InvalidRequestError, ModelFormatError: one line each
            self._emit(self.failed, one_line(str(exc)))
        except Exception as exc:  # noqa: BLE001 - a bug must reach the dialog as a line, not kill the thread
            self._emit(self.failed, one_line(f"{type(exc).__name__}: {exc}"))
        else:
            self._emit(self.succeeded, result)

    @staticmethod
    def _emit(signal, *args) -> None:
        try:
            signal.emit(*args)
        except RuntimeError:  # the dialog (this object's parent) was deleted meanwhile
            pass


class DownloadDialog(QDialog):
    """URL, optional SHA-256, destination folder and file name; Download, Cancel, Close."""

    downloaded = Signal(object, bool)  # DownloadResult, True when its folder was added to the model folders

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Download Model")
        self.setMinimumWidth(560)
        self.settings = settings
        self.job: _DownloadJob | None = None
        self.result: DownloadResult | None = None  # the last finished download (tests, callers)
        self._speed: deque[tuple[float, int]] = deque()
        self._done = 0
        # The window (and so this dialog) deleted mid-download stops it too; the lambda holds the
        # running job's event, not self, which is gone by then.
        self._stop_on_destroy: list[threading.Event] = []
        stops = self._stop_on_destroy
        self.destroyed.connect(lambda *_args: [event.set() for event in stops])

        self.url = QLineEdit()
        self.url.setPlaceholderText("https://… a .safetensors, .gguf or .ckpt file")
        self.sha256 = QLineEdit()
        self.sha256.setPlaceholderText("optional: 64 hex digits from the model's page")
        self.folder = QComboBox()
        self.folder.setToolTip("The model folder the file goes into")
        self.folder.activated.connect(self._folder_activated)
        self.folder.currentIndexChanged.connect(lambda _i: self._folder_changed())
        self._last_folder = ""  # the folder picked before "Choose…": back to it when the chooser is cancelled
        self.add_folder = QCheckBox("Add this folder to the model folders (its models appear in the AI panel)")
        self.add_folder.setChecked(True)
        self.filename = QLineEdit()
        self.filename.setPlaceholderText("optional: from the server or the URL")
        self.bar = QProgressBar()
        self.bar.setRange(0, PROGRESS_STEPS)
        self.bar.setValue(0)
        self.transfer = QLabel()  # "12.3 MB of 45.6 MB · 4.1 MB/s"
        self.status = QLabel()  # one line: an error, a cancel, or the result with its SHA-256
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.download_button = QPushButton("Download")
        self.download_button.setDefault(True)
        self.download_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the download; the partial file is kept and Download resumes it")
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button = QPushButton("Close")
        self.close_button.clicked.connect(self.reject)
        self._layout()
        self.refresh_folders()
        self._set_running(False)

    def _layout(self) -> None:
        form = QFormLayout()
        form.addRow("URL", self.url)
        form.addRow("SHA-256", self.sha256)
        form.addRow("Folder", self.folder)
        form.addRow("", self.add_folder)
        form.addRow("File name", self.filename)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        for button in (self.download_button, self.cancel_button, self.close_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.bar)
        layout.addWidget(self.transfer)
        layout.addWidget(self.status)
        layout.addLayout(buttons)

    # ------------------------------------------------------------ folders
    def refresh_folders(self) -> None:
        """The settings' model folders, then "Choose…"; keeps a folder chosen earlier selected."""
        current = self.current_folder() or self._last_folder
        self.folder.blockSignals(True)
        self.folder.clear()
        for path in self.settings.model_folders:
            self.folder.addItem(path, path)
        if current and self.folder.findData(current) < 0:
            self.folder.addItem(current, current)
        self.folder.addItem("Choose…", CHOOSE)
        self.folder.setCurrentIndex(max(self.folder.findData(current), 0) if current else 0)
        self.folder.blockSignals(False)
        self._folder_changed()

    def current_folder(self) -> str:
        data = self.folder.currentData() if self.folder.count() else CHOOSE
        return data if isinstance(data, str) else CHOOSE

    def choose_folder(self) -> str:
        """Asks for a folder ("" if none); tests replace this method."""
        start = self.settings.model_folders[0] if self.settings.model_folders else str(Path.home())
        return QFileDialog.getExistingDirectory(self, "Download into folder", start)

    def _folder_activated(self, index: int) -> None:
        if self.folder.itemData(index) == CHOOSE:
            self._ask_folder()

    def _ask_folder(self) -> str:
        path = self.choose_folder()
        if not path:
            self.refresh_folders()  # back to a real folder when there is one
            return ""
        path = os.path.abspath(path)
        index = self.folder.findData(path)
        if index < 0:
            index = self.folder.count() - 1  # before "Choose…"
            self.folder.insertItem(index, path, path)
        self.folder.setCurrentIndex(index)
        self._folder_changed()
        return path

    def _folder_changed(self) -> None:
        if self.current_folder():
            self._last_folder = self.current_folder()
        self._update_add_folder()

    def _in_model_folders(self, path: str) -> bool:
        return any(same_folder(path, known) for known in self.settings.model_folders)

    def _update_add_folder(self) -> None:
        # Offered only for a folder the pickers do not scan yet: downloading elsewhere is allowed,
        # but the model would then be found only through "Add model…".
        path = self.current_folder()
        self.add_folder.setVisible(bool(path) and not self._in_model_folders(path))

    # ------------------------------------------------------------ download
    def running(self) -> bool:
        return self.job is not None and self.job.running()

    def start(self) -> bool:
        """Checks the fields here (no request for a bad one), then downloads on a worker thread."""
        if self.running():  # also a cancelled one still stopping: the Download button is off meanwhile
            return False
        try:
            url = check_download_url(self.url.text())
            sha = check_sha256(self.sha256.text()) if self.sha256.text().strip() else None
            name = self.filename.text().strip()
            name = check_model_filename(name) if name else None
        except InferenceError as exc:
            self._show_error(one_line(str(exc)))
            return False
        folder = self.current_folder() or self._ask_folder()
        if not folder:
            self._show_error("Choose a folder to download into")
            return False
        if not Path(folder).is_dir():
            self._show_error(f"{folder}: no such folder to download into")
            return False
        self.result = None
        self._speed.clear()
        self._done = 0
        self.bar.setRange(0, PROGRESS_STEPS)
        self.bar.setValue(0)
        self.transfer.setText("Connecting…")
        self._show_info("")
        self.job = job = _DownloadJob(url, folder, sha, name, self)
        job.progress.connect(self._on_progress)
        job.succeeded.connect(lambda result: self._on_succeeded(job, result))
        job.failed.connect(lambda text: self._on_failed(job, text))
        job.cancelled.connect(lambda text: self._on_cancelled(job, text))
        self._stop_on_destroy[:] = [job.stop_event]
        self._set_running(True)
        job.start()
        return True

    def cancel(self) -> None:
        if self.running():
            self.job.stop()
            self.cancel_button.setEnabled(False)
            self.transfer.setText(self.transfer.text() + " · stopping…")

    def done(self, result: int) -> None:  # noqa: D102 - Close, Esc and the title bar's × all end here
        self.cancel()  # a download never outlives its dialog unseen
        super().done(result)

    def _set_running(self, running: bool) -> None:
        for widget in (self.url, self.sha256, self.folder, self.add_folder, self.filename, self.download_button):
            widget.setEnabled(not running)
        self.cancel_button.setEnabled(running)

    def _on_progress(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if done < self._done:  # the server ignored Range: the file restarted from zero
            self._speed.clear()
        self._done = done
        self._speed.append((now, done))
        while len(self._speed) > 2 and now - self._speed[0][0] > SPEED_WINDOW_S:
            self._speed.popleft()
        first_time, first_done = self._speed[0]
        speed = (done - first_done) / (now - first_time) if now > first_time else 0.0
        if total:
            self.bar.setRange(0, PROGRESS_STEPS)
            self.bar.setValue(min(PROGRESS_STEPS, done * PROGRESS_STEPS // total))
            text = f"{format_size(done)} of {format_size(total)}"
        else:
            self.bar.setRange(0, 0)  # size unknown: a busy bar
            text = f"{format_size(done)}"
        self.transfer.setText(f"{text} · {format_size(speed)}/s" if speed > 0 else text)

    def _on_succeeded(self, job: _DownloadJob, result: DownloadResult) -> None:
        if job is not self.job:
            return
        self._set_running(False)
        self.result = result
        self.bar.setRange(0, PROGRESS_STEPS)
        self.bar.setValue(PROGRESS_STEPS)
        resumed = f", resumed at {format_size(result.resumed_from)}" if result.resumed_from else ""
        self.transfer.setText(f"{format_size(result.size)}{resumed}")
        folder = str(result.path.parent)
        added = False
        if self.add_folder.isChecked() and not self._in_model_folders(folder):
            self.settings.model_folders.append(folder)
            added = True
            self.refresh_folders()
        self._show_info(f"Downloaded {result.path.name} into {folder} — SHA-256 {result.sha256}")
        self.downloaded.emit(result, added)

    def _on_failed(self, job: _DownloadJob, text: str) -> None:
        if job is not self.job:
            return
        self._set_running(False)
        self.transfer.setText("")
        self._show_error(f"Download failed: {text}")

    def _on_cancelled(self, job: _DownloadJob, text: str) -> None:
        if job is not self.job:
            return
        self._set_running(False)
        self.transfer.setText("")
        if self._done:
            self._show_info(f"Cancelled at {format_size(self._done)}; the partial file is kept — "
                            f"press Download again to resume", tip=text)
        else:
            self._show_info("Cancelled before any data arrived; nothing was written", tip=text)

    def _show_error(self, text: str) -> None:
        self.status.setStyleSheet(ERROR_STYLE)
        self.status.setText(one_line(text))
        self.status.setToolTip("")

    def _show_info(self, text: str, tip: str = "") -> None:
        self.status.setStyleSheet("")
        self.status.setText(one_line(text) if text else "")
        self.status.setToolTip(tip)


def open_download_dialog(window: QMainWindow) -> DownloadDialog:
    """Shows the window's download dialog (one per window, kept between uses) without blocking it."""
    dialog: DownloadDialog | None = getattr(window, "download_dialog", None)
    if dialog is None:
        dialog = DownloadDialog(window.settings, window)
        dialog.downloaded.connect(lambda result, added: _model_downloaded(window, result, added))
        window.download_dialog = dialog
    elif not dialog.running():
        dialog.refresh_folders()  # Preferences or an earlier download may have changed them
    dialog.show()
    dialog.raise_()
    dialog.activateWindow()
    return dialog


def _model_downloaded(window: QMainWindow, result: DownloadResult, folder_added: bool) -> None:
    """Puts a finished download into the model pickers (the AI controller re-scans the folders)."""
    if folder_added:
        window.save_settings()
    controller = getattr(getattr(window, "ai", None), "controller", None)
    if controller is not None:  # still loading: it scans the settings' folders when it starts
        controller.reload_models()
    folders = getattr(window.settings, "model_folders", [])
    if any(same_folder(str(result.path.parent), folder) for folder in folders):
        window.show_message(f"Downloaded {result.path.name}: it is in the AI panel's model list now", 8000)
    else:  # the user unticked "add this folder": only "Add model…" finds it
        window.show_message(f"Downloaded {result.path} (not in a model folder: pick it with “Add model…”)", 8000)
