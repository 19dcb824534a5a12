"""CLIP text transformer with Hugging Face key names (`text_model.encoder.layers.N.self_attn.q_proj`).

One class serves CLIP-L (SD1, SDXL's first encoder), OpenCLIP-H (SD2) and OpenCLIP-bigG (SDXL's
second encoder, with `text_projection`); OpenCLIP checkpoints are renamed into this layout by
`inference.convert.open_clip_to_hf`.
"""
from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from .configs import CLIPTextConfig
from .layers import attention


def _activation(name: str):
    if name == "quick_gelu":
        return lambda x: x * torch.sigmoid(1.702 * x)
    if name == "gelu":
        return F.gelu
    raise ValueError(f"unsupported CLIP activation {name!r}")


class CLIPAttention(nn.Module):
    def __init__(self, c: CLIPTextConfig):
        super().__init__()
        self.heads = c.num_attention_heads
        self.q_proj = nn.Linear(c.hidden_size, c.hidden_size)
        self.k_proj = nn.Linear(c.hidden_size, c.hidden_size)
        self.v_proj = nn.Linear(c.hidden_size, c.hidden_size)
        self.out_proj = nn.Linear(c.hidden_size, c.hidden_size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.out_proj(attention(self.q_proj(x), self.k_proj(x), self.v_proj(x), self.heads, mask=mask))


class CLIPMLP(nn.Module):
    def __init__(self, c: CLIPTextConfig):
        super().__init__()
        self.act = _activation(c.hidden_act)
        self.fc1 = nn.Linear(c.hidden_size, c.intermediate_size)
        self.fc2 = nn.Linear(c.intermediate_size, c.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class CLIPEncoderLayer(nn.Module):
    def __init__(self, c: CLIPTextConfig):
        super().__init__()
        self.self_attn = CLIPAttention(c)
        self.layer_norm1 = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.mlp = CLIPMLP(c)
        self.layer_norm2 = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class CLIPEmbeddings(nn.Module):
    def __init__(self, c: CLIPTextConfig):
        super().__init__()
        self.token_embedding = nn.Embedding(c.vocab_size, c.hidden_size)
        self.position_embedding = nn.Embedding(c.max_position_embeddings, c.hidden_size)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.token_embedding(ids) + self.position_embedding.weight[: ids.shape[1]]


class CLIPEncoder(nn.Module):
    def __init__(self, c: CLIPTextConfig):
        super().__init__()
        self.layers = nn.ModuleList(CLIPEncoderLayer(c) for _ in range(c.num_hidden_layers))


class CLIPTextTransformer(nn.Module):
    def __init__(self, c: CLIPTextConfig):
        super().__init__()
        self.embeddings = CLIPEmbeddings(c)
        self.encoder = CLIPEncoder(c)
        self.final_layer_norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)


class CLIPTextOutput:
    """hidden_states[0] = embeddings, hidden_states[i] = after layer i; last = final LN of the last layer."""

    def __init__(self, hidden_states: list[torch.Tensor], last: torch.Tensor, pooled: torch.Tensor):
        self.hidden_states = hidden_states
        self.last_hidden_state = last
        self.pooled = pooled


class CLIPTextModel(nn.Module):
    def __init__(self, config: CLIPTextConfig):
        super().__init__()
        self.config = config
        self.text_model = CLIPTextTransformer(config)
        if config.projection_dim is not None:
            self.text_projection = nn.Linear(config.hidden_size, config.projection_dim, bias=False)

    def forward(self, ids: torch.Tensor, stop_at_layer: int | None = None) -> CLIPTextOutput:
        """ids (B, T). `stop_at_layer` skips the layers after it when only an earlier one is used."""
        tm = self.text_model
        x = tm.embeddings(ids)
        seq = ids.shape[1]
        # Causal mask as an additive float mask, in the activations' dtype.
        mask = torch.full((seq, seq), float("-inf"), device=ids.device, dtype=x.dtype).triu(1)
        hidden_states = [x]
        layers = tm.encoder.layers if stop_at_layer is None else tm.encoder.layers[:stop_at_layer]
        for layer in layers:
            x = layer(x, mask)
            hidden_states.append(x)
        last = tm.final_layer_norm(x)
        # The pooled token is the first end-of-text token (CLIP pads with EOT or with 0).
        eos_index = (ids == self.config.eos_token_id).int().argmax(dim=-1)
        pooled = last[torch.arange(last.shape[0], device=ids.device), eos_index]
        if hasattr(self, "text_projection"):
            pooled = self.text_projection(pooled)
        return CLIPTextOutput(hidden_states, last, pooled)
