"""File actions through the window: open -> save .ora -> reopen round trip,
import as layer (menu and drag & drop), export, errors shown (not raised),
canvas size dialog."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QApplication

import editor.ui.file_actions as file_actions
from editor.document import Rect
from editor.io import load_ora

from test_ui_support import drag, editor_env, window  # noqa: F401 - fixtures


def write_png(path, w=64, h=48, color=(10, 120, 230, 255)):
    arr = np.zeros((h, w, 4), np.uint8)
    arr[...] = color
    arr[: h // 2, : w // 2] = (250, 250, 10, 255)
    Image.fromarray(arr, "RGBA").save(path)
    return arr


def test_open_save_reopen_round_trip_through_actions(window, tmp_path, monkeypatch):
    src = tmp_path / "photo.png"
    pixels = write_png(src)
    answers = iter([str(src)])
    monkeypatch.setattr(file_actions, "ask_open_path", lambda *a: next(answers))
    window.actions["open"].trigger()
    doc = window.session.document
    assert (doc.width, doc.height) == (64, 48)
    assert np.array_equal(doc.render(), pixels)
    assert doc.file_path is None  # a PNG is not the save target: Save asks for an .ora name
    assert window.windowTitle().startswith("photo.png (imported)")

    window.session.smoothing = 0.0
    window.canvas.set_zoom(1.0)
    window.session.update_brush("paint", size=6.0, hardness=1.0)
    window.session.set_color((255, 0, 0))
    drag(window.canvas, [(5, 40), (60, 40)])
    edited = doc.render()
    assert window.session.is_modified() and window.isWindowModified()

    target = tmp_path / "work"  # no extension: ".ora" is added
    monkeypatch.setattr(file_actions, "ask_save_path", lambda *a: str(target))
    qtbot_key_save(window)
    saved = tmp_path / "work.ora"
    assert saved.is_file()
    assert not window.session.is_modified() and not window.isWindowModified()
    assert window.windowTitle().startswith("work.ora")
    assert load_ora(saved).document.render().tobytes() == edited.tobytes()

    # Ctrl+S again writes to the same file without asking.
    monkeypatch.setattr(file_actions, "ask_save_path", lambda *a: (_ for _ in ()).throw(AssertionError("asked")))
    window.session.document.add_layer("Extra")
    window.actions["save"].trigger()
    assert [n.name for n in load_ora(saved).document.nodes()][-1] == "Extra"

    monkeypatch.setattr(file_actions, "ask_open_path", lambda *a: str(saved))
    window.actions["open"].trigger()
    reopened = window.session.document
    assert reopened is not doc and reopened.file_path == str(saved)
    assert np.array_equal(reopened.render(), edited)
    assert [n.name for n in reopened.nodes()] == ["photo", "Extra"]
    assert str(saved) in window.settings.recent_files


def qtbot_key_save(win):
    from PySide6.QtTest import QTest

    QTest.keyClick(win.canvas, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)


@pytest.mark.parametrize("ext", ["jpg", "webp", "tif"])
def test_open_other_image_formats(window, tmp_path, ext):
    path = tmp_path / f"pic.{ext}"
    Image.fromarray(np.full((12, 16, 3), 200, np.uint8), "RGB").save(path)
    assert window.files.open_path(str(path))
    doc = window.session.document
    assert (doc.width, doc.height) == (16, 12) and doc.render()[..., 3].min() == 255


def test_open_errors_are_reported_not_raised(window, tmp_path, monkeypatch):
    before = window.session.document
    bad = tmp_path / "broken.ora"
    bad.write_bytes(b"PK\x03\x04 definitely not a zip")
    assert not window.files.open_path(str(bad))
    assert window.session.document is before
    assert "broken.ora" in window.last_error and "zip" in window.last_error
    assert not window.files.open_path(str(tmp_path / "missing.png"))
    assert "not found" in window.last_error
    assert "Cannot open" in window.statusBar().currentMessage()


def test_save_failure_keeps_document_modified(window, tmp_path):
    window.session.document.add_layer("x")
    folder = tmp_path / "a_folder.ora"
    folder.mkdir()
    assert not window.files.save_to(str(folder))
    assert window.session.is_modified()
    assert "folder" in window.last_error


def test_import_as_layer_and_drop(window, tmp_path, monkeypatch):
    doc = window.session.document
    png = tmp_path / "sticker.png"
    pixels = write_png(png, 20, 10)
    monkeypatch.setattr(file_actions, "ask_open_path", lambda *a: str(png))
    window.actions["import"].trigger()
    layer = window.session.active_layer()
    assert layer.name == "sticker" and (layer.x, layer.y) == (0, 0)
    assert np.array_equal(layer.read(Rect(0, 0, 20, 10)), pixels)
    assert doc.undo_stack.undo_text() == "Add layer from image"

    # Drag & drop onto the canvas: centred on the drop point.
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(png))])
    pos = window.canvas.viewport.to_widget(QPointF(100, 80))
    drop = QDropEvent(pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    # Qt routes Drop events only to the drag manager's current target, so call the handler.
    window.canvas.dropEvent(drop)
    assert drop.isAccepted()
    dropped = window.session.active_layer()
    assert dropped is not layer and (dropped.x, dropped.y) == (90, 75)

    # An .ora imports as a group holding its layers (one undo step).
    ora = tmp_path / "part.ora"
    window.files.save_to(str(ora))
    steps = len(doc.undo_stack)
    assert window.files.import_path(str(ora))
    group = window.session.active_node()
    assert group.name == "part" and [c.name for c in group.children] == ["Background", "Paint", "sticker", "sticker"]
    assert len(doc.undo_stack) == steps + 1


def test_export_png_and_jpeg(window, tmp_path, monkeypatch):
    out = tmp_path / "flat.png"
    monkeypatch.setattr(file_actions, "ask_save_path", lambda *a: str(out))
    window.actions["export"].trigger()
    with Image.open(out) as im:
        assert im.size == (200, 150)
        assert np.array_equal(np.asarray(im.convert("RGBA")), window.session.document.render())
    assert window.files.export_to(str(tmp_path / "flat.jpg"))
    assert not window.files.export_to(str(tmp_path / "flat.bmp"))
    assert "export format" in window.last_error


def test_canvas_size_dialog_extends_in_any_direction(window):
    from editor.ui.dialogs import CanvasSizeDialog

    dlg = CanvasSizeDialog(200, 150)
    dlg.width_spin.setValue(260)
    dlg.anchor_group.button(2).click()  # top-right anchor: grow to the left and down
    dlg.height_spin.setValue(170)
    assert dlg.sides() == (60, 0, 0, 20)
    dlg.set_sides(10, 20, 30, -40)
    assert (dlg.width_spin.value(), dlg.height_spin.value()) == (240, 130)
    doc = window.session.document
    assert window.extend_canvas(*dlg.sides())
    assert (doc.width, doc.height) == (240, 130)
    assert doc.raster_layers()[0].x == 10 and doc.raster_layers()[0].y == 20
    assert "240 × 130" in window.status.size_label.text()
    assert not window.extend_canvas(-500, 0, 0, 0)
    assert "out of range" in window.last_error
    window.undo()
    assert (doc.width, doc.height) == (200, 150)


def test_message_box_is_non_blocking(window):
    window.show_error("Oops", "something failed")
    box = window._error_box
    assert box is not None and box.isVisible()
    box.close()
    QApplication.processEvents()
    assert window.isVisible()


def test_new_document_and_unsaved_changes_prompt(window):
    window.session.document.add_layer("dirty")
    asked = []
    window.ask_save_changes = lambda: asked.append(1) or "cancel"
    window.files.new(300, 200)  # new() itself does not ask; the dialog path does
    assert (window.session.document.width, window.session.document.height) == (300, 200)
    window.session.document.add_layer("dirty again")
    assert not window.files.open_path("/nonexistent.png")  # cancelled at the prompt
    assert asked == [1]
