"""User settings: a small JSON file in the platform's config folder.

Qt-free on purpose (the headless CLI and tests read it too). The folders can
be redirected with environment variables so tests and portable installs never
touch the real home directory:

- ``CANVASAI_CONFIG_DIR``: where ``settings.json`` lives;
- ``CANVASAI_DATA_DIR``: user data, including the ``recovery`` folder.

A missing, unreadable or corrupt file gives the defaults (a broken settings
file must never stop the editor from starting); unknown keys are ignored and
values of the wrong type fall back to their default.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import platformdirs

APP_NAME = "canvasai"
CONFIG_DIR_ENV = "CANVASAI_CONFIG_DIR"
DATA_DIR_ENV = "CANVASAI_DATA_DIR"
MAX_RECENT_FILES = 10
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
RENDER_ON = ("local", "farm")


def config_dir() -> Path:
    override = os.environ.get(CONFIG_DIR_ENV)
    return Path(override) if override else Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def data_dir() -> Path:
    override = os.environ.get(DATA_DIR_ENV)
    return Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def recovery_dir() -> Path:
    """Folder of autosave/recovery files (created on first autosave)."""
    return data_dir() / "recovery"


def settings_path() -> Path:
    return config_dir() / "settings.json"


@dataclass
class Settings:
    # Krita autosaves every 15 min; we default to 5 because AI edits can be big and costly to redo.
    autosave_minutes: float = 5.0
    # After the last edit, autosave once the user has been idle this long.
    autosave_idle_seconds: float = 20.0
    undo_memory_mb: int = 1024
    stroke_smoothing: float = 0.35  # 0 = raw pointer positions, 0.95 = very smooth
    recent_files: list[str] = field(default_factory=list)
    last_directory: str = ""
    window_geometry: str = ""  # base64 of QWidget.saveGeometry()
    window_state: str = ""  # base64 of QMainWindow.saveState()
    # AI models: ids the AI panel resolves ("house:preview" / "house:full" are the bundled
    # house model); extra folders are searched for user checkpoints (.safetensors, diffusers).
    preview_model: str = "house:preview"
    final_model: str = "house:full"
    model_folders: list[str] = field(default_factory=list)
    # The AI panel's LoRA list, kept between sessions (JSON of editor.ai.loras.encode_list; a damaged
    # value reads as what could be parsed, a missing file is named once when the list comes back).
    lora_list: str = ""
    # Compute device for the engine: "auto" (CUDA, then Apple MPS, then CPU), "cpu", "cuda" or
    # "mps"; see editor.device. A device that is missing or fails its probe falls back to the CPU.
    device: str = "auto"
    first_run_hint_seen: bool = False  # the "what to do" hint on an empty canvas, shown once
    # Final renders and variations: "local" (this machine) or "farm" (the Ray cluster whose head
    # is at farm_address, HOST:PORT). The live preview always renders here. Only that address is
    # ever contacted; a cluster must stay on a trusted network (README, render farm).
    render_on: str = "local"
    farm_address: str = ""
    farm_gpus: float = 0.0  # GPUs per farm worker (one worker per GPU); 0: one CPU worker per node

    # ------------------------------------------------------------------ I/O
    @classmethod
    def load(cls, path: Optional[Path] = None) -> "Settings":
        path = path or settings_path()
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls()
        if not isinstance(raw, dict):
            return cls()
        defaults = cls()
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in raw:
                continue
            value, default = raw[f.name], getattr(defaults, f.name)
            if not _same_kind(value, default):
                continue
            if isinstance(default, list):
                value = [str(v) for v in value if isinstance(v, str)]
            values[f.name] = value
        return cls(**values).clamped()

    def save(self, path: Optional[Path] = None) -> None:
        """Write atomically (a temp file, then rename); errors propagate as OSError."""
        path = Path(path or settings_path())
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True), encoding="utf-8")
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()

    # --------------------------------------------------------------- helpers
    def clamped(self) -> "Settings":
        self.autosave_minutes = min(max(float(self.autosave_minutes), 0.1), 240.0)
        self.autosave_idle_seconds = min(max(float(self.autosave_idle_seconds), 1.0), 3600.0)
        self.undo_memory_mb = int(min(max(int(self.undo_memory_mb), 64), 64 * 1024))
        self.stroke_smoothing = min(max(float(self.stroke_smoothing), 0.0), 0.95)
        self.recent_files = self.recent_files[:MAX_RECENT_FILES]
        if self.device not in DEVICE_CHOICES:
            self.device = "auto"
        if not self.preview_model.strip():
            self.preview_model = "house:preview"
        if not self.final_model.strip():
            self.final_model = "house:full"
        self.model_folders = list(dict.fromkeys(p for p in self.model_folders if p.strip()))
        self.farm_address = self.farm_address.strip()
        if self.farm_address and farm_address_problem(self.farm_address):
            self.farm_address = ""
        gpus = float(self.farm_gpus)
        self.farm_gpus = min(max(gpus, 0.0), 8.0) if gpus == gpus else 0.0  # NaN (valid JSON here): none
        if self.render_on not in RENDER_ON or (self.render_on == "farm" and not self.farm_address):
            self.render_on = "local"  # a farm without a usable address cannot take a render
        return self

    def add_recent_file(self, path: str) -> None:
        path = os.path.abspath(path)
        self.recent_files = [path] + [p for p in self.recent_files if p != path]
        del self.recent_files[MAX_RECENT_FILES:]


def farm_address_problem(address: str) -> str:
    """"" for a usable farm address (HOST:PORT or ray://HOST:PORT), else one line naming the
    value, from the farm client's own parser (so the dialog and a connect never disagree)."""
    from inference.farm.api import FarmUnavailableError, check_address  # torch- and Ray-free

    try:
        check_address(address)
    except FarmUnavailableError as exc:
        return str(exc)
    return ""


def _same_kind(value: Any, default: Any) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, type(default))
