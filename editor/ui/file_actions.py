"""File menu logic: new, open, import as layer, save (.ora), export.

All disk access goes through ``editor.io`` (atomic, verified saves). Any
failure is reported with its reason (message box + status bar) and leaves
the current document untouched; nothing here may crash the window.

The ``ask_*`` functions wrap the file dialogs so tests can replace them.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator, Optional

from PySide6.QtCore import QObject, QPointF, Qt
from PySide6.QtWidgets import QApplication, QFileDialog, QWidget

from editor.headless import EXPORT_EXTENSIONS, ORA_EXTENSIONS, copy_layers_into, is_openable, new_document, open_document
from editor.io import DocumentFileError, export_flattened, load_image, load_ora, save_ora

from .dialogs import NewDocumentDialog

if TYPE_CHECKING:
    from .main_window import MainWindow

OPEN_FILTER = "Images and documents (*.ora *.png *.jpg *.jpeg *.webp *.tif *.tiff *.bmp *.gif);;All files (*)"
SAVE_FILTER = "OpenRaster (*.ora)"
EXPORT_FILTER = "PNG (*.png);;JPEG (*.jpg *.jpeg);;WebP (*.webp)"


def ask_open_path(parent: QWidget, title: str, directory: str, filter_: str) -> Optional[str]:
    path, _ = QFileDialog.getOpenFileName(parent, title, directory, filter_)
    return path or None


def ask_save_path(parent: QWidget, title: str, suggested: str, filter_: str) -> Optional[str]:
    path, _ = QFileDialog.getSaveFileName(parent, title, suggested, filter_)
    return path or None


@contextmanager
def busy_cursor() -> Iterator[None]:
    QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
    try:
        yield
    finally:
        QApplication.restoreOverrideCursor()


class FileController(QObject):
    def __init__(self, window: "MainWindow") -> None:
        super().__init__(window)
        self.window = window
        self.session = window.session
        self.last_export: Optional[str] = None

    # ------------------------------------------------------------- helpers
    def _directory(self) -> str:
        doc_path = self.session.document.file_path or self.window.imported_from
        if doc_path:
            return os.path.dirname(doc_path)
        return self.window.settings.last_directory or os.path.expanduser("~")

    def _base_name(self) -> str:
        """Name to suggest for Save As / Export: the document's, or the imported file's."""
        path = self.session.document.file_path or self.window.imported_from
        return os.path.splitext(os.path.basename(path))[0] if path else "Untitled"

    def _remember(self, path: str) -> None:
        self.window.settings.last_directory = os.path.dirname(os.path.abspath(path))
        self.window.settings.add_recent_file(path)
        self.window.save_settings()

    def _fail(self, title: str, exc: BaseException) -> bool:
        if isinstance(exc, DocumentFileError):
            text = str(exc)
        elif isinstance(exc, MemoryError):
            text = "Not enough memory for this operation."
        else:
            text = f"Unexpected error ({type(exc).__name__}): {exc}"
        self.window.show_error(title, text)
        return False

    # ---------------------------------------------------------------- new/open
    def new_dialog(self) -> None:
        if not self.window.maybe_save():
            return
        doc = self.session.document
        dlg = NewDocumentDialog(self.window, doc.width, doc.height)
        if dlg.exec():
            w, h, background = dlg.values()
            self.new(w, h, background)

    def new(self, width: int, height: int, background=(255, 255, 255)) -> None:
        try:
            doc = new_document(width, height, background)
        except (ValueError, MemoryError) as exc:
            self._fail("Cannot create document", exc)
            return
        self.window.imported_from = None
        self.session.set_document(doc)
        self.window.show_message(f"New document {width} × {height}")

    def open_dialog(self) -> None:
        path = ask_open_path(self.window, "Open", self._directory(), OPEN_FILTER)
        if path:
            self.open_path(path)

    def open_path(self, path: str, ask_to_save: bool = True) -> bool:
        if ask_to_save and not self.window.maybe_save():
            return False
        try:
            with busy_cursor():
                doc, warnings, selected = open_document(path)
        except Exception as exc:  # noqa: BLE001 - reported; the current document stays
            return self._fail("Cannot open file", exc)
        # A flat image keeps its name in the title ("photo.png (imported)") until saved as .ora.
        self.window.imported_from = None if doc.file_path else os.path.abspath(path)
        self.session.set_document(doc, selected)
        self._remember(path)
        note = f" ({len(warnings)} warning(s): {warnings[0]})" if warnings else ""
        self.window.show_message(f"Opened {os.path.basename(path)}{note}")
        return True

    # ----------------------------------------------------------------- import
    def import_dialog(self) -> None:
        path = ask_open_path(self.window, "Import as Layer", self._directory(), OPEN_FILTER)
        if path:
            self.import_path(path)

    def import_path(self, path: str, center: Optional[QPointF] = None) -> bool:
        """Add a file as a new layer (an .ora as a group of its layers). With
        ``center`` (a drop position) the image is centred there, else at 0, 0."""
        doc = self.session.document
        if doc.stroke_active:
            return False
        name = os.path.splitext(os.path.basename(path))[0] or "Layer"
        try:
            with busy_cursor():
                if not is_openable(path):
                    raise DocumentFileError(path, "unsupported file type")
                if os.path.splitext(path)[1].lower() in ORA_EXTENSIONS:
                    source = load_ora(path).document
                    node = copy_layers_into(doc, source, name)
                else:
                    rgba = load_image(path)
                    h, w = rgba.shape[:2]
                    x = y = 0
                    if center is not None:
                        x, y = round(center.x() - w / 2.0), round(center.y() - h / 2.0)
                    parent, index = self.window.layer_actions.insert_point()
                    node = doc.add_layer_from_image(rgba, x, y, name=name, parent=parent, index=index)
        except Exception as exc:  # noqa: BLE001 - reported; nothing was added
            return self._fail("Cannot import file", exc)
        self.session.set_active(node)
        self.window.show_message(f"Imported {os.path.basename(path)} as a layer")
        return True

    def import_dropped(self, paths: list[str], pos: QPointF) -> None:
        for path in paths:
            self.import_path(path, pos)

    # ------------------------------------------------------------------- save
    def save(self) -> bool:
        path = self.session.document.file_path
        if path and os.path.splitext(path)[1].lower() in ORA_EXTENSIONS:
            return self.save_to(path)
        return self.save_as_dialog()

    def save_as_dialog(self) -> bool:
        suggested = os.path.join(self._directory(), self._base_name() + ".ora")
        path = ask_save_path(self.window, "Save As", suggested, SAVE_FILTER)
        if not path:
            return False
        if os.path.splitext(path)[1].lower() not in ORA_EXTENSIONS:
            path += ".ora"
        return self.save_to(path)

    def save_to(self, path: str) -> bool:
        doc = self.session.document
        if doc.stroke_active:
            return False
        try:
            with busy_cursor():
                save_ora(doc, path)  # atomic + verified; sets file_path and the clean mark
        except Exception as exc:  # noqa: BLE001 - the old file is intact; say why
            return self._fail("Cannot save", exc)
        self.window.imported_from = None
        self.session.mark_saved()
        self._remember(path)
        self.window.show_message(f"Saved {os.path.basename(path)}")
        return True

    # ----------------------------------------------------------------- export
    def export_dialog(self) -> bool:
        suggested = self.last_export or os.path.join(self._directory(), self._base_name() + ".png")
        path = ask_save_path(self.window, "Export", suggested, EXPORT_FILTER)
        if not path:
            return False
        if os.path.splitext(path)[1].lower() not in EXPORT_EXTENSIONS:
            path += ".png"
        return self.export_to(path)

    def export_to(self, path: str) -> bool:
        try:
            with busy_cursor():
                export_flattened(self.session.document, path)
        except Exception as exc:  # noqa: BLE001
            return self._fail("Cannot export", exc)
        self.last_export = path
        self.window.settings.last_directory = os.path.dirname(os.path.abspath(path))
        self.window.show_message(f"Exported {os.path.basename(path)}")
        return True
