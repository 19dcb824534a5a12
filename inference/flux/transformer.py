"""The FLUX.1 transformer (BFL's `Flux`), with attribute paths equal to the original checkpoint keys.

Layout: `img_in` / `txt_in` project the packed latent tokens and the T5 tokens to the hidden
width; `time_in` (+ `guidance_in` on dev) + `vector_in` (CLIP pooled) make one conditioning
vector `vec`; `double_blocks` keep separate image and text streams that meet in one joint
attention; `single_blocks` run on the concatenated sequence with attention and MLP in parallel;
`final_layer` modulates and projects back to packed latent channels. Every block is modulated
from `vec` (adaLN-Zero: shift, scale, gate). The norms before modulation have no parameters
(`img_norm1` etc. hold no checkpoint keys).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models.layers import timestep_embedding
from .config import FluxConfig
from .rope import apply_rope, rope_frequencies


def _layer_norm(x: torch.Tensor) -> torch.Tensor:
    """The parameter-free LayerNorm (eps 1e-6) in front of every modulation."""
    return F.layer_norm(x, (x.shape[-1],), eps=1e-6)


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    # x (B, L, D); shift/scale (B, D). Same operation order as diffusers (norm·(1+scale)+shift).
    return _layer_norm(x) * (1 + scale[:, None]) + shift[:, None]


class MLPEmbedder(nn.Module):
    def __init__(self, in_dim: int, hidden_dim: int):
        super().__init__()
        self.in_layer = nn.Linear(in_dim, hidden_dim)
        self.out_layer = nn.Linear(hidden_dim, hidden_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_layer(F.silu(self.in_layer(x)))


class RMSNorm(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.scale = nn.Parameter(torch.empty(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Statistics in float32 (BFL does the same); half-precision squares overflow.
        return F.rms_norm(x.float(), (x.shape[-1],), eps=1e-6).to(x.dtype) * self.scale


class QKNorm(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.query_norm = RMSNorm(dim)
        self.key_norm = RMSNorm(dim)


class SelfAttention(nn.Module):
    """One stream's projections (`qkv` fused, `proj`) and its per-head q/k RMSNorm."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.norm = QKNorm(dim // heads)
        self.proj = nn.Linear(dim, dim)

    def qkv_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, L, D) → normalised q, k and v, each (B, H, L, D/H)."""
        return split_qkv(self.qkv(x), self.heads, self.norm)


def split_qkv(qkv: torch.Tensor, heads: int, norm: QKNorm) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    batch, length, _ = qkv.shape
    # (B, L, 3·H·Dh) → (3, B, H, L, Dh): the checkpoint stores q, k, v one after the other.
    q, k, v = qkv.reshape(batch, length, 3, heads, -1).permute(2, 0, 3, 1, 4)
    return norm.query_norm(q).to(v.dtype), norm.key_norm(k).to(v.dtype), v


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pe: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """RoPE on q and k, then SDPA. q/k/v (B, H, L, Dh) → (B, L, H·Dh)."""
    cos, sin = pe
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    out = F.scaled_dot_product_attention(q, k, v)
    return out.transpose(1, 2).flatten(2)


class Modulation(nn.Module):
    """`lin` maps SiLU(vec) to 3 (single) or 6 (double) vectors: (shift, scale, gate) per sub-layer."""

    def __init__(self, dim: int, double: bool):
        super().__init__()
        self.multiplier = 6 if double else 3
        self.lin = nn.Linear(dim, self.multiplier * dim)

    def forward(self, vec: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.lin(F.silu(vec)).chunk(self.multiplier, dim=-1)  # each (B, D)


def _mlp(dim: int, hidden: int) -> nn.Sequential:
    # Keys `img_mlp.0` / `img_mlp.2`: Linear, GELU(tanh), Linear.
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))


class DoubleStreamBlock(nn.Module):
    def __init__(self, c: FluxConfig):
        super().__init__()
        dim = c.hidden_size
        self.img_mod = Modulation(dim, double=True)
        self.img_attn = SelfAttention(dim, c.num_heads, c.qkv_bias)
        self.img_mlp = _mlp(dim, c.mlp_hidden_dim)
        self.txt_mod = Modulation(dim, double=True)
        self.txt_attn = SelfAttention(dim, c.num_heads, c.qkv_bias)
        self.txt_mlp = _mlp(dim, c.mlp_hidden_dim)

    def forward(self, img: torch.Tensor, txt: torch.Tensor, vec: torch.Tensor,
                pe: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """img (B, L, D), txt (B, T, D) → both updated; they meet only in the joint attention."""
        i_shift, i_scale, i_gate, i_shift2, i_scale2, i_gate2 = self.img_mod(vec)
        t_shift, t_scale, t_gate, t_shift2, t_scale2, t_gate2 = self.txt_mod(vec)
        img_q, img_k, img_v = self.img_attn.qkv_heads(_modulate(img, i_shift, i_scale))
        txt_q, txt_k, txt_v = self.txt_attn.qkv_heads(_modulate(txt, t_shift, t_scale))
        # Text first, as the position ids are concatenated (txt_ids, img_ids).
        joint = attention(torch.cat((txt_q, img_q), 2), torch.cat((txt_k, img_k), 2),
                          torch.cat((txt_v, img_v), 2), pe)  # (B, T+L, D)
        txt_out, img_out = joint[:, :txt.shape[1]], joint[:, txt.shape[1]:]
        img = img + i_gate[:, None] * self.img_attn.proj(img_out)
        img = img + i_gate2[:, None] * self.img_mlp(_modulate(img, i_shift2, i_scale2))
        txt = txt + t_gate[:, None] * self.txt_attn.proj(txt_out)
        txt = txt + t_gate2[:, None] * self.txt_mlp(_modulate(txt, t_shift2, t_scale2))
        if txt.dtype == torch.float16:  # as diffusers: keep fp16 activations finite
            txt, img = txt.clip(-65504, 65504), img.clip(-65504, 65504)
        return img, txt


class SingleStreamBlock(nn.Module):
    """Attention and MLP in parallel on the joint sequence: `linear1` makes q, k, v and the MLP
    input in one projection, `linear2` projects their concatenated outputs back."""

    def __init__(self, c: FluxConfig):
        super().__init__()
        self.hidden_size = c.hidden_size
        self.heads = c.num_heads
        self.mlp_hidden_dim = c.mlp_hidden_dim
        self.linear1 = nn.Linear(c.hidden_size, 3 * c.hidden_size + self.mlp_hidden_dim)
        self.linear2 = nn.Linear(c.hidden_size + self.mlp_hidden_dim, c.hidden_size)
        self.norm = QKNorm(c.head_dim)
        self.modulation = Modulation(c.hidden_size, double=False)

    def forward(self, x: torch.Tensor, vec: torch.Tensor, pe: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        shift, scale, gate = self.modulation(vec)
        qkv, mlp = self.linear1(_modulate(x, shift, scale)).split(
            [3 * self.hidden_size, self.mlp_hidden_dim], dim=-1)
        q, k, v = split_qkv(qkv, self.heads, self.norm)
        out = self.linear2(torch.cat((attention(q, k, v, pe), F.gelu(mlp, approximate="tanh")), dim=2))
        x = x + gate[:, None] * out
        return x.clip(-65504, 65504) if x.dtype == torch.float16 else x


class LastLayer(nn.Module):
    def __init__(self, dim: int, out_channels: int):
        super().__init__()
        self.linear = nn.Linear(dim, out_channels)
        # Key `adaLN_modulation.1`: Sequential(SiLU, Linear); BFL's order is (shift, scale).
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(vec).chunk(2, dim=-1)
        return self.linear(_modulate(x, shift, scale))


class FluxTransformer(nn.Module):
    def __init__(self, config: FluxConfig):
        super().__init__()
        c = self.config = config
        self.img_in = nn.Linear(c.in_channels, c.hidden_size)
        self.time_in = MLPEmbedder(256, c.hidden_size)
        self.vector_in = MLPEmbedder(c.vec_in_dim, c.hidden_size)
        if c.guidance_embed:
            self.guidance_in = MLPEmbedder(256, c.hidden_size)
        self.txt_in = nn.Linear(c.context_in_dim, c.hidden_size)
        self.double_blocks = nn.ModuleList(DoubleStreamBlock(c) for _ in range(c.depth))
        self.single_blocks = nn.ModuleList(SingleStreamBlock(c) for _ in range(c.depth_single_blocks))
        self.final_layer = LastLayer(c.hidden_size, c.out_channels)

    @property
    def dtype(self) -> torch.dtype:
        # A compressed img_in (fp8/GGUF, `quant.CompressedLinear`) names its compute dtype.
        return getattr(self.img_in, "compute_dtype", None) or self.img_in.weight.dtype

    def conditioning_vector(self, timesteps: torch.Tensor, y: torch.Tensor,
                            guidance: torch.Tensor | None) -> torch.Tensor:
        """timesteps (B,) in [0, 1] (σ), y (B, vec_in_dim), guidance (B,) → vec (B, D)."""
        dtype = self.dtype
        # Scaled by 1000 in the model dtype, embedded in float32, as diffusers and BFL do.
        vec = self.time_in(timestep_embedding(timesteps.to(dtype) * 1000, 256).to(y.dtype))
        if self.config.guidance_embed:
            if guidance is None:
                raise ValueError("this FLUX model embeds the guidance scale: pass guidance")
            vec = vec + self.guidance_in(timestep_embedding(guidance.to(dtype) * 1000, 256).to(y.dtype))
        return vec + self.vector_in(y)

    def forward(self, img: torch.Tensor, img_ids: torch.Tensor, txt: torch.Tensor, txt_ids: torch.Tensor,
                timesteps: torch.Tensor, y: torch.Tensor, guidance: torch.Tensor | None = None) -> torch.Tensor:
        """img (B, L, in_channels) packed latents, img_ids (L, 3), txt (B, T, context_in_dim) T5
        states, txt_ids (T, 3), timesteps (B,) σ in [0, 1], y (B, vec_in_dim) CLIP pooled →
        the velocity (B, L, out_channels)."""
        dtype = self.dtype
        img = self.img_in(img.to(dtype))
        vec = self.conditioning_vector(timesteps, y.to(dtype), guidance)
        txt = self.txt_in(txt.to(dtype))
        pe = rope_frequencies(torch.cat((txt_ids, img_ids), dim=0), self.config.axes_dim, self.config.theta)
        for block in self.double_blocks:
            img, txt = block(img, txt, vec, pe)
        x = torch.cat((txt, img), dim=1)  # (B, T+L, D)
        for block in self.single_blocks:
            x = block(x, vec, pe)
        return self.final_layer(x[:, txt.shape[1]:], vec)
