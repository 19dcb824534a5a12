"""Issue 20, preview → final coherence: a final render refines the live frame from the frame's own
latents (keeping its coarse structure), and frames that start from the canvas come from the final
model when the preview model is a one-step student that cannot denoise part-way."""
from __future__ import annotations

import time

import numpy as np

from editor.ai.engine import FakeEngine
from editor.ai.live import LivePreview, PartialPreview
from editor.ai.request import EditRequest, refine_plan
from editor.ai.service import GenerationService
from editor.document import Document, Rect
from inference.api import GenerationResult


class LatentEngine(FakeEngine):
    """A fake engine whose results carry latents, as the torch engine's do."""

    def generate(self, model_id, request, progress=None, should_stop=None) -> GenerationResult:
        result = super().generate(model_id, request, progress, should_stop)
        result.latents = np.full((4, request.height // 8, request.width // 8), request.seed % 97, np.float32)
        return result

    def latent_space(self, model_id):
        return "shared"


def _painted_document() -> Document:
    doc = Document(64, 64)
    rng = np.random.default_rng(4)
    pixels = np.dstack([rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), np.full((64, 64), 255, np.uint8)])
    doc.add_layer_from_image(pixels, 0, 0, name="painting")
    return doc


def _wait(live, count, frames, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (len(frames) < count or not live.idle):
        time.sleep(0.005)
    assert len(frames) >= count and live.idle


def _setup():
    engine = LatentEngine(native_resolution=64)
    service = GenerationService(engine)
    live = LivePreview(service, model_id="preview", steps=1)
    live.guidance = 0.0
    frames = []
    live.frame_ready.connect(frames.append)
    return engine, service, live, frames


def test_frames_from_the_canvas_come_from_the_final_model_at_a_few_steps():
    engine, service, live, frames = _setup()
    live.partial = PartialPreview(steps=6)
    try:
        request = EditRequest(frame=Rect(0, 0, 64, 64), prompt="a lake", seed=5, strength=0.6, guidance=3.0,
                              final_model="final")
        live.update(_painted_document(), request)  # opaque, varied pixels: a prompt edit (img2img)
        _wait(live, 1, frames)
        model, sent = engine.calls[-1]
        assert model == "final" and sent.init_image is not None
        assert int(sent.steps * sent.strength) == 6 and sent.guidance == 3.0  # 6 steps run, not 3
        assert frames[-1].plan.model_id == "final"
        # txt2img (a new document) needs no part-way denoising: the one-step preview model renders it.
        live.update(Document(64, 64), request.replace(prompt="a lake at night"))
        _wait(live, 2, frames)
        model, sent = engine.calls[-1]
        assert model == "preview" and sent.init_image is None and sent.steps == 1 and sent.guidance == 0.0
    finally:
        service.close()


def test_without_a_partial_model_every_frame_comes_from_the_preview_model():
    engine, service, live, frames = _setup()
    try:
        live.update(_painted_document(), EditRequest(frame=Rect(0, 0, 64, 64), prompt="a lake", seed=5, strength=0.6))
        _wait(live, 1, frames)
        assert [model for model, _ in engine.calls] == ["preview"]
    finally:
        service.close()


def test_a_refine_starts_from_the_frames_latents_and_keeps_its_structure():
    engine, service, live, frames = _setup()
    try:
        live.update(Document(64, 64), EditRequest(frame=Rect(0, 0, 64, 64), prompt="a lake", seed=9))
        _wait(live, 1, frames)
        frame = frames[-1]
        assert frame.image.latents.shape == (4, 8, 8) and float(frame.image.latents[0, 0, 0]) == 9.0
        plan = refine_plan(frame.plan, frame.image, 64, model_id="final", strength=0.3, latents=True,
                           structure_scale=2, structure_bound=0.05)
        sent = plan.engine_requests[0]
        assert sent.init_image is not None and sent.strength == 0.3 and sent.structure_scale == 2
        assert sent.structure_bound == 0.05
        assert np.array_equal(sent.init_latents, frame.image.latents)
        # Latents from another latent space, or of another size, are not used: pixels are.
        plain = refine_plan(frame.plan, frame.image, 64, model_id="final", strength=0.3)
        assert plain.engine_requests[0].init_latents is None and plain.engine_requests[0].structure_scale == 0
        assert plain.engine_requests[0].structure_bound == 0.0  # a bound only makes sense against the latents
        frame.image.latents = np.zeros((4, 5, 8), np.float32)
        resized = refine_plan(frame.plan, frame.image, 64, model_id="final", strength=0.3, latents=True,
                              structure_scale=2)
        assert resized.engine_requests[0].init_latents is None
    finally:
        service.close()
