"""The model catalog's "Add model…" checks, Qt-free: a model file or folder is
inspected when it is added (family, kind, size) and anything unusable is
refused with a one-line reason (a text file, a VAE alone, a missing path)."""
from __future__ import annotations

import builtins
from pathlib import Path

import pytest

from editor.ai import catalog

ROOT = Path(__file__).resolve().parents[3]
HOUSE = ROOT / "assets" / "house"
needs_house = pytest.mark.skipif(not (HOUSE / "full" / "model_index.json").is_file(), reason="no house model")


@needs_house
@pytest.mark.parametrize("name, steps", [("full", 20), ("preview", 1)])
def test_house_folders_are_described_with_their_preset(name, steps):
    entry = catalog.inspected_entry(str(HOUSE / name))
    assert entry.available and entry.steps == steps and entry.native_resolution == 128
    assert entry.description.startswith("Stable Diffusion") and "diffusers folder" in entry.description
    assert entry.description.endswith("MB")


@needs_house
def test_a_part_of_a_model_is_refused_with_what_it_is():
    with pytest.raises(catalog.ModelRefused, match="VAE"):
        catalog.check_runnable(HOUSE / "full" / "vae")


def test_a_text_file_is_refused_at_once(tmp_path):
    text = tmp_path / "notes.safetensors"
    text.write_text("hello\n" * 20)
    with pytest.raises(catalog.ModelRefused) as refused:
        catalog.inspected_entry(str(text))
    assert "notes.safetensors" in str(refused.value) and "\n" not in str(refused.value)
    with pytest.raises(catalog.ModelRefused, match="does not exist"):
        catalog.inspected_entry(str(tmp_path / "gone.safetensors"))


def test_without_the_engines_inspector_the_headers_are_still_checked(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_read_model_info(name, globals=None, locals=None, fromlist=(), level=0):
        if name == "inference.api" and fromlist and "read_model_info" in fromlist:
            raise ImportError("not yet")
        return real_import(name, globals, locals, fromlist, level)

    monkeypatch.setattr(builtins, "__import__", no_read_model_info)
    text = tmp_path / "notes.safetensors"
    text.write_text("hello\n" * 20)
    with pytest.raises(catalog.ModelRefused, match="not a safetensors file"):
        catalog.inspect_model_file(text)
    (tmp_path / "folder").mkdir()
    with pytest.raises(catalog.ModelRefused, match="model_index.json"):
        catalog.inspect_model_file(tmp_path / "folder")


def test_sizes_read_like_a_file_manager():
    assert catalog.format_size(512) == "512 bytes"
    assert catalog.format_size(22_211_148) == "22.2 MB"
    assert catalog.format_size(2_132_000_000) == "2.1 GB"


@needs_house
def test_the_house_final_model_declares_its_refine_bound_and_the_preview_none():
    # house.json "refine_bound" (issue 20, docs/coherence.md): the refine of a live frame by the full
    # house model may move a latent cell by at most this much.
    assert catalog.resolve(catalog.HOUSE_FULL).refine_bound == 0.035
    assert catalog.resolve(catalog.HOUSE_PREVIEW).refine_bound is None


@pytest.mark.parametrize("value, expected", [
    (0.05, 0.05), (2, 2.0), ("0.1", 0.1),
    (0, None), (-0.05, None), (float("nan"), None), (float("inf"), None), (1e9, None), (True, None),
    (None, None), ("much", None), ([0.05], None), ({"bound": 0.05}, None),
])
def test_a_folders_refine_bound_is_read_or_ignored_never_trusted(tmp_path, value, expected):
    import json

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model_index.json").write_text("{}")
    (folder / "house.json").write_text(json.dumps({"refine_bound": value}))
    entry = catalog.resolve(str(folder))
    assert entry.refine_bound == expected


def test_a_broken_house_json_gives_no_bound(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model_index.json").write_text("{}")
    for text in ("{not json", "[0.05]", "\xff\xfe", ""):
        (folder / "house.json").write_text(text, encoding="latin-1")
        assert catalog.resolve(str(folder)).refine_bound is None
