"""Which of our modules a LoRA module key patches.

Our UNet uses LDM names (`input_blocks.4.1.transformer_blocks.0.attn1.to_q`), our text encoders
Hugging Face CLIP names (`text_model.encoder.layers.0.self_attn.q_proj`). LoRA files name the
same layers three ways: kohya SD1/SD2 files and PEFT/diffusers files use diffusers UNet paths
(`down_blocks.1.attentions.0…`), kohya SDXL files use the LDM paths, and kohya joins every path
with `_`. So each patchable layer gets both its LDM and its diffusers spelling, with dots as
underscores (see `ParsedKey.lookup`), under its component (`unet`, `te1`, `te2`).

The diffusers spelling comes from the inverse of `inference.convert`'s own diffusers → LDM table,
so there is one table of UNet names in the project.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from inference import convert
from inference.models.configs import UNetConfig

PATCHABLE = (nn.Linear, nn.Conv2d)


@dataclass(frozen=True)
class Target:
    """One patchable layer of a loaded model."""

    component: str  # "unet", "te1", "te2"
    name: str  # our module path inside that component
    module: nn.Module


def ldm_to_diffusers_table(config: UNetConfig) -> list[tuple[str, str]]:
    """(LDM module prefix, diffusers module prefix), longest LDM prefix first."""
    # convert's table maps diffusers → LDM; it is one-to-one, so it inverts.
    table = convert._unet_prefix_map(config)  # private, but the single source of these names
    inverse = {ldm: diffusers for diffusers, ldm in table.items()}
    return sorted(inverse.items(), key=lambda item: len(item[0]), reverse=True)


def _resnet_inner_names() -> list[tuple[str, str]]:
    inverse = {ldm + ".": diffusers + "." for diffusers, ldm in convert._RESNET_DIFFUSERS_TO_LDM.items()}
    return sorted(inverse.items(), key=lambda item: len(item[0]), reverse=True)


def diffusers_name(ldm_name: str, table: list[tuple[str, str]]) -> str | None:
    """diffusers path of one of our UNet module paths (None if it has no diffusers counterpart)."""
    dotted = ldm_name + "."
    for ldm_prefix, diffusers_prefix in table:
        if dotted.startswith(ldm_prefix):
            rest = dotted[len(ldm_prefix):]
            if ".resnets." in diffusers_prefix:
                for ldm_inner, diffusers_inner in _resnet_inner_names():
                    if rest.startswith(ldm_inner):
                        rest = diffusers_inner + rest[len(ldm_inner):]
                        break
            return (diffusers_prefix + rest).rstrip(".")
    return None


def _underscored(component: str, path: str) -> str:
    return f"{component}:{path.replace('.', '_')}"


def text_component(folder: str) -> str:
    """Our text encoders carry the diffusers folder they correspond to; LoRAs name them te1/te2."""
    return "te2" if folder == "text_encoder_2" else "te1"


def build_index(model) -> dict[str, Target]:
    """Lookup spelling (`component:path_with_underscores`) → Target, for every patchable layer of
    a `DiffusionModel`: UNet layers under their LDM and their diffusers path, text layers under
    their Hugging Face path."""
    index: dict[str, Target] = {}

    def add(lookup: str, target: Target) -> None:
        previous = index.setdefault(lookup, target)
        if previous is not target and previous.module is not target.module:
            raise AssertionError(f"two layers share the LoRA name {lookup}")  # a naming bug, not user input

    table = ldm_to_diffusers_table(model.unet.config)
    for name, module in model.unet.named_modules():
        if not isinstance(module, PATCHABLE):
            continue
        target = Target("unet", name, module)
        add(_underscored("unet", name), target)
        alias = diffusers_name(name, table)
        if alias is not None:
            add(_underscored("unet", alias), target)
    for encoder in model.text_encoders:
        component = text_component(encoder.spec.folder)
        for name, module in encoder.model.named_modules():
            if isinstance(module, PATCHABLE):
                target = Target(component, name, module)
                add(_underscored(component, name), target)
                if name.startswith("text_model."):
                    # transformers 5 drops the `text_model.` level of CLIPTextModel, and so do
                    # the PEFT files diffusers saves with it
                    add(_underscored(component, name[len("text_model."):]), target)
    return index
