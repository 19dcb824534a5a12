"""Which model a FLUX final render runs on (issue 18): a mask (inpaint, expand) goes to a FLUX
Fill model from the library when the final is FLUX dev/schnell/Kontext and one is found; Fill
sees the masked picture and the mask directly, so it keeps the user's steps, runs at its own
guidance (30) and full strength on new areas, and the status says so. Without a Fill model the
final's latent-blend inpaint runs as before. Kept apart from the session so it stays a small
state machine."""

from __future__ import annotations

from typing import Optional

from inference.errors import InferenceError

from . import flux
from .modes import EditMode
from .request import EditRequest, GenerationPlan, build_plan

FILL_MODES = (EditMode.INPAINT, EditMode.OUTPAINT)


def _masked(plan: GenerationPlan) -> bool:
    """Fill needs an init image and a mask in every engine request."""
    return (plan.mode in FILL_MODES and plan.denoise is not None
            and all(r.init_image is not None and r.mask is not None for r in plan.engine_requests))


def fill_plan(service, document, request: EditRequest, fill_id: Optional[str]) -> Optional[GenerationPlan]:
    """The Fill model's plan for ``request`` (a final render), or None when the final model's own
    plan should run (no Fill model, not FLUX, nothing masked, a blank expand). Raises ValueError /
    InferenceError as planning does."""
    if not fill_id or not flux.fill_applies(flux.family_of(request.final_model)):
        return None
    own = service.plan(document, request)
    if not _masked(own):
        return None
    fill_request = request.replace(mode=own.mode, guidance=flux.FILL_GUIDANCE, final_model=fill_id)
    plan = build_plan(document, fill_request, service.native_resolution(fill_id), model_id=fill_id,
                      inpaint_model=True)  # full strength on new areas: Fill sees the masked picture
    if not _masked(plan):
        return None
    plan.status = flux.FILL_STATUS
    return plan


def submit_final(service, document, request: EditRequest, fill_id: Optional[str]):
    """``service.submit_edit`` for a final render, through the Fill model when it applies."""
    try:
        plan = fill_plan(service, document, request, fill_id)
    except (ValueError, InferenceError):
        plan = None  # submit_edit plans again and reports the problem as a failed job
    return service.submit(plan) if plan is not None else service.submit_edit(document, request)


def refine_target(plan: GenerationPlan, final_id: str, fill_id: Optional[str], refine_guidance: float,
                  own_guidance: float) -> tuple[str, float, str]:
    """(model id, guidance, status) of a refine of a live ``plan``: the Fill model for a masked
    frame when it applies (refining from the preview's pixels: FLUX reads no other model's
    latents), else the final model. FLUX's guidance is distilled: the refine keeps the final's
    own value (``own_guidance``) rather than the SD refine's low CFG (``refine_guidance``)."""
    family = flux.family_of(final_id)
    if fill_id and flux.fill_applies(family) and _masked(plan):
        return fill_id, flux.FILL_GUIDANCE, flux.FILL_STATUS
    return final_id, (own_guidance if flux.is_flux(family) else refine_guidance), ""
