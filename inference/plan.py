"""Single-file checkpoint planning from key names and shapes alone (torch-free).

A plan says which family a file is, the configurations of its networks and which keys it ignores,
before any tensor is read; the loader then builds the networks from it, and model inspection
(`inference.api.read_model_info`) reports from it without importing torch.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace

from . import convert, detect
from .errors import ModelFormatError, UnsupportedModelError
from .models.configs import CLIPTextConfig, UNetConfig, VAEConfig
from .registry import (FAMILIES, PLAYGROUND_SCHEDULER, ModelFamily, families_with_components, family_by_name,
                       match_family)

# Keys of real single-file checkpoints that hold nothing the engine uses (LDM noise-schedule
# buffers, SGM's `denoiser.sigmas`, EMA bookkeeping, CLIP position-id buffers, OpenCLIP's logit scale).
IGNORED_PREFIXES = ("model_ema.", "denoiser.sigmas", "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
                    "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
                    "sqrt_recipm1_alphas_cumprod", "posterior_", "logvar", "model.diffusion_model.__")
IGNORED_SUFFIXES = ("position_ids", "logit_scale", ".attn_mask")

# Top-level tensors that mark how an SDXL model was trained (NoobAI/Illustrious v-pred releases,
# Playground v2.5): their presence is the information, their contents are not weights.
MARKER_KEYS = ("v_pred", "ztsnr", "edm_mean", "edm_std")


def is_ignored(key: str) -> bool:
    return key.startswith(IGNORED_PREFIXES) or key.endswith(IGNORED_SUFFIXES) or key in MARKER_KEYS


def markers_of(keys) -> frozenset[str]:
    return frozenset(k for k in keys if k in MARKER_KEYS)


def marker_prediction_type(markers: frozenset[str]) -> str | None:
    """`v_pred` marks a v-prediction SDXL file; nothing else in such files says so."""
    return "v_prediction" if "v_pred" in markers else None


def single_file_scheduler(family: ModelFamily, markers: frozenset[str], prediction_type: str) -> dict:
    """The scheduler config a single file implies: the family's, adjusted by its marker keys.
    `ztsnr` (zero terminal SNR): rescaled betas and trailing spacing, as diffusers recommends
    for such models (the last training timestep is then reached at the first step)."""
    if "edm_mean" in markers:  # Playground v2.5: EDM sampling (sigmas 0.002…80, σ_data 0.5)
        return dict(PLAYGROUND_SCHEDULER, prediction_type=prediction_type)
    scheduler = dict(family.scheduler, prediction_type=prediction_type)
    if "ztsnr" in markers:
        scheduler.update(rescale_betas_zero_snr=True, timestep_spacing="trailing")
    return scheduler


def hf_clip_config(shapes: Mapping[str, tuple[int, ...]], kind: str, with_projection: bool,
                    head_dim: int = 64) -> CLIPTextConfig:
    """CLIP-L configuration from HF-named key shapes (single files carry no config)."""
    width = shapes["text_model.embeddings.token_embedding.weight"][1]
    layers = 1 + max(int(k.split(".")[3]) for k in shapes if k.startswith("text_model.encoder.layers."))
    return CLIPTextConfig(
        vocab_size=shapes["text_model.embeddings.token_embedding.weight"][0], hidden_size=width,
        intermediate_size=shapes["text_model.encoder.layers.0.mlp.fc1.weight"][0], num_hidden_layers=layers,
        num_attention_heads=max(1, width // head_dim),
        max_position_embeddings=shapes["text_model.embeddings.position_embedding.weight"][0],
        hidden_act="quick_gelu" if kind == "clip_l" else "gelu",
        projection_dim=shapes["text_projection.weight"][0] if with_projection and "text_projection.weight" in shapes else None,
    )



@dataclass
class SingleFilePlan:
    family: ModelFamily
    unet_config: UNetConfig
    vae_config: VAEConfig | None
    text_configs: list[CLIPTextConfig]
    ignored: list[str]
    markers: frozenset[str] = frozenset()


def split_components(state: Mapping[str, object], family: ModelFamily) -> tuple[dict, dict, list[dict], list[str], list[str]]:
    unet, vae, texts = {}, {}, [dict() for _ in family.text_encoders]
    ignored, unclaimed = [], []
    for key, value in state.items():
        if key.startswith(detect.UNET_PREFIX):
            unet[key[len(detect.UNET_PREFIX):]] = value
        elif key.startswith(detect.VAE_PREFIX):
            vae[key[len(detect.VAE_PREFIX):]] = value
        elif is_ignored(key):
            ignored.append(key)
        else:
            for index, spec in enumerate(family.text_encoders):
                if key.startswith(spec.single_file_prefix):
                    texts[index][key[len(spec.single_file_prefix):]] = value
                    break
            else:
                unclaimed.append(key)
    return unet, vae, texts, ignored, unclaimed


def _resolve_family(unet_config: UNetConfig, hints: detect.FileHints, source: str) -> ModelFamily:
    """The family the UNet's shapes match; failing that, the one the file's metadata declares
    (non-standard sizes), provided the UNet has that family's kind of conditioning."""
    family = match_family(detect.unet_facts(unet_config))
    if family is not None:
        return family
    if hints.family is not None:
        declared = family_by_name(hints.family)
        wants_adm = declared.matches.get("adm_in_channels") is not None
        if wants_adm == (unet_config.adm_in_channels is not None):
            return declared
        raise UnsupportedModelError(
            f"{source}: metadata declares {hints.architecture!r} but the UNet "
            f"{'has' if unet_config.adm_in_channels else 'lacks'} the SDXL conditioning input")
    raise UnsupportedModelError(
        f"{source}: UNet with context {unet_config.context_dim} and ADM {unet_config.adm_in_channels} "
        f"matches no supported family ({', '.join(f.name for f in FAMILIES)})")


@contextmanager
def _required_keys(source: str, prefix: str) -> Iterator[None]:
    """Detection reads particular tensors' shapes; a file without one is incomplete, say which."""
    try:
        yield
    except KeyError as missing:
        raise ModelFormatError(f"{source}: tensor {prefix}{missing.args[0]} is missing "
                               f"(the checkpoint is incomplete or damaged)") from None


def plan_single_file(shapes: Mapping[str, tuple[int, ...]], source: str,
                      hints: detect.FileHints | None = None) -> SingleFilePlan:
    hints = hints or detect.FileHints()
    unet_shapes = detect.strip_prefix(shapes, detect.UNET_PREFIX)
    with _required_keys(source, detect.UNET_PREFIX):
        unet_config = detect.detect_unet(unet_shapes, source, hints.head_dim, hints.num_heads, hints.norm_groups)
    family = _resolve_family(unet_config, hints, source)
    if family.upcast_attention and not unet_config.upcast_attention:
        unet_config = replace(unet_config, upcast_attention=True)
    vae_shapes = detect.strip_prefix(shapes, detect.VAE_PREFIX)
    with _required_keys(source, detect.VAE_PREFIX):
        vae_config = (detect.detect_vae(vae_shapes, source, family.vae_scaling_factor, hints.norm_groups)
                      if vae_shapes else None)
    text_head_dim = hints.text_head_dim or 64
    _, _, text_shapes, ignored, _ = split_components(shapes, family)
    text_configs = []
    for spec, raw in zip(family.text_encoders, text_shapes):
        if not raw:
            raise ModelFormatError(f"{source}: no {spec.kind} text encoder weights under {spec.single_file_prefix!r}")
        with _required_keys(source, spec.single_file_prefix):
            if spec.layout == "open_clip":
                text_configs.append(convert.open_clip_config(raw, spec.pooled, text_head_dim))
            else:
                text_configs.append(hf_clip_config(convert.hf_clip_state(raw), spec.kind, spec.pooled, text_head_dim))
    return SingleFilePlan(family, unet_config, vae_config, text_configs, ignored, markers_of(shapes))


TEXT_COMPONENTS = ("text_encoder", "text_encoder_2")


def folder_candidates(index: Mapping, source: str) -> tuple[ModelFamily, ...]:
    """The families a diffusers folder can be, from the text encoders its model_index lists."""
    present = {c for c in TEXT_COMPONENTS if index.get(c) not in (None, [None, None])}
    candidates = families_with_components(present)
    if not candidates:
        raise UnsupportedModelError(f"{source}: text encoders {sorted(present) or 'none'} match no supported "
                                    f"family ({', '.join(f.name for f in FAMILIES)})")
    return candidates


def folder_family(unet_config: UNetConfig, text_configs: list[CLIPTextConfig], prediction_type: str,
                  candidates: tuple[ModelFamily, ...]) -> ModelFamily:
    """A diffusers folder's family among its candidates: by the UNet's shapes, else (small or
    unusual configs: the house model, test models) v-prediction or the text encoder's activation."""
    if len(candidates) == 1:
        return candidates[0]
    matched = match_family(detect.unet_facts(unet_config))
    if matched in candidates:
        return matched
    if prediction_type == "v_prediction":
        native = [f for f in candidates if f.v_prediction_native]
        if native:
            return native[0]
    same_act = [f for f in candidates if f.text_hidden_act == text_configs[0].hidden_act]
    return (same_act or list(candidates))[0]
