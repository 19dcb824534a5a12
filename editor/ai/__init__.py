"""The AI editing features, Qt-free: generation frame, mode detection,
inpaint/outpaint preparation and composition, the request type, the
generation service (one worker thread), the live-preview scheduler, the
staging of results, the model catalog and the AI session state machine
(:mod:`.session`). The Qt adapter in ``editor.ui`` binds these to widgets.

Names are imported lazily (PEP 562): ``editor.ai.catalog`` and
``editor.ai.session`` stay importable without torch, so the panel can list
models before the engine is loaded; ``from editor.ai import TorchEngine``
works as before.

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

from __future__ import annotations

import importlib

_EXPORTS = {
    "engine": ("Engine", "FakeEngine", "ModelSpec", "TorchEngine"),
    "frame": ("GRID", "GenerationFrame", "ResolutionMap", "model_size", "resize_image", "resize_mask"),
    "inpaint": ("InpaintSettings", "align_to_grid", "blend_weights", "colour_match", "plan_inpaint"),
    "live": ("LiveFrame", "LivePreview", "LiveStats"),
    "modes": ("EditMode", "ModeDecision", "detect_mode", "detect_mode_in_document"),
    "outpaint": ("CanvasGrowth", "flatten_for_model", "plan_canvas_growth", "plan_outpaint", "prefill"),
    "request": ("ATTRIBUTE_KEYS", "EditRequest", "GeneratedImage", "GenerationPlan", "build_plan", "finish_image",
                "generation_attributes", "random_seed", "refine_plan", "request_from_attributes"),
    "results": ("Staging",),
    "service": ("GenerationService", "Job", "JobProgress", "JobState"),
    "tiled_decode": ("OutOfMemoryError",),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'editor.ai' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
