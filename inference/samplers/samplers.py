"""Samplers as pure functions over (model, x, schedule), k-diffusion style.

Each ``sample_*(model, x, schedule, *, generator=None, callback=None, should_stop=None) -> Tensor``
takes the VE latent ``x`` at ``schedule.sigmas[0]`` and returns the VE latent at
``schedule.sigmas[-1]``; the pipeline then calls ``schedule.output_latents`` for the VAE.

* ``model(x, sigma, timestep) -> denoised`` is an x0 predictor (see ``denoiser.make_denoiser``).
* ``generator``: per-step noise (Euler-a, LCM, TCD) is drawn as
  ``torch.randn(x.shape, generator=generator, dtype=float32, device="cpu")`` and moved to x's
  device, so a CPU generator gives the same draws, in the same order and shape, as diffusers'
  ``randn_tensor`` on any device (a float16/bfloat16 randn on CPU equals the float32 one cast).
  A generator on another device draws there instead.
* ``callback(step_index, x, denoised)`` runs after each step with the new latent; a returned
  tensor replaces x (inpainting blends known latents, re-noised to ``schedule.sigmas[i+1]``).
* ``should_stop()`` is polled before every step; True raises ``CancelledError``.

All schedule constants are Python floats computed before the loop: no host-device syncs.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from inference.errors import CancelledError, InvalidRequestError
from inference.samplers.config import check_sampler_name
from inference.samplers.denoiser import Denoiser
from inference.samplers.schedules import Schedule

Callback = Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor | None]
ShouldStop = Callable[[], bool]
Sampler = Callable[..., torch.Tensor]


def _expect(model: Denoiser, schedule: Schedule, name: str) -> None:
    # A schedule is one diffusers scheduler's; another sampler would silently diverge from it.
    if schedule.sampler != name:
        raise InvalidRequestError(f"schedule was built for sampler {schedule.sampler!r}, not {name!r}")
    # An EDM schedule with a VP denoiser (or the reverse) gives noise, not an image.
    wanted = "vp" if schedule.edm_sigma_data is None else "edm"
    have = getattr(model, "preconditioning", wanted)  # a bare callable is trusted
    if have != wanted:
        raise InvalidRequestError(f"the denoiser is {have.upper()}-preconditioned but the schedule is "
                                  f"{wanted.upper()}: build it with make_denoiser(unet_fn, prediction_type, schedule)")


def _check_stop(should_stop: ShouldStop | None, step: int, total: int) -> None:
    if should_stop is not None and should_stop():
        raise CancelledError(f"sampling cancelled before step {step + 1} of {total}")


def _after_step(
    callback: Callback | None, step: int, x: torch.Tensor, denoised: torch.Tensor
) -> torch.Tensor:
    if callback is None:
        return x
    replacement = callback(step, x, denoised)
    return x if replacement is None else replacement


def noise_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One standard-normal draw shaped like x, reproducible from a CPU generator on any device."""
    if generator is not None and generator.device.type != "cpu":
        noise = torch.randn(x.shape, generator=generator, dtype=torch.float32, device=generator.device)
        return noise.to(x.device, x.dtype)
    noise = torch.randn(x.shape, generator=generator, dtype=torch.float32, device="cpu")
    if x.device.type == "cuda":
        # Pinned + non_blocking: the upload queues on the stream instead of stalling the host.
        return noise.pin_memory().to(x.device, x.dtype, non_blocking=True)
    return noise.to(x.device, x.dtype)


def _postprocess_x0(schedule: Schedule, x0: torch.Tensor) -> torch.Tensor:
    """DDIM/LCM/DPM clip_sample or dynamic thresholding (Saharia et al. 2022) of x0."""
    if schedule.x0_threshold is not None:
        ratio, max_value = schedule.x0_threshold
        flat = x0.reshape(x0.shape[0], -1)
        s = torch.quantile(flat.abs().float(), ratio, dim=1).clamp(min=1, max=max_value).unsqueeze(1)
        return (torch.clamp(flat, -s, s) / s).reshape(x0.shape).to(x0.dtype)
    if schedule.x0_clip is not None:
        return x0.clamp(-schedule.x0_clip, schedule.x0_clip)
    return x0


@torch.no_grad()
def sample_euler(
    model: Denoiser,
    x: torch.Tensor,
    schedule: Schedule,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    should_stop: ShouldStop | None = None,
) -> torch.Tensor:
    """Euler's method on the probability-flow ODE (Karras et al. 2022, alg. 2 without churn)."""
    _expect(model, schedule, "euler")
    sigmas, timesteps, n = schedule.sigma_values, schedule.timestep_values, schedule.num_steps
    for i in range(n):
        _check_stop(should_stop, i, n)
        denoised = model(x, sigmas[i], timesteps[i])
        d = (x - denoised) / sigmas[i]
        x = x + d * (sigmas[i + 1] - sigmas[i])
        x = _after_step(callback, i, x, denoised)
    return x


@torch.no_grad()
def sample_euler_ancestral(
    model: Denoiser,
    x: torch.Tensor,
    schedule: Schedule,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    should_stop: ShouldStop | None = None,
) -> torch.Tensor:
    """Ancestral Euler: step down to sigma_down deterministically, then add sigma_up of noise."""
    _expect(model, schedule, "euler_a")
    sigmas, timesteps, n = schedule.sigma_values, schedule.timestep_values, schedule.num_steps
    ups, downs = [], []
    for s, s_next in zip(sigmas[:-1], sigmas[1:], strict=True):
        up = math.sqrt(s_next**2 * (s**2 - s_next**2) / s**2)
        ups.append(up)
        downs.append(math.sqrt(max(s_next**2 - up**2, 0.0)))
    for i in range(n):
        _check_stop(should_stop, i, n)
        denoised = model(x, sigmas[i], timesteps[i])
        d = (x - denoised) / sigmas[i]
        x = x + d * (downs[i] - sigmas[i])
        # diffusers draws every step, the last (sigma_up = 0) included: keep the generator in step.
        x = x + noise_like(x, generator) * ups[i]
        x = _after_step(callback, i, x, denoised)
    return x


def _dpm_coefficients(schedule: Schedule) -> list[tuple[float, float, float]]:
    """Per step (c_x, c_d, c_diff): x_next = c_x * x + c_d * D + c_diff * (D - D_prev).

    DPM-Solver++(2M) (Lu et al. 2022) in VE terms, where lambda = -log(sigma) and
    h = log(sigma / sigma_next); first-order steps have c_diff = 0.
    """
    sigmas = schedule.sigma_values
    out = []
    for i, order in enumerate(schedule.orders):
        s, s_next = sigmas[i], sigmas[i + 1]
        if s_next == 0.0:
            out.append((0.0, 1.0, 0.0))  # h = inf: the step lands on the prediction itself
            continue
        if s_next == s:
            out.append((1.0, 0.0, 0.0))  # h = 0 (final sigma_min after Karras' sigma_min): no move
            continue
        h = math.log(s / s_next)
        c_x = s_next / s
        c_d = -math.expm1(-h)
        c_diff = 0.0
        if order == 2:
            r = math.log(sigmas[i - 1] / s) / h
            if schedule.solver_type == "midpoint":
                c_diff = 0.5 * c_d / r
            else:  # heun
                c_diff = (math.expm1(-h) / h + 1.0) / r
        out.append((c_x, c_d, c_diff))
    return out


@torch.no_grad()
def sample_dpmpp_2m(
    model: Denoiser,
    x: torch.Tensor,
    schedule: Schedule,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    should_stop: ShouldStop | None = None,
) -> torch.Tensor:
    """DPM-Solver++(2M): second-order multistep, reusing the previous step's x0 prediction."""
    _expect(model, schedule, "dpmpp_2m_karras")
    sigmas, timesteps, n = schedule.sigma_values, schedule.timestep_values, schedule.num_steps
    coefficients = _dpm_coefficients(schedule)
    previous: torch.Tensor | None = None
    for i in range(n):
        _check_stop(should_stop, i, n)
        denoised = _postprocess_x0(schedule, model(x, sigmas[i], timesteps[i]))
        c_x, c_d, c_diff = coefficients[i]
        x_next = x * c_x + denoised * c_d
        if c_diff != 0.0 and previous is not None:
            x_next = x_next + (denoised - previous) * c_diff
        previous = denoised
        x = _after_step(callback, i, x_next, denoised)
    return x


@torch.no_grad()
def sample_ddim(
    model: Denoiser,
    x: torch.Tensor,
    schedule: Schedule,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    should_stop: ShouldStop | None = None,
) -> torch.Tensor:
    """Deterministic DDIM (Song et al. 2021, eta = 0): x0 and eps recombined at the next level."""
    _expect(model, schedule, "ddim")
    sigmas, timesteps, n = schedule.sigma_values, schedule.timestep_values, schedule.num_steps
    for i in range(n):
        _check_stop(should_stop, i, n)
        denoised = model(x, sigmas[i], timesteps[i])
        eps = (x - denoised) / sigmas[i]  # from the unclipped x0, as diffusers keeps the raw eps
        denoised = _postprocess_x0(schedule, denoised)
        a, b = schedule.ddim_coeffs[i]
        x = denoised * a + eps * b
        x = _after_step(callback, i, x, denoised)
    return x


@torch.no_grad()
def sample_lcm(
    model: Denoiser,
    x: torch.Tensor,
    schedule: Schedule,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    should_stop: ShouldStop | None = None,
) -> torch.Tensor:
    """Latent consistency sampling (Luo et al. 2023): jump to x0, re-noise to the next level."""
    _expect(model, schedule, "lcm")
    sigmas, timesteps, n = schedule.sigma_values, schedule.timestep_values, schedule.num_steps
    for i in range(n):
        _check_stop(should_stop, i, n)
        x0 = _postprocess_x0(schedule, model(x, sigmas[i], timesteps[i]))
        # The boundary condition mixes in the *VP* latent, x * c_in.
        c_in = 1.0 / math.sqrt(sigmas[i] ** 2 + 1.0)
        denoised = x0 * schedule.lcm_c_out[i] + x * (schedule.lcm_c_skip[i] * c_in)
        if i < n - 1:
            x = denoised + noise_like(x, generator) * sigmas[i + 1]
        else:
            x = denoised  # no draw after the last step, as in diffusers
        x = _after_step(callback, i, x, denoised)
    return x


@torch.no_grad()
def sample_tcd(
    model: Denoiser,
    x: torch.Tensor,
    schedule: Schedule,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    should_stop: ShouldStop | None = None,
) -> torch.Tensor:
    """TCD's strategic stochastic sampling (Zheng et al. 2024): move along the predicted
    trajectory to the lower level s, then add gamma-controlled noise back up to the next level."""
    _expect(model, schedule, "tcd")
    sigmas, timesteps, n = schedule.sigma_values, schedule.timestep_values, schedule.num_steps
    for i in range(n):
        _check_stop(should_stop, i, n)
        denoised = model(x, sigmas[i], timesteps[i])
        keep = schedule.tcd_keep[i]
        x = x * keep + denoised * (1.0 - keep)  # = x0 + sigma_s * eps, the latent at s
        if schedule.tcd_gamma > 0 and i < n - 1:
            # diffusers draws whenever gamma > 0, except after the last step.
            x = x + noise_like(x, generator) * schedule.tcd_noise[i]
        x = _after_step(callback, i, x, denoised)
    return x


SAMPLERS: dict[str, Sampler] = {
    "euler": sample_euler,
    "euler_a": sample_euler_ancestral,
    "dpmpp_2m_karras": sample_dpmpp_2m,
    "ddim": sample_ddim,
    "lcm": sample_lcm,
    "tcd": sample_tcd,
}


def sample(name: str, model: Denoiser, x: torch.Tensor, schedule: Schedule, **kwargs: Any) -> torch.Tensor:
    """Run sampler ``name`` (a key of SAMPLERS) over ``schedule``; kwargs as for ``sample_euler``."""
    check_sampler_name(name)
    return SAMPLERS[name](model, x, schedule, **kwargs)
