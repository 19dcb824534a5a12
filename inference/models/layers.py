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


def _phase_kernels(conv: nn.Conv2d, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The four 2×2 phase kernels of a 3×3 conv, stacked as output channels (cached on the module
    until its weight changes; in the input's memory layout so the conv library does not reorder)."""
    w, b = conv.weight, conv.bias
    key = (w.data_ptr(), w._version, w.dtype, w.device, x.is_contiguous(memory_format=torch.channels_last))
    cached = getattr(conv, "_phase_cache", None)
    if cached is not None and cached[0] == key and not torch.is_grad_enabled():
        return cached[1], cached[2]
    even_rows = torch.stack([w[:, :, 0], w[:, :, 1] + w[:, :, 2]], 2)  # (O, I, 2 rows, 3 cols)
    odd_rows = torch.stack([w[:, :, 0] + w[:, :, 1], w[:, :, 2]], 2)
    kernels = []
    for rows in (even_rows, odd_rows):
        kernels.append(torch.stack([rows[..., 0], rows[..., 1] + rows[..., 2]], -1))  # even columns
        kernels.append(torch.stack([rows[..., 0] + rows[..., 1], rows[..., 2]], -1))  # odd columns
    kernel = torch.cat(kernels)
    if key[-1]:
        kernel = kernel.contiguous(memory_format=torch.channels_last)
    bias = None if b is None else b.repeat(4)
    if not torch.is_grad_enabled():
        conv._phase_cache = (key, kernel, bias)
    return kernel, bias


def forget_derived_weights(module: nn.Module) -> None:
    """Drop what was computed from ``module``'s weights (the phase kernels above). Whoever rewrites a
    weight in place or swaps it must call this: the cache key (address, version) cannot see a write
    through ``.data`` or a new tensor allocated at a freed one's address."""
    module.__dict__.pop("_phase_cache", None)


def upsample_nearest2x_conv3x3(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """`conv(interpolate(x, scale_factor=2, mode="nearest"))` for a 3×3, padding-1 conv, in 2.25× fewer
    multiply-adds: the SD decoders' most expensive layers, computed on the small input instead.

    Each output pixel of the upsampled conv falls in one of four phases (even/odd row × column), and
    for each phase the nine taps land on only a 2×2 neighbourhood of `x`, so the phase is a 2×2 conv of
    `x` with summed taps (rows: even → [w0, w1+w2] at i-1, i; odd → [w0+w1, w2] at i, i+1; columns
    likewise). One 2×2 conv with the four phase kernels stacked as output channels computes all of
    them on the padded input; phase (a, c) is its output shifted by (a, c). Exact up to float
    summation order.
    """
    if x.device.type != "cpu":  # measured on CPU only; GPU convolution libraries choose their own way
        return conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
    return _phase_upsample_conv(x, conv)


def _phase_upsample_conv(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """The phase form of `upsample_nearest2x_conv3x3` (see there)."""
    kernel, bias = _phase_kernels(conv, x)
    out_channels = conv.weight.shape[0]
    batch, _, height, width = x.shape
    y = F.conv2d(F.pad(x, (1, 1, 1, 1)), kernel, bias)
    shifts = ((0, 0), (0, 1), (1, 0), (1, 1))
    # Interleave the phases with four strided copies in the input's own memory layout (a generic
    # stack + pixel_shuffle costs more than the convolution saves in channels-last).
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        src = y.permute(0, 2, 3, 1).reshape(batch, height + 1, width + 1, 4, out_channels)
        out = y.new_empty(batch, height, 2, width, 2, out_channels)
        for k, (a, c) in enumerate(shifts):
            out[:, :, a, :, c] = src[:, a:a + height, c:c + width, k]
        return out.reshape(batch, 2 * height, 2 * width, out_channels).permute(0, 3, 1, 2)
    out = y.new_empty(batch, out_channels, height, 2, width, 2)
    for k, (a, c) in enumerate(shifts):
        out[:, :, :, a, :, c] = y[:, k * out_channels:(k + 1) * out_channels, a:a + height, c:c + width]
    return out.reshape(batch, out_channels, 2 * height, 2 * width)
