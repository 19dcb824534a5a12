"""Benchmark cases `flux-schnell-preview` (one-step img2img) and `flux-dev-final` (28-step txt2img).

Random weights (speed does not depend on the values), built on the meta device and filled on the
target device like the SD cases. Full size: the FLUX.1 transformer (12B) and its 16-channel VAE at
1024²; `--quick`: a tiny FLUX (same block types: a 2 + 4 block, 256-wide transformer and a
narrow 16-channel VAE) at 128² / 256² (the final case in 4 steps), so a CPU run takes seconds per
frame. The prompt encodings are put in the pipeline's cache beforehand (as for a live preview
re-rendering one prompt), so T5-XXL and CLIP are neither built nor timed.

`--compare diffusers`: the random weights are drawn into diffusers' FluxTransformer2DModel and
AutoencoderKL and converted into ours (the loader's own renames), so both engines run the same
model; diffusers' FluxImg2ImgPipeline / FluxPipeline get the same prompt encodings as
`prompt_embeds` (no text encoders there either), seed and settings. The case reports diffusers'
median, the ratio (diffusers ÷ ours) and the largest pixel difference between the two images.
"""
from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from . import convert
from .api import GenerationRequest
from .flux.config import FluxConfig
from .flux.convert import diffusers_to_bfl
from .flux.loader import FluxModel
from .flux.pipeline import FluxPipeline
from .flux.t5_tokenizer import DEV_MAX_LENGTH, SCHNELL_MAX_LENGTH
from .flux.transformer import FluxTransformer
from .models.vae import AutoencoderKL

FLUX_VAE = dict(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=16,
                scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False,
                sample_size=1024)
# As FLUX.1's scheduler_config.json: schnell a fixed shift of 1, dev the resolution-dependent one.
SCHNELL_SCHEDULER = {"base_image_seq_len": 256, "base_shift": 0.5, "max_image_seq_len": 4096, "max_shift": 1.15,
                     "num_train_timesteps": 1000, "shift": 1.0, "use_dynamic_shifting": False}
DEV_SCHEDULER = {**SCHNELL_SCHEDULER, "shift": 3.0, "use_dynamic_shifting": True}
QUICK = dict(hidden_size=256, num_heads=4, depth=2, depth_single_blocks=4, axes_dim=(16, 24, 24))
QUICK_VAE = {**FLUX_VAE, "block_out_channels": (32, 64, 128, 128), "layers_per_block": 1}

Builder = Callable[..., torch.nn.Module]


def flux_model(dev: bool, quick: bool, device: torch.device, dtype: torch.dtype, build: Builder) -> FluxModel:
    """A random-weight FluxModel without text encoders (see the module docstring); `build(factory,
    device, dtype, seed)` is the bench's meta-build-and-fill."""
    config = FluxConfig(guidance_embed=dev, **(QUICK if quick else {}))
    transformer = build(lambda: FluxTransformer(config), device, dtype, 0)
    vae_config = convert.vae_config_from_diffusers(QUICK_VAE if quick else FLUX_VAE)
    vae = build(lambda: AutoencoderKL(vae_config), device, dtype, 1)
    return FluxModel(name="flux1-dev" if dev else "flux1-schnell", path=Path("flux-bench"), transformer=transformer,
                     vae=vae, clip=None, clip_tokenizer=None, t5=None, t5_tokenizer=None,
                     scheduler_config=dict(DEV_SCHEDULER if dev else SCHNELL_SCHEDULER), dtype=dtype, device=device)


def _diffusers_transformer_config(config: FluxConfig) -> dict:
    """`FluxTransformer2DModel` keyword arguments for our config (the inverse of `from_diffusers`)."""
    return dict(patch_size=1, in_channels=config.in_channels, out_channels=config.out_channels,
                num_layers=config.depth, num_single_layers=config.depth_single_blocks,
                attention_head_dim=config.head_dim, num_attention_heads=config.num_heads,
                joint_attention_dim=config.context_in_dim, pooled_projection_dim=config.vec_in_dim,
                guidance_embeds=config.guidance_embed, axes_dims_rope=tuple(config.axes_dim))


def _adopt(reference: torch.nn.Module, factory: Callable[[], torch.nn.Module], state: dict) -> torch.nn.Module:
    """Our module holding `reference`'s weights (`state`: them under our names); tensors are
    shared where no fusing was needed, so the pair costs little more than one model."""
    with torch.device("meta"):
        ours = factory()
    ours.load_state_dict(state, strict=True, assign=True)
    return ours.to(device=next(reference.parameters()).device).eval().requires_grad_(False)


def _initialised(factory: Callable[[], torch.nn.Module], device, dtype, seed: int) -> torch.nn.Module:
    """A module with its default (seeded) initialisation, for the tiny --quick comparison; the
    0.02-scale random fill of `build` gives a near-flat image (every pixel within a few levels)."""
    torch.manual_seed(seed)
    return factory().to(device=device, dtype=dtype).eval().requires_grad_(False)


def flux_model_pair(dev: bool, quick: bool, device: torch.device, dtype: torch.dtype, build: Builder):
    """(our FluxModel, diffusers pipeline) on the same random weights, for `--compare diffusers`."""
    import diffusers

    config = FluxConfig(guidance_embed=dev, **(QUICK if quick else {}))
    if quick:  # the modules' own initialisation: a picture with contrast, so the pixel difference means something
        build = _initialised
    d_transformer = build(lambda: diffusers.FluxTransformer2DModel(**_diffusers_transformer_config(config)),
                          device, dtype, 0)
    transformer = _adopt(d_transformer, lambda: FluxTransformer(config),
                         diffusers_to_bfl(dict(d_transformer.state_dict()), config))
    d_vae = build(lambda: diffusers.AutoencoderKL(**(QUICK_VAE if quick else FLUX_VAE)), device, dtype, 1)
    vae_config = convert.vae_config_from_diffusers(d_vae.config)
    vae = _adopt(d_vae, lambda: AutoencoderKL(vae_config), convert.vae_diffusers_to_ldm(dict(d_vae.state_dict()),
                                                                                       vae_config))
    scheduler = dict(DEV_SCHEDULER if dev else SCHNELL_SCHEDULER)
    model = FluxModel(name="flux1-dev" if dev else "flux1-schnell", path=Path("flux-bench"), transformer=transformer,
                      vae=vae, clip=None, clip_tokenizer=None, t5=None, t5_tokenizer=None,
                      scheduler_config=scheduler, dtype=dtype, device=device)
    cls = diffusers.FluxPipeline if dev else diffusers.FluxImg2ImgPipeline
    pipe = cls(scheduler=diffusers.FlowMatchEulerDiscreteScheduler(**scheduler), vae=d_vae, text_encoder=None,
               tokenizer=None, text_encoder_2=None, tokenizer_2=None, transformer=d_transformer)
    pipe.set_progress_bar_config(disable=True)
    return model, pipe


def _compare(result, ours: np.ndarray, pipeline: FluxPipeline, request: GenerationRequest, pipe, extra: dict,
             device, runs: int, warmup: int, time_call):
    """Time diffusers' pipeline on the same request and record the ratio and the pixel difference."""
    config = pipeline.model.transformer.config
    length = DEV_MAX_LENGTH if config.guidance_embed else SCHNELL_MAX_LENGTH
    states, pooled = pipeline._prompt_cache[(request.prompt, length)]
    outputs: list[np.ndarray] = []

    def run() -> None:
        images = pipe(prompt_embeds=states, pooled_prompt_embeds=pooled, height=request.height, width=request.width,
                      num_inference_steps=request.steps, guidance_scale=request.guidance,
                      generator=torch.Generator().manual_seed(request.seed), output_type="np", **extra).images
        outputs[:] = [(images[0] * 255).round().astype(np.uint8)]  # diffusers' own numpy_to_pil rounding

    times = time_call(run, device, runs, warmup)
    result.diffusers_median_ms = statistics.median(times)
    result.ratio_vs_diffusers = result.diffusers_median_ms / result.median_ms
    result.max_pixel_diff = int(np.abs(ours.astype(np.int16) - outputs[0].astype(np.int16)).max())
    return result


def _pipeline(model: FluxModel, prompt: str) -> FluxPipeline:
    pipeline = FluxPipeline(model)
    config = model.transformer.config
    length = DEV_MAX_LENGTH if config.guidance_embed else SCHNELL_MAX_LENGTH
    generator = torch.Generator().manual_seed(0)
    states = torch.randn(1, length, config.context_in_dim, generator=generator).to(model.device, model.dtype)
    pooled = torch.randn(1, config.vec_in_dim, generator=generator).to(model.device, model.dtype)
    pipeline._prompt_cache[(prompt, length)] = (states, pooled)
    return pipeline


def bench_flux_preview(quick: bool, device, dtype, runs: int, warmup: int, time_call, make_result, build,
                       compare: bool = False):
    size = 128 if quick else 1024
    model, pipe = flux_model_pair(False, quick, device, dtype, build) if compare else (
        flux_model(False, quick, device, dtype, build), None)
    rng = np.random.default_rng(0)
    # One transformer pass: 2 steps at strength 0.5 skip the first, as the SD preview cases.
    request = GenerationRequest(prompt="a photo of a cat", seed=1, steps=2, guidance=0.0, width=size, height=size,
                                init_image=rng.integers(0, 255, (size, size, 3), dtype=np.uint8), strength=0.5)
    pipeline = _pipeline(model, request.prompt)
    images: list[np.ndarray] = []  # the last timed image, for --compare
    times = time_call(lambda: images.append(pipeline.generate(request).image), device, runs, warmup)
    result = make_result("flux-schnell-preview", size, 1, times,
                         "1-step img2img (strength 0.5 of 2 steps), 16-channel VAE encode+decode, prompt cached"
                         + (", tiny quick FLUX" if quick else ""))
    if pipe is None:
        return result
    from PIL import Image

    extra = dict(image=Image.fromarray(request.init_image), strength=request.strength)
    return _compare(result, images[-1], pipeline, request, pipe, extra, device, runs, warmup, time_call)


def bench_flux_final(quick: bool, device, dtype, runs: int, warmup: int, time_call, make_result, build,
                     compare: bool = False):
    # --quick: 4 steps (the SD quick cases run 2) keep a CPU run, with diffusers beside it, within a minute.
    size, steps = (256, 4) if quick else (1024, 28)
    model, pipe = flux_model_pair(True, quick, device, dtype, build) if compare else (
        flux_model(True, quick, device, dtype, build), None)
    request = GenerationRequest(prompt="a castle on a hill", seed=1, steps=steps, guidance=3.5, width=size,
                                height=size)
    pipeline = _pipeline(model, request.prompt)
    images: list[np.ndarray] = []  # the last timed image, for --compare
    times = time_call(lambda: images.append(pipeline.generate(request).image), device, runs, warmup)
    result = make_result("flux-dev-final", size, steps, times,
                         f"{steps}-step txt2img, guidance embedded (one pass per step), VAE decode, prompt cached"
                         + (", tiny quick FLUX" if quick else ""))
    return result if pipe is None else _compare(result, images[-1], pipeline, request, pipe, {}, device, runs, warmup,
                                                time_call)
