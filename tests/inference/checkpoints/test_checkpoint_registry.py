"""Family knowledge lives on `registry.ModelFamily`; the whole-file hash is computed lazily and cached."""
from __future__ import annotations

import hashlib
import json

import pytest

import layouts
from inference import loader
from inference.errors import UnsupportedModelError
from inference.formats.safetensors_file import load_tensors, save_tensors
from inference.plan import folder_candidates
from inference.registry import FAMILIES, family_by_name


def test_families_carry_their_folder_layout_and_quirks():
    assert [f.name for f in folder_candidates({"text_encoder": ["transformers", "CLIPTextModel"]}, "x")] == ["sd1", "sd2"]
    assert [f.name for f in folder_candidates({"text_encoder": ["t", "C"], "text_encoder_2": ["t", "C"]}, "x")] == ["sdxl"]
    assert [f.name for f in folder_candidates({"text_encoder": [None, None], "text_encoder_2": ["t", "C"]}, "x")] == [
        "sdxl_refiner"]
    with pytest.raises(UnsupportedModelError, match="^x: text encoders none match no supported family"):
        folder_candidates({"text_encoder": [None, None]}, "x")
    assert [f.name for f in FAMILIES if f.upcast_attention] == ["sd2"]
    assert [f.name for f in FAMILIES if f.guesses_v_prediction] == ["sd2"]
    assert family_by_name("sdxl_refiner").aesthetic_scores == (6.0, 2.5)
    assert family_by_name("sdxl").aesthetic_scores is None


def test_file_hash_is_computed_on_first_use_and_cached(tmp_path, monkeypatch):
    state, metadata = layouts.tiny_checkpoint(seed=2)
    path = tmp_path / "tiny.safetensors"
    save_tensors(state, path, metadata=metadata)
    calls = []
    real = hashlib.sha256

    def counting(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(loader.hashlib, "sha256", counting)
    model = loader.load_model(path)
    assert calls == []  # loading does not read the whole file a second time
    expected = real(path.read_bytes()).hexdigest()[:10]
    assert model.file_hash == expected and len(calls) == 1
    assert loader.load_model(path).file_hash == expected and len(calls) == 1  # cached by (path, size, mtime)
    save_tensors(dict(load_tensors(path), extra=state["model.diffusion_model.out.2.bias"][:1].clone() * 0),
                 tmp_path / "other.safetensors", metadata=metadata)
    (tmp_path / "other.safetensors").replace(path)  # the file changes on disk: a new hash
    changed = model.file_hash
    assert changed == real(path.read_bytes()).hexdigest()[:10] != expected and len(calls) == 2


def test_folder_hash_is_lazy_too(tmp_path):
    folder = tmp_path / "f"
    layouts.write_diffusers_folder(folder, layouts.full_layout("sd15"))
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    model = loader.load_folder(folder, loader.torch.device("cpu"), loader.torch.float32, None, meta=True)
    assert len(model.file_hash) == 10
