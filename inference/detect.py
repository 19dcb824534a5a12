"""Architecture detection: key names and shapes → plain configuration dicts. Touches no tensor data."""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from . import schema
from .errors import UnsupportedModelError
from .models.configs import UNetConfig, VAEConfig

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."

Shapes = Mapping[str, tuple[int, ...]]


def strip_prefix(shapes: Mapping, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in shapes.items() if k.startswith(prefix)}


def _count(shapes: Shapes, pattern: str) -> int:
    regex = re.compile(pattern)
    found = {m.group(1) for k in shapes if (m := regex.match(k))}
    return len(found)


@dataclass(frozen=True)
class FileHints:
    """What a single file's safetensors `__metadata__` says about facts its weights cannot show.

    Standard keys (Stability's ModelSpec): `modelspec.architecture` (e.g. `stable-diffusion-v1`,
    `stable-diffusion-v2-768-v`, `stable-diffusion-xl-v1-base`) names the family and, for SD2,
    the prediction type; `modelspec.prediction_type` (`epsilon` or `v`). Our own keys, needed only
    by non-standard sizes (test and house models): `canvasai.head_dim` (UNet attention head width),
    `canvasai.num_heads` (UNet heads, one number or one per level), `canvasai.text_head_dim` (text
    encoder head width, 64 in every published encoder), `canvasai.norm_groups` (GroupNorm groups of
    the UNet and the VAE, 32 in every published model).
    """

    family: str | None = None
    prediction_type: str | None = None
    head_dim: int | None = None
    num_heads: tuple[int, ...] | None = None
    text_head_dim: int | None = None
    norm_groups: int | None = None
    architecture: str | None = None


# ModelSpec architecture (before any `/adapter` suffix) → (family, prediction type it implies).
_MODELSPEC_ARCHITECTURES = (
    ("stable-diffusion-xl-v1-refiner", "sdxl_refiner", None),
    ("stable-diffusion-xl-v1", "sdxl", None),
    ("stable-diffusion-v2-768-v", "sd2", "v_prediction"),
    ("stable-diffusion-v2-512", "sd2", "epsilon"),
    ("stable-diffusion-v2", "sd2", None),
    ("stable-diffusion-v1", "sd1", None),
)
_PREDICTION_NAMES = {"epsilon": "epsilon", "eps": "epsilon", "v": "v_prediction", "v_prediction": "v_prediction"}


def _positive_int(value: str | None, key: str, source: str) -> int | None:
    if value is None:
        return None
    if not re.fullmatch(r"[0-9]{1,9}", value.strip()) or int(value) < 1:
        raise UnsupportedModelError(f"{source}: metadata {key}={value!r} is not a positive integer")
    return int(value)


def hints_from_metadata(metadata: Mapping[str, str], source: str) -> FileHints:
    """Parse the `__metadata__` keys described on `FileHints`; unknown keys are ignored."""
    schema.validate_metadata_hints(metadata, source)
    family = prediction = None
    architecture = metadata.get("modelspec.architecture")
    if architecture:
        base = architecture.split("/", 1)[0].strip().lower()
        for prefix, name, implied in _MODELSPEC_ARCHITECTURES:
            if base.startswith(prefix):
                family, prediction = name, implied
                break
    declared = metadata.get("modelspec.prediction_type")
    if declared:
        if declared.strip().lower() not in _PREDICTION_NAMES:
            raise UnsupportedModelError(f"{source}: metadata modelspec.prediction_type={declared!r} is not supported")
        prediction = _PREDICTION_NAMES[declared.strip().lower()]
    heads = metadata.get("canvasai.num_heads")
    num_heads = None
    if heads is not None:
        num_heads = tuple(_positive_int(part, "canvasai.num_heads", source) for part in heads.split(","))
    return FileHints(family=family, prediction_type=prediction,
                     head_dim=_positive_int(metadata.get("canvasai.head_dim"), "canvasai.head_dim", source),
                     num_heads=num_heads,
                     text_head_dim=_positive_int(metadata.get("canvasai.text_head_dim"), "canvasai.text_head_dim",
                                                 source),
                     norm_groups=_positive_int(metadata.get("canvasai.norm_groups"), "canvasai.norm_groups", source),
                     architecture=architecture)


def detect_unet(shapes: Shapes, source: str, head_dim: int | None = None, num_heads: tuple[int, ...] | None = None,
                norm_groups: int | None = None) -> UNetConfig:
    """LDM UNet keys (prefix stripped) → UNetConfig, by walking `input_blocks`.

    Head counts and GroupNorm groups are not in the weights: `num_heads` (one value or one per
    level), `head_dim` and `norm_groups` override the published models' conventions."""
    try:
        conv_in = shapes["input_blocks.0.0.weight"]
        model_channels, in_channels = conv_in[0], conv_in[1]
        out_channels = shapes["out.2.weight"][0]
    except KeyError as missing:
        raise UnsupportedModelError(f"{source}: no UNet input/output convolution ({missing.args[0]})") from None
    n_inputs = _count(shapes, r"input_blocks\.(\d+)\.")
    channel_mult: list[int] = []
    res_blocks_per_level: list[int] = []
    input_depths: list[int] = []
    current_res, current_mult = 0, 0
    context_dim = None
    use_linear = False
    for n in range(1, n_inputs):
        if f"input_blocks.{n}.0.op.weight" in shapes:
            channel_mult.append(current_mult)
            res_blocks_per_level.append(current_res)
            current_res = 0
            continue
        out_w = shapes.get(f"input_blocks.{n}.0.out_layers.3.weight")
        if out_w is None:
            raise UnsupportedModelError(f"{source}: unrecognised UNet block input_blocks.{n}")
        current_res += 1
        current_mult = out_w[0] // model_channels
        blocks = _count(shapes, rf"input_blocks\.{n}\.1\.transformer_blocks\.(\d+)\.")
        input_depths.append(blocks)
        if blocks:
            context_dim = shapes[f"input_blocks.{n}.1.transformer_blocks.0.attn2.to_k.weight"][1]
            use_linear = len(shapes[f"input_blocks.{n}.1.proj_in.weight"]) == 2
    channel_mult.append(current_mult)
    res_blocks_per_level.append(current_res)
    if len(set(res_blocks_per_level)) != 1:
        raise UnsupportedModelError(f"{source}: varying res blocks per level {res_blocks_per_level}")
    if context_dim is None:
        raise UnsupportedModelError(f"{source}: UNet without cross-attention")
    per_level = res_blocks_per_level[0]
    # The per-level depth (kept for the per-level fields) is the deepest block of the level.
    depth = [max(input_depths[level * per_level:(level + 1) * per_level]) for level in range(len(channel_mult))]
    output_depths = _output_depths(shapes, len(channel_mult) * (per_level + 1), source)
    middle_block, middle_depth = _middle_block(shapes, source)
    adm = shapes.get("label_emb.0.0.weight")
    # Head counts are not stored in the weights: SD1 uses 8 heads, SD2/SDXL 64-wide heads (the
    # linear projection is their marker). Files that differ say so in metadata (`FileHints`).
    widths = [model_channels * m for m in channel_mult]
    if num_heads:
        if len(num_heads) not in (1, len(widths)):
            raise UnsupportedModelError(f"{source}: {len(num_heads)} head counts for {len(widths)} UNet levels")
        heads = list(num_heads) * len(widths) if len(num_heads) == 1 else list(num_heads)
    elif head_dim:
        heads = [max(1, w // head_dim) for w in widths]
    elif use_linear:
        heads = [max(1, w // 64) for w in widths]
    else:
        heads = [8] * len(widths)
    return UNetConfig(
        in_channels=in_channels, out_channels=out_channels, model_channels=model_channels,
        channel_mult=tuple(channel_mult), num_res_blocks=res_blocks_per_level[0],
        transformer_depth=tuple(depth), transformer_depth_middle=middle_depth, num_heads=tuple(heads),
        context_dim=context_dim, use_linear_in_transformer=use_linear,
        adm_in_channels=adm[1] if adm else None, upcast_attention=(context_dim == 1024),
        norm_groups=norm_groups or 32,
        time_cond_proj_dim=shapes["time_cond_proj.weight"][1] if "time_cond_proj.weight" in shapes else None,
        transformer_depth_input=tuple(input_depths), transformer_depth_output=output_depths,
        middle_block=middle_block,
    ).normalised()


def _output_depths(shapes: Shapes, expected: int, source: str) -> tuple[int, ...]:
    """Transformer depth of every output block (pruned models vary it block by block)."""
    found = _count(shapes, r"output_blocks\.(\d+)\.")
    if found != expected:
        raise UnsupportedModelError(f"{source}: {found} UNet output blocks where the input blocks imply {expected}")
    return tuple(_count(shapes, rf"output_blocks\.{n}\.1\.transformer_blocks\.(\d+)\.") for n in range(expected))


def _middle_block(shapes: Shapes, source: str) -> tuple[str, int]:
    """(kind, transformer depth) of the middle block: Res-Transformer-Res, Res-Res, or one ResBlock
    (SSD-1B and Segmind-Vega dropped the rest)."""
    depth = _count(shapes, r"middle_block\.1\.transformer_blocks\.(\d+)\.")
    if depth or "middle_block.1.in_layers.0.weight" in shapes:
        return "cross_attn", depth
    if "middle_block.0.in_layers.0.weight" in shapes:
        return "res", 0
    raise UnsupportedModelError(f"{source}: UNet without a middle block")


def unet_facts(config: UNetConfig) -> dict:
    return {"context_dim": config.context_dim, "adm_in_channels": config.adm_in_channels,
            "in_channels": config.in_channels, "use_linear": config.use_linear_in_transformer}


def detect_vae(shapes: Shapes, source: str, scaling_factor: float = 0.18215, norm_groups: int | None = None) -> VAEConfig:
    """LDM VAE keys (prefix stripped) → VAEConfig."""
    try:
        ch = shapes["encoder.conv_in.weight"][0]
        z2 = shapes["encoder.conv_out.weight"][0]
    except KeyError as missing:
        raise UnsupportedModelError(f"{source}: not an AutoencoderKL ({missing.args[0]} missing)") from None
    levels = _count(shapes, r"encoder\.down\.(\d+)\.")
    mult = []
    for level in range(levels):
        mult.append(shapes[f"encoder.down.{level}.block.0.conv1.weight"][0] // ch)
    res_blocks = _count(shapes, r"encoder\.down\.0\.block\.(\d+)\.")
    return VAEConfig(ch=ch, ch_mult=tuple(mult), num_res_blocks=res_blocks, z_channels=z2 // 2,
                     in_channels=shapes["encoder.conv_in.weight"][1],
                     out_channels=shapes["decoder.conv_out.weight"][0] if "decoder.conv_out.weight" in shapes else 3,
                     scaling_factor=scaling_factor, use_quant_conv="quant_conv.weight" in shapes,
                     use_post_quant_conv="post_quant_conv.weight" in shapes,
                     mid_attention="encoder.mid.attn_1.q.weight" in shapes, norm_groups=norm_groups or 32)


def guess_v_prediction(shapes_and_stats: Mapping[str, float] | None) -> bool | None:
    """SD2 single files do not say whether they predict v; callers may pass the std of
    `output_blocks.11.1.transformer_blocks.0.norm1.bias` (v-models > 0.09) to guess."""
    if not shapes_and_stats:
        return None
    std = shapes_and_stats.get("norm1_bias_std")
    return None if std is None else std > 0.09


def diffusers_unet_facts(shapes: Shapes) -> dict:
    """The facts a family is matched on, from a diffusers-named UNet's key shapes."""
    context = next((shape[1] for key, shape in shapes.items() if key.endswith(".attn2.to_k.weight")), None)
    adm = shapes.get("add_embedding.linear_1.weight")
    conv_in = shapes["conv_in.weight"]
    return {"context_dim": context, "adm_in_channels": adm[1] if adm else None, "in_channels": conv_in[1],
            "out_channels": shapes["conv_out.weight"][0] if "conv_out.weight" in shapes else 4,
            "model_channels": conv_in[0],
            "time_cond_proj_dim": (shapes["time_embedding.cond_proj.weight"][1]
                                   if "time_embedding.cond_proj.weight" in shapes else None)}


def classify_file(shapes: Shapes) -> str:
    """What a single .safetensors file holds: checkpoint, unet, vae, taesd_encoder, taesd_decoder, taesd."""
    keys = shapes.keys()
    if any(k.startswith(UNET_PREFIX) for k in keys):
        return "checkpoint"
    if "input_blocks.0.0.weight" in shapes:
        return "unet"
    if "conv_in.weight" in shapes and "down_blocks.0.resnets.0.conv1.weight" in shapes:
        return "unet_diffusers"  # a diffusers UNet's state dict in one file (SDXL-Lightning, Hyper-SD)
    if "encoder.conv_in.weight" in shapes or "decoder.conv_in.weight" in shapes:
        return "vae"
    if any(k.startswith(VAE_PREFIX) for k in keys):
        return "vae_ldm"
    if "encoder.layers.0.weight" in shapes or "decoder.layers.0.weight" in shapes:
        return "taesd_diffusers"
    if "encoder.0.weight" in shapes and "decoder.1.weight" in shapes:
        return "taesd"
    if "0.weight" in shapes and shapes["0.weight"][1] == 3:
        return "taesd_encoder"
    if "1.weight" in shapes and "0.weight" not in shapes:
        return "taesd_decoder"
    return "unknown"
