"""Finding a FLUX.1 transformer file's companions: ae, clip_l, t5 and the T5 tokenizer
(torch-free: `read_model_info` uses it to say whether a transformer file is runnable).
The search order is described in `inference.flux.single_file`.
"""
from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelFormatError

TOKENIZERS_ENV = "CANVASAI_FLUX_TOKENIZERS"
_LIBRARY_MODEL_DIRS = ("unet", "diffusion_models", "checkpoints")
# Names tried in order (case-insensitive globs), per component.
PATTERNS: dict[str, tuple[str, ...]] = {
    "ae": ("ae.safetensors", "ae.sft", "flux_ae.safetensors", "flux1-ae.safetensors", "flux_vae.safetensors",
           "flux*vae*.safetensors", "*flux*ae.safetensors"),
    "clip_l": ("clip_l.safetensors", "*clip_l*.safetensors", "*clip-l*.safetensors"),
    "t5": ("t5xxl_fp16.safetensors", "t5xxl_fp8_e4m3fn.safetensors", "t5xxl_fp8_e4m3fn_scaled.safetensors",
           "t5xxl*.safetensors", "*t5*xxl*.safetensors"),
}
_SEARCH_DIRS = {"ae": ("vae",), "clip_l": ("text_encoders", "clip"), "t5": ("text_encoders", "clip")}
_TOKENIZER_DIRS = ("tokenizer_2", "t5_tokenizer", "tokenizers/t5", "tokenizers")


@dataclass(frozen=True)
class FluxFiles:
    transformer: Path
    ae: Path
    clip_l: Path
    t5: Path
    tokenizers: Path | None  # a folder with the T5 tokenizer.json (None: not found)


def library_root(transformer: Path) -> Path | None:
    """`models/` of a ComfyUI-style library holding `transformer` (models/unet/…/x.gguf)."""
    for parent in transformer.resolve().parents:
        if parent.name.lower() in _LIBRARY_MODEL_DIRS:
            return parent.parent
    return None


def search_dirs(transformer: Path, component: str) -> list[Path]:
    dirs = [transformer.parent]
    root = library_root(transformer)
    if root is not None:
        dirs += [root / name for name in _SEARCH_DIRS[component]]
    return [d for d in dict.fromkeys(dirs) if d.is_dir()]


def _find(transformer: Path, component: str) -> Path | None:
    for folder in search_dirs(transformer, component):
        names = {p.name.lower(): p for p in folder.iterdir() if p.is_file()}
        for pattern in PATTERNS[component]:
            hits = sorted(n for n in names if fnmatch.fnmatch(n, pattern) and names[n] != transformer)
            if hits:
                return names[hits[0]]
    return None


def _tokenizer_folder(folder: Path) -> Path | None:
    """`folder` itself when it holds tokenizer.json, else its T5 tokenizer subfolder."""
    if (folder / "tokenizer.json").is_file():
        return folder
    for name in _TOKENIZER_DIRS:
        if (folder / name / "tokenizer.json").is_file():
            return folder / name
    return None


def find_tokenizers(transformer: Path, explicit: str | Path | None = None) -> Path | None:
    if explicit is not None:
        return _tokenizer_folder(Path(explicit)) or Path(explicit)  # a bad folder fails on use, by name
    configured = os.environ.get(TOKENIZERS_ENV)
    if configured:
        return _tokenizer_folder(Path(configured)) or Path(configured)
    for folder in search_dirs(transformer, "t5") + search_dirs(transformer, "ae"):
        found = _tokenizer_folder(folder)
        if found is not None:
            return found
    return None


# An all-in-one file (ComfyUI's "checkpoint" FLUX: model.diffusion_model. + vae. + text_encoders.…)
# carries its companions: key prefixes that mark them.
_EMBEDDED = {"ae": ("vae.", "first_stage_model."), "clip_l": ("text_encoders.clip_l.",),
             "t5": ("text_encoders.t5xxl.",)}


def _embedded(transformer: Path) -> set[str]:
    """The components a `.safetensors` transformer file holds itself (header read only)."""
    if transformer.suffix.lower() not in (".safetensors", ".sft"):
        return set()
    from ..formats.safetensors_header import read_header

    try:
        keys = read_header(transformer).tensors
    except (ModelFormatError, OSError):
        return set()
    return {c for c, prefixes in _EMBEDDED.items() if any(k.startswith(prefixes) for k in keys)}


def find_flux_files(transformer: str | Path, *, ae: str | Path | None = None, clip_l: str | Path | None = None,
                    t5: str | Path | None = None, tokenizers: str | Path | None = None) -> FluxFiles:
    """The transformer's companion files (module doc); one `ModelFormatError` listing all that
    are missing."""
    transformer = Path(transformer)
    if not transformer.is_file():
        raise ModelFormatError(f"{transformer}: no such file")
    given = {"ae": ae, "clip_l": clip_l, "t5": t5}
    found: dict[str, Path] = {}
    missing: list[str] = []
    for component, value in given.items():
        if value is not None:
            if not Path(value).is_file():
                raise ModelFormatError(f"{Path(value)}: no such file ({component} for {transformer.name})")
            found[component] = Path(value)
            continue
        hit = transformer if component in _embedded(transformer) else _find(transformer, component)
        if hit is None:
            missing.append(f"{component} ({PATTERNS[component][0]})")
        else:
            found[component] = hit
    if missing:
        looked = sorted({str(d) for c in given for d in search_dirs(transformer, c)})
        raise ModelFormatError(f"{transformer.name}: FLUX.1 needs {', '.join(missing)} beside the transformer; "
                               f"looked in {', '.join(looked) or transformer.parent}; give the files explicitly")
    return FluxFiles(transformer, found["ae"], found["clip_l"], found["t5"], find_tokenizers(transformer, tokenizers))
