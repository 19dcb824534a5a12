"""What a model file or folder is, read from headers and config files only (torch-free).

`read_model_info(path)` answers the questions the editor and the CLI ask before (or instead of)
loading weights: which family and variant, which prediction type, how many UNet input channels,
which native resolution, how latents are normalised, and which sampler/steps/CFG the model is
meant to run with. It is the single source of the native resolution: the editor plans frames
and the CLI renders at the same size because both read it here.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import convert, detect, schema
from .defaults import DEFAULT_GUIDANCE, DEFAULT_SAMPLER, DEFAULT_STEPS
from .errors import ModelFormatError, UnsupportedModelError
from .foreign import refuse_foreign, refuse_foreign_pipeline
from .formats.diffusers_weights import component_weights
from .formats.pickle_sniff import check_not_pickle
from .formats.safetensors_header import SafetensorsHeader, read_header
from .plan import (SingleFilePlan, folder_candidates, folder_family, is_ignored, marker_prediction_type, plan_single_file,
                   single_file_scheduler)
from .registry import ModelFamily, family_by_name, match_family, variant_of
from .samplers.registry import sampler_for_scheduler_class
from .jsonfile import read_json_object as _read_json  # noqa: F401 - one reader for model folders' JSON

@dataclass(frozen=True)
class Preset:
    """The settings a model is meant to run with, and where that knowledge came from."""

    sampler: str = DEFAULT_SAMPLER
    steps: int = DEFAULT_STEPS
    guidance: float = DEFAULT_GUIDANCE
    timestep_spacing: str | None = None  # None: the model's scheduler config decides
    guidance_rescale: float = 0.0
    source: str = "engine defaults"


@dataclass(frozen=True)
class ModelInfo:
    path: str
    format: str  # "single_file" or "diffusers"
    kind: str  # "checkpoint", "unet", "vae", "taesd", "lora", "unknown"
    size_bytes: int
    family: str | None = None
    family_description: str = ""
    variant: str | None = None  # "base", "inpaint", "instruct-pix2pix"
    prediction_type: str | None = None
    unet_in_channels: int | None = None
    native_resolution: int | None = None
    latent_channels: int | None = None
    latent_scaling_factor: float | None = None
    latents_mean: tuple[float, ...] | None = None
    latents_std: tuple[float, ...] | None = None
    scheduler_class: str | None = None
    # The UNet's conditioning (cross-attention width, SDXL text_time vector): what a UNet-only file
    # must share with the base model it replaces the UNet of.
    context_dim: int | None = None
    adm_in_channels: int | None = None
    zero_terminal_snr: bool = False  # rescaled betas: sample with trailing spacing and guidance_rescale
    preset: Preset | None = None
    parameters: dict[str, int] = field(default_factory=dict)
    dtypes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def runnable(self) -> bool:
        """A model the engine can render with on its own (a full checkpoint or pipeline folder)."""
        return self.kind == "checkpoint"

    def summary(self) -> str:
        """One line for a model picker: 'SDXL · inpaint · 1024 px · 6.9 GB'."""
        parts = [self.family_description or self.kind]
        if self.variant and self.variant != "base":
            parts.append(self.variant)
        if self.native_resolution:
            parts.append(f"{self.native_resolution} px")
        parts.append(_human_size(self.size_bytes))
        return " · ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _human_size(size: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size} B"


# ----------------------------------------------------------------------------- presets
_STEP_COUNT = re.compile(r"(\d+)[-_ ]?steps?(?![a-z])")


def _named_preset(name: str) -> Preset | None:
    """Distilled models announce themselves in their file names (and ModelSpec titles)."""
    lowered = name.lower()
    match = _STEP_COUNT.search(lowered)
    steps = int(match.group(1)) if match else None
    if "turbo" in lowered:
        return Preset("euler", steps or 1, 0.0, "trailing", source="Turbo: 1 step, no CFG, trailing spacing")
    if "lightning" in lowered:
        n = steps or 4
        return Preset("euler", n, 0.0, "trailing", source=f"Lightning {n}-step: trailing spacing, no CFG")
    if "hyper" in lowered:
        n = steps or 8
        return Preset("euler", n, 0.0 if n <= 2 else 3.5, "trailing", source=f"Hyper-SD {n}-step")
    if "dmd2" in lowered:
        return Preset("lcm", steps or 4, 0.0, source="DMD2 4-step: LCM sampling, no CFG")
    if re.search(r"(^|[^a-z])lcm([^a-z]|$)", lowered):
        return Preset("lcm", steps or 4, 1.5, source="LCM: 4 steps, CFG 1–2")
    return None


def _preset(name: str, family: ModelFamily | None, scheduler: dict, notes: dict, unet_cfg: dict,
            rescale: float) -> Preset:
    if notes:  # the house model's own measured recommendation
        return Preset(DEFAULT_SAMPLER, int(notes.get("steps", DEFAULT_STEPS)),
                      float(notes.get("guidance", DEFAULT_GUIDANCE)), scheduler.get("timestep_spacing"),
                      source="house.json")
    if unet_cfg.get("time_cond_proj_dim"):
        # The guidance scale goes into the UNet as an embedding (w = guidance − 1), with no CFG
        # pass; the LCM releases are shown at 8 (diffusers' LatentConsistencyModelPipeline docs).
        return Preset("lcm", 4, 8.0, source="LCM UNet (embedded guidance, no CFG pass): 4 steps, guidance 8")
    named = _named_preset(name)
    if named is not None:
        return named
    scheduler_class = scheduler.get("_class_name")
    if isinstance(scheduler_class, str) and scheduler_class.startswith("EDM"):
        return Preset("dpmpp_2m_karras", 30, 3.0, source="EDM model (Playground v2.5): DPM++ 2M, CFG 3")
    sampler = sampler_for_scheduler_class(scheduler_class) or DEFAULT_SAMPLER
    if sampler == "lcm":
        return Preset("lcm", 4, 1.5, source="LCM scheduler: 4 steps, CFG 1–2")
    if sampler == "tcd":
        return Preset("tcd", 4, 1.0, source="TCD scheduler: 4 steps, gamma 0.3, no CFG")
    return Preset(sampler, DEFAULT_STEPS, DEFAULT_GUIDANCE, None, rescale,
                  source=f"{family.description if family else 'model'} defaults")


# ----------------------------------------------------------------------------- helpers
def _count(shapes) -> int:
    return int(sum(int(np.prod(shape, dtype=np.float64)) for shape in shapes))


def _folder_parameters(folder: Path) -> tuple[int, set[str]]:
    """Parameters and dtypes of one component folder (one file, shards or an fp16/bf16 variant)."""
    stem = "model" if any(folder.glob("model.*safetensors*")) else "diffusion_pytorch_model"
    total, dtypes = 0, set()
    for weights in component_weights(folder, stem):
        header = weights.header
        total += _count(t.shape for t in header.tensors.values())
        dtypes |= {t.dtype for t in header.tensors.values()}
    return total, dtypes


def _e4m3fn_table() -> np.ndarray:
    """All 256 float8_e4m3fn values (bias 7, no infinities, 0x7f/0xff are NaN)."""
    codes = np.arange(256)
    sign = np.where(codes & 0x80, -1.0, 1.0)
    exponent, mantissa = (codes >> 3) & 0xF, codes & 0x7
    normal = (1 + mantissa / 8) * np.exp2(exponent - 7.0)
    subnormal = (mantissa / 8) * np.exp2(-6.0)
    values = sign * np.where(exponent == 0, subnormal, normal)
    values[(codes & 0x7F) == 0x7F] = np.nan
    return values.astype(np.float32)


_E4M3FN = _e4m3fn_table()


def tensor_values(header: SafetensorsHeader, key: str) -> np.ndarray | None:
    """One small float tensor's values as float32, read with numpy (no torch); None if absent."""
    info = header.tensors.get(key)
    if info is None or info.dtype not in ("F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"):
        return None
    with open(header.path, "rb") as handle:
        handle.seek(header.data_start + info.begin)
        raw = handle.read(info.nbytes)
    if info.dtype == "BF16":
        return (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
    if info.dtype == "F8_E5M2":  # the top byte of an fp16
        return (np.frombuffer(raw, np.uint8).astype(np.uint16) << 8).view("<f2").astype(np.float32)
    if info.dtype == "F8_E4M3":
        return _E4M3FN[np.frombuffer(raw, np.uint8)]
    return np.frombuffer(raw, "<f4" if info.dtype == "F32" else "<f2").astype(np.float32)


def _tensor_std(header: SafetensorsHeader, key: str) -> float | None:
    values = tensor_values(header, key)
    return float(values.std(ddof=1)) if values is not None and values.size > 1 else None


def latent_statistics(header: SafetensorsHeader, plan: SingleFilePlan) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """Playground v2.5 single files carry the per-channel latent mean/std as `edm_mean`/`edm_std`."""
    if not {"edm_mean", "edm_std"} <= plan.markers:
        return None
    mean, std = tensor_values(header, "edm_mean"), tensor_values(header, "edm_std")
    if mean is None or std is None or mean.size != std.size or not np.all(std > 0):
        raise ModelFormatError(f"{header.path.name}: edm_mean/edm_std are not per-channel latent statistics")
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


# diffusers' PLAYGROUND_VAE_SCALING_FACTOR: Playground v2.5 single files do not store it.
PLAYGROUND_SCALING_FACTOR = 0.5


def plan_file(header: SafetensorsHeader, hints: detect.FileHints) -> SingleFilePlan:
    """`plan_single_file` plus what only tensor values say: Playground's latent statistics."""
    shapes = {k: tuple(t.shape) for k, t in header.tensors.items()}
    plan = plan_single_file(shapes, header.path.name, hints)
    statistics = latent_statistics(header, plan)
    if statistics is not None and plan.vae_config is not None:
        plan.vae_config = replace(plan.vae_config, scaling_factor=PLAYGROUND_SCALING_FACTOR,
                                  latents_mean=statistics[0], latents_std=statistics[1])
    return plan


def single_file_prediction(header: SafetensorsHeader, plan: SingleFilePlan, hints: detect.FileHints,
                           override: str | None = None) -> str:
    """A single file's prediction type: the caller's override, else what the file declares
    (ModelSpec metadata, then a `v_pred` marker key), else the SD2 guess."""
    return (override or hints.prediction_type or marker_prediction_type(plan.markers)
            or guess_prediction_type(header, plan.family, plan.unet_config.in_channels))


def guess_prediction_type(header: SafetensorsHeader, family: ModelFamily, unet_in_channels: int) -> str:
    """SD2 single files don't say whether they predict v (768 models do, 512 'base' ones and the
    inpainting model don't). The std of one LayerNorm bias tells them apart in practice (a known
    heuristic); only 4-channel UNets are guessed: SD2 inpainting is epsilon. A user override wins."""
    default = family.scheduler.get("prediction_type", "epsilon")
    if not family.guesses_v_prediction or unet_in_channels != 4:
        return default
    std = _tensor_std(header, detect.UNET_PREFIX + "output_blocks.11.1.transformer_blocks.0.norm1.bias")
    return "v_prediction" if std is not None and std > 0.09 else "epsilon"


LORA_MARKERS = ("lora_up", "lora_down", "lora_A", "lora_B", "hada_w1", "lokr_w1", ".lora.down", "_lora.down",
                "lora_linear_layer")


def _single_file_kind(shapes: dict) -> str:
    if any(marker in key for key in shapes for marker in LORA_MARKERS):
        return "lora"
    kind = detect.classify_file(shapes)
    if kind in ("vae_ldm", "vae"):
        return "vae"
    if kind.startswith("taesd"):
        return "taesd"
    return kind


# ----------------------------------------------------------------------------- single file
def is_unet_only(shapes) -> bool:
    """A prefixed LDM file with nothing but UNet weights (and ignorable buffers)."""
    return all(k.startswith(detect.UNET_PREFIX) or is_ignored(k) for k in shapes)


def _unet_file_info(path: Path, shapes: dict, kind: str, hints: detect.FileHints, base: dict) -> ModelInfo:
    """A UNet without VAE and text encoders (SDXL-Lightning, Hyper-SD, DMD2): runs on a base model
    of its family (`load_model(base, unet_path=…)`); its preset comes from its name."""
    if kind == "unet_diffusers":
        facts = detect.diffusers_unet_facts(shapes)
    else:
        unet_shapes = detect.strip_prefix(shapes, detect.UNET_PREFIX) if kind == "checkpoint" else shapes
        config = detect.detect_unet(unet_shapes, path.name, hints.head_dim, hints.num_heads, hints.norm_groups)
        facts = dict(detect.unet_facts(config), out_channels=config.out_channels,
                     time_cond_proj_dim=config.time_cond_proj_dim)
    family = match_family(facts)
    preset = _preset(path.stem, family, dict(family.scheduler) if family else {}, {},
                     {"time_cond_proj_dim": facts["time_cond_proj_dim"]}, 0.0)
    return ModelInfo(**base, kind="unet", family=family.name if family else None,
                     family_description=family.description if family else "UNet",
                     variant=variant_of(facts["in_channels"]), unet_in_channels=facts["in_channels"],
                     context_dim=facts.get("context_dim"), adm_in_channels=facts.get("adm_in_channels"),
                     native_resolution=family.native_resolution if family else None,
                     latent_channels=facts["out_channels"], preset=preset,
                     parameters={"unet": _count(v for k, v in shapes.items() if not is_ignored(k))},
                     warnings=("a UNet alone: load it over a base model of its family (unet_path)",))


def _single_file_info(path: Path, prediction_type: str | None) -> ModelInfo:
    check_not_pickle(path)
    if path.suffix.lower() != ".safetensors":
        raise ModelFormatError(f"{path.name}: not a .safetensors file or a diffusers folder")
    header = read_header(path)
    shapes = {k: tuple(t.shape) for k, t in header.tensors.items()}
    refuse_foreign(shapes, path.name)
    dtypes = tuple(sorted({t.dtype for t in header.tensors.values()}))
    size = header.file_size
    kind = _single_file_kind(shapes)
    base = dict(path=str(path), format="single_file", size_bytes=size, dtypes=dtypes)
    hints = detect.hints_from_metadata(header.metadata, path.name)
    if kind in ("unet", "unet_diffusers") or (kind == "checkpoint" and is_unet_only(shapes)):
        return _unet_file_info(path, shapes, kind, hints, base)
    if kind != "checkpoint":
        return ModelInfo(**base, kind=kind if kind in ("vae", "taesd", "lora") else "unknown",
                         family_description={"vae": "VAE", "taesd": "Tiny autoencoder (TAESD)",
                                             "lora": "LoRA"}.get(kind, "unknown"),
                         parameters={kind: _count(shapes.values())})
    plan = plan_file(header, hints)
    family, unet = plan.family, plan.unet_config
    prediction = single_file_prediction(header, plan, hints, prediction_type)
    parameters = {"unet": _count(v for k, v in shapes.items() if k.startswith(detect.UNET_PREFIX))}
    if plan.vae_config is not None:
        parameters["vae"] = _count(v for k, v in shapes.items() if k.startswith(detect.VAE_PREFIX))
    for spec in family.text_encoders:
        parameters[spec.kind] = _count(v for k, v in shapes.items()
                                       if k.startswith(spec.single_file_prefix) and not is_ignored(k))
    title = header.metadata.get("modelspec.title", "")
    scheduler = single_file_scheduler(family, plan.markers, prediction)
    zero_snr = bool(scheduler.get("rescale_betas_zero_snr"))
    preset = _preset(f"{path.stem} {title}", family, scheduler, {}, {}, 0.7 if zero_snr else 0.0)
    warnings = () if plan.vae_config is not None else ("the checkpoint has no VAE: give one with --vae",)
    vae = plan.vae_config
    return ModelInfo(**base, kind="checkpoint", family=family.name, family_description=family.description,
                     variant=variant_of(unet.in_channels), prediction_type=prediction,
                     unet_in_channels=unet.in_channels, native_resolution=family.native_resolution,
                     context_dim=unet.context_dim, adm_in_channels=unet.adm_in_channels,
                     latent_channels=unet.out_channels,
                     latent_scaling_factor=vae.scaling_factor if vae else family.vae_scaling_factor,
                     latents_mean=vae.latents_mean if vae else None, latents_std=vae.latents_std if vae else None,
                     scheduler_class=scheduler.get("_class_name"), zero_terminal_snr=zero_snr,
                     preset=preset, parameters=parameters, warnings=warnings)


# ----------------------------------------------------------------------------- diffusers folder
def _folder_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def _component_folder_info(root: Path) -> ModelInfo:
    """A folder holding one component (a diffusers UNet or VAE folder): not runnable alone."""
    config = _read_json(root / "config.json")
    class_name = config.get("_class_name")
    params, dtypes = _folder_parameters(root)
    base = dict(path=str(root), format="diffusers", size_bytes=_folder_size(root), dtypes=tuple(sorted(dtypes)))
    if class_name == "UNet2DConditionModel":
        unet = convert.unet_config_from_diffusers(config, str(root / "config.json"))
        family = match_family(detect.unet_facts(unet))
        # A distilled UNet's folder is named after its release ("sdxl-lightning-4step/unet").
        preset = _preset(f"{root.parent.name} {root.name}", family, dict(family.scheduler) if family else {}, {},
                         config, 0.0)
        return ModelInfo(**base, kind="unet", family=family.name if family else None,
                         family_description=family.description if family else "UNet",
                         variant=variant_of(unet.in_channels), unet_in_channels=unet.in_channels,
                         context_dim=unet.context_dim, adm_in_channels=unet.adm_in_channels,
                         native_resolution=family.native_resolution if family else None, preset=preset,
                         latent_channels=unet.out_channels, parameters={"unet": params},
                         warnings=("a UNet alone: pair it with a base model's VAE and text encoders",))
    if class_name in ("AutoencoderKL", "AutoencoderTiny"):
        kind = "vae" if class_name == "AutoencoderKL" else "taesd"
        return ModelInfo(**base, kind=kind, family_description="VAE" if kind == "vae" else "Tiny autoencoder (TAESD)",
                         parameters={kind: params})
    raise UnsupportedModelError(f"{root}: a folder holding a {class_name or 'component without _class_name'} is "
                                "not a model the engine runs")


def _folder_info(root: Path, prediction_type: str | None) -> ModelInfo:
    index_path = root / "model_index.json"
    if not index_path.is_file():
        if (root / "config.json").is_file():
            return _component_folder_info(root)
        raise ModelFormatError(f"{root}: a folder without model_index.json is not a diffusers model")
    from .flux.info import flux_folder_info, is_flux_folder

    if is_flux_folder(root):  # FLUX.1 runs on its own pipeline (inference/flux)
        return flux_folder_info(root)
    index = _read_json(index_path)
    # e.g. KolorsPipeline (ChatGLM text encoder), PixArt, SD3…: say what it is, plainly.
    refuse_foreign_pipeline(index, root.name)
    candidates = folder_candidates(index, root.name)
    unet_raw = _read_json(root / "unet" / "config.json")
    unet = convert.unet_config_from_diffusers(unet_raw, str(root / "unet" / "config.json"))
    vae_raw = _read_json(root / "vae" / "config.json") if (root / "vae" / "config.json").is_file() else {}
    scheduler_path = root / "scheduler" / "scheduler_config.json"
    scheduler = _read_json(scheduler_path) if scheduler_path.is_file() else {}
    schema.validate_scheduler_config(scheduler, str(scheduler_path))
    prediction = prediction_type or scheduler.get("prediction_type") or "epsilon"
    text_folder = root / candidates[0].folder_text_encoders[0].folder
    text_configs = [convert.clip_config_from_transformers(_read_json(text_folder / "config.json"),
                                                          str(text_folder / "config.json"))]
    family = folder_family(unet, text_configs, prediction, candidates)
    block_out = vae_raw.get("block_out_channels") or [128, 256, 512, 512]
    vae_scale = 2 ** (len(block_out) - 1) if isinstance(block_out, list) and block_out else 8
    sample_size = unet_raw.get("sample_size")
    native = int(sample_size) * vae_scale if isinstance(sample_size, int) and sample_size > 0 \
        else family.native_resolution
    notes_path = root / "house.json"
    notes = _read_json(notes_path) if notes_path.is_file() else {}
    parameters, dtypes = {}, set()
    for component in ("unet", "vae", "text_encoder", "text_encoder_2"):
        if (root / component).is_dir():
            parameters[component], component_dtypes = _folder_parameters(root / component)
            dtypes |= component_dtypes
    zero_snr = bool(scheduler.get("rescale_betas_zero_snr"))
    preset = _preset(root.name, family, scheduler, notes, unet_raw, 0.7 if zero_snr else 0.0)
    mean, std = vae_raw.get("latents_mean"), vae_raw.get("latents_std")
    return ModelInfo(path=str(root), format="diffusers", kind="checkpoint", size_bytes=_folder_size(root),
                     family=family.name, family_description=family.description,
                     variant=variant_of(unet.in_channels), prediction_type=prediction,
                     unet_in_channels=unet.in_channels, native_resolution=native,
                     context_dim=unet.context_dim, adm_in_channels=unet.adm_in_channels,
                     latent_channels=unet.out_channels,
                     latent_scaling_factor=float(vae_raw.get("scaling_factor", family.vae_scaling_factor)),
                     latents_mean=tuple(mean) if isinstance(mean, list) else None,
                     latents_std=tuple(std) if isinstance(std, list) else None,
                     scheduler_class=scheduler.get("_class_name"), zero_terminal_snr=zero_snr, preset=preset,
                     parameters=parameters, dtypes=tuple(sorted(dtypes)))


def read_model_info(path: str | Path, prediction_type: str | None = None) -> ModelInfo:
    """Describe a checkpoint file, a component file or a diffusers folder without loading weights.

    Raises `ModelFormatError` / `UnsupportedModelError` (one line naming the file) for anything
    that is not a model the engine understands."""
    path = Path(path)
    if prediction_type not in (None, "epsilon", "v_prediction", "sample"):
        raise ModelFormatError(f"unknown prediction type {prediction_type!r}")
    if path.is_dir():
        return _folder_info(path, prediction_type)
    if not path.exists():
        raise ModelFormatError(f"{path}: no such file")
    from .flux.file_info import flux_file_info, is_flux_transformer_file

    try:
        if is_flux_transformer_file(path):  # BFL .safetensors or .gguf: FLUX.1's own loader (inference/flux)
            return flux_file_info(path)
        return _single_file_info(path, prediction_type)
    except OSError as exc:
        raise ModelFormatError(f"{path.name}: cannot read the file ({exc.strerror or exc})") from None


def family_of(info: ModelInfo) -> ModelFamily | None:
    return family_by_name(info.family) if info.family else None
