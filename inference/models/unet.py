"""The LDM/SGM UNet (SD 1.x, SD 2.x, SDXL, inpainting and InstructPix2Pix variants).

Attribute paths equal the keys under `model.diffusion_model.` in single-file checkpoints:
`input_blocks.N.M…`, `middle_block.M…`, `output_blocks.N.M…`, `time_embed`, `label_emb`, `out`.
"""
from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from .configs import UNetConfig
from .layers import attention, group_norm, timestep_embedding, upsample_nearest2x_conv3x3


class TimestepBlock(nn.Module):
    """Marker: blocks whose forward takes the timestep embedding."""


class TimestepEmbedSequential(nn.Sequential):
    """Sequential that routes (emb, context) to the children that need them; keys stay `N.M.…`."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor | None = None,
                output_size: tuple[int, int] | None = None) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, context)
            elif isinstance(layer, Upsample):
                x = layer(x, output_size)
            else:
                x = layer(x)
        return x


class ResBlock(TimestepBlock):
    def __init__(self, channels: int, emb_channels: int, out_channels: int, groups: int = 32):
        super().__init__()
        self.in_layers = nn.Sequential(group_norm(channels, groups), nn.SiLU(),
                                       nn.Conv2d(channels, out_channels, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels))
        self.out_layers = nn.Sequential(group_norm(out_channels, groups), nn.SiLU(), nn.Dropout(0.0),
                                        nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip_connection = (nn.Identity() if channels == out_channels
                                else nn.Conv2d(channels, out_channels, 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        h = h + self.emb_layers(emb).to(h.dtype)[:, :, None, None]
        h = self.out_layers(h)
        return self.skip_connection(x) + h


class CrossAttention(nn.Module):
    def __init__(self, query_dim: int, context_dim: int | None, heads: int, upcast: bool = False):
        super().__init__()
        context_dim = context_dim or query_dim
        self.heads = heads
        self.upcast = upcast
        self.to_q = nn.Linear(query_dim, query_dim, bias=False)
        self.to_k = nn.Linear(context_dim, query_dim, bias=False)
        self.to_v = nn.Linear(context_dim, query_dim, bias=False)
        self.to_out = nn.Sequential(nn.Linear(query_dim, query_dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        out = attention(self.to_q(x), self.to_k(context), self.to_v(context), self.heads, self.upcast)
        return self.to_out(out)


class GEGLU(nn.Module):
    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden, gate = self.proj(x).chunk(2, dim=-1)
        return hidden * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        inner = dim * mult
        self.net = nn.Sequential(GEGLU(dim, inner), nn.Dropout(0.0), nn.Linear(inner, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, context_dim: int, upcast: bool = False):
        super().__init__()
        self.attn1 = CrossAttention(dim, None, heads, upcast)
        self.ff = FeedForward(dim)
        self.attn2 = CrossAttention(dim, context_dim, heads, upcast)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class SpatialTransformer(nn.Module):
    def __init__(self, channels: int, heads: int, depth: int, context_dim: int,
                 use_linear: bool, upcast: bool = False, groups: int = 32):
        super().__init__()
        self.use_linear = use_linear
        self.norm = group_norm(channels, groups, eps=1e-6)
        self.proj_in = nn.Linear(channels, channels) if use_linear else nn.Conv2d(channels, channels, 1)
        self.transformer_blocks = nn.ModuleList(
            BasicTransformerBlock(channels, heads, context_dim, upcast) for _ in range(depth))
        self.proj_out = nn.Linear(channels, channels) if use_linear else nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        batch, channels, height, width = x.shape
        residual = x
        h = self.norm(x)
        if not self.use_linear:
            h = self.proj_in(h)
        h = h.permute(0, 2, 3, 1).reshape(batch, height * width, channels)  # (B, HW, C)
        if self.use_linear:
            h = self.proj_in(h)
        for block in self.transformer_blocks:
            h = block(h, context)
        if self.use_linear:
            h = self.proj_out(h)
        h = h.reshape(batch, height, width, channels).permute(0, 3, 1, 2).contiguous()
        if not self.use_linear:
            h = self.proj_out(h)
        return h + residual


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, output_size: tuple[int, int] | None = None) -> torch.Tensor:
        # Latent sizes that are not multiples of 8 need the skip's exact size, as diffusers does.
        if output_size is None or tuple(output_size) == (2 * x.shape[-2], 2 * x.shape[-1]):
            return upsample_nearest2x_conv3x3(x, self.conv)
        return self.conv(F.interpolate(x, size=output_size, mode="nearest"))


class UNetModel(nn.Module):
    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = config
        c = config
        mc, ted, groups = c.model_channels, c.time_embed_dim, c.norm_groups
        levels = len(c.channel_mult)
        self.time_embed = nn.Sequential(nn.Linear(mc, ted), nn.SiLU(), nn.Linear(ted, ted))
        if c.time_cond_proj_dim is not None:
            # LCM: the guidance-scale embedding is projected onto the sinusoidal timestep features.
            self.time_cond_proj = nn.Linear(c.time_cond_proj_dim, mc, bias=False)
        if c.adm_in_channels is not None:
            self.label_emb = nn.Sequential(
                nn.Sequential(nn.Linear(c.adm_in_channels, ted), nn.SiLU(), nn.Linear(ted, ted)))

        def transformer(channels: int, level: int, depth: int) -> SpatialTransformer:
            return SpatialTransformer(channels, c.num_heads[level], depth, c.context_dim,
                                      c.use_linear_in_transformer, c.upcast_attention, groups)

        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(nn.Conv2d(c.in_channels, mc, 3, padding=1))])
        skip_channels = [mc]
        ch = mc
        input_depths, output_depths = iter(c.input_depths()), iter(c.output_depths())
        for level, mult in enumerate(c.channel_mult):
            for _ in range(c.num_res_blocks):
                layers: list[nn.Module] = [ResBlock(ch, ted, mult * mc, groups)]
                ch = mult * mc
                depth = next(input_depths)
                if depth > 0:
                    layers.append(transformer(ch, level, depth))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                skip_channels.append(ch)
            if level != levels - 1:
                self.input_blocks.append(TimestepEmbedSequential(Downsample(ch)))
                skip_channels.append(ch)

        middle: list[nn.Module] = [ResBlock(ch, ted, ch, groups)]
        if c.middle_block != "res":
            if c.transformer_depth_middle > 0:
                middle.append(transformer(ch, levels - 1, c.transformer_depth_middle))
            middle.append(ResBlock(ch, ted, ch, groups))
        self.middle_block = TimestepEmbedSequential(*middle)

        self.output_blocks = nn.ModuleList()
        for level in reversed(range(levels)):
            mult = c.channel_mult[level]
            for index in range(c.num_res_blocks + 1):
                layers = [ResBlock(ch + skip_channels.pop(), ted, mc * mult, groups)]
                ch = mc * mult
                depth = next(output_depths)
                if depth > 0:
                    layers.append(transformer(ch, level, depth))
                if level and index == c.num_res_blocks:
                    layers.append(Upsample(ch))
                self.output_blocks.append(TimestepEmbedSequential(*layers))

        self.out = nn.Sequential(group_norm(ch, groups), nn.SiLU(), nn.Conv2d(ch, c.out_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor | None = None,
                y: torch.Tensor | None = None, timestep_cond: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, in_channels, h, w); timesteps (B,) float; context (B, T, context_dim); y (B, adm) for SDXL;
        timestep_cond (B, time_cond_proj_dim) the guidance embedding of LCM UNets."""
        if timesteps.dim() == 0:
            timesteps = timesteps[None]
        timesteps = timesteps.expand(x.shape[0])
        dtype = self.time_embed[0].weight.dtype
        features = timestep_embedding(timesteps, self.config.model_channels).to(dtype)
        if self.config.time_cond_proj_dim is not None:
            if timestep_cond is None:
                raise ValueError("this LCM UNet needs the guidance embedding timestep_cond")
            features = features + self.time_cond_proj(timestep_cond.to(dtype))
        emb = self.time_embed(features)
        if self.config.adm_in_channels is not None:
            if y is None:
                raise ValueError("this UNet needs the SDXL conditioning vector y")
            emb = emb + self.label_emb(y.to(dtype))
        h = x.to(dtype)
        context = None if context is None else context.to(dtype)
        skips = []
        for block in self.input_blocks:
            h = block(h, emb, context)
            skips.append(h)
        h = self.middle_block(h, emb, context)
        for block in self.output_blocks:
            h = torch.cat([h, skips.pop()], dim=1)
            output_size = tuple(skips[-1].shape[-2:]) if skips else None
            h = block(h, emb, context, output_size)
        return self.out(h)
