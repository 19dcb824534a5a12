"""Which models the AI panel can offer, where their files are, and what a
file the user adds actually is.

A model is named by the string the settings store: ``"house:preview"`` and
``"house:full"`` are the bundled house model (``assets/house/preview`` and
``assets/house/full``, diffusers layout, 128 px native); any other string is
a user path, a checkpoint file (``.safetensors``) or a diffusers folder. The
same string is the model's id in the engine, so a layer's metadata, the
pickers and the engine all agree.

Qt-free and torch-free on purpose: the panel lists models and refuses bad
files ("Add model…") long before the engine (and torch) are loaded.
``CANVASAI_HOUSE_DIR`` points the house ids elsewhere (tests, portable
installs).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

HOUSE_DIR_ENV = "CANVASAI_HOUSE_DIR"
HOUSE_PREVIEW = "house:preview"
HOUSE_FULL = "house:full"
HOUSE_FOLDERS = {HOUSE_PREVIEW: "preview", HOUSE_FULL: "full"}
HOUSE_LABELS = {HOUSE_PREVIEW: "House preview (fast)", HOUSE_FULL: "House full"}
HOUSE_NATIVE = 128  # the house model's training size (its family's default, 512, would be wrong)
HOUSE_NOTES = "house.json"  # written by training.house.export: native size, steps, guidance
# .gguf and .sft: FLUX.1 transformer files (quantised GGUF, BFL's first uploads), run with their companions.
CHECKPOINT_SUFFIXES = (".safetensors", ".gguf", ".sft")
# Steps for live previews of a model that recommends none: few-step models
# (LCM, Turbo, the house preview) look right at 1-4, others look rough but
# show composition, which is what a preview is for.
DEFAULT_PREVIEW_STEPS = 4
# Kinds that can render an image on their own; the others (a VAE, a LoRA, a bare UNet) are parts.
RUNNABLE_KINDS = ("checkpoint", "diffusers")
KIND_WORDS = {"vae": "a VAE (the image decoder), not a whole model", "taesd": "a tiny preview decoder (TAESD), "
              "not a whole model", "lora": "a LoRA (an add-on to a model), not a whole model",
              "unet": "a bare UNet without its text encoder and VAE", "unknown": "not a model this editor can run"}


def house_dir() -> Path:
    override = os.environ.get(HOUSE_DIR_ENV)
    return Path(override) if override else Path(__file__).resolve().parents[2] / "assets" / "house"


# --------------------------------------------------------------------------- inspecting files
@dataclass(frozen=True)
class ModelFacts:
    """What a model file or folder is, read from its headers (no weights)."""

    kind: str  # "checkpoint", "diffusers", "unet", "vae", "taesd", "lora", "unknown"
    family: str = ""  # "sd1", "sdxl", ... ("" when unknown)
    family_description: str = ""  # "Stable Diffusion 1.x"
    size_bytes: int = 0
    native_resolution: Optional[int] = None
    steps: Optional[int] = None  # the model's recommended settings (its preset), if any
    guidance: Optional[float] = None
    sampler: Optional[str] = None
    format: str = ""  # "diffusers" for a folder, "safetensors" for a single file
    conditioning: Optional[tuple] = None  # (cross-attention width, SDXL text_time size): what a UNet must share
    variant: str = ""  # "base", "inpaint", FLUX's "fill" / "kontext"
    quantisation: str = ""  # FLUX: "fp8", "GGUF Q4_K", "bf16"... (the pickers say what runs)
    warnings: tuple = ()  # the engine's notes (a FLUX transformer file's missing companions)

    @property
    def runnable(self) -> bool:
        return self.kind in RUNNABLE_KINDS

    def summary(self) -> str:
        """"Stable Diffusion 1.x checkpoint · 2.1 GB"."""
        what = self.family_description or self.family or "model"
        folder = self.kind == "diffusers" or self.format == "diffusers"
        kind = "diffusers folder" if folder else self.kind
        if self.family.startswith("flux"):  # "FLUX.1 [dev] · fp8 · single file · 11.9 GB"
            kind = "diffusers folder" if folder else "single file"  # a GGUF says so in its quantisation
            return " · ".join(filter(None, (what, self.quantisation, kind, format_size(self.size_bytes))))
        return f"{what} {kind} · {format_size(self.size_bytes)}"


class ModelRefused(ValueError):
    """The file cannot be used as a model; ``str()`` is a one-line reason for the user."""


def format_size(size_bytes: int) -> str:
    size = float(size_bytes)
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"  # pragma: no cover - the loop always returns


def _tree_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += (Path(root) / name).stat().st_size
            except OSError:
                pass
    return total


def _basic_facts(path: Path) -> ModelFacts:
    """Used until the engine offers ``inference.api.read_model_info``: checks
    that the file is at least a well-formed safetensors header or a diffusers
    folder, so a text file is refused when it is added."""
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelRefused(f"{path.name} is not a diffusers model folder (it has no model_index.json)")
        return ModelFacts("diffusers", size_bytes=_tree_size(path))
    if path.suffix.lower() not in CHECKPOINT_SUFFIXES:
        raise ModelRefused(f"{path.name} is not a .safetensors checkpoint")
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        if length <= 1 or length > min(size - 8, 100_000_000):
            raise ModelRefused(f"{path.name} is not a safetensors file (its header is missing or damaged)")
        try:
            header = json.loads(handle.read(length))
        except (ValueError, UnicodeDecodeError):
            raise ModelRefused(f"{path.name} is not a safetensors file (its header is not valid)") from None
    if not isinstance(header, dict) or not any(k != "__metadata__" for k in header):
        raise ModelRefused(f"{path.name} holds no tensors")
    keys = [k for k in header if k != "__metadata__"]
    if not any(k.startswith(("model.diffusion_model.", "unet.")) for k in keys):
        kind = "lora" if any("lora" in k for k in keys) else ("vae" if any(k.startswith(("encoder.", "decoder."))
                                                                            for k in keys) else "unknown")
        return ModelFacts(kind, size_bytes=size)
    return ModelFacts("checkpoint", size_bytes=size)


def inspect_model_file(path: str | Path) -> ModelFacts:
    """What ``path`` is (headers only; never loads weights). Raises
    :class:`ModelRefused` with a one-line reason for anything unusable.
    The one place that asks the engine, so tests can replace it."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelRefused(f"{path} does not exist")
    try:
        from inference.api import read_model_info  # torch-free
    except ImportError:
        return _basic_facts(path)
    from inference.errors import InferenceError

    try:
        info = read_model_info(path)
    except InferenceError as exc:
        raise ModelRefused(str(exc).splitlines()[0] if str(exc) else f"{path.name} cannot be read") from None
    except OSError as exc:
        raise ModelRefused(f"{path.name} cannot be read ({exc.strerror or exc})") from None
    preset = getattr(info, "preset", None)
    dtypes = tuple(getattr(info, "dtypes", ()) or ())
    return ModelFacts(
        kind=str(getattr(info, "kind", "unknown")), family=str(getattr(info, "family", "") or ""),
        family_description=str(getattr(info, "family_description", "") or ""),
        size_bytes=int(getattr(info, "size_bytes", 0) or 0),
        native_resolution=_number(getattr(info, "native_resolution", None), int),
        steps=_number(getattr(preset, "steps", None), int), guidance=_number(getattr(preset, "guidance", None), float),
        sampler=getattr(preset, "sampler", None), format=str(getattr(info, "format", "") or ""),
        conditioning=(getattr(info, "context_dim", None), getattr(info, "adm_in_channels", None)),
        variant=str(getattr(info, "variant", "") or ""), quantisation=quantisation_name(dtypes),
        warnings=tuple(str(w) for w in getattr(info, "warnings", ()) or ()),
    )


_QUANT_NAMES = {"F8_E4M3": "fp8", "F8_E5M2": "fp8", "BF16": "bf16", "F16": "fp16", "F32": "fp32"}


def quantisation_name(dtypes: Iterable[str]) -> str:
    """The storage that matters for speed and quality: GGUF quant types first, then the narrowest
    float ("F32" norms beside fp8 matrices do not make a model fp32)."""
    dtypes = list(dtypes)
    quants = sorted({d for d in dtypes if d.upper().startswith(("Q", "IQ"))})
    if quants:
        return "GGUF " + "/".join(quants)
    for raw, name in _QUANT_NAMES.items():
        if raw in dtypes:
            return name
    return ""


def check_runnable(path: str | Path) -> ModelFacts:
    """:func:`inspect_model_file`, also refusing parts of a model (VAE, LoRA...)."""
    facts = inspect_model_file(path)
    if facts.family.startswith("flux") and not facts.runnable and facts.warnings:
        # A FLUX transformer file without its VAE / text encoders beside it: the engine's one line says which.
        raise ModelRefused(facts.warnings[0].splitlines()[0])
    if not facts.runnable:
        name = Path(path).name
        raise ModelRefused(f"{name} is {KIND_WORDS.get(facts.kind, KIND_WORDS['unknown'])}")
    return facts


# --------------------------------------------------------------------------- catalog entries
@dataclass(frozen=True)
class ModelEntry:
    """One model the pickers offer; ``problem`` says why it cannot run ("" if it can)."""

    id: str
    label: str
    path: Path
    native_resolution: Optional[int] = None  # None: the engine reads it from the model's family
    steps: Optional[int] = None  # recommended sampling steps (house.json / the model's preset)
    guidance: Optional[float] = None  # recommended guidance (house.json / the model's preset)
    problem: str = ""
    description: str = ""  # "Stable Diffusion 1.x checkpoint · 2.1 GB" once inspected
    unet_path: Optional[Path] = None  # a UNet-only file (Lightning, Hyper-SD…) run on `path`'s VAE and encoders
    speed_lora: Optional[Path] = None  # "FINAL + speed LoRA": the LoRA Live adds to `path` (see SPEED_PREFIX)
    sampler: Optional[str] = None  # the speed LoRA's sampler and spacing (None: the request's)
    spacing: Optional[str] = None
    # False: as a preview model, its frames that start from the canvas (img2img, expand) are not
    # worth refining, so the final model renders those at a few steps (house.json "partial_denoise":
    # the house student's one-step img2img frames are blotches, docs/coherence.md).
    partial_denoise: bool = True
    # As a final model: the largest change of any latent cell (RMS over its channels) a refine of a
    # live frame may make (house.json "refine_bound"; None: no cap). The house VAE turns small latent
    # changes into new shapes, so its refine is capped (docs/coherence.md).
    refine_bound: Optional[float] = None

    @property
    def available(self) -> bool:
        return not self.problem

    @property
    def is_house(self) -> bool:
        return self.id in HOUSE_FOLDERS


def _notes(folder: Path) -> dict:
    try:
        data = json.loads((folder / HOUSE_NOTES).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _refine_bound(notes: dict) -> Optional[float]:
    """house.json "refine_bound": a positive finite number up to the engine's limit, else no cap."""
    from inference.api import MAX_STRUCTURE_BOUND  # torch-free

    value = _number(notes.get("refine_bound"), float)
    return value if value is not None and math.isfinite(value) and 0 < value <= MAX_STRUCTURE_BOUND else None


def _number(value, kind):
    try:
        return kind(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


UNET_PREFIX = "unet:"  # "unet:<UNet file>|<base model id>": a UNet-only file on top of a base model


def unet_model_id(unet_path: str | Path, base_id: str) -> str:
    return f"{UNET_PREFIX}{unet_path}|{base_id}"


def _resolve_unet_pair(model_id: str) -> ModelEntry:
    unet_text, _, base_id = model_id[len(UNET_PREFIX):].partition("|")
    base = resolve(base_id)
    unet = Path(unet_text).expanduser()
    problem = base.problem
    if not base_id:
        problem = f"{model_id}: no base model is named for the UNet file"
    elif not unet.is_file() and not unet.is_dir():
        problem = f"The UNet file {unet} does not exist (moved or deleted?)."
    return ModelEntry(model_id, f"{unet.stem} on {base.label}", base.path, base.native_resolution, None, None,
                      problem, unet_path=unet)


# "speedlora:<LoRA file>|<base model id>": the base model with a known speed LoRA (LCM-LoRA,
# Hyper-SD, Lightning, DMD2 - inference.api.recognise_speed_lora) as a live-preview model. It runs on
# the base's engine entry (engine_model_id), so the checkpoint is in memory once for Live and Generate.
SPEED_PREFIX = "speedlora:"


def speed_model_id(lora_path: str | Path, base_id: str) -> str:
    return f"{SPEED_PREFIX}{lora_path}|{base_id}"


def split_speed_id(model_id: str) -> tuple[str, str]:
    """(LoRA path, base id) of a speed pair; ("", model_id) for any other id."""
    if not model_id.startswith(SPEED_PREFIX):
        return "", model_id
    lora, _, base = model_id[len(SPEED_PREFIX):].partition("|")
    return lora, base


def engine_model_id(model_id: str) -> str:
    """The id the engine knows a model by: a speed pair's base, any other id itself."""
    lora, base = split_speed_id(model_id)
    return engine_model_id(base) if lora else model_id


def _resolve_speed_pair(model_id: str) -> ModelEntry:
    lora_text, base_id = split_speed_id(model_id)
    from inference.api import recognise_speed_lora  # torch-free

    base, lora = resolve(base_id), Path(lora_text).expanduser()
    preset = recognise_speed_lora(lora)
    problem = base.problem
    if not lora.is_file():
        problem = f"The speed LoRA {lora} does not exist (moved or deleted?)."
    elif preset is None:
        problem = f"{lora.name} is not a speed LoRA this editor knows."
    steps, guidance = (preset.steps, preset.guidance) if preset else (None, None)
    return ModelEntry(model_id, f"{base.label} + {lora.stem}", base.path, base.native_resolution, steps, guidance,
                      problem, preset.source if preset else "", base.unet_path, lora,
                      preset.sampler if preset else None, preset.timestep_spacing if preset else None)


_FAMILIES: dict[tuple, str] = {}


def model_family(model_id: str) -> str:
    """"sd1", "sdxl"… of a model (headers only, remembered per file version); "" when unknown."""
    entry = resolve(engine_model_id(model_id))
    if entry.problem:
        return ""
    try:
        key = (str(entry.path), entry.path.stat().st_mtime_ns)
    except OSError:
        return ""
    if key not in _FAMILIES:
        try:
            _FAMILIES[key] = inspect_model_file(entry.path).family
        except ModelRefused:
            _FAMILIES[key] = ""
    return _FAMILIES[key]


def speed_entries(final_id: str, lora_library) -> list[ModelEntry]:
    """Preview models "FINAL + speed LoRA" for every known speed LoRA of the final model's family
    in ``lora_library`` (an :class:`editor.ai.loras.LoraLibrary`)."""
    family = model_family(final_id) if final_id.strip() else ""
    if not family or lora_library is None:
        return []
    base_id = engine_model_id(final_id)
    return [resolve(speed_model_id(entry.path, base_id)) for entry, _preset in lora_library.speed_loras(family)]


def resolve(model_id: str) -> ModelEntry:
    """The entry for a settings string (never raises; a bad one has a ``problem``)."""
    model_id = model_id.strip()
    if model_id.startswith(SPEED_PREFIX):
        return _resolve_speed_pair(model_id)
    if model_id.startswith(UNET_PREFIX):
        return _resolve_unet_pair(model_id)
    if model_id in HOUSE_FOLDERS:
        folder = house_dir() / HOUSE_FOLDERS[model_id]
        notes = _notes(folder)
        problem = ""
        if not (folder / "model_index.json").is_file():
            problem = (f"The house model is not installed ({folder} is missing). "
                       "Install it, or pick another model with “Add model…”.")
        return _folder_entry(model_id, HOUSE_LABELS[model_id], folder, notes, problem, HOUSE_NATIVE)
    path = Path(model_id).expanduser()
    label = path.stem if path.suffix.lower() in CHECKPOINT_SUFFIXES else path.name
    notes = _notes(path) if path.is_dir() else {}
    if not model_id:
        problem = "No model is chosen."
    elif not path.exists():
        problem = f"The model {path} does not exist (moved or deleted?)."
    elif path.is_dir() and not (path / "model_index.json").is_file():
        problem = f"{path} is not a diffusers model folder (it has no model_index.json)."
    else:
        problem = ""
    return _folder_entry(model_id, label or model_id, path, notes, problem)


def _folder_entry(model_id: str, label: str, path: Path, notes: dict, problem: str,
                  native: Optional[int] = None) -> ModelEntry:
    """An entry whose settings come from its folder's house.json ``notes`` (each read or ignored)."""
    return ModelEntry(model_id, label, path, _number(notes.get("native_resolution"), int) or native,
                      _number(notes.get("steps"), int), _number(notes.get("guidance"), float), problem,
                      partial_denoise=notes.get("partial_denoise", True) is not False,
                      refine_bound=_refine_bound(notes))


def inspected_entry(path: str) -> ModelEntry:
    """"Add model…": the entry for a file or folder the user picked, inspected
    now; raises :class:`ModelRefused` (one line) for anything unusable."""
    facts = check_runnable(path)
    entry = resolve(path)
    if entry.problem:
        raise ModelRefused(entry.problem)
    return ModelEntry(entry.id, entry.label, entry.path, entry.native_resolution or facts.native_resolution,
                      entry.steps or facts.steps, entry.guidance if entry.guidance is not None else facts.guidance,
                      "", facts.summary())


def is_flux_without_companions(facts: ModelFacts) -> bool:
    """A FLUX transformer file the engine reports as a part ("unet"): it is not a UNet for a base model."""
    return facts.family.startswith("flux") and not facts.runnable


def inspected_unet_entry(unet_path: str, base_id: str) -> ModelEntry:
    """"Add model…" given a UNet-only file: the UNet on the base model's VAE and text encoders, its
    own recommended settings (a Lightning/Hyper name says how many steps), the families checked."""
    facts = inspect_model_file(unet_path)
    if facts.kind != "unet":
        raise ModelRefused(f"{Path(unet_path).name} is {KIND_WORDS.get(facts.kind, 'not a UNet')}")
    base_entry = resolve(base_id)
    if base_entry.problem:
        raise ModelRefused(f"{Path(unet_path).name} needs a base model: {base_entry.problem}")
    base = inspect_model_file(base_entry.path)
    if (facts.family and base.family and facts.family != base.family) or (
            facts.conditioning and base.conditioning and facts.conditioning != base.conditioning):
        raise ModelRefused(f"{Path(unet_path).name} ({facts.family_description or 'a UNet'}) does not fit "
                           f"{base_entry.label} ({base.family_description or base.family or 'another model'})")
    entry = resolve(unet_model_id(unet_path, base_id))
    if entry.problem:
        raise ModelRefused(entry.problem)
    return ModelEntry(entry.id, entry.label, entry.path, base_entry.native_resolution or base.native_resolution,
                      facts.steps, facts.guidance, "", f"{facts.summary()} on {base_entry.label}",
                      unet_path=entry.unet_path)


def is_model_path(path: Path) -> bool:
    if path.is_dir():
        return (path / "model_index.json").is_file()
    return path.is_file() and path.suffix.lower() in CHECKPOINT_SUFFIXES


def discover(folders: Iterable[str]) -> list[str]:
    """Model ids found directly inside ``folders``: checkpoint files and diffusers folders."""
    found: list[str] = []
    for folder in folders:
        try:
            children = sorted(Path(folder).expanduser().iterdir())
        except OSError:
            continue
        found.extend(str(child) for child in children if is_model_path(child))
    return found


def catalog(settings, lora_library=None) -> list[ModelEntry]:
    """What the pickers list: the house models, the settings' choices, the model folders, then
    the final model with each speed LoRA of its family found in ``lora_library``."""
    ids = [HOUSE_PREVIEW, HOUSE_FULL, settings.preview_model, settings.final_model]
    ids += discover(settings.model_folders)
    entries = [resolve(model_id) for model_id in dict.fromkeys(i for i in ids if i.strip())]
    known = {entry.id for entry in entries}
    return entries + [e for e in speed_entries(settings.final_model, lora_library) if e.id not in known]


def engine_specs(entries: Iterable[ModelEntry], resident: Iterable[str] = ()) -> dict:
    """``{id: ModelSpec}`` for a :class:`~editor.ai.TorchEngine` (usable entries only).
    Imports the AI core (and torch): call it once the core is loaded."""
    from editor.ai.engine import ModelSpec

    resident = set(resident)
    return {
        entry.id: ModelSpec(entry.path, label=entry.label, native_resolution=entry.native_resolution,
                            resident=entry.id in resident, unet_path=entry.unet_path)
        for entry in entries if entry.available
    }
