"""The one sampler registry (torch-free): ids, display names, and the diffusers class each equals.

The CLI's `--sampler` choices, the editor's sampler menu, request validation and the scheduler
substitution warning all read this table; nothing else lists sampler names.
"""
from __future__ import annotations

from dataclasses import dataclass

from inference.errors import InvalidRequestError


@dataclass(frozen=True)
class SamplerInfo:
    id: str  # what requests, the CLI and PNG metadata say
    display_name: str  # what the editor shows
    scheduler_class: str  # the diffusers scheduler this sampler equals (oracle-tested)
    description: str = ""


SAMPLERS: dict[str, SamplerInfo] = {info.id: info for info in (
    SamplerInfo("euler", "Euler", "EulerDiscreteScheduler", "deterministic, the SD/SDXL default"),
    SamplerInfo("euler_a", "Euler ancestral", "EulerAncestralDiscreteScheduler", "adds fresh noise every step"),
    SamplerInfo("dpmpp_2m_karras", "DPM++ 2M Karras", "DPMSolverMultistepScheduler",
                "second order, good in 20–30 steps"),
    SamplerInfo("ddim", "DDIM", "DDIMScheduler", "deterministic"),
    SamplerInfo("lcm", "LCM", "LCMScheduler", "latent-consistency models and LCM-LoRA, 2–8 steps"),
)}

# timestep_spacing values a request may name (None: the model's scheduler config decides).
SPACINGS = ("leading", "linspace", "trailing")


def check_sampler(sampler: str) -> None:
    if sampler not in SAMPLERS:
        raise InvalidRequestError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")


def sampler_for_scheduler_class(class_name: str | None) -> str | None:
    """The sampler id that equals a diffusers scheduler class, or None when we implement none."""
    for info in SAMPLERS.values():
        if info.scheduler_class == class_name:
            return info.id
    return None
