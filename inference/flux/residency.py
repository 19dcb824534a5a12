"""Which FLUX components sit on the compute device, under a VRAM budget (bytes of parameters).

A 12B transformer (24 GB in bf16), T5-XXL (9.5 GB) and the VAE do not fit every GPU together. With
a budget smaller than the whole model the components live on the CPU ("home") and each is moved
to the device only when it runs — CLIP and T5, then the transformer, then the VAE — evicting the
least recently used ones first when the newcomer would not fit. A component therefore stays on
the device for as long as there is room (a 16 GB card keeps transformer + VAE between two live
previews while T5 comes and goes), and at no time are more than `budget` bytes resident. With a
budget that holds everything (or none given) the policy does nothing: the model stays where the
loader put it, as before. Compressed layers (fp8/GGUF `CompressedLinear`) move as their packed
buffers: `Module.to(device)` never changes a buffer's dtype, so they stay compressed.

The moves go through a `mover` callable (default `module.to(device)`, in place), and every move
is recorded in `log` with the resident bytes after it, so tests can check order and peak on a
machine without a GPU.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..errors import InferenceError
from ..tiled_decode import OutOfMemoryError

# Run order of a request: text encoders, then the transformer, then the VAE (img2img, inpainting
# and Kontext also use the VAE before the transformer, to encode).
COMPONENTS = ("clip", "t5", "transformer", "vae")

Mover = Callable[[nn.Module, torch.device], nn.Module]


def module_bytes(module: nn.Module | None) -> int:
    """Bytes of a module's parameters and buffers as stored (a compressed layer's packed bytes)."""
    if module is None:
        return 0
    tensors = list(module.parameters()) + [b for b in module.buffers() if b is not None]
    return sum(t.numel() * t.element_size() for t in tensors)


def default_mover(module: nn.Module, device: torch.device) -> nn.Module:
    return module.to(device)


@dataclass
class Move:
    name: str
    onto_device: bool  # True: home → device; False: device → home
    resident_bytes: int  # on the device after the move


@dataclass
class Residency:
    """Sequential residency of a `FluxModel`'s components (see the module docstring)."""

    model: object  # FluxModel (not imported: the loader imports nothing from here)
    device: torch.device
    budget: int | None
    home: torch.device = field(default_factory=lambda: torch.device("cpu"))
    mover: Mover = default_mover
    log: list[Move] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.device = torch.device(self.device)
        self.home = torch.device(self.home)
        self.sizes = {name: module_bytes(getattr(self.model, name, None)) for name in COMPONENTS
                      if getattr(self.model, name, None) is not None}
        self.total = sum(self.sizes.values())
        self.sequential = self.budget is not None and self.total > self.budget
        # Least recently used first. When not sequential everything counts as resident (as loaded).
        self._resident: list[str] = [] if self.sequential else list(self.sizes)
        self.peak = self.resident_bytes

    @property
    def resident(self) -> tuple[str, ...]:
        return tuple(self._resident)

    @property
    def resident_bytes(self) -> int:
        return sum(self.sizes[name] for name in self._resident)

    def where(self, name: str) -> torch.device:
        """The device component `name` is on now."""
        return self.device if name in self._resident else self.home

    def settle(self, loaded_on_device: bool) -> None:
        """Put the freshly loaded components where the policy wants them, when the loader guessed
        otherwise (the engine's guess comes from file sizes, before the dtype is applied):
        sequential → all home, else → all on the device. Not logged: no request is running."""
        if self.sequential == (not loaded_on_device):
            return
        target = self.home if self.sequential else self.device
        for name in self.sizes:
            module = getattr(self.model, name)
            moved = self.mover(module, target)
            if moved is not module:
                setattr(self.model, name, moved)

    @contextlib.contextmanager
    def use(self, name: str) -> Iterator[None]:
        """Within the block, component `name` is on the device (a no-op unless sequential)."""
        if self.sequential and name in self.sizes:
            self._bring(name)
        yield

    def _bring(self, name: str) -> None:
        if name in self._resident:  # most recently used now
            self._resident.remove(name)
            self._resident.append(name)
            return
        need = self.sizes[name]
        if need > self.budget:
            raise OutOfMemoryError(f"the FLUX {name} needs {need / 2**30:.1f} GiB, more than the VRAM budget of "
                                   f"{self.budget / 2**30:.1f} GiB; raise --vram-budget or use an fp8/GGUF model")
        while self._resident and self.resident_bytes + need > self.budget:
            self._move(self._resident[0], onto_device=False)
        self._move(name, onto_device=True)

    def _move(self, name: str, onto_device: bool) -> None:
        module = getattr(self.model, name)
        moved = self.mover(module, self.device if onto_device else self.home)
        if moved is not module:  # `.to` of a module is in place; a custom mover may return a new one
            setattr(self.model, name, moved)
        if onto_device:
            self._resident.append(name)
        else:
            self._resident.remove(name)
        self.log.append(Move(name, onto_device, self.resident_bytes))
        self.peak = max(self.peak, self.resident_bytes)


WEIGHT_SUFFIXES = (".safetensors", ".gguf", ".bin")


def flux_weight_bytes(path: str | Path, ae: str | Path | None = None) -> int | None:
    """The size of a FLUX model's weight files (folder components or a single file and its
    companions): the engine's guess, before loading, of whether it fits the budget. None when the
    files cannot be found (the loader will say why)."""
    root = Path(path)
    try:
        if root.is_dir():
            return sum(f.stat().st_size for stem in ("transformer", "text_encoder", "text_encoder_2", "vae")
                       for f in (root / stem).glob("*") if f.suffix in WEIGHT_SUFFIXES)
        from .discover import find_flux_files

        files = find_flux_files(root, ae=ae)
        return sum(Path(f).stat().st_size for f in (files.transformer, files.ae, files.clip_l, files.t5))
    except (OSError, InferenceError):
        return None


def default_budget(device: torch.device | str) -> int | None:
    """The device's free memory now (CUDA), else None (no limit: CPU and MPS share host memory)."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return int(free)


__all__ = ["COMPONENTS", "Move", "Residency", "default_budget", "default_mover", "flux_weight_bytes", "module_bytes"]
