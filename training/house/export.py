"""Write diffusers-layout folders (fp16 safetensors) from the engine's LDM-named modules.

The engine only maps diffusers → LDM (`inference.convert`); the inverse is built here from the same
prefix tables, so both directions stay one definition. `export_checkpoint` writes `full/` (the
v-prediction teacher, 20 Euler steps with CFG) and `preview/` (the distilled one-step UNet, same VAE,
text encoder and tokenizer) under the output folder.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from inference import convert
from inference.errors import ModelFormatError
from inference.models.clip_text import CLIPTextModel
from inference.models.unet import UNetConfig, UNetModel
from inference.models.vae import AutoencoderKL, VAEConfig
from inference.tokenizer import CLIPTokenizer

from . import configs
from .checkpoint import entry, load_checkpoint, load_state

_RESNET_LDM_TO_DIFFUSERS = {v: k for k, v in convert._RESNET_DIFFUSERS_TO_LDM.items()}


def _invert_by_prefix(state: dict, table: dict[str, str], resnet_inner: bool) -> dict:
    """Rename LDM keys through an inverted diffusers→LDM prefix table (longest LDM prefix wins)."""
    inverse = {ldm: diff for diff, ldm in table.items()}
    prefixes = sorted(inverse, key=len, reverse=True)
    out = {}
    for key, value in state.items():
        new_key = key
        for prefix in prefixes:
            if key.startswith(prefix):
                rest = key[len(prefix):]
                target = inverse[prefix]
                if resnet_inner and ".resnets." in target:
                    for ldm, diff in _RESNET_LDM_TO_DIFFUSERS.items():
                        if rest.startswith(ldm + "."):
                            rest = diff + rest[len(ldm):]
                            break
                new_key = target + rest
                break
        out[new_key] = value
    return out


def unet_ldm_to_diffusers(state: dict, config: UNetConfig) -> dict:
    return _invert_by_prefix(state, convert._unet_prefix_map(config), resnet_inner=True)


_VAE_ATTN_LDM_TO_DIFFUSERS = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}


def vae_ldm_to_diffusers(state: dict, config: VAEConfig) -> dict:
    table = convert.vae_prefix_table(config)
    out = {}
    for key, value in _invert_by_prefix(state, table, resnet_inner=False).items():
        key = key.replace(".nin_shortcut.", ".conv_shortcut.")
        for side in ("encoder", "decoder"):
            prefix = f"{side}.mid.attn_1."
            if key.startswith(prefix):
                name, _, param = key[len(prefix):].rpartition(".")
                key = f"{side}.mid_block.attentions.0.{_VAE_ATTN_LDM_TO_DIFFUSERS[name]}.{param}"
                if param == "weight" and value.dim() == 4:  # 1×1 conv → Linear
                    value = value[:, :, 0, 0]
        out[key] = value
    return out


def _half(state: dict) -> dict:
    return {k: v.detach().to(torch.float16).contiguous() for k, v in state.items()}


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def write_folder(folder: str | Path, unet: UNetModel, vae: AutoencoderKL, text: CLIPTextModel,
                 scheduler: dict, notes: dict | None = None) -> Path:
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    _write_json(folder / "model_index.json", {
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.1",
        "feature_extractor": [None, None], "image_encoder": [None, None], "requires_safety_checker": False,
        "safety_checker": [None, None], "scheduler": ["diffusers", scheduler["_class_name"]],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]})
    _write_json(folder / "scheduler" / "scheduler_config.json", {**scheduler, "_diffusers_version": "0.42.1"})
    _write_json(folder / "unet" / "config.json", {**configs.unet_diffusers_config(unet.config), "_diffusers_version": "0.42.1"})
    save_file(_half(unet_ldm_to_diffusers(unet.state_dict(), unet.config)),
              str(folder / "unet" / "diffusion_pytorch_model.safetensors"))
    _write_json(folder / "vae" / "config.json", {**configs.vae_diffusers_config(vae.config), "_diffusers_version": "0.42.1"})
    save_file(_half(vae_ldm_to_diffusers(vae.state_dict(), vae.config)),
              str(folder / "vae" / "diffusion_pytorch_model.safetensors"))
    _write_json(folder / "text_encoder" / "config.json", configs.text_transformers_config(text.config))
    save_file(_half(text.state_dict()), str(folder / "text_encoder" / "model.safetensors"), metadata={"format": "pt"})
    CLIPTokenizer.default(pad_token_id=configs.PAD_TOKEN_ID).write_folder(folder / "tokenizer")
    if notes:
        _write_json(folder / "house.json", notes)
    return folder


def models_from_checkpoint(ckpt: str | Path, vae_from: str | Path | None = None) -> dict:
    """The EMA weights of a training folder as engine modules: vae, text, unet, preview (or None).
    With `vae_from` (a house folder such as `assets/house`), the VAE comes from that folder's
    `full/` instead of the run's `vae.pt`: warm-started runs freeze the encoder, so every run's
    UNet works in the same latent space and an earlier decoder that measured better can be kept."""
    from dataclasses import replace

    ckpt = Path(ckpt)
    if not ckpt.is_dir():
        raise ModelFormatError(f"{ckpt}: not a training folder (expected a folder with unet.pt and vae.pt)")
    u_path = ckpt / "unet.pt"
    u = load_checkpoint(u_path, required=True)
    scaling = entry(u, "scaling", u_path, (int, float))
    if not math.isfinite(scaling) or scaling <= 0:
        raise ModelFormatError(f"{u_path}: entry 'scaling' is {scaling!r}, expected a positive number")
    vae = AutoencoderKL(replace(configs.VAE, scaling_factor=round(float(scaling), 6)))
    if vae_from is None:
        v_path = ckpt / "vae.pt"
        load_state(vae, entry(load_checkpoint(v_path, required=True), "model", v_path), v_path, "model")
    else:
        from inference.loader import load_model

        source = load_model(Path(vae_from) / "full", dtype="float32").vae
        if abs(float(source.config.scaling_factor) - vae.config.scaling_factor) > 1e-6:
            raise ModelFormatError(f"{vae_from}: VAE latent scale {source.config.scaling_factor} differs from the run's "
                             f"{vae.config.scaling_factor}; its decoder does not fit this UNet")
        vae.load_state_dict(source.state_dict())
    text = CLIPTextModel(configs.TEXT)
    load_state(text, entry(u, "ema_text", u_path), u_path, "ema_text")
    unet = UNetModel(configs.UNET)
    load_state(unet, entry(u, "ema_unet", u_path), u_path, "ema_unet")
    preview = None
    p_path = ckpt / "preview.pt"
    if p_path.exists():
        preview = UNetModel(configs.UNET)
        load_state(preview, entry(load_checkpoint(p_path, required=True), "ema_unet", p_path), p_path, "ema_unet")
    state = json.loads((ckpt / "state.json").read_text()) if (ckpt / "state.json").exists() else {}
    if vae_from is not None:
        state = {**state, "vae_from": str(vae_from)}
    return {"vae": vae.eval(), "text": text.eval(), "unet": unet.eval(), "preview": preview, "state": state}


def export_checkpoint(ckpt: str | Path, out: str | Path = "assets/house", vae_from: str | Path | None = None) -> dict:
    m = models_from_checkpoint(ckpt, vae_from)
    out = Path(out)
    notes = {"training": m["state"], "native_resolution": configs.RESOLUTION}
    full = write_folder(out / "full", m["unet"], m["vae"], m["text"], configs.FULL_SCHEDULER,
                        {**notes, "steps": configs.FULL_STEPS, "guidance": configs.FULL_GUIDANCE,
                         "refine_bound": configs.FULL_REFINE_BOUND})
    preview_unet = m["preview"] if m["preview"] is not None else m["unet"]
    preview = write_folder(out / "preview", preview_unet, m["vae"], m["text"], configs.PREVIEW_SCHEDULER,
                           {**notes, "steps": configs.PREVIEW_STEPS, "guidance": configs.PREVIEW_GUIDANCE,
                            "distilled": m["preview"] is not None,
                            # The student's one-step img2img/expand frames are blotches the final can't
                            # refine coherently (docs/coherence.md): the editor renders those frames with
                            # the full model. Re-measure (scripts/measure_coherence.py) before flipping.
                            "partial_denoise": m["preview"] is None})
    sizes = {p.name: sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) for p in (full, preview)}
    return {"folders": [str(full), str(preview)], "bytes": sizes, "total_mb": round(sum(sizes.values()) / 2**20, 2)}
