"""FLUX.1 from separate files, as ComfyUI and Forge users keep it: a transformer
(`flux1-dev.safetensors`, `flux1-dev-fp8.safetensors`, `flux1-dev-Q4_K_S.gguf`) plus
`ae.safetensors`, `clip_l.safetensors` and `t5xxl_fp16.safetensors` / `t5xxl_fp8_e4m3fn.safetensors`.

How the companions are found (`find_flux_files`): what the caller passes wins; otherwise they
are looked up, by their usual names, in the transformer's own folder and, when the transformer
sits in a ComfyUI-style library (`models/unet/` or `models/diffusion_models/`, at any depth), in
`models/vae/` (ae) and `models/text_encoders/`, `models/clip/` (clip_l, t5). A missing piece is one
line naming the transformer, what is missing and where we looked.

Tokenizers are not in those files. CLIP-L's vocabulary ships with the engine
(`assets/clip`); the T5 one (`tokenizer.json`, 2.4 MB) comes from, in order: `tokenizers=`, the
`CANVASAI_FLUX_TOKENIZERS` environment variable, or a `tokenizer_2/` (or `t5_tokenizer/`) folder
next to the transformer or in the text-encoder folders. Such a folder is the `tokenizer_2/` of
any diffusers FLUX.1 repository; a folder holding `tokenizer_2/` (a FLUX repo) works too.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ModelFormatError
from ..tokenizer import CLIPTokenizer
from .discover import TOKENIZERS_ENV, FluxFiles, find_flux_files
from .file_info import file_variant, transformer_file_facts
from .loader import FluxModel, default_dtype
from .t5_tokenizer import T5Tokenizer
from .weights import load_ae_file, load_clip_file, load_t5_file, load_transformer_file

# FLUX.1's scheduler configs (scheduler/scheduler_config.json of the released repos).
SCHNELL_SCHEDULER = {"_class_name": "FlowMatchEulerDiscreteScheduler", "base_image_seq_len": 256, "base_shift": 0.5,
                     "max_image_seq_len": 4096, "max_shift": 1.15, "num_train_timesteps": 1000, "shift": 1.0,
                     "use_dynamic_shifting": False}
DEV_SCHEDULER = {**SCHNELL_SCHEDULER, "shift": 3.0, "use_dynamic_shifting": True}


def t5_tokenizer(files: FluxFiles) -> T5Tokenizer:
    if files.tokenizers is None:
        raise ModelFormatError(f"{files.transformer.name}: the T5 tokenizer is not in the weight files; give a folder "
                               f"with tokenizer.json (+ tokenizer_config.json) from a FLUX.1 repo's tokenizer_2/ "
                               f"(tokenizers=… or {TOKENIZERS_ENV}), or put it in tokenizer_2/ beside the transformer")
    return T5Tokenizer.from_folder(files.tokenizers)


def clip_tokenizer(files: FluxFiles) -> CLIPTokenizer:
    """A `tokenizer/` folder next to the T5 one (a FLUX repo) if present, else the shipped CLIP
    vocabulary; FLUX pads CLIP with `<|endoftext|>` (49407)."""
    if files.tokenizers is not None:
        folder = files.tokenizers.parent / "tokenizer"
        if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
            return CLIPTokenizer.from_folder(folder)
    return CLIPTokenizer.default(pad_token_id=49407)


def load_flux_single_file(transformer: str | Path, *, ae: str | Path | None = None,
                          clip_l: str | Path | None = None, t5: str | Path | None = None,
                          tokenizers: str | Path | None = None, device: str | torch.device = "cpu",
                          dtype: str | torch.dtype | None = None, meta: bool = False,
                          axes_dim: tuple[int, ...] | None = None) -> FluxModel:
    """A FLUX.1 model from a transformer file (`.safetensors` BFL layout in any float/fp8 dtype,
    or `.gguf`) and its companions (`find_flux_files`). `meta`: shapes only, nothing read."""
    transformer_file_facts(transformer)  # a damaged or foreign transformer file is named before its companions
    files = find_flux_files(transformer, ae=ae, clip_l=clip_l, t5=t5, tokenizers=tokenizers)
    device = torch.device(device)
    if isinstance(dtype, str):
        dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]
    dtype = dtype or default_dtype(device)
    # Tokenizers first: a missing one is the cheapest failure, before gigabytes are read.
    # Inspection (meta) does without the T5 tokenizer if none is found.
    t5_tok = t5_tokenizer(files) if not meta or files.tokenizers is not None else None
    clip_tok = clip_tokenizer(files)
    report: dict = {"components": ["transformer", "vae", "text_encoder", "text_encoder_2"],
                    "files": {k: str(v) for k, v in vars(files).items() if v is not None}}
    model = load_transformer_file(files.transformer, device=device, dtype=dtype, axes_dim=axes_dim,
                                  report=report, meta=meta)
    family, variant = file_variant(model.config.guidance_embed, model.config.in_channels, files.transformer.name)
    report.update(family=family, variant=variant)
    vae = load_ae_file(files.ae, device=device, dtype=dtype, report=report, meta=meta)
    clip = load_clip_file(files.clip_l, device=device, dtype=dtype, report=report, meta=meta)
    t5_model = load_t5_file(files.t5, device=device, dtype=dtype, report=report, meta=meta)
    if not meta:
        clip, t5_model = clip.to(device), t5_model.to(device)
        vae = vae.to(device=device, memory_format=torch.channels_last)
    return FluxModel(name=files.transformer.stem, path=files.transformer, transformer=model, vae=vae, clip=clip,
                     clip_tokenizer=clip_tok, t5=t5_model, t5_tokenizer=t5_tok,
                     scheduler_config=dict(DEV_SCHEDULER if model.config.guidance_embed else SCHNELL_SCHEDULER),
                     dtype=dtype, device=device, report=report, variant=variant)
