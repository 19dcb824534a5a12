"""Benchmark case `house-preview-lora`: the live-preview frame with a LoRA attached vs without, in
one run, plus the cost of moving the LoRA's weight slider (a re-merge before the frame).

The LoRA is random, rank 8, kohya-named over every Linear and Conv2d of the house preview UNet
and text encoder: the worst case for a merge (real style LoRAs touch the attention layers only).
"""
from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

import torch

from .api import GenerationRequest, LoraSpec
from .engine import Engine, ModelRef
from .formats.safetensors_file import save_tensors


def _random_kohya_lora(model, path: Path, rank: int = 8, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    networks = [("lora_unet_", model.unet)] + [("lora_te_", encoder.model) for encoder in model.text_encoders[:1]]
    for prefix, network in networks:
        for name, module in network.named_modules():
            if not isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
                continue
            weight = module.weight
            out_dim, in_dim = weight.shape[0], weight.shape[1]
            r = min(rank, out_dim, in_dim)
            kernel = tuple(weight.shape[2:])
            key = prefix + name.replace(".", "_")
            tensors[f"{key}.lora_down.weight"] = torch.randn(r, in_dim, *kernel, generator=generator) * 0.01
            tensors[f"{key}.lora_up.weight"] = torch.randn(out_dim, r, *([1, 1] if kernel else []),
                                                           generator=generator) * 0.01
            tensors[f"{key}.alpha"] = torch.tensor(float(r))
    save_tensors(tensors, path)


def bench_house_preview_lora(folder: Path, device: torch.device, dtype: torch.dtype, runs: int, warmup: int,
                             time_call) -> dict | None:
    """Medians (ms) of the preview frame without a LoRA, with one, and with its weight changing every
    frame; None when the house model is not installed."""
    if not (folder / "model_index.json").is_file():
        return None
    engine = Engine(str(device))
    ref = ModelRef(folder, dtype=str(dtype).removeprefix("torch."), resident=True)
    base = GenerationRequest(prompt="a house by a lake at sunset", seed=1, steps=1, sampler="euler",
                             timestep_spacing="trailing", guidance=0.0, width=128, height=128)
    with tempfile.TemporaryDirectory(prefix="canvasai-bench-lora-") as tmp:
        lora = Path(tmp) / "bench-lora.safetensors"
        _random_kohya_lora(engine.load(ref).model, lora)
        with_lora = GenerationRequest(**{**vars(base), "loras": (LoraSpec(str(lora), 0.8),)})
        plain = time_call(lambda: engine.generate(ref, base), device, runs, warmup)
        attached = time_call(lambda: engine.generate(ref, with_lora), device, runs, warmup)
        weights = iter([0.5 + 0.01 * (i % 40) for i in range(10 * (runs + warmup))])
        sliding = time_call(lambda: engine.generate(ref, GenerationRequest(
            **{**vars(base), "loras": (LoraSpec(str(lora), next(weights)),)})), device, runs, warmup)
    return {"without": statistics.median(plain), "with": statistics.median(attached),
            "weight_changing": statistics.median(sliding), "times": attached}
