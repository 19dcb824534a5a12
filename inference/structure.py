"""Keep a reference image's structure while sampling: ILVR (Choi et al. 2021, "Iterative Latent
Variable Refinement"), in latent space.

After every step the low frequencies of the sample are swapped for those of the reference noised to
the same level, with the same noise: ``x ← x − φ(x) + φ(ref_t)``, where φ is a low-pass filter
(downsample by ``scale`` latent cells, then upsample; scale 1 holds the whole latent). The model
still chooses every detail finer than φ keeps, so a full model refining a preview adds detail
without moving the composition or the colours the user saw (issue 20: preview → final coherence).

A bound (``bound_change``) limits how far the model's denoised estimate may move any latent cell
from the reference: a refine may sharpen what is there but not repaint a cell. Small VAEs make this
necessary: the house decoder turns a per-cell latent change of RMS 0.05 (7 % of its latents' spread)
into a mean colour change of ΔE 4–6 with a maximum above 60, i.e. into shapes that were not in the
preview.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def lowpass(x: torch.Tensor, scale: int) -> torch.Tensor:
    """φ: area-downsample by ``scale`` (rounding the grid up), then bilinear back to full size."""
    height, width = x.shape[-2:]
    coarse = F.interpolate(x, size=(max(1, math.ceil(height / scale)), max(1, math.ceil(width / scale))),
                           mode="area")
    return F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)


def keep_structure(x: torch.Tensor, reference: torch.Tensor, scale: int) -> torch.Tensor:
    """``x`` with its low frequencies (coarser than ``scale`` latent cells) taken from ``reference``."""
    return x - lowpass(x, scale) + lowpass(reference, scale)


def bound_change(x: torch.Tensor, reference: torch.Tensor, bound: float) -> torch.Tensor:
    """``x`` with each latent cell's change from ``reference`` (RMS over the channels) shrunk to at
    most ``bound``; cells within it, and the direction of every change, are kept."""
    delta = x - reference
    rms = delta.float().pow(2).mean(dim=1, keepdim=True).sqrt()
    factor = torch.clamp(bound / rms.clamp(min=1e-12), max=1.0).to(delta.dtype)
    return reference + delta * factor


def applies(step: int, total: int, share: float) -> bool:
    """Whether step ``step`` (0-based) of ``total`` is among the first ``share`` of the steps
    (rounded up: any share above 0 holds at least one step; 1.0 holds them all)."""
    return step + 1 <= math.ceil(share * total - 1e-9)
