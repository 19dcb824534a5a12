"""Architecture configurations of the networks, as plain frozen dataclasses (torch-free).

Detection (`inference.detect`) and model inspection (`inference.api`) produce these without
importing torch; the modules in `unet`, `vae` and `clip_text` build networks from them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

@dataclass(frozen=True)
class UNetConfig:
    in_channels: int = 4
    out_channels: int = 4
    model_channels: int = 320
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    # transformer blocks per attention layer at each level; 0 = no attention at that level
    transformer_depth: tuple[int, ...] = (1, 1, 1, 0)
    transformer_depth_middle: int = 1  # 0 = middle block without attention
    # Pruned models (SSD-1B, Segmind-Vega) vary the depth block by block: one entry per input
    # ResBlock (levels × num_res_blocks) / per output block (levels × (num_res_blocks + 1), in
    # output_blocks order). None: every block of a level has `transformer_depth[level]`.
    transformer_depth_input: tuple[int, ...] | None = None
    transformer_depth_output: tuple[int, ...] | None = None
    # "cross_attn": ResBlock, transformer, ResBlock; "res": one ResBlock (diffusers' UNetMidBlock2D)
    middle_block: str = "cross_attn"
    num_heads: tuple[int, ...] = (8, 8, 8, 8)  # attention heads per level (middle uses the last)
    context_dim: int = 768
    use_linear_in_transformer: bool = False
    adm_in_channels: int | None = None  # SDXL "text_time" vector size (2816 base, 2560 refiner)
    upcast_attention: bool = False
    norm_groups: int = 32
    # LCM-distilled UNets embed the guidance scale: width of that embedding (diffusers' time_cond_proj_dim)
    time_cond_proj_dim: int | None = None
    # Extra hints for the pipeline, not the network: filled in by detection/loading.
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("extra")
        return data

    @property
    def time_embed_dim(self) -> int:
        return self.model_channels * 4

    def input_depths(self) -> tuple[int, ...]:
        """Transformer depth of each input ResBlock, level by level."""
        if self.transformer_depth_input is not None:
            return self.transformer_depth_input
        return tuple(d for d in self.transformer_depth for _ in range(self.num_res_blocks))

    def output_depths(self) -> tuple[int, ...]:
        """Transformer depth of each output block, in output_blocks order (lowest resolution first)."""
        if self.transformer_depth_output is not None:
            return self.transformer_depth_output
        return tuple(d for d in reversed(self.transformer_depth) for _ in range(self.num_res_blocks + 1))

    def normalised(self) -> UNetConfig:
        """Per-block depths dropped where they equal the per-level ones (so equal models compare equal)."""
        plain = replace(self, transformer_depth_input=None, transformer_depth_output=None)
        return replace(self,
                       transformer_depth_input=None if self.input_depths() == plain.input_depths()
                       else self.transformer_depth_input,
                       transformer_depth_output=None if self.output_depths() == plain.output_depths()
                       else self.transformer_depth_output)


@dataclass(frozen=True)
class VAEConfig:
    in_channels: int = 3
    out_channels: int = 3
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    z_channels: int = 4
    norm_groups: int = 32
    scaling_factor: float = 0.18215
    shift_factor: float | None = None
    # Per-channel latent statistics (Playground v2.5; single files: `edm_mean` / `edm_std`): model
    # latents are (z − mean) · scaling_factor / std instead of z · scaling_factor.
    latents_mean: tuple[float, ...] | None = None
    latents_std: tuple[float, ...] | None = None
    use_quant_conv: bool = True
    use_post_quant_conv: bool = True
    mid_attention: bool = True

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def downscale(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)


@dataclass(frozen=True)
class CLIPTextConfig:
    vocab_size: int = 49408
    hidden_size: int = 768
    intermediate_size: int = 3072
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    max_position_embeddings: int = 77
    hidden_act: str = "quick_gelu"  # "gelu" for OpenCLIP models
    layer_norm_eps: float = 1e-5
    eos_token_id: int = 49407
    projection_dim: int | None = None  # set for encoders with a text_projection (SDXL bigG)

    def to_dict(self) -> dict:
        return asdict(self)
