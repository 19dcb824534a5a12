"""File ▸ Download Model…: the dialog against a real HTTP server on 127.0.0.1 (offscreen Qt).

A download completes into the folder with its SHA-256 shown and the bar at 100 %, a wrong hash is
one line and leaves nothing, Cancel (or closing the dialog) keeps the `.part` and Download resumes
it, bad fields are refused before any request, the event loop keeps ticking while bytes arrive,
and a finished file reaches the AI controller's model list through the window.
"""
from __future__ import annotations

import itertools
import json
import threading
import time

import pytest
from http_server import PAYLOAD, PAYLOAD_SHA, Route, serve
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
from test_ui_support import editor_env, open_window  # noqa: F401 - the fixture

from editor.settings import Settings, settings_path
from editor.ui import download_dialog
from editor.ui.download_dialog import PROGRESS_STEPS, DownloadDialog

TIMEOUT_MS = 10000


@pytest.fixture
def http_server(monkeypatch):
    with serve(monkeypatch) as httpd:
        yield httpd


@pytest.fixture
def lib(tmp_path):
    folder = tmp_path / "library"
    folder.mkdir()
    return folder


@pytest.fixture
def dialog(qtbot, lib):
    dlg = DownloadDialog(Settings(model_folders=[str(lib)]))
    qtbot.addWidget(dlg)
    dlg.show()
    return dlg


def _fill(dlg: DownloadDialog, url: str, sha: str = "", name: str = "") -> None:
    dlg.url.setText(url)
    dlg.sha256.setText(sha)
    dlg.filename.setText(name)


def _wait_idle(qtbot, dlg: DownloadDialog) -> None:
    qtbot.waitUntil(lambda: not dlg.running() and dlg.download_button.isEnabled(), timeout=TIMEOUT_MS)


def test_a_download_lands_in_the_folder_with_its_hash_and_a_full_bar(qtbot, dialog, lib, http_server):
    http_server.routes["/models/tiny.safetensors"] = Route()
    _fill(dialog, f"{http_server.base}/models/tiny.safetensors?token=secret", PAYLOAD_SHA.upper())
    assert dialog.add_folder.isHidden()  # the folder is a model folder already
    with qtbot.waitSignal(dialog.downloaded, timeout=TIMEOUT_MS) as signal:
        dialog.download_button.click()
        assert not dialog.download_button.isEnabled() and dialog.cancel_button.isEnabled()
    result, added = signal.args
    assert result.path == lib / "tiny.safetensors" and result.path.read_bytes() == PAYLOAD
    assert (result.sha256, result.resumed_from, added) == (PAYLOAD_SHA, 0, False)
    assert sorted(p.name for p in lib.iterdir()) == ["tiny.safetensors"]  # no .part left behind
    assert dialog.bar.value() == dialog.bar.maximum() == PROGRESS_STEPS
    text = dialog.status.text()
    assert "tiny.safetensors" in text and PAYLOAD_SHA in text and "\n" not in text
    assert "KB" in dialog.transfer.text()
    assert dialog.download_button.isEnabled() and not dialog.cancel_button.isEnabled()


def test_a_wrong_hash_is_one_line_and_leaves_no_file(qtbot, dialog, lib, http_server):
    http_server.routes["/m.safetensors"] = Route()
    _fill(dialog, f"{http_server.base}/m.safetensors", "0" * 64)
    dialog.download_button.click()
    _wait_idle(qtbot, dialog)
    text = dialog.status.text()
    assert text.startswith("Download failed:") and "SHA-256 mismatch" in text and "\n" not in text
    assert "Traceback" not in text and dialog.result is None
    assert list(lib.iterdir()) == []  # neither the file nor its .part


def test_cancel_keeps_the_part_and_a_second_download_resumes(qtbot, dialog, lib, http_server):
    route = http_server.routes["/slow.safetensors"] = Route(delay_s=0.1)
    _fill(dialog, f"{http_server.base}/slow.safetensors", PAYLOAD_SHA)
    dialog.download_button.click()
    part = lib / ".slow.safetensors.part"
    qtbot.waitUntil(lambda: part.is_file() and part.stat().st_size > 0 and dialog._done > 0, timeout=TIMEOUT_MS)
    dialog.cancel_button.click()
    _wait_idle(qtbot, dialog)
    kept = part.stat().st_size
    assert 0 < kept < len(PAYLOAD) and not (lib / "slow.safetensors").exists()
    assert "kept" in dialog.status.text() and "resume" in dialog.status.text()
    assert dialog.result is None and "\n" not in dialog.status.text()

    route.delay_s = 0.0
    with qtbot.waitSignal(dialog.downloaded, timeout=TIMEOUT_MS):
        dialog.download_button.click()
    result = dialog.result
    assert result.resumed_from >= kept and result.sha256 == PAYLOAD_SHA
    assert result.path.read_bytes() == PAYLOAD and not part.exists()
    assert http_server.log[-1]["range"] == f"bytes={result.resumed_from}-"
    assert "resumed" in dialog.transfer.text()


def test_closing_the_dialog_mid_download_cancels_it_and_keeps_the_part(qtbot, dialog, lib, http_server):
    http_server.routes["/big.safetensors"] = Route(delay_s=0.1)
    _fill(dialog, f"{http_server.base}/big.safetensors")
    dialog.download_button.click()
    part = lib / ".big.safetensors.part"
    qtbot.waitUntil(lambda: part.is_file() and dialog._done > 0, timeout=TIMEOUT_MS)
    job = dialog.job
    dialog.close()
    assert not dialog.isVisible() and job.stop_event.is_set()
    job.thread.join(5)
    assert not job.thread.is_alive()
    _wait_idle(qtbot, dialog)
    assert part.is_file() and 0 < part.stat().st_size < len(PAYLOAD)
    assert not (lib / "big.safetensors").exists() and "Cancelled" in dialog.status.text()


def _pick(dialog: DownloadDialog, index: int) -> None:
    """What a user's pick in the folder combo does: select the item, then `activated`."""
    dialog.folder.setCurrentIndex(index)
    dialog.folder.activated.emit(index)


def test_choose_offers_to_add_a_new_folder_and_cancelling_it_goes_back(qtbot, dialog, lib, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    choose = dialog.folder.count() - 1
    assert dialog.folder.itemText(choose) == "Choose…" and dialog.current_folder() == str(lib)
    dialog.choose_folder = lambda: ""  # the folder chooser cancelled
    _pick(dialog, choose)
    assert dialog.current_folder() == str(lib) and dialog.add_folder.isHidden()
    dialog.choose_folder = lambda: str(other)
    _pick(dialog, choose)
    assert dialog.current_folder() == str(other) and not dialog.add_folder.isHidden()
    assert [dialog.folder.itemText(i) for i in range(dialog.folder.count())] == [str(lib), str(other), "Choose…"]
    dialog.choose_folder = lambda: ""
    _pick(dialog, choose + 1)  # "Choose…" again, cancelled: the chosen folder stays
    assert dialog.current_folder() == str(other)


@pytest.mark.parametrize("url, sha, name, expected", [
    ("ftp://127.0.0.1/x.safetensors", "", "", "only http:// and https:// URLs"),
    ("file:///etc/passwd", "", "", "only http:// and https:// URLs"),
    ("{base}/x.safetensors", "abc", "", "expected 64 hexadecimal digits"),
    ("{base}/x.safetensors", "", "../x.safetensors", "must be a plain file name"),
    ("{base}/x.safetensors", "", "notes.txt", "not a model file name"),
])
def test_bad_fields_are_refused_before_any_request(qtbot, dialog, http_server, url, sha, name,
                                                   expected):
    http_server.routes["/x.safetensors"] = Route()
    _fill(dialog, url.format(base=http_server.base), sha, name)
    dialog.download_button.click()
    text = dialog.status.text()
    assert expected in text and "\n" not in text
    assert dialog.job is None and http_server.log == []  # no thread, no request
    assert dialog.download_button.isEnabled()


def test_the_ui_thread_keeps_ticking_during_a_slow_download(qtbot, dialog, lib, http_server,
                                                             monkeypatch):
    http_server.routes["/drip.safetensors"] = Route(delay_s=0.03)  # 20 chunks: about 0.6 s
    threads = []
    real = download_dialog.download_file

    def recording(*args, **kwargs):
        threads.append(threading.current_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(download_dialog, "download_file", recording)
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start()
    _fill(dialog, f"{http_server.base}/drip.safetensors")
    started = time.monotonic()
    with qtbot.waitSignal(dialog.downloaded, timeout=TIMEOUT_MS):
        dialog.download_button.click()
    took = time.monotonic() - started
    timer.stop()
    assert threads and threads[0] is not threading.main_thread()
    assert took > 0.4  # it really was slow…
    during = [t for t in ticks if started <= t]
    gaps = [b - a for a, b in itertools.pairwise(during)]
    assert len(during) >= 10 and max(gaps) < 0.5  # …and the event loop never stalled behind it
    assert (lib / "drip.safetensors").read_bytes() == PAYLOAD


class _StubEngine:
    """Just enough engine for the AI controller to start without torch (no generation here)."""

    def native_resolution(self, model_id: str) -> int:
        return 64

    def unet_in_channels(self, model_id: str) -> int:
        return 4

    def model_label(self, model_id: str) -> str:
        return model_id


def test_file_menu_download_adds_the_folder_and_the_model_reaches_the_pickers(
        editor_env, qtbot, tmp_path, http_server, monkeypatch):
    from editor.ui.ai import host

    monkeypatch.setattr(host._CoreLoader, "start", lambda self, device_setting: None)  # no torch
    monkeypatch.setenv("CANVASAI_HOUSE_DIR", str(editor_env / "no-house"))
    win = open_window(qtbot)
    controller = win.ai.start(engine=_StubEngine(), auto_live=False)
    assert win.settings.model_folders == []
    action = win.actions["download_model"]
    file_menu = win.menuBar().actions()[0].menu()
    assert action in file_menu.actions()

    action.trigger()
    dlg = win.download_dialog
    assert dlg.isVisible() and dlg.current_folder() == ""  # only "Choose…": none configured
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    asked = []
    dlg.choose_folder = lambda: asked.append(1) or str(shelf)
    http_server.routes["/dl/new-model.safetensors"] = Route()
    _fill(dlg, f"{http_server.base}/dl/new-model.safetensors")
    with qtbot.waitSignal(dlg.downloaded, timeout=TIMEOUT_MS):
        dlg.download_button.click()  # asks for the folder first: there is none to pick
    assert asked == [1] and dlg.add_folder.isChecked()
    path = shelf / "new-model.safetensors"
    assert path.read_bytes() == PAYLOAD
    assert win.settings.model_folders == [str(shelf)]
    assert json.loads(settings_path().read_text())["model_folders"] == [str(shelf)]
    assert str(path) in controller.entries  # the pickers list it now
    assert "new-model.safetensors: it is in the AI panel's model list" in win.statusBar().currentMessage()
    assert dlg.add_folder.isHidden() and dlg.current_folder() == str(shelf)
    dlg.close()
    assert win.download_model_dialog() is dlg  # one dialog per window, kept
    dlg.close()
    win.ai.shutdown()
    win.close()
    QApplication.processEvents()
