"""First run of the application: an empty canvas with a short hint of what to
do (shown once, remembered in the settings), the house models selected, and
the compute device shown in the status bar."""

from __future__ import annotations

import json

from editor.device import DeviceChoice
from editor.settings import Settings, settings_path

from test_ui_support import blank_document, editor_env  # noqa: F401 - fixtures


def _main_window(qtbot, **kwargs):
    from editor.ui.main_window import MainWindow

    win = MainWindow(**kwargs)
    win.ask_save_changes = lambda: "discard"
    qtbot.addWidget(win)
    win.resize(900, 650)
    win.show()
    qtbot.waitExposed(win)
    return win


def test_first_start_shows_the_hint_once_and_remembers_it(editor_env, qtbot):  # noqa: F811
    assert not settings_path().exists()
    win = _main_window(qtbot)
    hint = win.first_run_hint
    assert hint is not None and hint.isVisible()
    assert "Welcome to CanvasAI" in hint.label.text()
    assert hint.geometry().right() <= win.canvas.width() and hint.geometry().top() >= 0
    assert win.settings.preview_model == "house:preview" and win.settings.final_model == "house:full"
    hint.button.click()
    assert not hint.isVisible()
    saved = json.loads(settings_path().read_text())
    assert saved["first_run_hint_seen"] is True and saved["device"] == "auto"
    assert saved["preview_model"] == "house:preview" and saved["model_folders"] == []
    win.close()
    again = _main_window(qtbot)
    assert again.first_run_hint is None
    again.close()


def test_the_hint_goes_away_when_work_starts(editor_env, qtbot):  # noqa: F811
    win = _main_window(qtbot, settings=Settings())
    assert win.first_run_hint.isVisible()
    doc = win.session.document
    doc.fill_selection(doc.raster_layers()[-1], (10, 200, 30))  # the first edit
    qtbot.waitUntil(lambda: not win.first_run_hint.isVisible(), timeout=2000)
    win.close()
    assert Settings.load().first_run_hint_seen is True  # saved on close


def test_no_hint_when_a_document_is_given(editor_env, qtbot):  # noqa: F811
    win = _main_window(qtbot, settings=Settings(), document=blank_document())
    assert win.first_run_hint is None
    win.close()


def test_status_bar_shows_the_device_and_the_fallback(editor_env, qtbot, monkeypatch):  # noqa: F811
    monkeypatch.setenv("CANVASAI_DEVICE", "cpu")
    win = _main_window(qtbot, settings=Settings(first_run_hint_seen=True), document=blank_document())
    qtbot.waitUntil(lambda: win.compute_device is not None, timeout=30000)
    assert win.compute_device.device == "cpu"
    assert win.status.device_label.text().startswith("CPU")
    fallback = DeviceChoice("cpu", "CPU", "CUDA was requested but no usable NVIDIA GPU or driver was found: "
                                          "running on the CPU")
    win._on_device(fallback)
    assert win.status.device_label.text() == "⚠ CPU"
    assert "no usable NVIDIA GPU" in win.status.device_label.toolTip()
    assert "running on the CPU" in win.statusBar().currentMessage()
    win.close()
