"""The one request type between the UI and the engine, and the two functions
around a generation: document + request -> engine requests (a plan), and
engine output -> layer image + metadata.

Plans are built on the UI thread (they read the document) and hold copies of
every pixel they need, so the worker thread never touches the document.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from dataclasses import dataclass, field
from typing import Literal, Optional

import numpy as np

from editor.document.geometry import Rect
from inference.api import OUTPAINT_STRENGTH as OUTPAINT_ENGINE_STRENGTH
from inference.api import GenerationRequest, seam_change_map, seam_correct

from . import flux
from .frame import Fit, GenerationFrame, ResolutionMap, model_size
from .inpaint import InpaintSettings, colour_match, compose, layer_rgba, model_mask, plan_inpaint
from .loras import ATTRIBUTE as LORA_ATTRIBUTE
from .loras import LoraItem, decode_loras, encode_loras, lora_specs
from .modes import EditMode, detect_mode_in_document
from .outpaint import Prefill, expand_crop, flatten_for_model, plan_outpaint

SEED_RANGE = 2**32
DEFAULT_STRENGTH = {EditMode.TXT2IMG: 1.0, EditMode.IMG2IMG: 0.6, EditMode.INPAINT: 1.0, EditMode.OUTPAINT: 1.0,
                    EditMode.KONTEXT: 1.0}
# Outpainting with an ordinary (4-channel) model: strength 1 would throw the pre-fill away, so the
# new area starts from the pre-fill noised to the engine's measured outpainting strength instead.
# 9-channel inpainting models see the masked image directly and keep 1.0.
OUTPAINT_STRENGTH_LATENT_BLENDING = OUTPAINT_ENGINE_STRENGTH

# Layer attributes written on Accept. The .ora writer stores layer attributes
# in the "canvasai" XML namespace, so these appear as canvasai:prompt etc.
from .layer_info import GENERATOR  # noqa: E402 - "canvasai"
ATTRIBUTE_KEYS = ("generator", "prompt", "negative", "seed", "model", "mode", "strength", "frame", "sampler",
                  "steps", "guidance")  # always written; "loras" (LORA_ATTRIBUTE) only when some were on


def random_seed(rng: Optional[random.Random] = None) -> int:
    return (rng or random.SystemRandom()).randrange(SEED_RANGE)


@dataclass
class EditRequest:
    """Everything one generation needs; the UI edits a copy and submits it."""

    frame: Rect
    prompt: str = ""
    negative_prompt: str = ""
    mode: Optional[EditMode] = None  # None: chosen from the frame's contents
    seed: int = 0
    seed_locked: bool = False  # False: a fresh seed for every Generate
    steps: int = 20
    guidance: float = 7.0
    strength: Optional[float] = None  # None: the mode's default (DEFAULT_STRENGTH)
    sampler: str = "euler"
    timestep_spacing: Optional[str] = None
    preview_model: str = "preview"
    final_model: str = "final"
    quality: Literal["preview", "final"] = "final"  # which of the two models runs it
    variations: int = 1
    fit: Fit = "shorter"  # how the frame maps onto the model's native size
    prefill: Prefill = "telea"  # what the model sees in empty areas
    seam: int = 8  # outpaint: px of existing content regenerated at the join
    inpaint: InpaintSettings = field(default_factory=InpaintSettings)
    loras: tuple[LoraItem, ...] = ()  # the user's list (editor.ai.loras); the enabled ones run on the final
    # What the live preview runs besides its model (editor.ai.loras.preview_recipe): the user's LoRAs
    # when they fit the preview model, a speed LoRA's own LoRA, sampler and spacing.
    preview_loras: tuple[LoraItem, ...] = ()
    preview_sampler: Optional[str] = None  # None: ``sampler``
    preview_spacing: Optional[str] = None

    @property
    def model_id(self) -> str:
        return self.preview_model if self.quality == "preview" else self.final_model

    def strength_for(self, mode: EditMode, inpaint_model: bool = True) -> float:
        if mode in (EditMode.TXT2IMG, EditMode.KONTEXT):  # Kontext edits from noise (its reference keeps the picture)
            return 1.0
        value = DEFAULT_STRENGTH[mode] if self.strength is None else float(self.strength)
        if self.strength is None and mode == EditMode.OUTPAINT and not inpaint_model:
            value = OUTPAINT_STRENGTH_LATENT_BLENDING
        return min(max(value, 0.01), 1.0)

    def seeds(self) -> list[int]:
        return [(int(self.seed) + i) % SEED_RANGE for i in range(max(1, int(self.variations)))]

    def replace(self, **changes) -> "EditRequest":
        return dataclasses.replace(self, **changes)

    def for_generate(self, rng: Optional[random.Random] = None) -> "EditRequest":
        """The request a Generate click runs: a fresh seed unless locked."""
        return self if self.seed_locked else self.replace(seed=random_seed(rng))


# --------------------------------------------------------------------------- plan
@dataclass
class GenerationPlan:
    """A request bound to a document snapshot and a model: ready for the worker."""

    request: EditRequest
    mode: EditMode
    label: str
    model_id: str
    crop: Rect  # canvas area the model sees and the result layer covers
    canvas_size: tuple[int, int]  # canvas when the plan was made
    original: np.ndarray  # straight RGBA (crop) of the composite
    source: Optional[np.ndarray]  # RGB (crop) the model starts from; None for txt2img
    denoise: Optional[np.ndarray]  # uint8 (crop): what the model repaints; None = all
    weights: Optional[np.ndarray]  # float32 (crop): layer alpha; None = opaque
    ring: Optional[np.ndarray]  # bool (crop): colour-match ring
    rmap: ResolutionMap
    strength: float
    engine_requests: list[GenerationRequest]
    key: str  # hash of the exact inputs (live preview skips repeats)
    refined: bool = False  # a refine pass over a preview
    reference: Optional[np.ndarray] = None  # RGB (crop): FLUX Kontext's reference image (the frame's picture)
    status: str = ""  # progress text instead of "Generating" ("Inpainting with FLUX.1 Fill")

    @property
    def frame(self) -> Rect:
        return self.request.frame

    @property
    def model_size(self) -> tuple[int, int]:
        return self.rmap.model


@dataclass
class GeneratedImage:
    """One result, ready to stage or accept: a layer image at a canvas position."""

    rgba: np.ndarray  # straight uint8 (h, w, 4)
    x: int  # canvas position when the plan was made
    y: int
    seed: int
    attributes: dict[str, str]
    mode: EditMode
    canvas_size: tuple[int, int]
    preview: bool = False  # an intermediate step, not a finished image
    # The engine's latents (C, h/8, w/8 at model size) when it returned them: a final render
    # refines a live frame from these rather than re-encoding its pixels (lossy).
    latents: Optional[np.ndarray] = field(default=None, repr=False, compare=False)

    @property
    def rect(self) -> Rect:
        return Rect(self.x, self.y, self.rgba.shape[1], self.rgba.shape[0])


def _hash_inputs(*parts) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(repr((part.shape, part.dtype.str)).encode())
            digest.update(np.ascontiguousarray(part).tobytes())
        else:
            digest.update(repr(part).encode())
        digest.update(b"\x00")
    return digest.hexdigest()


def steps_for(steps: int, strength: float, has_init: bool) -> int:
    """Sampling steps to request: img2img runs ``int(steps * strength)`` of
    them, so a low strength with few steps (live previews) would run none;
    raise the count just enough for one."""
    steps = max(1, int(steps))
    if has_init and strength < 1.0:
        while int(steps * strength) < 1:
            steps += 1
    return steps


def engine_recipe(request: EditRequest) -> tuple[tuple, str, Optional[str]]:
    """(LoRA specs, sampler, spacing) the engine runs ``request`` with: a live preview takes the
    preview's LoRAs and, for a speed LoRA, its sampler; everything else the user's."""
    if request.quality == "preview":
        if request.preview_sampler:
            return lora_specs(request.preview_loras), request.preview_sampler, request.preview_spacing
        return lora_specs(request.preview_loras), request.sampler, request.timestep_spacing
    return lora_specs(request.loras), request.sampler, request.timestep_spacing


def _engine_requests(request: EditRequest, seeds: list[int], rmap: ResolutionMap, init: Optional[np.ndarray],
                     mask: Optional[np.ndarray], strength: float, change_map: Optional[np.ndarray] = None,
                     reference: Optional[np.ndarray] = None) -> list[GenerationRequest]:
    steps = steps_for(request.steps, strength, init is not None)
    loras, sampler, spacing = engine_recipe(request)
    return [
        GenerationRequest(
            prompt=request.prompt, negative_prompt=request.negative_prompt, seed=seed, steps=steps,
            sampler=sampler, timestep_spacing=spacing, guidance=float(request.guidance),
            width=rmap.model_width, height=rmap.model_height, init_image=init, strength=strength, mask=mask,
            paste_back=False,  # we compose ourselves (colour match, blend band, alpha)
            change_map=change_map, loras=loras, reference_image=reference,
        )
        for seed in seeds
    ]


def _finish_plan(request: EditRequest, mode: EditMode, model_id: str, crop: Rect, canvas_size: tuple[int, int],
                 original: np.ndarray, source: Optional[np.ndarray], denoise: Optional[np.ndarray],
                 weights: Optional[np.ndarray], ring: Optional[np.ndarray], native: int, strength: float,
                 seeds: list[int], refined: bool = False, soft_seam: bool = False,
                 reference: Optional[np.ndarray] = None) -> GenerationPlan:
    # FLUX needs 16-pixel sizes (8x VAE, 2x2 patches); SD 8.
    grid = flux.size_grid(flux.family_of(model_id))
    rmap = ResolutionMap(crop.w, crop.h, *model_size(crop.w, crop.h, native, request.fit, grid=grid))
    init = rmap.to_model(source) if source is not None else None
    mask = model_mask(denoise, rmap) if denoise is not None else None
    if init is not None and mask is not None and not mask.any():
        mask = None  # nothing to repaint at this scale: plain img2img keeps the request valid
    # Outpainting with latent blending: the new pixels near the seam stay on the pre-fill's
    # trajectory for the early steps (inference.outpaint.seam_change_map), so the horizon carries over.
    change_map = seam_change_map(mask) if soft_seam and mask is not None else None
    model_reference = rmap.to_model(reference) if reference is not None else None
    engine_requests = _engine_requests(request, seeds, rmap, init, mask, strength, change_map, model_reference)
    key = _hash_inputs(
        mode.value, model_id, crop, rmap, strength, seeds, refined, request.prompt, request.negative_prompt,
        request.steps, request.guidance, request.sampler, request.timestep_spacing, request.inpaint,
        request.prefill, request.seam, original, source if refined else None, denoise, engine_recipe(request),
        grid,
    )
    return GenerationPlan(
        request=request, mode=mode, label="Refine" if refined else mode.label, model_id=model_id, crop=crop,
        canvas_size=canvas_size, original=original, source=source, denoise=denoise, weights=weights, ring=ring,
        rmap=rmap, strength=strength, engine_requests=engine_requests, key=key, refined=refined,
        reference=reference,
    )


def build_plan(document, request: EditRequest, native_resolution: int, *,
               model_id: Optional[str] = None, inpaint_model: bool = True) -> GenerationPlan:
    """Read the document (UI thread) and turn ``request`` into engine requests.

    ``native_resolution`` is the model's (``GenerationService.native_resolution``);
    ``inpaint_model`` says whether it is a 9-channel inpainting UNet (outpainting's default strength).
    Raises ValueError for a request that cannot run (inpaint without a selection).
    """
    frame = GenerationFrame.from_rect(request.frame).rect
    request = request.replace(frame=frame)
    canvas = document.canvas_rect
    canvas_size = (document.width, document.height)
    decision = None if request.mode else detect_mode_in_document(document, frame)
    model_id = model_id or request.model_id
    family = flux.family_of(model_id)
    if decision is not None:  # a Kontext model edits the picture rather than redrawing it
        decision = flux.adjust_decision(decision, family)
    # A FLUX Fill model sees the masked picture like a 9-channel UNet does (its 384 input channels
    # are not 9): new areas start from noise, not from the pre-fill.
    inpaint_model = inpaint_model or family == flux.FILL
    mode = request.mode or decision.mode
    blank = decision is not None and decision.blank  # a plain background: painted over, not kept
    strength = request.strength_for(mode, inpaint_model)
    seeds = request.seeds()

    if mode == EditMode.INPAINT:
        selection = document.selection.mask
        if selection is None:
            raise ValueError("inpainting needs a selection inside the frame")
        inpaint = plan_inpaint(selection, canvas, frame, native_resolution, request.inpaint)
        crop = inpaint.crop
        original = document.render(crop)
        source = flatten_for_model(original, request.prefill)
        ring = inpaint.ring & (original[..., 3] == 255) if request.inpaint.colour_match else None
        return _finish_plan(request, mode, model_id, crop, canvas_size, original, source, inpaint.denoise,
                            inpaint.weights, ring, native_resolution, strength, seeds)

    crop = frame
    original = document.render(crop)
    if mode == EditMode.TXT2IMG:
        return _finish_plan(request, mode, model_id, crop, canvas_size, original, None, None, None, None,
                            native_resolution, strength, seeds)
    if mode == EditMode.OUTPAINT:
        crop = expand_crop(frame, document.width, document.height)
        original = document.render(crop)
        if blank:  # past the edge of a plain canvas: one new picture over the frame, no seam to the plain
            return _finish_plan(request, mode, model_id, crop, canvas_size, original, None, None, None, None,
                                native_resolution, 1.0, seeds)
    source = flatten_for_model(original, request.prefill)
    if mode == EditMode.KONTEXT:  # the picture is the reference; the new image starts from noise
        return _finish_plan(request, mode, model_id, crop, canvas_size, original, None, None, None, None,
                            native_resolution, 1.0, seeds, reference=source)
    if mode == EditMode.IMG2IMG:
        return _finish_plan(request, mode, model_id, crop, canvas_size, original, source, None, None, None,
                            native_resolution, strength, seeds)
    outpaint = plan_outpaint(original, seam=request.seam, grow=request.inpaint.grow,
                             ring_width=request.inpaint.ring_width)
    ring = outpaint.ring if request.inpaint.colour_match else None
    return _finish_plan(request, mode, model_id, crop, canvas_size, original, source, outpaint.denoise,
                        outpaint.weights, ring, native_resolution, strength, seeds, soft_seam=not inpaint_model)


def refine_plan(plan: GenerationPlan, preview: GeneratedImage, native_resolution: int, *, model_id: str,
                strength: float = 0.5, request: Optional[EditRequest] = None,
                seeds: Optional[list[int]] = None, latents: bool = False,
                structure_scale: int = 0, structure_hold: float = 0.0,
                structure_bound: float = 0.0) -> GenerationPlan:
    """A final render that refines a preview: img2img (inpaint keeps its mask)
    from the preview as it looks on the canvas, with the preview's seed, so the
    final stays coherent with what the user saw. ``request`` gives the final's
    settings (steps, guidance, sampler...) when they differ from the preview's;
    ``seeds`` (default: the preview's) makes several refinements of one preview.
    ``latents`` (the final model reads the preview model's latents): start from
    the preview's latents, holding them for the first ``structure_hold`` share of
    the steps and keeping their structure coarser than ``structure_scale`` latent
    cells on the others, no latent cell moving more than ``structure_bound``
    (issue 20)."""
    base = plan.source if plan.source is not None else plan.original[..., :3]
    alpha = preview.rgba[..., 3].astype(np.float32) / 255.0
    on_canvas = compose(base, preview.rgba[..., :3], alpha)
    strength = min(max(float(strength), 0.01), 1.0)
    request = (request or plan.request).replace(frame=plan.request.frame)
    refined = _finish_plan(request, plan.mode, model_id, plan.crop, plan.canvas_size, plan.original, on_canvas,
                           plan.denoise, plan.weights, plan.ring, native_resolution, strength,
                           list(seeds) if seeds else [preview.seed], refined=True, reference=plan.reference)
    if latents and preview.latents is not None:
        refined.engine_requests = [_from_latents(r, preview.latents, structure_scale, structure_hold, structure_bound)
                                   for r in refined.engine_requests]
    return refined


def _from_latents(request: GenerationRequest, latents: np.ndarray, structure_scale: int,
                  structure_hold: float, structure_bound: float) -> GenerationRequest:
    """The refine starts from the preview's own latents (when they fit this request's size) and keeps
    the preview's structure (inference/structure.py: hold, then ILVR at ``structure_scale``, each
    cell's change capped at ``structure_bound``)."""
    if latents.ndim != 3 or tuple(latents.shape[1:]) != (request.height // 8, request.width // 8):
        return request  # planned at another size: start from the pixels
    return dataclasses.replace(request, init_latents=np.asarray(latents, np.float32), structure_scale=structure_scale,
                               structure_hold=structure_hold, structure_bound=structure_bound)


# --------------------------------------------------------------------------- results
def generation_attributes(plan: GenerationPlan, seed: int, model_name: str) -> dict[str, str]:
    """Layer metadata of a result (str -> str, as layer attributes require)."""
    request, frame = plan.request, plan.request.frame
    attributes = {
        "generator": GENERATOR,
        "prompt": request.prompt,
        "negative": request.negative_prompt,
        "seed": str(int(seed)),
        "model": model_name,
        "mode": plan.mode.value,
        "strength": f"{plan.strength:.3g}",
        "frame": f"{frame.x},{frame.y},{frame.w},{frame.h}",
        "sampler": request.sampler,
        "steps": str(int(request.steps)),
        "guidance": f"{request.guidance:.3g}",
    }
    loras = encode_loras(request.loras) if request.quality == "final" else ""
    if loras:
        attributes[LORA_ATTRIBUTE] = loras
    return attributes


def request_from_attributes(attributes: dict[str, str], base: Optional[EditRequest] = None) -> EditRequest:
    """Re-edit: the request that made a generated layer (seed locked)."""
    if attributes.get("generator") != GENERATOR:
        raise ValueError("the layer holds no generation metadata")
    x, y, w, h = (int(v) for v in attributes["frame"].split(","))
    base = base or EditRequest(frame=Rect(x, y, w, h))
    return base.replace(
        frame=Rect(x, y, w, h), prompt=attributes.get("prompt", ""), negative_prompt=attributes.get("negative", ""),
        seed=int(attributes.get("seed", 0)), seed_locked=True, mode=EditMode(attributes["mode"]),
        strength=float(attributes.get("strength", 1.0)), sampler=attributes.get("sampler", base.sampler),
        steps=int(attributes.get("steps", base.steps)), guidance=float(attributes.get("guidance", base.guidance)),
        loras=decode_loras(attributes.get(LORA_ATTRIBUTE, "")),  # as stored: the caller finds moved files
    )


def finish_image(plan: GenerationPlan, rgb: np.ndarray, seed: int, model_name: str = "",
                 *, preview: bool = False) -> GeneratedImage:
    """Engine output (model size, uint8 RGB) -> layer image at the plan's crop.

    Pixels whose weight is 0 get alpha 0, so the document composite there is
    exactly what it was. Intermediate previews skip the colour match (cheap)."""
    generated = plan.rmap.from_model(np.asarray(rgb)[..., :3])
    if plan.weights is None:
        rgba = np.dstack([generated, np.full(generated.shape[:2], 255, np.uint8)])
    else:
        if plan.ring is not None and not preview:
            reference = plan.source if plan.source is not None else plan.original[..., :3]
            # The global colour match runs on the whole crop (pixels of weight 0 stay invisible), so
            # the context ring shows what it left uncorrected; the local seam correction then pulls
            # that remainder to the edge colours.
            generated = colour_match(generated, reference, plan.ring, space=plan.request.inpaint.colour_space)
            generated = seam_correct(generated, reference, np.where(plan.weights > 0, np.uint8(255), np.uint8(0)))
        rgba = layer_rgba(generated, plan.weights)
    return GeneratedImage(
        rgba=np.ascontiguousarray(rgba), x=plan.crop.x, y=plan.crop.y, seed=int(seed),
        attributes=generation_attributes(plan, seed, model_name or plan.model_id), mode=plan.mode,
        canvas_size=plan.canvas_size, preview=preview,
    )
