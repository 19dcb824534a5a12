"""FLUX.1 in the AI panel (issue 18), in the real window with the fake engine: the guidance
control says "Guidance (distilled)" for dev and is off for schnell, a Kontext final labels a
frame over a picture "Edit with Kontext" (panel and frame overlay), and a FLUX transformer file
without its companions is refused with the engine's reason. Stand-in model folders are given
FLUX facts by replacing the catalog's inspection and ``flux.family_of``."""
from __future__ import annotations

import numpy as np
import pytest

from editor.ai import FakeEngine, catalog, flux
from editor.ai.modes import EditMode

from test_ui_ai_support import ai_env, close_ai_window, editor_env, open_ai_window, transparent_document  # noqa: F401

FACTS = {
    "flux-dev": catalog.ModelFacts("checkpoint", flux.DEV, "FLUX.1 [dev]", 23_800_000_000, steps=28, guidance=3.5,
                                   format="diffusers", variant="base", quantisation="bf16"),
    "flux-schnell": catalog.ModelFacts("checkpoint", flux.SCHNELL, "FLUX.1 [schnell]", 23_800_000_000, steps=4,
                                       guidance=0.0, format="diffusers", variant="base", quantisation="bf16"),
    "flux-kontext": catalog.ModelFacts("checkpoint", flux.KONTEXT, "FLUX.1 Kontext [dev]", 23_800_000_000, steps=28,
                                       guidance=2.5, format="diffusers", variant="kontext", quantisation="bf16"),
}


@pytest.fixture
def flux_models(ai_env, tmp_path, monkeypatch):  # noqa: F811 - the imported fixture
    """Stand-in FLUX folders: {name: path}."""
    folders = {}
    for name in FACTS:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "model_index.json").write_text("{}")
        folders[name] = str(folder)
    real_inspect = catalog.inspect_model_file
    by_path = {path: FACTS[name] for name, path in folders.items()}
    monkeypatch.setattr(catalog, "inspect_model_file", lambda p: by_path.get(str(p)) or real_inspect(p))
    monkeypatch.setattr(flux, "family_of", lambda model_id: by_path[model_id].family if model_id in by_path else "")
    return folders


@pytest.fixture
def window(flux_models, qtbot):
    win, c = open_ai_window(qtbot, transparent_document(), FakeEngine(native_resolution=64))
    yield win, c, flux_models
    close_ai_window(win)


def test_guidance_is_labelled_distilled_for_dev_and_off_for_schnell(window):
    win, c, models = window
    panel = win.ai.panel
    assert panel.guidance_label.text() == "Guidance" and panel.guidance.isEnabled()
    c.add_model(models["flux-dev"])
    assert "FLUX.1 [dev] · bf16 · diffusers folder" in panel.message_label.text()
    assert panel.guidance_label.text() == "Guidance (distilled)"
    for widget in (panel.guidance_label, panel.guidance):
        assert "3.5" in widget.toolTip() and "not classifier-free guidance" in widget.toolTip()
    assert panel.guidance.isEnabled() and panel.guidance.value() == 3.5 and panel.steps.value() == 28
    c.add_model(models["flux-schnell"])
    assert panel.guidance_label.text() == "Guidance" and not panel.guidance.isEnabled()
    assert "schnell ignores" in panel.guidance.toolTip()
    c.set_models(final=models["flux-dev"])  # back: the control comes back on
    assert panel.guidance.isEnabled() and panel.guidance_label.text() == "Guidance (distilled)"


def test_kontext_final_labels_a_frame_over_a_picture_edit_with_kontext(window, qtbot):
    win, c, models = window
    pixels = np.zeros((150, 200, 4), np.uint8)
    pixels[..., 0] = (np.arange(200) * 255 // 199).astype(np.uint8)[None, :]
    pixels[..., 3] = 255
    win.session.document.add_layer_from_image(pixels, 0, 0)
    c.set_frame(c.make_frame(0, 0, 96, 96))
    c.poll_inputs()
    assert c.mode.label == "Prompt edit"
    c.add_model(models["flux-kontext"])
    qtbot.waitUntil(lambda: c.mode.mode == EditMode.KONTEXT, timeout=2000)
    assert "Edit with Kontext" in win.ai.panel.mode_label.text()
    assert win.ai.overlay.label_text().startswith("Edit with Kontext")
    assert "Live shows nothing new" in c.mode.reason  # the preview model is not Kontext
    c.set_models(preview=models["flux-kontext"])
    qtbot.waitUntil(lambda: "Live" not in c.mode.reason, timeout=2000)


def test_flux_transformer_without_companions_is_refused_with_the_engines_reason(window, tmp_path, monkeypatch):
    win, c, _ = window
    lone = tmp_path / "flux1-dev-Q8_0.gguf"
    lone.write_bytes(b"GGUF")
    reason = f"{lone.name}: FLUX.1 needs ae, clip_l, t5 beside the transformer; looked in {tmp_path}"
    facts = catalog.ModelFacts("unet", flux.DEV, "FLUX.1 [dev]", 4, format="gguf", quantisation="GGUF Q8_0",
                               warnings=(reason,))
    real_inspect = catalog.inspect_model_file
    monkeypatch.setattr(catalog, "inspect_model_file", lambda p: facts if str(p) == str(lone) else real_inspect(p))
    final = c.request.final_model
    assert c.add_model(str(lone)) is None
    assert win.ai.panel.message_label.text() == f"Not added: {reason}"
    assert c.request.final_model == final
