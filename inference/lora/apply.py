"""Load LoRA files and merge a stack of them into a loaded model, with an exact restore.

Merging writes `W + Σ wᵢ·ΔWᵢ` (float32 sums, cast once to the model's dtype) into new weight
tensors and keeps the original tensor objects aside; removing or changing the stack puts those
very objects back, so the base model is restored bit for bit and never reloaded. Each LoRA's
change is computed against the original weight, so the order of a stack does not matter and
DoRA modules normalise the base weight as PEFT does.

A LoRA is matched to the model once per (file, model) pair. Keys that name no layer of the model
are tolerated up to 10 % of the file's modules (returned as a warning with the count and the
first names: files often carry a few modules for layers a model variant lacks); more than that,
or any module whose shape does not fit its layer, is an UnsupportedModelError naming the first
few — a LoRA for another model family is never half-applied.
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from inference.errors import ModelFormatError, UnsupportedModelError
from inference.formats.pickle_sniff import check_not_pickle
from inference.formats.safetensors_file import load_tensors
from inference.formats.safetensors_header import read_header
from inference.models.layers import forget_derived_weights

from . import deltas
from .formats import describe, group_modules, peft_metadata
from .keys import Target, build_index

# The share of a file's modules that must match the model for a load with warnings.
MIN_MATCHED_SHARE = 0.9
_PEFT_COMPONENTS = {"unet": "unet", "te1": "text_encoder", "te2": "text_encoder_2"}


@dataclass
class LoraModule:
    lookup: str  # component:path_with_underscores
    component: str
    path: str  # the module path as written in the file
    style: str  # kohya / peft / diffusers_old
    tensors: dict[str, torch.Tensor]  # role → float32 tensor (alpha and dora excluded)
    alpha: float | None
    magnitude: torch.Tensor | None  # DoRA
    rs_lora: bool = False

    @property
    def scale(self) -> float:
        return deltas.scale(self.tensors, self.alpha, self.rs_lora)


@dataclass
class LoraFile:
    """A LoRA read into memory (float32 on the CPU; small next to the model)."""

    path: Path
    name: str
    info: dict  # inspect_lora's description
    modules: dict[str, LoraModule]
    refused: list[tuple[str, str]] = field(default_factory=list)  # (key, why) the parser could not use

    @property
    def trigger_words(self) -> list[str]:
        return list(self.info.get("trigger_words", []))


def _pattern_value(patterns: dict, module: str):
    """PEFT's rank/alpha patterns: a key matches a module path that ends with it at a dot boundary."""
    for pattern, value in (patterns or {}).items():
        if re.match(rf"(.*\.)?(?:{pattern})$", module):
            return value
    return None


def _peft_alpha(adapter: dict, component: str, module: str) -> tuple[float | None, bool]:
    prefix = _PEFT_COMPONENTS[component]
    if f"{prefix}.lora_alpha" not in adapter and f"{prefix}.alpha_pattern" not in adapter:
        return None, False
    alpha = _pattern_value(adapter.get(f"{prefix}.alpha_pattern") or {}, module)
    if alpha is None:
        alpha = adapter.get(f"{prefix}.lora_alpha")
    return (float(alpha) if alpha is not None else None), bool(adapter.get(f"{prefix}.use_rslora", False))


def load_lora(path: str | Path) -> LoraFile:
    """Read a LoRA file (any supported format). Raises ModelFormatError for a damaged or unsafe
    file and UnsupportedModelError when it holds no LoRA modules we can apply."""
    path = Path(path)
    if not path.is_file():
        raise ModelFormatError(f"{path}: no such file")
    check_not_pickle(path)
    if path.suffix.lower() != ".safetensors":
        raise ModelFormatError(f"{path.name}: LoRAs are read from .safetensors files only")
    header = read_header(path)
    info = describe(header, path.name)
    entries, refused = group_modules({k: tuple(t.shape) for k, t in header.tensors.items()})
    needed = [key for entry in entries.values() for key in entry.keys.values()]
    raw = load_tensors(path, dtype=torch.float32, keys=needed)
    adapter = peft_metadata(header.metadata)
    modules: dict[str, LoraModule] = {}
    for lookup, entry in entries.items():
        tensors = {role: raw[key] for role, key in entry.keys.items() if role not in ("alpha", "dora")}
        alpha, rs_lora = None, False
        if "alpha" in entry.keys:
            alpha = float(raw[entry.keys["alpha"]].reshape(-1)[0])
        elif entry.parsed.style == "peft":
            alpha, rs_lora = _peft_alpha(adapter, entry.parsed.component, entry.parsed.module)
        magnitude = raw[entry.keys["dora"]] if "dora" in entry.keys else None
        modules[lookup] = LoraModule(lookup, entry.parsed.component, entry.parsed.module, entry.parsed.style,
                                     tensors, alpha, magnitude, rs_lora)
    return LoraFile(path, info["name"], info, modules, refused)


# ----------------------------------------------------------------------------- matching
@dataclass
class Resolved:
    pairs: list[tuple[Target, LoraModule]]
    warnings: list[str]


def _first(names: Sequence[str], count: int = 3) -> str:
    return ", ".join(names[:count]) + (" …" if len(names) > count else "")


def resolve(lora: LoraFile, model, index: dict[str, Target] | None = None) -> Resolved:
    """Match every module of `lora` to a layer of `model` (see the module docstring for the rules)."""
    index = build_index(model) if index is None else index
    family = lora.info.get("family")
    hint = f" (an {family} LoRA? the model is {model.family.name})" if family and family != model.family.name else ""
    pairs, unmatched, misfits = [], [], []
    for lookup, module in lora.modules.items():
        target = index.get(lookup)
        if target is None:
            unmatched.append(module.path if module.component == "unet" else f"{module.component}.{module.path}")
            continue
        weight = target.module.weight
        try:
            if "down" in module.tensors:
                _check_lora_shape(module.tensors, tuple(weight.shape))
            else:  # LoHa/LoKr: the shape shows only in the product
                deltas.module_delta(module.tensors, tuple(weight.shape))
        except ValueError as exc:
            misfits.append(f"{target.component}:{target.name} {exc}")
            continue
        pairs.append((target, module))
    if misfits:
        raise UnsupportedModelError(f"{lora.path.name}: {len(misfits)} LoRA module(s) do not fit {model.name}{hint}: "
                                    f"{_first(misfits)}")
    unused = unmatched + [f"{key} ({why})" for key, why in lora.refused]
    total = len(lora.modules) + len(lora.refused)
    warnings = []
    if unused:
        message = f"{len(unused)} of {total} LoRA modules match no layer of {model.name}"
        if len(pairs) < MIN_MATCHED_SHARE * total:
            raise UnsupportedModelError(f"{lora.path.name}: {message}{hint}: {_first(unused)}")
        warnings.append(f"{lora.path.name}: {message} and were skipped: {_first(unused)}")
    return Resolved(pairs, warnings)


def _check_lora_shape(t: dict[str, torch.Tensor], shape: tuple[int, ...]) -> None:
    """Shape check for plain LoRA without building the product (cheap for big layers)."""
    if t["up"].dim() == 4 and tuple(t["up"].shape[2:]) != (1, 1):
        raise ValueError(f"up weight with a {tuple(t['up'].shape[2:])} kernel (expected 1×1)")
    out, inner = t["up"].shape[0], math.prod(t["down"].shape[1:])
    if "mid" in t:
        inner = t["down"].shape[1] * math.prod(t["mid"].shape[2:])
    if out != shape[0] or inner != math.prod(shape[1:]):
        raise ValueError(f"({out}, {inner}) does not fit {shape}")


# ----------------------------------------------------------------------------- the stack
@dataclass(frozen=True)
class LoraWeight:
    """One entry of a stack: a LoRA and its strength on the UNet and on the text encoders."""

    lora: LoraFile
    unet: float = 1.0
    text: float | None = None  # None: the same as `unet`

    @property
    def text_weight(self) -> float:
        return self.unet if self.text is None else self.text

    def weight_for(self, component: str) -> float:
        return self.unet if component == "unet" else self.text_weight


class LoraPatcher:
    """Keeps one model's LoRA stack merged; `apply` switches stacks, `clear` restores the base.

    `text_version` changes whenever text-encoder weights change: prompt-embedding caches must
    include it in their key."""

    def __init__(self, model):
        self.model = model
        self._index: dict[str, Target] | None = None
        self._resolved: dict[int, tuple[LoraFile, Resolved]] = {}
        # id(module) → (module, its base weight object, component)
        self._originals: dict[int, tuple[nn.Module, nn.Parameter, str]] = {}
        self._active: tuple[tuple[int, float, float], ...] = ()
        self.text_version = 0
        self.warnings: list[str] = []

    @property
    def active(self) -> bool:
        return bool(self._originals)

    def _resolve(self, lora: LoraFile) -> Resolved:
        cached = self._resolved.get(id(lora))
        if cached is None or cached[0] is not lora:
            if self._index is None:
                self._index = build_index(self.model)
            cached = (lora, resolve(lora, self.model, self._index))
            self._resolved[id(lora)] = cached
        return cached[1]

    @torch.no_grad()
    def apply(self, stack: Sequence[LoraWeight]) -> list[str]:
        """Make the model's weights base + this stack. Returns the warnings of the stack's LoRAs.
        Raises UnsupportedModelError (before touching any weight) if a LoRA does not fit."""
        resolved = [(entry, self._resolve(entry.lora)) for entry in stack]  # errors before any change
        signature = tuple((id(e.lora), e.unet, e.text_weight) for e in stack)
        self.warnings = [w for _, r in resolved for w in r.warnings]
        if signature == self._active:
            return self.warnings
        contributions: dict[int, tuple[Target, list[tuple[float, LoraModule]]]] = {}
        for entry, result in resolved:
            for target, module in result.pairs:
                strength = entry.weight_for(target.component)
                if strength != 0.0:
                    contributions.setdefault(id(target.module), (target, []))[1].append((strength, module))
        try:
            self._write(contributions)
        except Exception:
            self._write({})  # never leave a half-merged stack behind: back to the base model
            self._active = ()
            raise
        self._active = signature
        # Forget matches of LoRAs no longer in the stack (they hold the files' tensors).
        self._resolved = {key: value for key, value in self._resolved.items()
                          if any(value[0] is entry.lora for entry in stack)}
        return self.warnings

    def _write(self, contributions: dict[int, tuple[Target, list[tuple[float, LoraModule]]]]) -> None:
        text_changed = False
        for key in [k for k in self._originals if k not in contributions]:
            module, original, component = self._originals.pop(key)
            module.weight = original
            forget_derived_weights(module)
            text_changed |= component != "unet"
        for key, (target, parts) in contributions.items():
            if key in self._originals:
                # Already patched by us: rewrite our own tensor in place (no allocation, and no
                # page faults on fresh memory, which dominate the cost of a merge on CPU).
                _merge_into(target.module.weight.data, self._originals[key][1], parts)
            else:
                original = target.module.weight
                self._originals[key] = (target.module, original, target.component)
                merged = torch.empty_like(original)  # same dtype, device and memory format
                target.module.weight = nn.Parameter(_merge_into(merged, original, parts), requires_grad=False)
            forget_derived_weights(target.module)  # a cache keyed on the old weight must not survive
            text_changed |= target.component != "unet"
        if text_changed:
            self.text_version += 1

    def clear(self) -> None:
        """Put every original weight object back: the base model, bit for bit."""
        self.apply([])


def _merge_into(out: torch.Tensor, original: torch.Tensor, parts: list[tuple[float, LoraModule]]) -> torch.Tensor:
    """out ← original + Σ strength·ΔW, accumulated in float32 (a half-precision model is cast once)."""
    base = original.detach().float()  # the original itself when it is float32: read, never written
    accumulator = out if out.dtype == torch.float32 else torch.empty_like(base)
    accumulator.copy_(base)
    shape = tuple(base.shape)
    for strength, module in parts:
        tensors = {role: t.to(base.device) for role, t in module.tensors.items()}
        factor = strength * module.scale
        if (module.magnitude is None and base.dim() == 2 and set(tensors) == {"down", "up"}
                and tensors["down"].dim() == tensors["up"].dim() == 2):
            accumulator.addmm_(tensors["up"], tensors["down"], alpha=factor)  # the common case, fused
            continue
        delta = deltas.module_delta(tensors, shape)
        if module.magnitude is None:
            accumulator.add_(delta, alpha=factor)
            continue
        # DoRA normalises the patched weight as a whole: strength scales its difference to the base.
        per_output = deltas.dora_per_output(tuple(module.magnitude.shape), shape, module.style)
        decomposed = deltas.dora_weight(base, delta * module.scale, module.magnitude.to(base.device), per_output)
        accumulator.add_(decomposed - base, alpha=strength)
    if accumulator is not out:
        out.copy_(accumulator)
    return out


def patcher_for(model) -> LoraPatcher:
    """The model's one LoraPatcher (kept on the model object until DiffusionModel grows a field)."""
    patcher = model.__dict__.get("_lora_patcher")
    if patcher is None:
        patcher = LoraPatcher(model)
        model.__dict__["_lora_patcher"] = patcher
    return patcher


def apply_loras(model, stack: Sequence[LoraWeight]) -> list[str]:
    """Merge `stack` into `model` (replacing any previous stack); returns warnings."""
    return patcher_for(model).apply(stack)


def remove_loras(model) -> None:
    patcher = model.__dict__.get("_lora_patcher")
    if patcher is not None:
        patcher.clear()


def text_version(model) -> int:
    """Changes whenever LoRAs change the model's text-encoder weights (0 for a model never patched):
    prompt-embedding caches key on it so they never serve an embedding of other weights."""
    patcher = model.__dict__.get("_lora_patcher")
    return patcher.text_version if patcher is not None else 0
