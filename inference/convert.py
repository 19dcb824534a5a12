"""The unavoidable renamings: diffusers folders → LDM names, OpenCLIP → Hugging Face CLIP names.

Each function returns a new state dict in this engine's module layout; the caller loads it
strictly, so a missing or surplus key surfaces as an error instead of a silently random weight.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only annotations: model inspection runs these conversions without torch
    import torch

from . import schema
from .errors import UnsupportedModelError
from .models.configs import CLIPTextConfig, UNetConfig, VAEConfig

_RESNET_DIFFUSERS_TO_LDM = {
    "norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection",
}


def _as_list(value, length: int) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value] * length


# --------------------------------------------------------------------------- UNet
def unet_config_from_diffusers(cfg: Mapping, source: str = "unet/config.json") -> UNetConfig:
    """Map a diffusers UNet2DConditionModel config onto the LDM UNet, refusing what it cannot express."""
    schema.validate_unet_config(cfg, source)  # types, ranges and sizes first: one named line

    def refuse(what: str) -> None:
        raise UnsupportedModelError(f"{source}: {what} is not supported")

    down_types = list(cfg.get("down_block_types", ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"]))
    up_types = list(cfg.get("up_block_types", ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3))
    levels = len(down_types)
    for name in down_types:
        if name not in ("CrossAttnDownBlock2D", "DownBlock2D"):
            refuse(f"down block type {name!r}")
    expected_up = [t.replace("Down", "Up") for t in reversed(down_types)]
    if up_types != expected_up:
        refuse(f"up_block_types {up_types} (must mirror the down blocks)")
    checks = {
        "class_embed_type": None, "encoder_hid_dim": None,
        "dual_cross_attention": False, "only_cross_attention": False, "center_input_sample": False,
        "time_embedding_type": "positional", "flip_sin_to_cos": True, "freq_shift": 0,
        "resnet_time_scale_shift": "default", "act_fn": "silu", "conv_in_kernel": 3, "conv_out_kernel": 3,
    }
    for key, supported in checks.items():
        value = cfg.get(key, supported)
        if isinstance(value, list) and key == "only_cross_attention":
            value = any(value)
        if value != supported:
            refuse(f"{key}={value!r}")
    if cfg.get("norm_eps", 1e-5) != 1e-5:
        refuse(f"norm_eps={cfg['norm_eps']!r}")
    layers = cfg.get("layers_per_block", 2)
    if isinstance(layers, (list, tuple)):
        if len(set(layers)) != 1:
            refuse(f"layers_per_block={layers!r} (varying per level)")
        layers = layers[0]
    block_out = list(cfg.get("block_out_channels", [320, 640, 1280, 1280]))
    mc = block_out[0]
    if any(ch % mc for ch in block_out):
        refuse(f"block_out_channels={block_out} (not multiples of the first)")
    heads = cfg.get("num_attention_heads") or cfg.get("attention_head_dim", 8)
    heads = _as_list(heads, levels)
    input_depths, output_depths = _block_depths(cfg, down_types, int(layers), refuse)
    mid_type = cfg.get("mid_block_type", "UNetMidBlock2DCrossAttn")
    if mid_type not in ("UNetMidBlock2DCrossAttn", "UNetMidBlock2D", None):
        refuse(f"mid_block_type {mid_type!r}")
    if mid_type is None:
        refuse("a UNet without a middle block")
    mid_depth = 0
    if mid_type == "UNetMidBlock2DCrossAttn":  # diffusers gives it the last level's depth
        last = _as_list(cfg.get("transformer_layers_per_block", 1), levels)[-1]
        mid_depth = last[0] if isinstance(last, (list, tuple)) else last
    depth = [max(input_depths[level * layers:(level + 1) * layers]) for level in range(levels)]
    cross = cfg.get("cross_attention_dim", 1280)
    if isinstance(cross, (list, tuple)):
        if len(set(cross)) != 1:
            refuse(f"cross_attention_dim={cross!r}")
        cross = cross[0]
    adm = None
    add_type = cfg.get("addition_embed_type")
    if add_type == "text_time":
        adm = int(cfg["projection_class_embeddings_input_dim"])
        if cfg.get("addition_time_embed_dim", 256) != 256:
            refuse(f"addition_time_embed_dim={cfg['addition_time_embed_dim']}")
    elif add_type is not None:
        refuse(f"addition_embed_type {add_type!r}")
    return UNetConfig(
        in_channels=int(cfg.get("in_channels", 4)), out_channels=int(cfg.get("out_channels", 4)),
        model_channels=mc, channel_mult=tuple(ch // mc for ch in block_out), num_res_blocks=int(layers),
        transformer_depth=tuple(int(d) for d in depth), transformer_depth_middle=int(mid_depth),
        transformer_depth_input=input_depths, transformer_depth_output=output_depths,
        middle_block="res" if mid_type == "UNetMidBlock2D" else "cross_attn",
        num_heads=tuple(int(h) for h in heads), context_dim=int(cross),
        use_linear_in_transformer=bool(cfg.get("use_linear_projection", False)), adm_in_channels=adm,
        upcast_attention=bool(cfg.get("upcast_attention", False)), norm_groups=int(cfg.get("norm_num_groups", 32)),
        time_cond_proj_dim=int(cfg["time_cond_proj_dim"]) if cfg.get("time_cond_proj_dim") else None,
    ).normalised()


def _per_layer(value, count: int, refuse) -> list[int]:
    """One block's `transformer_layers_per_block` entry: a depth for all its layers, or one per layer."""
    if isinstance(value, (list, tuple)):
        if len(value) != count:
            refuse(f"{len(value)} transformer depths for a block of {count} layers")
        return [int(v) for v in value]
    return [int(value)] * count


def _block_depths(cfg: Mapping, down_types: list[str], layers: int, refuse) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Transformer depth of every down-block layer and every up-block layer, as diffusers builds
    them: `transformer_layers_per_block` per level (an int or one per layer), up blocks from
    `reverse_transformer_layers_per_block` or else the reversed per-level list."""
    levels = len(down_types)
    per_level = _as_list(cfg.get("transformer_layers_per_block", 1), levels)
    reverse = cfg.get("reverse_transformer_layers_per_block")
    if reverse is None:
        if any(isinstance(d, (list, tuple)) for d in per_level):
            refuse("per-layer transformer depths without reverse_transformer_layers_per_block")
        reverse = list(reversed(per_level))
    reverse = _as_list(reverse, levels)
    if len(per_level) != levels or len(reverse) != levels:
        refuse(f"transformer_layers_per_block for {len(per_level)} levels, not {levels}")
    has_attention = [t == "CrossAttnDownBlock2D" for t in down_types]
    down, up = [], []
    for level in range(levels):
        down += _per_layer(per_level[level], layers, refuse) if has_attention[level] else [0] * layers
        attention = has_attention[levels - 1 - level]
        up += _per_layer(reverse[level], layers + 1, refuse) if attention else [0] * (layers + 1)
    return tuple(down), tuple(up)


def _unet_prefix_map(c: UNetConfig) -> dict[str, str]:
    """diffusers module prefix → LDM module prefix for every block of this configuration."""
    per_level = c.num_res_blocks + 1
    levels = len(c.channel_mult)
    table = {
        "conv_in.": "input_blocks.0.0.", "time_embedding.linear_1.": "time_embed.0.",
        "time_embedding.linear_2.": "time_embed.2.", "time_embedding.cond_proj.": "time_cond_proj.",
        "add_embedding.linear_1.": "label_emb.0.0.",
        "add_embedding.linear_2.": "label_emb.0.2.", "conv_norm_out.": "out.0.", "conv_out.": "out.2.",
    }
    for level in range(levels):
        for j in range(c.num_res_blocks):
            n = 1 + level * per_level + j
            table[f"down_blocks.{level}.resnets.{j}."] = f"input_blocks.{n}.0."
            table[f"down_blocks.{level}.attentions.{j}."] = f"input_blocks.{n}.1."
        table[f"down_blocks.{level}.downsamplers.0.conv."] = f"input_blocks.{1 + level * per_level + c.num_res_blocks}.0.op."
    table["mid_block.resnets.0."] = "middle_block.0."
    if c.middle_block == "res":
        pass  # diffusers' UNetMidBlock2D: one ResBlock
    elif c.transformer_depth_middle:
        table["mid_block.attentions.0."] = "middle_block.1."
        table["mid_block.resnets.1."] = "middle_block.2."
    else:
        table["mid_block.resnets.1."] = "middle_block.1."
    output_depths = c.output_depths()
    for up in range(levels):
        has_attention = output_depths[up * per_level + c.num_res_blocks] > 0  # where the upsampler sits
        for j in range(per_level):
            n = up * per_level + j
            table[f"up_blocks.{up}.resnets.{j}."] = f"output_blocks.{n}.0."
            table[f"up_blocks.{up}.attentions.{j}."] = f"output_blocks.{n}.1."
        table[f"up_blocks.{up}.upsamplers.0.conv."] = (
            f"output_blocks.{up * per_level + c.num_res_blocks}.{2 if has_attention else 1}.conv.")
    return table


def _rename_by_prefix(state: Mapping[str, torch.Tensor], table: dict[str, str],
                      inner: Mapping[str, str] | None = None) -> dict[str, torch.Tensor]:
    """Rename keys by the longest matching prefix; unmatched keys are kept as they are (so that a
    strict load reports them as unexpected)."""
    prefixes = sorted(table, key=len, reverse=True)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new_key = key
        for prefix in prefixes:
            if key.startswith(prefix):
                rest = key[len(prefix):]
                if inner and ".resnets." in prefix:
                    head, _, tail = rest.partition(".")
                    rest = f"{inner.get(head, head)}.{tail}"
                new_key = table[prefix] + rest
                break
        out[new_key] = value
    return out


def unet_diffusers_to_ldm(state: Mapping[str, torch.Tensor], config: UNetConfig) -> dict[str, torch.Tensor]:
    return _rename_by_prefix(state, _unet_prefix_map(config), _RESNET_DIFFUSERS_TO_LDM)


# --------------------------------------------------------------------------- VAE
def vae_config_from_diffusers(cfg: Mapping, source: str = "vae/config.json") -> VAEConfig:
    schema.validate_vae_config(cfg, source)
    block_out = list(cfg.get("block_out_channels", [64]))
    ch = block_out[0]
    if any(b % ch for b in block_out):
        raise UnsupportedModelError(f"{source}: block_out_channels={block_out} is not supported")
    for key in ("down_block_types", "up_block_types"):
        for name in cfg.get(key, []):
            if name not in ("DownEncoderBlock2D", "UpDecoderBlock2D"):
                raise UnsupportedModelError(f"{source}: {key} entry {name!r} is not supported")
    return VAEConfig(
        in_channels=int(cfg.get("in_channels", 3)), out_channels=int(cfg.get("out_channels", 3)), ch=ch,
        ch_mult=tuple(b // ch for b in block_out), num_res_blocks=int(cfg.get("layers_per_block", 1)),
        z_channels=int(cfg.get("latent_channels", 4)), norm_groups=int(cfg.get("norm_num_groups", 32)),
        scaling_factor=float(cfg.get("scaling_factor", 0.18215)), shift_factor=cfg.get("shift_factor"),
        latents_mean=_floats(cfg.get("latents_mean"), source, "latents_mean"),
        latents_std=_floats(cfg.get("latents_std"), source, "latents_std"),
        use_quant_conv=bool(cfg.get("use_quant_conv", True)),
        use_post_quant_conv=bool(cfg.get("use_post_quant_conv", True)),
        mid_attention=bool(cfg.get("mid_block_add_attention", True)),
    )


def _floats(value, source: str, key: str) -> tuple[float, ...] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, (int, float)) for v in value):
        raise UnsupportedModelError(f"{source}: {key} must be a list of numbers")
    return tuple(float(v) for v in value)


_VAE_ATTENTION_NAMES = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out",
                        "query": "q", "key": "k", "value": "v", "proj_attn": "proj_out"}


def vae_prefix_table(config: VAEConfig) -> dict[str, str]:
    """diffusers VAE module prefix → LDM module prefix (LDM numbers decoder levels from the top)."""
    levels = len(config.ch_mult)
    table = {"encoder.conv_norm_out.": "encoder.norm_out.", "decoder.conv_norm_out.": "decoder.norm_out.",
             "encoder.mid_block.resnets.0.": "encoder.mid.block_1.", "encoder.mid_block.resnets.1.": "encoder.mid.block_2.",
             "decoder.mid_block.resnets.0.": "decoder.mid.block_1.", "decoder.mid_block.resnets.1.": "decoder.mid.block_2."}
    for level in range(levels):
        for j in range(config.num_res_blocks + 1):
            table[f"encoder.down_blocks.{level}.resnets.{j}."] = f"encoder.down.{level}.block.{j}."
            table[f"decoder.up_blocks.{level}.resnets.{j}."] = f"decoder.up.{levels - 1 - level}.block.{j}."
        table[f"encoder.down_blocks.{level}.downsamplers.0.conv."] = f"encoder.down.{level}.downsample.conv."
        table[f"decoder.up_blocks.{level}.upsamplers.0.conv."] = f"decoder.up.{levels - 1 - level}.upsample.conv."
    return table


def vae_diffusers_to_ldm(state: Mapping[str, torch.Tensor], config: VAEConfig) -> dict[str, torch.Tensor]:
    table = vae_prefix_table(config)
    out: dict[str, torch.Tensor] = {}
    for key, value in _rename_by_prefix(state, table).items():
        key = key.replace(".conv_shortcut.", ".nin_shortcut.")
        for side in ("encoder", "decoder"):
            prefix = f"{side}.mid_block.attentions.0."
            if key.startswith(prefix):
                rest = key[len(prefix):]
                name, _, param = rest.rpartition(".")
                key = f"{side}.mid.attn_1.{_VAE_ATTENTION_NAMES.get(name, name)}.{param}"
                if param == "weight" and value.dim() == 2:  # Linear → 1×1 conv
                    value = value[:, :, None, None]
        out[key] = value
    return out


# --------------------------------------------------------------------------- text encoders
def clip_config_from_transformers(cfg: Mapping, source: str = "text_encoder/config.json") -> CLIPTextConfig:
    schema.validate_text_config(cfg, source)
    if "text_config" in cfg:  # a full CLIPModel config
        cfg = cfg["text_config"]
    archs = cfg.get("architectures") or []
    with_projection = any("WithProjection" in a for a in archs)
    act = cfg.get("hidden_act", "quick_gelu")
    if act not in ("quick_gelu", "gelu"):
        raise UnsupportedModelError(f"{source}: hidden_act={act!r} is not supported")
    eos = int(cfg.get("eos_token_id", 49407))
    if eos == 2:  # legacy configs: transformers then pools at the highest token id, i.e. EOT
        eos = 49407
    return CLIPTextConfig(
        vocab_size=int(cfg.get("vocab_size", 49408)), hidden_size=int(cfg.get("hidden_size", 512)),
        intermediate_size=int(cfg.get("intermediate_size", 2048)),
        num_hidden_layers=int(cfg.get("num_hidden_layers", 12)),
        num_attention_heads=int(cfg.get("num_attention_heads", 8)),
        max_position_embeddings=int(cfg.get("max_position_embeddings", 77)), hidden_act=act,
        layer_norm_eps=float(cfg.get("layer_norm_eps", 1e-5)), eos_token_id=eos,
        projection_dim=int(cfg.get("projection_dim", 512)) if with_projection else None,
    )


# Keys that carry no weights we need: buffers some exporters include.
IGNORED_TEXT_KEYS = ("text_model.embeddings.position_ids", "logit_scale", "attn_mask")


def hf_clip_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF CLIP text weights, accepting the old layout without the `text_model.` level."""
    out = {}
    for key, value in state.items():
        if key.endswith("position_ids"):
            continue
        if not key.startswith(("text_model.", "text_projection")):
            key = "text_model." + key
        out[key] = value
    return out


def open_clip_to_hf(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenCLIP text tower (`transformer.resblocks.N…`, `positional_embedding`) → HF CLIP names."""
    renames = {"ln_1.": "layer_norm1.", "ln_2.": "layer_norm2.", "mlp.c_fc.": "mlp.fc1.",
               "mlp.c_proj.": "mlp.fc2.", "attn.out_proj.": "self_attn.out_proj."}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in ("positional_embedding",):
            out["text_model.embeddings.position_embedding.weight"] = value
        elif key == "token_embedding.weight":
            out["text_model.embeddings.token_embedding.weight"] = value
        elif key.startswith("ln_final."):
            out["text_model.final_layer_norm." + key[len("ln_final."):]] = value
        elif key == "text_projection":
            out["text_projection.weight"] = value.t().contiguous()
        elif key.startswith("transformer.resblocks."):
            index, _, rest = key[len("transformer.resblocks."):].partition(".")
            base = f"text_model.encoder.layers.{index}."
            if rest.startswith("attn.in_proj_"):
                kind = rest[len("attn.in_proj_"):]
                for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                    out[f"{base}self_attn.{name}.{kind}"] = part.contiguous()
                continue
            for old, new in renames.items():
                if rest.startswith(old):
                    rest = new + rest[len(old):]
                    break
            out[base + rest] = value
        elif key in ("logit_scale", "attn_mask"):
            continue
        else:
            out[key] = value  # surfaces as unexpected in the strict load
    return out


def open_clip_config(state_shapes: Mapping[str, tuple[int, ...]], with_projection: bool,
                     head_dim: int = 64) -> CLIPTextConfig:
    """Derive the text config of an OpenCLIP tower from its key shapes (OpenCLIP files carry no config).
    Heads are not in the weights: every published tower uses 64-wide heads."""
    width = state_shapes["token_embedding.weight"][1]
    layers = 1 + max(int(k.split(".")[2]) for k in state_shapes if k.startswith("transformer.resblocks."))
    return CLIPTextConfig(
        vocab_size=state_shapes["token_embedding.weight"][0], hidden_size=width,
        intermediate_size=state_shapes["transformer.resblocks.0.mlp.c_fc.weight"][0], num_hidden_layers=layers,
        num_attention_heads=max(1, width // head_dim), max_position_embeddings=state_shapes["positional_embedding"][0],
        hidden_act="gelu", eos_token_id=49407,
        projection_dim=state_shapes["text_projection"][1] if with_projection and "text_projection" in state_shapes else None,
    )


# --------------------------------------------------------------------------- TAESD
def taesd_diffusers_to_ours(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers AutoencoderTiny (`encoder.layers.N`, `decoder.layers.N`) → taesd indices."""
    out = {}
    for key, value in state.items():
        if key.startswith("encoder.layers."):
            out["encoder." + key[len("encoder.layers."):]] = value
        elif key.startswith("decoder.layers."):
            index, _, rest = key[len("decoder.layers."):].partition(".")
            out[f"decoder.{int(index) + 1}.{rest}"] = value  # diffusers applies the clamp in forward
        else:
            out[key] = value
    return out
