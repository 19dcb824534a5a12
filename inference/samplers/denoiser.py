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
DDIM, DPM-Solver and LCM; fractional for Euler with linspace spacing).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from inference.errors import InvalidRequestError
from inference.samplers.config import PREDICTION_TYPES

UNetFn = Callable[[torch.Tensor, float], torch.Tensor]
Denoiser = Callable[[torch.Tensor, float, float], torch.Tensor]


def make_denoiser(unet_fn: UNetFn, prediction_type: str) -> Denoiser:
    """The x0-predicting model the samplers call, around a raw UNet output function."""
    if prediction_type not in PREDICTION_TYPES:
        raise InvalidRequestError(f"unsupported prediction_type {prediction_type!r}")

    def model(x: torch.Tensor, sigma: float, timestep: float) -> torch.Tensor:
        c_in = 1.0 / math.sqrt(sigma * sigma + 1.0)
        out = unet_fn(x * c_in, timestep)
        if prediction_type == "epsilon":
            return x - out * sigma
        if prediction_type == "v_prediction":
            return x * (c_in * c_in) - out * (sigma * c_in)
        return out

    return model
