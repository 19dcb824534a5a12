"""Declarative registry of supported model families.

Detection (`inference.detect`) turns a state dict's key shapes into a plain dict; the first entry
here whose `matches` all agree names the family. Everything family-specific that the pipelines
need (which text encoders, which hidden layer, padding, latent scale, default scheduler) is data
on the entry, not branches in the pipeline code.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TextEncoderSpec:
    """How one text encoder feeds the UNet."""

    kind: str  # "clip_l" (HF names), "open_clip_h", "open_clip_bigg"
    single_file_prefix: str  # where its weights sit in a single-file checkpoint
    layout: str  # "hf" or "open_clip" (key naming inside the single file)
    folder: str  # diffusers component folder
    tokenizer_folder: str
    pad_token_id: int  # 49407 (EOT) for CLIP-L, 0 for OpenCLIP towers
    hidden_layer: int  # index into hidden_states: -1 last, -2 penultimate
    final_layer_norm: bool  # apply the final LayerNorm to that hidden state
    pooled: bool = False  # provides the pooled (projected) embedding


# diffusers' scheduler configs for the families, for single files that carry none.
SD_SCHEDULER = {
    "_class_name": "PNDMScheduler", "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000, "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1,
    "clip_sample": False, "prediction_type": "epsilon",
}
SDXL_SCHEDULER = {
    "_class_name": "EulerDiscreteScheduler", "beta_start": 0.00085, "beta_end": 0.012,
    "beta_schedule": "scaled_linear", "num_train_timesteps": 1000, "interpolation_type": "linear",
    "prediction_type": "epsilon", "steps_offset": 1, "timestep_spacing": "leading", "use_karras_sigmas": False,
    "set_alpha_to_one": False, "clip_sample": False, "sample_max_value": 1.0,
}


# Playground v2.5 (playgroundai/playground-v2.5-1024px-aesthetic scheduler/scheduler_config.json):
# an EDM-trained SDXL, for single files that carry only its `edm_mean`/`edm_std` markers.
PLAYGROUND_SCHEDULER = {
    "_class_name": "EDMDPMSolverMultistepScheduler", "algorithm_type": "dpmsolver++", "solver_order": 2,
    "solver_type": "midpoint", "final_sigmas_type": "zero", "lower_order_final": True, "euler_at_final": False,
    "num_train_timesteps": 1000, "prediction_type": "epsilon", "rho": 7.0, "sigma_data": 0.5, "sigma_max": 80.0,
    "sigma_min": 0.002, "sigma_schedule": "karras", "thresholding": False,
}


@dataclass(frozen=True)
class ModelFamily:
    name: str
    description: str
    matches: dict[str, Any]  # detected UNet facts that must be equal
    text_encoders: tuple[TextEncoderSpec, ...]
    vae_scaling_factor: float
    scheduler: dict = field(default_factory=dict)
    native_resolution: int = 512
    uses_time_ids: bool = False  # SDXL's text_time conditioning
    zero_empty_negative: bool = False  # diffusers' force_zeros_for_empty_prompt
    # The refiner's time ids end in an aesthetic score instead of the target size: (positive, negative).
    aesthetic_scores: tuple[float, float] | None = None
    upcast_attention: bool = False  # SD2 computes attention scores in float32
    # SD2 single files don't say whether they predict v: guess from the weights (4-channel UNets only).
    guesses_v_prediction: bool = False
    # diffusers folders: which text-encoder components the folder has, and how they feed the UNet.
    folder_components: tuple[str, ...] = ("text_encoder",)
    folder_text_encoders: tuple[TextEncoderSpec, ...] = ()
    # Folders too small to match by UNet shapes (house, test models): text activation / v-prediction
    # tell the families that share a folder layout apart.
    text_hidden_act: str = "quick_gelu"
    v_prediction_native: bool = False


CLIP_L_SD1 = TextEncoderSpec("clip_l", "cond_stage_model.transformer.", "hf", "text_encoder", "tokenizer",
                             pad_token_id=49407, hidden_layer=-1, final_layer_norm=True)
OPEN_CLIP_H_SD2 = TextEncoderSpec("open_clip_h", "cond_stage_model.model.", "open_clip", "text_encoder",
                                  "tokenizer", pad_token_id=0, hidden_layer=-2, final_layer_norm=True)
CLIP_L_SDXL = TextEncoderSpec("clip_l", "conditioner.embedders.0.transformer.", "hf", "text_encoder", "tokenizer",
                              pad_token_id=49407, hidden_layer=-2, final_layer_norm=False)
BIGG_SDXL = TextEncoderSpec("open_clip_bigg", "conditioner.embedders.1.model.", "open_clip", "text_encoder_2",
                            "tokenizer_2", pad_token_id=0, hidden_layer=-2, final_layer_norm=False, pooled=True)
BIGG_REFINER = TextEncoderSpec("open_clip_bigg", "conditioner.embedders.0.model.", "open_clip", "text_encoder_2",
                               "tokenizer_2", pad_token_id=0, hidden_layer=-2, final_layer_norm=False, pooled=True)

# diffusers SD1/SD2 pipelines use the last hidden state with the final LayerNorm (SD2 folders already
# drop OpenCLIP's last layer); padding comes from the tokenizer folder (-1).
FOLDER_CLIP = TextEncoderSpec("clip", "", "hf", "text_encoder", "tokenizer", pad_token_id=-1, hidden_layer=-1,
                              final_layer_norm=True)

FAMILIES: tuple[ModelFamily, ...] = (
    ModelFamily("sd1", "Stable Diffusion 1.x", {"context_dim": 768, "adm_in_channels": None},
                (CLIP_L_SD1,), 0.18215, SD_SCHEDULER, 512, folder_text_encoders=(FOLDER_CLIP,)),
    ModelFamily("sd2", "Stable Diffusion 2.x", {"context_dim": 1024, "adm_in_channels": None},
                (OPEN_CLIP_H_SD2,), 0.18215, SD_SCHEDULER, 768, upcast_attention=True, guesses_v_prediction=True,
                folder_text_encoders=(FOLDER_CLIP,), text_hidden_act="gelu", v_prediction_native=True),
    ModelFamily("sdxl", "Stable Diffusion XL", {"context_dim": 2048, "adm_in_channels": 2816},
                (CLIP_L_SDXL, BIGG_SDXL), 0.13025, SDXL_SCHEDULER, 1024, uses_time_ids=True,
                zero_empty_negative=True, folder_components=("text_encoder", "text_encoder_2"),
                folder_text_encoders=(CLIP_L_SDXL, BIGG_SDXL), text_hidden_act="gelu"),
    ModelFamily("sdxl_refiner", "Stable Diffusion XL refiner", {"context_dim": 1280, "adm_in_channels": 2560},
                (BIGG_REFINER,), 0.13025, SDXL_SCHEDULER, 1024, uses_time_ids=True, aesthetic_scores=(6.0, 2.5),
                folder_components=("text_encoder_2",), folder_text_encoders=(BIGG_REFINER,), text_hidden_act="gelu"),
)


def families_with_components(components: set[str]) -> tuple[ModelFamily, ...]:
    """The families whose diffusers folders hold exactly these text-encoder components."""
    return tuple(f for f in FAMILIES if set(f.folder_components) == components)


def family_by_name(name: str) -> ModelFamily:
    for family in FAMILIES:
        if family.name == name:
            return family
    raise KeyError(name)


def match_family(facts: dict[str, Any]) -> ModelFamily | None:
    """First registry entry whose `matches` agree with the detected facts, else None."""
    for family in FAMILIES:
        if all(facts.get(key) == value for key, value in family.matches.items()):
            return family
    return None


def variant_of(in_channels: int) -> str:
    return {4: "base", 9: "inpaint", 8: "instruct-pix2pix"}.get(in_channels, f"{in_channels}-channel")
