"""The AI editing features, Qt-free: generation frame, mode detection,
inpaint/outpaint preparation and composition, the request type, the
generation service (one worker thread), the live-preview scheduler and the
staging of results. The Qt adapter in ``editor.ui`` binds these to widgets.

Typical use (UI thread; service signals arrive on the worker thread, so the
adapter re-emits them as queued Qt signals)::

    engine = TorchEngine({"preview": ModelSpec("assets/house/preview", resident=True),
                          "final": ModelSpec("assets/house/full")})
    service = GenerationService(engine)
    staging = Staging(document)
    service.job_finished.connect(lambda job: ui_thread(staging.stage, job.images))
    frame = GenerationFrame.snapped(x, y, w, h)
    request = EditRequest(frame=frame.rect, prompt="a lighthouse").for_generate()
    job = service.submit_edit(document, request)   # never raises for bad input
    ...
    staging.accept()                                # one new layer, one undo step

    live = LivePreview(service, model_id="preview", steps=2)
    live.frame_ready.connect(...)                   # LiveFrame: .image at .image.rect
    live.update(document, request)                  # on every change of the inputs
    live.refine(strength=0.5)                       # final render from the preview
"""

from .engine import Engine, FakeEngine, ModelSpec, TorchEngine
from .frame import GRID, GenerationFrame, ResolutionMap, model_size, resize_image, resize_mask
from .inpaint import InpaintSettings, align_to_grid, blend_weights, colour_match, plan_inpaint
from .live import LiveFrame, LivePreview, LiveStats
from .modes import EditMode, ModeDecision, detect_mode, detect_mode_in_document
from .outpaint import CanvasGrowth, flatten_for_model, plan_canvas_growth, plan_outpaint, prefill
from .request import (
    ATTRIBUTE_KEYS,
    EditRequest,
    GeneratedImage,
    GenerationPlan,
    build_plan,
    finish_image,
    generation_attributes,
    random_seed,
    refine_plan,
    request_from_attributes,
)
from .results import Staging
from .service import GenerationService, Job, JobProgress, JobState
from .tiled_decode import OutOfMemoryError, decode_with_fallback, guard_decode, tiled_decode

__all__ = [
    "ATTRIBUTE_KEYS",
    "CanvasGrowth",
    "EditMode",
    "EditRequest",
    "Engine",
    "FakeEngine",
    "GRID",
    "GeneratedImage",
    "GenerationFrame",
    "GenerationPlan",
    "GenerationService",
    "InpaintSettings",
    "Job",
    "JobProgress",
    "JobState",
    "LiveFrame",
    "LivePreview",
    "LiveStats",
    "ModeDecision",
    "ModelSpec",
    "OutOfMemoryError",
    "ResolutionMap",
    "Staging",
    "TorchEngine",
    "align_to_grid",
    "blend_weights",
    "build_plan",
    "colour_match",
    "decode_with_fallback",
    "detect_mode",
    "detect_mode_in_document",
    "finish_image",
    "flatten_for_model",
    "generation_attributes",
    "guard_decode",
    "model_size",
    "plan_canvas_growth",
    "plan_inpaint",
    "plan_outpaint",
    "prefill",
    "random_seed",
    "refine_plan",
    "request_from_attributes",
    "resize_image",
    "resize_mask",
    "tiled_decode",
]
