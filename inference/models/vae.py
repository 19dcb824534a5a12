"""AutoencoderKL with the LDM key layout (`encoder.down.N.block.M…`, `decoder.up.N…`, `quant_conv`)."""
from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from .configs import VAEConfig
from .layers import group_norm, upsample_nearest2x_conv3x3


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, groups: int):
        super().__init__()
        self.norm1 = group_norm(in_channels, groups, 1e-6)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels, groups, 1e-6)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        if hasattr(self, "nin_shortcut"):
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    """Single-head self-attention over pixels; q/k/v/proj_out are 1×1 convs as in LDM checkpoints."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm = group_norm(channels, groups, 1e-6)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        h = self.norm(x)
        q, k, v = (conv(h).reshape(batch, 1, channels, height * width).transpose(2, 3)
                   for conv in (self.q, self.k, self.v))  # (B, 1, HW, C)
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(2, 3).reshape(batch, channels, height, width)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # LDM pads right/bottom only, so the stride-2 conv sees the same pixels as in training.
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upsample_nearest2x_conv3x3(x, self.conv)


class _Level(nn.Module):
    """One resolution level; holds `block` and optionally `downsample`/`upsample` (LDM names)."""


class _Mid(nn.Module):
    def __init__(self, channels: int, groups: int, with_attention: bool):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, groups)
        if with_attention:
            self.attn_1 = AttnBlock(channels, groups)
        self.block_2 = ResnetBlock(channels, channels, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block_1(x)
        if hasattr(self, "attn_1"):
            x = self.attn_1(x)
        return self.block_2(x)


class Encoder(nn.Module):
    def __init__(self, c: VAEConfig):
        super().__init__()
        self.conv_in = nn.Conv2d(c.in_channels, c.ch, 3, padding=1)
        self.down = nn.ModuleList()
        channels = c.ch
        for level, mult in enumerate(c.ch_mult):
            stage = _Level()
            stage.block = nn.ModuleList()
            for _ in range(c.num_res_blocks):
                stage.block.append(ResnetBlock(channels, c.ch * mult, c.norm_groups))
                channels = c.ch * mult
            if level != len(c.ch_mult) - 1:
                stage.downsample = Downsample(channels)
            self.down.append(stage)
        self.mid = _Mid(channels, c.norm_groups, c.mid_attention)
        self.norm_out = group_norm(channels, c.norm_groups, 1e-6)
        self.conv_out = nn.Conv2d(channels, 2 * c.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for stage in self.down:
            for block in stage.block:
                h = block(h)
            if hasattr(stage, "downsample"):
                h = stage.downsample(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, c: VAEConfig):
        super().__init__()
        channels = c.ch * c.ch_mult[-1]
        self.conv_in = nn.Conv2d(c.z_channels, channels, 3, padding=1)
        self.mid = _Mid(channels, c.norm_groups, c.mid_attention)
        stages: list[_Level] = []
        for level in reversed(range(len(c.ch_mult))):
            stage = _Level()
            stage.block = nn.ModuleList()
            for _ in range(c.num_res_blocks + 1):
                stage.block.append(ResnetBlock(channels, c.ch * c.ch_mult[level], c.norm_groups))
                channels = c.ch * c.ch_mult[level]
            if level != 0:
                stage.upsample = Upsample(channels)
            stages.insert(0, stage)  # LDM indexes `up` from the highest resolution
        self.up = nn.ModuleList(stages)
        self.norm_out = group_norm(channels, c.norm_groups, 1e-6)
        self.conv_out = nn.Conv2d(channels, c.out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for stage in reversed(self.up):
            for block in stage.block:
                h = block(h)
            if hasattr(stage, "upsample"):
                h = stage.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class AutoencoderKL(nn.Module):
    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        z2 = 2 * config.z_channels
        if config.use_quant_conv:
            self.quant_conv = nn.Conv2d(z2, z2, 1)
        if config.use_post_quant_conv:
            self.post_quant_conv = nn.Conv2d(config.z_channels, config.z_channels, 1)

    @property
    def dtype(self) -> torch.dtype:
        return self.encoder.conv_in.weight.dtype

    def encode_moments(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """image in [-1, 1] (B, 3, H, W) → posterior (mean, std), unscaled latent space."""
        moments = self.encoder(image.to(self.dtype))
        if self.config.use_quant_conv:
            moments = self.quant_conv(moments)
        mean, logvar = moments.chunk(2, dim=1)
        std = torch.exp(0.5 * logvar.clamp(-30.0, 20.0))
        return mean, std

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Unscaled latent → image in about [-1, 1]."""
        z = z.to(self.dtype)
        if self.config.use_post_quant_conv:
            z = self.post_quant_conv(z)
        return self.decoder(z)

    def _statistics(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        c = self.config
        if c.latents_mean is None or c.latents_std is None:
            return None
        shape = (1, len(c.latents_mean), 1, 1)
        return (torch.tensor(c.latents_mean, dtype=like.dtype, device=like.device).view(shape),
                torch.tensor(c.latents_std, dtype=like.dtype, device=like.device).view(shape))

    def to_model_latents(self, z: torch.Tensor) -> torch.Tensor:
        """Unscaled VAE latents → what the UNet sees (diffusers' SDXL img2img `prepare_latents`)."""
        statistics = self._statistics(z)
        if statistics is not None:
            mean, std = statistics
            return (z - mean) * self.config.scaling_factor / std
        shift = self.config.shift_factor or 0.0
        return (z - shift) * self.config.scaling_factor

    def from_model_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """The inverse, before decoding (diffusers' SDXL pipelines before `vae.decode`)."""
        statistics = self._statistics(latents)
        if statistics is not None:
            mean, std = statistics
            return latents * std / self.config.scaling_factor + mean
        shift = self.config.shift_factor or 0.0
        return latents / self.config.scaling_factor + shift
