"""FLUX.1 in the editor: what each FLUX model changes about the panel and the plans (issue 18).

The engine runs FLUX.1 schnell, dev, Fill and Kontext; the editor was built around SD, so the
differences live here, Qt-free and torch-free:

* guidance is a distilled embedding on dev / Fill / Kontext (not CFG) and ignored by schnell,
  so the panel labels its control from :func:`guidance_control`;
* Live runs FLUX previews at a few steps (:func:`live_settings`: schnell 2 steps, no guidance);
* images are 16-pixel aligned (8x VAE, 2x2 patches): :func:`size_grid`;
* a FLUX final repaints masks with a FLUX Fill model from the library when there is one
  (:func:`fill_model`, ``editor.ai.flux_route``);
* a Kontext final turns "Prompt edit" into "Edit with Kontext" (:func:`adjust_decision`): the
  frame's picture is Kontext's reference and the prompt is the edit instruction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

from . import catalog
from .frame import GRID
from .modes import EditMode, ModeDecision

DEV, SCHNELL, FILL, KONTEXT = "flux1-dev", "flux1-schnell", "flux1-fill", "flux1-kontext"
FLUX_GRID = 16  # FLUX sizes are multiples of 16: the 8x VAE, then 2x2 patches
# Live steps per family: schnell looks finished at 1-4 steps (2 is the speed/quality knee); the
# guidance-distilled dev and Kontext need more, 4 shows the composition.
LIVE_STEPS = {SCHNELL: 2, DEV: 4, KONTEXT: 4, FILL: 4}
FILL_GUIDANCE = 30.0  # FLUX.1 Fill [dev]'s model card (its preset); the user's steps are kept
FILL_STATUS = "Inpainting with FLUX.1 Fill"
GUIDANCE_LABEL = "Guidance"
DISTILLED_LABEL = "Guidance (distilled)"
DISTILLED_TIP = ("FLUX.1 dev is guidance-distilled: this value is embedded in the model (3.5 is typical; "
                 "Kontext 2.5, Fill 30), not classifier-free guidance. The negative prompt is not used.")
SCHNELL_TIP = "FLUX.1 schnell ignores guidance (it is distilled to run without it)."
KONTEXT_REASON = "the picture in the frame is the reference: the prompt says how to edit it (FLUX.1 Kontext)"
KONTEXT_NO_LIVE = "; Live shows nothing new for it (the preview model is not Kontext)"


def family_of(model_id: str) -> str:
    """"flux1-dev"… of a model id ("" unknown or not a file); headers only, remembered per file
    version (catalog.model_family). Tests replace it to route FakeEngine ids."""
    return catalog.model_family(model_id) if model_id.strip() else ""


def is_flux(family: str) -> bool:
    return family.startswith("flux")


def size_grid(family: str) -> int:
    return FLUX_GRID if is_flux(family) else GRID


@dataclass(frozen=True)
class GuidanceControl:
    """What the panel's guidance control says for the final model."""

    label: str = GUIDANCE_LABEL
    tooltip: str = ""  # "" keeps the panel's own (CFG) tooltip
    enabled: bool = True


def guidance_control(family: str) -> GuidanceControl:
    if family == SCHNELL:
        return GuidanceControl(GUIDANCE_LABEL, SCHNELL_TIP, enabled=False)
    if is_flux(family):  # dev, Fill and Kontext all embed the guidance value
        return GuidanceControl(DISTILLED_LABEL, DISTILLED_TIP)
    return GuidanceControl()


def live_settings(family: str, steps: Optional[int], guidance: Optional[float]) -> tuple[Optional[int],
                                                                                          Optional[float]]:
    """(steps, guidance) Live runs a preview model with: FLUX at a few steps (schnell without
    guidance), any other model as given."""
    if not is_flux(family):
        return steps, guidance
    live = LIVE_STEPS.get(family, 4)
    return (min(steps, live) if steps else live), (0.0 if family == SCHNELL else guidance)


def adjust_decision(decision: ModeDecision, final_family: str, preview_family: Optional[str] = None) -> ModeDecision:
    """A Kontext model edits a picture instead of redrawing it: "Prompt edit" becomes "Edit with
    Kontext". ``preview_family`` (the panel's view) adds why Live stays still for it."""
    if final_family != KONTEXT or decision.mode != EditMode.IMG2IMG:
        return decision
    reason = KONTEXT_REASON + ("" if preview_family in (None, KONTEXT) else KONTEXT_NO_LIVE)
    return ModeDecision(EditMode.KONTEXT, EditMode.KONTEXT.label, reason)


def live_shows(decision: Optional[ModeDecision], preview_family: str) -> bool:
    """Whether Live can render this mode: a Kontext edit needs a Kontext preview model."""
    return decision is None or decision.mode != EditMode.KONTEXT or preview_family == KONTEXT


def live_mode(decision: Optional[ModeDecision], preview_family: str) -> Optional[EditMode]:
    """The mode to pin on a live request, or None to let the plan detect it: a Kontext preview
    under a non-Kontext final shows the prompt edit the final will make, not a Kontext edit."""
    if preview_family == KONTEXT and decision is not None and decision.mode == EditMode.IMG2IMG:
        return EditMode.IMG2IMG
    return None


def fill_applies(final_family: str) -> bool:
    """A FLUX final that is not itself a Fill model hands masks to a Fill model."""
    return is_flux(final_family) and final_family != FILL


def fill_model(entries: Iterable["catalog.ModelEntry"], final_id: str, library: Iterable = ()) -> Optional[str]:
    """The id of the first usable FLUX Fill model, when the final model is FLUX (None otherwise):
    a file of the model library's scan (``library``: ``inference.api.LibraryEntry``, families read
    once and cached; it covers ComfyUI's models/unet and diffusion_models), else one of the
    catalog's ``entries`` (diffusers folders and files directly in the model folders)."""
    if not fill_applies(family_of(final_id)):
        return None
    for found in library:
        if found.family == FILL and found.kind == "checkpoint":  # "unet": companions missing, cannot run
            return str(found.path)
    for entry in entries:
        if entry.available and entry.speed_lora is None and entry.unet_path is None and family_of(entry.id) == FILL:
            return entry.id
    return None
