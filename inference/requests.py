"""Generation requests and results, and their validation (torch-free; re-exported by `inference.api`)."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .defaults import DEFAULT_GUIDANCE, DEFAULT_SAMPLER, DEFAULT_STEPS, MAX_GUIDANCE, MAX_SIDE, MAX_STEPS, SEED_MAX
from .errors import InvalidRequestError
from .samplers.registry import SPACINGS, check_sampler
from .tokenizer.weighting import check_prompt_length


class Mode(str, enum.Enum):
    """What a request does, decided by its inputs and the UNet's input channels."""

    TXT2IMG = "txt2img"
    IMG2IMG = "img2img"
    INPAINT = "inpaint"
    INSTRUCT = "instruct"  # InstructPix2Pix: the image rides along as conditioning


# ----------------------------------------------------------------------------- arrays
def as_rgb_array(image: Any) -> np.ndarray:
    """uint8 (H, W, 3) view of an image array or PIL image (alpha dropped)."""
    if hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image, without importing PIL
        return np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] not in (3, 4):
        raise InvalidRequestError(f"image must be uint8 (H, W, 3), got {array.dtype} {array.shape}")
    return array[..., :3]


def as_mask_array(mask: Any) -> np.ndarray:
    """uint8 (H, W) mask, white = repaint, from an array (bool, uint8, or H×W×C) or a PIL image."""
    if hasattr(mask, "convert") and hasattr(mask, "size"):
        return np.asarray(mask.convert("L"))
    array = np.asarray(mask)
    if array.ndim == 3:
        array = array[..., 0]
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    if array.dtype != np.uint8 or array.ndim != 2:
        raise InvalidRequestError(f"mask must be uint8 (H, W), got {array.dtype} {array.shape}")
    return array


# ----------------------------------------------------------------------------- request / result
MAX_LORA_WEIGHT = 8.0  # beyond this every LoRA we know of turns the image to noise
MAX_STRUCTURE_BOUND = 10.0  # latent units; scaled latents spread about 1, so 10 is no cap at all


@dataclass(frozen=True)
class LoraSpec:
    """One LoRA of a request: its file and how strongly it changes the UNet and the text encoders."""

    path: str
    unet: float = 1.0
    text: float | None = None  # None: the same as `unet`


@dataclass
class GenerationRequest:
    prompt: str
    negative_prompt: str = ""
    seed: int = 0
    steps: int = DEFAULT_STEPS
    sampler: str = DEFAULT_SAMPLER
    timestep_spacing: str | None = None
    guidance: float = DEFAULT_GUIDANCE
    width: int = 512
    height: int = 512
    init_image: np.ndarray | None = None  # uint8 (H, W, 3)
    strength: float = 1.0
    mask: np.ndarray | None = None  # uint8 (H, W); white = repaint
    paste_back: bool = True  # inpainting: keep pixels outside the mask bit-identical
    paste_feather: int = 8
    # Inpainting: per-pixel share of the sampling steps in which a masked pixel may change (float (H, W)
    # in [0, 1]; 1 = from the first step, as without a map; 0.3 = held on the init image's noise
    # trajectory for the first 70 % of the steps, then free). Differential-diffusion-style soft
    # inpainting: a ramp away from the kept border carries the layout over the seam.
    change_map: np.ndarray | None = None
    image_guidance: float = 1.5  # InstructPix2Pix: how closely to follow the input image
    guidance_rescale: float = 0.0  # "rescaled CFG" for zero-terminal-SNR models (0.7 is typical)
    tcd_gamma: float = 0.3  # the tcd sampler's stochasticity (diffusers' eta): 0 deterministic, 1 most noise
    loras: tuple[LoraSpec, ...] = ()  # applied in order on top of the model; none: the base model
    # img2img/inpaint: keep the init image's structure (inference/structure.py). For the first
    # `structure_hold` share of the steps the whole latent stays on the init image's noise trajectory;
    # on the others its low frequencies coarser than `structure_scale` latent cells come from the
    # init image (ILVR; 0 = free). A refine of a preview uses them to add detail without moving the
    # composition the user saw. `structure_bound` (> 0) caps how far the model's denoised estimate
    # may move any latent cell from the init image (RMS over the channels, scaled latents): the
    # refine sharpens what is there instead of repainting a cell. 0 = no cap.
    structure_scale: int = 0
    structure_hold: float = 0.0
    structure_bound: float = 0.0
    # FLUX Kontext: the image to edit (usually the canvas), uint8 (H, W, 3), any size; the model sees
    # it as extra image tokens. Other models refuse a request that has one.
    reference_image: np.ndarray | None = None
    # img2img/inpaint: the init image as latents (float (C, H/8, W/8), the scaled latents a result's
    # `latents` hold), used instead of encoding `init_image`. A refine of a preview starts from the
    # preview's own latents: the VAE round trip of the preview's pixels is lossy, so encoding them
    # would move the final away from what the user saw before the model runs a step.
    init_latents: np.ndarray | None = None

    def mode(self, unet_in_channels: int = 4) -> str:
        if self.mask is not None:
            return Mode.INPAINT.value
        if self.init_image is None:
            return Mode.TXT2IMG.value
        return Mode.INSTRUCT.value if unet_in_channels == 8 else Mode.IMG2IMG.value


@dataclass
class GenerationResult:
    image: np.ndarray  # uint8 (H, W, 3)
    seed: int
    latents: Any = None  # torch.Tensor when asked for (return_latents); typed loosely to stay torch-free
    info: dict = field(default_factory=dict)


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and bool(np.isfinite(value))


def validate_request(request: GenerationRequest) -> None:
    """Raise InvalidRequestError (one line, naming the value) for anything the engine cannot run."""
    for name in ("width", "height"):
        value = getattr(request, name)
        if not _is_int(value) or value < 8 or value > MAX_SIDE or value % 8:
            raise InvalidRequestError(f"{name} {value!r} must be a multiple of 8 between 8 and {MAX_SIDE}")
    if not _is_int(request.steps) or not 1 <= request.steps <= MAX_STEPS:
        raise InvalidRequestError(f"steps {request.steps!r} must be between 1 and {MAX_STEPS}")
    if not _is_number(request.guidance) or not 0.0 <= request.guidance <= MAX_GUIDANCE:
        raise InvalidRequestError(f"guidance {request.guidance!r} must be between 0 and {MAX_GUIDANCE:g}")
    if not _is_number(request.strength) or not 0.0 < request.strength <= 1.0:
        raise InvalidRequestError(f"strength {request.strength!r} must be in (0, 1]")
    if not _is_number(request.guidance_rescale) or not 0.0 <= request.guidance_rescale <= 1.0:
        raise InvalidRequestError(f"guidance rescale {request.guidance_rescale!r} must be between 0 and 1")
    if not _is_number(request.image_guidance) or not 0.0 <= request.image_guidance <= MAX_GUIDANCE:
        raise InvalidRequestError(f"image guidance {request.image_guidance!r} must be between 0 and "
                                  f"{MAX_GUIDANCE:g}")
    check_sampler(request.sampler)
    if not _is_number(request.tcd_gamma) or not 0.0 <= request.tcd_gamma <= 1.0:
        raise InvalidRequestError(f"TCD gamma {request.tcd_gamma!r} must be between 0 and 1")
    if request.timestep_spacing is not None and request.timestep_spacing not in SPACINGS:
        raise InvalidRequestError(f"timestep spacing {request.timestep_spacing!r}: use one of {', '.join(SPACINGS)}")
    if not isinstance(request.prompt, str) or not isinstance(request.negative_prompt, str):
        raise InvalidRequestError("prompt and negative prompt must be text")
    check_prompt_length(request.prompt, "prompt")
    check_prompt_length(request.negative_prompt, "negative prompt")
    if request.init_image is not None:
        image = as_rgb_array(request.init_image)
        if image.shape[:2] != (request.height, request.width):
            raise InvalidRequestError(f"init image is {image.shape[1]}x{image.shape[0]} but the request is "
                                      f"{request.width}x{request.height}")
    if request.mask is not None:
        if request.init_image is None:
            raise InvalidRequestError("a mask needs an init image to inpaint")
        mask = as_mask_array(request.mask)
        if mask.shape[:2] != (request.height, request.width):
            raise InvalidRequestError(f"mask is {mask.shape[1]}x{mask.shape[0]} but the image is "
                                      f"{request.width}x{request.height}")
    if request.change_map is not None:
        if request.mask is None:
            raise InvalidRequestError("a change map needs a mask and an init image to inpaint")
        change = np.asarray(request.change_map)
        if change.shape != (request.height, request.width):
            raise InvalidRequestError(f"change map has shape {change.shape} but the image is "
                                      f"{request.width}x{request.height}")
        if not np.issubdtype(change.dtype, np.floating) or not np.isfinite(change).all() \
                or change.min() < 0 or change.max() > 1:
            raise InvalidRequestError("change map must be finite floats between 0 and 1")
    for spec in request.loras:
        if not isinstance(spec, LoraSpec):
            raise InvalidRequestError(f"LoRA entry {spec!r} is not a LoraSpec")
        for weight in (spec.unet, spec.unet if spec.text is None else spec.text):
            if not _is_number(weight) or abs(weight) > MAX_LORA_WEIGHT:
                raise InvalidRequestError(f"LoRA {Path(spec.path).name}: weight {weight!r} is outside "
                                          f"-{MAX_LORA_WEIGHT:g}…{MAX_LORA_WEIGHT:g}")
    if not _is_int(request.structure_scale) or not 0 <= request.structure_scale <= 64:
        raise InvalidRequestError(f"structure scale {request.structure_scale!r} must be a whole number between 0 and 64")
    if not _is_number(request.structure_hold) or not 0.0 <= request.structure_hold <= 1.0:
        raise InvalidRequestError(f"structure hold {request.structure_hold!r} must be between 0 and 1")
    if not _is_number(request.structure_bound) or not 0.0 <= request.structure_bound <= MAX_STRUCTURE_BOUND:
        raise InvalidRequestError(f"structure bound {request.structure_bound!r} must be between 0 and "
                                  f"{MAX_STRUCTURE_BOUND:g}")
    if (request.structure_scale or request.structure_hold or request.structure_bound) and request.init_image is None:
        raise InvalidRequestError("keeping structure (structure scale/hold/bound) needs an init image")
    if request.init_latents is not None:
        latents = request.init_latents
        if request.init_image is None:
            raise InvalidRequestError("init latents refine an init image: give both")
        shape = (request.height // 8, request.width // 8)
        if not isinstance(latents, np.ndarray) or latents.ndim != 3 or tuple(latents.shape[1:]) != shape \
                or not 1 <= latents.shape[0] <= 64:
            raise InvalidRequestError(f"init latents must be an array (C, {shape[0]}, {shape[1]}), got "
                                      f"{getattr(latents, 'shape', type(latents).__name__)}")
        if latents.dtype not in (np.float32, np.float64) or not np.isfinite(latents).all() \
                or np.abs(latents).max() > 1e4:
            raise InvalidRequestError("init latents must be finite float32/float64 values")
    if request.reference_image is not None:
        _check_reference(request.reference_image)
    if not _is_int(request.seed) or not 0 <= request.seed <= SEED_MAX:
        raise InvalidRequestError(f"seed {request.seed!r} must be a whole number between 0 and {SEED_MAX}")


def _check_reference(reference: Any) -> None:
    """A reference image must be uint8 (H, W, 3|4) (or a PIL image), each side 16…MAX_SIDE px."""
    if not (hasattr(reference, "convert") and hasattr(reference, "size")):
        array = np.asarray(reference) if isinstance(reference, np.ndarray) else None
        if array is None or array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] not in (3, 4):
            shape = f"{array.dtype} {array.shape}" if array is not None else type(reference).__name__
            raise InvalidRequestError(f"reference image must be uint8 (H, W, 3), got {shape}")
    height, width = as_rgb_array(reference).shape[:2]
    if not (16 <= width <= MAX_SIDE and 16 <= height <= MAX_SIDE):
        raise InvalidRequestError(f"reference image is {width}x{height}: each side must be between 16 and {MAX_SIDE}")
