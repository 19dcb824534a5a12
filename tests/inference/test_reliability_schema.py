"""Model config validators (inference.schema) under mutated real configs: they raise only
ModelFormatError with one line naming the file and the field, or accept — and what they accept
never crashes the readers (inference.convert, inference.samplers.config) with anything but an
InferenceError."""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inference import schema
from inference.errors import InferenceError, ModelFormatError

ROOT = Path(__file__).resolve().parents[2]
HOUSE = ROOT / "assets" / "house"


def _house(kind: str, name: str) -> dict:
    return json.loads((HOUSE / kind / name).read_text())


_SD15_DOWN = ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"]
_SD15_UP = ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3
UNETS = {
    "sd15": {"_class_name": "UNet2DConditionModel", "act_fn": "silu", "attention_head_dim": 8,
             "block_out_channels": [320, 640, 1280, 1280], "center_input_sample": False, "cross_attention_dim": 768,
             "down_block_types": _SD15_DOWN, "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0,
             "in_channels": 4, "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-05,
             "norm_num_groups": 32, "out_channels": 4, "sample_size": 64, "up_block_types": _SD15_UP},
    "sd15_inpaint": None,
    "sd21": {"_class_name": "UNet2DConditionModel", "act_fn": "silu", "attention_head_dim": [5, 10, 20, 20],
             "block_out_channels": [320, 640, 1280, 1280], "cross_attention_dim": 1024,
             "down_block_types": _SD15_DOWN, "up_block_types": _SD15_UP, "in_channels": 4, "out_channels": 4,
             "layers_per_block": 2, "norm_num_groups": 32, "sample_size": 96, "use_linear_projection": True,
             "upcast_attention": True, "dual_cross_attention": False, "only_cross_attention": False},
    "sdxl": {"_class_name": "UNet2DConditionModel", "addition_embed_type": "text_time",
             "addition_embed_type_num_heads": 64, "addition_time_embed_dim": 256, "attention_head_dim": [5, 10, 20],
             "block_out_channels": [320, 640, 1280], "cross_attention_dim": 2048,
             "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
             "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"], "in_channels": 4,
             "out_channels": 4, "layers_per_block": 2, "norm_num_groups": 32, "sample_size": 128,
             "projection_class_embeddings_input_dim": 2816, "transformer_layers_per_block": [1, 2, 10],
             "use_linear_projection": True, "mid_block_type": "UNetMidBlock2DCrossAttn", "time_cond_proj_dim": None},
    "sdxl_refiner": {"_class_name": "UNet2DConditionModel", "addition_embed_type": "text_time",
                     "addition_time_embed_dim": 256, "attention_head_dim": [6, 12, 24, 24],
                     "block_out_channels": [384, 768, 1536, 1536], "cross_attention_dim": 1280,
                     "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
                     "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
                     "layers_per_block": 2, "projection_class_embeddings_input_dim": 2560,
                     "transformer_layers_per_block": 4, "use_linear_projection": True, "sample_size": 128},
    "house": _house("full", "unet/config.json"),
    "house_preview": _house("preview", "unet/config.json"),
}
UNETS["sd15_inpaint"] = {**UNETS["sd15"], "in_channels": 9}
VAES = {
    "sd": {"_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
           "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
           "in_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3,
           "sample_size": 512, "scaling_factor": 0.18215},
    "sdxl": {"_class_name": "AutoencoderKL", "block_out_channels": [128, 256, 512, 512],
             "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
             "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32, "sample_size": 1024,
             "scaling_factor": 0.13025, "force_upcast": True},
    "sd3": {"_class_name": "AutoencoderKL", "block_out_channels": [128, 256, 512, 512], "latent_channels": 16,
            "layers_per_block": 2, "norm_num_groups": 32, "scaling_factor": 1.5305, "shift_factor": 0.0609,
            "use_quant_conv": False, "use_post_quant_conv": False, "latents_mean": None, "latents_std": None},
    "house": _house("full", "vae/config.json"),
}
TEXTS = {
    "clip_l": {"architectures": ["CLIPTextModel"], "vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072,
               "num_hidden_layers": 12, "num_attention_heads": 12, "max_position_embeddings": 77,
               "hidden_act": "quick_gelu", "projection_dim": 768, "bos_token_id": 0, "eos_token_id": 2,
               "pad_token_id": 1, "layer_norm_eps": 1e-05, "torch_dtype": "float16"},
    "open_clip_h": {"architectures": ["CLIPTextModel"], "vocab_size": 49408, "hidden_size": 1024,
                    "intermediate_size": 4096, "num_hidden_layers": 23, "num_attention_heads": 16,
                    "max_position_embeddings": 77, "hidden_act": "gelu", "projection_dim": 512},
    "bigg": {"architectures": ["CLIPTextModelWithProjection"], "vocab_size": 49408, "hidden_size": 1280,
             "intermediate_size": 5120, "num_hidden_layers": 32, "num_attention_heads": 20,
             "max_position_embeddings": 77, "hidden_act": "gelu", "projection_dim": 1280},
    "clip_model": {"architectures": ["CLIPModel"], "text_config": {"hidden_size": 768, "num_attention_heads": 12,
                                                                   "intermediate_size": 3072}},
    "house": _house("full", "text_encoder/config.json"),
}
SCHEDULERS = {
    "pndm_sd15": {"_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
                  "beta_start": 0.00085, "num_train_timesteps": 1000, "set_alpha_to_one": False,
                  "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None, "clip_sample": False},
    "euler_sdxl": {"_class_name": "EulerDiscreteScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
                   "beta_start": 0.00085, "interpolation_type": "linear", "num_train_timesteps": 1000,
                   "prediction_type": "epsilon", "sample_max_value": 1.0, "set_alpha_to_one": False,
                   "skip_prk_steps": True, "steps_offset": 1, "timestep_spacing": "leading", "trained_betas": None,
                   "use_karras_sigmas": False},
    "lcm": {"_class_name": "LCMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
            "clip_sample": False, "clip_sample_range": 1.0, "dynamic_thresholding_ratio": 0.995,
            "num_train_timesteps": 1000, "original_inference_steps": 50, "prediction_type": "epsilon",
            "rescale_betas_zero_snr": False, "sample_max_value": 1.0, "set_alpha_to_one": True, "steps_offset": 1,
            "thresholding": False, "timestep_scaling": 10.0, "timestep_spacing": "leading", "trained_betas": None},
    "dpm": {"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "dpmsolver++", "beta_end": 0.012,
            "beta_schedule": "scaled_linear", "beta_start": 0.00085, "lambda_min_clipped": -math.inf,
            "solver_order": 2, "solver_type": "midpoint", "variance_type": None, "use_karras_sigmas": True,
            "_use_default_values": ["timestep_spacing"], "timestep_spacing": 7},
    "edm": {"_class_name": "EDMDPMSolverMultistepScheduler", "sigma_min": 0.002, "sigma_max": 80.0,
            "sigma_data": 0.5, "sigma_schedule": "exponential", "num_train_timesteps": 1000,
            "prediction_type": "epsilon", "rho": 7.0, "solver_order": 2, "final_sigmas_type": "zero"},
    "house_full": _house("full", "scheduler/scheduler_config.json"),
    "house_preview": _house("preview", "scheduler/scheduler_config.json"),
}


def _readers():
    from inference.convert import (
        clip_config_from_transformers,
        unet_config_from_diffusers,
        vae_config_from_diffusers,
    )
    from inference.samplers.config import SAMPLER_NAMES, SchedulerConfig

    def scheduler(raw, source):
        config = SchedulerConfig.from_dict(raw)
        for name in SAMPLER_NAMES:
            try:
                config.resolved(name)
            except InferenceError:
                pass

    return {
        "unet": (schema.validate_unet_config, unet_config_from_diffusers, UNETS, "unet/config.json"),
        "vae": (schema.validate_vae_config, vae_config_from_diffusers, VAES, "vae/config.json"),
        "text": (schema.validate_text_config, clip_config_from_transformers, TEXTS, "text_encoder_2/config.json"),
        "scheduler": (schema.validate_scheduler_config, scheduler, SCHEDULERS, "scheduler/scheduler_config.json"),
    }


READERS = _readers()


@pytest.mark.parametrize("kind, name", [(k, n) for k, (_, _, seeds, _) in READERS.items() for n in seeds])
def test_real_configs_are_accepted(kind, name):
    validate, read, seeds, source = READERS[kind]
    validate(copy.deepcopy(seeds[name]), source)
    read(copy.deepcopy(seeds[name]), source)


def _one_line(error: ModelFormatError, source: str) -> None:
    message = str(error)
    assert "\n" not in message and "\r" not in message, message
    assert message.startswith(f"{source}: "), message
    assert len(message) < 400, message


_BLOCKS = st.sampled_from(["CrossAttnDownBlock2D", "DownBlock2D", "CrossAttnUpBlock2D", "UpBlock2D",
                           "DownEncoderBlock2D", "UpDecoderBlock2D", "UNetMidBlock2DCrossAttn", "UNetMidBlock2D"])
_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 70), st.integers(-2**70, 2**70),
    st.sampled_from([0, 1, 2, 3, 4, 5, 8, 32, 63, 64, 320, 1000, 1280, 10**9, 0.5, 1e-5, 0.00085, 0.012, 2.0]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.lists(st.integers(-2, 2000), max_size=6), st.lists(_BLOCKS, max_size=6),
    st.lists(st.lists(st.integers(0, 12), max_size=4), max_size=5),
    st.lists(st.floats(allow_nan=True), max_size=5), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)
_EXTRA_KEYS = ["num_attention_heads", "reverse_transformer_layers_per_block", "only_cross_attention", "text_config",
               "trained_betas", "_use_default_values", "latents_mean", "latents_std", "sigma_min", "sigma_max",
               "beta_start", "beta_end", "num_train_timesteps", "steps_offset", "time_cond_proj_dim",
               "addition_embed_type", "mid_block_type", "eos_token_id"]


@st.composite
def _mutated(draw, seeds: dict):
    raw = copy.deepcopy(draw(st.sampled_from(sorted(seeds.items())))[1])
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(sorted(raw) + _EXTRA_KEYS))
        action = draw(st.sampled_from(["set", "set", "delete", "element"]))
        if action == "delete":
            raw.pop(key, None)
        elif action == "element" and isinstance(raw.get(key), list) and raw[key]:
            raw[key] = list(raw[key])
            raw[key][draw(st.integers(0, len(raw[key]) - 1))] = draw(_VALUES)
        else:
            raw[key] = draw(_VALUES)
    return raw


def _check(kind: str, raw: dict) -> None:
    validate, read, _, source = READERS[kind]
    try:
        validate(raw, source)
    except ModelFormatError as error:
        _one_line(error, source)
        return
    try:  # accepted: the reader may refuse it, but only with an InferenceError
        read(raw, source)
    except InferenceError:
        pass


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_unet_configs(data):
    _check("unet", data.draw(_mutated(UNETS)))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_vae_configs(data):
    _check("vae", data.draw(_mutated(VAES)))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_text_configs(data):
    _check("text", data.draw(_mutated(TEXTS)))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_scheduler_configs(data):
    _check("scheduler", data.draw(_mutated(SCHEDULERS)))


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=3)))
def test_non_object_configs(value):
    for kind, (validate, _, _, source) in READERS.items():
        with pytest.raises(ModelFormatError) as info:
            validate(value, source)
        _one_line(info.value, source)


@pytest.mark.parametrize("kind, seed, change, field", [
    ("unet", "sd15", {"block_out_channels": [320, 640, 1270, 1280]}, "block_out_channels[2]=1270 is not divisible by norm_num_groups=32"),
    ("unet", "sd15", {"block_out_channels": [320, 640]}, "block_out_channels=[320, 640] has 2 entries"),
    ("unet", "sd21", {"attention_head_dim": [5, 10, 20]}, "attention_head_dim=[5, 10, 20] has 3 entries; expected 4"),
    ("unet", "sd15", {"attention_head_dim": 7}, "is not divisible by attention_head_dim=7"),
    ("unet", "sdxl", {"transformer_layers_per_block": [1, 2, 10, 3]}, "transformer_layers_per_block=[1, 2, 10, 3] has 4 entries"),
    ("unet", "sd15", {"layers_per_block": 0}, "layers_per_block=0 is out of range"),
    ("unet", "sd15", {"layers_per_block": True}, "layers_per_block=True is not an integer"),
    ("unet", "sd15", {"block_out_channels": [16384] * 4, "norm_num_groups": 32, "layers_per_block": 16,
                      "transformer_layers_per_block": 64}, "billion parameters"),
    ("unet", "sd15", {"norm_eps": float("nan")}, "norm_eps=nan is not finite"),
    ("vae", "sd", {"latent_channels": 0}, "latent_channels=0 is out of range"),
    ("vae", "sd", {"scaling_factor": -1.0}, "scaling_factor=-1.0 is out of range"),
    ("vae", "sd", {"norm_num_groups": 48}, "block_out_channels[0]=128 is not divisible by norm_num_groups=48"),
    ("vae", "sd3", {"latents_std": [1.0] * 15}, "latents_std="),
    ("text", "clip_l", {"num_attention_heads": 7}, "hidden_size=768 is not divisible by num_attention_heads=7"),
    ("text", "clip_l", {"hidden_size": "768"}, "hidden_size='768' is not an integer"),
    ("text", "clip_l", {"eos_token_id": 10**6}, "eos_token_id=1000000 is out of range"),
    ("scheduler", "pndm_sd15", {"beta_start": 0.02}, "beta_start=0.02 must be below beta_end=0.012"),
    ("scheduler", "pndm_sd15", {"beta_end": 1.5}, "beta_end=1.5 is out of range (0, 1)"),
    ("scheduler", "pndm_sd15", {"num_train_timesteps": 10**7}, "num_train_timesteps=10000000 is out of range (2..10000)"),
    ("scheduler", "pndm_sd15", {"trained_betas": [0.5] * 3}, "trained_betas=[0.5, 0.5, 0.5] must be a list of"),
    ("scheduler", "edm", {"sigma_min": 100.0}, "sigma_min=100.0 must be below sigma_max=80"),
    ("scheduler", "pndm_sd15", {"steps_offset": 1000}, "steps_offset=1000 is out of range (0..999)"),
])
def test_rules_name_the_file_and_the_field(kind, seed, change, field):
    validate, _, seeds, source = READERS[kind]
    raw = {**copy.deepcopy(seeds[seed]), **change}
    with pytest.raises(ModelFormatError) as info:
        validate(raw, source)
    _one_line(info.value, source)
    assert field in str(info.value)


def test_metadata_hints():
    ok = {"canvasai.head_dim": "8", "canvasai.num_heads": "1, 2,4", "canvasai.text_head_dim": "32",
          "canvasai.norm_groups": "8", "modelspec.architecture": "stable-diffusion-v1", "format": "pt"}
    schema.validate_metadata_hints(ok, "m.safetensors")
    bad = [({"canvasai.head_dim": "0"}, "canvasai.head_dim='0' must be an integer in 1..4096"),
           ({"canvasai.head_dim": "²"}, "canvasai.head_dim='²'"),
           ({"canvasai.norm_groups": "9" * 5000}, "is longer than 1000 characters"),
           ({"canvasai.norm_groups": "2048"}, "must be an integer in 1..1024"),
           ({"canvasai.num_heads": "1,,2"}, "canvasai.num_heads='1,,2'"),
           ({"canvasai.num_heads": ",".join(["1"] * 9)}, "has 9 values"),
           ({"canvasai.text_head_dim": "-3"}, "must be an integer"),
           ({"canvasai.head_dim": 8}, "is not a string")]
    for metadata, expected in bad:
        with pytest.raises(ModelFormatError) as info:
            schema.validate_metadata_hints(metadata, "m.safetensors")
        _one_line(info.value, "m.safetensors")
        assert expected in str(info.value)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(["canvasai.head_dim", "canvasai.num_heads", "canvasai.text_head_dim",
                                        "canvasai.norm_groups", "canvasai.other", "format"]),
                       st.one_of(st.text(max_size=12), st.from_regex(r"[0-9, ]{1,12}", fullmatch=True)), max_size=4))
def test_metadata_hints_fuzz(metadata):
    from inference.detect import hints_from_metadata

    try:
        schema.validate_metadata_hints(metadata, "m.safetensors")
    except ModelFormatError as error:
        _one_line(error, "m.safetensors")
        return
    try:  # what the validator accepts, detect reads without a ValueError
        hints_from_metadata(metadata, "m.safetensors")
    except InferenceError:
        pass
