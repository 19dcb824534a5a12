"""CPU timings of the shipped folders (a benchmark, not a test): one-step 128² frame incl. decode, one-step
img2img frame incl. encode + decode, and a full 20-step render with CFG; medians."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from inference.loader import load_model
from inference.pipeline import GenerationRequest, Pipeline

from . import configs


def _median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return round(float(np.median(times)) * 1000, 1)


def bench(models: str | Path = "assets/house", threads: int = 2) -> dict:
    torch.set_num_threads(threads)
    models = Path(models)
    preview = Pipeline(load_model(models / "preview", dtype="float32"))
    full = Pipeline(load_model(models / "full", dtype="float32"))
    size = configs.RESOLUTION
    prompt = "a landscape at sunset with snowy peaks, a lake and a red house"
    one = preview.generate(GenerationRequest(prompt, seed=1, steps=1, guidance=0.0, width=size, height=size)).image
    return {
        "threads": threads,
        "one_step_txt2img_ms": _median_ms(lambda: preview.generate(GenerationRequest(
            prompt, seed=1, steps=1, guidance=0.0, width=size, height=size)), 20),
        "one_step_img2img_ms": _median_ms(lambda: preview.generate(GenerationRequest(
            prompt, seed=1, steps=2, guidance=0.0, width=size, height=size, init_image=one, strength=0.5)), 20),
        "full_render_20_steps_ms": _median_ms(lambda: full.generate(GenerationRequest(
            prompt, seed=1, steps=configs.FULL_STEPS, guidance=configs.FULL_GUIDANCE, width=size, height=size)), 3),
    }
