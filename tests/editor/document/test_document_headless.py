"""The model and file layer must work without Qt (headless, import-linter)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_document_and_io_import_no_qt():
    code = (
        "import sys, editor.document, editor.io, editor.document.bench_document; "
        "print(sorted(m for m in sys.modules if m.startswith(('PySide6', 'PyQt', 'shiboken'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_invalid_attribute_key_cannot_reach_a_file(tmp_path):
    import pytest

    from editor.document import Document
    from editor.io import DocumentFileError, save_ora

    doc = Document(4, 4)
    layer = doc.add_layer()
    with pytest.raises(ValueError):
        doc.set_attributes(layer, {"bad key": "x"})
    layer.attributes["ns:colon"] = "set behind the model's back"
    with pytest.raises(DocumentFileError, match="not a valid XML name"):
        save_ora(doc, tmp_path / "x.ora")
    assert not (tmp_path / "x.ora").exists()
