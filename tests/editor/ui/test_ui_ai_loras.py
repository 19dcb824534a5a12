"""The LoRA list of the AI dock (editor/ui/ai/lora_panel.py) in the real window with the fake engine:
add a LoRA from the picker (thumbnail), change its weight, switch it off, insert a trigger word, the
engine requests that follow, Regenerate restoring the LoRAs of a layer (a missing one named), and a
"FINAL + speed LoRA" preview model running Live with its preset."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QImage
from test_ui_ai_support import (  # noqa: F401 - fixtures
    ai_env,
    close_ai_window,
    editor_env,
    open_ai_window,
    transparent_document,
    wait_final,
)

from editor.ai import FakeEngine, catalog
from editor.ai.catalog import ModelFacts
from inference.api import LoraSpec
from lora_helpers import tiny_lora


@pytest.fixture
def models(ai_env, monkeypatch):  # noqa: F811 - the fixture imported above
    root = ai_env / "models"
    tags = json.dumps({"10_inkwash": {"inkwash": 9}})
    ink = tiny_lora(root / "loras" / "ink_style.safetensors", "sd1", {"ss_tag_frequency": tags})
    thumb = QImage(32, 32, QImage.Format.Format_RGB32)
    thumb.fill(QColor(30, 90, 200))
    assert thumb.save(str(root / "loras" / "ink_style.preview.png"))
    detail = tiny_lora(root / "loras" / "detail.safetensors", "sd1")
    tiny_lora(root / "loras" / "xl_glow.safetensors", "sdxl")
    lcm = tiny_lora(root / "loras" / "lcm-lora-sdv1-5.safetensors", "sd1")
    checkpoint = root / "checkpoints" / "dream_sd15.safetensors"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(b"fake checkpoint")

    def inspect(path):  # the fake checkpoint holds no weights: its family comes from its name
        return ModelFacts("checkpoint", "sd1" if "sd15" in Path(path).name else "", size_bytes=1)

    monkeypatch.setattr(catalog, "inspect_model_file", inspect)
    catalog._FAMILIES.clear()
    yield {"root": root, "ink": str(ink), "detail": str(detail), "lcm": str(lcm), "checkpoint": str(checkpoint)}
    catalog._FAMILIES.clear()


def open_with_models(qtbot, models, engine):
    win, c = open_ai_window(qtbot, transparent_document(), engine)
    c.settings.model_folders = [str(models["root"])]
    c.reload_models()
    c.set_models(final=models["checkpoint"])
    c.set_frame(c.make_frame(0, 0, 64, 64))
    win.ai.panel.prompt.setPlainText("a harbour")  # typed: the panel edits the request
    c.update_request(seed=11, seed_locked=True)
    return win, c


def pick(panel, name: str) -> None:
    lp = panel.lora_panel
    lp.fill_picker()
    items = [lp.picker.item(i) for i in range(lp.picker.count())]
    (item,) = [i for i in items if i.text() == name]
    lp.picker.itemClicked.emit(item)


def test_add_weight_toggle_and_trigger_word_reach_the_engine(models, qtbot):
    engine = FakeEngine(native_resolution=64)
    win, c = open_with_models(qtbot, models, engine)
    panel = win.ai.panel
    lp = panel.lora_panel
    lp.fill_picker()
    names = {lp.picker.item(i).text() for i in range(lp.picker.count())}
    assert names == {"ink_style", "detail", "lcm-lora-sdv1-5"}  # the final model's family only
    lp.search.setText("INK sty")  # words of the name, any case
    shown = {lp.picker.item(i).text() for i in range(lp.picker.count()) if not lp.picker.item(i).isHidden()}
    assert shown == {"ink_style"}
    lp.search.clear()
    assert not any(lp.picker.item(i).isHidden() for i in range(lp.picker.count()))
    ink_item = next(lp.picker.item(i) for i in range(lp.picker.count()) if lp.picker.item(i).text() == "ink_style")
    colour = ink_item.icon().pixmap(48, 48).toImage().pixelColor(24, 24)
    assert (colour.red(), colour.green(), colour.blue()) == (30, 90, 200)  # ink_style.preview.png
    pick(panel, "ink_style")
    pick(panel, "detail")
    assert [r.enabled.text() for r in lp.rows] == ["ink_style", "detail"] and not lp.empty.isVisible()
    assert [i.weight for i in c.request.loras] == [1.0, 1.0]

    lp.rows[0].weight.setValue(80)  # the slider: 0.80
    assert c.request.loras[0].weight == pytest.approx(0.8) and lp.rows[0].value.text() == "0.80"
    lp.rows[1].enabled.setChecked(False)
    assert not c.request.loras[1].enabled
    (chip,) = lp.rows[0].chips
    assert chip.text() == "inkwash"
    panel.prompt.moveCursor(panel.prompt.textCursor().MoveOperation.End)
    qtbot.mouseClick(chip, Qt.MouseButton.LeftButton)
    assert panel.prompt.toPlainText() == "a harbour, inkwash" and c.request.prompt == "a harbour, inkwash"

    c.generate()
    wait_final(qtbot, c)
    model_id, sent = engine.calls[-1]
    assert model_id == models["checkpoint"]
    assert sent.loras == (LoraSpec(models["ink"], pytest.approx(0.8)),)  # detail is off
    layer = c.accept()
    stored = json.loads(layer.attributes["loras"])
    assert [(r["name"], r["weight"], len(r["hash"])) for r in stored] == [("ink_style", 0.8, 10)]
    assert any(line.startswith("LoRAs: ink_style 0.8") for line in win.ai.panel.layer_info.text().splitlines()) \
        or not win.ai.panel.layer_box.isVisible()

    qtbot.mouseClick(lp.rows[0].remove, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(lp.rows[0].remove, Qt.MouseButton.LeftButton)
    assert c.request.loras == () and lp.rows == []
    c.regenerate_layer(layer)  # Regenerate: the layer's LoRAs come back with its other settings
    wait_final(qtbot, c)
    assert [(i.path, i.weight) for i in c.request.loras] == [(models["ink"], 0.8)]
    assert [r.enabled.text() for r in lp.rows] == ["ink_style"] and lp.rows[0].weight.value() == 80
    assert engine.calls[-1][1].loras == (LoraSpec(models["ink"], pytest.approx(0.8)),)
    close_ai_window(win)


def test_a_missing_lora_is_named_and_the_rest_restored(models, qtbot):
    engine = FakeEngine(native_resolution=64)
    win, c = open_with_models(qtbot, models, engine)
    pick(win.ai.panel, "ink_style")
    pick(win.ai.panel, "detail")
    c.generate()
    wait_final(qtbot, c)
    layer = c.accept()
    Path(models["detail"]).unlink()
    c.reload_models()
    messages = []
    c.message.connect(lambda text, level: messages.append((text, level)))
    assert c.load_layer_settings(layer)
    assert [i.path for i in c.request.loras] == [models["ink"]] and c.request.seed == 11
    assert any("“detail”" in text and level == "warning" and "\n" not in text for text, level in messages)
    close_ai_window(win)


def test_speed_lora_preview_model_runs_live_with_its_preset(models, qtbot):
    engine = FakeEngine(native_resolution=64)
    win, c = open_with_models(qtbot, models, engine)
    speed_id = catalog.speed_model_id(models["lcm"], models["checkpoint"])
    combo = win.ai.panel.preview_model
    assert combo.findData(speed_id) >= 0 and combo.itemText(combo.findData(speed_id)) == "dream_sd15 + lcm-lora-sdv1-5"
    pick(win.ai.panel, "ink_style")
    c.set_models(preview=speed_id)
    assert c.set_live(True)
    qtbot.waitUntil(lambda: c.live_image is not None and c.live.idle, timeout=5000)
    model_id, sent = engine.calls[-1]
    assert model_id == models["checkpoint"]  # the final model's checkpoint, loaded once
    assert sent.loras == (LoraSpec(models["lcm"], 1.0), LoraSpec(models["ink"], 1.0))
    assert (sent.sampler, sent.steps, sent.guidance) == ("lcm", 4, 1.0)
    close_ai_window(win)


def test_the_lora_list_comes_back_in_the_next_session(models, qtbot):
    from editor.ui.ai.controller import AIController

    engine = FakeEngine(native_resolution=64)
    win, c = open_with_models(qtbot, models, engine)
    pick(win.ai.panel, "ink_style")
    pick(win.ai.panel, "detail")
    win.ai.panel.lora_panel.rows[0].weight.setValue(70)
    win.ai.panel.lora_panel.rows[1].enabled.setChecked(False)
    saved = c.settings.lora_list
    assert '"enabled":false' in saved and '"weight":0.7' in saved
    Path(models["detail"]).unlink()  # gone by the next start: named once, the rest comes back
    again = AIController(win.session, c.settings, engine=engine)
    try:
        assert [(i.path, i.weight, i.enabled) for i in again.request.loras] == [(models["ink"], 0.7, True)]
        assert '"detail"' not in again.settings.lora_list  # named once, then dropped from the kept list
    finally:
        again.shutdown()
        again.deleteLater()
    close_ai_window(win)
