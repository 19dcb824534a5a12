"""Load a model from a single-file checkpoint or a diffusers-layout folder into our modules.

Modules are built on the `meta` device (no random initialisation: it would cost seconds for
SDXL and be overwritten anyway) and receive their weights with `load_state_dict(assign=True,
strict=True)`, already cast to the requested dtype and placed on the requested device.
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from . import convert, detect, schema
from .errors import ModelFormatError, UnsupportedModelError
from .foreign import refuse_foreign, refuse_foreign_pipeline
from .formats.diffusers_weights import component_shapes, component_weights
from .formats.pickle_checkpoint import check_not_pickle
from .formats.safetensors_file import iter_tensors, read_header
from .models.clip_text import CLIPTextModel
from .models.taesd import TAESD
from .models.unet import UNetModel
from .models.vae import AutoencoderKL, VAEConfig
from .plan import (IGNORED_PREFIXES, IGNORED_SUFFIXES, SingleFilePlan, folder_candidates, folder_family,  # noqa: F401
                   hf_clip_config,
                   is_ignored, plan_single_file, single_file_scheduler, split_components)
from .model_info import is_unet_only, plan_file, read_model_info, single_file_prediction
from .registry import ModelFamily, TextEncoderSpec, variant_of
from .tokenizer.bpe import CLIPTokenizer
from .jsonfile import read_json_object as _read_json  # noqa: F401 - one reader for model folders' JSON

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class TextEncoder:
    spec: TextEncoderSpec
    model: CLIPTextModel
    tokenizer: CLIPTokenizer


@dataclass
class DiffusionModel:
    """Everything a pipeline needs from one model, ready on its device."""

    name: str
    path: Path
    family: ModelFamily
    unet: UNetModel
    vae: AutoencoderKL | TAESD
    text_encoders: list[TextEncoder]
    scheduler_config: dict
    prediction_type: str
    dtype: torch.dtype
    device: torch.device
    report: dict = field(default_factory=dict)
    sample_size: int | None = None  # native image size when the folder says so (unet sample_size × 8)

    @property
    def file_hash(self) -> str:
        """A1111's short model hash (first 10 hex digits of the file's sha256; for a folder, of its
        weight headers). Computed on first use, not on load: hashing a 7 GB file takes seconds."""
        return _folder_hash(self.path) if self.path.is_dir() else file_hash(self.path)

    @property
    def native_resolution(self) -> int:
        """The size the model was trained at: from the folder's config, else the family's."""
        return self.sample_size or self.family.native_resolution

    @property
    def variant(self) -> str:
        return variant_of(self.unet.config.in_channels)

    @property
    def latent_channels(self) -> int:
        return self.unet.config.out_channels

    @property
    def vae_scale(self) -> int:
        return 8


# ----------------------------------------------------------------------------- helpers
def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if dtype is None:
        return torch.float16 if device.type in ("cuda", "mps") else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ModelFormatError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def _materialise(module_factory, state: Mapping[str, torch.Tensor], what: str, source: str,
                 report: dict) -> nn.Module:
    """Build on meta, then assign the weights strictly; name the first offending keys on failure."""
    with torch.device("meta"):
        module = module_factory()
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    report.setdefault("missing_keys", []).extend(f"{what}:{k}" for k in missing)
    report.setdefault("unexpected_keys", []).extend(f"{what}:{k}" for k in unexpected)
    report.setdefault("shape_mismatches", []).extend(
        f"{what}:{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}" for k in wrong_shape)
    if missing or unexpected or wrong_shape:
        if state and next(iter(state.values())).device.type == "meta":
            return module  # inspection only: report, don't fail
        problems = ([f"missing {k}" for k in missing[:3]] + [f"unexpected {k}" for k in unexpected[:3]]
                    + [f"shape of {k}" for k in wrong_shape[:3]])
        raise ModelFormatError(f"{source}: {what} weights do not fit the detected architecture "
                               f"({'; '.join(problems)})")
    module.load_state_dict(state, strict=True, assign=True)
    return module.eval().requires_grad_(False)


def _place(module: nn.Module, device: torch.device) -> nn.Module:
    """Move a convolutional network to its device in channels-last layout: oneDNN (CPU) and cuDNN
    (tensor cores) run these convolutions faster that way (house preview frame 45 → 40 ms on CPU);
    results differ from NCHW only by float summation order."""
    return module.to(device=device, memory_format=torch.channels_last)


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


_HASHES: dict[tuple[str, int, int], str] = {}


def file_hash(path: Path) -> str:
    """sha256 of the whole file (first 10 hex digits), cached by (path, size, mtime): a model
    reloaded unchanged is not read again, a file replaced on disk is."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 24), b""):
                digest.update(block)
        _HASHES[key] = digest.hexdigest()[:10]
    return _HASHES[key]


def _meta_tensors(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    return {k: torch.empty(shape, device="meta") for k, shape in shapes.items()}


# ----------------------------------------------------------------------------- single file
def _text_state(raw: Mapping[str, torch.Tensor], spec: TextEncoderSpec) -> dict[str, torch.Tensor]:
    if spec.layout == "open_clip":
        converted = convert.open_clip_to_hf(raw)
        if not spec.pooled:
            converted.pop("text_projection.weight", None)  # SD2 ships it but never uses it
        return converted
    return convert.hf_clip_state(raw)


def _build_single_file(state: Mapping[str, torch.Tensor], plan: SingleFilePlan, source: str,
                       report: dict) -> tuple[UNetModel, AutoencoderKL | None, list[CLIPTextModel]]:
    unet_sd, vae_sd, text_sds, _, unclaimed = split_components(state, plan.family)
    report["unexpected_keys"] = [f"file:{k}" for k in unclaimed]
    if unclaimed and next(iter(state.values())).device.type != "meta":
        raise ModelFormatError(f"{source}: unexpected keys such as {unclaimed[0]!r}")
    unet = _materialise(lambda: UNetModel(plan.unet_config), unet_sd, "unet", source, report)
    vae = None
    if plan.vae_config is not None:
        vae = _materialise(lambda: AutoencoderKL(plan.vae_config), vae_sd, "vae", source, report)
    texts = []
    for spec, config, raw in zip(plan.family.text_encoders, plan.text_configs, text_sds):
        texts.append(_materialise(lambda c=config: CLIPTextModel(c), _text_state(raw, spec), spec.kind, source, report))
    return unet, vae, texts


def _skip(key: str, skip_unet: bool) -> bool:
    return is_ignored(key) or (skip_unet and key.startswith(detect.UNET_PREFIX))


def load_single_file(path: Path, device: torch.device, dtype: torch.dtype,
                     prediction_type: str | None, vae: AutoencoderKL | TAESD | None = None,
                     skip_unet: bool = False) -> DiffusionModel:
    """`skip_unet`: the UNet will be replaced (a UNet-only file): build it on meta, read none of it."""
    header = read_header(path)
    refuse_foreign({k: tuple(t.shape) for k, t in header.tensors.items()}, path.name)
    kind = detect.classify_file({k: t.shape for k, t in header.tensors.items()})
    if kind in ("unet", "unet_diffusers") or (kind == "checkpoint" and is_unet_only(header.tensors)):
        raise UnsupportedModelError(f"{path.name}: holds only a UNet; load it over a base model of its "
                                    "family (unet_path / --unet)")
    if kind != "checkpoint":
        raise UnsupportedModelError(f"{path.name}: holds a {kind.replace('_', ' ')}, not a full checkpoint")
    shapes = {k: tuple(t.shape) for k, t in header.tensors.items()}
    hints = detect.hints_from_metadata(header.metadata, path.name)
    plan = plan_file(header, hints)
    state = dict(iter_tensors(path, device="cpu", dtype=dtype, rename=lambda k: None if _skip(k, skip_unet) else k))
    if skip_unet:
        state.update(_meta_tensors({k: v for k, v in shapes.items() if k.startswith(detect.UNET_PREFIX)}))
    report: dict = {"ignored_keys": plan.ignored}
    unet, own_vae, text_models = _build_single_file(state, plan, path.name, report)
    del state
    if vae is None and own_vae is None:
        raise ModelFormatError(f"{path.name}: the checkpoint has no VAE; give one with --vae")
    family = plan.family
    prediction_type = single_file_prediction(header, plan, hints, prediction_type)
    scheduler = single_file_scheduler(family, plan.markers, prediction_type)
    tokenizers = [CLIPTokenizer.default(pad_token_id=spec.pad_token_id) for spec in family.text_encoders]
    encoders = [TextEncoder(spec, model.to(device), tok)
                for spec, model, tok in zip(family.text_encoders, text_models, tokenizers)]
    return DiffusionModel(
        name=path.stem, path=path, family=family, unet=unet if skip_unet else _place(unet, device),
        vae=_place(vae or own_vae, device),
        text_encoders=encoders, scheduler_config=scheduler, prediction_type=prediction_type,
        dtype=dtype, device=device, report=report)


# ----------------------------------------------------------------------------- diffusers folder
def _folder_state(folder: Path, stem: str, dtype: torch.dtype, meta: bool) -> dict[str, torch.Tensor]:
    """A component's tensors from its single file or its validated shards, cast to `dtype`."""
    files = component_weights(folder, stem)
    if meta:
        return _meta_tensors(component_shapes(files))
    state: dict[str, torch.Tensor] = {}
    for weights in files:
        state.update(iter_tensors(weights.path, dtype=dtype))
    return state


def load_folder(root: Path, device: torch.device, dtype: torch.dtype, prediction_type: str | None,
                meta: bool = False, vae: AutoencoderKL | TAESD | None = None, skip_unet: bool = False) -> DiffusionModel:
    """`meta`: shapes only (inspection). `skip_unet`: the UNet will be replaced; read none of it."""
    index = _read_json(root / "model_index.json")
    refuse_foreign_pipeline(index, root.name)
    report: dict = {"components": sorted(k for k in index if not k.startswith("_"))}
    candidates = folder_candidates(index, root.name)
    unet_cfg_raw = _read_json(root / "unet" / "config.json")
    unet_config = convert.unet_config_from_diffusers(unet_cfg_raw, str(root / "unet" / "config.json"))
    unet_raw = _folder_state(root / "unet", "diffusion_pytorch_model", dtype, meta or skip_unet)
    unet = _materialise(lambda: UNetModel(unet_config), convert.unet_diffusers_to_ldm(unet_raw, unet_config),
                        "unet", str(root / "unet"), report)
    del unet_raw
    if vae is None:
        vae_config = convert.vae_config_from_diffusers(_read_json(root / "vae" / "config.json"), str(root / "vae" / "config.json"))
        vae_raw = _folder_state(root / "vae", "diffusion_pytorch_model", dtype, meta)
        vae = _materialise(lambda: AutoencoderKL(vae_config), convert.vae_diffusers_to_ldm(vae_raw, vae_config),
                           "vae", str(root / "vae"), report)
    specs = candidates[0].folder_text_encoders  # the same for every candidate of one folder layout
    encoders: list[TextEncoder] = []
    text_configs = []
    for spec in specs:
        folder = root / spec.folder
        config = convert.clip_config_from_transformers(_read_json(folder / "config.json"), str(folder / "config.json"))
        if spec.pooled and config.projection_dim is None:
            config = replace(config, projection_dim=config.hidden_size)
        text_configs.append(config)
        state = convert.hf_clip_state(_folder_state(folder, "model", dtype, meta))
        model = _materialise(lambda c=config: CLIPTextModel(c), state, spec.folder, str(folder), report)
        tokenizer = CLIPTokenizer.from_folder(root / spec.tokenizer_folder)
        encoders.append(TextEncoder(spec, model if meta else model.to(device), tokenizer))
    scheduler_path = root / "scheduler" / "scheduler_config.json"
    scheduler = _read_json(scheduler_path) if scheduler_path.is_file() else {}
    schema.validate_scheduler_config(scheduler, str(scheduler_path))
    prediction_type = prediction_type or scheduler.get("prediction_type", "epsilon")
    scheduler["prediction_type"] = prediction_type
    family = folder_family(unet_config, text_configs, prediction_type, candidates)
    latent_size = unet_cfg_raw.get("sample_size")
    vae_scale = 2 ** (len(getattr(vae, "config", VAEConfig()).ch_mult) - 1) if not isinstance(vae, TAESD) else 8
    return DiffusionModel(
        name=root.name, path=root, family=family, unet=unet if meta or skip_unet else _place(unet, device),
        vae=vae if meta else _place(vae, device), text_encoders=encoders, scheduler_config=scheduler,
        prediction_type=prediction_type, dtype=dtype, device=device, report=report,
        sample_size=int(latent_size) * vae_scale if isinstance(latent_size, int) else None)


def _folder_hash(root: Path) -> str:
    """Short hash of a folder: sha256 over its weight files' sizes and headers (cheap, stable)."""
    digest = hashlib.sha256()
    for weights in sorted(root.glob("*/*.safetensors")):
        digest.update(str(weights.relative_to(root)).encode())
        with open(weights, "rb") as handle:
            digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:10]


# ----------------------------------------------------------------------------- public entry points
def load_model(path: str | Path, *, device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None,
               prediction_type: str | None = None, vae_path: str | Path | None = None,
               unet_path: str | Path | None = None) -> DiffusionModel:
    """Load a checkpoint file or a diffusers folder. Bad files raise ModelFormatError/UnsupportedModelError.

    `unet_path`: a UNet-only file or diffusers UNet folder (SDXL-Lightning, Hyper-SD, DMD2) that
    replaces the base model's UNet; the base's own UNet weights are then never read."""
    model = _load_base(Path(path), device, dtype, prediction_type, vae_path, skip_unet=unet_path is not None)
    if unet_path is None:
        return model
    from .loader_unet import replace_unet  # the loader_unet module builds on this one

    return replace_unet(model, Path(unet_path))


def _load_base(path: Path, device: str | torch.device, dtype: str | torch.dtype | None, prediction_type: str | None,
               vae_path: str | Path | None, skip_unet: bool) -> DiffusionModel:
    device = torch.device(device)
    torch_dtype = resolve_dtype(dtype, device)
    if prediction_type not in (None, "epsilon", "v_prediction", "sample"):
        raise ModelFormatError(f"unknown prediction type {prediction_type!r}")
    vae = load_vae(vae_path, device=device, dtype=torch_dtype) if vae_path else None
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelFormatError(f"{path}: a folder without model_index.json is not a diffusers model")
        return load_folder(path, device, torch_dtype, prediction_type, vae=vae, skip_unet=skip_unet)
    if not path.exists():
        raise ModelFormatError(f"{path}: no such file")
    check_not_pickle(path)
    if path.suffix.lower() != ".safetensors":
        raise ModelFormatError(f"{path.name}: not a .safetensors file or a diffusers folder")
    return load_single_file(path, device, torch_dtype, prediction_type, vae=vae, skip_unet=skip_unet)


def load_vae(path: str | Path, *, device: str | torch.device = "cpu",
             dtype: torch.dtype = torch.float32, scaling_factor: float | None = None) -> AutoencoderKL | TAESD:
    """A standalone VAE (LDM or diffusers names) or TAESD file/folder."""
    path = Path(path)
    if path.is_dir():
        config = _read_json(path / "config.json")
        state = _folder_state(path, "diffusion_pytorch_model", dtype, False)
        if config.get("_class_name") == "AutoencoderTiny":
            model = _materialise(TAESD, convert.taesd_diffusers_to_ours(state), "taesd", str(path), {})
        else:
            vae_config = convert.vae_config_from_diffusers(config, str(path / "config.json"))
            model = _materialise(lambda: AutoencoderKL(vae_config), convert.vae_diffusers_to_ldm(state, vae_config),
                                 "vae", str(path), {})
        return _place(model, device)
    check_not_pickle(path)
    header = read_header(path)
    shapes = {k: tuple(t.shape) for k, t in header.tensors.items()}
    kind = detect.classify_file(shapes)
    state = dict(iter_tensors(path, dtype=dtype, rename=lambda k: None if is_ignored(k) else k))
    if kind == "vae_ldm":
        state = detect.strip_prefix(state, detect.VAE_PREFIX)
        shapes = detect.strip_prefix(shapes, detect.VAE_PREFIX)
        kind = "vae"
    if kind == "vae":
        if "encoder.down_blocks.0.resnets.0.conv1.weight" in shapes:  # diffusers names in one file
            raise UnsupportedModelError(f"{path.name}: diffusers-named VAE files need their config; use the folder")
        hints = detect.hints_from_metadata(header.metadata, path.name)
        config = detect.detect_vae(shapes, path.name, scaling_factor or 0.18215, hints.norm_groups)
        return _place(_materialise(lambda: AutoencoderKL(config), state, "vae", path.name, {}), device)
    if kind == "taesd_diffusers":
        state, kind = convert.taesd_diffusers_to_ours(state), "taesd"
    if kind == "taesd":
        return _place(_materialise(TAESD, state, "taesd", path.name, {}), device)
    raise UnsupportedModelError(f"{path.name}: not a VAE or TAESD file (looks like: {kind})")


def inspect_model(path: str | Path, prediction_type: str | None = None) -> dict:
    """Describe a model without loading tensor data (meta tensors from the header shapes)."""
    path = Path(path)
    if path.is_dir():
        model = load_folder(path, torch.device("cpu"), torch.float32, prediction_type, meta=True)
        report = model.report
        description = _describe(model.family, model.unet, model.vae, [e.model for e in model.text_encoders],
                                [e.spec.folder for e in model.text_encoders], model.prediction_type, report)
        description.update(format="diffusers", components=report.get("components", []), dtype=_folder_dtype(path))
        return _with_scheduler(description, model.scheduler_config)
    if not path.exists():
        raise ModelFormatError(f"{path}: no such file")
    check_not_pickle(path)
    header = read_header(path)
    shapes = {k: tuple(t.shape) for k, t in header.tensors.items()}
    refuse_foreign(shapes, path.name)
    kind = detect.classify_file(shapes)
    dtypes = sorted({t.dtype for t in header.tensors.values()})
    if kind in ("unet", "unet_diffusers") or (kind == "checkpoint" and is_unet_only(shapes)):
        info = read_model_info(path, prediction_type)  # a UNet-only file: what read_model_info says
        return dict(info.to_dict(), tensors=len(shapes), dtype=dtypes)
    if kind != "checkpoint":
        return {"path": str(path), "format": "single_file", "kind": kind, "tensors": len(shapes), "dtype": dtypes}
    hints = detect.hints_from_metadata(header.metadata, path.name)
    plan = plan_file(header, hints)
    report: dict = {"ignored_keys": plan.ignored}
    unet, vae, texts = _build_single_file(_meta_tensors(shapes), plan, path.name, report)
    prediction = single_file_prediction(header, plan, hints, prediction_type)
    description = _describe(plan.family, unet, vae, texts, [s.kind for s in plan.family.text_encoders],
                            prediction, report)
    components = ["unet"] + (["vae"] if vae is not None else []) + [s.kind for s in plan.family.text_encoders]
    description.update(format="single_file", components=components, dtype=dtypes, kind=kind,
                       markers=sorted(plan.markers))
    return _with_scheduler(description, single_file_scheduler(plan.family, plan.markers, prediction))


def _with_scheduler(description: dict, scheduler: dict) -> dict:
    """What the report says about sampling: the scheduler config and whether it is zero-terminal-SNR."""
    description.update(scheduler_config=scheduler, zero_terminal_snr=bool(scheduler.get("rescale_betas_zero_snr")))
    return description


def _folder_dtype(root: Path) -> list[str]:
    dtypes = set()
    for weights in root.glob("*/*.safetensors"):
        dtypes |= {t.dtype for t in read_header(weights).tensors.values()}
    return sorted(dtypes)


def _describe(family: ModelFamily, unet: UNetModel, vae, texts, names, prediction_type: str, report: dict) -> dict:
    in_channels = unet.config.in_channels
    return {
        "family": family.name, "family_description": family.description, "prediction_type": prediction_type,
        "variant": variant_of(in_channels), "unet_in_channels": in_channels,
        "inpaint": in_channels == 9, "instruct_pix2pix": in_channels == 8,
        "unet_config": unet.config.to_dict(),
        "parameters": {"unet": parameter_count(unet), **({"vae": parameter_count(vae)} if vae is not None else {}),
                       **{name: parameter_count(t) for name, t in zip(names, texts)}},
        "missing_keys": report.get("missing_keys", []), "unexpected_keys": report.get("unexpected_keys", []),
        "shape_mismatches": report.get("shape_mismatches", []), "ignored_keys": len(report.get("ignored_keys", [])),
    }
