"""Saving never damages the previous file: SIGKILL mid-write, read-only
folders, full disks and failed verification all leave it byte-identical.
Also the autosave/recovery helpers."""

from __future__ import annotations

import errno
import glob
import os
from pathlib import Path
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np
import pytest

from editor.document import Document
from editor.io import DocumentFileError, discard_recovery, find_recovery, load_ora, save_ora, save_recovery
from editor.io.atomic import cleanup_stale_temp_files

REPO = str(Path(os.path.abspath(__file__)).parents[3])

# The child builds a large, incompressible document (about 60 MB as .ora),
# says READY, then saves it over the target.
CHILD = textwrap.dedent(
    """
    import sys, numpy as np
    sys.path.insert(0, {repo!r})
    from editor.document import Document
    from editor.io import save_ora
    doc = Document(1536, 1536)
    rng = np.random.default_rng(0)
    for i in range(6):
        doc.add_layer_from_image(rng.integers(0, 256, (1536, 1536, 4), dtype=np.uint8), name=f"noise {{i}}")
    print("READY", flush=True)
    save_ora(doc, sys.argv[1], compress_level=1)
    print("DONE", flush=True)
    """
)


def _old_file(path) -> bytes:
    doc = Document(32, 32)
    doc.add_layer_from_image(np.full((32, 32, 4), 123, np.uint8), name="old")
    save_ora(doc, path)
    return open(path, "rb").read()


def _temp_files(folder):
    return glob.glob(os.path.join(folder, ".*.tmp"))


def _start_child(target):
    proc = subprocess.Popen([sys.executable, "-c", CHILD.format(repo=REPO), str(target)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.strip() == "READY", proc.stderr.read()
    return proc


@pytest.mark.parametrize("kill_at_bytes", [0, 4 << 20, 30 << 20])
def test_sigkill_during_save_keeps_old_file(tmp_path, kill_at_bytes):
    target = tmp_path / "doc.ora"
    old = _old_file(target)
    proc = _start_child(target)
    deadline = time.time() + 40
    killed_mid_write = False
    while time.time() < deadline and proc.poll() is None:
        temps = _temp_files(str(tmp_path))
        if temps and os.path.getsize(temps[0]) >= kill_at_bytes:
            proc.send_signal(signal.SIGKILL)
            killed_mid_write = True
            break
        time.sleep(0.002)
    proc.wait(timeout=30)
    assert killed_mid_write, "the save finished before the kill point; make the document bigger"
    assert open(target, "rb").read() == old  # byte-identical
    assert load_ora(target).document.raster_layers()[0].name == "old"
    # The dead process's temp file is recognised and removed.
    assert len(_temp_files(str(tmp_path))) == 1
    assert cleanup_stale_temp_files(tmp_path) == 1 and not _temp_files(str(tmp_path))


def test_sigkill_at_random_times_gives_old_or_complete_new_file(tmp_path):
    target = tmp_path / "doc.ora"
    old = _old_file(target)
    rng = np.random.default_rng(11)
    outcomes = set()
    for delay in list(rng.uniform(0.0, 3.0, size=2)) + [60.0]:
        proc = _start_child(target)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        data = open(target, "rb").read()
        if data == old:
            outcomes.add("old")
        else:
            doc = load_ora(target).document  # a complete, valid new file
            assert len(doc.raster_layers()) == 6 and doc.width == 1536
            outcomes.add("new")
            old = data
    assert "new" in outcomes  # the un-killed run completed


def test_readonly_folder_keeps_old_file(tmp_path):
    folder = tempfile.mkdtemp(prefix="ro-save-")
    try:
        target = os.path.join(folder, "doc.ora")
        old = _old_file(target)
        os.chmod(folder, 0o555)
        code = textwrap.dedent(
            f"""
            import os, sys
            sys.path.insert(0, {REPO!r})
            from editor.document import Document
            from editor.io import DocumentFileError, save_ora
            if os.geteuid() == 0:
                # Root ignores permissions: drop to "nobody" once imports are done.
                os.setgid(65534)
                os.setuid(65534)
            try:
                save_ora(Document(8, 8), {target!r})
            except DocumentFileError as e:
                print("ERR", e.problem)
            else:
                print("SAVED")
            """
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert out.stdout.startswith("ERR"), out.stdout + out.stderr
        assert "permission denied or read-only" in out.stdout
        assert open(target, "rb").read() == old
    finally:
        os.chmod(folder, 0o755)
        for f in os.listdir(folder):
            os.remove(os.path.join(folder, f))
        os.rmdir(folder)


def test_target_is_a_folder_or_missing_folder(tmp_path):
    with pytest.raises(DocumentFileError, match="target is a folder"):
        save_ora(Document(8, 8), tmp_path)
    with pytest.raises(DocumentFileError, match="folder does not exist"):
        save_ora(Document(8, 8), tmp_path / "nope" / "x.ora")


def test_disk_full_and_failed_verification_keep_old_file(tmp_path, monkeypatch):
    import editor.io.ora_write as ora_write

    target = tmp_path / "doc.ora"
    old = _old_file(target)
    real = ora_write.write_ora

    def full_disk(document, f, **kw):
        f.write(b"PK partial data")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ora_write, "write_ora", full_disk)
    with pytest.raises(DocumentFileError, match="disk full"):
        save_ora(Document(8, 8), target)
    assert open(target, "rb").read() == old and not _temp_files(str(tmp_path))

    def corrupt(document, f, **kw):
        real(document, f, **kw)
        f.seek(40)
        f.write(b"\xff" * 16)  # damage a member's data: CRC check must catch it

    monkeypatch.setattr(ora_write, "write_ora", corrupt)
    with pytest.raises(DocumentFileError, match="previous file kept"):
        save_ora(Document(8, 8), target)
    assert open(target, "rb").read() == old and not _temp_files(str(tmp_path))


def test_save_keeps_permissions_and_marks_clean(tmp_path):
    target = tmp_path / "doc.ora"
    _old_file(target)
    os.chmod(target, 0o640)
    doc = Document(8, 8)
    doc.add_layer()
    assert not doc.undo_stack.is_clean()
    save_ora(doc, target)
    assert os.stat(target).st_mode & 0o777 == 0o640
    assert doc.undo_stack.is_clean()


def test_recovery_roundtrip(tmp_path):
    folder = tmp_path / "autosave"
    doc = Document(20, 10)
    doc.add_layer_from_image(np.full((10, 20, 4), 50, np.uint8))
    doc.file_path = "/home/me/picture.ora"
    path = save_recovery(doc, folder)
    assert str(os.getpid()) in path.name and doc.uid in path.name
    assert find_recovery(folder) == []  # our own session is alive: nothing to offer
    found = find_recovery(folder, include_running=True)
    assert [r.path for r in found] == [path] and found[0].source_path == "/home/me/picture.ora"
    back = load_ora(found[0].path).document
    assert np.array_equal(back.render(), doc.render())
    assert discard_recovery(folder, doc) == 1 and not path.exists()


def test_recovery_of_killed_process_is_found(tmp_path):
    folder = tmp_path / "autosave"
    code = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {REPO!r})
        from editor.document import Document
        from editor.io import save_recovery
        doc = Document(16, 16)
        doc.add_layer("unsaved work")
        save_recovery(doc, {str(folder)!r})
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    (rec,) = find_recovery(folder)
    assert rec.pid != os.getpid() and rec.source_path is None
    assert load_ora(rec.path).document.raster_layers()[0].name == "unsaved work"
    assert discard_recovery(rec) == 1 and find_recovery(folder) == []
