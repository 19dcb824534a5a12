"""Prompt → UNet conditioning (cross-attention context, and SDXL's pooled/time vector).

Short unweighted prompts produce exactly what diffusers' `encode_prompt` does; longer prompts
are encoded in 77-token chunks and concatenated (A1111), with emphasis weights applied.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

from .loader import DiffusionModel, TextEncoder
from .lora.apply import text_version
from .models.layers import timestep_embedding
from .tokenizer import apply_weights, tokenize_weighted


@dataclass(frozen=True)
class PromptEmbedding:
    context: torch.Tensor  # (1, n_chunks·77, dim)
    pooled: torch.Tensor | None  # (1, pooled_dim) for SDXL


@dataclass(frozen=True)
class Conditioning:
    """Batched for the UNet: with CFG, row 0 is the negative and row 1 the positive prompt."""

    context: torch.Tensor
    y: torch.Tensor | None
    guided: bool


def _encode_chunks(encoder: TextEncoder, text: str, device: torch.device, min_chunks: int = 1
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    chunks = tokenize_weighted(encoder.tokenizer, text, encoder.spec.pad_token_id
                               if encoder.spec.pad_token_id >= 0 else None)
    ids, weights = chunks.ids, chunks.weights
    if ids.shape[0] < min_chunks:  # pad with empty chunks so positive and negative line up
        empty = tokenize_weighted(encoder.tokenizer, "", encoder.spec.pad_token_id
                                  if encoder.spec.pad_token_id >= 0 else None)
        extra = min_chunks - ids.shape[0]
        ids = torch.cat([ids, empty.ids.repeat(extra, 1)])
        weights = torch.cat([weights, empty.weights.repeat(extra, 1)])
    model = encoder.model
    spec = encoder.spec
    layers = len(model.text_model.encoder.layers)
    # Only run the layers whose output is used (SDXL and SD2 stop at the penultimate one).
    stop = layers + 1 + spec.hidden_layer if spec.hidden_layer < 0 else spec.hidden_layer
    need_pooled = spec.pooled
    out = model(ids.to(device), stop_at_layer=None if need_pooled else stop)
    hidden = out.hidden_states[spec.hidden_layer] if need_pooled else out.hidden_states[-1]
    if spec.final_layer_norm:
        hidden = model.text_model.final_layer_norm(hidden)
    z = apply_weights(hidden, weights.to(device))
    pooled = out.pooled[:1] if need_pooled else None  # pooled comes from the first chunk
    return z.reshape(1, -1, z.shape[-1]), pooled


def encode_prompt(model: DiffusionModel, text: str, min_chunks: int = 1) -> PromptEmbedding:
    contexts, pooled = [], None
    for encoder in model.text_encoders:
        context, encoder_pooled = _encode_chunks(encoder, text, model.device, min_chunks)
        contexts.append(context)
        if encoder_pooled is not None:
            pooled = encoder_pooled
    return PromptEmbedding(torch.cat(contexts, dim=-1), pooled)


def chunk_count(model: DiffusionModel, text: str) -> int:
    encoder = model.text_encoders[0]
    return tokenize_weighted(encoder.tokenizer, text).n_chunks


def sdxl_time_ids(height: int, width: int, crop_top: int = 0, crop_left: int = 0,
                  aesthetic_score: float | None = None) -> torch.Tensor:
    """(original size, crop, target size), all in pixels: diffusers' default `add_time_ids`.
    The refiner replaces the target size by an aesthetic score (diffusers: 6.0, negative 2.5)."""
    if aesthetic_score is not None:
        return torch.tensor([[height, width, crop_top, crop_left, aesthetic_score]], dtype=torch.float32)
    return torch.tensor([[height, width, crop_top, crop_left, height, width]], dtype=torch.float32)


def guidance_embedding(guidance: float, dim: int) -> torch.Tensor:
    """LCM UNets' guidance input (diffusers' `get_guidance_scale_embedding` of w = guidance − 1):
    sin ‖ cos of 1000·w over `dim // 2` log-spaced frequencies, zero-padded to an odd `dim`."""
    half = dim // 2
    frequencies = torch.exp(torch.arange(half, dtype=torch.float32) * -(torch.log(torch.tensor(10000.0)) / (half - 1)))
    angles = torch.tensor([(guidance - 1.0) * 1000.0], dtype=torch.float32)[:, None] * frequencies[None, :]
    embedding = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    return torch.nn.functional.pad(embedding, (0, dim % 2))


def adm_vector(pooled: torch.Tensor, time_ids: torch.Tensor) -> torch.Tensor:
    """SDXL's `y`: pooled bigG embedding ‖ 256-d sinusoidal embedding of each of the 6 time ids."""
    embedded = timestep_embedding(time_ids.flatten().to(pooled.device), 256).reshape(time_ids.shape[0], -1)
    return torch.cat([pooled.float(), embedded], dim=-1).to(pooled.dtype)


class PromptCache:
    """Small LRU of prompt embeddings: the live preview re-renders with unchanged prompts often."""

    def __init__(self, capacity: int = 16):
        self.capacity = capacity
        self._items: OrderedDict[tuple, PromptEmbedding] = OrderedDict()

    def get(self, model: DiffusionModel, text: str, min_chunks: int) -> PromptEmbedding:
        # A text-encoder LoRA changes the embeddings of the same text: its version is in the key.
        key = (id(model), text_version(model), text, min_chunks)
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = encode_prompt(model, text, min_chunks)
        self._items[key] = value
        if len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return value


@torch.no_grad()
def build_conditioning(model: DiffusionModel, prompt: str, negative: str, guidance: float,
                       height: int, width: int, cache: PromptCache | None = None) -> Conditioning:
    guided = guidance > 1.0
    chunks = max(chunk_count(model, prompt), chunk_count(model, negative)) if guided else 1
    encode = cache.get if cache is not None else (lambda m, t, c: encode_prompt(m, t, c))
    positive = encode(model, prompt, chunks)
    y = None
    time_ids = negative_time_ids = None
    if model.family.uses_time_ids:
        scores = model.family.aesthetic_scores or (None, None)
        time_ids = sdxl_time_ids(height, width, aesthetic_score=scores[0])
        negative_time_ids = sdxl_time_ids(height, width, aesthetic_score=scores[1])
    if not guided:
        if time_ids is not None:
            y = adm_vector(positive.pooled, time_ids)
        return Conditioning(positive.context, y, False)
    if model.family.zero_empty_negative and not negative.strip():
        # diffusers' SDXL pipelines use zeros, not the empty prompt's embedding, when no negative is given.
        negative_emb = PromptEmbedding(torch.zeros_like(positive.context),
                                       torch.zeros_like(positive.pooled) if positive.pooled is not None else None)
    else:
        negative_emb = encode(model, negative, chunks)
    context = torch.cat([negative_emb.context, positive.context])
    if time_ids is not None:
        y = torch.cat([adm_vector(negative_emb.pooled, negative_time_ids), adm_vector(positive.pooled, time_ids)])
    return Conditioning(context, y, True)
