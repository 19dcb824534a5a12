"""Generation: txt2img, img2img and inpainting over a loaded `DiffusionModel`.

Random draws follow diffusers' pipelines, from one CPU generator, in this order:
img2img — VAE posterior sample of the init image, then the initial noise, then per-step noise;
inpaint — the init image's posterior sample (4-channel UNets or strength < 1), the initial
noise, the masked image's posterior sample, then per-step noise. So a seed gives the same
image here and in diffusers, on any device.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from .conditioning import Conditioning, PromptCache, build_conditioning
from .errors import InvalidRequestError
from .images import as_mask_array, as_rgb_array, mask_to_tensor, rgb_to_tensor, soft_paste_back, tensor_to_rgb
from .loader import DiffusionModel
from .models.taesd import TAESD
from .samplers import build_schedule, make_denoiser, sample

MAX_SIDE = 4096


@dataclass
class GenerationRequest:
    prompt: str
    negative_prompt: str = ""
    seed: int = 0
    steps: int = 20
    sampler: str = "euler"
    timestep_spacing: str | None = None
    guidance: float = 7.5
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

    def mode(self, unet_in_channels: int = 4) -> str:
        if self.mask is not None:
            return "inpaint"
        if self.init_image is None:
            return "txt2img"
        return "instruct" if unet_in_channels == 8 else "img2img"


@dataclass
class GenerationResult:
    image: np.ndarray  # uint8 (H, W, 3)
    seed: int
    latents: torch.Tensor | None = None
    info: dict = field(default_factory=dict)


ProgressCallback = Callable[[int, int, torch.Tensor | None], None]


def validate_request(request: GenerationRequest) -> None:
    for name in ("width", "height"):
        value = getattr(request, name)
        if not isinstance(value, int) or value < 8 or value > MAX_SIDE or value % 8:
            raise InvalidRequestError(f"{name} {value!r} must be a multiple of 8 between 8 and {MAX_SIDE}")
    if request.steps < 1 or request.steps > 1000:
        raise InvalidRequestError(f"steps {request.steps!r} must be between 1 and 1000")
    if not 0.0 <= request.guidance <= 100.0:
        raise InvalidRequestError(f"guidance {request.guidance!r} must be between 0 and 100")
    if not 0.0 < request.strength <= 1.0:
        raise InvalidRequestError(f"strength {request.strength!r} must be in (0, 1]")
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
    if not (0 <= request.seed < 2**64):
        raise InvalidRequestError(f"seed {request.seed!r} must be between 0 and 2^64-1")


def _posterior_sample(model: DiffusionModel, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Encode to scaled latents, sampling the posterior with the generator (diffusers' `retrieve_latents`)."""
    vae = model.vae
    if isinstance(vae, TAESD):  # deterministic encoder: no draw
        return vae.encode(image).float()
    mean, std = vae.encode_moments(image)
    noise = torch.randn(mean.shape, generator=generator, dtype=torch.float32).to(mean.device, mean.dtype)
    return vae.to_model_latents((mean + std * noise).float())


def decode_latents(model: DiffusionModel, latents: torch.Tensor) -> torch.Tensor:
    vae = model.vae
    if isinstance(vae, TAESD):
        return vae.decode(latents)
    return vae.decode(vae.from_model_latents(latents.float()))


class Pipeline:
    """Runs requests on one model, with a prompt-embedding cache shared between requests."""

    def __init__(self, model: DiffusionModel):
        self.model = model
        self.prompt_cache = PromptCache()

    def _unet_fn(self, cond: Conditioning, guidance: float, extra_channels: torch.Tensor | None):
        unet = self.model.unet

        def run(x_in: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
            batch = 2 if cond.guided else 1
            model_in = x_in.repeat(batch, 1, 1, 1) if batch > 1 else x_in
            if extra_channels is not None:
                model_in = torch.cat([model_in, extra_channels.repeat(batch, 1, 1, 1)], dim=1)
            t = torch.as_tensor(timestep, dtype=torch.float32, device=x_in.device).reshape(1).expand(batch)
            out = unet(model_in, t, cond.context, cond.y).float()
            if not cond.guided:
                return out
            uncond, text = out.chunk(2)
            return uncond + guidance * (text - uncond)

        return run

    def _instruct_unet_fn(self, cond: Conditioning, guidance: float, image_guidance: float,
                          image_latents: torch.Tensor):
        """InstructPix2Pix's two-scale guidance over a batch of (text+image, image only, neither)."""
        unet = self.model.unet
        guided = cond.guided and image_guidance >= 1.0
        if guided:
            negative, positive = cond.context.chunk(2)
            context = torch.cat([positive, negative, negative])
            image_in = torch.cat([image_latents, image_latents, torch.zeros_like(image_latents)])
        else:
            context = cond.context[-1:]
            image_in = image_latents

        def run(x_in: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
            batch = context.shape[0]
            model_in = torch.cat([x_in.repeat(batch, 1, 1, 1), image_in], dim=1)
            t = torch.as_tensor(timestep, dtype=torch.float32, device=x_in.device).reshape(1).expand(batch)
            out = unet(model_in, t, context, None).float()
            if not guided:
                return out
            text, image_only, uncond = out.chunk(3)
            return uncond + guidance * (text - image_only) + image_guidance * (image_only - uncond)

        return run

    @torch.inference_mode()
    def generate(self, request: GenerationRequest, progress: ProgressCallback | None = None,
                 should_stop: Callable[[], bool] | None = None, return_latents: bool = False) -> GenerationResult:
        validate_request(request)
        model = self.model
        device = model.device
        mode = request.mode(model.unet.config.in_channels)
        if model.unet.config.in_channels == 8 and mode != "instruct":
            raise InvalidRequestError(f"{model.name} is an InstructPix2Pix model: it edits an --init-image "
                                      "following the prompt, without a mask")
        strength = request.strength if mode in ("img2img", "inpaint") else 1.0
        schedule = build_schedule(request.sampler, model.scheduler_config, request.steps,
                                  spacing=request.timestep_spacing, strength=strength)
        generator = torch.Generator().manual_seed(request.seed)
        cond = build_conditioning(model, request.prompt, request.negative_prompt, request.guidance,
                                  request.height, request.width, self.prompt_cache)
        latent_shape = (1, model.latent_channels, request.height // 8, request.width // 8)
        unet_in = model.unet.config.in_channels
        extra_channels = None
        image_latents = mask_latent = change_latent = None
        original = None

        def draw_noise() -> torch.Tensor:
            return torch.randn(latent_shape, generator=generator, dtype=torch.float32).to(device)

        if mode == "txt2img":
            noise = draw_noise()
            x = schedule.initial_latents(noise)
        else:
            original = as_rgb_array(request.init_image)
            image = rgb_to_tensor(original, device, model.vae.dtype)
            if mode == "instruct":
                # InstructPix2Pix starts from pure noise; the image (posterior mode) rides along.
                extra_channels = _ip2p_image_latents(model, image)
                noise = draw_noise()
                x = schedule.initial_latents(noise)
            elif mode == "img2img":
                image_latents = _posterior_sample(model, image, generator)
                noise = draw_noise()
                x = schedule.noised_latents(image_latents, noise)
            else:
                mask_array = as_mask_array(request.mask)
                mask = mask_to_tensor(mask_array, device, torch.float32)
                full_strength = strength >= 1.0
                if unet_in == 4 or not full_strength or request.change_map is not None:
                    image_latents = _posterior_sample(model, image, generator)
                noise = draw_noise()
                x = schedule.initial_latents(noise) if full_strength else schedule.noised_latents(image_latents, noise)
                masked = image * (mask < 0.5).to(image.dtype)
                masked_latents = _posterior_sample(model, masked, generator)
                mask_latent = torch.nn.functional.interpolate(mask, size=latent_shape[2:])  # nearest, as diffusers
                if unet_in == 9:
                    extra_channels = torch.cat([mask_latent, masked_latents], dim=1)
                if request.change_map is not None:
                    change_latent = _latent_change_map(request.change_map, latent_shape[2:], device) * mask_latent

        if mode == "instruct":
            unet_fn = self._instruct_unet_fn(cond, request.guidance, request.image_guidance, extra_channels)
        else:
            unet_fn = self._unet_fn(cond, request.guidance, extra_channels)
        denoiser = make_denoiser(unet_fn, model.prediction_type)
        total = schedule.num_steps

        def on_step(i: int, x_new: torch.Tensor, denoised: torch.Tensor):
            replacement = None
            if mode == "inpaint" and (unet_in == 4 or change_latent is not None):
                # Latent blending: keep the known region on the sampler's noise trajectory.
                if i + 1 < total:
                    known = schedule.noised_latents(image_latents, noise, i + 1)
                else:
                    known = schedule.from_diffusers(image_latents, total)
                free = mask_latent
                if change_latent is not None:
                    # A cell that may change for the last share c of the steps is free once
                    # fewer than c·total steps are left.
                    free = (change_latent > 1 - (i + 1) / total).to(x_new.dtype)
                replacement = (1 - free) * known + free * x_new
            if progress is not None:
                progress(i + 1, total, denoised)
            return replacement

        x = sample(request.sampler, denoiser, x, schedule, generator=generator, callback=on_step,
                   should_stop=should_stop)
        latents = schedule.output_latents(x)
        rgb = tensor_to_rgb(decode_latents(model, latents))
        if mode == "inpaint" and request.paste_back:
            rgb = soft_paste_back(rgb, original, as_mask_array(request.mask), request.paste_feather)
        info = {"mode": mode, "steps_run": total}
        return GenerationResult(rgb, request.seed, latents if return_latents else None, info)


def _latent_change_map(change_map: np.ndarray, size: tuple[int, int], device: torch.device) -> torch.Tensor:
    """The change map at latent resolution: each cell takes the mean of its 8×8 pixels."""
    small = cv2.resize(np.asarray(change_map, np.float32), (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(small)[None, None].to(device)


def _ip2p_image_latents(model: DiffusionModel, image: torch.Tensor) -> torch.Tensor:
    """InstructPix2Pix conditions on the posterior mode of the input image (diffusers uses `.mode()`)."""
    vae = model.vae
    if isinstance(vae, TAESD):
        return vae.encode(image)
    mean, _ = vae.encode_moments(image)
    return mean.float()


def generate(model: DiffusionModel, request: GenerationRequest, **kwargs) -> GenerationResult:
    return Pipeline(model).generate(request, **kwargs)
