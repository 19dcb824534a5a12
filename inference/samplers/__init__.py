"""Diffusion samplers as pure functions, numerically equal to diffusers' schedulers.

Typical use by a pipeline::

    config = SchedulerConfig.from_dict(json.load(open(folder / "scheduler/scheduler_config.json")))
    schedule = build_schedule("euler_a", config, steps=20, strength=1.0)
    model = make_denoiser(unet_fn, schedule.prediction_type)   # unet_fn(x_in, t) -> eps/v/x0
    x = schedule.initial_latents(noise)          # or schedule.noised_latents(clean, noise) for img2img
    x = sample("euler_a", model, x, schedule, generator=gen, callback=cb, should_stop=stop)
    latents_for_vae = schedule.output_latents(x)

Names: euler, euler_a, dpmpp_2m_karras, ddim, lcm (``SAMPLER_NAMES``).
"""
from inference.samplers.config import SAMPLER_NAMES, SPACINGS, SchedulerConfig
from inference.samplers.denoiser import Denoiser, UNetFn, make_denoiser
from inference.samplers.samplers import (
    SAMPLERS,
    noise_like,
    sample,
    sample_ddim,
    sample_dpmpp_2m,
    sample_euler,
    sample_euler_ancestral,
    sample_lcm,
)
from inference.samplers.schedules import Schedule, build_schedule

__all__ = [
    "SAMPLERS",
    "SAMPLER_NAMES",
    "SPACINGS",
    "Denoiser",
    "Schedule",
    "SchedulerConfig",
    "UNetFn",
    "build_schedule",
    "make_denoiser",
    "noise_like",
    "sample",
    "sample_ddim",
    "sample_dpmpp_2m",
    "sample_euler",
    "sample_euler_ancestral",
    "sample_lcm",
]
