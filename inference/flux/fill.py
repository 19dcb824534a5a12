"""FLUX.1 Fill: the conditioning tokens of an inpaint/outpaint, as diffusers' FluxFillPipeline builds them.

The Fill transformer reads, per packed token, 384 channels: the noisy latents (64) followed by the
masked image's latents (64) and the mask at full pixel resolution folded into the token (8×8
pixels per latent cell × 2×2 cells = 256). The masked image is the init image in [-1, 1] with the
repaint area set to 0 (mid-grey), encoded by sampling the VAE posterior — the third draw from the
request's generator, after the init image's posterior and the initial noise.
"""
from __future__ import annotations

import torch

from .sampling import pack_latents


def fold_mask(mask: torch.Tensor, scale: int) -> torch.Tensor:
    """Binary mask (B, 1, H, W) → (B, scale², H/scale, W/scale): each latent cell carries its
    scale×scale pixels as channels, (dy, dx) row-major, as FluxFillPipeline's view/permute."""
    b, _, height, width = mask.shape
    rows, cols = height // scale, width // scale
    folded = mask[:, 0].reshape(b, rows, scale, cols, scale).permute(0, 2, 4, 1, 3)
    return folded.reshape(b, scale * scale, rows, cols)


def fill_conditioning(image: torch.Tensor, mask: torch.Tensor, encode, scale: int) -> torch.Tensor:
    """Packed (B, L, 4·C + 4·scale²) Fill conditioning: masked-image latents then the folded mask.

    `image` float32 (B, 3, H, W) in [-1, 1]; `mask` binary float32 (B, 1, H, W), 1 = repaint;
    `encode(masked image) → scaled latents` samples the posterior with the request's generator."""
    masked_image = image * (1 - mask)  # float32 before any cast, as diffusers
    latents = encode(masked_image)
    return torch.cat((pack_latents(latents.float()), pack_latents(fold_mask(mask, scale))), dim=2)
