"""How much a VAE decoder turns a small latent change into a visible one (issue 20, docs/coherence.md).

Random per-cell changes of a given RMS (over the channels, in the scaled latents the samplers and
``GenerationRequest.init_latents`` use) are added to a latent, both versions are decoded, and the
pictures are compared with the coherence metrics of ``editor.ai.coherence``: mean and largest ΔE,
the share of pixels over ΔE 25, and the "new blobs" count. The latents are the house student's own
frames (what a refine starts from) and encoded scenes of the house generator.

    python scripts/decoder_sensitivity.py [--model assets/house/full] [--rms 0.02 0.05 0.1] [--draws 8]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PROMPTS = ("a landscape at day with sand dunes, clouds, a lake, pine trees and a yellow tower",
           "a landscape at night with snowy peaks, the moon, a river and a red house",
           "a landscape at sunset with green hills, a clear sky, the sea and palm trees")


def latents_to_probe(model_dir: Path, preview_dir: Path) -> list[tuple[str, "object"]]:
    import torch

    from inference.images import rgb_to_tensor
    from inference.loader import load_model
    from inference.pipeline import Pipeline
    from inference.requests import GenerationRequest
    from training.house.scene import random_scene

    out = []
    student = Pipeline(load_model(preview_dir, dtype="float32"))
    for i, prompt in enumerate(PROMPTS):
        result = student.generate(GenerationRequest(prompt, seed=11 + i, steps=1, guidance=0.0, width=128,
                                                    height=128), return_latents=True)
        out.append((f"student frame {i}", torch.as_tensor(np.asarray(result.latents)).reshape(1, 4, 16, 16)))
    model = load_model(model_dir, dtype="float32")
    for seed in (77, 78, 79):
        image, _ = random_scene(seed, 128, 128)
        x = rgb_to_tensor(np.asarray(image)[..., :3], torch.device("cpu"), torch.float32)
        with torch.no_grad():
            mean, _ = model.vae.encode_moments(x)
        out.append((f"encoded scene {seed}", mean.float() * model.vae.config.scaling_factor))
    return out


def measure(model_dir: Path, preview_dir: Path, levels: list[float], draws: int) -> dict:
    import torch

    from editor.ai.coherence import delta_e_map, new_blobs
    from inference.images import tensor_to_rgb
    from inference.loader import load_model
    from inference.pipeline import decode_latents

    torch.set_num_threads(2)
    model = load_model(model_dir, dtype="float32")

    def decode(latents):
        with torch.no_grad():
            return tensor_to_rgb(decode_latents(model, latents))

    g = torch.Generator().manual_seed(0)
    rows = {rms: [] for rms in levels}
    for _name, latents in latents_to_probe(model_dir, preview_dir):
        base = decode(latents)
        for rms in levels:
            for _ in range(draws):
                changed = decode(latents + torch.randn(latents.shape, generator=g) * rms)
                de = delta_e_map(base, changed)
                rows[rms].append((float(de.mean()), float(de.max()), float((de > 25).mean()),
                                  new_blobs(base, changed)))
    return {str(rms): {"delta_e_mean": round(float(np.mean([r[0] for r in v])), 2),
                       "delta_e_max": round(float(np.mean([r[1] for r in v])), 1),
                       "share_over_25": round(float(np.mean([r[2] for r in v])), 4),
                       "new_blobs_per_draw": round(float(np.mean([r[3] for r in v])), 3),
                       "draws": len(v)} for rms, v in rows.items()}


MAX_RMS = 10.0  # scaled latents spread about 1: beyond this the latent is noise, not a change
MAX_DRAWS = 1000


def check_args(args: argparse.Namespace) -> str:
    """What is wrong with the command line, in one line ("" when nothing is), before any model loads."""
    for flag, folder in (("--model", args.model), ("--preview", args.preview)):
        if not (folder / "model_index.json").is_file():
            return f"{flag} {folder} is not a diffusers model folder (no model_index.json)"
    if not args.rms:
        return "--rms needs at least one level"
    bad = next((r for r in args.rms if not 0.0 < r <= MAX_RMS), None)  # NaN fails too
    if bad is not None:
        return f"--rms {bad:g} must be above 0 and at most {MAX_RMS:g}"
    if not 1 <= args.draws <= MAX_DRAWS:
        return f"--draws {args.draws} must be between 1 and {MAX_DRAWS}"
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "assets" / "house" / "full")
    parser.add_argument("--preview", type=Path, default=ROOT / "assets" / "house" / "preview")
    parser.add_argument("--rms", type=float, nargs="*", default=[0.02, 0.035, 0.05, 0.1])
    parser.add_argument("--draws", type=int, default=8)
    args = parser.parse_args(argv)
    problem = check_args(args)
    if problem:
        print(f"decoder_sensitivity: {problem}", file=sys.stderr)
        return 2
    report = measure(args.model, args.preview, args.rms, args.draws)
    for rms, row in report.items():
        print(f"RMS {rms}: ΔE mean {row['delta_e_mean']}, max {row['delta_e_max']} (mean over draws), "
              f"{row['share_over_25']:.1%} of pixels over ΔE 25, {row['new_blobs_per_draw']} new blobs per draw")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
