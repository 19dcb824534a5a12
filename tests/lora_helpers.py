"""Random, non-trivial LoRA files in the real layouts, for the tiny models of tiny_models.py.

Module names come from the diffusers / transformers models themselves (and, for kohya SDXL
files, from the independent LDM renaming in layouts.py), never from `inference.lora.keys`, so
the files test our name matching rather than repeat it.
"""
from __future__ import annotations

from pathlib import Path

import layouts
import numpy as np
import torch
from safetensors.numpy import save_file
from torch import nn

from inference.formats.safetensors_file import save_tensors

TEXT_LAYERS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2", "text_projection")


def unet_layers(unet: nn.Module) -> dict[str, torch.Tensor]:
    """diffusers path → weight, for every Linear and Conv2d of a diffusers UNet."""
    return {name: module.weight.detach() for name, module in unet.named_modules()
            if isinstance(module, (nn.Linear, nn.Conv2d))}


def text_layers(encoder: nn.Module) -> dict[str, torch.Tensor]:
    """Checkpoint-style HF path (`text_model.…`) → weight, for the layers kohya trains."""
    out = {}
    for name, module in encoder.named_modules():
        if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in TEXT_LAYERS:
            out[name if name.startswith(("text_model.", "text_projection")) else "text_model." + name] = \
                module.weight.detach()
    return out


def ldm_names(paths, layers_per_block: int) -> dict[str, str]:
    """diffusers UNet path → LDM path, through layouts.py's independent inverse renaming."""
    renamed = layouts.unet_diffusers_to_ldm({f"{p}.weight": torch.empty(0) for p in paths}, layers_per_block)
    return {p: k[: -len(".weight")] for p, k in zip(paths, renamed)}


def _normalised(delta: torch.Tensor, weight: torch.Tensor, strength: float) -> float:
    """Factor that makes ‖delta‖ = strength·‖weight‖: visible, never overwhelming."""
    return float(strength * weight.norm() / delta.norm().clamp_min(1e-12))


def random_lora(weight: torch.Tensor, generator: torch.Generator, rank: int = 4, strength: float = 0.3,
                alpha: float | None = None) -> dict[str, torch.Tensor]:
    """kohya LoRA / LoCon factors (down carries the conv kernel, up is 1×1) and an alpha ≠ rank
    (random per module unless given)."""
    out_dim, in_dim, *kernel = weight.shape
    r = min(rank, out_dim, in_dim)
    down = torch.randn(r, in_dim, *kernel, generator=generator)
    up = torch.randn(out_dim, r, *([1, 1] if kernel else []), generator=generator)
    if alpha is None:
        alpha = float(r * (0.5 + 1.5 * torch.rand((), generator=generator)))
    delta = (alpha / r) * (up.reshape(out_dim, r) @ down.reshape(r, -1))
    up = up * _normalised(delta, weight, strength)
    return {"lora_down.weight": down, "lora_up.weight": up, "alpha": torch.tensor(alpha)}


def kohya_lora(path, components: dict[str, dict[str, torch.Tensor]], seed: int, metadata: dict | None = None,
               rank: int = 4, strength: float = 0.3, alpha: float | None = None,
               conv_alpha: float | None = None) -> dict[str, dict[str, torch.Tensor]]:
    """Write a kohya file: components maps a prefix (`lora_unet_`, `lora_te1_`…) to {path: weight}.
    Returns {kohya module name: factors} for reference computations."""
    generator = torch.Generator().manual_seed(seed)
    modules, tensors = {}, {}
    for prefix, layers in components.items():
        for name, weight in layers.items():
            key = prefix + name.replace(".", "_")
            module_alpha = conv_alpha if conv_alpha is not None and weight.dim() == 4 else alpha
            factors = random_lora(weight.float(), generator, rank, strength, module_alpha)
            modules[key] = factors
            tensors.update({f"{key}.{role}": value for role, value in factors.items()})
    save_tensors(tensors, path, metadata=metadata or {})
    return modules


def randomise_adapter(model: nn.Module, seed: int, markers: tuple[str, ...], strength: float = 0.3) -> None:
    """Give every adapter parameter (PEFT names containing one of `markers`) random values."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if any(marker in name for marker in markers):
                param.copy_(torch.randn(param.shape, generator=generator) * strength)


# kohya sd-scripts (networks/lora.py) for SD1/SD2: LoRA on every Linear / 1×1 Conv2d inside these
# diffusers-named UNet blocks, and with `conv_dim` (LoCon) also on the ResNet / sampler blocks,
# their 3×3 convolutions included. kohya trains SD1/SD2 on a UNet with diffusers' module paths.
KOHYA_UNET_BLOCKS = ("Transformer2DModel",)
KOHYA_UNET_CONV_BLOCKS = ("ResnetBlock2D", "Downsample2D", "Upsample2D")


def kohya_unet_layers(unet: nn.Module, conv: bool = True) -> dict[str, torch.Tensor]:
    """diffusers path → weight for the UNet layers kohya's LoRA/LoCon network creates modules for."""
    blocks = KOHYA_UNET_BLOCKS + (KOHYA_UNET_CONV_BLOCKS if conv else ())
    out = {}
    for name, module in unet.named_modules():
        if type(module).__name__ not in blocks:
            continue
        for child_name, child in module.named_modules():
            linear = isinstance(child, nn.Linear) or (isinstance(child, nn.Conv2d) and tuple(child.kernel_size) == (1, 1))
            if child_name and (linear or (conv and isinstance(child, nn.Conv2d))):
                out[f"{name}.{child_name}"] = child.weight.detach()
    return out


def tiny_lora(path: Path, family: str = "sd1", metadata: dict | None = None) -> Path:
    """A kohya LoRA of one module whose shapes say its family (what inference.library reads): the
    editor's LoRA-list tests fill model folders with these."""
    width = {"sd1": 768, "sdxl": 2048}[family]
    key = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k"
    path.parent.mkdir(parents=True, exist_ok=True)
    fill = sum(path.name.encode()) % 97 / 100  # every file different: the library tells them apart by hash
    save_file({f"{key}.lora_down.weight": np.full((4, width), fill, np.float16),
               f"{key}.lora_up.weight": np.zeros((640, 4), np.float16),
               f"{key}.alpha": np.array(4.0, np.float16)}, str(path), metadata=metadata or {})
    return path
