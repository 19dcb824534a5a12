"""Model sizes (chosen from the measured CPU budgets in shared/reference/performance.md) and the
diffusers configs written next to the weights."""
from __future__ import annotations

from inference.models.clip_text import CLIPTextConfig
from inference.models.unet import UNetConfig
from inference.models.vae import VAEConfig

RESOLUTION = 128
CONTEXT_DIM = 96

# ≈1 M params: decode ≈17 ms, encode ≈9 ms at 128 px on 2 threads.
VAE = VAEConfig(ch=16, ch_mult=(1, 2, 4, 4), num_res_blocks=1, z_channels=4, norm_groups=4,
                scaling_factor=1.0)
# ≈4 M params: ≈12 ms per forward at a 16×16 latent.
UNET = UNetConfig(in_channels=4, out_channels=4, model_channels=32, channel_mult=(1, 2, 4), num_res_blocks=1,
                  transformer_depth=(1, 1, 1), transformer_depth_middle=1, num_heads=(1, 2, 4),
                  context_dim=CONTEXT_DIM, use_linear_in_transformer=False, norm_groups=8)
# Real CLIP vocabulary (49408 tokens) — the embedding table dominates its size (4.7 M of 5.1 M).
TEXT = CLIPTextConfig(vocab_size=49408, hidden_size=CONTEXT_DIM, intermediate_size=384, num_hidden_layers=3,
                      num_attention_heads=3, max_position_embeddings=77, hidden_act="quick_gelu")
PAD_TOKEN_ID = 49407

_SCHEDULE = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
             "num_train_timesteps": 1000, "prediction_type": "v_prediction", "steps_offset": 1,
             "interpolation_type": "linear", "use_karras_sigmas": False, "timestep_spacing": "trailing",
             "set_alpha_to_one": False, "clip_sample": False, "sample_max_value": 1.0}
# Both folders use Euler with trailing spacing: its first timestep is 999, so one step starts from
# pure noise and lands at sigma 0, which is exactly what the preview UNet was distilled for.
FULL_SCHEDULER = {"_class_name": "EulerDiscreteScheduler", **_SCHEDULE}
PREVIEW_SCHEDULER = {"_class_name": "EulerDiscreteScheduler", **_SCHEDULE}

FULL_STEPS, FULL_GUIDANCE = 20, 3.0
# The editor's refine of a live frame may move no latent cell further than this (house.json
# "refine_bound"): this small VAE turns small latent changes into new shapes (docs/coherence.md).
FULL_REFINE_BOUND = 0.035
PREVIEW_STEPS, PREVIEW_GUIDANCE = 1, 0.0


def unet_diffusers_config(c: UNetConfig = UNET) -> dict:
    down = ["CrossAttnDownBlock2D" if d else "DownBlock2D" for d in c.transformer_depth]
    return {
        "_class_name": "UNet2DConditionModel", "sample_size": RESOLUTION // 8, "in_channels": c.in_channels,
        "out_channels": c.out_channels, "block_out_channels": [c.model_channels * m for m in c.channel_mult],
        "layers_per_block": c.num_res_blocks, "down_block_types": down,
        "up_block_types": [t.replace("Down", "Up") for t in reversed(down)],
        "mid_block_type": "UNetMidBlock2DCrossAttn", "cross_attention_dim": c.context_dim,
        "attention_head_dim": list(c.num_heads), "norm_num_groups": c.norm_groups, "norm_eps": 1e-5,
        "use_linear_projection": c.use_linear_in_transformer, "upcast_attention": False,
        "transformer_layers_per_block": 1, "flip_sin_to_cos": True, "freq_shift": 0, "act_fn": "silu",
        "center_input_sample": False,
    }


def vae_diffusers_config(c: VAEConfig = VAE) -> dict:
    n = len(c.ch_mult)
    return {
        "_class_name": "AutoencoderKL", "in_channels": c.in_channels, "out_channels": c.out_channels,
        "block_out_channels": [c.ch * m for m in c.ch_mult], "down_block_types": ["DownEncoderBlock2D"] * n,
        "up_block_types": ["UpDecoderBlock2D"] * n, "layers_per_block": c.num_res_blocks,
        "latent_channels": c.z_channels, "norm_num_groups": c.norm_groups, "sample_size": RESOLUTION,
        "scaling_factor": c.scaling_factor, "act_fn": "silu", "mid_block_add_attention": c.mid_attention,
    }


def text_transformers_config(c: CLIPTextConfig = TEXT) -> dict:
    return {
        "architectures": ["CLIPTextModel"], "model_type": "clip_text_model", "vocab_size": c.vocab_size,
        "hidden_size": c.hidden_size, "intermediate_size": c.intermediate_size,
        "num_hidden_layers": c.num_hidden_layers, "num_attention_heads": c.num_attention_heads,
        "max_position_embeddings": c.max_position_embeddings, "hidden_act": c.hidden_act,
        "layer_norm_eps": c.layer_norm_eps, "bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 1,
        "projection_dim": c.hidden_size, "torch_dtype": "float16",
    }
