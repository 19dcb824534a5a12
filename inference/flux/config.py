"""Architecture configurations of the FLUX networks, as frozen dataclasses (torch-free).

`FluxConfig` describes the transformer in BFL's own terms (`flux/model.py` `FluxParams`); the
diffusers `FluxTransformer2DModel` config maps onto it one to one (`from_diffusers`).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass


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
    def from_diffusers(cls, cfg: Mapping) -> FluxConfig:
        """From a diffusers `transformer/config.json` (`FluxTransformer2DModel`)."""
        heads = int(cfg.get("num_attention_heads", 24))
        head_dim = int(cfg.get("attention_head_dim", 128))
        if int(cfg.get("patch_size", 1)) != 1:
            raise ValueError(f"patch_size {cfg.get('patch_size')} is not supported (FLUX packs 2×2 outside)")
        in_channels = int(cfg.get("in_channels", 64))
        return cls(in_channels=in_channels, out_channels=int(cfg.get("out_channels") or in_channels),
                   vec_in_dim=int(cfg.get("pooled_projection_dim", 768)),
                   context_in_dim=int(cfg.get("joint_attention_dim", 4096)), hidden_size=heads * head_dim,
                   num_heads=heads, depth=int(cfg.get("num_layers", 19)),
                   depth_single_blocks=int(cfg.get("num_single_layers", 38)),
                   axes_dim=tuple(int(a) for a in cfg.get("axes_dims_rope", (16, 56, 56))),
                   guidance_embed=bool(cfg.get("guidance_embeds", False)))


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
    def from_transformers(cls, cfg: Mapping) -> T5Config:
        """From a transformers `config.json` (`T5EncoderModel` / `T5Config`)."""
        proj = str(cfg.get("feed_forward_proj", "relu"))
        gated = proj.startswith("gated-")
        activation = proj.split("-", 1)[1] if gated else proj
        if activation == "gelu" and gated:
            activation = "gelu_new"  # transformers maps "gated-gelu" to the tanh approximation
        if activation not in ("gelu_new", "relu", "gelu_pytorch_tanh"):
            raise ValueError(f"T5 feed_forward_proj {proj!r} is not supported")
        return cls(vocab_size=int(cfg.get("vocab_size", 32128)), d_model=int(cfg.get("d_model", 512)),
                   d_kv=int(cfg.get("d_kv", 64)), d_ff=int(cfg.get("d_ff", 2048)),
                   num_layers=int(cfg.get("num_layers", 6)), num_heads=int(cfg.get("num_heads", 8)),
                   relative_attention_num_buckets=int(cfg.get("relative_attention_num_buckets", 32)),
                   relative_attention_max_distance=int(cfg.get("relative_attention_max_distance", 128)),
                   layer_norm_epsilon=float(cfg.get("layer_norm_epsilon", 1e-6)), gated=gated,
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
