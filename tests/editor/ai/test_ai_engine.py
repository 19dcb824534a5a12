"""The real engine behind the service, with a tiny random-weight SD model:
txt2img and inpaint end to end, model residency, previews, and an injected
out-of-memory in the VAE decode (tiled retry, then a clear message)."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tiny_models import build_sd  # noqa: E402

from editor.ai.engine import ModelSpec, TorchEngine  # noqa: E402
from editor.ai.modes import EditMode  # noqa: E402
from editor.ai.request import EditRequest  # noqa: E402
from editor.ai.results import Staging  # noqa: E402
from editor.ai.service import GenerationService, JobState  # noqa: E402
from editor.document import Document, Rect  # noqa: E402
from inference.pipeline import Pipeline  # noqa: E402

TIMEOUT = 60


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return build_sd(tmp_path_factory.mktemp("ai_tiny"), kind="sd1")


@pytest.fixture(scope="module")
def engine(model_path):
    return TorchEngine({
        "preview": ModelSpec(model_path, label="tiny-preview", native_resolution=64, resident=True),
        "final": ModelSpec(model_path, label="tiny-final", native_resolution=64),
        "other": ModelSpec(model_path, label="tiny-other", native_resolution=64),
    }, decode_tiles=(4,))


@pytest.fixture
def service(engine):
    service = GenerationService(engine)
    yield service
    service.close()


def photo_document():
    doc = Document(64, 64)
    yy, xx = np.mgrid[0:64, 0:64]
    pixels = np.zeros((64, 64, 4), np.uint8)
    pixels[..., 0] = xx * 4
    pixels[..., 1] = yy * 4
    pixels[..., 2] = 128
    pixels[..., 3] = 255
    doc.add_layer_from_image(pixels, name="photo")
    doc.undo_stack.clear()
    return doc


def test_txt2img_through_the_service_matches_the_engine(service, engine):
    doc = Document(64, 64)
    doc.add_layer("empty")
    progress = []
    service.job_progress.connect(progress.append)
    request = EditRequest(frame=Rect(0, 0, 64, 64), prompt="a house", seed=5, steps=2, guidance=3.0)
    job = service.submit_edit(doc, request)
    assert job.wait(TIMEOUT) and job.state == JobState.DONE, job.error
    assert job.plan.mode == EditMode.TXT2IMG
    image = job.images[0]
    assert image.rgba.shape == (64, 64, 4) and (image.rgba[..., 3] == 255).all()
    assert image.attributes["model"] == "tiny-final"
    direct = Pipeline(engine._pipeline("final").model).generate(job.plan.engine_requests[0])
    assert np.array_equal(image.rgba[..., :3], direct.image)
    previews = [p.preview for p in progress if p.preview is not None]
    assert previews and previews[0].rgba.shape == (64, 64, 4)
    staging = Staging(doc)
    staging.stage(job.images)
    layer = staging.accept()
    assert layer.attributes["seed"] == "5" and doc.undo_stack.index == 2  # add layer + accept
    assert np.array_equal(doc.render_uncached()[..., :3], direct.image)


def test_inpaint_through_the_service_keeps_pixels_outside_the_selection(service):
    doc = photo_document()
    doc.select_ellipse(Rect(20, 16, 24, 20))
    before = doc.render_uncached()
    request = EditRequest(frame=Rect(0, 0, 64, 64), prompt="a window", seed=2, steps=2)
    job = service.submit_edit(doc, request)
    assert job.wait(TIMEOUT) and job.state == JobState.DONE, job.error
    assert job.plan.mode == EditMode.INPAINT
    engine_request = job.plan.engine_requests[0]
    assert engine_request.mask is not None and engine_request.paste_back is False
    staging = Staging(doc)
    staging.stage(job.images)
    layer = staging.accept()
    assert layer.attributes["mode"] == "inpaint"
    after = doc.render_uncached()
    outside = doc.selection.mask == 0
    assert np.array_equal(after[outside], before[outside])
    assert not np.array_equal(after[~outside], before[~outside])  # something was generated inside
    doc.undo()
    assert np.array_equal(doc.render_uncached(), before)


def test_preview_model_stays_resident_and_finals_swap(engine, service):
    doc = Document(64, 64)
    doc.add_layer("empty")
    for quality, final in (("preview", "final"), ("final", "final"), ("final", "other")):
        job = service.submit_edit(doc, EditRequest(frame=Rect(0, 0, 64, 64), prompt="x", steps=1,
                                                   quality=quality, final_model=final))
        assert job.wait(TIMEOUT) and job.state == JobState.DONE, job.error
    assert set(engine.loaded()) == {"preview", "other"}
    loads = list(engine.loads)
    job = service.submit_edit(doc, EditRequest(frame=Rect(0, 0, 64, 64), prompt="y", steps=1, quality="preview"))
    assert job.wait(TIMEOUT)
    assert engine.loads == loads  # no reload of the preview model


def test_missing_model_is_an_error_message(service, tmp_path):
    engine = TorchEngine({"final": ModelSpec(tmp_path / "nope", native_resolution=64)})
    broken = GenerationService(engine)
    doc = Document(64, 64)
    job = broken.submit_edit(doc, EditRequest(frame=Rect(0, 0, 64, 64), prompt="x", steps=1))
    assert job.wait(TIMEOUT) and job.state == JobState.FAILED and "nope" in job.error
    broken.close()


def test_decode_out_of_memory_retries_tiled_then_reports(engine, service):
    doc = photo_document()
    request = EditRequest(frame=Rect(0, 0, 64, 64), prompt="x", seed=3, steps=1, strength=0.5)
    reference = service.submit_edit(doc, request)
    assert reference.wait(TIMEOUT) and reference.state == JobState.DONE
    decoder = engine._pipeline("final").model.vae.decoder
    real_forward = decoder.forward
    calls = []

    def forward_with_little_memory(z):
        calls.append(tuple(z.shape[-2:]))
        if max(z.shape[-2:]) > limit[0]:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return real_forward(z)

    limit = [4]
    decoder.forward = forward_with_little_memory
    before = doc.render_uncached()
    try:
        job = service.submit_edit(doc, request)
        assert job.wait(TIMEOUT) and job.state == JobState.DONE, job.error
        assert (8, 8) in calls and (4, 4) in calls  # full decode failed, 4x4-latent tiles worked
        tiled, full = job.images[0].rgba.astype(int), reference.images[0].rgba.astype(int)
        print("tiled vs full decode, mean abs difference:", np.abs(tiled - full).mean())
        assert tiled.shape == full.shape and np.abs(tiled - full).mean() < 40
        limit[0] = 0  # nothing fits
        job = service.submit_edit(doc, request)
        assert job.wait(TIMEOUT) and job.state == JobState.FAILED
        assert "Out of memory while decoding" in job.error
    finally:
        del decoder.forward
    assert np.array_equal(doc.render_uncached(), before) and doc.undo_stack.index == 0


def test_unet_in_channels_from_headers_and_loaded_model(tmp_path_factory):
    inpaint_path = build_sd(tmp_path_factory.mktemp("ai_tiny_inpaint"), kind="sd1", in_channels=9)
    engine = TorchEngine({"plain": ModelSpec(build_sd(tmp_path_factory.mktemp("ai_tiny_plain"), kind="sd1")),
                          "inpaint": ModelSpec(inpaint_path), "missing": ModelSpec(tmp_path_factory.mktemp("x") / "no")})
    assert engine.unet_in_channels("inpaint") == 9  # read from the headers, nothing loaded
    assert engine.loaded() == []
    engine.ensure_loaded("plain")
    assert engine.unet_in_channels("plain") == 4
    assert engine.unet_in_channels("missing") == 4  # unknown: the ordinary default; loading reports the error
