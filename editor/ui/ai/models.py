"""Which models the AI panel can offer, and where their files are.

A model is named by the string the settings store: ``"house:preview"`` and
``"house:full"`` are the bundled house model (``assets/house/preview`` and
``assets/house/full``, diffusers layout, 128 px native); any other string is
a user path, a checkpoint file (``.safetensors``) or a diffusers folder. The
same string is the model's id in the engine, so a layer's metadata, the
pickers and the engine all agree.

Qt-free and torch-free on purpose: the panel lists models and says what is
missing long before the engine (and torch) are loaded. ``CANVASAI_HOUSE_DIR``
points the house ids elsewhere (tests, portable installs).
"""

from __future__ import annotations

import json
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
HOUSE_NOTES = "house.json"  # written by inference.house.export: native size, steps, guidance
CHECKPOINT_SUFFIXES = (".safetensors",)
# Steps for live previews of a model that recommends none: few-step models
# (LCM, Turbo, the house preview) look right at 1-4, others look rough but
# show composition, which is what a preview is for.
DEFAULT_PREVIEW_STEPS = 4


def house_dir() -> Path:
    override = os.environ.get(HOUSE_DIR_ENV)
    return Path(override) if override else Path(__file__).resolve().parents[3] / "assets" / "house"


@dataclass(frozen=True)
class ModelEntry:
    """One model the pickers offer; ``problem`` says why it cannot run ("" if it can)."""

    id: str
    label: str
    path: Path
    native_resolution: Optional[int] = None  # None: the engine reads it from the model's family
    steps: Optional[int] = None  # recommended sampling steps (house.json)
    guidance: Optional[float] = None  # recommended guidance (house.json)
    problem: str = ""

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


def _number(value, kind):
    try:
        return kind(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


def resolve(model_id: str) -> ModelEntry:
    """The entry for a settings string (never raises; a bad one has a ``problem``)."""
    model_id = model_id.strip()
    if model_id in HOUSE_FOLDERS:
        folder = house_dir() / HOUSE_FOLDERS[model_id]
        notes = _notes(folder)
        problem = ""
        if not (folder / "model_index.json").is_file():
            problem = (f"The house model is not installed ({folder} is missing). "
                       "Install it, or pick another model with “Add model…”.")
        return ModelEntry(model_id, HOUSE_LABELS[model_id], folder,
                          _number(notes.get("native_resolution"), int) or HOUSE_NATIVE,
                          _number(notes.get("steps"), int), _number(notes.get("guidance"), float), problem)
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
    return ModelEntry(model_id, label or model_id, path, _number(notes.get("native_resolution"), int),
                      _number(notes.get("steps"), int), _number(notes.get("guidance"), float), problem)


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


def catalog(settings) -> list[ModelEntry]:
    """What the pickers list: the house models, the settings' choices, then the model folders."""
    ids = [HOUSE_PREVIEW, HOUSE_FULL, settings.preview_model, settings.final_model]
    ids += discover(settings.model_folders)
    return [resolve(model_id) for model_id in dict.fromkeys(i for i in ids if i.strip())]


def engine_specs(entries: Iterable[ModelEntry], resident: Iterable[str] = ()) -> dict:
    """``{id: ModelSpec}`` for a :class:`~editor.ai.TorchEngine` (usable entries only).
    Imports the AI core (and torch): call it once the core is loaded."""
    from editor.ai.engine import ModelSpec

    resident = set(resident)
    return {
        entry.id: ModelSpec(entry.path, label=entry.label, native_resolution=entry.native_resolution,
                            resident=entry.id in resident)
        for entry in entries if entry.available
    }
