"""editor.ai is Qt-free: it imports and runs without PySide6."""
import re
import subprocess
import sys
from pathlib import Path

from editor.ai.request import steps_for

ROOT = Path(__file__).resolve().parents[3]


def test_no_qt_import_in_the_package_source():
    pattern = re.compile(r"^\s*(from|import)\s+(PySide6|PyQt5|PyQt6|shiboken6|editor\.ui)\b", re.M)
    offenders = [p.name for p in (ROOT / "editor" / "ai").glob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


def test_package_imports_without_qt():
    code = "import sys, editor.ai; print(any(m.split('.')[0] in ('PySide6', 'PyQt5', 'PyQt6') for m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False", result.stderr


def test_steps_are_raised_so_img2img_runs_at_least_one():
    assert steps_for(2, 0.3, has_init=True) == 4  # int(4 * 0.3) == 1
    assert steps_for(20, 0.5, has_init=True) == 20
    assert steps_for(1, 0.3, has_init=False) == 1
