"""Generation: txt2img, img2img and inpainting over a loaded `DiffusionModel`.

Random draws follow diffusers' pipelines, from one CPU generator, in this order:
img2img — VAE posterior sample of the init image, then the initial noise, then per-step noise;
inpaint — the init image's posterior sample (4-channel UNets or strength < 1), the initial
noise, the masked image's posterior sample, then per-step noise. So a seed gives the same
image here and in diffusers, on any device.
"""
from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import torch

from .api import GenerationRequest, GenerationResult, validate_request  # noqa: F401 - re-exported
from .conditioning import Conditioning, PromptCache, build_conditioning, guidance_embedding
from .errors import InvalidRequestError
from .guards import check_finite
from .structure import applies, bound_change, keep_structure
from .api import as_mask_array, as_rgb_array
from .images import mask_to_tensor, rgb_to_tensor, soft_paste_back, tensor_to_rgb
from .loader import DiffusionModel
from .models.taesd import TAESD
from .samplers import build_schedule, make_denoiser, sample

ProgressCallback = Callable[[int, int, torch.Tensor | None], None]


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

    def _unet_fn(self, cond: Conditioning, guidance: float, extra_channels: torch.Tensor | None,
                 rescale: float = 0.0, timestep_cond: torch.Tensor | None = None):
        unet = self.model.unet

        def run(x_in: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
            batch = 2 if cond.guided else 1
            model_in = x_in.repeat(batch, 1, 1, 1) if batch > 1 else x_in
            if extra_channels is not None:
                model_in = torch.cat([model_in, extra_channels.repeat(batch, 1, 1, 1)], dim=1)
            t = torch.as_tensor(timestep, dtype=torch.float32, device=x_in.device).reshape(1).expand(batch)
            out = unet(model_in, t, cond.context, cond.y, timestep_cond).float()
            if not cond.guided:
                return out
            uncond, text = out.chunk(2)
            guided = uncond + guidance * (text - uncond)
            return _rescale_guidance(guided, text, rescale) if rescale > 0 else guided

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
                                  spacing=request.timestep_spacing, strength=strength,
                                  **({"eta": request.tcd_gamma} if request.sampler == "tcd" else {}))
        generator = torch.Generator().manual_seed(request.seed)
        guidance_dim = model.unet.config.time_cond_proj_dim
        # LCM UNets take the guidance scale as an embedding and run without a CFG pass (diffusers
        # then ignores the negative prompt).
        timestep_cond = guidance_embedding(request.guidance, guidance_dim).to(device) if guidance_dim else None
        cond = build_conditioning(model, request.prompt, request.negative_prompt,
                                  0.0 if guidance_dim else request.guidance,
                                  request.height, request.width, self.prompt_cache)
        latent_shape = (1, model.latent_channels, request.height // 8, request.width // 8)
        unet_in = model.unet.config.in_channels
        extra_channels = None
        image_latents = mask_latent = change_latent = None
        original = None

        given_latents = None
        if request.init_latents is not None:
            given_latents = torch.from_numpy(np.asarray(request.init_latents, np.float32))[None].to(device)
            if tuple(given_latents.shape) != latent_shape:
                raise InvalidRequestError(f"init latents have shape {tuple(request.init_latents.shape)}; "
                                          f"{model.name} needs {latent_shape[1:]}")

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
                image_latents = given_latents if given_latents is not None else _posterior_sample(
                    model, image, generator)
                noise = draw_noise()
                x = schedule.noised_latents(image_latents, noise)
            else:
                mask_array = as_mask_array(request.mask)
                mask = mask_to_tensor(mask_array, device, torch.float32)
                full_strength = strength >= 1.0
                if given_latents is not None:
                    image_latents = given_latents
                elif unet_in == 4 or not full_strength or request.change_map is not None:
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
            unet_fn = self._unet_fn(cond, request.guidance, extra_channels, request.guidance_rescale, timestep_cond)
        denoiser = make_denoiser(unet_fn, model.prediction_type, schedule)
        total = schedule.num_steps

        # ILVR needs the init image's latents on the same noise trajectory (img2img/inpaint only).
        structure = (request.structure_scale > 0 or request.structure_hold > 0
                     or request.structure_bound > 0) and mode in ("img2img", "inpaint")
        if structure and image_latents is None:
            image_latents = _posterior_sample(model, image, generator)
        if structure and request.structure_bound > 0:
            # Denoised estimates are clean latents on every schedule: the reference is the init's own.
            denoiser = _bounded_denoiser(denoiser, image_latents, request.structure_bound)

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
            scale = 1 if applies(i, total, request.structure_hold) else request.structure_scale
            if structure and scale:
                reference = (schedule.noised_latents(image_latents, noise, i + 1) if i + 1 < total
                             else schedule.from_diffusers(image_latents, total))
                replacement = keep_structure(x_new if replacement is None else replacement, reference, scale)
            if progress is not None:
                progress(i + 1, total, denoised)
            return replacement

        x = sample(request.sampler, denoiser, x, schedule, generator=generator, callback=on_step,
                   should_stop=should_stop)
        latents = schedule.output_latents(x)
        # A NaN here would become an all-black PNG with exit 0; say what happened instead.
        check_finite(latents, "latents", "try float32, another sampler, or lower guidance")
        decoded = decode_latents(model, latents)
        check_finite(decoded, "decoded image", "try float32 or another VAE (SDXL's VAE overflows in float16)")
        rgb = tensor_to_rgb(decoded)
        if mode == "inpaint" and request.paste_back:
            rgb = soft_paste_back(rgb, original, as_mask_array(request.mask), request.paste_feather)
        info = {"mode": mode, "steps_run": total}
        return GenerationResult(rgb, request.seed, latents if return_latents else None, info)


def _bounded_denoiser(denoiser, reference: torch.Tensor, bound: float):
    """The denoiser with every estimate kept within ``bound`` per latent cell of ``reference`` (the
    init image's clean latents): a refine may sharpen a cell, not repaint it."""
    def model(x: torch.Tensor, sigma: float, timestep: float) -> torch.Tensor:
        return bound_change(denoiser(x, sigma, timestep), reference.to(x.dtype), bound)

    if hasattr(denoiser, "preconditioning"):  # the samplers check it against the schedule
        model.preconditioning = denoiser.preconditioning  # type: ignore[attr-defined]
    return model


def _rescale_guidance(guided: torch.Tensor, text: torch.Tensor, rescale: float) -> torch.Tensor:
    """Rescaled CFG (Lin et al. 2023, diffusers' `rescale_noise_cfg`): pull the guided prediction's
    per-sample std back to the text prediction's, which keeps zero-terminal-SNR models from
    over-exposing; `rescale` mixes the rescaled and the plain guided prediction."""
    dims = list(range(1, text.ndim))
    std_text = text.std(dim=dims, keepdim=True)
    std_guided = guided.std(dim=dims, keepdim=True)
    return rescale * (guided * (std_text / std_guided)) + (1 - rescale) * guided


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
