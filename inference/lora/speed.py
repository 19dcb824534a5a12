"""Speed LoRAs: the released few-step LoRAs (LCM-LoRA, Hyper-SD, SDXL-Lightning, DMD2, TCD) recognised
by their file names (or the folder a diffusers `pytorch_lora_weights.safetensors` sits in) and their
safetensors metadata, each with the settings its authors publish. Torch-free: the editor offers
"FINAL + speed LoRA" as a live-preview model from this without loading anything.

Guidance 1.0 means "no CFG pass" (inference.conditioning guides only above 1), which is what these
distillations are trained for; the model cards say 0 (diffusers) or 1 (ComfyUI) for the same thing.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# Names too generic to say anything: the diffusers training scripts and the Hub save every LoRA as
# one of these, so the folder it was downloaded into (`lcm-lora-sdxl/`) carries the name.
GENERIC_STEMS = {"pytorch_lora_weights", "adapter_model", "diffusion_pytorch_model", "lora", "model"}
# Metadata fields a trainer or a converter fills with the network's name.
TITLE_KEYS = ("modelspec.title", "ss_output_name", "name", "title")
_STEPS = re.compile(r"(\d+)[-_ ]?steps?(?![a-z])")


@dataclass(frozen=True)
class SpeedPreset:
    """How a speed LoRA is meant to run: what Live uses when it previews with one."""

    kind: str  # "lcm", "hyper", "lightning", "dmd2", "tcd"
    family: str  # "sd1" or "sdxl" ("" when the name does not say; the library's family decides)
    sampler: str
    steps: int
    guidance: float
    timestep_spacing: str | None = None  # None: the sampler's own
    source: str = ""  # where the numbers come from (shown in tooltips)

    @property
    def label(self) -> str:
        """"Hyper-SD 8-step" for pickers."""
        names = {"lcm": "LCM-LoRA", "hyper": "Hyper-SD", "lightning": "Lightning", "dmd2": "DMD2", "tcd": "TCD"}
        return f"{names.get(self.kind, self.kind)} {self.steps}-step"


def _family(text: str) -> str:
    if re.search(r"sd-?xl", text):
        return "sdxl"
    if re.search(r"sd-?v?1[-_.]?5|sd15|sdv15|sd1(?![0-9])", text):
        return "sd1"
    return ""


def _steps(text: str) -> int | None:
    match = _STEPS.search(text)
    return int(match.group(1)) if match else None


def preset_for_name(name: str) -> SpeedPreset | None:
    """The preset for a release named ``name`` (any case, with or without extension), or None."""
    text = name.lower()
    family, steps = _family(text), _steps(text)
    if "hyper" in text and "sd" in text:
        n = steps or 8
        if "cfg" in text:  # Hyper-SD15/SDXL-8steps-CFG, -12steps-CFG: keep CFG, 5-8 recommended
            return SpeedPreset("hyper", family, "ddim", n, 5.0, "trailing",
                               f"Hyper-SD {n}-step CFG LoRA: DDIM, trailing spacing, CFG 5 (card: 5-8)")
        if n == 1:  # the unified 1-step LoRA is published with TCD (eta 1.0) for 1-8 steps
            return SpeedPreset("hyper", family, "tcd", 1, 1.0, None, "Hyper-SD 1-step LoRA: TCD sampler, no CFG")
        return SpeedPreset("hyper", family, "ddim", n, 1.0, "trailing",
                           f"Hyper-SD {n}-step LoRA: DDIM, trailing spacing, no CFG")
    if "lightning" in text:
        n = steps or 4
        return SpeedPreset("lightning", family or "sdxl", "euler", n, 1.0, "trailing",
                           f"SDXL-Lightning {n}-step LoRA: Euler, trailing spacing, no CFG")
    if "dmd2" in text:
        return SpeedPreset("dmd2", family or "sdxl", "lcm", steps or 4, 1.0, None,
                           "DMD2 4-step LoRA: LCM sampling, no CFG")
    if re.search(r"(^|[^a-z])lcm([^a-z]|$)", text):
        return SpeedPreset("lcm", family, "lcm", steps or 4, 1.0, None, "LCM-LoRA: LCM sampler, 4 steps, CFG 1")
    if re.search(r"(^|[^a-z])tcd([^a-z]|$)", text):
        return SpeedPreset("tcd", family, "tcd", steps or 4, 1.0, None, "TCD LoRA: TCD sampler, 4 steps, no CFG")
    return None


def recognise_speed_lora(path: str | Path, metadata: Mapping[str, str] | None = None,
                         family: str | None = None) -> SpeedPreset | None:
    """The preset of a known speed LoRA at ``path`` (None for any other file).

    The file name is read first; a generic one (``pytorch_lora_weights``) is read with its folder's
    name; then the title in ``metadata`` (the safetensors ``__metadata__``). ``family`` (what the
    library read from the file's shapes) wins over a family guessed from the name."""
    path = Path(path)
    names = [path.stem]
    if path.stem.lower() in GENERIC_STEMS:
        names = [f"{path.parent.name}/{path.stem}", path.parent.parent.name]
    names += [str(metadata[key]) for key in TITLE_KEYS if metadata and metadata.get(key)]
    for name in names:
        preset = preset_for_name(name)
        if preset is not None:
            if family and family != preset.family:
                preset = SpeedPreset(preset.kind, family, preset.sampler, preset.steps, preset.guidance,
                                     preset.timestep_spacing, preset.source)
            return preset
    return None
