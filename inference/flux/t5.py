"""The T5 encoder stack (T5 v1.1 as FLUX.1 and SD3 use it), with transformers' key names
(`shared`, `encoder.block.N.layer.0.SelfAttention.q`, `encoder.block.N.layer.1.DenseReluDense.wi_0`).

What sets T5 apart from a BERT-style encoder: no position embeddings but a learned bias per
(relative-distance bucket, head) added to the attention scores, computed by the first layer and
reused by all; attention scores are not divided by √d; RMS-style LayerNorm without bias or mean
subtraction, statistics in float32; v1.1's feed-forward is gated (GELU(wi_0 x) · wi_1 x).
"""
from __future__ import annotations

import math
from collections.abc import MutableMapping

import torch
import torch.nn.functional as F
from torch import nn

from .config import T5Config


def _weight_dtype(layer) -> torch.dtype:
    """The dtype a layer computes in, without decoding a compressed (fp8/GGUF) weight to read it."""
    return getattr(layer, "compute_dtype", None) or layer.weight.dtype


class T5LayerNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        variance = x.float().pow(2).mean(-1, keepdim=True)
        x = x * torch.rsqrt(variance + self.eps)
        if self.weight.dtype in (torch.float16, torch.bfloat16):
            x = x.to(self.weight.dtype)
        return self.weight * x


def relative_position_bucket(relative: torch.Tensor, num_buckets: int, max_distance: int) -> torch.Tensor:
    """Bidirectional buckets (Mesh TensorFlow's scheme): half the buckets for keys after the
    query; within each half, exact buckets for small distances and log-spaced ones up to
    `max_distance`, beyond which all distances share the last bucket."""
    half = num_buckets // 2
    buckets = (relative > 0).long() * half
    distance = relative.abs()
    exact = half // 2
    # Distances ≥ exact: log-spaced between exact and max_distance (clamped to the last bucket).
    log_bucket = exact + (torch.log(distance.float() / exact) / math.log(max_distance / exact)
                          * (half - exact)).long()
    log_bucket = torch.minimum(log_bucket, torch.full_like(log_bucket, half - 1))
    return buckets + torch.where(distance < exact, distance, log_bucket)


class T5Attention(nn.Module):
    def __init__(self, c: T5Config, relative_bias: bool):
        super().__init__()
        self.heads, self.d_kv = c.num_heads, c.d_kv
        self.num_buckets, self.max_distance = c.relative_attention_num_buckets, c.relative_attention_max_distance
        inner = c.num_heads * c.d_kv
        self.q = nn.Linear(c.d_model, inner, bias=False)
        self.k = nn.Linear(c.d_model, inner, bias=False)
        self.v = nn.Linear(c.d_model, inner, bias=False)
        self.o = nn.Linear(inner, c.d_model, bias=False)
        if relative_bias:
            self.relative_attention_bias = nn.Embedding(c.relative_attention_num_buckets, c.num_heads)

    def position_bias(self, length: int, device: torch.device) -> torch.Tensor:
        """(1, H, L, L) additive bias from the key-minus-query distance buckets."""
        positions = torch.arange(length, dtype=torch.long, device=device)
        relative = positions[None, :] - positions[:, None]  # (L_query, L_key)
        buckets = relative_position_bucket(relative, self.num_buckets, self.max_distance)
        return self.relative_attention_bias(buckets).permute(2, 0, 1)[None]

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        q, k, v = (proj(x).reshape(batch, length, self.heads, self.d_kv).transpose(1, 2)
                   for proj in (self.q, self.k, self.v))  # (B, H, L, d_kv)
        # scale=1: T5 folds the 1/√d into its initialisation, never into the scores.
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=1.0)
        return self.o(out.transpose(1, 2).reshape(batch, length, -1))


class T5LayerSelfAttention(nn.Module):
    def __init__(self, c: T5Config, relative_bias: bool):
        super().__init__()
        self.SelfAttention = T5Attention(c, relative_bias)
        self.layer_norm = T5LayerNorm(c.d_model, c.layer_norm_epsilon)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return x + self.SelfAttention(self.layer_norm(x), bias)


def _activation(name: str):
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return lambda x: F.gelu(x, approximate="tanh")
    return F.relu


class T5DenseGatedActDense(nn.Module):
    def __init__(self, c: T5Config):
        super().__init__()
        self.act = _activation(c.activation)
        self.wi_0 = nn.Linear(c.d_model, c.d_ff, bias=False)
        self.wi_1 = nn.Linear(c.d_model, c.d_ff, bias=False)
        self.wo = nn.Linear(c.d_ff, c.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.wi_0(x)) * self.wi_1(x)
        return self.wo(h.to(_weight_dtype(self.wo)))


class T5DenseActDense(nn.Module):
    def __init__(self, c: T5Config):
        super().__init__()
        self.act = _activation(c.activation)
        self.wi = nn.Linear(c.d_model, c.d_ff, bias=False)
        self.wo = nn.Linear(c.d_ff, c.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.wo(self.act(self.wi(x)).to(_weight_dtype(self.wo)))


class T5LayerFF(nn.Module):
    def __init__(self, c: T5Config):
        super().__init__()
        self.DenseReluDense = T5DenseGatedActDense(c) if c.gated else T5DenseActDense(c)
        self.layer_norm = T5LayerNorm(c.d_model, c.layer_norm_epsilon)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.DenseReluDense(self.layer_norm(x))


def _clamp_fp16(x: torch.Tensor) -> torch.Tensor:
    # transformers keeps fp16 activations finite after each sub-layer (T5-XXL overflows fp16).
    if x.dtype != torch.float16:
        return x
    limit = torch.finfo(x.dtype).max
    limit = torch.where(torch.isinf(x).any(), limit - 1000, limit)
    return torch.clamp(x, min=-limit, max=limit)


class T5Block(nn.Module):
    def __init__(self, c: T5Config, relative_bias: bool):
        super().__init__()
        self.layer = nn.ModuleList([T5LayerSelfAttention(c, relative_bias), T5LayerFF(c)])

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = _clamp_fp16(self.layer[0](x, bias))
        return _clamp_fp16(self.layer[1](x))


class T5Stack(nn.Module):
    def __init__(self, c: T5Config):
        super().__init__()
        # Only the first block owns the relative attention bias; the others reuse its output.
        self.block = nn.ModuleList(T5Block(c, relative_bias=i == 0) for i in range(c.num_layers))
        self.final_layer_norm = T5LayerNorm(c.d_model, c.layer_norm_epsilon)


class T5Encoder(nn.Module):
    def __init__(self, config: T5Config):
        super().__init__()
        self.config = config
        self.shared = nn.Embedding(config.vocab_size, config.d_model)
        self.encoder = T5Stack(config)

    @property
    def dtype(self) -> torch.dtype:
        return self.shared.weight.dtype

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """ids (B, L) → last hidden state (B, L, d_model). FLUX passes no mask: the padding
        tokens are attended to, as in training. `attention_mask` (B, L), 1 = keep, for models
        that mask (SD3 does not either)."""
        x = self.shared(ids)
        first = self.encoder.block[0].layer[0].SelfAttention
        bias = first.position_bias(ids.shape[1], ids.device).to(x.dtype)  # (1, H, L, L)
        if attention_mask is not None:
            blocked = (attention_mask[:, None, None, :] == 0)
            bias = bias.masked_fill(blocked, torch.finfo(x.dtype).min)
        for block in self.encoder.block:
            x = block(x, bias)
        return self.encoder.final_layer_norm(x)


def t5_state(state: MutableMapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A transformers T5 encoder state dict in our names: the tied input embedding may be stored
    as `shared.weight`, as `encoder.embed_tokens.weight`, or both; decoder/lm_head keys of a full
    T5 checkpoint are dropped."""
    out = {k: v for k, v in state.items() if not k.startswith(("decoder.", "lm_head."))}
    embed = out.pop("encoder.embed_tokens.weight", None)
    if "shared.weight" not in out and embed is not None:
        out["shared.weight"] = embed
    return out
