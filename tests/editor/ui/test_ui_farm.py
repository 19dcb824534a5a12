"""The render farm in the window (no Ray): the Preferences' "Render on" with the farm's own
address check, the status bar's farm field, the "Render queue" dock with a Cancel per job,
and final renders routed through the farm adapter once a farm is set."""
from __future__ import annotations

import json
import threading
from types import SimpleNamespace

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog
from test_ui_support import editor_env, open_window  # noqa: F401 - fixtures

from editor.ai.farm import FarmEngine, FarmStatus, RenderQueue, RenderState
from editor.settings import Settings

TIMEOUT_MS = 5000


@pytest.fixture
def window(editor_env, qtbot, monkeypatch):  # noqa: F811 - the support module's, without the AI core
    """A window whose AI core is not loaded: these tests need no engine, and a live-preview render
    still running on the core's thread when the test process exits would abort it."""
    from editor.ui.ai import host

    monkeypatch.setattr(host._CoreLoader, "start", lambda self, device_setting: None)
    return open_window(qtbot)


def test_preferences_refuse_an_unusable_farm_address_with_one_line(qtbot):
    from editor.ui.dialogs import PreferencesDialog

    dlg = PreferencesDialog(Settings())
    qtbot.addWidget(dlg)
    assert dlg.render_here.isChecked() and not dlg.farm_address.isEnabled()
    dlg.render_farm.setChecked(True)
    for text, expected in (("10.0.0.5", "Render farm address '10.0.0.5' is not HOST:PORT (e.g. 10.0.0.5:6379"),
                           ("http://h:6379", "Render farm address 'http://h:6379' is not HOST:PORT"),
                           ("", "Enter the address of the Ray cluster's head")):
        dlg.farm_address.setText(text)
        dlg.accept()
        assert dlg.result() != QDialog.DialogCode.Accepted
        assert not dlg.farm_error.isHidden() and dlg.farm_error.text().startswith(expected)
        assert "\n" not in dlg.farm_error.text()
    dlg.farm_address.setText(" 10.0.0.5:6379 ")
    dlg.accept()
    assert dlg.result() == QDialog.DialogCode.Accepted
    settings = Settings()
    dlg.apply_to(settings)
    assert (settings.render_on, settings.farm_address) == ("farm", "10.0.0.5:6379")
    # "This machine" never checks the address.
    again = PreferencesDialog(settings)
    qtbot.addWidget(again)
    assert again.render_farm.isChecked() and again.farm_address.text() == "10.0.0.5:6379"
    again.render_here.setChecked(True)
    again.accept()
    assert again.result() == QDialog.DialogCode.Accepted
    again.apply_to(settings)
    assert (settings.render_on, settings.farm_address) == ("local", "10.0.0.5:6379")


def test_bad_farm_settings_in_the_file_fall_back_to_the_defaults(tmp_path):
    path = tmp_path / "settings.json"
    for raw, expected in (({"render_on": "farm", "farm_address": "ray://10.0.0.5:10001"},
                           ("farm", "ray://10.0.0.5:10001")),
                          ({"render_on": "cloud", "farm_address": "10.0.0.5:6379"}, ("local", "10.0.0.5:6379")),
                          ({"render_on": "farm", "farm_address": "auto"}, ("local", "")),
                          ({"render_on": "farm", "farm_address": 6379}, ("local", "")),
                          ({"render_on": 1, "farm_address": "h:1"}, ("local", "h:1"))):
        path.write_text(json.dumps(raw))
        settings = Settings.load(path)
        assert (settings.render_on, settings.farm_address) == expected, raw


def test_status_bar_shows_the_farm_and_the_fall_back(window, qtbot):
    label = window.status.farm_label
    assert label.isHidden() and not window.queue_dock.isVisible()  # local rendering: nothing shown
    window.settings.render_on, window.settings.farm_address = "farm", "10.0.0.5:6379"
    window.apply_settings()
    assert not label.isHidden() and label.text() == "Farm 10.0.0.5:6379"
    assert window.queue_dock.isVisible()
    # Reports come from the render thread.
    for status, text in ((FarmStatus(True, "10.0.0.5:6379", "connected", 3, 1, 2),
                          "Farm 10.0.0.5:6379 · 3 workers · 1 GPU · 2 in queue"),
                         (FarmStatus(True, "10.0.0.5:6379", "fallback", message="unreachable"),
                          "Farm unreachable — rendering here")):
        threading.Thread(target=window.farm.status_changed.emit, args=(status,)).start()
        qtbot.waitUntil(lambda t=text: label.text() == t, timeout=TIMEOUT_MS)
    assert "unreachable" in label.toolTip()
    threading.Thread(target=window.farm.notice.emit, args=("Render farm: worker w0 was lost; rendering locally",)
                     ).start()
    qtbot.waitUntil(lambda: window.statusBar().currentMessage().startswith("Render farm: worker w0"),
                    timeout=TIMEOUT_MS)
    window.settings.render_on = "local"
    window.apply_settings()
    assert label.isHidden()


class FakeFarmRender(threading.Thread):
    """Stands in for FarmLink.render: one queue entry stepping until it is cancelled."""

    def __init__(self, queue: RenderQueue, steps: int = 1000):
        super().__init__(daemon=True)
        self.queue, self.steps = queue, steps
        self.entry = queue.add("a lighthouse at dusk · seed 7")
        self.running = threading.Event()

    def run(self) -> None:
        for step in range(1, self.steps + 1):
            if self.entry.cancel_requested:
                self.queue.update(self.entry, state=RenderState.CANCELLED)
                return
            self.queue.update(self.entry, state=RenderState.RUNNING, step=step, total=self.steps, worker="w1")
            self.running.set()
            threading.Event().wait(0.01)
        self.queue.update(self.entry, state=RenderState.DONE)


def test_queue_panel_lists_jobs_and_cancel_stops_one(qtbot):
    from editor.ui.ai.queue_panel import RenderQueuePanel

    queue = RenderQueue()
    done = queue.add("an earlier render · seed 1")
    queue.update(done, state=RenderState.DONE, worker="w0", step=20, total=20)
    panel = RenderQueuePanel(queue)
    qtbot.addWidget(panel)
    panel.show()
    assert set(panel.rows) == {done.id} and panel.empty.isHidden()
    assert panel.rows[done.id].state.text() == "Done (w0)" and not panel.rows[done.id].cancel.isEnabled()
    job = FakeFarmRender(queue)
    job.start()
    assert job.running.wait(5)
    qtbot.waitUntil(lambda: job.entry.id in panel.rows and "Running on w1 · step" in panel.rows[job.entry.id]
                    .state.text(), timeout=TIMEOUT_MS)
    row = panel.rows[job.entry.id]
    assert row.title.text() == "a lighthouse at dusk · seed 7" and row.cancel.isEnabled()
    assert panel.rows_layout.indexOf(row) < panel.rows_layout.indexOf(panel.rows[done.id])  # newest on top
    qtbot.mouseClick(row.cancel, Qt.MouseButton.LeftButton)
    job.join(5)
    assert job.entry.state is RenderState.CANCELLED and job.entry.step < 1000
    qtbot.waitUntil(lambda: row.state.text() == "Cancelled", timeout=TIMEOUT_MS)
    assert not row.cancel.isEnabled() and 0 <= row.bar.value() < 100
    panel.detach()


def test_the_ai_controller_renders_through_the_windows_farm_link(window):
    from editor.ui.ai.controller import AIController

    local = SimpleNamespace(models={})
    controller = AIController(window.session, window.settings, engine_factory=lambda specs, device: local,
                              farm=window.farm)
    try:
        made = controller._engine_factory({}, "cpu")
        # Always the adapter: it renders here while the farm is off and asks the link on every call,
        # so switching "Render on" applies to the next render without rebuilding the engine.
        assert isinstance(made, FarmEngine) and made.local is local and made.link is window.farm
        assert not window.farm.enabled
        window.settings.render_on, window.settings.farm_address = "farm", "127.0.0.1:6379"
        window.apply_settings()
        assert window.farm.enabled and made.link.enabled
    finally:
        controller.deleteLater()
