"""CLI: python -m training.house {train, export, evaluate, ceiling, bench} …"""
from __future__ import annotations

import argparse
import json
import sys


def _shares(text: str | None) -> dict[str, float] | None:
    if not text:
        return None
    out = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise SystemExit(f"--shares: {part!r} is not stage=fraction") from None
    unknown = set(out) - {"vae", "unet", "distill"}
    if unknown:
        raise SystemExit(f"--shares: unknown stage {sorted(unknown)[0]!r} (vae, unet, distill)")
    return out


def _one_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.house")
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train (or resume) VAE, UNet + text encoder, preview distillation")
    tr.add_argument("--out", required=True)
    tr.add_argument("--minutes", type=float, default=45.0, help="total budget over all stages (resume extends)")
    tr.add_argument("--device", default="cpu")
    tr.add_argument("--threads", type=int, default=None)
    tr.add_argument("--save-every", type=float, default=3.0, help="minutes between checkpoints")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--scenes", type=int, default=3000, help="training scenes encoded for the UNet stage")
    tr.add_argument("--init", default=None, help="warm start from a house folder (e.g. assets/house)")
    tr.add_argument("--shares", default=None, help="stage shares of --minutes, e.g. vae=0.3,unet=0.45,distill=0.25")
    tr.add_argument("--pairs", type=int, default=600, help="teacher trajectories for the preview distillation")
    tr.add_argument("--latent-noise", type=float, default=0.0,
                    help="decoder fine-tune (with --init): train on latents with per-cell noise up to this RMS")
    tr.add_argument("--part-weighted", action="store_true",
                    help="weight the UNet loss by scene parts (objects, trees, sun/moon), as the VAE's")
    ex = sub.add_parser("export", help="write diffusers folders full/ and preview/ from a training dir")
    ex.add_argument("--ckpt", required=True)
    ex.add_argument("--out", default="assets/house")
    ex.add_argument("--vae-from", default=None,
                    help="take the VAE from this house folder (e.g. assets/house) instead of the run's vae.pt")
    ev = sub.add_parser("evaluate", help="held-out adherence, coherence, seams, outpainting")
    ev.add_argument("--models", default="assets/house")
    ev.add_argument("--json", required=True)
    ev.add_argument("--prompts", type=int, default=144)
    ev.add_argument("--threads", type=int, default=None)
    ev.add_argument("--cases", type=int, default=144, help="inpainting and outpainting cases (at most --prompts)")
    ev.add_argument("--outpaint-strength", type=float, default=None, help="default: inference.outpaint's")
    ce = sub.add_parser("ceiling", help="rules' accuracy on held-out renders passed through a VAE "
                                         "(judges a decoder before it ships)")
    ce.add_argument("--vae", default="assets/house", help="a house folder or a training run's vae.pt")
    ce.add_argument("--prompts", type=int, default=144)
    ce.add_argument("--threads", type=int, default=None)
    be = sub.add_parser("bench", help="CPU timings of the shipped folders")
    be.add_argument("--models", default="assets/house")
    be.add_argument("--threads", type=int, default=2)
    be.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.command == "train":
        from .train import run

        if not (0.0 <= args.latent_noise <= 1.0):
            print(f"train: --latent-noise {args.latent_noise} must be between 0 and 1", file=sys.stderr)
            return 2
        if args.latent_noise and not args.init:
            print("train: --latent-noise fine-tunes a decoder: give --init (a house folder)", file=sys.stderr)
            return 2
        result = run(args.out, args.minutes, args.device, args.save_every, args.seed, args.threads, args.scenes,
                     args.init, shares=_shares(args.shares), part_weighted=args.part_weighted,
                     pairs=args.pairs, latent_noise=args.latent_noise)
    elif args.command == "export":
        from .export import export_checkpoint
        from inference.errors import InferenceError

        try:
            result = export_checkpoint(args.ckpt, args.out, args.vae_from)
        except InferenceError as error:
            print(f"export: {_one_line(error)}", file=sys.stderr)
            return 2
        except OSError as error:
            print(f"export: {error.filename or args.out}: {error.strerror or _one_line(error)}", file=sys.stderr)
            return 2
    elif args.command == "evaluate":
        from .evaluate import evaluate
        from inference.outpaint import DEFAULT_STRENGTH

        strength = DEFAULT_STRENGTH if args.outpaint_strength is None else args.outpaint_strength
        result = evaluate(args.models, args.prompts, threads=args.threads, inpaint_cases=args.cases,
                          outpaint_strength=strength)
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=1)
    elif args.command == "ceiling":
        from .evaluate import decoded_truth_accuracy, held_out_truths, load_vae
        from inference.errors import InferenceError
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        try:
            vae = load_vae(args.vae)
        except InferenceError as error:  # its message names the file
            print(f"ceiling: {_one_line(error)}", file=sys.stderr)
            return 2
        except (OSError, KeyError, RuntimeError) as error:
            print(f"ceiling: {args.vae}: {_one_line(error)}", file=sys.stderr)
            return 2
        result = {"vae": args.vae, "prompts": args.prompts,
                  "rule_accuracy_on_vae_decoded_ground_truth": decoded_truth_accuracy(vae, held_out_truths(args.prompts))}
    else:
        from .bench import bench
        result = bench(args.models, args.threads)
        if args.json:
            with open(args.json, "w") as handle:
                json.dump(result, handle, indent=1)
    json.dump(result, sys.stdout, indent=1, default=str)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
