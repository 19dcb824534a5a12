"""FLUX.1 weights from single files: the transformer (BFL `.safetensors` in bf16/fp16/fp8, or
`.gguf`), the BFL autoencoder `ae.safetensors`, `clip_l.safetensors` and a T5-XXL file.

fp8 and GGUF-quantised matrices stay compressed (`quant.Compressed` → `CompressedLinear`);
everything else is cast to the compute dtype. `meta=True` reads headers only (inspection and the
full-size layout tests). Config facts the weights do not hold come from the shapes plus FLUX.1's
published values (RoPE axes, VAE scale/shift) or from metadata hints (CLIP head width).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import torch

from .. import detect
from ..errors import ModelFormatError, UnsupportedModelError
from ..formats.safetensors_file import iter_tensors
from ..formats.safetensors_header import read_header
from ..models.clip_text import CLIPTextModel
from ..models.vae import AutoencoderKL
from ..plan import hf_clip_config
from .config import T5Config, flux_config_from_shapes
from .convert import BFL_PREFIXES, strip_bfl_prefix
from .quant import Compressed, materialise_compressed
from .t5 import T5Encoder, t5_state
from .transformer import FluxTransformer

FP8 = tuple(d for d in (getattr(torch, "float8_e4m3fn", None), getattr(torch, "float8_e5m2", None)) if d is not None)
# BFL's AutoEncoder params for FLUX.1 (flux/util.py `ae_params`): not stored in ae.safetensors.
AE_SCALE, AE_SHIFT = 0.3611, 0.1159
_AE_PREFIXES = ("first_stage_model.", "vae.", "ae.")
CLIP_MARKER = "embeddings.token_embedding.weight"
T5_MARKER = "encoder.block.0.layer.0.SelfAttention.q.weight"
Value = torch.Tensor | Compressed


def _meta(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    return {k: torch.empty(s, device="meta") for k, s in shapes.items()}


def _with_fp8(items, dtype: torch.dtype) -> dict[str, Value]:
    """Tensors in `dtype`, except fp8 ones, which stay fp8 (`Compressed`). ComfyUI's "scaled fp8"
    files add a per-tensor `<layer>.scale_weight` (weight = fp8 · scale) and `scale_input` (for
    fp8 matmuls, which we do not use) plus a `scaled_fp8` marker."""
    state: dict[str, Value] = {}
    scales: dict[str, torch.Tensor] = {}
    for key, tensor in items:
        if key == "scaled_fp8" or key.endswith(".scale_input"):
            continue
        if key.endswith(".scale_weight"):
            scales[key[: -len("scale_weight")] + "weight"] = tensor.float()
        elif tensor.dtype in FP8:
            state[key] = Compressed(tensor, "F8_E4M3" if tensor.dtype == FP8[0] else "F8_E5M2", tuple(tensor.shape))
        else:
            state[key] = tensor.to(dtype) if tensor.is_floating_point() else tensor
    for key, scale in scales.items():
        value = state.get(key)
        if isinstance(value, Compressed):
            state[key] = replace(value, scale=scale.to(value.data.device).reshape(()))
        elif value is not None:
            state[key] = (value.float() * scale.to(value.device)).to(dtype)
    return state


def _safetensors_state(path: Path, device: torch.device, dtype: torch.dtype, rename=None) -> dict[str, Value]:
    return _with_fp8(iter_tensors(path, device=device, rename=rename), dtype)


# ----------------------------------------------------------------------------- transformer
def _gguf_state(path: Path, device: torch.device, dtype: torch.dtype, meta: bool) -> tuple[dict, dict]:
    """(state, shapes) of a FLUX GGUF file; quantised tensors as `Compressed` blocks."""
    import numpy as np

    from .gguf import read_flux_gguf

    contents = read_flux_gguf(path)
    shapes = {name: t.shape for name, t in contents.tensors.items()}
    if meta:
        return _meta(shapes), shapes
    state: dict[str, Value] = {}
    for name, tensor in contents.tensors.items():
        if tensor.qtype == "BF16":
            value = torch.from_numpy(np.array(tensor.data).view(np.int16)).view(torch.bfloat16).reshape(tensor.shape)
        elif tensor.qtype in ("F32", "F16"):
            value = torch.from_numpy(np.array(tensor.data)).reshape(tensor.shape)
        else:  # the blocks, copied out of the memory map (the file may be replaced while we run)
            blocks = torch.from_numpy(np.array(tensor.data, dtype=np.uint8).reshape(-1))
            state[name] = Compressed(blocks.to(device), tensor.qtype, tensor.shape)
            continue
        state[name] = value.to(device=device, dtype=dtype)
    return state, shapes


def transformer_state(path: str | Path, *, device: torch.device, dtype: torch.dtype,
                      meta: bool = False) -> tuple[dict[str, Value], dict[str, tuple[int, ...]]]:
    """The BFL-named transformer tensors of a `.gguf` or `.safetensors` file (prefix stripped;
    in an all-in-one file only the prefixed keys), and their shapes."""
    path = Path(path)
    if path.suffix.lower() == ".gguf":
        return _gguf_state(path, device, dtype, meta)
    header = read_header(path)
    prefixed = any(key.startswith(BFL_PREFIXES) for key in header.tensors)

    def rename(key: str) -> str | None:
        # In an all-in-one file only the prefixed keys are the transformer's (vae., text_encoders.…).
        if prefixed and not key.startswith(BFL_PREFIXES):
            return None
        return strip_bfl_prefix(key)

    shapes = {rename(k): tuple(t.shape) for k, t in header.tensors.items() if rename(k) is not None}
    shapes = {k: v for k, v in shapes.items()
              if k != "scaled_fp8" and not k.endswith((".scale_weight", ".scale_input"))}
    if meta:
        return _meta(shapes), shapes
    return _safetensors_state(path, device, dtype, rename), shapes


def load_transformer_file(path: str | Path, *, device: torch.device, dtype: torch.dtype,
                          axes_dim: tuple[int, ...] | None = None, report: dict | None = None,
                          meta: bool = False) -> FluxTransformer:
    """A FLUX.1 transformer from one file, its config read from the shapes. Compressed weights
    stay compressed; with `meta` nothing is read and key mismatches are only reported."""
    path = Path(path)
    report = report if report is not None else {}
    if axes_dim is None:  # the file's `canvasai.rope_axes` hint, else FLUX.1's (16, 56, 56)
        from .file_info import transformer_file_facts

        axes_dim = transformer_file_facts(path)["axes_dim"]
    state, shapes = transformer_state(path, device=device, dtype=dtype, meta=meta)
    try:
        config = flux_config_from_shapes(shapes, axes_dim)
    except ValueError as exc:
        raise UnsupportedModelError(f"{path.name}: {exc}") from None
    model = materialise_compressed(lambda: FluxTransformer(config), state, "transformer", path.name, dtype, report,
                                   inspect_only=meta)
    return model if meta else model.to(device)


# ----------------------------------------------------------------------------- autoencoder
def _strip_any(shapes_or_state: Mapping, prefixes: tuple[str, ...]) -> dict:
    for prefix in prefixes:
        if any(k.startswith(prefix) for k in shapes_or_state):
            return {k[len(prefix):]: v for k, v in shapes_or_state.items() if k.startswith(prefix)}
    return dict(shapes_or_state)


def load_ae_file(path: str | Path, *, device: torch.device, dtype: torch.dtype, report: dict,
                 meta: bool = False) -> AutoencoderKL:
    """BFL's `ae.safetensors`: LDM key names (encoder.down.N.block.M…, 1×1-conv attention), 16
    latent channels, no quant convs; scale 0.3611 and shift 0.1159 are FLUX.1's constants."""
    from ..loader import _materialise

    path = Path(path)
    header = read_header(path)
    shapes = _strip_any({k: tuple(t.shape) for k, t in header.tensors.items()}, _AE_PREFIXES)
    if "encoder.conv_in.weight" not in shapes or "decoder.conv_out.weight" not in shapes:
        raise UnsupportedModelError(f"{path.name}: not a FLUX.1 autoencoder (no encoder/decoder conv keys)")
    hints = detect.hints_from_metadata(header.metadata, path.name)
    config = replace(detect.detect_vae(shapes, path.name, AE_SCALE, hints.norm_groups), shift_factor=AE_SHIFT)
    if config.z_channels != 16:
        raise UnsupportedModelError(f"{path.name}: a {config.z_channels}-channel VAE; FLUX.1 needs its "
                                    "16-channel autoencoder (ae.safetensors)")
    if meta:
        state = _meta(shapes)
    else:  # only the autoencoder's tensors: in an all-in-one file the rest is the other components
        prefix = next((p for p in _AE_PREFIXES if any(k.startswith(p) for k in header.tensors)), "")
        state = dict(iter_tensors(path, dtype=dtype,
                                  rename=lambda k: k[len(prefix):] if k.startswith(prefix) else None))
    return _materialise(lambda: AutoencoderKL(config), state, "vae", path.name, report)


# ----------------------------------------------------------------------------- text encoders
def _marker_prefix(keys, marker: str) -> str | None:
    for key in keys:
        if key.endswith(marker):
            return key[: -len(marker)]
    return None


def load_clip_file(path: str | Path, *, device: torch.device, dtype: torch.dtype, report: dict,
                   meta: bool = False) -> CLIPTextModel:
    """`clip_l.safetensors`: transformers' CLIPTextModel keys (with or without the `text_model.`
    level, as transformers 5 saves them), maybe under a prefix (`text_encoders.clip_l.transformer.`,
    `cond_stage_model.transformer.`). FLUX uses the pooled output unprojected: a `text_projection`
    is dropped. Head width 64 (CLIP-L) unless the file's `canvasai.text_head_dim` metadata says so."""
    from ..convert import hf_clip_state
    from ..loader import _materialise

    path = Path(path)
    header = read_header(path)
    base = _marker_prefix(header.tensors, CLIP_MARKER)
    if base is None:
        raise UnsupportedModelError(f"{path.name}: not a CLIP text encoder (no {CLIP_MARKER})")
    prefix = base.removesuffix("text_model.")

    def keep(key: str) -> str | None:
        if not key.startswith(prefix):
            return None
        key = key[len(prefix):]
        if key.startswith("text_projection") or key.endswith(("position_ids", "logit_scale")):
            return None
        return key

    shapes = hf_clip_state({k2: tuple(t.shape) for k, t in header.tensors.items() if (k2 := keep(k)) is not None})
    hints = detect.hints_from_metadata(header.metadata, path.name)
    try:
        config = hf_clip_config(shapes, "clip_l", with_projection=False, head_dim=hints.text_head_dim or 64)
    except (KeyError, ValueError) as exc:
        raise UnsupportedModelError(f"{path.name}: incomplete CLIP text encoder ({exc})") from None
    if meta:
        state = _meta(shapes)
    else:
        state = hf_clip_state({k: (v.to(dtype) if v.is_floating_point() else v)
                               for k, v in iter_tensors(path, rename=keep)})
    return _materialise(lambda: CLIPTextModel(config), state, "text_encoder", path.name, report)


def t5_config_from_shapes(shapes: Mapping[str, tuple[int, ...]], source: str) -> T5Config:
    """T5 encoder config from key shapes: heads from the relative-attention bias table, the
    feed-forward kind from wi_0/wi_1 (v1.1, gated GELU) vs wi (v1.0, ReLU)."""
    try:
        vocab, width = shapes.get("shared.weight") or shapes["encoder.embed_tokens.weight"]
        buckets, heads = shapes["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
        inner = shapes[T5_MARKER][0]
        gated = "encoder.block.0.layer.1.DenseReluDense.wi_0.weight" in shapes
        d_ff = shapes["encoder.block.0.layer.1.DenseReluDense." + ("wi_0" if gated else "wi") + ".weight"][0]
    except (KeyError, ValueError) as exc:
        raise UnsupportedModelError(f"{source}: not a T5 encoder (no {exc})") from None
    layers = len({k.split(".")[2] for k in shapes if k.startswith("encoder.block.")})
    if inner % heads:
        raise ModelFormatError(f"{source}: T5 attention width {inner} is not divisible by {heads} heads")
    return T5Config(vocab_size=vocab, d_model=width, d_kv=inner // heads, d_ff=d_ff, num_layers=layers,
                    num_heads=heads, relative_attention_num_buckets=buckets, gated=gated,
                    activation="gelu_new" if gated else "relu")


_T5_PREFIXES = ("text_encoders.t5xxl.transformer.", "t5xxl.transformer.", "cond_stage_model.transformer.")


def load_t5_file(path: str | Path, *, device: torch.device, dtype: torch.dtype, report: dict,
                 meta: bool = False) -> T5Encoder:
    """`t5xxl_fp16.safetensors` / `t5xxl_fp8_e4m3fn(_scaled).safetensors`: transformers'
    T5EncoderModel keys. fp8 matrices stay fp8 and are widened per layer when run."""
    path = Path(path)
    header = read_header(path)
    raw_shapes = _strip_any({k: tuple(t.shape) for k, t in header.tensors.items()}, _T5_PREFIXES)
    shapes = {k: v for k, v in raw_shapes.items()
              if k != "scaled_fp8" and not k.endswith((".scale_weight", ".scale_input"))}
    config = t5_config_from_shapes(shapes, path.name)
    if meta:
        state: dict = t5_state(_meta(shapes))
    else:
        prefix = next((p for p in _T5_PREFIXES if any(k.startswith(p) for k in header.tensors)), "")
        rename = (lambda k: k[len(prefix):] if k.startswith(prefix) else None) if prefix else None
        state = t5_state(_safetensors_state(path, device, dtype, rename))
    return materialise_compressed(lambda: T5Encoder(config), state, "text_encoder_2", path.name, dtype, report,
                                  inspect_only=meta)
