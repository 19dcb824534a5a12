"""TAESD / TAESDXL tiny autoencoders (madebyollin/taesd layout: `encoder.N.conv.M`, `decoder.N…`).

Latents here are in UNet scale already (the tiny VAE was trained on scaled latents); images are
in [-1, 1] at this module's boundary so it can stand in for AutoencoderKL in the pipelines.
"""
from __future__ import annotations

import torch
from torch import nn


def _conv(n_in: int, n_out: int, **kwargs) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, **kwargs)


class Clamp(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class Block(nn.Module):
    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.conv = nn.Sequential(_conv(n_in, n_out), nn.ReLU(), _conv(n_out, n_out), nn.ReLU(), _conv(n_out, n_out))
        self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()
        self.fuse = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(self.conv(x) + self.skip(x))


def make_encoder(latent_channels: int = 4) -> nn.Sequential:
    return nn.Sequential(
        _conv(3, 64), Block(64, 64),
        _conv(64, 64, stride=2, bias=False), Block(64, 64), Block(64, 64), Block(64, 64),
        _conv(64, 64, stride=2, bias=False), Block(64, 64), Block(64, 64), Block(64, 64),
        _conv(64, 64, stride=2, bias=False), Block(64, 64), Block(64, 64), Block(64, 64),
        _conv(64, latent_channels),
    )


def make_decoder(latent_channels: int = 4) -> nn.Sequential:
    return nn.Sequential(
        Clamp(), _conv(latent_channels, 64), nn.ReLU(),
        Block(64, 64), Block(64, 64), Block(64, 64), nn.Upsample(scale_factor=2), _conv(64, 64, bias=False),
        Block(64, 64), Block(64, 64), Block(64, 64), nn.Upsample(scale_factor=2), _conv(64, 64, bias=False),
        Block(64, 64), Block(64, 64), Block(64, 64), nn.Upsample(scale_factor=2), _conv(64, 64, bias=False),
        Block(64, 64), _conv(64, 3),
    )


class TAESD(nn.Module):
    def __init__(self, latent_channels: int = 4):
        super().__init__()
        self.encoder = make_encoder(latent_channels)
        self.decoder = make_decoder(latent_channels)

    @property
    def dtype(self) -> torch.dtype:
        return self.decoder[1].weight.dtype

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """image [-1, 1] → latents in UNet scale (TAESD itself takes [0, 1])."""
        return self.encoder(((image + 1) / 2).to(self.dtype))

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """UNet-scale latents → image in [-1, 1]."""
        return self.decoder(latents.to(self.dtype)).mul(2).sub(1)
