"""The weight change of one LoRA module, in float32: LoRA/LoCon, LoHa, LoKr and DoRA.

Conventions follow the trainers that write these files (kohya sd-scripts, LyCORIS) and the
loaders that read them (A1111, PEFT): a module's change is `scale · f(factors)` with
`scale = alpha / rank` (alpha defaults to the rank, i.e. scale 1; PEFT's rsLoRA uses
alpha / √rank), and a LoKr module whose two Kronecker factors are both stored whole is never
scaled. Shapes: Linear (out, in); Conv2d (out, in, kh, kw).
"""
from __future__ import annotations

import math

import torch

from inference.errors import UnsupportedModelError


def _flat(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.reshape(tensor.shape[0], -1)


def _tucker(core: torch.Tensor, out_factor: torch.Tensor, in_factor: torch.Tensor) -> torch.Tensor:
    """LyCORIS' CP/Tucker rebuild: core (r, r, kh, kw), out_factor (r, out), in_factor (r, in)
    → (out, in, kh, kw), W[p, q] = Σ core[i, j] · out_factor[i, p] · in_factor[j, q]."""
    return torch.einsum("ijhw,ip,jq->pqhw", core, out_factor, in_factor)


def lora_delta(t: dict[str, torch.Tensor]) -> torch.Tensor:
    """up · down (LoCon convolutions: a k×k down conv then a 1×1 up conv compose into one k×k
    kernel), or up · mid · down with LoCon's Tucker `lora_mid`."""
    down, up = t["down"], t["up"]
    if up.dim() == 4 and tuple(up.shape[2:]) != (1, 1):
        raise UnsupportedModelError(f"LoRA up weight with a {tuple(up.shape[2:])} kernel (expected 1×1)")
    if "mid" in t:
        return _tucker(t["mid"], _flat(up).t(), _flat(down))
    return _flat(up) @ _flat(down)


def loha_delta(t: dict[str, torch.Tensor]) -> torch.Tensor:
    """Hadamard product of two low-rank products (LyCORIS LoHa), with its Tucker form for convs."""
    if "hada_t1" in t:
        first = _tucker(t["hada_t1"], t["hada_w1_a"], t["hada_w1_b"])
        second = _tucker(t["hada_t2"], t["hada_w2_a"], t["hada_w2_b"])
        return first * second
    return (_flat(t["hada_w1_a"]) @ _flat(t["hada_w1_b"])) * (_flat(t["hada_w2_a"]) @ _flat(t["hada_w2_b"]))


def lokr_delta(t: dict[str, torch.Tensor]) -> torch.Tensor:
    """Kronecker product w1 ⊗ w2 (LyCORIS LoKr); either factor may be stored whole or as a
    low-rank pair `_a @ _b`, and w2 of a convolution in Tucker form (`lokr_t2`)."""
    w1 = t["lokr_w1"] if "lokr_w1" in t else t["lokr_w1_a"] @ t["lokr_w1_b"]
    if "lokr_w2" in t:
        w2 = t["lokr_w2"]
    elif "lokr_t2" in t:
        w2 = _tucker(t["lokr_t2"], t["lokr_w2_a"], t["lokr_w2_b"])
    else:
        w2 = _flat(t["lokr_w2_a"]) @ _flat(t["lokr_w2_b"])
    if w2.dim() == 4:
        w1 = w1[:, :, None, None]
    return torch.kron(w1.contiguous(), w2.contiguous())


def rank(t: dict[str, torch.Tensor]) -> int | None:
    for role in ("down", "hada_w1_b", "lokr_w1_b", "lokr_w2_b"):
        if role in t:
            return int(t[role].shape[0])
    return None


def scale(t: dict[str, torch.Tensor], alpha: float | None, rs_lora: bool = False) -> float:
    """alpha / rank as kohya and A1111 define it; 1 when the file gives no alpha."""
    r = rank(t)
    if r is None or alpha is None:  # whole LoKr factors, or no alpha: alpha = rank
        return 1.0
    return alpha / math.sqrt(r) if rs_lora else alpha / r


def module_delta(t: dict[str, torch.Tensor], shape: tuple[int, ...]) -> torch.Tensor:
    """The unscaled change of one module, reshaped to the patched weight's shape.

    Raises ValueError with the two shapes when the factors do not fit the layer (a LoRA made
    for another model)."""
    if "down" in t:
        delta = lora_delta(t)
    elif "hada_w1_a" in t:
        delta = loha_delta(t)
    else:
        delta = lokr_delta(t)
    per_output = math.prod(shape[1:])
    if delta.shape[0] != shape[0] or delta.numel() != shape[0] * per_output:
        raise ValueError(f"{tuple(delta.shape)} does not fit {tuple(shape)}")
    return delta.reshape(shape)


def dora_weight(weight: torch.Tensor, delta: torch.Tensor, magnitude: torch.Tensor, per_output: bool) -> torch.Tensor:
    """DoRA: the patched weight W + ΔW rescaled to the stored magnitude, per output channel (PEFT,
    LyCORIS `wd_on_out`) or per input column (LyCORIS' default, the DoRA paper's column norm)."""
    merged = weight + delta
    ones = [1] * (weight.dim() - 1)
    if per_output:
        norm = _flat(merged).norm(dim=1).reshape(weight.shape[0], *ones)
        target = magnitude.reshape(weight.shape[0], *ones)
    else:
        columns = weight.shape[1]
        norm = merged.transpose(0, 1).reshape(columns, -1).norm(dim=1)
        norm = norm.reshape(1, columns, *ones[1:])
        target = magnitude.reshape(1, columns, *ones[1:])
    return merged * (target / norm)


def dora_per_output(magnitude_shape: tuple[int, ...], weight_shape: tuple[int, ...], style: str) -> bool:
    """PEFT stores one magnitude per output channel ((out,) or (1, out, 1, 1) for convs); LyCORIS
    stores (out, 1, …) with `wd_on_out` and (1, in, …) without."""
    if style != "kohya":
        return True
    return magnitude_shape[0] == weight_shape[0] and math.prod(magnitude_shape) == weight_shape[0] and (
        len(magnitude_shape) == 1 or magnitude_shape[1] == 1)
