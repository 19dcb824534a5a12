"""Loading a diffusers FLUX folder (`model_index.json` `_class_name` FluxPipeline) into our modules.

transformer/ (FluxTransformer2DModel, possibly sharded) → `FluxTransformer` in BFL key names;
vae/ (16-channel AutoencoderKL, shift 0.1159, no quant convs) → `inference.models.vae.AutoencoderKL`
(its config already carries `shift_factor` and `use_quant_conv`); text_encoder/ (CLIP-L, pooled
output only) → `inference.models.clip_text.CLIPTextModel`; text_encoder_2/ (T5 v1.1) → `T5Encoder`.
Every module is built on the meta device and filled with `load_state_dict(assign=True, strict=True)`.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .. import convert as sd_convert
from ..errors import UnsupportedModelError
from ..formats.diffusers_weights import component_shapes, component_weights
from ..formats.safetensors_file import iter_tensors
from ..models.clip_text import CLIPTextModel
from ..models.vae import AutoencoderKL
from ..tokenizer import CLIPTokenizer
from .config import FluxConfig, T5Config
from .convert import diffusers_to_bfl
from .info import FLUX_PIPELINE_CLASSES, is_flux_folder, read_json  # noqa: F401 - is_flux_folder re-exported
from .t5 import T5Encoder, t5_state
from .t5_tokenizer import DEV_MAX_LENGTH, SCHNELL_MAX_LENGTH, T5Tokenizer
from .transformer import FluxTransformer


@dataclass
class FluxModel:
    """Everything the FLUX pipeline needs, ready on its device."""

    name: str
    path: Path
    transformer: FluxTransformer
    vae: AutoencoderKL
    clip: CLIPTextModel
    clip_tokenizer: CLIPTokenizer
    t5: T5Encoder
    t5_tokenizer: T5Tokenizer
    scheduler_config: dict
    dtype: torch.dtype
    device: torch.device
    report: dict = field(default_factory=dict)
    # "base" / "fill" / "kontext" when the loader knows it (single files: Kontext only by file
    # name); None: the pipeline decides from the folder (model_index.json) and the config.
    variant: str | None = None

    @property
    def guidance_embed(self) -> bool:
        return self.transformer.config.guidance_embed

    @property
    def max_sequence_length(self) -> int:
        """T5 tokens: 256 for schnell-like models (no guidance input), 512 for dev-like ones."""
        return DEV_MAX_LENGTH if self.guidance_embed else SCHNELL_MAX_LENGTH

    @property
    def vae_scale(self) -> int:
        return self.vae.config.downscale

    @property
    def latent_channels(self) -> int:
        return self.vae.config.z_channels

    @property
    def native_resolution(self) -> int:
        return 1024


def materialise(factory: Callable[[], nn.Module], state: Mapping[str, torch.Tensor], what: str,
                report: dict) -> nn.Module:
    """The engine's one build-on-meta, check-keys, assign-strictly step (`inference.loader`), for a
    FLUX component: with meta tensors in `state` (inspection) mismatches are only reported."""
    from ..loader import _materialise

    return _materialise(factory, state, what, "FLUX", report)


def _component_state(folder: Path, stem: str, dtype: torch.dtype, meta: bool,
                     device: torch.device = torch.device("cpu")) -> dict[str, torch.Tensor]:
    """A component's tensors, read straight onto `device` (a 12B transformer never sits whole in
    host memory on its way to a GPU) and cast to `dtype`; meta tensors when `meta`."""
    files = component_weights(folder, stem)
    if meta:
        return {k: torch.empty(s, device="meta") for k, s in component_shapes(files).items()}
    state: dict[str, torch.Tensor] = {}
    for weights in files:
        state.update(iter_tensors(weights.path, device=device, dtype=dtype))
    return state


def default_dtype(device: torch.device) -> torch.dtype:
    # FLUX was trained in bf16; fp16 overflows in T5-XXL and in the transformer's activations.
    return torch.float32 if device.type == "cpu" else torch.bfloat16


def load_transformer(folder: Path, dtype: torch.dtype, report: dict, meta: bool = False,
                     device: torch.device = torch.device("cpu")) -> FluxTransformer:
    config = FluxConfig.from_diffusers(read_json(folder / "config.json"), str(folder / "config.json"))
    state = diffusers_to_bfl(_component_state(folder, "diffusion_pytorch_model", dtype, meta, device), config)
    return materialise(lambda: FluxTransformer(config), state, "transformer", report)


def load_t5(folder: Path, dtype: torch.dtype, report: dict, meta: bool = False,
            device: torch.device = torch.device("cpu")) -> T5Encoder:
    try:
        config = T5Config.from_transformers(read_json(folder / "config.json"), str(folder / "config.json"))
    except ValueError as exc:
        raise UnsupportedModelError(f"{folder / 'config.json'}: {exc}") from None
    state = t5_state(_component_state(folder, "model", dtype, meta, device))
    return materialise(lambda: T5Encoder(config), state, "text_encoder_2", report)


def load_flux_folder(root: str | Path, *, device: str | torch.device = "cpu",
                     dtype: str | torch.dtype | None = None, meta: bool = False,
                     transformer_path: str | Path | None = None) -> FluxModel:
    """Load a diffusers FLUX.1 folder. `meta`: shapes only (inspection, no weights read).
    `transformer_path`: a BFL single-file transformer (`flux1-dev.safetensors`, a fine-tune)
    used instead of the folder's transformer/, which is then not read."""
    root = Path(root)
    device = torch.device(device)
    if isinstance(dtype, str):
        dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]
    dtype = dtype or default_dtype(device)
    index = read_json(root / "model_index.json")
    if index.get("_class_name") not in FLUX_PIPELINE_CLASSES:
        raise UnsupportedModelError(f"{root}: {index.get('_class_name')!r} is not a FLUX.1 pipeline")
    report: dict = {"components": sorted(k for k in index if not k.startswith("_"))}
    if transformer_path is not None and not meta:
        # RoPE axes are not in the weights: take them from the folder's config when it has one.
        folder_config = root / "transformer" / "config.json"
        axes = FluxConfig.from_diffusers(read_json(folder_config), str(folder_config)).axes_dim if folder_config.is_file() else None
        transformer = load_bfl_transformer(transformer_path, device=device, dtype=dtype, axes_dim=axes,
                                           report=report)
    else:
        transformer = load_transformer(root / "transformer", dtype, report, meta, device)
    vae_config = sd_convert.vae_config_from_diffusers(read_json(root / "vae" / "config.json"),
                                                      str(root / "vae" / "config.json"))
    vae_state = sd_convert.vae_diffusers_to_ldm(
        _component_state(root / "vae", "diffusion_pytorch_model", dtype, meta), vae_config)
    vae = materialise(lambda: AutoencoderKL(vae_config), vae_state, "vae", report)
    clip_config = sd_convert.clip_config_from_transformers(read_json(root / "text_encoder" / "config.json"),
                                                           str(root / "text_encoder" / "config.json"))
    clip_state = sd_convert.hf_clip_state(_component_state(root / "text_encoder", "model", dtype, meta))
    clip_state.pop("text_projection.weight", None)  # FLUX uses CLIPTextModel's pooled state, unprojected
    clip = materialise(lambda: CLIPTextModel(clip_config), clip_state, "text_encoder", report)
    t5 = load_t5(root / "text_encoder_2", dtype, report, meta, device)
    scheduler_path = root / "scheduler" / "scheduler_config.json"
    scheduler = read_json(scheduler_path) if scheduler_path.is_file() else {}
    if not meta:
        transformer, clip, t5 = transformer.to(device), clip.to(device), t5.to(device)
        vae = vae.to(device=device, memory_format=torch.channels_last)
    return FluxModel(name=root.name, path=root, transformer=transformer, vae=vae, clip=clip,
                     clip_tokenizer=CLIPTokenizer.from_folder(root / "tokenizer"),
                     t5=t5, t5_tokenizer=T5Tokenizer.from_folder(root / "tokenizer_2"),
                     scheduler_config=scheduler, dtype=dtype, device=device, report=report)


def load_bfl_transformer(path: str | Path, *, device: str | torch.device = "cpu",
                         dtype: torch.dtype | None = None, axes_dim: tuple[int, ...] | None = None,
                         report: dict | None = None) -> FluxTransformer:
    """A FLUX.1 transformer file: BFL `.safetensors` (`flux1-dev.safetensors`, fp8 ones, or an
    all-in-one file whose transformer keys start with `model.diffusion_model.`) or a `.gguf`.
    Our module paths are BFL's keys, so loading is a prefix strip; the config comes from the
    tensor shapes; fp8/GGUF matrices stay compressed (`weights.load_transformer_file`)."""
    from .weights import load_transformer_file

    device = torch.device(device)
    return load_transformer_file(path, device=device, dtype=dtype or default_dtype(device), axes_dim=axes_dim,
                                 report=report)
