"""What a FLUX.1 diffusers folder is, read from its JSON files and safetensors headers (torch-free,
like `inference.model_info`, so the editor's model picker can describe FLUX without torch)."""
from __future__ import annotations

from pathlib import Path

from ..errors import ModelFormatError
from ..formats.diffusers_weights import component_weights
from ..model_info import ModelInfo, Preset
from ..jsonfile import read_json_object as read_json  # noqa: F401 - one reader for model folders' JSON

FLUX_PIPELINE_CLASSES = ("FluxPipeline", "FluxImg2ImgPipeline", "FluxInpaintPipeline", "FluxFillPipeline",
                         "FluxKontextPipeline")
COMPONENTS = {"transformer": "diffusion_pytorch_model", "vae": "diffusion_pytorch_model", "text_encoder": "model",
              "text_encoder_2": "model"}
# BFL's recommended settings: schnell 1–4 steps without guidance, dev 28–50 steps at guidance 3.5.
SCHNELL_PRESET = Preset(sampler="euler", steps=4, guidance=0.0, source="FLUX.1 [schnell] defaults")
DEV_PRESET = Preset(sampler="euler", steps=28, guidance=3.5, source="FLUX.1 [dev] defaults")
# FLUX.1 Fill [dev] and Kontext [dev] model cards (and diffusers' pipeline defaults).
FILL_PRESET = Preset(sampler="euler", steps=50, guidance=30.0, source="FLUX.1 Fill [dev] defaults")
KONTEXT_PRESET = Preset(sampler="euler", steps=28, guidance=2.5, source="FLUX.1 Kontext [dev] defaults")
# variant → (family, description, preset); "base" is dev or schnell by the guidance embedding.
_VARIANTS = {"fill": ("flux1-fill", "FLUX.1 Fill [dev]", FILL_PRESET),
             "kontext": ("flux1-kontext", "FLUX.1 Kontext [dev]", KONTEXT_PRESET)}


def is_flux_folder(path: str | Path) -> bool:
    """True for a diffusers folder whose model_index.json names a FLUX.1 pipeline."""
    index = Path(path) / "model_index.json"
    if not index.is_file():
        return False
    try:
        return read_json(index).get("_class_name") in FLUX_PIPELINE_CLASSES
    except ModelFormatError:
        return False


def flux_variant(class_name: str | None, in_channels: int, latent_channels: int = 16, vae_scale: int = 8) -> str:
    """"fill", "kontext" or "base". Fill is told by its transformer input (noisy latents + masked-image
    latents + the 8×8-packed mask, 384 channels for FLUX.1), whatever the folder's class says;
    Kontext's transformer is shaped like dev's, so only model_index.json's class tells it apart."""
    packed = 4 * latent_channels
    if in_channels == 2 * packed + 4 * vae_scale * vae_scale:
        return "fill"
    return "kontext" if class_name == "FluxKontextPipeline" else "base"


BFL_MARKER = "double_blocks.0.img_attn.qkv.weight"


def is_bfl_transformer_file(path: str | Path) -> bool:
    """True for a `.safetensors` file holding a FLUX.1 transformer in BFL's layout (optionally
    under `model.diffusion_model.`), read from the header only."""
    from ..formats.safetensors_header import read_header

    try:
        keys = read_header(Path(path)).tensors
    except (ModelFormatError, OSError):
        return False
    return any(key == BFL_MARKER or key.endswith("." + BFL_MARKER) for key in keys)


def flux_folder_info(root: str | Path) -> ModelInfo:
    """ModelInfo of a FLUX.1 folder: family "flux1-dev" (guidance embedding), "flux1-schnell",
    "flux1-fill" or "flux1-kontext" (variant "fill" / "kontext", with their presets)."""
    root = Path(root)
    transformer = read_json(root / "transformer" / "config.json")
    vae = read_json(root / "vae" / "config.json")
    dev = bool(transformer.get("guidance_embeds", False))
    block_out = vae.get("block_out_channels") or [128, 256, 512, 512]
    variant = flux_variant(read_json(root / "model_index.json").get("_class_name"),
                           int(transformer.get("in_channels", 64)), int(vae.get("latent_channels", 16)),
                           2 ** (len(block_out) - 1))
    family, description, preset = _VARIANTS.get(variant) or (
        ("flux1-dev", "FLUX.1 [dev]", DEV_PRESET) if dev else ("flux1-schnell", "FLUX.1 [schnell]", SCHNELL_PRESET))
    parameters: dict[str, int] = {}
    dtypes: set[str] = set()
    for component, stem in COMPONENTS.items():
        total = 0
        for weights in component_weights(root / component, stem):
            for tensor in weights.header.tensors.values():
                count = 1
                for side in tensor.shape:
                    count *= side
                total += count
                dtypes.add(tensor.dtype)
        parameters[component] = total
    scheduler_path = root / "scheduler" / "scheduler_config.json"
    scheduler = read_json(scheduler_path) if scheduler_path.is_file() else {}
    return ModelInfo(
        path=str(root), format="diffusers", kind="checkpoint",
        size_bytes=sum(p.stat().st_size for p in root.rglob("*") if p.is_file()),
        family=family, family_description=description, variant=variant,
        prediction_type="flow", unet_in_channels=int(transformer.get("in_channels", 64)), native_resolution=1024,
        latent_channels=int(vae.get("latent_channels", 16)),
        latent_scaling_factor=float(vae.get("scaling_factor", 0.3611)),
        scheduler_class=scheduler.get("_class_name"), preset=preset,
        parameters=parameters, dtypes=tuple(sorted(dtypes)),
        warnings=() if 2 ** (len(block_out) - 1) == 8 else (f"VAE downscale {2 ** (len(block_out) - 1)}, not 8",))
