"""Crash safety: autosave writes a recovery file (on idle, off the UI
thread); a process killed with SIGKILL leaves it behind; the next window
offers it and restores it; a clean close or a save removes it. Settings
persist in the (redirected) config folder."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from editor.document import Rect
from editor.io import find_recovery
from editor.settings import Settings, recovery_dir, settings_path

from test_ui_support import blank_document, editor_env, open_window, window  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parents[3]

CRASHING_SESSION = textwrap.dedent("""
    import os, signal, sys
    from PySide6.QtWidgets import QApplication
    from editor.document import Rect
    from editor.ui.main_window import MainWindow
    app = QApplication([])
    win = MainWindow()
    doc = win.session.document
    layer = doc.raster_layers()[-1]
    doc.select_rect(Rect(100, 200, 300, 100))
    doc.fill_selection(layer, (250, 20, 30))
    doc.select_none()
    doc.rename_layer(layer, "Crashed work")
    assert win.autosave.autosave_now(wait=True)
    print(win.autosave.last_path, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # no clean close
""")


@pytest.fixture
def crashed_session(editor_env):
    env = dict(os.environ)
    result = subprocess.run([sys.executable, "-c", CRASHING_SESSION], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == -9, result.stderr[-2000:]
    path = Path(result.stdout.strip().splitlines()[-1])
    assert path.is_file() and path.parent == recovery_dir()
    return path


def test_killed_session_is_offered_and_restored(crashed_session, qtbot, monkeypatch):
    found = find_recovery(recovery_dir())
    assert [r.path for r in found] == [crashed_session]

    from editor.app import recovery_mode
    from editor.ui.dialogs import RecoveryDialog

    offered = []

    def accept(dialog):
        offered.extend(dialog.list.item(i).text() for i in range(dialog.list.count()))
        dialog._finish(RecoveryDialog.RESTORE)
        return 1

    monkeypatch.setattr(RecoveryDialog, "exec", accept)
    monkeypatch.setenv("CANVASAI_RECOVERY", "ask")
    win = open_window(qtbot, blank_document(32, 32))
    win.session.document.undo_stack.clear()
    win.session.set_document(win.session.document)  # pristine, so the restore lands in this window
    restored = win.offer_recovery(recovery_mode(None))
    assert restored == [win]
    assert len(offered) == 1 and "Untitled document" in offered[0]
    doc = win.session.document
    assert (doc.width, doc.height) == (1024, 1024)
    assert [n.name for n in doc.nodes()] == ["Background", "Crashed work"]
    assert tuple(doc.render(Rect(150, 250, 1, 1))[0, 0]) == (250, 20, 30, 255)
    assert doc.file_path is None
    assert win.session.is_modified() and win.isWindowModified()
    # The old file is gone; this process's own autosave replaced it.
    assert not crashed_session.exists()
    own = list(recovery_dir().glob(f"canvasai-recovery-{os.getpid()}-*.ora"))
    assert len(own) == 1
    # A clean close removes it.
    win.close()
    assert not own[0].exists()


def test_env_auto_restore_and_discard_modes(crashed_session, qtbot):
    win = open_window(qtbot, blank_document(16, 16))
    assert win.offer_recovery("keep") == []
    assert crashed_session.exists()
    assert win.offer_recovery("discard") == []
    assert not crashed_session.exists()


def test_idle_autosave_runs_in_background_and_save_removes_it(window, qtbot, tmp_path):
    window.autosave.configure(minutes=5, idle_seconds=0.05)
    doc = window.session.document
    saved = []
    window.autosave.saved.connect(saved.append)
    doc.fill_selection(doc.raster_layers()[-1], (1, 2, 3))
    qtbot.waitUntil(lambda: bool(saved), timeout=10000)
    path = Path(saved[0])
    assert path.is_file() and path.parent == recovery_dir()
    assert not window.autosave.needs_save()
    # Saving the document makes the recovery file obsolete.
    assert window.files.save_to(str(tmp_path / "doc.ora"))
    assert not path.exists()
    # Another edit autosaves again; the clean close then removes the file.
    doc.add_layer("more")
    qtbot.waitUntil(lambda: len(saved) >= 2, timeout=10000)
    assert Path(saved[-1]).is_file()
    window.close()
    assert not Path(saved[-1]).exists()


def test_autosave_waits_for_the_end_of_a_stroke(window):
    doc = window.session.document
    layer = doc.raster_layers()[-1]
    doc.begin_stroke()
    doc.paint_dab(layer, 50, 50, window.session.brush("paint"))
    assert window.autosave.autosave_now(wait=True) is False
    doc.end_stroke()
    assert window.autosave.autosave_now(wait=True) is True
    assert window.autosave.last_path.is_file()


def test_settings_persist_in_the_redirected_config_dir(editor_env, qtbot):
    assert settings_path().parent == editor_env / "config"
    s = Settings.load()
    assert s.autosave_minutes == 5.0
    s.autosave_minutes = 2.5
    s.add_recent_file("/tmp/a.ora")
    s.save()
    again = Settings.load()
    assert again.autosave_minutes == 2.5 and again.recent_files == [os.path.abspath("/tmp/a.ora")]
    # Corrupt or wrongly typed files fall back to defaults instead of failing.
    settings_path().write_text(json.dumps({"autosave_minutes": "soon", "undo_memory_mb": 512}))
    s = Settings.load()
    assert s.autosave_minutes == 5.0 and s.undo_memory_mb == 512
    settings_path().write_text("{not json")
    assert Settings.load() == Settings()
    win = open_window(qtbot, blank_document(8, 8))
    win.settings.autosave_minutes = 1.0
    win.close()
    assert Settings.load().autosave_minutes == 1.0
    assert np.isfinite(Settings.load().stroke_smoothing)
