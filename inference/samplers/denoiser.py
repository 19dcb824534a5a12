"""Wrap a raw UNet call as a k-diffusion denoiser: ``denoised = model(x, sigma, timestep)``.

``make_denoiser(unet_fn, prediction_type) -> Denoiser``

``unet_fn(x_in, timestep)`` returns the network's raw output (epsilon, v or x0, after CFG, which
the caller does inside it). The denoiser feeds it ``x_in = x * c_in`` with
``c_in = 1 / sqrt(sigma**2 + 1)`` and turns the output into an x0 estimate in data space:

* epsilon:       x0 = x - sigma * eps
* v_prediction:  x0 = c_in**2 * x - sigma * c_in * v      (Salimans & Ho 2022, in VE terms)
* sample:        x0 = output

``x * c_in`` is exactly what diffusers feeds its UNet for every sampler here: Euler's
``scale_model_input`` divides by sqrt(sigma^2 + 1); DDIM, DPM-Solver and LCM do not scale but hold
the VP latent ``alpha * x0 + sigma_vp * noise``, which is the same tensor (alpha = c_in).

``sigma`` and ``timestep`` are Python floats (``Schedule.sigma_values`` / ``timestep_values``):
scalars that cost no device sync. The timestep is diffusers' value for that step (integral for
DDIM, DPM-Solver, LCM and TCD; fractional for Euler with linspace spacing).

EDM models (a schedule built from an EDM scheduler config, ``schedule.edm_sigma_data`` set) are
preconditioned as Karras et al. 2022, table 1, with sigma_data from the config, exactly as
diffusers' EDM schedulers do it:

* c_in = 1 / sqrt(sigma**2 + sigma_data**2), UNet timestep c_noise = log(sigma) / 4 (the schedule's)
* x0 = c_skip * x + c_out * output, c_skip = sigma_data**2 / (sigma**2 + sigma_data**2),
  c_out = +-sigma * sigma_data / sqrt(sigma**2 + sigma_data**2) (minus for v_prediction).

Pass the schedule (``make_denoiser(unet_fn, prediction_type, schedule)``) to get the right one;
the samplers refuse a VP denoiser on an EDM schedule and the reverse.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from inference.errors import InvalidRequestError
from inference.samplers.config import PREDICTION_TYPES

if TYPE_CHECKING:
    from inference.samplers.schedules import Schedule

UNetFn = Callable[[torch.Tensor, float], torch.Tensor]
Denoiser = Callable[[torch.Tensor, float, float], torch.Tensor]

EDM_PREDICTION_TYPES = ("epsilon", "v_prediction")


def make_denoiser(unet_fn: UNetFn, prediction_type: str, schedule: Schedule | None = None) -> Denoiser:
    """The x0-predicting model the samplers call, around a raw UNet output function.

    ``schedule`` selects the preconditioning: EDM when it was built from an EDM config, else
    (or when omitted) the k-diffusion VP wrapper every other scheduler amounts to.
    """
    if prediction_type not in PREDICTION_TYPES:
        raise InvalidRequestError(f"unsupported prediction_type {prediction_type!r}")
    if schedule is not None and schedule.edm_sigma_data is not None:
        model = _edm_denoiser(unet_fn, prediction_type, schedule.edm_sigma_data)
        model.preconditioning = "edm"  # type: ignore[attr-defined]
        return model
    model = _vp_denoiser(unet_fn, prediction_type)
    model.preconditioning = "vp"  # type: ignore[attr-defined]
    return model


def _vp_denoiser(unet_fn: UNetFn, prediction_type: str) -> Denoiser:
    def model(x: torch.Tensor, sigma: float, timestep: float) -> torch.Tensor:
        c_in = 1.0 / math.sqrt(sigma * sigma + 1.0)
        out = unet_fn(x * c_in, timestep)
        if prediction_type == "epsilon":
            return x - out * sigma
        if prediction_type == "v_prediction":
            return x * (c_in * c_in) - out * (sigma * c_in)
        return out

    return model


def _edm_denoiser(unet_fn: UNetFn, prediction_type: str, sigma_data: float) -> Denoiser:
    if prediction_type not in EDM_PREDICTION_TYPES:
        raise InvalidRequestError(f"EDM schedulers take prediction_type epsilon or v_prediction, not {prediction_type!r}")
    sign = 1.0 if prediction_type == "epsilon" else -1.0
    sd2 = sigma_data * sigma_data

    def model(x: torch.Tensor, sigma: float, timestep: float) -> torch.Tensor:
        total = sigma * sigma + sd2
        out = unet_fn(x * (1.0 / math.sqrt(total)), timestep)
        return x * (sd2 / total) + out * (sign * sigma * sigma_data / math.sqrt(total))

    return model
