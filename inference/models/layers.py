"""Small building blocks shared by the UNet, the VAE and the text encoders."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def group_norm(channels: int, groups: int = 32, eps: float = 1e-5) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=groups, num_channels=channels, eps=eps, affine=True)


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding [cos | sin], as LDM and diffusers (flip_sin_to_cos=True, shift 0) compute it.

    Computed in float32 whatever the model dtype: timesteps up to 999 lose precision in fp16.
    """
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
    args = timesteps.float()[:, None] * torch.exp(exponent)[None, :]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = F.pad(embedding, (0, 1))
    return embedding


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int,
              upcast: bool = False, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Multi-head attention over (B, T, C) tensors through SDPA.

    `upcast` computes in float32 for half-precision models whose attention logits overflow (SD2).
    """
    batch, q_len, channels = q.shape
    head_dim = channels // heads
    dtype = q.dtype
    if upcast and dtype in (torch.float16, torch.bfloat16):
        q, k, v = q.float(), k.float(), v.float()
    # (B, T, C) -> (B, heads, T, head_dim)
    q, k, v = (t.reshape(batch, -1, heads, head_dim).transpose(1, 2) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return out.transpose(1, 2).reshape(batch, q_len, channels).to(dtype)
