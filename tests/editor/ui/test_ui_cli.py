"""`python -m editor --export OUT INPUT`: flattens without a window (like
`krita --export`); bad input is one line on stderr and exit code 2."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from editor.document import BlendMode, Document, Rect
from editor.io import save_ora

ROOT = Path(__file__).resolve().parents[3]


def run_editor(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "CANVASAI_CONFIG_DIR": str(tmp_path / "cfg"),
           "CANVASAI_DATA_DIR": str(tmp_path / "data"), "QT_QPA_PLATFORM": "offscreen"}
    code = ("import sys, editor.app as a; rc = a.main(sys.argv[1:]); "
            "assert 'PySide6' not in sys.modules, 'export imported Qt'; sys.exit(rc)")
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=env)


@pytest.fixture(scope="module")
def layered_ora(tmp_path_factory) -> tuple[Path, np.ndarray]:
    doc = Document(40, 30)
    bg = doc.add_layer("bg")
    doc.fill_selection(bg, (255, 255, 255))
    top = doc.add_layer("top", blend_mode=BlendMode.MULTIPLY, opacity=0.5)
    doc.select_rect(Rect(10, 5, 20, 20))
    doc.fill_selection(top, (0, 0, 255))
    doc.select_none()
    path = tmp_path_factory.mktemp("cli") / "layers.ora"
    save_ora(doc, path)
    return path, doc.render()


def test_export_flattens_ora_to_png(layered_ora, tmp_path):
    src, expected = layered_ora
    out = tmp_path / "flat.png"
    result = run_editor("--export", str(out), str(src), tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    with Image.open(out) as im:
        assert np.array_equal(np.asarray(im.convert("RGBA")), expected)


def test_export_image_to_webp_and_jpeg(layered_ora, tmp_path):
    src, _ = layered_ora
    png = tmp_path / "a.png"
    run_editor("--export", str(png), str(src), tmp_path=tmp_path)
    for name in ("b.webp", "c.jpg"):
        result = run_editor("--export", str(tmp_path / name), str(png), tmp_path=tmp_path)
        assert result.returncode == 0, result.stderr
        with Image.open(tmp_path / name) as im:
            assert im.size == (40, 30)


@pytest.mark.parametrize("case", ["missing", "corrupt", "bad_output", "no_input", "unknown_option"])
def test_bad_input_is_one_line_and_exit_2(case, layered_ora, tmp_path):
    src, _ = layered_ora
    out = tmp_path / "out.png"
    if case == "missing":
        args = ["--export", str(out), str(tmp_path / "nope.ora")]
    elif case == "corrupt":
        bad = tmp_path / "bad.ora"
        bad.write_bytes(b"this is not a zip file at all")
        args = ["--export", str(out), str(bad)]
    elif case == "bad_output":
        args = ["--export", str(tmp_path / "out.gif"), str(src)]
    elif case == "no_input":
        args = ["--export", str(out)]
    else:
        args = ["--frobnicate"]
    result = run_editor(*args, tmp_path=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr
    assert not out.exists()
