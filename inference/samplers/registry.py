"""The one sampler registry (torch-free): ids, display names, and the diffusers class each equals.

The CLI's `--sampler` choices, the editor's sampler menu, request validation and the scheduler
substitution warning all read this table; nothing else lists sampler names.
"""
from __future__ import annotations

from dataclasses import dataclass

from inference.errors import InvalidRequestError

# diffusers' own timestep spacings (a scheduler_config.json may name these).
DIFFUSERS_SPACINGS = ("leading", "linspace", "trailing")
# ComfyUI's names for two spacings that SDXL-Lightning / Hyper-SD presets ask for. They pick
# sigmas from the discrete training table directly, so only the sigma-driven samplers take them.
SIGMA_SPACINGS = ("sgm_uniform", "simple")
# timestep_spacing values a request may name (None: the model's scheduler config decides).
SPACINGS = DIFFUSERS_SPACINGS + SIGMA_SPACINGS

# EDM (Karras et al. 2022) scheduler classes: continuous sigmas with c_in/c_skip/c_out
# preconditioning (Playground v2.5). A config naming one switches euler / dpmpp_2m_karras to them.
EDM_SCHEDULER_CLASSES = ("EDMEulerScheduler", "EDMDPMSolverMultistepScheduler")


@dataclass(frozen=True)
class SamplerInfo:
    id: str  # what requests, the CLI and PNG metadata say
    display_name: str  # what the editor shows
    scheduler_class: str  # the diffusers scheduler this sampler equals (oracle-tested)
    description: str = ""
    # The EDM class this sampler equals when the model's config names an EDM class (else None:
    # the sampler refuses EDM models).
    edm_class: str | None = None
    # Spacings this sampler accepts; diffusers' three are accepted by all (some ignore them,
    # as diffusers does), the sigma spacings only where they define the sigmas walked.
    spacings: tuple[str, ...] = DIFFUSERS_SPACINGS


SAMPLERS: dict[str, SamplerInfo] = {info.id: info for info in (
    SamplerInfo("euler", "Euler", "EulerDiscreteScheduler", "deterministic, the SD/SDXL default",
                edm_class="EDMEulerScheduler", spacings=SPACINGS),
    SamplerInfo("euler_a", "Euler ancestral", "EulerAncestralDiscreteScheduler", "adds fresh noise every step",
                spacings=SPACINGS),
    SamplerInfo("dpmpp_2m_karras", "DPM++ 2M Karras", "DPMSolverMultistepScheduler",
                "second order, good in 20–30 steps", edm_class="EDMDPMSolverMultistepScheduler"),
    SamplerInfo("ddim", "DDIM", "DDIMScheduler", "deterministic"),
    SamplerInfo("lcm", "LCM", "LCMScheduler", "latent-consistency models and LCM-LoRA, 2–8 steps"),
    SamplerInfo("tcd", "TCD", "TCDScheduler", "trajectory-consistency LoRAs (TCD, Hyper-SD), 2–8 steps, gamma 0.3"),
)}

# Classes diffusers maps onto one of ours by configuration alone (no numbers change).
_IMPLEMENTED = frozenset(
    [info.scheduler_class for info in SAMPLERS.values()] + list(EDM_SCHEDULER_CLASSES)
)


def check_sampler(sampler: str) -> None:
    if sampler not in SAMPLERS:
        raise InvalidRequestError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")


def check_spacing(sampler: str, spacing: str | None) -> None:
    """Refuse a spacing the sampler cannot walk (rather than silently ignoring it)."""
    if spacing is None:
        return
    if spacing not in SPACINGS:
        raise InvalidRequestError(f"unknown timestep spacing {spacing!r}; choose one of {', '.join(SPACINGS)}")
    check_sampler(sampler)
    accepted = SAMPLERS[sampler].spacings
    if spacing not in accepted:
        takers = ", ".join(s for s, info in SAMPLERS.items() if spacing in info.spacings)
        raise InvalidRequestError(f"timestep spacing {spacing!r} does not apply to sampler {sampler!r}; use it with {takers}")


def is_edm_class(class_name: str | None) -> bool:
    return class_name in EDM_SCHEDULER_CLASSES


def sampler_for_scheduler_class(class_name: str | None) -> str | None:
    """The sampler id that equals a diffusers scheduler class, or None when we implement none."""
    for info in SAMPLERS.values():
        if class_name in (info.scheduler_class, info.edm_class):
            return info.id
    return None


def equivalent_class(sampler: str, class_name: str | None) -> str:
    """The diffusers class ``sampler`` runs as for a model whose config names ``class_name``."""
    check_sampler(sampler)
    info = SAMPLERS[sampler]
    if is_edm_class(class_name) and info.edm_class is not None:
        return info.edm_class
    return info.scheduler_class


def scheduler_substitution(class_name: str | None, sampler: str, *, explicit: bool = False) -> str | None:
    """One line to show when sampling replaces a scheduler the model folder names, else None.

    None when the folder names no class, when we implement that class (any sampler the user
    then runs is a choice, not a substitution), or when ``explicit`` (the user picked the
    sampler). Otherwise, e.g. PNDMScheduler with the default euler:
    "model's scheduler PNDMScheduler is not implemented; sampling with euler (EulerDiscreteScheduler)".
    """
    check_sampler(sampler)
    if not class_name or explicit or class_name in _IMPLEMENTED:
        return None
    return (f"model's scheduler {class_name} is not implemented; "
            f"sampling with {sampler} ({equivalent_class(sampler, class_name)})")
