"""LoRA support: recognise a file (`formats`, torch-free), match its modules to our layers
(`keys`), compute each module's weight change (`deltas`) and merge a weighted stack into a loaded
model with an exact restore (`apply`).

Submodules are imported on first use, so `inference.lora.formats` stays importable without torch.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "inspect_lora": "formats", "load_lora": "apply", "LoraFile": "apply", "LoraWeight": "apply",
    "LoraPatcher": "apply", "apply_loras": "apply", "remove_loras": "apply", "patcher_for": "apply",
    "text_version": "apply",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(name)
