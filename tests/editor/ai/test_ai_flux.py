"""FLUX.1 in the editor (issue 18), without Qt: the pickers' descriptions and refusals, the
guidance control's data, Live settings, Fill chosen for masks when the library has one, the
Kontext edit plan, the refine from pixels; and one Generate through TorchEngine on a tiny random
FLUX dev folder. FakeEngine ids are given FLUX families by replacing ``flux.family_of``."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from editor.ai import catalog, flux
from editor.ai.engine import FakeEngine
from editor.ai.frame import GenerationFrame
from editor.ai.modes import EditMode, ModeDecision
from editor.ai.request import EditRequest, build_plan
from editor.ai.session import AISession
from editor.document import Document, Rect

TIMEOUT = 30.0
FAMILIES = {"dev": flux.DEV, "schnell": flux.SCHNELL, "fill": flux.FILL, "kontext": flux.KONTEXT}


@pytest.fixture
def families(monkeypatch):
    """FakeEngine ids named after their FLUX family; anything else is not FLUX."""
    monkeypatch.setattr(flux, "family_of", lambda model_id: FAMILIES.get(model_id, ""))


def picture_document() -> Document:
    doc = Document(64, 64)
    pixels = np.zeros((64, 64, 4), np.uint8)
    pixels[..., 0] = np.arange(64, dtype=np.uint8)[None, :] * 3
    pixels[..., 1] = 90
    pixels[..., 3] = 255
    doc.add_layer_from_image(pixels, 0, 0, name="photo")
    return doc


class Harness:
    """An AISession on FakeEngine (or ``engine``); worker reports are pumped by ``settle``."""

    def __init__(self, doc=None, engine=None, fill=None, **request):
        self.engine = engine or FakeEngine(native_resolution=64)
        self.doc = doc or picture_document()
        self.events: list = []
        base = dict(frame=Rect(0, 0, 8, 8), prompt="make it night", seed=5, seed_locked=True, steps=6,
                    guidance=3.5, preview_model="schnell", final_model="dev")
        base.update(request)
        self.ai = AISession(self.doc, EditRequest(**base), post=lambda h, *a: self.events.append((h, a)),
                            engine_for=lambda _ids: (self.engine, ""), fill_model=lambda _final: fill)
        self.progress: list[str] = []
        self.ai.progress_changed.connect(lambda _f, text: self.progress.append(text))
        self.ai.set_frame(GenerationFrame(0, 0, 64, 64))
        self.ai.poll()

    def settle(self, until=None) -> None:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            while self.events:
                handler, args = self.events.pop(0)
                handler(*args)
            busy = self.ai.final_job is not None or (self.ai.live is not None and not self.ai.live.idle)
            if until() if until is not None else not busy and not self.events:
                return
            time.sleep(0.005)
        raise AssertionError("the session did not settle")


# --------------------------------------------------------------------------- guidance, live
def test_guidance_control_says_distilled_for_dev_and_off_for_schnell():
    dev = flux.guidance_control(flux.DEV)
    assert dev.label == "Guidance (distilled)" and dev.enabled
    assert "3.5" in dev.tooltip and "not classifier-free guidance" in dev.tooltip
    schnell = flux.guidance_control(flux.SCHNELL)
    assert not schnell.enabled and "schnell ignores" in schnell.tooltip
    assert flux.guidance_control(flux.KONTEXT).label == "Guidance (distilled)"
    sd = flux.guidance_control("sd1")
    assert (sd.label, sd.tooltip, sd.enabled) == ("Guidance", "", True)


def test_live_runs_flux_previews_at_few_steps():
    assert flux.live_settings(flux.SCHNELL, 4, 0.0) == (2, 0.0)  # the preset's 4 → 2, never guidance
    assert flux.live_settings(flux.DEV, 28, 3.5) == (4, 3.5)
    assert flux.live_settings("sd1", 20, 7.0) == (20, 7.0)


def test_schnell_preview_runs_live_at_two_steps_without_guidance(families):
    h = Harness(doc=Document(64, 64))
    assert h.ai.set_live(True)
    h.settle(until=lambda: h.ai.live_image is not None)
    model_id, request = h.engine.calls[-1]
    assert (model_id, request.steps, request.guidance) == ("schnell", 2, 0.0)
    assert request.width % 16 == 0 and request.height % 16 == 0


def test_flux_sizes_are_multiples_of_16(families):
    doc = Document(64, 64)
    plan = build_plan(doc, EditRequest(frame=Rect(0, 0, 40, 24), final_model="dev"), 64, model_id="dev")
    assert plan.model_size[0] % 16 == 0 and plan.model_size[1] % 16 == 0
    sd = build_plan(doc, EditRequest(frame=Rect(0, 0, 40, 24), final_model="sd"), 64, model_id="sd")
    assert sd.model_size == (104, 64)  # SD keeps its 8-pixel grid


# --------------------------------------------------------------------------- Fill
def select_middle(doc: Document) -> None:
    doc.select_rect(Rect(16, 16, 32, 32))


def test_fill_model_renders_inpaint_when_the_library_has_one(families):
    h = Harness(fill="fill")
    select_middle(h.doc)
    assert h.ai.poll().mode == EditMode.INPAINT
    job = h.ai.generate()
    assert job.plan.model_id == "fill" and job.plan.status == "Inpainting with FLUX.1 Fill"
    h.settle()
    model_id, request = h.engine.calls[-1]
    assert model_id == "fill"
    assert request.steps == 6 and request.guidance == flux.FILL_GUIDANCE  # the user's steps, Fill's guidance
    assert request.init_image is not None and request.mask is not None and request.strength == 1.0
    assert any("Inpainting with FLUX.1 Fill" in text for text in h.progress)
    assert h.ai.staging.count == 1


def test_fill_model_renders_expand_at_full_strength(families):
    doc = Document(64, 64)
    pixels = np.zeros((64, 64, 4), np.uint8)
    pixels[:, :32] = (200, 100, 50, 255)
    pixels[:, :32, 0] = np.arange(32, dtype=np.uint8)[None, :] * 5
    doc.add_layer_from_image(pixels, 0, 0, name="half")
    h = Harness(doc=doc, fill="fill")
    assert h.ai.poll().mode == EditMode.OUTPAINT
    job = h.ai.generate()
    h.settle()
    assert job.plan.model_id == "fill" and job.plan.strength == 1.0
    assert h.engine.calls[-1][1].change_map is None  # no latent blending on Fill


def test_without_a_fill_model_the_final_inpaints_as_before(families):
    h = Harness(fill=None)
    select_middle(h.doc)
    job = h.ai.generate()
    h.settle()
    assert job.plan.model_id == "dev" and job.plan.status == ""
    assert h.engine.calls[-1][0] == "dev" and h.engine.calls[-1][1].guidance == 3.5


def test_fill_is_not_used_for_prompt_edits_or_sd_finals(families):
    h = Harness(fill="fill")
    h.ai.generate()
    h.settle()
    assert h.engine.calls[-1][0] == "dev"  # img2img: the final model
    sd = Harness(fill="fill", final_model="sd")
    select_middle(sd.doc)
    sd.ai.generate()
    sd.settle()
    assert sd.engine.calls[-1][0] == "sd"


def test_fill_model_is_found_among_the_catalog_entries(families):
    entries = [catalog.ModelEntry(i, i, Path(i)) for i in ("sd", "schnell", "fill")]
    assert flux.fill_model(entries, "dev") == "fill"
    assert flux.fill_model(entries, "sd") is None  # only a FLUX final hands masks to Fill
    assert flux.fill_model(entries, "fill") is None
    assert flux.fill_model(entries[:2], "dev") is None
    missing = [catalog.ModelEntry("fill", "fill", Path("fill"), problem="gone")]
    assert flux.fill_model(missing, "dev") is None
    from inference.api import LibraryEntry

    scanned = [LibraryEntry("/m/unet/lone-fill.gguf", "lone-fill", "unet", flux.FILL),  # no companions
               LibraryEntry("/m/unet/flux1-fill-dev.safetensors", "flux1-fill-dev", "checkpoint", flux.FILL)]
    assert flux.fill_model(entries[:2], "dev", scanned) == "/m/unet/flux1-fill-dev.safetensors"
    assert flux.fill_model(entries[:2], "dev", scanned[:1]) is None


def test_refine_of_a_masked_preview_goes_to_fill_from_pixels(families):
    h = Harness(fill="fill")
    select_middle(h.doc)
    assert h.ai.set_live(True)
    h.settle(until=lambda: h.ai.live_image is not None and h.ai.live.idle)
    job = h.ai.generate()
    assert h.ai.refining and job.plan.model_id == "fill" and job.plan.refined
    assert all(r.init_latents is None and r.mask is not None for r in job.plan.engine_requests)
    h.settle()
    assert h.engine.calls[-1][0] == "fill"


# --------------------------------------------------------------------------- refine
def test_refine_with_a_flux_final_starts_from_pixels_at_its_own_guidance(families):
    h = Harness()
    assert h.ai.set_live(True)
    h.settle(until=lambda: h.ai.live_image is not None and h.ai.live.idle)
    job = h.ai.generate()
    assert h.ai.refining and job.plan.refined and job.plan.model_id == "dev"
    request = job.plan.engine_requests[0]
    assert request.init_latents is None and request.init_image is not None  # FLUX shares no latents
    assert request.guidance == 3.5  # distilled guidance: not the SD refine's CFG 1.5
    h.settle()
    assert h.ai.staging.count == 1


# --------------------------------------------------------------------------- Kontext
def test_kontext_plan_carries_the_frame_as_reference_from_noise(families):
    doc = picture_document()
    request = EditRequest(frame=Rect(0, 0, 64, 64), prompt="make it night", final_model="kontext", steps=8)
    plan = build_plan(doc, request, 64, model_id="kontext")
    assert plan.mode == EditMode.KONTEXT and plan.label == "Edit with Kontext"
    assert plan.strength == 1.0 and plan.source is None and plan.weights is None
    engine_request = plan.engine_requests[0]
    assert engine_request.init_image is None and engine_request.mask is None and engine_request.strength == 1.0
    assert engine_request.reference_image.shape == (64, 64, 3)
    assert engine_request.prompt == "make it night" and engine_request.steps == 8
    np.testing.assert_array_equal(plan.reference, doc.render(Rect(0, 0, 64, 64))[..., :3])
    # A Kontext model never turns an empty frame or a selection into an edit.
    assert build_plan(Document(64, 64), request, 64, model_id="kontext").mode == EditMode.TXT2IMG
    doc.select_rect(Rect(8, 8, 16, 16))
    assert build_plan(doc, request, 64, model_id="kontext").mode == EditMode.INPAINT


def test_adjust_decision_only_touches_prompt_edits_of_kontext():
    edit = ModeDecision(EditMode.IMG2IMG, "Prompt edit", "redrawn")
    assert flux.adjust_decision(edit, flux.DEV) is edit
    kontext = flux.adjust_decision(edit, flux.KONTEXT, flux.SCHNELL)
    assert kontext.mode == EditMode.KONTEXT and "Live shows nothing new" in kontext.reason
    assert "Live" not in flux.adjust_decision(edit, flux.KONTEXT, flux.KONTEXT).reason
    fill = ModeDecision(EditMode.TXT2IMG, "Generate", "empty")
    assert flux.adjust_decision(fill, flux.KONTEXT) is fill


def test_kontext_final_generates_an_edit_and_live_waits_for_a_kontext_preview(families):
    h = Harness(final_model="kontext", preview_model="schnell")
    assert h.ai.mode.mode == EditMode.KONTEXT and h.ai.mode.label == "Edit with Kontext"
    assert "Live shows nothing new" in h.ai.mode.reason
    assert h.ai.set_live(True)
    time.sleep(0.05)
    h.settle()
    assert h.engine.calls == [] and h.ai.live_image is None  # nothing new to show for a Kontext edit
    job = h.ai.generate()
    assert not h.ai.refining and job.plan.mode == EditMode.KONTEXT
    h.settle()
    model_id, request = h.engine.calls[-1]
    assert model_id == "kontext" and request.reference_image is not None and request.strength == 1.0
    image = h.ai.staging.current
    assert image.rgba.shape == (64, 64, 4) and image.attributes["mode"] == "kontext"


def test_kontext_preview_renders_the_edit_live(families):
    h = Harness(final_model="kontext", preview_model="kontext")
    assert "Live" not in h.ai.mode.reason
    assert h.ai.set_live(True)
    h.settle(until=lambda: h.ai.live_image is not None and h.ai.live.idle)
    model_id, request = h.engine.calls[-1]
    assert model_id == "kontext" and request.reference_image is not None and request.steps == 4
    job = h.ai.generate()  # the refine keeps the reference
    assert job.plan.mode == EditMode.KONTEXT
    assert all(r.reference_image is not None for r in job.plan.engine_requests)
    h.settle()
    assert h.ai.staging.count == 1


def test_kontext_preview_under_a_dev_final_previews_the_prompt_edit(families):
    h = Harness(final_model="dev", preview_model="kontext")
    assert h.ai.mode.mode == EditMode.IMG2IMG
    assert h.ai.set_live(True)
    h.settle(until=lambda: h.ai.live_image is not None and h.ai.live.idle)
    model_id, request = h.engine.calls[-1]
    assert model_id == "kontext" and request.reference_image is None and request.init_image is not None
    job = h.ai.generate()
    assert h.ai.refining and job.plan.model_id == "dev" and job.plan.mode == EditMode.IMG2IMG


# --------------------------------------------------------------------------- real FLUX files
@pytest.fixture(scope="module")
def flux_dev_folder(tmp_path_factory) -> Path:
    from flux_models import build_flux

    return build_flux(tmp_path_factory.mktemp("editor_flux"), dev=True, seed=11)


def test_flux_folder_is_described_with_family_and_quantisation(flux_dev_folder):
    entry = catalog.inspected_entry(str(flux_dev_folder))
    assert entry.description.startswith("FLUX.1 [dev] · fp32 · diffusers folder")
    assert (entry.steps, entry.guidance) == (28, 3.5)
    assert catalog.model_family(entry.id) == flux.DEV


def test_quantisation_names_and_flux_summaries():
    assert catalog.quantisation_name(("F32", "Q8_0")) == "GGUF Q8_0"
    assert catalog.quantisation_name(("BF16", "F32", "F8_E4M3")) == "fp8"
    assert catalog.quantisation_name(("F32",)) == "fp32" and catalog.quantisation_name(()) == ""
    facts = catalog.ModelFacts("checkpoint", flux.DEV, "FLUX.1 [dev]", 12_700_000_000, format="gguf",
                               quantisation="GGUF Q8_0")
    assert facts.summary() == "FLUX.1 [dev] · GGUF Q8_0 · single file · 12.7 GB"


def test_flux_transformer_file_without_companions_is_refused(flux_dev_folder, tmp_path):
    from inference.flux.loader import load_flux_folder
    from inference.formats.safetensors_file import save_tensors

    state = load_flux_folder(flux_dev_folder).transformer.state_dict()
    path = tmp_path / "flux1-dev-tiny.safetensors"
    save_tensors({f"model.diffusion_model.{k}": v.contiguous() for k, v in state.items()}, path,
                 metadata={"canvasai.rope_axes": "4,6,6"})
    facts = catalog.inspect_model_file(path)
    assert facts.family == flux.DEV and catalog.is_flux_without_companions(facts)
    with pytest.raises(catalog.ModelRefused, match="beside the transformer") as refused:
        catalog.inspected_entry(str(path))
    assert "\n" not in str(refused.value)
    assert str(path) in catalog.discover([str(tmp_path)])  # listed: the pickers say why it cannot run


def test_generate_with_a_tiny_flux_dev_through_torch_engine(flux_dev_folder):
    from editor.ai.engine import ModelSpec, TorchEngine

    model_id = str(flux_dev_folder)
    engine = TorchEngine({model_id: ModelSpec(flux_dev_folder, native_resolution=64)})
    h = Harness(doc=Document(64, 64), engine=engine, preview_model=model_id, final_model=model_id, steps=2)
    h.ai.set_frame(GenerationFrame(8, 8, 40, 24))  # 40×24 → a 16-aligned model size
    started = time.monotonic()
    job = h.ai.generate()
    h.settle()
    assert job.error == "" and time.monotonic() - started < 30
    image = h.ai.staging.current
    assert image.rgba.shape == (24, 40, 4) and (image.x, image.y) == (8, 8)
    assert image.attributes["guidance"] == "3.5"
    # Live, then Generate refines the frame from its pixels (the engine refuses latents for FLUX).
    h.ai.discard()
    assert h.ai.set_live(True)
    h.settle(until=lambda: h.ai.live_image is not None and h.ai.live.idle)
    job = h.ai.generate()
    assert h.ai.refining and job.plan.engine_requests[0].init_latents is None
    h.settle()
    assert job.error == "" and h.ai.staging.current.rgba.shape == (24, 40, 4)
    h.ai.close_service()
