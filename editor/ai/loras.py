"""The LoRAs of a request, without Qt: the user's list (file, weight, on/off), the library they are
picked from (the model folders, scanned by ``inference.api.ModelLibrary``), what they become in an
engine request (``LoraSpec``), in a layer's metadata, and in the live preview.

A request holds ``LoraItem`` tuples (``EditRequest.loras``); the panel edits them through the
controller. Only enabled items reach the engine and the metadata: a layer says what made it.

Live preview rule: the user's LoRAs also apply to the preview when the preview model is of the
final model's family (a LoRA trained on SDXL cannot load into an SD 1.5 preview, and a LoRA on
another family's preview would show something the final will not make), and always when the
preview is "FINAL + speed LoRA" (the same checkpoint). A speed LoRA preview adds its own LoRA
first and runs with its preset's sampler and spacing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from inference.api import (
    LibraryEntry,
    LoraSpec,
    ModelLibrary,
    SpeedPreset,
    recognise_speed_lora,
)

log = logging.getLogger(__name__)

MIN_WEIGHT, MAX_WEIGHT = -2.0, 2.0  # the slider's range; the engine accepts up to ±MAX_LORA_WEIGHT
CHECKPOINT_FOLDERS = ("checkpoints", "Stable-diffusion")  # ComfyUI, A1111
LORA_FOLDERS = ("loras", "Lora")
ATTRIBUTE = "loras"  # layer attribute (canvasai:loras in an .ora): a JSON list, see encode_loras


@dataclass(frozen=True)
class LoraItem:
    """One row of the LoRA list."""

    path: str
    weight: float = 1.0
    enabled: bool = True
    name: str = ""  # the file's stem: how a missing file is named to the user and found again
    short_hash: str = ""  # A1111's AutoV2 (10 hex digits) when the library computed it

    @property
    def label(self) -> str:
        return self.name or Path(self.path).stem

    def spec(self) -> LoraSpec:
        return LoraSpec(self.path, float(self.weight))


def clamp_weight(weight: float) -> float:
    return min(max(float(weight), MIN_WEIGHT), MAX_WEIGHT)


def lora_specs(items: Iterable[LoraItem]) -> tuple[LoraSpec, ...]:
    """What the engine applies: enabled items with a non-zero weight, in list order
    (a weight of 0 changes nothing, so it is not merged at all)."""
    return tuple(item.spec() for item in items if item.enabled and item.weight != 0)


# --------------------------------------------------------------------------- list edits
def add_item(items: tuple[LoraItem, ...], item: LoraItem) -> tuple[LoraItem, ...]:
    """Append ``item``; a file already listed is switched on instead of listed twice."""
    for i, old in enumerate(items):
        if Path(old.path) == Path(item.path):
            return items[:i] + (LoraItem(old.path, old.weight, True, old.name, old.short_hash),) + items[i + 1:]
    return items + (item,)


def change_item(items: tuple[LoraItem, ...], index: int, *, weight: Optional[float] = None,
                enabled: Optional[bool] = None) -> tuple[LoraItem, ...]:
    if not 0 <= index < len(items):
        return items
    old = items[index]
    new = LoraItem(old.path, old.weight if weight is None else clamp_weight(weight),
                   old.enabled if enabled is None else bool(enabled), old.name, old.short_hash)
    return items[:index] + (new,) + items[index + 1:]


def remove_item(items: tuple[LoraItem, ...], index: int) -> tuple[LoraItem, ...]:
    return items[:index] + items[index + 1:] if 0 <= index < len(items) else items


# --------------------------------------------------------------------------- metadata
def encode_loras(items: Iterable[LoraItem]) -> str:
    """The layer attribute: ``[{"name", "path", "hash", "weight"}, ...]`` of the enabled LoRAs
    ("" when none). The name and hash find the file again when its path changed."""
    rows = [{"name": item.label, "path": item.path, "hash": item.short_hash, "weight": round(item.weight, 4)}
            for item in items if item.enabled]
    return json.dumps(rows, separators=(",", ":"), ensure_ascii=False) if rows else ""


def encode_list(items: Iterable[LoraItem]) -> str:
    """The whole list, switched-off rows too, for the settings file (the panel's list is kept
    between sessions); :func:`decode_loras` reads it back."""
    rows = [{"name": item.label, "path": item.path, "hash": item.short_hash, "weight": round(item.weight, 4),
             "enabled": bool(item.enabled)} for item in items]
    return json.dumps(rows, separators=(",", ":"), ensure_ascii=False) if rows else ""


def decode_loras(text: str) -> tuple[LoraItem, ...]:
    """The items stored by :func:`encode_loras` or :func:`encode_list`; damaged text gives what
    could be read."""
    try:
        rows = json.loads(text) if text else []
    except ValueError:
        log.info("unreadable LoRA metadata: %.80s", text)
        return ()
    items = []
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, dict) or not (row.get("path") or row.get("name")):
            continue
        try:
            weight = clamp_weight(float(row.get("weight", 1.0)))
        except (TypeError, ValueError):
            weight = 1.0
        enabled = row.get("enabled", True) is not False
        items.append(LoraItem(str(row.get("path") or row.get("name")), weight, enabled, str(row.get("name") or ""),
                              str(row.get("hash") or "")))
    return tuple(items)


def restore_loras(items: Iterable[LoraItem], library: LoraLibrary) -> tuple[tuple[LoraItem, ...], list[str]]:
    """Stored items → the items usable now, and the names of the files not found. A file that
    moved is found again in the library by its hash, then by its name."""
    found, missing = [], []
    for item in items:
        if Path(item.path).is_file():
            found.append(item)
            continue
        entry = library.find(item.label, item.short_hash)
        if entry is None:
            missing.append(item.label)
        else:
            found.append(LoraItem(entry.path, item.weight, item.enabled, entry.name, item.short_hash))
    return tuple(found), missing


def missing_notice(missing: list[str]) -> str:
    names = ", ".join(f"“{name}”" for name in missing)
    return (f"LoRA {names} is missing (moved or deleted?): the other settings are restored" if len(missing) == 1
            else f"LoRAs {names} are missing (moved or deleted?): the other settings are restored")


# --------------------------------------------------------------------------- the library
def _sidecar(path: str) -> dict:
    """A1111's ``NAME.json`` next to a LoRA ("preferred weight", "activation text"), if any."""
    try:
        data = json.loads(Path(path).with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class LoraLibrary:
    """The LoRAs in the model folders. Never raises: an unreadable folder is simply empty."""

    def __init__(self, library: Optional[ModelLibrary] = None) -> None:
        self.library = library or ModelLibrary([])

    @classmethod
    def scan(cls, folders: Iterable[str], cache_path: Optional[Path] = None) -> LoraLibrary:
        roots = []
        for folder in (Path(f).expanduser() for f in folders if f):
            roots.append(folder)
            # A ComfyUI "models/checkpoints" or A1111 "models/Stable-diffusion" folder: its LoRAs are next door.
            if folder.name in CHECKPOINT_FOLDERS:
                roots += [folder.parent / name for name in LORA_FOLDERS]
        roots = [root for root in dict.fromkeys(roots) if root.is_dir()]
        if not roots:
            return cls()
        try:
            return cls(ModelLibrary.scan(roots, cache_path))
        except (OSError, ValueError) as exc:  # a folder that vanished mid-scan: list nothing rather than fail
            log.warning("scanning the model folders failed: %s", exc)
            return cls()

    def loras(self, family: str = "") -> list[LibraryEntry]:
        """The LoRAs for a model of ``family`` (all of them when the family is unknown)."""
        entries = self.library.filter(kind="lora")
        return [e for e in entries if not family or e.family == family]

    def entry(self, path: str) -> Optional[LibraryEntry]:
        for entry in self.library.entries:
            if Path(entry.path) == Path(path):
                return entry
        return None

    def find(self, name: str, short_hash: str = "") -> Optional[LibraryEntry]:
        entries = self.library.filter(kind="lora")
        if short_hash:
            for entry in entries:
                if self.library.short_hash(entry) == short_hash:
                    return entry
        return next((e for e in entries if e.name == name), None)

    def trigger_words(self, path: str) -> list[str]:
        entry = self.entry(path)
        words = list(entry.trigger_words) if entry is not None else []
        activation = str(_sidecar(path).get("activation text") or "")
        words += [w.strip() for w in activation.split(",") if w.strip() and w.strip() not in words]
        return words

    def item(self, path: str) -> LoraItem:
        """A new row for the file: the sidecar's preferred weight (else 1), its AutoV2 hash."""
        entry = self.entry(path)
        try:
            weight = clamp_weight(float(_sidecar(path).get("preferred weight") or 1.0))
        except (TypeError, ValueError):
            weight = 1.0
        short_hash = (self.library.short_hash(entry) or "") if entry is not None else ""
        return LoraItem(str(path), weight, True, entry.name if entry else Path(path).stem, short_hash)

    def speed_loras(self, family: str) -> list[tuple[LibraryEntry, SpeedPreset]]:
        """The known speed LoRAs for ``family`` in the library, fewest steps last (better previews first)."""
        found = []
        for entry in self.library.filter(kind="lora"):
            preset = recognise_speed_lora(entry.path, family=entry.family)
            if preset is not None and family and preset.family == family:
                found.append((entry, preset))
        return sorted(found, key=lambda pair: (-pair[1].steps, pair[0].name))


# --------------------------------------------------------------------------- live preview
@dataclass(frozen=True)
class PreviewRecipe:
    """What the live preview runs with besides its model: LoRAs, and a speed preset's sampler."""

    loras: tuple[LoraItem, ...] = ()
    sampler: Optional[str] = None  # None: the request's
    spacing: Optional[str] = None


def preview_recipe(user: tuple[LoraItem, ...], *, same_family: bool, speed_lora: Optional[str] = None,
                   sampler: Optional[str] = None, spacing: Optional[str] = None) -> PreviewRecipe:
    """The preview's LoRAs (see the module doc): the speed LoRA first, then the user's when they fit;
    ``sampler``/``spacing``: the speed LoRA's preset (catalog.ModelEntry.sampler/spacing)."""
    loras = user if (same_family or speed_lora) else ()
    if speed_lora:  # first, and once: the same file also in the user's list is not merged twice
        loras = (LoraItem(speed_lora, 1.0, True, Path(speed_lora).stem),) + tuple(
            item for item in loras if Path(item.path) != Path(speed_lora))
    return PreviewRecipe(tuple(loras), sampler if speed_lora else None, spacing if speed_lora else None)
