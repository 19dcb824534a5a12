"""Rectified-flow sampling: σ schedules, the Euler step, packed latents and position ids.

The model predicts a velocity v ≈ noise − x₀ along x_σ = σ·noise + (1 − σ)·x₀, so one Euler
step is x ← x + (σ_next − σ)·v and σ runs from ~1 to 0. The schedule reproduces diffusers'
`FlowMatchEulerDiscreteScheduler.set_timesteps` as `FluxPipeline` calls it (σ = linspace(1,
1/steps), shifted by a fixed `shift` or, with `use_dynamic_shifting`, by μ from the image token
count), computed in numpy float32 like diffusers so the timesteps agree to the bit.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import CancelledError, InvalidRequestError

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x, σ (B,)) → velocity
# (step index, new x, x₀ estimate) → None, or a replacement for x (inpainting blends known latents back)
StepCallback = Callable[[int, torch.Tensor, torch.Tensor], "torch.Tensor | None"]


def calculate_shift(image_seq_len: int, base_seq_len: int = 256, max_seq_len: int = 4096,
                    base_shift: float = 0.5, max_shift: float = 1.15) -> float:
    """μ for dynamic shifting: linear in the image token count through (base, base_shift) and
    (max, max_shift) — bigger images keep more steps at high noise."""
    slope = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    return image_seq_len * slope + base_shift - slope * base_seq_len


def mu_for(config: Mapping, image_seq_len: int) -> float:
    return calculate_shift(image_seq_len, config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096),
                           config.get("base_shift", 0.5), config.get("max_shift", 1.15))


_UNSUPPORTED = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "invert_sigmas",
                "stochastic_sampling")


@dataclass(frozen=True)
class FlowSchedule:
    sigmas: torch.Tensor  # (steps + 1,) float32, ending in 0
    timesteps: torch.Tensor  # (steps,) float32, σ·num_train_timesteps as diffusers keeps them
    start: int = 0  # first step run (img2img skips the noisiest ones)

    @property
    def num_steps(self) -> int:
        """Steps actually run."""
        return len(self.timesteps) - self.start

    def model_sigma(self, index: int) -> torch.Tensor:
        """The σ handed to the transformer at step `index`: diffusers passes timestep / 1000."""
        return self.timesteps[index:index + 1] / 1000

    def noised(self, latents: torch.Tensor, noise: torch.Tensor, index: int | None = None) -> torch.Tensor:
        """x₀ put on the noise trajectory at σ[index] (default: the first step run):
        σ·noise + (1 − σ)·x₀, diffusers' `scale_noise`."""
        sigma = self.sigmas[self.start if index is None else index].to(latents.dtype)
        return sigma * noise + (1.0 - sigma) * latents


def flow_schedule(config: Mapping, steps: int, image_seq_len: int, strength: float = 1.0,
                  sigmas: list[float] | None = None) -> FlowSchedule:
    """The schedule for `steps` from a scheduler_config.json (`FlowMatchEulerDiscreteScheduler`).

    `sigmas` None → FluxPipeline's linspace(1, 1/steps). `strength` < 1 (img2img) starts at step
    int(steps − steps·strength), as diffusers' `get_timesteps`.
    """
    for key in _UNSUPPORTED:
        if config.get(key):
            raise InvalidRequestError(f"flow-matching scheduler option {key} is not supported")
    train_steps = int(config.get("num_train_timesteps", 1000))
    if sigmas is None:
        sigmas = np.linspace(1.0, 1 / steps, steps)
    s = np.array(sigmas).astype(np.float32)
    if config.get("use_dynamic_shifting", False):
        mu = mu_for(config, image_seq_len)
        if config.get("time_shift_type", "exponential") == "linear":
            s = mu / (mu + (1 / s - 1) ** 1.0)
        else:
            s = math.exp(mu) / (math.exp(mu) + (1 / s - 1) ** 1.0)
    else:
        shift = float(config.get("shift", 1.0))
        s = shift * s / (1 + (shift - 1) * s)
    terminal = config.get("shift_terminal")
    if terminal:
        one_minus = 1 - s
        s = 1 - one_minus / (one_minus[-1] / (1 - terminal))
    sig = torch.from_numpy(np.asarray(s)).to(torch.float32)
    timesteps = sig * train_steps
    sig = torch.cat([sig, torch.zeros(1)])
    start = 0
    if strength < 1.0:
        start = int(max(steps - min(steps * strength, steps), 0))
        if start >= steps:
            raise InvalidRequestError(f"strength {strength} with {steps} steps runs no step; raise either")
    return FlowSchedule(sig, timesteps, start)


def euler(model: ModelFn, x: torch.Tensor, schedule: FlowSchedule, callback: StepCallback | None = None,
          should_stop: Callable[[], bool] | None = None) -> torch.Tensor:
    """Integrate from schedule.start to σ = 0. x and the update stay float32 (diffusers' step
    upcasts the sample). `should_stop()` is polled before every step; True raises
    CancelledError, as the SD samplers do. The callback gets the x₀ estimate x − σ·v (previews)."""
    x = x.float()
    for i in range(schedule.start, len(schedule.timesteps)):
        if should_stop is not None and should_stop():
            raise CancelledError(f"sampling cancelled before step {i - schedule.start + 1} of {schedule.num_steps}")
        velocity = model(x, schedule.model_sigma(i))
        x_prev = x
        x = x + (schedule.sigmas[i + 1] - schedule.sigmas[i]) * velocity.float()
        if callback is not None:
            replacement = callback(i - schedule.start, x, x_prev - schedule.sigmas[i] * velocity.float())
            if replacement is not None:
                x = replacement
    return x


# --------------------------------------------------------------------------- packed latents
def pack_latents(latents: torch.Tensor, patch: int = 2) -> torch.Tensor:
    """(B, C, H, W) → (B, H/p · W/p, C·p·p): each p×p patch becomes one token, channel-major
    within the token (c, dy, dx), rows then columns along the sequence."""
    b, c, h, w = latents.shape
    x = latents.reshape(b, c, h // patch, patch, w // patch, patch).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // patch) * (w // patch), c * patch * patch)


def unpack_latents(tokens: torch.Tensor, height: int, width: int, patch: int = 2) -> torch.Tensor:
    """(B, L, C·p·p) → (B, C, height, width); height/width are the latent size."""
    b, _, d = tokens.shape
    c = d // (patch * patch)
    x = tokens.reshape(b, height // patch, width // patch, c, patch, patch).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, c, height, width)


def image_ids(rows: int, cols: int, index: int = 0) -> torch.Tensor:
    """(rows·cols, 3) float32 positions (index, row, col) of the packed image tokens. `index`
    tells apart several images in one sequence (Kontext puts reference images at index 1)."""
    ids = torch.zeros(rows, cols, 3)
    ids[..., 0] = index
    ids[..., 1] = torch.arange(rows, dtype=torch.float32)[:, None]
    ids[..., 2] = torch.arange(cols, dtype=torch.float32)[None, :]
    return ids.reshape(rows * cols, 3)


def text_ids(length: int) -> torch.Tensor:
    """(length, 3) zeros: FLUX.1 gives text tokens no position (RoPE angle 0)."""
    return torch.zeros(length, 3)
