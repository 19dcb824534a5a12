"""UNet-only files replacing a base model's UNet (SDXL-Lightning `_unet`, Hyper-SD 1-step, DMD2).

Distilled UNets are published without VAE and text encoders, in three forms, all accepted here:

* LDM names (`input_blocks.0.0.weight`…), without or with the `model.diffusion_model.` prefix
  (in the latter case any other component in the file is ignored): architecture detected from
  the shapes like a single-file checkpoint's;
* a diffusers UNet folder (`config.json` + weights, possibly sharded or an fp16 variant);
* a diffusers UNet state dict in one file (`conv_in.weight`, `down_blocks.…`), as SDXL-Lightning
  and Hyper-SD ship them: no config, so the base model's UNet configuration is used and the
  strict load proves that it fits.

The UNet must belong to the base model's family (same cross-attention width and SDXL
conditioning input, same latent channels); otherwise one line says what does not fit.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from . import convert, detect
from .errors import ModelFormatError, UnsupportedModelError
from .foreign import refuse_foreign
from .formats.diffusers_weights import component_weights
from .formats.pickle_checkpoint import check_not_pickle
from .formats.safetensors_file import iter_tensors, read_header
from .loader import DiffusionModel, _materialise, _place, _read_json
from .models.configs import UNetConfig
from .models.unet import UNetModel
from .registry import match_family


def _describe(context: int | None, adm: int | None) -> str:
    family = match_family({"context_dim": context, "adm_in_channels": adm})
    return f"{family.description} UNet" if family else "UNet"


def _check_fits(name: str, context: int | None, adm: int | None, out_channels: int, base: DiffusionModel) -> None:
    """The new UNet must consume the base's text conditioning and produce its latents."""
    own = base.unet.config
    if (context, adm) != (own.context_dim, own.adm_in_channels):
        raise UnsupportedModelError(
            f"{name}: this {_describe(context, adm)} (context {context}, ADM {adm}) cannot replace the UNet of "
            f"{base.name}, a {base.family.description} model (context {own.context_dim}, ADM {own.adm_in_channels})")
    if out_channels != own.out_channels:
        raise UnsupportedModelError(f"{name}: a UNet with {out_channels} latent channels cannot replace "
                                    f"the {own.out_channels}-channel UNet of {base.name}")


def _ldm_config(shapes: dict, name: str, hints: detect.FileHints, base: UNetConfig) -> UNetConfig:
    """Detected from the shapes; what shapes cannot show (heads, groups, upcast) follows the base
    model unless the file's metadata says otherwise."""
    config = detect.detect_unet(shapes, name, hints.head_dim, hints.num_heads, hints.norm_groups)
    if hints.head_dim is None and hints.num_heads is None and config.channel_mult == base.channel_mult:
        config = replace(config, num_heads=base.num_heads)
    return replace(config, upcast_attention=base.upcast_attention,
                   norm_groups=hints.norm_groups or base.norm_groups)


def _from_folder(folder: Path, base: DiffusionModel, dtype: torch.dtype) -> UNetModel:
    raw = _read_json(folder / "config.json")
    if raw.get("_class_name", "UNet2DConditionModel") != "UNet2DConditionModel":
        raise UnsupportedModelError(f"{folder}: holds a {raw.get('_class_name')}, not a UNet2DConditionModel")
    config = convert.unet_config_from_diffusers(raw, str(folder / "config.json"))
    _check_fits(str(folder), config.context_dim, config.adm_in_channels, config.out_channels, base)
    state: dict[str, torch.Tensor] = {}
    for weights in component_weights(folder, "diffusion_pytorch_model"):
        state.update(iter_tensors(weights.path, dtype=dtype))
    return _materialise(lambda: UNetModel(config), convert.unet_diffusers_to_ldm(state, config), "unet",
                        str(folder), {})


def _from_file(path: Path, base: DiffusionModel, dtype: torch.dtype) -> UNetModel:
    check_not_pickle(path)
    if path.suffix.lower() != ".safetensors":
        raise ModelFormatError(f"{path.name}: not a .safetensors file or a diffusers UNet folder")
    header = read_header(path)
    shapes = {k: tuple(t.shape) for k, t in header.tensors.items()}
    refuse_foreign(shapes, path.name)
    kind = detect.classify_file(shapes)
    hints = detect.hints_from_metadata(header.metadata, path.name)
    if kind == "checkpoint":  # take the UNet out of a prefixed file, ignore the rest
        shapes, prefix = detect.strip_prefix(shapes, detect.UNET_PREFIX), detect.UNET_PREFIX
    elif kind in ("unet", "unet_diffusers"):
        prefix = ""
    else:
        raise UnsupportedModelError(f"{path.name}: holds a {kind.replace('_', ' ')}, not a UNet")

    def rename(key: str) -> str | None:
        return key[len(prefix):] if key.startswith(prefix) else None

    if kind == "unet_diffusers":
        facts = detect.diffusers_unet_facts(shapes)
        _check_fits(path.name, facts["context_dim"], facts["adm_in_channels"], facts["out_channels"], base)
        config = replace(base.unet.config, in_channels=facts["in_channels"],
                         time_cond_proj_dim=facts["time_cond_proj_dim"])
        state = convert.unet_diffusers_to_ldm(dict(iter_tensors(path, dtype=dtype)), config)
        source = f"{path.name} (as a UNet of {base.name}'s architecture)"
    else:
        try:
            config = _ldm_config(shapes, path.name, hints, base.unet.config)
        except KeyError as missing:
            raise ModelFormatError(f"{path.name}: UNet tensor {missing.args[0]} is missing") from None
        _check_fits(path.name, config.context_dim, config.adm_in_channels, config.out_channels, base)
        state = dict(iter_tensors(path, dtype=dtype, rename=rename))
        source = path.name
    return _materialise(lambda: UNetModel(config), state, "unet", source, {})


def replace_unet(model: DiffusionModel, unet_path: Path) -> DiffusionModel:
    """`model` with its UNet replaced by the one in `unet_path` (file or diffusers UNet folder)."""
    if unet_path.is_dir():
        if not (unet_path / "config.json").is_file():
            raise ModelFormatError(f"{unet_path}: a UNet folder needs its config.json")
        unet = _from_folder(unet_path, model, model.dtype)
    elif not unet_path.exists():
        raise ModelFormatError(f"{unet_path}: no such file")
    else:
        unet = _from_file(unet_path, model, model.dtype)
    report = dict(model.report, unet_path=str(unet_path))
    return replace(model, unet=_place(unet, model.device), report=report)
