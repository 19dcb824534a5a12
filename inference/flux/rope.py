"""Rotary position embeddings over several position axes (FLUX: 3 axes — index, row, column).

Each token has one position per axis (`ids`, (L, n_axes)); axis i rotates its own `axes_dim[i]`
channels of every head, in interleaved pairs (channels 2j, 2j+1 form one complex number). The
frequencies are computed in float64 and the rotation in float32 whatever the model dtype, as
diffusers' `FluxPosEmbed` / `apply_rotary_emb` do (BFL's `EmbedND` computes the same rotation):
positions up to ~4096 × frequency 1 lose their phase in half precision.
"""
from __future__ import annotations

import torch


def rope_frequencies(ids: torch.Tensor, axes_dim: tuple[int, ...], theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """ids (L, n_axes) → (cos, sin), each (L, sum(axes_dim)) float32, pair-interleaved."""
    if ids.shape[-1] != len(axes_dim):
        raise ValueError(f"{ids.shape[-1]} position axes but RoPE has {len(axes_dim)}")
    # MPS has no float64: compute there in float32 (as diffusers does).
    freq_dtype = torch.float32 if ids.device.type == "mps" else torch.float64
    positions = ids.float()
    cos_parts, sin_parts = [], []
    for axis, dim in enumerate(axes_dim):
        exponent = torch.arange(0, dim, 2, dtype=freq_dtype, device=ids.device) / dim
        freqs = 1.0 / (theta ** exponent)  # (dim/2,)
        angles = torch.outer(positions[:, axis], freqs)  # (L, dim/2), float64 by promotion
        cos_parts.append(angles.cos().repeat_interleave(2, dim=1).float())
        sin_parts.append(angles.sin().repeat_interleave(2, dim=1).float())
    return torch.cat(cos_parts, dim=-1), torch.cat(sin_parts, dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (B, H, L, D) by the per-position angles (cos/sin (L, D)); returns x's dtype."""
    real, imag = x.reshape(*x.shape[:-1], -1, 2).unbind(-1)  # (B, H, L, D/2) each
    rotated = torch.stack([-imag, real], dim=-1).flatten(3)  # (B, H, L, D): i·x per complex pair
    return (x.float() * cos + rotated.float() * sin).to(x.dtype)
