"""Diffusion samplers as pure functions, numerically equal to diffusers' schedulers.

Typical use by a pipeline::

    config = SchedulerConfig.from_dict(json.load(open(folder / "scheduler/scheduler_config.json")))
    schedule = build_schedule("euler_a", config, steps=20, strength=1.0)
    model = make_denoiser(unet_fn, schedule.prediction_type, schedule)   # unet_fn(x_in, t) -> eps/v/x0
    x = schedule.initial_latents(noise)          # or schedule.noised_latents(clean, noise) for img2img
    x = sample("euler_a", model, x, schedule, generator=gen, callback=cb, should_stop=stop)
    latents_for_vae = schedule.output_latents(x)

Names: `inference.samplers.registry.SAMPLERS` (torch-free). Submodules load on first use, so
importing the registry never imports torch.
"""
from __future__ import annotations

from inference.lazy import lazy_exports

_EXPORTS = {
    "SAMPLER_NAMES": "config", "SPACINGS": "config", "SchedulerConfig": "config",
    "Denoiser": "denoiser", "UNetFn": "denoiser", "make_denoiser": "denoiser",
    "SAMPLERS": "samplers", "noise_like": "samplers", "sample": "samplers", "sample_ddim": "samplers",
    "sample_dpmpp_2m": "samplers", "sample_euler": "samplers", "sample_euler_ancestral": "samplers",
    "sample_lcm": "samplers", "sample_tcd": "samplers",
    "Schedule": "schedules", "TCD_DEFAULT_ETA": "schedules", "build_schedule": "schedules",
}

__getattr__ = lazy_exports(__name__, _EXPORTS)


__all__ = sorted(_EXPORTS)
