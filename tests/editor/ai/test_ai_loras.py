"""LoRAs in the editor without Qt (editor/ai/loras.py and its wiring): the list and its edits, the
engine requests it makes, layer metadata and its .ora round trip, the library (trigger words,
previews, preferred weights, hashes), and the catalog's "FINAL + speed LoRA" preview models."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_ai_session import Harness

from editor.ai import catalog
from editor.ai.catalog import ModelFacts
from editor.ai.layer_info import generation_lines
from editor.ai.loras import (
    LoraItem,
    LoraLibrary,
    add_item,
    change_item,
    decode_loras,
    encode_loras,
    lora_specs,
    missing_notice,
    preview_recipe,
    remove_item,
    restore_loras,
)
from editor.ai.request import (
    EditRequest,
    build_plan,
    finish_image,
    request_from_attributes,
)
from editor.document import Document, Rect
from inference.api import LoraSpec
from lora_helpers import tiny_lora


@pytest.fixture
def folder(tmp_path):
    """A model folder: two SD 1.5 LoRAs (one with trigger words, a preview and an A1111 sidecar), an
    SDXL one, the LCM-LoRA for SD 1.5, SDXL-Lightning, and two fake checkpoints (one per family)."""
    root = tmp_path / "models"
    tags = json.dumps({"10_inkwash": {"inkwash": 9, "brush strokes": 4}})
    tiny_lora(root / "loras" / "ink_style.safetensors", "sd1", {"ss_tag_frequency": tags})
    (root / "loras" / "ink_style.preview.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (root / "loras" / "ink_style.json").write_text(json.dumps({"preferred weight": 0.7,
                                                                "activation text": "ink painting"}))
    tiny_lora(root / "loras" / "detail.safetensors", "sd1")
    tiny_lora(root / "loras" / "xl_glow.safetensors", "sdxl")
    tiny_lora(root / "loras" / "lcm-lora-sdv1-5.safetensors", "sd1")
    tiny_lora(root / "loras" / "sdxl_lightning_4step_lora.safetensors", "sdxl")
    (root / "checkpoints").mkdir()
    for name in ("dream_sd15.safetensors", "vision_sdxl.safetensors"):
        (root / "checkpoints" / name).write_bytes(b"fake checkpoint")
    return root


@pytest.fixture
def families(monkeypatch):
    """Checkpoint families from their names (the fake checkpoints hold no weights)."""
    def inspect(path):
        name = Path(path).name
        family = "sdxl" if "sdxl" in name else "sd1" if "sd15" in name else ""
        return ModelFacts("checkpoint", family, size_bytes=1)

    monkeypatch.setattr(catalog, "inspect_model_file", inspect)
    catalog._FAMILIES.clear()
    yield
    catalog._FAMILIES.clear()


def library(folder: Path) -> LoraLibrary:
    return LoraLibrary.scan([str(folder)], folder.parent / "cache.json")


# --------------------------------------------------------------------------- the list
def test_list_edits_and_the_specs_the_engine_gets():
    a, b = LoraItem("/l/a.safetensors", 0.8, name="a"), LoraItem("/l/b.safetensors", name="b")
    items = add_item(add_item((), a), b)
    assert lora_specs(items) == (LoraSpec("/l/a.safetensors", 0.8), LoraSpec("/l/b.safetensors", 1.0))
    items = change_item(items, 1, enabled=False)
    assert lora_specs(items) == (LoraSpec("/l/a.safetensors", 0.8),)  # off: listed, not applied
    items = change_item(items, 0, weight=5.0)
    assert items[0].weight == 2.0  # the slider's range
    assert lora_specs(change_item(items, 0, weight=0.0)) == ()  # weight 0 changes nothing: not merged
    again = add_item(items, LoraItem("/l/b.safetensors"))
    assert len(again) == 2 and again[1].enabled  # a listed file is switched back on, not listed twice
    assert remove_item(items, 0) == (items[1],) and remove_item(items, 5) == items


def test_metadata_keeps_the_enabled_loras_and_survives_damage():
    items = (LoraItem("/l/a.safetensors", 0.75, name="a", short_hash="0123456789"),
             LoraItem("/l/off.safetensors", 1.0, enabled=False, name="off"))
    text = encode_loras(items)
    assert json.loads(text) == [{"name": "a", "path": "/l/a.safetensors", "hash": "0123456789", "weight": 0.75}]
    assert decode_loras(text) == (items[0],)
    assert encode_loras(()) == "" and decode_loras("") == ()
    assert decode_loras("{not json") == () and decode_loras('[{"weight": 1}, 3, {"name": "x", "weight": "?"}]') == (
        LoraItem("x", 1.0, True, "x", ""),)


# --------------------------------------------------------------------------- the library
def test_library_lists_loras_by_family_with_trigger_words_preview_and_preferred_weight(folder):
    lib = library(folder)
    assert {e.name for e in lib.loras("sd1")} == {"ink_style", "detail", "lcm-lora-sdv1-5"}
    assert {e.name for e in lib.loras("sdxl")} == {"xl_glow", "sdxl_lightning_4step_lora"}
    assert len(lib.loras("")) == 5  # family unknown: everything
    ink = str(folder / "loras" / "ink_style.safetensors")
    assert lib.entry(ink).preview.endswith("ink_style.preview.png")
    assert lib.trigger_words(ink) == ["inkwash", "ink painting"]  # kohya dataset token, then the sidecar
    item = lib.item(ink)
    assert item.weight == 0.7 and item.name == "ink_style" and len(item.short_hash) == 10
    assert lib.item(str(folder / "loras" / "detail.safetensors")).weight == 1.0
    assert [(e.name, p.kind) for e, p in lib.speed_loras("sd1")] == [("lcm-lora-sdv1-5", "lcm")]
    assert [(e.name, p.steps) for e, p in lib.speed_loras("sdxl")] == [("sdxl_lightning_4step_lora", 4)]
    assert LoraLibrary.scan([str(folder / "nowhere")]).loras() == []
    # A ComfyUI models/checkpoints folder in the settings: its sibling models/loras is read too.
    assert len(LoraLibrary.scan([str(folder / "checkpoints")]).loras()) == 5


def test_restore_finds_moved_files_by_hash_and_names_the_missing_ones(folder, tmp_path):
    lib = library(folder)
    ink = lib.item(str(folder / "loras" / "ink_style.safetensors"))
    stored = decode_loras(encode_loras((ink.__class__(ink.path, 0.5, True, ink.name, ink.short_hash),
                                        LoraItem("/gone/vanished.safetensors", 1.0, name="vanished"))))
    moved = folder / "loras" / "styles" / "renamed.safetensors"
    moved.parent.mkdir()
    shutil.move(ink.path, moved)
    items, missing = restore_loras(stored, library(folder))
    assert [(Path(i.path), i.weight) for i in items] == [(moved, 0.5)] and missing == ["vanished"]
    assert "vanished" in missing_notice(missing) and "\n" not in missing_notice(missing)


def test_preview_recipe_follows_the_family_rule():
    user = (LoraItem("/l/a.safetensors", 0.8),)
    assert preview_recipe(user, same_family=True).loras == user
    assert preview_recipe(user, same_family=False).loras == ()  # another family's preview model
    speed = preview_recipe(user, same_family=False, speed_lora="/l/lcm.safetensors", sampler="lcm")
    assert [i.path for i in speed.loras] == ["/l/lcm.safetensors", "/l/a.safetensors"] and speed.sampler == "lcm"
    twice = preview_recipe(user + (LoraItem("/l/lcm.safetensors", 0.5),), same_family=True,
                           speed_lora="/l/lcm.safetensors")
    assert [(i.path, i.weight) for i in twice.loras] == [("/l/lcm.safetensors", 1.0), ("/l/a.safetensors", 0.8)]


# --------------------------------------------------------------------------- requests and metadata
def _document() -> Document:
    doc = Document(64, 64)
    doc.add_layer("paint")
    return doc


def test_final_requests_carry_the_loras_and_the_preview_its_own(tmp_path):
    user = (LoraItem("/l/a.safetensors", 0.8, name="a"), LoraItem("/l/b.safetensors", 1.0, False, "b"))
    request = EditRequest(frame=Rect(0, 0, 64, 64), prompt="ink", loras=user,
                          preview_loras=(LoraItem("/l/lcm.safetensors"),) + user, preview_sampler="lcm",
                          preview_spacing="trailing", sampler="euler")
    doc = _document()
    final = build_plan(doc, request, 64)
    assert final.engine_requests[0].loras == (LoraSpec("/l/a.safetensors", 0.8),)
    assert final.engine_requests[0].sampler == "euler"
    preview = build_plan(doc, request.replace(quality="preview"), 64)
    engine = preview.engine_requests[0]
    assert engine.loras == (LoraSpec("/l/lcm.safetensors", 1.0), LoraSpec("/l/a.safetensors", 0.8))
    assert (engine.sampler, engine.timestep_spacing) == ("lcm", "trailing")
    # A weight change is a new input (live re-renders; the same inputs are skipped).
    changed = build_plan(doc, request.replace(loras=(user[0].__class__("/l/a.safetensors", 0.5, name="a"),)), 64)
    assert changed.key != final.key


def test_attributes_store_the_loras_and_load_settings_restores_them():
    request = EditRequest(frame=Rect(0, 0, 64, 64), prompt="ink", seed=3,
                          loras=(LoraItem("/l/a.safetensors", 0.8, name="a", short_hash="abcdef0123"),))
    plan = build_plan(_document(), request, 64)
    image = finish_image(plan, np.zeros((64, 64, 3), np.uint8), 3, "model")
    assert json.loads(image.attributes["loras"])[0]["hash"] == "abcdef0123"
    assert "LoRAs: a 0.8" in generation_lines(image.attributes)
    assert request_from_attributes(image.attributes).loras == request.loras
    plain = finish_image(build_plan(_document(), request.replace(loras=()), 64), np.zeros((64, 64, 3), np.uint8), 3)
    assert "loras" not in plain.attributes
    assert request_from_attributes(plain.attributes, request).loras == ()  # a layer made without LoRAs


def test_ora_round_trip_keeps_the_lora_metadata(tmp_path):
    from editor.io.ora_read import load_ora
    from editor.io.ora_write import save_ora

    request = EditRequest(frame=Rect(0, 0, 64, 64), prompt='say "ink" & <brush>', seed=9,
                          loras=(LoraItem(str(tmp_path / "ink style (v2).safetensors"), -0.35, name="ink style (v2)",
                                          short_hash="0a1b2c3d4e"), LoraItem("/l/ünïcode.safetensors", 1.5, name="ünïcode")))
    doc = _document()
    image = finish_image(build_plan(doc, request, 64), np.full((64, 64, 3), 80, np.uint8), 9, "model")
    layer = doc.add_layer_from_image(image.rgba, 0, 0, name="AI")
    doc.set_attributes(layer, image.attributes)
    save_ora(doc, tmp_path / "doc.ora")
    loaded = load_ora(tmp_path / "doc.ora").document
    again = next(lay for lay in loaded.raster_layers() if lay.name == "AI")
    assert again.attributes["loras"] == image.attributes["loras"]
    assert request_from_attributes(again.attributes).loras == request.loras


# --------------------------------------------------------------------------- speed LoRAs as preview models
class _Settings:
    def __init__(self, folder: Path, final: str):
        self.preview_model, self.final_model = catalog.HOUSE_PREVIEW, final
        self.model_folders = [str(folder / "checkpoints")]


def test_speed_lora_preview_models_are_offered_only_for_the_final_models_family(folder, families):
    lib = library(folder)
    sd15 = str(folder / "checkpoints" / "dream_sd15.safetensors")
    sdxl = str(folder / "checkpoints" / "vision_sdxl.safetensors")
    offers = [e for e in catalog.catalog(_Settings(folder, sd15), lib) if e.speed_lora]
    assert [(e.label, e.steps, e.guidance, e.sampler) for e in offers] == [
        ("dream_sd15 + lcm-lora-sdv1-5", 4, 1.0, "lcm")]
    assert offers[0].id == catalog.speed_model_id(folder / "loras" / "lcm-lora-sdv1-5.safetensors", sd15)
    assert offers[0].path == Path(sd15) and catalog.engine_model_id(offers[0].id) == sd15
    xl = [e for e in catalog.catalog(_Settings(folder, sdxl), lib) if e.speed_lora]
    assert [(e.label, e.sampler, e.spacing) for e in xl] == [
        ("vision_sdxl + sdxl_lightning_4step_lora", "euler", "trailing")]
    assert not [e for e in catalog.catalog(_Settings(folder, catalog.HOUSE_FULL), lib) if e.speed_lora]
    assert not [e for e in catalog.catalog(_Settings(folder, sd15), None) if e.speed_lora]
    assert catalog.model_family(offers[0].id) == "sd1"


def test_a_speed_pair_whose_lora_is_gone_says_so(folder, families):
    sd15 = str(folder / "checkpoints" / "dream_sd15.safetensors")
    entry = catalog.resolve(catalog.speed_model_id(folder / "loras" / "gone-lcm-lora.safetensors", sd15))
    assert "does not exist" in entry.problem and not entry.available
    entry = catalog.resolve(catalog.speed_model_id(folder / "loras" / "detail.safetensors", sd15))
    assert "not a speed LoRA" in entry.problem


def test_live_with_a_speed_pair_runs_on_the_final_model_with_the_lora_and_its_preset(folder, families):
    sd15 = str(folder / "checkpoints" / "dream_sd15.safetensors")
    lcm = str(folder / "loras" / "lcm-lora-sdv1-5.safetensors")
    speed_id = catalog.speed_model_id(lcm, sd15)
    user = (LoraItem("/l/ink.safetensors", 0.6),)
    recipe = preview_recipe(user, same_family=False, speed_lora=lcm, sampler="lcm")
    h = Harness(preview_model=speed_id, final_model=sd15, loras=user, preview_loras=recipe.loras,
                preview_sampler=recipe.sampler, sampler="euler")
    try:
        assert h.ai.set_live(True)
        h.settle(until=lambda: h.ai.live_image is not None)
        model_id, sent = h.engine.calls[-1]
        assert model_id == sd15  # one checkpoint: the preview runs on the final model's entry
        assert sent.loras == (LoraSpec(lcm, 1.0), LoraSpec("/l/ink.safetensors", 0.6)) and sent.sampler == "lcm"
        h.ai.set_live(False)
        h.ai.generate()
        h.settle()
        model_id, sent = h.engine.calls[-1]
        assert model_id == sd15 and sent.loras == (LoraSpec("/l/ink.safetensors", 0.6),) and sent.sampler == "euler"
    finally:
        h.ai.close_service()


def test_a_lora_change_resumes_live_after_accept():
    h = Harness(loras=(LoraItem("/l/a.safetensors", 1.0),))
    try:
        h.ai.set_live(True)
        h.settle(until=lambda: h.ai.live_image is not None)
        h.ai.set_live(False)
        h.ai.generate()
        h.settle(until=lambda: h.ai.staging.count > 0)
        h.ai.accept()
        h.ai.poll()
        assert h.ai.live_held
        h.ai.update_request(loras=(LoraItem("/l/a.safetensors", 0.5),))
        h.ai.poll()
        assert not h.ai.live_held
    finally:
        h.ai.close_service()


# --------------------------------------------------------------------------- the real engine, one tiny model
def test_speed_pair_and_user_lora_on_the_torch_engine_load_the_checkpoint_once(tmp_path):
    """A tiny SD 1.5 folder, an "LCM-LoRA" and a style LoRA made for it: the library reads their family
    from their shapes, the catalog offers "FINAL + lcm-lora", Live and Generate run on one loaded model,
    the LoRAs change the pixels, and switched off they give the base model's pixels back."""
    import lora_helpers as helpers
    from diffusers import StableDiffusionPipeline
    from tiny_models import build_sd

    from editor.ai.engine import TorchEngine

    base = build_sd(tmp_path / "dream", kind="sd1")
    pipe = StableDiffusionPipeline.from_pretrained(base)
    layers = {"lora_unet_": helpers.unet_layers(pipe.unet), "lora_te_": helpers.text_layers(pipe.text_encoder)}
    (tmp_path / "loras").mkdir()
    helpers.kohya_lora(tmp_path / "loras" / "lcm-lora-sdv1-5.safetensors", layers, seed=1)
    helpers.kohya_lora(tmp_path / "loras" / "style.safetensors", layers, seed=2)
    lib = LoraLibrary.scan([str(tmp_path / "loras")])
    (speed,) = catalog.speed_entries(str(base), lib)
    assert speed.sampler == "lcm" and speed.steps == 4 and catalog.engine_model_id(speed.id) == str(base)
    style = lib.item(str(tmp_path / "loras" / "style.safetensors"))

    engine = TorchEngine(catalog.engine_specs([catalog.resolve(str(base))], resident=[str(base)]))
    recipe = preview_recipe((style,), same_family=True, speed_lora=str(speed.speed_lora), sampler=speed.sampler)
    h = Harness(engine=engine, preview_model=speed.id, final_model=str(base), loras=(style,), steps=2,
                preview_loras=recipe.loras, preview_sampler=recipe.sampler)
    try:
        assert h.ai.set_live(True)
        h.settle(until=lambda: h.ai.live_image is not None)
        h.ai.set_live(False)
        h.ai.generate()
        h.settle(until=lambda: h.ai.staging.count > 0)
        styled = h.ai.staging.current.rgba
        h.ai.staging.discard()
        h.ai.update_request(loras=(change_item((style,), 0, enabled=False)[0],))
        h.ai.generate()
        h.settle(until=lambda: h.ai.staging.count > 0)
        plain = h.ai.staging.current.rgba
        assert engine.loads == [str(base)]  # Live (with the speed LoRA) and Generate share one model
        assert np.abs(styled.astype(int) - plain).max() > 3  # the style LoRA shows on the final
        request = EditRequest(frame=Rect(0, 0, 64, 64), prompt="hills", seed=5, steps=2)
        direct = engine.generate(str(base), build_plan(_document(), request, 64).engine_requests[0]).image
        assert np.array_equal(plain[..., :3], build_plan(_document(), request, 64).rmap.from_model(direct))
    finally:
        h.ai.close_service()


def test_the_whole_list_round_trips_for_the_settings_file():
    from editor.ai.loras import LoraItem, decode_loras, encode_list, encode_loras

    items = (LoraItem("/m/ink.safetensors", 0.75, True, "ink", "0123456789"),
             LoraItem("/m/détail & <x>.safetensors", -1.5, False, "détail"))
    text = encode_list(items)
    assert decode_loras(text) == items  # switched-off rows too, names of any kind
    assert [i.label for i in decode_loras(encode_loras(items))] == ["ink"]  # a layer keeps the enabled ones
    assert encode_list(()) == "" and decode_loras("") == ()
    for damaged in ("{", "[1, 2]", '[{"weight": 1}]', '{"path": "/x"}'):
        assert decode_loras(damaged) == ()
    assert decode_loras('[{"path": "/x", "weight": "heavy", "enabled": 0}]') == (LoraItem("/x", 1.0, True),)
