"""What a FLUX.1 transformer file is (BFL `.safetensors` or `.gguf`), from its header alone
(torch-free, like `inference.model_info`): family, variant, quantisation, companions.

Variant from the keys: `guidance_in` → dev-like (guidance-distilled), none → schnell; an
`img_in` 384 wide (64 packed latent + 64 masked image + 256 mask channels) → Fill. Kontext has
dev's exact layout (its reference image travels as extra tokens), so only the file name can
tell it: "kontext" in the name, else it is reported as dev.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import ModelFormatError, UnsupportedModelError
from ..model_info import ModelInfo
from . import info as _info
from .config import flux_config_from_shapes
from .info import BFL_MARKER, DEV_PRESET, SCHNELL_PRESET

FILL_IN_CHANNELS = 384
# variant → (family, description, preset) as the folder reader names them (info.py), when it has them.
_VARIANTS: dict = getattr(_info, "_VARIANTS", {})
_PREFIXES = ("model.diffusion_model.", "diffusion_model.")
_SCALE_KEYS = (".scale_weight", ".scale_input")


def file_variant(guidance_embed: bool, in_channels: int, filename: str) -> tuple[str, str]:
    """(base family, variant): "flux1-dev" / "flux1-schnell" by the guidance embedding; variant
    "base", "fill" (by the input width) or "kontext" (by the file name only)."""
    family = "flux1-dev" if guidance_embed else "flux1-schnell"
    if in_channels == FILL_IN_CHANNELS:
        return family, "fill"
    if "kontext" in filename.lower():
        return family, "kontext"
    return family, "base"


def _strip(key: str) -> str:
    for prefix in _PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


AXES_KEY = "canvasai.rope_axes"  # our metadata hint: RoPE axes of non-FLUX.1 head widths, "4,6,6"


def _axes(value: object, source: str) -> tuple[int, ...] | None:
    if value is None:
        return None
    parts = str(value).split(",")
    if not all(p.strip().isdigit() for p in parts) or len(parts) != 3:
        raise ModelFormatError(f"{source}: metadata {AXES_KEY}={str(value)[:40]!r} is not three whole numbers")
    return tuple(int(p) for p in parts)


def transformer_file_facts(path: str | Path) -> dict:
    """Shapes (BFL names), dtype/quantisation counts, format, of a FLUX transformer file. Raises
    a one-line error for files that are not one (a GGUF of another model, damage)."""
    path = Path(path)
    if path.suffix.lower() == ".gguf":
        from .gguf import read_flux_gguf

        contents = read_flux_gguf(path)
        shapes = {name: t.shape for name, t in contents.tensors.items()}
        return {"format": "gguf", "shapes": shapes, "types": contents.type_counts(),
                "architecture": contents.architecture, "axes_dim": _axes(contents.metadata.get(AXES_KEY), path.name)}
    from ..formats.safetensors_header import read_header

    header = read_header(path)
    prefixed = any(k.startswith(_PREFIXES) for k in header.tensors)
    shapes, types = {}, {}
    for key, info in header.tensors.items():
        if prefixed and not key.startswith(_PREFIXES):
            continue
        name = _strip(key)
        if name == "scaled_fp8" or name.endswith(_SCALE_KEYS):
            continue
        shapes[name] = tuple(info.shape)
        types[info.dtype] = types.get(info.dtype, 0) + 1
    if BFL_MARKER not in shapes:
        raise UnsupportedModelError(f"{path.name}: not a FLUX.1 transformer in BFL layout (no {BFL_MARKER})")
    return {"format": "single_file", "shapes": shapes, "types": dict(sorted(types.items())), "architecture": None,
            "axes_dim": _axes(header.metadata.get(AXES_KEY), path.name)}


def is_flux_transformer_file(path: str | Path) -> bool:
    """A `.gguf` file (the engine runs GGUF FLUX.1 transformers only, so any GGUF is routed here
    and refused, by name, if it is something else or damaged) or a `.safetensors` file holding a
    FLUX.1 transformer in BFL layout (header read only)."""
    path = Path(path)
    if not path.is_file():
        return False
    if path.suffix.lower() == ".gguf":
        return True
    if path.suffix.lower() not in (".safetensors", ".sft"):  # .sft: BFL's first uploads
        return False
    try:
        transformer_file_facts(path)
    except (ModelFormatError, UnsupportedModelError, OSError):
        return False
    return True


def _count(shape: tuple[int, ...]) -> int:
    total = 1
    for side in shape:
        total *= side
    return total


def flux_file_info(path: str | Path) -> ModelInfo:
    """ModelInfo of a FLUX transformer file. kind "checkpoint" (runnable) when its companion files
    are found next to it (`single_file.find_flux_files`), else "unet" with a warning naming them."""
    path = Path(path)
    facts = transformer_file_facts(path)
    try:
        config = flux_config_from_shapes(facts["shapes"], facts["axes_dim"])
    except ValueError as exc:
        raise UnsupportedModelError(f"{path.name}: {exc}") from None
    base_family, variant = file_variant(config.guidance_embed, config.in_channels, path.name)
    dev = config.guidance_embed
    warnings: list[str] = []
    kind = "checkpoint"
    from .discover import find_flux_files

    try:
        find_flux_files(path)
    except ModelFormatError as exc:
        kind = "unet"
        warnings.append(str(exc))
    if variant == "base" and dev:
        warnings.append("Kontext cannot be told from dev by its weights: name the file …kontext… if it is one")
    family, description, preset = _VARIANTS.get(variant) or (
        base_family, "FLUX.1 [dev]" if dev else "FLUX.1 [schnell]", DEV_PRESET if dev else SCHNELL_PRESET)
    return ModelInfo(path=str(path), format=facts["format"], kind=kind, size_bytes=path.stat().st_size,
                     family=family, family_description=description, variant=variant, prediction_type="flow",
                     unet_in_channels=config.in_channels, native_resolution=1024, latent_channels=16,
                     latent_scaling_factor=0.3611, scheduler_class="FlowMatchEulerDiscreteScheduler",
                     preset=preset,
                     parameters={"transformer": sum(_count(s) for s in facts["shapes"].values())},
                     dtypes=tuple(facts["types"]), warnings=tuple(warnings))


def inspect_flux_file(path: str | Path) -> dict:
    """The CLI's `inspect` report for a FLUX transformer file: ModelInfo plus the transformer
    config, tensors per dtype/quantisation type, and the companion files found."""
    path = Path(path)
    facts = transformer_file_facts(path)
    info = flux_file_info(path)
    config = flux_config_from_shapes(facts["shapes"], facts["axes_dim"])
    report = dict(info.to_dict(), transformer_config=config.to_dict(), tensors=len(facts["shapes"]),
                  quantization=facts["types"])
    if facts["architecture"]:
        report["gguf_architecture"] = facts["architecture"]
    try:
        from .discover import find_flux_files

        files = find_flux_files(path)
        report["companions"] = {k: str(v) if v else None for k, v in vars(files).items() if k != "transformer"}
    except ModelFormatError:
        report["companions"] = None
    return report
