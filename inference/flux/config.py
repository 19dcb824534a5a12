"""Architecture configurations of the FLUX networks, as frozen dataclasses (torch-free).

`FluxConfig` describes the transformer in BFL's own terms (`flux/model.py` `FluxParams`); the
diffusers `FluxTransformer2DModel` config maps onto it one to one (`from_diffusers`).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

from ..errors import ModelFormatError

# Bounds well above the largest released FLUX/T5 configs (widths 3072/4096, 19+38 blocks, 24 layers):
# a config outside them is damaged or hostile, refused before anything is built.
_MAX_WIDTH = 65536
_MAX_LAYERS = 512


def _whole(cfg: Mapping, key: str, default: int, high: int, source: str, low: int = 1) -> int:
    """`cfg[key]` as a whole number in [low, high], else one ModelFormatError naming the file and field."""
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ModelFormatError(f"{source}: {key} must be a whole number in {low}..{high}, got {value!r:.60}")
    return value


@dataclass(frozen=True)
class FluxConfig:
    in_channels: int = 64  # packed: latent channels × 2 × 2
    out_channels: int = 64
    vec_in_dim: int = 768  # CLIP-L pooled width
    context_in_dim: int = 4096  # T5-XXL width
    hidden_size: int = 3072
    mlp_ratio: float = 4.0
    num_heads: int = 24
    depth: int = 19  # double-stream blocks
    depth_single_blocks: int = 38
    axes_dim: tuple[int, ...] = (16, 56, 56)  # RoPE width per position axis; sums to the head dim
    theta: int = 10_000
    qkv_bias: bool = True
    guidance_embed: bool = False  # dev: guidance-distilled, the guidance scale is an input

    def __post_init__(self):
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden size {self.hidden_size} is not divisible by {self.num_heads} heads")
        if sum(self.axes_dim) != self.head_dim:
            raise ValueError(f"RoPE axes {self.axes_dim} do not sum to the head dim {self.head_dim}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def mlp_hidden_dim(self) -> int:
        return int(self.hidden_size * self.mlp_ratio)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_diffusers(cls, cfg: Mapping, source: str = "transformer/config.json") -> FluxConfig:
        """From a diffusers `transformer/config.json` (`FluxTransformer2DModel`), every field checked."""
        heads = _whole(cfg, "num_attention_heads", 24, 1024, source)
        head_dim = _whole(cfg, "attention_head_dim", 128, 1024, source)
        if heads * head_dim > _MAX_WIDTH:
            raise ModelFormatError(f"{source}: num_attention_heads × attention_head_dim = {heads * head_dim} "
                                   f"exceeds {_MAX_WIDTH}")
        if _whole(cfg, "patch_size", 1, 16, source) != 1:
            raise ModelFormatError(f"{source}: patch_size {cfg.get('patch_size')} is not supported "
                                   "(FLUX packs 2×2 outside)")
        in_channels = _whole(cfg, "in_channels", 64, 4096, source)
        axes = cfg.get("axes_dims_rope", (16, 56, 56))
        if not isinstance(axes, (list, tuple)) or len(axes) != 3 or sum(
                _whole({"axes_dims_rope": a}, "axes_dims_rope", 0, 4096, source) for a in axes) != head_dim:
            raise ModelFormatError(f"{source}: axes_dims_rope must be three whole numbers adding up to "
                                   f"attention_head_dim {head_dim}, got {axes!r:.60}")
        out_channels = cfg.get("out_channels") or in_channels
        return cls(in_channels=in_channels,
                   out_channels=_whole({"out_channels": out_channels}, "out_channels", 0, 4096, source),
                   vec_in_dim=_whole(cfg, "pooled_projection_dim", 768, _MAX_WIDTH, source),
                   context_in_dim=_whole(cfg, "joint_attention_dim", 4096, _MAX_WIDTH, source),
                   hidden_size=heads * head_dim, num_heads=heads,
                   depth=_whole(cfg, "num_layers", 19, _MAX_LAYERS, source, low=0),
                   depth_single_blocks=_whole(cfg, "num_single_layers", 38, _MAX_LAYERS, source, low=0),
                   axes_dim=tuple(int(a) for a in axes), guidance_embed=bool(cfg.get("guidance_embeds", False)))


# The released FLUX.1 transformers (BFL `flux/util.py` configs): dev embeds the guidance scale.
FLUX_DEV = FluxConfig(guidance_embed=True)
FLUX_SCHNELL = FluxConfig(guidance_embed=False)


@dataclass(frozen=True)
class T5Config:
    """A T5 encoder stack (transformers' `T5Config` fields that the encoder uses)."""

    vocab_size: int = 32128
    d_model: int = 4096
    d_kv: int = 64
    d_ff: int = 10240
    num_layers: int = 24
    num_heads: int = 64
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6
    gated: bool = True  # v1.1: gated-GELU feed-forward (wi_0, wi_1); v1.0: ReLU (wi)
    activation: str = "gelu_new"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_transformers(cls, cfg: Mapping, source: str = "text_encoder_2/config.json") -> T5Config:
        """From a transformers `config.json` (`T5EncoderModel` / `T5Config`)."""
        proj = str(cfg.get("feed_forward_proj", "relu"))
        gated = proj.startswith("gated-")
        activation = proj.split("-", 1)[1] if gated else proj
        if activation == "gelu" and gated:
            activation = "gelu_new"  # transformers maps "gated-gelu" to the tanh approximation
        if activation not in ("gelu_new", "relu", "gelu_pytorch_tanh"):
            raise ModelFormatError(f"{source}: T5 feed_forward_proj {proj!r:.60} is not supported")
        epsilon = cfg.get("layer_norm_epsilon", 1e-6)
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not 0 < epsilon < 1:
            raise ModelFormatError(f"{source}: layer_norm_epsilon must be in (0, 1), got {epsilon!r:.60}")
        return cls(vocab_size=_whole(cfg, "vocab_size", 32128, 1_000_000, source),
                   d_model=_whole(cfg, "d_model", 512, _MAX_WIDTH, source),
                   d_kv=_whole(cfg, "d_kv", 64, 4096, source), d_ff=_whole(cfg, "d_ff", 2048, 4 * _MAX_WIDTH, source),
                   num_layers=_whole(cfg, "num_layers", 6, _MAX_LAYERS, source),
                   num_heads=_whole(cfg, "num_heads", 8, 1024, source),
                   relative_attention_num_buckets=_whole(cfg, "relative_attention_num_buckets", 32, 4096, source),
                   relative_attention_max_distance=_whole(cfg, "relative_attention_max_distance", 128, 1 << 20,
                                                          source),
                   layer_norm_epsilon=float(epsilon), gated=gated,
                   activation=activation)


# google/t5-v1_1-xxl encoder as FLUX.1 uses it (text_encoder_2/config.json).
T5_XXL = T5Config()


def flux_config_from_shapes(shapes: Mapping[str, tuple[int, ...]],
                            axes_dim: tuple[int, ...] | None = None) -> FluxConfig:
    """The transformer config of a BFL-layout state dict (prefix already stripped), from tensor
    shapes alone. RoPE axes are not stored in the weights: FLUX.1's (16, 56, 56) for 128-wide
    heads unless `axes_dim` says otherwise."""
    try:
        hidden, in_channels = shapes["img_in.weight"]
        head_dim = shapes["double_blocks.0.img_attn.norm.query_norm.scale"][0]
        mlp_hidden = shapes["double_blocks.0.img_mlp.0.weight"][0]
        config = dict(in_channels=in_channels, out_channels=shapes["final_layer.linear.weight"][0],
                      vec_in_dim=shapes["vector_in.in_layer.weight"][1], context_in_dim=shapes["txt_in.weight"][1])
    except KeyError as exc:
        raise ValueError(f"not a FLUX.1 transformer state dict (no {exc.args[0]})") from None
    if axes_dim is None:
        if head_dim != 128:
            raise ValueError(f"head dim {head_dim}: give the RoPE axes (FLUX.1 has 128 = 16 + 56 + 56)")
        axes_dim = (16, 56, 56)

    def count(prefix: str) -> int:
        return len({key.split(".")[1] for key in shapes if key.startswith(prefix)})

    return FluxConfig(**config, hidden_size=hidden, mlp_ratio=mlp_hidden / hidden, num_heads=hidden // head_dim,
                      depth=count("double_blocks."), depth_single_blocks=count("single_blocks."),
                      axes_dim=tuple(axes_dim), qkv_bias="double_blocks.0.img_attn.qkv.bias" in shapes,
                      guidance_embed="guidance_in.in_layer.weight" in shapes)
