"""Validators for the model configuration we read from files, run before anything is built.

* `validate_unet_config(raw, source)` — a diffusers `unet/config.json` (UNet2DConditionModel);
* `validate_vae_config(raw, source)` — `vae/config.json` (AutoencoderKL);
* `validate_text_config(raw, source)` — `text_encoder*/config.json` (transformers CLIPTextModel /
  CLIPTextModelWithProjection, or a full CLIPModel config with a `text_config`);
* `validate_scheduler_config(raw, source)` — `scheduler/scheduler_config.json`;
* `validate_metadata_hints(metadata, source)` — the `canvasai.*` keys of a safetensors
  `__metadata__` (see `inference.detect.FileHints`).

Each checks types (an int is not a bool, a float is finite), ranges (positive counts; sizes up to
the largest published models times a generous headroom, so a config cannot make us allocate
terabytes) and the rules between fields (channels divisible by the norm groups and heads, list
lengths equal to the block counts, beta_start < beta_end...). A violation is a ModelFormatError
of one line naming the file and the field: `unet/config.json: block_out_channels[1]=63 is not
divisible by norm_num_groups=32`. What they accept is what `inference.convert` and
`inference.samplers.config` can read without a TypeError, IndexError or ZeroDivisionError; whether
the engine supports an accepted architecture is still theirs to say (UnsupportedModelError).
Keys these validators do not know are ignored (configs carry many). Torch-free.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from inference.errors import ModelFormatError

# Largest published values, times headroom. SDXL: 2.6 B UNet parameters, channels 1280, 10
# transformer layers, cross-attention 2048, text_time input 2816; OpenCLIP-bigG: 1280 wide, 32
# layers; VAEs: 512 channels, 16 latent channels (SD3/Flux).
MAX_LEVELS = 8
MAX_CHANNELS = 16_384
MAX_IO_CHANNELS = 256
MAX_LAYERS_PER_BLOCK = 16
MAX_TRANSFORMER_DEPTH = 64
MAX_HEADS = 1_024
MAX_HEAD_DIM = 4_096
MAX_CROSS_DIM = 16_384
MAX_EMBED_INPUT = 65_536
MAX_SAMPLE_SIZE = 8_192
MAX_NORM_GROUPS = 1_024
MAX_UNET_PARAMETERS = 20e9
MAX_VAE_PARAMETERS = 2e9
MAX_TEXT_PARAMETERS = 20e9
MAX_TEXT_LAYERS = 256
MAX_VOCAB = 1_000_000
MAX_POSITIONS = 8_192
MAX_TRAIN_TIMESTEPS = 10_000
MAX_METADATA_VALUE = 1_000

_SHOWN = 60


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 4] + "…" + text[-3:]


class _Checker:
    def __init__(self, raw: Any, source: str, what: str) -> None:
        self.source = str(source).replace("\n", "\\n").replace("\r", "\\r")
        if not isinstance(raw, Mapping):
            self.fail_plain(f"expected a JSON object ({what}), got {type(raw).__name__}")
        for key in raw:
            if not isinstance(key, str):
                self.fail_plain(f"key {_show(key)} is not a string")
        self.raw = raw

    def fail_plain(self, text: str) -> None:
        raise ModelFormatError(f"{self.source}: {text}")

    def fail(self, field: str, value: Any, problem: str) -> None:
        raise ModelFormatError(f"{self.source}: {field}={_show(value)} {problem}")

    def not_null(self, *keys: str) -> None:
        """These keys may be absent (the reader's default applies) but not null."""
        for key in keys:
            if key in self.raw and self.raw[key] is None:
                self.fail(key, None, "is null (leave it out for the default)")

    def has(self, key: str) -> bool:
        return self.raw.get(key) is not None

    # -- scalar checks: each returns the value (or the default when absent/None) ---------------
    def integer(self, value: Any, field: str, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(field, value, "is not an integer")
        if not low <= value <= high:
            self.fail(field, value, f"is out of range ({low}..{high})")
        return value

    def number(self, value: Any, field: str, low: float, high: float, *, low_open: bool = False,
               high_open: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(field, value, "is not a number")
        if not math.isfinite(value):
            self.fail(field, value, "is not finite")
        if value < low or value > high or (low_open and value == low) or (high_open and value == high):
            lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
            self.fail(field, value, f"is out of range {lo}{low:g}, {high:g}{hi}")
        return float(value)

    def int_key(self, key: str, low: int, high: int, default: int | None = None) -> int | None:
        value = self.raw.get(key)
        return default if value is None else self.integer(value, key, low, high)

    def num_key(self, key: str, low: float, high: float, default: float | None = None, **kw) -> float | None:
        value = self.raw.get(key)
        return default if value is None else self.number(value, key, low, high, **kw)

    def bool_key(self, key: str) -> None:
        value = self.raw.get(key)
        if value is not None and not isinstance(value, bool):
            self.fail(key, value, "is not true/false")

    def str_key(self, key: str, max_length: int = 200) -> str | None:
        value = self.raw.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            self.fail(key, value, "is not a string")
        if len(value) > max_length:
            self.fail(key, value, f"is longer than {max_length} characters")
        return value

    def str_list(self, key: str, default: list[str] | None) -> list[str] | None:
        value = self.raw.get(key)
        if value is None:
            return default
        if not isinstance(value, (list, tuple)):
            self.fail(key, value, "is not a list")
        if not 1 <= len(value) <= MAX_LEVELS:
            self.fail(key, value, f"must list 1..{MAX_LEVELS} blocks")
        for i, item in enumerate(value):
            if not isinstance(item, str) or len(item) > 200:
                self.fail(f"{key}[{i}]", item, "is not a block type name")
        return list(value)

    def int_list(self, key: str, low: int, high: int, default: list[int] | None, length: int | None = None,
                 min_length: int = 1, max_length: int = MAX_LEVELS) -> list[int] | None:
        value = self.raw.get(key)
        if value is None:
            return default
        if not isinstance(value, (list, tuple)):
            self.fail(key, value, "is not a list")
        if length is not None and len(value) != length:
            self.fail(key, value, f"has {len(value)} entries; expected {length}")
        if not min_length <= len(value) <= max_length:
            self.fail(key, value, f"must have {min_length}..{max_length} entries")
        return [self.integer(v, f"{key}[{i}]", low, high) for i, v in enumerate(value)]

    def int_or_list(self, key: str, low: int, high: int, levels: int, default: int | None) -> list[int] | None:
        """An int for every level, or a list with one per level."""
        value = self.raw.get(key)
        if value is None:
            return None if default is None else [default] * levels
        if isinstance(value, (list, tuple)):
            return self.int_list(key, low, high, None, length=levels)
        return [self.integer(value, key, low, high)] * levels


# ============================================================================== UNet
_UNET_BOOLS = ("use_linear_projection", "upcast_attention", "center_input_sample", "flip_sin_to_cos",
               "dual_cross_attention", "resnet_skip_time_act", "mid_block_only_cross_attention",
               "class_embeddings_concat", "cross_attention_norm_is_none")
_UNET_STRINGS = ("mid_block_type", "act_fn", "time_embedding_type", "resnet_time_scale_shift", "addition_embed_type",
                 "class_embed_type", "encoder_hid_dim_type", "attention_type", "_class_name", "_diffusers_version",
                 "timestep_post_act", "time_embedding_act_fn", "addition_embed_type_num_heads")


def validate_unet_config(raw: Mapping, source: str = "unet/config.json") -> None:
    """ModelFormatError (one line, naming `source` and the field) unless `raw` is a sane
    UNet2DConditionModel config; see the module docstring."""
    c = _Checker(raw, source, "a UNet2DConditionModel config")
    c.not_null("in_channels", "out_channels", "block_out_channels", "layers_per_block", "down_block_types",
               "up_block_types", "norm_num_groups", "norm_eps", "cross_attention_dim", "transformer_layers_per_block")
    if raw.get("num_attention_heads") is None:
        c.not_null("attention_head_dim")
    for key in _UNET_BOOLS:
        c.bool_key(key)
    for key in _UNET_STRINGS:
        if key == "addition_embed_type_num_heads":
            c.int_key(key, 1, MAX_HEADS)
        else:
            c.str_key(key)
    down = c.str_list("down_block_types", ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"])
    levels = len(down)
    up = c.str_list("up_block_types", None)
    if up is not None and len(up) != levels:
        c.fail("up_block_types", raw["up_block_types"], f"has {len(up)} blocks; down_block_types has {levels}")
    block_out = c.int_list("block_out_channels", 1, MAX_CHANNELS, [320, 640, 1280, 1280])
    if len(block_out) != levels:
        c.fail("block_out_channels", raw.get("block_out_channels", block_out),
               f"has {len(block_out)} entries; down_block_types has {levels} blocks")
    c.int_key("in_channels", 1, MAX_IO_CHANNELS)
    c.int_key("out_channels", 1, MAX_IO_CHANNELS)
    sample = raw.get("sample_size")
    if sample is not None:
        if isinstance(sample, (list, tuple)):
            c.int_list("sample_size", 1, MAX_SAMPLE_SIZE, None, length=2)
        else:
            c.integer(sample, "sample_size", 1, MAX_SAMPLE_SIZE)
    groups = c.int_key("norm_num_groups", 1, MAX_NORM_GROUPS, 32)
    c.num_key("norm_eps", 0.0, 1.0, low_open=True, high_open=True)
    layers = c.int_or_list("layers_per_block", 1, MAX_LAYERS_PER_BLOCK, levels, 2)
    c.int_key("freq_shift", -MAX_CHANNELS, MAX_CHANNELS)
    c.int_key("conv_in_kernel", 1, 15)
    c.int_key("conv_out_kernel", 1, 15)
    c.int_key("downsample_padding", 0, 15)
    c.int_key("time_embedding_dim", 1, 4 * MAX_CHANNELS)
    c.int_key("time_cond_proj_dim", 1, MAX_EMBED_INPUT)
    c.int_key("projection_class_embeddings_input_dim", 1, MAX_EMBED_INPUT)
    c.int_key("addition_time_embed_dim", 1, MAX_EMBED_INPUT)
    c.int_key("encoder_hid_dim", 1, MAX_CROSS_DIM)
    c.int_key("num_class_embeds", 1, MAX_EMBED_INPUT)
    c.num_key("dropout", 0.0, 1.0)
    if raw.get("addition_embed_type") == "text_time" and not c.has("projection_class_embeddings_input_dim"):
        c.fail("projection_class_embeddings_input_dim", None, "is required by addition_embed_type='text_time'")
    only_cross = raw.get("only_cross_attention")
    if isinstance(only_cross, (list, tuple)):
        if len(only_cross) != levels or not all(isinstance(v, bool) for v in only_cross):
            c.fail("only_cross_attention", only_cross, f"must be true/false or {levels} of them")
    elif only_cross is not None and not isinstance(only_cross, bool):
        c.fail("only_cross_attention", only_cross, "is not true/false")
    cross = c.int_or_list("cross_attention_dim", 1, MAX_CROSS_DIM, levels, 1280)
    # diffusers' historical naming: `attention_head_dim` holds the number of heads unless
    # `num_attention_heads` is given.
    heads_key = "num_attention_heads" if c.has("num_attention_heads") else "attention_head_dim"
    heads = c.int_or_list(heads_key, 1, MAX_HEADS if heads_key == "num_attention_heads" else MAX_HEAD_DIM,
                          levels, 8)
    if c.has("num_attention_heads"):
        c.int_or_list("attention_head_dim", 1, MAX_HEAD_DIM, levels, None)
    depth = _transformer_depths(c, "transformer_layers_per_block", levels, layers, False)
    if c.has("reverse_transformer_layers_per_block"):
        _transformer_depths(c, "reverse_transformer_layers_per_block", levels, layers, True)
    attention = [name.startswith("CrossAttn") for name in down]
    for i, ch in enumerate(block_out):
        if ch % groups:
            c.fail(f"block_out_channels[{i}]", ch, f"is not divisible by norm_num_groups={groups}")
        if attention[i] and ch % heads[i]:
            c.fail(f"block_out_channels[{i}]", ch, f"is not divisible by {heads_key}={heads[i]} (its heads)")
    if raw.get("mid_block_type", "UNetMidBlock2DCrossAttn") == "UNetMidBlock2DCrossAttn" and block_out[-1] % heads[-1]:
        c.fail(f"block_out_channels[{levels - 1}]", block_out[-1],
               f"is not divisible by {heads_key}={heads[-1]} (the middle block's heads)")
    # Size: resnets (two 3×3 convs) and transformers (attention + feed-forward + cross-attention).
    total = 0.0
    for level, ch in enumerate(block_out):
        blocks = 2 * layers[level] + 1  # down blocks + up blocks (one more each)
        total += blocks * 18.0 * ch * ch
        if attention[level]:
            total += blocks * max(depth[level], 1) * (12.0 * ch * ch + 2.0 * ch * cross[level])
    if total > MAX_UNET_PARAMETERS:
        c.fail("block_out_channels", list(block_out),
               f"with these depths makes a UNet of about {total / 1e9:.0f} billion parameters "
               f"(limit {MAX_UNET_PARAMETERS / 1e9:.0f} billion)")


def _transformer_depths(c: _Checker, key: str, levels: int, layers: list[int], reverse: bool) -> list[int]:
    """Max transformer depth per level; entries are an int or a list with one per layer."""
    value = c.raw.get(key)
    if value is None:
        return [1] * levels
    items = value if isinstance(value, (list, tuple)) else [value] * levels
    if isinstance(value, (list, tuple)) and len(value) != levels:
        c.fail(key, value, f"has {len(value)} entries; expected {levels} (one per block)")
    out = []
    for level, item in enumerate(items):
        field = f"{key}[{level}]" if isinstance(value, (list, tuple)) else key
        if isinstance(item, (list, tuple)):
            per_block = layers[levels - 1 - level] + 1 if reverse else layers[level]
            if len(item) != per_block:
                c.fail(field, item, f"has {len(item)} depths for a block of {per_block} layers")
            depths = [c.integer(d, f"{field}[{i}]", 0, MAX_TRANSFORMER_DEPTH) for i, d in enumerate(item)]
            out.append(max(depths))
        else:
            out.append(c.integer(item, field, 0, MAX_TRANSFORMER_DEPTH))
    return out


# ============================================================================== VAE
def validate_vae_config(raw: Mapping, source: str = "vae/config.json") -> None:
    """ModelFormatError unless `raw` is a sane AutoencoderKL config."""
    c = _Checker(raw, source, "an AutoencoderKL config")
    c.not_null("in_channels", "out_channels", "block_out_channels", "layers_per_block", "latent_channels",
               "norm_num_groups", "scaling_factor", "down_block_types", "up_block_types")
    for key in ("use_quant_conv", "use_post_quant_conv", "mid_block_add_attention", "force_upcast"):
        c.bool_key(key)
    for key in ("act_fn", "_class_name", "_diffusers_version"):
        c.str_key(key)
    down = c.str_list("down_block_types", None)
    up = c.str_list("up_block_types", None)
    block_out = c.int_list("block_out_channels", 1, MAX_CHANNELS, [64])
    levels = len(block_out)
    for key, names in (("down_block_types", down), ("up_block_types", up)):
        if names is not None and len(names) != levels:
            c.fail(key, raw[key], f"has {len(names)} blocks; block_out_channels has {levels}")
    c.int_key("in_channels", 1, MAX_IO_CHANNELS)
    c.int_key("out_channels", 1, MAX_IO_CHANNELS)
    latent = c.int_key("latent_channels", 1, MAX_IO_CHANNELS, 4)
    layers = c.int_key("layers_per_block", 1, MAX_LAYERS_PER_BLOCK, 1)
    groups = c.int_key("norm_num_groups", 1, MAX_NORM_GROUPS, 32)
    sample = raw.get("sample_size")
    if sample is not None:
        if isinstance(sample, (list, tuple)):
            c.int_list("sample_size", 1, MAX_SAMPLE_SIZE * 8, None, length=2)
        else:
            c.integer(sample, "sample_size", 1, MAX_SAMPLE_SIZE * 8)
    c.num_key("scaling_factor", 0.0, 100.0, low_open=True)
    c.num_key("shift_factor", -100.0, 100.0)
    for key, positive in (("latents_mean", False), ("latents_std", True)):
        value = raw.get(key)
        if value is None:
            continue
        if not isinstance(value, (list, tuple)) or len(value) != latent:
            c.fail(key, value, f"must be a list of {latent} numbers (latent_channels)")
        for i, v in enumerate(value):
            c.number(v, f"{key}[{i}]", 0.0 if positive else -1e4, 1e4, low_open=positive)
    for i, ch in enumerate(block_out):
        if ch % groups:
            c.fail(f"block_out_channels[{i}]", ch, f"is not divisible by norm_num_groups={groups}")
    total = sum((2 * layers + 3) * 18.0 * ch * ch for ch in block_out)
    if total > MAX_VAE_PARAMETERS:
        c.fail("block_out_channels", list(block_out),
               f"makes a VAE of about {total / 1e9:.1f} billion parameters (limit {MAX_VAE_PARAMETERS / 1e9:.0f} billion)")


# ============================================================================== CLIP text encoder
def validate_text_config(raw: Mapping, source: str = "text_encoder/config.json") -> None:
    """ModelFormatError unless `raw` is a sane CLIPTextConfig (or a CLIPModel config's text part)."""
    c = _Checker(raw, source, "a CLIP text encoder config")
    if "text_config" in raw:
        c = _Checker(raw["text_config"], f"{c.source}: text_config", "a CLIP text config")
    c.not_null("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
               "max_position_embeddings", "layer_norm_eps", "eos_token_id")
    archs_value = c.raw.get("architectures") or []
    if isinstance(archs_value, (list, tuple)) and any("WithProjection" in str(a) for a in archs_value):
        c.not_null("projection_dim")
    archs = c.raw.get("architectures")
    if archs is not None:
        if not isinstance(archs, (list, tuple)) or not all(isinstance(a, str) and len(a) <= 200 for a in archs) \
                or len(archs) > 16:
            c.fail("architectures", archs, "is not a list of class names")
    for key in ("hidden_act", "model_type", "torch_dtype", "_name_or_path", "transformers_version"):
        c.str_key(key, 1_000)
    vocab = c.int_key("vocab_size", 1, MAX_VOCAB, 49408)
    hidden = c.int_key("hidden_size", 1, MAX_CHANNELS, 512)
    inter = c.int_key("intermediate_size", 1, 8 * MAX_CHANNELS, 2048)
    layers = c.int_key("num_hidden_layers", 1, MAX_TEXT_LAYERS, 12)
    heads = c.int_key("num_attention_heads", 1, MAX_HEADS, 8)
    positions = c.int_key("max_position_embeddings", 1, MAX_POSITIONS, 77)
    c.int_key("projection_dim", 1, MAX_CHANNELS)
    c.num_key("layer_norm_eps", 0.0, 1.0, low_open=True, high_open=True)
    c.num_key("initializer_range", 0.0, 100.0)
    c.num_key("initializer_factor", 0.0, 100.0)
    c.num_key("attention_dropout", 0.0, 1.0)
    c.num_key("dropout", 0.0, 1.0)
    for key in ("eos_token_id", "bos_token_id", "pad_token_id"):
        c.int_key(key, 0, max(vocab, 49408) - 1)
    if hidden % heads:
        c.fail("hidden_size", hidden, f"is not divisible by num_attention_heads={heads}")
    total = layers * (4.0 * hidden * hidden + 2.0 * hidden * inter) + (vocab + positions) * hidden
    if total > MAX_TEXT_PARAMETERS:
        c.fail("hidden_size", hidden, f"with these sizes makes a text encoder of about {total / 1e9:.0f} billion "
                                      f"parameters (limit {MAX_TEXT_PARAMETERS / 1e9:.0f} billion)")


# ============================================================================== scheduler
_SCHEDULER_BOOLS = ("clip_sample", "set_alpha_to_one", "thresholding", "rescale_betas_zero_snr", "use_karras_sigmas",
                    "use_exponential_sigmas", "use_beta_sigmas", "use_lu_lambdas", "use_flow_sigmas",
                    "lower_order_final", "euler_at_final", "skip_prk_steps")
_SCHEDULER_STRINGS = ("_class_name", "_diffusers_version", "beta_schedule", "prediction_type", "timestep_spacing",
                      "interpolation_type", "timestep_type", "final_sigmas_type", "algorithm_type", "solver_type",
                      "sigma_schedule", "variance_type")


def validate_scheduler_config(raw: Mapping, source: str = "scheduler/scheduler_config.json") -> None:
    """ModelFormatError unless `raw` is a sane diffusers scheduler config. Keys listed in
    `_use_default_values` are skipped, as diffusers' `from_config` drops them."""
    c = _Checker(raw, source, "a scheduler config")
    dropped = raw.get("_use_default_values")
    if dropped is not None:
        if not isinstance(dropped, (list, tuple)) or not all(isinstance(k, str) for k in dropped):
            c.fail("_use_default_values", dropped, "is not a list of key names")
        c.raw = {k: v for k, v in raw.items() if k not in set(dropped)}
    for key in _SCHEDULER_BOOLS:
        c.bool_key(key)
    for key in _SCHEDULER_STRINGS:
        c.str_key(key)
    steps = c.int_key("num_train_timesteps", 2, MAX_TRAIN_TIMESTEPS, 1000)
    c.int_key("steps_offset", 0, steps - 1)
    c.int_key("solver_order", 1, 3)
    c.int_key("original_inference_steps", 1, steps)
    c.num_key("timestep_scaling", 0.0, 1e6, low_open=True)
    c.num_key("clip_sample_range", 0.0, 1e6, low_open=True)
    c.num_key("sample_max_value", 0.0, 1e6, low_open=True)
    c.num_key("dynamic_thresholding_ratio", 0.0, 1.0, low_open=True)
    c.num_key("rho", 0.0, 1e3, low_open=True)
    c.num_key("sigma_data", 0.0, 1e6, low_open=True)
    lam = c.raw.get("lambda_min_clipped")
    if lam is not None and (isinstance(lam, bool) or not isinstance(lam, (int, float)) or math.isnan(lam)):
        c.fail("lambda_min_clipped", lam, "is not a number")
    sigma_min = c.num_key("sigma_min", 0.0, 1e6, low_open=True)
    sigma_max = c.num_key("sigma_max", 0.0, 1e6, low_open=True)
    if sigma_min is not None and sigma_max is not None and sigma_min >= sigma_max:
        c.fail("sigma_min", sigma_min, f"must be below sigma_max={sigma_max:g}")
    betas = c.raw.get("trained_betas")
    if betas is not None:
        if not isinstance(betas, (list, tuple)) or len(betas) != steps:
            c.fail("trained_betas", betas, f"must be a list of num_train_timesteps={steps} numbers")
        for i, beta in enumerate(betas):
            c.number(beta, f"trained_betas[{i}]", 0.0, 1.0, low_open=True, high_open=True)
    start = c.num_key("beta_start", 0.0, 1.0, low_open=True, high_open=True)
    end = c.num_key("beta_end", 0.0, 1.0, low_open=True, high_open=True)
    if start is not None and end is not None and not start < end:
        c.fail("beta_start", start, f"must be below beta_end={end:g}")


# ============================================================================== safetensors metadata
_UINT = re.compile(r"[0-9]{1,9}\Z")
_HINT_LIMITS = {
    "canvasai.head_dim": MAX_HEAD_DIM,
    "canvasai.text_head_dim": MAX_HEAD_DIM,
    "canvasai.norm_groups": MAX_NORM_GROUPS,
}


def validate_metadata_hints(metadata: Mapping, source: str) -> None:
    """ModelFormatError unless the `canvasai.*` keys of a safetensors `__metadata__` are numbers
    in range: head_dim, text_head_dim (1..4096), norm_groups (1..1024), num_heads (1..8 comma-
    separated values, each 1..1024). Other keys are not looked at."""
    c = _Checker(metadata, source, "safetensors metadata")
    for key, value in metadata.items():
        if not key.startswith("canvasai."):
            continue
        if not isinstance(value, str):
            c.fail(f"metadata {key}", value, "is not a string")
        if len(value) > MAX_METADATA_VALUE:
            c.fail(f"metadata {key}", value, f"is longer than {MAX_METADATA_VALUE} characters")
        if key == "canvasai.num_heads":
            parts = value.split(",")
            if len(parts) > MAX_LEVELS:
                c.fail(f"metadata {key}", value, f"has {len(parts)} values (at most {MAX_LEVELS}, one per level)")
            for part in parts:
                if not _UINT.match(part.strip()) or not 1 <= int(part.strip()) <= MAX_HEADS:
                    c.fail(f"metadata {key}", value, f"must be 1..{MAX_LEVELS} comma-separated integers in 1..{MAX_HEADS}")
        elif key in _HINT_LIMITS:
            limit = _HINT_LIMITS[key]
            if not _UINT.match(value.strip()) or not 1 <= int(value.strip()) <= limit:
                c.fail(f"metadata {key}", value, f"must be an integer in 1..{limit}")


__all__ = ["validate_metadata_hints", "validate_scheduler_config", "validate_text_config", "validate_unet_config",
           "validate_vae_config"]
