"""Benchmark cases `flux-schnell-preview` (one-step img2img) and `flux-dev-final` (28-step txt2img).

Random weights (speed does not depend on the values), built on the meta device and filled on the
target device like the SD cases. Full size: the FLUX.1 transformer (12B) and its 16-channel VAE at
1024²; `--quick`: a tiny FLUX (same block types: a 2 + 4 block, 256-wide transformer and a
narrow 16-channel VAE) at 128² / 256², so a CPU run takes seconds per frame. The prompt encodings are put in the pipeline's cache beforehand (as for a live
preview re-rendering one prompt), so T5-XXL and CLIP are neither built nor timed. No diffusers
comparison: its FluxPipeline would need the 4.7B T5 built as well.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from . import convert
from .api import GenerationRequest
from .flux.config import FluxConfig
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


def _pipeline(model: FluxModel, prompt: str) -> FluxPipeline:
    pipeline = FluxPipeline(model)
    config = model.transformer.config
    length = DEV_MAX_LENGTH if config.guidance_embed else SCHNELL_MAX_LENGTH
    generator = torch.Generator().manual_seed(0)
    states = torch.randn(1, length, config.context_in_dim, generator=generator).to(model.device, model.dtype)
    pooled = torch.randn(1, config.vec_in_dim, generator=generator).to(model.device, model.dtype)
    pipeline._prompt_cache[(prompt, length)] = (states, pooled)
    return pipeline


def bench_flux_preview(quick: bool, device, dtype, runs: int, warmup: int, time_call, make_result, build):
    size = 128 if quick else 1024
    model = flux_model(False, quick, device, dtype, build)
    rng = np.random.default_rng(0)
    # One transformer pass: 2 steps at strength 0.5 skip the first, as the SD preview cases.
    request = GenerationRequest(prompt="a photo of a cat", seed=1, steps=2, guidance=0.0, width=size, height=size,
                                init_image=rng.integers(0, 255, (size, size, 3), dtype=np.uint8), strength=0.5)
    pipeline = _pipeline(model, request.prompt)
    times = time_call(lambda: pipeline.generate(request), device, runs, warmup)
    return make_result("flux-schnell-preview", size, 1, times,
                       "1-step img2img (strength 0.5 of 2 steps), 16-channel VAE encode+decode, prompt cached"
                       + (", tiny quick FLUX" if quick else ""))


def bench_flux_final(quick: bool, device, dtype, runs: int, warmup: int, time_call, make_result, build):
    size, steps = (256, 28) if quick else (1024, 28)
    model = flux_model(True, quick, device, dtype, build)
    request = GenerationRequest(prompt="a castle on a hill", seed=1, steps=steps, guidance=3.5, width=size,
                                height=size)
    pipeline = _pipeline(model, request.prompt)
    times = time_call(lambda: pipeline.generate(request), device, runs, warmup)
    return make_result("flux-dev-final", size, steps, times,
                       "28-step txt2img, guidance embedded (one pass per step), VAE decode, prompt cached"
                       + (", tiny quick FLUX" if quick else ""))
