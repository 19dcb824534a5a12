"""FLUX.1 generation: txt2img, img2img and inpainting over a loaded `FluxModel`, seed-equal to
diffusers' FluxPipeline / FluxImg2ImgPipeline / FluxInpaintPipeline.

Random draws follow diffusers from one CPU generator: txt2img — the initial noise (B, 16, H/8,
W/8), drawn unpacked and then packed; img2img and inpainting — the VAE posterior sample of the
init image, then that noise (diffusers' inpainting then samples the masked image's posterior,
which a 64-channel transformer never uses: we skip that encode, no later draw depends on it).
Schnell-like models (no guidance input) ignore the guidance value; dev-like ones embed it
(diffusers' default is 3.5). Both are guidance-distilled: the negative prompt is used only with
`true_cfg` > 1 (real classifier-free guidance, two passes per step).

Variants (`flux_variant`): Fill models (FluxFillPipeline) inpaint and outpaint only, conditioned
on the masked image and the mask (`fill`), without latent blending; their draws are the init
image's posterior, the noise, then the masked image's posterior. Kontext models
(FluxKontextPipeline) take `request.reference_image` as extra image tokens (`kontext`; no draw)
and otherwise run like dev — without a reference, plain txt2img as diffusers' Kontext with
image=None.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..api import GenerationRequest, GenerationResult, as_mask_array, as_rgb_array
from ..errors import InvalidRequestError, UnsupportedModelError
from ..images import mask_to_tensor, rgb_to_tensor, soft_paste_back, tensor_to_rgb
from ..requests import validate_request
from ..tokenizer import tokenize
from .fill import fill_conditioning
from .info import flux_variant, read_json
from .kontext import reference_size, reference_tokens, resize_reference
from .loader import FluxModel
from .residency import Residency
from .sampling import (
    euler,
    flow_schedule,
    image_ids,
    pack_latents,
    text_ids,
    unpack_latents,
)

ProgressCallback = Callable[[int, int, torch.Tensor | None], None]


class FluxPipeline:
    """Runs requests on one FLUX model; caches the latest prompts' encodings (the live preview
    re-renders one prompt many times, and T5-XXL is the slowest text encoder we run)."""

    def __init__(self, model: FluxModel, reference_auto_resize: bool = True, residency: Residency | None = None):
        self.model = model
        # Which components are on the device (`residency.py`); the default, without a budget,
        # leaves them where the loader put them.
        self.residency = residency or Residency(model, model.device, None)
        self._prompt_cache: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self.variant = model_variant(model)
        # Kontext: resize the reference to the nearest preferred Kontext resolution (diffusers' default).
        self.reference_auto_resize = reference_auto_resize
        # The latest reference's tokens: the live preview re-renders one canvas, a ~1 MP VAE encode each time.
        self._reference_cache: tuple[tuple, tuple[torch.Tensor, torch.Tensor]] | None = None

    def encode_prompt(self, prompt: str, max_length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """→ (T5 last hidden state (1, T, 4096), CLIP pooled (1, 768)) in the model dtype."""
        model = self.model
        max_length = max_length or model.max_sequence_length
        key = (prompt, max_length)
        cached = self._prompt_cache.get(key)
        if cached is not None:
            return cached
        device = model.device
        clip_ids = tokenize(model.clip_tokenizer, prompt).to(device)  # (1, 77), SOT … EOT pad
        with self.residency.use("clip"):
            pooled = model.clip(clip_ids).pooled
        t5_ids = model.t5_tokenizer(prompt, max_length).to(device)
        with self.residency.use("t5"):
            states = model.t5(t5_ids)
        # A few entries (prompt and negative prompt, the previous pair): prompts change as the user types.
        self._prompt_cache[key] = (states, pooled)
        while len(self._prompt_cache) > 4:
            self._prompt_cache.pop(next(iter(self._prompt_cache)))
        return states, pooled

    def _check(self, request: GenerationRequest) -> None:
        validate_request(request)
        if (request.init_latents is not None or request.structure_scale or request.structure_hold
                or request.structure_bound):
            # The SD pipeline's latent refine (inference/structure.py) is not built for packed FLUX
            # latents: refused, never silently ignored.
            raise InvalidRequestError(f"{self.model.name}: init latents and structure keeping are not supported "
                                      "for FLUX yet; give an init image")
        multiple = 2 * self.model.vae_scale
        for name in ("width", "height"):
            if getattr(request, name) % multiple:
                raise InvalidRequestError(f"{name} {getattr(request, name)} must be a multiple of {multiple} "
                                          "for FLUX (8× VAE, 2×2 patches)")
        in_channels, packed = self.model.transformer.config.in_channels, 4 * self.model.latent_channels
        if self.variant != "fill" and in_channels != packed:  # e.g. Canny/Depth control models (128)
            raise UnsupportedModelError(f"{self.model.name}: a FLUX transformer with {in_channels} input channels "
                                        f"(not {packed}, nor Fill's) is not supported")
        if self.variant == "fill" and request.mask is None:
            raise InvalidRequestError(f"{self.model.name} is a FLUX Fill model: it needs an init image and a mask "
                                      "(inpaint or outpaint)")
        if request.reference_image is not None and self.variant != "kontext":
            raise InvalidRequestError(f"reference image given, but {self.model.name} is not a FLUX Kontext model")

    def _posterior_sample(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Scaled latents of an image, sampling the VAE posterior (diffusers' `retrieve_latents`)."""
        with self.residency.use("vae"):
            vae = self.model.vae
            mean, std = vae.encode_moments(image)
            draw = torch.randn(mean.shape, generator=generator, dtype=torch.float32).to(mean.device, mean.dtype)
            return vae.to_model_latents((mean + std * draw).float())

    @torch.inference_mode()
    def generate(self, request: GenerationRequest, progress: ProgressCallback | None = None,
                 should_stop: Callable[[], bool] | None = None, return_latents: bool = False,
                 max_sequence_length: int | None = None, true_cfg: float = 1.0) -> GenerationResult:
        """txt2img, img2img (init image) or inpainting (init image + mask, latent blending as
        diffusers' FluxInpaintPipeline: the unmasked latents are put back on the noise trajectory
        after every step). `true_cfg` > 1 runs real classifier-free guidance against the negative
        prompt (diffusers' `true_cfg_scale`; two transformer passes per step) — the guidance-
        distilled models are not trained for it, de-distilled fine-tunes are. Fill models inpaint
        and outpaint on their own conditioning; Kontext models add `request.reference_image`."""
        self._check(request)
        model = self.model
        device, dtype = model.device, model.dtype
        mode = "txt2img" if request.init_image is None else "img2img" if request.mask is None else "inpaint"
        fill = self.variant == "fill"
        rows, cols = request.height // model.vae_scale, request.width // model.vae_scale  # latent size
        seq_len = (rows // 2) * (cols // 2)
        schedule = flow_schedule(model.scheduler_config, request.steps, seq_len,
                                 strength=request.strength if mode != "txt2img" else 1.0)
        generator = torch.Generator().manual_seed(request.seed)
        txt, pooled = self.encode_prompt(request.prompt, max_sequence_length)
        shape = (1, model.latent_channels, rows, cols)
        original = image_latents = None
        if mode == "txt2img":
            noise = torch.randn(shape, generator=generator, dtype=torch.float32).to(device)
            x = noise
        else:
            original = as_rgb_array(request.init_image)
            image_latents = self._posterior_sample(rgb_to_tensor(original, device, model.vae.dtype), generator)
            noise = torch.randn(shape, generator=generator, dtype=torch.float32).to(device)
            x = schedule.noised(image_latents, noise)
        x = pack_latents(x)
        # Extra transformer input: Fill's conditioning channels, Kontext's reference tokens.
        channels = tokens = None
        if fill:
            mask = mask_to_tensor(as_mask_array(request.mask), device, torch.float32)
            channels = fill_conditioning(rgb_to_tensor(original, device, torch.float32), mask,
                                         lambda image: self._posterior_sample(image.to(model.vae.dtype), generator),
                                         model.vae_scale).to(dtype)
        blend = (_Blend(request, schedule, image_latents, noise, rows, cols, device)
                 if mode == "inpaint" and not fill else None)
        img_pos = image_ids(rows // 2, cols // 2).to(device)
        if request.reference_image is not None:
            tokens, ref_pos = self._reference(request.reference_image)
            img_pos = torch.cat((img_pos, ref_pos.to(device)), dim=0)
        txt_pos = text_ids(txt.shape[1]).to(device)
        guidance = (torch.full((1,), float(request.guidance), device=device)
                    if model.guidance_embed else None)

        negative = self.encode_prompt(request.negative_prompt, max_sequence_length) if true_cfg > 1 else None

        def model_input(x_in: torch.Tensor) -> torch.Tensor:
            x_in = x_in.to(dtype)
            if channels is not None:
                x_in = torch.cat((x_in, channels), dim=2)
            return x_in if tokens is None else torch.cat((x_in, tokens), dim=1)

        def velocity(x_in: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            # Only the generated tokens' velocity: Kontext's reference tokens come after them.
            x_in = model_input(x_in)
            v = model.transformer(x_in, img_pos, txt, txt_pos, sigma.to(device), pooled, guidance)[:, :seq_len]
            if negative is None:
                return v
            v_neg = model.transformer(x_in, img_pos, negative[0], txt_pos, sigma.to(device), negative[1],
                                      guidance)[:, :seq_len]
            return v_neg + true_cfg * (v - v_neg)

        total = schedule.num_steps

        def on_step(i: int, x_new: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor | None:
            if progress is not None:  # unpacked x₀ estimate: the engine's preview decodes it
                progress(i + 1, total, unpack_latents(denoised, rows, cols))
            return blend(i, x_new) if blend is not None else None

        with self.residency.use("transformer"):
            x = euler(velocity, x, schedule, on_step, should_stop)
        latents = unpack_latents(x, rows, cols)
        with self.residency.use("vae"):
            rgb = tensor_to_rgb(model.vae.decode(model.vae.from_model_latents(latents.float())))
        if mode == "inpaint" and request.paste_back:
            rgb = soft_paste_back(rgb, original, as_mask_array(request.mask), request.paste_feather)
        # The request's sampler does not apply (flow-matching Euler); the negative prompt only with true_cfg.
        info = {"mode": mode, "steps_run": total, "family": "flux", "sampler": "flow_euler", "true_cfg": true_cfg,
                "variant": self.variant}
        if fill and request.change_map is not None:
            info["change_map"] = "ignored: FLUX Fill conditions on the mask and does not blend latents"
        if tokens is not None:
            info["reference_size"] = self._reference_size(request.reference_image)
        return GenerationResult(rgb, request.seed, latents if return_latents else None, info)

    def _reference_size(self, reference) -> tuple[int, int]:
        height, width = as_rgb_array(reference).shape[:2]
        return reference_size(width, height, 2 * self.model.vae_scale, self.reference_auto_resize)

    def _reference(self, reference) -> tuple[torch.Tensor, torch.Tensor]:
        """Kontext's reference tokens and position ids: resized as diffusers, encoded to the
        posterior mean (diffusers' sample_mode="argmax": no draw from the generator)."""
        model = self.model
        rgb = np.ascontiguousarray(as_rgb_array(reference))
        width, height = self._reference_size(rgb)
        key = (rgb.shape, width, height, hashlib.blake2b(rgb.data, digest_size=16).digest())
        if self._reference_cache is not None and self._reference_cache[0] == key:
            return self._reference_cache[1]
        rgb = resize_reference(rgb, width, height)
        with self.residency.use("vae"):
            mean, _ = model.vae.encode_moments(rgb_to_tensor(rgb, model.device, model.vae.dtype))
        tokens, positions = reference_tokens(model.vae.to_model_latents(mean.float()))
        self._reference_cache = (key, (tokens.to(model.dtype), positions))
        return self._reference_cache[1]


def model_variant(model: FluxModel) -> str:
    """"fill", "kontext" or "base" for a loaded model: what the loader found out (`model.variant`, e.g.
    a single file named …kontext…), else Fill by its transformer's input width and Kontext by its
    folder's model_index.json (a Kontext transformer is shaped like dev's)."""
    known = getattr(model, "variant", None)
    if known:
        return known
    index = Path(model.path) / "model_index.json"
    class_name = read_json(index).get("_class_name") if index.is_file() else None
    return flux_variant(class_name, model.transformer.config.in_channels, model.latent_channels, model.vae_scale)


class _Blend:
    """Inpainting's latent blending in packed form. After step i the known region is the init
    image's latents noised to the next σ (no noise after the last step); the mask, binarised
    at 0.5 and shrunk to the latent grid by nearest neighbour, frees the rest. With a
    `change_map` (soft outpaint seams) a cell is freed only once fewer than c·total steps are
    left, c being its mean change value, as in the SD pipeline."""

    def __init__(self, request: GenerationRequest, schedule, image_latents: torch.Tensor, noise: torch.Tensor,
                 rows: int, cols: int, device: torch.device):
        self.schedule, self.total = schedule, schedule.num_steps
        self.image_latents, self.noise = image_latents, noise
        channels = image_latents.shape[1]
        mask = mask_to_tensor(as_mask_array(request.mask), device, torch.float32)  # (1, 1, H, W)
        mask_latent = F.interpolate(mask, size=(rows, cols))  # nearest, as diffusers
        self.free = pack_latents(mask_latent.repeat(1, channels, 1, 1))
        self.change = None
        if request.change_map is not None:
            small = cv2.resize(np.asarray(request.change_map, np.float32), (cols, rows), interpolation=cv2.INTER_AREA)
            change = torch.from_numpy(small)[None, None].to(device) * mask_latent
            self.change = pack_latents(change.repeat(1, channels, 1, 1))

    def __call__(self, i: int, x: torch.Tensor) -> torch.Tensor:
        index = self.schedule.start + i + 1
        if index < len(self.schedule.timesteps):
            known = self.schedule.noised(self.image_latents, self.noise, index)
        else:
            known = self.image_latents
        free = self.free
        if self.change is not None:
            free = (self.change > 1 - (i + 1) / self.total).to(x.dtype)
        return (1 - free) * pack_latents(known) + free * x
