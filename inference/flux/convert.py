"""diffusers `FluxTransformer2DModel` weights → BFL checkpoint keys (our module paths).

The inverse of diffusers' `convert_flux_transformer_checkpoint_to_diffusers`: diffusers splits
BFL's fused projections (`qkv` → to_q/to_k/to_v; single blocks' `linear1` → q, k, v, proj_mlp)
and stores the final modulation as (scale, shift) where BFL stores (shift, scale). Single-file
BFL checkpoints need no conversion beyond stripping a `model.diffusion_model.` prefix.
"""
from __future__ import annotations

from collections.abc import MutableMapping

import torch

from .config import FluxConfig

BFL_PREFIXES = ("model.diffusion_model.", "diffusion_model.")

# Plain renames, diffusers suffix → BFL suffix (weight and bias alike).
_TOP_LEVEL = {
    "x_embedder": "img_in",
    "context_embedder": "txt_in",
    "time_text_embed.timestep_embedder.linear_1": "time_in.in_layer",
    "time_text_embed.timestep_embedder.linear_2": "time_in.out_layer",
    "time_text_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
    "time_text_embed.guidance_embedder.linear_2": "guidance_in.out_layer",
    "time_text_embed.text_embedder.linear_1": "vector_in.in_layer",
    "time_text_embed.text_embedder.linear_2": "vector_in.out_layer",
    "proj_out": "final_layer.linear",
}
_DOUBLE = {
    "norm1.linear": "img_mod.lin",
    "norm1_context.linear": "txt_mod.lin",
    "attn.to_out.0": "img_attn.proj",
    "attn.to_add_out": "txt_attn.proj",
    "ff.net.0.proj": "img_mlp.0",
    "ff.net.2": "img_mlp.2",
    "ff_context.net.0.proj": "txt_mlp.0",
    "ff_context.net.2": "txt_mlp.2",
}
_DOUBLE_NORMS = {
    "attn.norm_q.weight": "img_attn.norm.query_norm.scale",
    "attn.norm_k.weight": "img_attn.norm.key_norm.scale",
    "attn.norm_added_q.weight": "txt_attn.norm.query_norm.scale",
    "attn.norm_added_k.weight": "txt_attn.norm.key_norm.scale",
}
_SINGLE = {"norm.linear": "modulation.lin", "proj_out": "linear2"}
_SINGLE_NORMS = {"attn.norm_q.weight": "norm.query_norm.scale", "attn.norm_k.weight": "norm.key_norm.scale"}


def _move(state: MutableMapping[str, torch.Tensor], out: dict, src: str, dst: str) -> None:
    for param in ("weight", "bias"):
        if f"{src}.{param}" in state:
            out[f"{dst}.{param}"] = state.pop(f"{src}.{param}")


def _fuse(state: MutableMapping[str, torch.Tensor], out: dict, sources: list[str], dst: str) -> None:
    """Concatenate split projections along the output dim (only when all parts are present, so
    a broken file shows up as missing/unexpected keys instead of a wrong shape)."""
    for param in ("weight", "bias"):
        keys = [f"{s}.{param}" for s in sources]
        if all(k in state for k in keys):
            out[f"{dst}.{param}"] = torch.cat([state.pop(k) for k in keys], dim=0)


def swap_halves(tensor: torch.Tensor) -> torch.Tensor:
    """(a, b) → (b, a) along dim 0: the final modulation's (scale, shift) ↔ (shift, scale)."""
    first, second = tensor.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def diffusers_to_bfl(state: MutableMapping[str, torch.Tensor], config: FluxConfig) -> dict[str, torch.Tensor]:
    """Rename (and fuse) a diffusers FLUX transformer state dict into BFL keys.

    Consumes `state` as it goes (so a 12B model is not held twice); tensors it does not know
    are passed through under their own names, for the strict load to report as unexpected.
    """
    out: dict[str, torch.Tensor] = {}
    for src, dst in _TOP_LEVEL.items():
        _move(state, out, src, dst)
    for param in ("weight", "bias"):
        key = f"norm_out.linear.{param}"
        if key in state:
            out[f"final_layer.adaLN_modulation.1.{param}"] = swap_halves(state.pop(key))
    for i in range(config.depth):
        src, dst = f"transformer_blocks.{i}.", f"double_blocks.{i}."
        for a, b in _DOUBLE.items():
            _move(state, out, src + a, dst + b)
        _fuse(state, out, [src + "attn.to_q", src + "attn.to_k", src + "attn.to_v"], dst + "img_attn.qkv")
        _fuse(state, out, [src + "attn.add_q_proj", src + "attn.add_k_proj", src + "attn.add_v_proj"],
              dst + "txt_attn.qkv")
        for a, b in _DOUBLE_NORMS.items():
            if src + a in state:
                out[dst + b] = state.pop(src + a)
    for i in range(config.depth_single_blocks):
        src, dst = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
        for a, b in _SINGLE.items():
            _move(state, out, src + a, dst + b)
        _fuse(state, out, [src + "attn.to_q", src + "attn.to_k", src + "attn.to_v", src + "proj_mlp"],
              dst + "linear1")
        for a, b in _SINGLE_NORMS.items():
            if src + a in state:
                out[dst + b] = state.pop(src + a)
    out.update(state)  # leftovers: unexpected keys
    state.clear()
    return out


def strip_bfl_prefix(key: str) -> str:
    """A single-file checkpoint key without its ComfyUI/SGM-style prefix."""
    for prefix in BFL_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key
