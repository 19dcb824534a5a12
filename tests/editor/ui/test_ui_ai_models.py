"""Model ids of the AI panel -> files: the house model ("house:preview" /
"house:full", with its house.json), user checkpoints and diffusers folders,
clear problems for missing ones, and folder discovery. No Qt, no torch."""
from __future__ import annotations

import json

from editor.settings import Settings
from editor.ui.ai import models


def make_folder(path, notes=None):
    path.mkdir(parents=True)
    (path / "model_index.json").write_text("{}")
    if notes is not None:
        (path / "house.json").write_text(json.dumps(notes))
    return path


def test_house_ids_resolve_to_the_house_folders_with_their_notes(tmp_path, monkeypatch):
    monkeypatch.setenv(models.HOUSE_DIR_ENV, str(tmp_path))
    make_folder(tmp_path / "preview", {"native_resolution": 128, "steps": 1, "guidance": 0.0})
    preview = models.resolve("house:preview")
    assert preview.available and preview.path == tmp_path / "preview" and preview.is_house
    assert (preview.native_resolution, preview.steps, preview.guidance) == (128, 1, 0.0)
    full = models.resolve("house:full")
    assert not full.available and "house model is not installed" in full.problem
    assert full.native_resolution == models.HOUSE_NATIVE  # not the SD family's 512


def test_user_paths_and_their_problems(tmp_path):
    folder = make_folder(tmp_path / "my-diffusers")
    checkpoint = tmp_path / "dreamy.safetensors"
    checkpoint.write_bytes(b"\0" * 16)
    assert models.resolve(str(folder)).available and models.resolve(str(folder)).label == "my-diffusers"
    entry = models.resolve(str(checkpoint))
    assert entry.available and entry.label == "dreamy" and entry.native_resolution is None
    assert "does not exist" in models.resolve(str(tmp_path / "gone.safetensors")).problem
    (tmp_path / "empty").mkdir()
    assert "not a diffusers model folder" in models.resolve(str(tmp_path / "empty")).problem


def test_catalog_lists_house_models_choices_and_discovered_ones(tmp_path, monkeypatch):
    monkeypatch.setenv(models.HOUSE_DIR_ENV, str(tmp_path / "house"))
    shelf = tmp_path / "shelf"
    make_folder(shelf / "b-model")
    (shelf / "a.safetensors").write_bytes(b"x")
    (shelf / "notes.txt").write_text("not a model")
    (shelf / "old.ckpt").write_bytes(b"x")  # pickles are not offered
    settings = Settings(final_model=str(tmp_path / "elsewhere.safetensors"), model_folders=[str(shelf)])
    ids = [e.id for e in models.catalog(settings)]
    assert ids == ["house:preview", "house:full", str(tmp_path / "elsewhere.safetensors"),
                   str(shelf / "a.safetensors"), str(shelf / "b-model")]


def test_engine_specs_keep_only_usable_models_and_mark_the_resident_one(tmp_path, monkeypatch):
    monkeypatch.setenv(models.HOUSE_DIR_ENV, str(tmp_path))
    make_folder(tmp_path / "preview")
    make_folder(tmp_path / "full")
    entries = [models.resolve("house:preview"), models.resolve("house:full"), models.resolve(str(tmp_path / "x"))]
    specs = models.engine_specs(entries, resident=["house:preview"])
    assert set(specs) == {"house:preview", "house:full"}
    assert specs["house:preview"].resident and not specs["house:full"].resident
    assert specs["house:full"].native_resolution == 128 and specs["house:full"].label == "House full"
