"""Load a model from a single-file checkpoint or a diffusers-layout folder into our modules.

Modules are built on the `meta` device (no random initialisation: it would cost seconds for
SDXL and be overwritten anyway) and receive their weights with `load_state_dict(assign=True,
strict=True)`, already cast to the requested dtype and placed on the requested device.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from . import convert, detect
from .errors import ModelFormatError, UnsupportedModelError
from .formats.pickle_checkpoint import check_not_pickle
from .formats.safetensors_file import iter_tensors, read_header
from .models.clip_text import CLIPTextModel
from .models.taesd import TAESD
from .models.unet import UNetModel
from .models.vae import AutoencoderKL, VAEConfig
from .plan import (IGNORED_PREFIXES, IGNORED_SUFFIXES, SingleFilePlan, folder_family, hf_clip_config,  # noqa: F401
                   is_ignored, plan_single_file, split_components)
from .registry import ModelFamily, TextEncoderSpec, family_by_name, variant_of
from .tokenizer.bpe import CLIPTokenizer

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
    file_hash: str = ""  # A1111's short model hash: first 10 hex digits of the file's sha256
    report: dict = field(default_factory=dict)
    sample_size: int | None = None  # native image size when the folder says so (unet sample_size × 8)

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


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()[:10]


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


def load_single_file(path: Path, device: torch.device, dtype: torch.dtype,
                     prediction_type: str | None, vae: AutoencoderKL | TAESD | None = None) -> DiffusionModel:
    header = read_header(path)
    kind = detect.classify_file({k: t.shape for k, t in header.tensors.items()})
    if kind != "checkpoint":
        raise UnsupportedModelError(f"{path.name}: holds a {kind.replace('_', ' ')}, not a full checkpoint")
    shapes = {k: tuple(t.shape) for k, t in header.tensors.items()}
    hints = detect.hints_from_metadata(header.metadata, path.name)
    plan = plan_single_file(shapes, path.name, hints)
    state = dict(iter_tensors(path, device="cpu", dtype=dtype,
                              rename=lambda k: None if is_ignored(k) else k))
    report: dict = {"ignored_keys": plan.ignored}
    unet, own_vae, text_models = _build_single_file(state, plan, path.name, report)
    del state
    if vae is None and own_vae is None:
        raise ModelFormatError(f"{path.name}: the checkpoint has no VAE; give one with --vae")
    family = plan.family
    scheduler = dict(family.scheduler)
    if prediction_type is None:
        prediction_type = hints.prediction_type or _guess_prediction_type(path, header, family)
    scheduler["prediction_type"] = prediction_type
    tokenizers = [CLIPTokenizer.default(pad_token_id=spec.pad_token_id) for spec in family.text_encoders]
    encoders = [TextEncoder(spec, model.to(device), tok)
                for spec, model, tok in zip(family.text_encoders, text_models, tokenizers)]
    return DiffusionModel(
        name=path.stem, path=path, family=family, unet=_place(unet, device), vae=_place(vae or own_vae, device),
        text_encoders=encoders, scheduler_config=scheduler, prediction_type=prediction_type,
        dtype=dtype, device=device, file_hash=file_hash(path), report=report)


def _guess_prediction_type(path: Path, header, family: ModelFamily) -> str:
    """SD2 single files don't say whether they predict v (768 models do, 512 'base' ones don't).
    The std of one LayerNorm bias tells them apart in practice (a known heuristic); a user
    override always wins."""
    if family.name != "sd2":
        return family.scheduler.get("prediction_type", "epsilon")
    key = detect.UNET_PREFIX + "output_blocks.11.1.transformer_blocks.0.norm1.bias"
    if key not in header.tensors:
        return "epsilon"
    tensor = dict(iter_tensors(path, keys=[key], dtype=torch.float32))[key]
    return "v_prediction" if tensor.std().item() > 0.09 else "epsilon"


# ----------------------------------------------------------------------------- diffusers folder
def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFormatError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFormatError(f"{path}: unreadable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ModelFormatError(f"{path}: expected a JSON object")
    return data


def _weights_file(folder: Path, stems: Iterable[str]) -> Path:
    for stem in stems:
        for suffix in (".safetensors", ".fp16.safetensors"):
            candidate = folder / f"{stem}{suffix}"
            if candidate.is_file():
                return candidate
    pickles = [p for p in folder.glob("*.bin")] + [p for p in folder.glob("*.ckpt")]
    if pickles:
        check_not_pickle(pickles[0])
    raise ModelFormatError(f"{folder}: no .safetensors weights found")


def _folder_state(folder: Path, stems: Iterable[str], dtype: torch.dtype, meta: bool) -> dict[str, torch.Tensor]:
    weights = _weights_file(folder, stems)
    if meta:
        header = read_header(weights)
        return _meta_tensors({k: tuple(t.shape) for k, t in header.tensors.items()})
    return dict(iter_tensors(weights, dtype=dtype))


def _folder_text_specs(root: Path, is_xl: bool, has_first: bool) -> list[TextEncoderSpec]:
    specs = []
    if is_xl:
        sdxl = family_by_name("sdxl")
        if has_first:
            specs.append(sdxl.text_encoders[0])
        specs.append(sdxl.text_encoders[1])
        return specs
    # diffusers SD1/SD2 pipelines use the last hidden state with the final LayerNorm (SD2 folders
    # already drop OpenCLIP's last layer); padding comes from the tokenizer folder.
    return [TextEncoderSpec("clip", "", "hf", "text_encoder", "tokenizer", pad_token_id=-1,
                            hidden_layer=-1, final_layer_norm=True)]


def load_folder(root: Path, device: torch.device, dtype: torch.dtype, prediction_type: str | None,
                meta: bool = False, vae: AutoencoderKL | TAESD | None = None) -> DiffusionModel:
    index = _read_json(root / "model_index.json")
    report: dict = {"components": sorted(k for k in index if not k.startswith("_"))}
    is_xl = "text_encoder_2" in index and index.get("text_encoder_2") not in (None, [None, None])
    has_first = index.get("text_encoder") not in (None, [None, None])
    unet_cfg_raw = _read_json(root / "unet" / "config.json")
    unet_config = convert.unet_config_from_diffusers(unet_cfg_raw, str(root / "unet" / "config.json"))
    unet_raw = _folder_state(root / "unet", ["diffusion_pytorch_model"], dtype, meta)
    unet = _materialise(lambda: UNetModel(unet_config), convert.unet_diffusers_to_ldm(unet_raw, unet_config),
                        "unet", str(root / "unet"), report)
    del unet_raw
    if vae is None:
        vae_config = convert.vae_config_from_diffusers(_read_json(root / "vae" / "config.json"), str(root / "vae" / "config.json"))
        vae_raw = _folder_state(root / "vae", ["diffusion_pytorch_model"], dtype, meta)
        vae = _materialise(lambda: AutoencoderKL(vae_config), convert.vae_diffusers_to_ldm(vae_raw, vae_config),
                           "vae", str(root / "vae"), report)
    specs = _folder_text_specs(root, is_xl, has_first)
    encoders: list[TextEncoder] = []
    text_configs = []
    for spec in specs:
        folder = root / spec.folder
        config = convert.clip_config_from_transformers(_read_json(folder / "config.json"), str(folder / "config.json"))
        if spec.pooled and config.projection_dim is None:
            config = replace(config, projection_dim=config.hidden_size)
        text_configs.append(config)
        state = convert.hf_clip_state(_folder_state(folder, ["model"], dtype, meta))
        model = _materialise(lambda c=config: CLIPTextModel(c), state, spec.folder, str(folder), report)
        tokenizer = CLIPTokenizer.from_folder(root / spec.tokenizer_folder)
        encoders.append(TextEncoder(spec, model if meta else model.to(device), tokenizer))
    scheduler_path = root / "scheduler" / "scheduler_config.json"
    scheduler = _read_json(scheduler_path) if scheduler_path.is_file() else {}
    prediction_type = prediction_type or scheduler.get("prediction_type", "epsilon")
    scheduler["prediction_type"] = prediction_type
    family = folder_family(unet_config, text_configs, prediction_type, is_xl, has_first)
    latent_size = unet_cfg_raw.get("sample_size")
    vae_scale = 2 ** (len(getattr(vae, "config", VAEConfig()).ch_mult) - 1) if not isinstance(vae, TAESD) else 8
    return DiffusionModel(
        name=root.name, path=root, family=family, unet=unet if meta else _place(unet, device),
        vae=vae if meta else _place(vae, device), text_encoders=encoders, scheduler_config=scheduler,
        prediction_type=prediction_type, dtype=dtype, device=device, report=report,
        file_hash=_folder_hash(root) if not meta else "",
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
               prediction_type: str | None = None, vae_path: str | Path | None = None) -> DiffusionModel:
    """Load a checkpoint file or a diffusers folder. Bad files raise ModelFormatError/UnsupportedModelError."""
    path = Path(path)
    device = torch.device(device)
    torch_dtype = resolve_dtype(dtype, device)
    if prediction_type not in (None, "epsilon", "v_prediction", "sample"):
        raise ModelFormatError(f"unknown prediction type {prediction_type!r}")
    vae = load_vae(vae_path, device=device, dtype=torch_dtype) if vae_path else None
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelFormatError(f"{path}: a folder without model_index.json is not a diffusers model")
        return load_folder(path, device, torch_dtype, prediction_type, vae=vae)
    if not path.exists():
        raise ModelFormatError(f"{path}: no such file")
    check_not_pickle(path)
    if path.suffix.lower() != ".safetensors":
        raise ModelFormatError(f"{path.name}: not a .safetensors file or a diffusers folder")
    return load_single_file(path, device, torch_dtype, prediction_type, vae=vae)


def load_vae(path: str | Path, *, device: str | torch.device = "cpu",
             dtype: torch.dtype = torch.float32, scaling_factor: float | None = None) -> AutoencoderKL | TAESD:
    """A standalone VAE (LDM or diffusers names) or TAESD file/folder."""
    path = Path(path)
    if path.is_dir():
        config = _read_json(path / "config.json")
        state = _folder_state(path, ["diffusion_pytorch_model"], dtype, False)
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
        return description
    if not path.exists():
        raise ModelFormatError(f"{path}: no such file")
    check_not_pickle(path)
    header = read_header(path)
    shapes = {k: tuple(t.shape) for k, t in header.tensors.items()}
    kind = detect.classify_file(shapes)
    dtypes = sorted({t.dtype for t in header.tensors.values()})
    if kind != "checkpoint":
        return {"path": str(path), "format": "single_file", "kind": kind, "tensors": len(shapes), "dtype": dtypes}
    hints = detect.hints_from_metadata(header.metadata, path.name)
    plan = plan_single_file(shapes, path.name, hints)
    report: dict = {"ignored_keys": plan.ignored}
    unet, vae, texts = _build_single_file(_meta_tensors(shapes), plan, path.name, report)
    prediction = prediction_type or hints.prediction_type or _guess_prediction_type(path, header, plan.family)
    description = _describe(plan.family, unet, vae, texts, [s.kind for s in plan.family.text_encoders],
                            prediction, report)
    components = ["unet"] + (["vae"] if vae is not None else []) + [s.kind for s in plan.family.text_encoders]
    description.update(format="single_file", components=components, dtype=dtypes, kind=kind)
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
