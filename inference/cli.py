"""`python -m inference` — inspect models, generate images, convert pickle checkpoints, download models.

Bad input ends with one line on stderr and exit code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
from pathlib import Path

from .api import (DEFAULT_GUIDANCE, DEFAULT_IMG2IMG_STRENGTH, DEFAULT_SAMPLER, DEFAULT_STEPS, SAMPLERS, SEED_MAX,
                  SPACINGS)
from .errors import CancelledError, InferenceError

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def house_model_path() -> Path:
    return Path(__file__).resolve().parents[1] / "assets" / "house" / "full"


def _add_generate(sub) -> None:
    p = sub.add_parser("generate", help="render an image (txt2img, img2img with --init-image, inpaint with --mask)")
    p.add_argument("--model", help="checkpoint .safetensors or diffusers folder (default: the house model)")
    p.add_argument("--vae", help="standalone VAE or TAESD file/folder to use instead of the model's")
    p.add_argument("--unet", metavar="PATH",
                   help="UNet-only file or diffusers UNet folder (SDXL-Lightning, Hyper-SD, DMD2…) that replaces "
                        "--model's UNet; its recommended settings apply")
    p.add_argument("--tcd-gamma", type=float, default=0.3,
                   help="tcd sampler: 0 deterministic … 1 most fresh noise per step (default 0.3)")
    p.add_argument("--prompt", required=True)
    p.add_argument("--negative", default="")
    p.add_argument("--seed", type=int, default=0, help=f"0 to {SEED_MAX} (default 0)")
    p.add_argument("--steps", type=int, default=None,
                   help=f"sampling steps (default: the model's recommendation, else {DEFAULT_STEPS})")
    p.add_argument("--sampler", default=None, choices=list(SAMPLERS),
                   help=f"default: the model's recommendation, else {DEFAULT_SAMPLER}")
    p.add_argument("--timestep-spacing", choices=list(SPACINGS),
                   help="default: the model's recommendation, else its scheduler config "
                        "(sgm_uniform and simple: euler and euler_a only)")
    p.add_argument("--guidance", type=float, default=None,
                   help=f"CFG scale (default: the model's recommendation, else {DEFAULT_GUIDANCE:g})")
    p.add_argument("--guidance-rescale", type=float, default=None,
                   help="rescaled CFG, 0–1, for zero-terminal-SNR models (default: the model's recommendation, else 0)")
    p.add_argument("--width", type=int, default=None, help="default: the init image's, else the model's native size")
    p.add_argument("--height", type=int, default=None, help="default: the init image's, else the model's native size")
    p.add_argument("--init-image")
    p.add_argument("--strength", type=float, default=None,
                   help=f"img2img: how much changes, 0–1 (default {DEFAULT_IMG2IMG_STRENGTH:g}; inpainting 1)")
    p.add_argument("--mask")
    p.add_argument("--extend", metavar="LEFT,TOP,RIGHT,BOTTOM",
                   help="outpaint: grow --init-image by these pixel margins (the result's sides must be multiples of 8)")
    p.add_argument("--prefill", choices=["edge", "telea", "mirror"], default="edge",
                   help="outpaint: how the new area is filled before sampling (default edge)")
    p.add_argument("--lora", action="append", default=[], metavar="FILE[:WEIGHT[:TEXT_WEIGHT]]",
                   help="apply a LoRA (repeatable); WEIGHT (default 1) scales its UNet change, TEXT_WEIGHT "
                        "its text-encoder change (default WEIGHT)")
    p.add_argument("--lora-dir", action="append", default=[], metavar="DIR",
                   help="a LoRA folder (repeatable; a ComfyUI or A1111 root works too) against which "
                        "<lora:NAME:WEIGHT> tags in --prompt are resolved")
    p.add_argument("--prediction-type", choices=["epsilon", "v_prediction", "sample"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--reference", metavar="IMAGE", help="FLUX Kontext: the image to edit (reference tokens)")
    p.add_argument("--vram-budget", type=float, metavar="GB",
                   help="GiB of FLUX weights on the device at once; over it the text encoders, transformer and "
                        "VAE take turns (default: the GPU's free memory)")
    p.add_argument("--farm", metavar="HOST:PORT",
                   help="render on the Ray render farm at this address (its head's port, 6379 by default); "
                        "if it is unreachable, render here with a one-line note (needs the 'farm' extra)")
    p.add_argument("--farm-cpus", type=float, default=1.0, help="CPUs per farm worker (default 1)")
    p.add_argument("--farm-gpus", type=float, default=0.0, help="GPUs per farm worker (default 0: CPU workers)")
    p.add_argument("--out", required=True)


def _add_batch(sub) -> None:
    """`batch PROMPTS.txt --out DIR [--farm HOST:PORT]` (inference/farm/batch.py: file format, resuming)."""
    p = sub.add_parser("batch", help="one image per prompt line, fanned out across a render farm; resumable")
    p.add_argument("prompts", help="UTF-8 text file, one prompt per line; a line ending in ' #seed=N' uses seed N")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for NNNN-<slug>-<seed>.png and "
                   "batch-manifest.json (created if missing); a rerun renders only what is missing or changed")
    p.add_argument("--farm", metavar="HOST:PORT", help="the Ray render farm; unreachable or not given: render here")
    p.add_argument("--farm-cpus", type=float, default=1.0, help="CPUs per farm worker (default 1)")
    p.add_argument("--farm-gpus", type=float, default=0.0, help="GPUs per farm worker (default 0: CPU workers)")
    p.add_argument("--farm-workers", type=int, default=None, metavar="N",
                   help="farm workers to start (default: as many as the cluster has room for at --farm-cpus / "
                        "--farm-gpus each)")
    p.add_argument("--model", help="checkpoint .safetensors or diffusers folder (default: the house model)")
    p.add_argument("--negative", default="")
    p.add_argument("--seed", type=int, default=0, help="seed of the first line; line N uses SEED+N-1 (default 0)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--sampler", default=None, choices=list(SAMPLERS))
    p.add_argument("--timestep-spacing", choices=list(SPACINGS))
    p.add_argument("--guidance", type=float, default=None)
    p.add_argument("--guidance-rescale", type=float, default=None)
    p.add_argument("--width", type=int, default=None, help="default: the model's native size")
    p.add_argument("--height", type=int, default=None, help="default: the model's native size")
    p.add_argument("--prediction-type", choices=["epsilon", "v_prediction", "sample"])
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--device", default="cpu", help="for local rendering (fall-back)")


def _add_farm(sub) -> None:
    p = sub.add_parser("farm", help="render farm helpers")
    farm_sub = p.add_subparsers(dest="farm_command", required=True)
    q = farm_sub.add_parser("start-local", help="a Ray head on 127.0.0.1 with N CPU slots, to try the farm on "
                            "one machine; runs until Ctrl-C")
    q.add_argument("--workers", type=int, required=True, help="CPU slots (one farm worker of 1 CPU each)")
    q.add_argument("--port", type=int, default=6379, help="the head's port, for --farm 127.0.0.1:PORT (default 6379)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m inference", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("inspect", help="describe a model as JSON without loading its weights")
    p.add_argument("path")
    p.add_argument("--prediction-type", choices=["epsilon", "v_prediction", "sample"])
    _add_generate(sub)
    _add_batch(sub)
    _add_farm(sub)
    p = sub.add_parser("bench", help="time the hot paths (random-weight real architectures + house model)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--quick", action="store_true", help="small sizes and step counts (minutes on a CPU)")
    p.add_argument("--compare", choices=["diffusers"], help="time diffusers on the same weights in the same run")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--cases", help="comma-separated subset, e.g. sd-turbo-preview,house-preview")
    p.add_argument("--json", required=True, dest="json_out")
    p = sub.add_parser("library", help="scan model folders (ComfyUI/A1111 roots or plain folders) as JSON")
    p.add_argument("dirs", nargs="+", metavar="DIR")
    p.add_argument("--kind", choices=["checkpoint", "unet", "vae", "taesd", "lora", "unknown", "error"])
    p.add_argument("--family")
    p.add_argument("--search", help="words every listed name contains (any case)")
    p.add_argument("--hashes", action="store_true", help="also compute A1111 short hashes (reads whole files)")
    p.add_argument("--cache", type=Path, help="the scan cache file (default: the user cache folder)")
    p = sub.add_parser("convert", help="convert a pickle checkpoint to .safetensors (weights_only load)")
    p.add_argument("src")
    p.add_argument("dst")
    p = sub.add_parser("download", help="download a model by http(s) URL into a folder (resumable, verified)")
    p.add_argument("url", help="http:// or https:// address of the model file")
    p.add_argument("--to", required=True, metavar="DIR", help="the library folder to put the file in")
    p.add_argument("--name", metavar="FILE", help="file name (default: the server's, else the URL's)")
    p.add_argument("--sha256", metavar="HEX", help="expected SHA-256; a mismatch removes the download")
    return parser


class _ArgumentError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 — argparse's own behaviour, kept short
        raise _ArgumentError(message)


def _check_device(name: str) -> str:
    from .devices import parse_device

    return parse_device(name)


def _parameters_text(args, request, model) -> str:
    """A1111's `parameters` PNG text: prompt line, negative line, then comma-separated settings."""
    settings = [f"Steps: {request.steps}", f"Sampler: {request.sampler}", f"CFG scale: {request.guidance:g}",
                f"Seed: {request.seed}", f"Size: {request.width}x{request.height}",
                f"Model: {getattr(model, 'name', '') or Path(args.model or 'house').name}"]
    model_hash = getattr(model, "file_hash", "")
    if model_hash:  # A1111's short hash; FLUX folders carry none yet
        settings.insert(-1, f"Model hash: {model_hash}")
    if request.init_image is not None:
        settings.append(f"Denoising strength: {request.strength:g}")
    if request.timestep_spacing:
        settings.append(f"Timestep spacing: {request.timestep_spacing}")
    lines = [request.prompt]
    if request.negative_prompt:
        lines.append(f"Negative prompt: {request.negative_prompt}")
    lines.append(", ".join(settings))
    return "\n".join(lines)


def _outpaint(args, request, init, mask):
    from .outpaint import DEFAULT_STRENGTH, outpaint_request

    if init is None:
        raise InferenceError("--extend needs an --init-image to grow")
    if mask is not None:
        raise InferenceError("--extend makes its own mask: drop --mask")
    try:
        margins = [int(v) for v in args.extend.split(",")]
    except ValueError:
        margins = []
    if len(margins) != 4:
        raise InferenceError(f"--extend {args.extend!r}: expected four whole numbers LEFT,TOP,RIGHT,BOTTOM")
    strength = args.strength if args.strength is not None else DEFAULT_STRENGTH
    return outpaint_request(request, init, *margins, prefill=args.prefill, strength=strength)


def _lora_spec(value: str):
    """FILE[:WEIGHT[:TEXT_WEIGHT]], the weights read from the right so Windows paths keep their ':'."""
    from .api import LoraSpec

    parts, weights = value.split(":"), []
    while len(parts) > 1 and len(weights) < 2:
        try:
            weights.insert(0, float(parts[-1]))
        except ValueError:
            break
        parts.pop()
    path = ":".join(parts)
    if not Path(path).is_file():
        raise InferenceError(f"--lora {value}: no such file {path}")
    return LoraSpec(path, *weights)


def _settings(args, info) -> tuple[dict, str | None]:
    """Sampler, steps, guidance and spacing: what the user gave, else the model's preset; and a
    note saying which values came from the preset when they differ from the engine's defaults."""
    preset = info.preset
    chosen = {
        "sampler": args.sampler if args.sampler is not None else (preset.sampler if preset else DEFAULT_SAMPLER),
        "steps": args.steps if args.steps is not None else (preset.steps if preset else DEFAULT_STEPS),
        "guidance": args.guidance if args.guidance is not None else (preset.guidance if preset else DEFAULT_GUIDANCE),
        "timestep_spacing": args.timestep_spacing if args.timestep_spacing is not None
        else (preset.timestep_spacing if preset else None),
        "guidance_rescale": args.guidance_rescale if args.guidance_rescale is not None
        else (preset.guidance_rescale if preset else 0.0),
    }
    engine_defaults = {"sampler": DEFAULT_SAMPLER, "steps": DEFAULT_STEPS, "guidance": DEFAULT_GUIDANCE}
    from_preset = [name for name in engine_defaults
                   if getattr(args, name) is None and chosen[name] != engine_defaults[name]]
    note = None
    if preset is not None and from_preset:
        values = ", ".join(f"{name} {chosen[name]}" if name == "sampler" else f"{name} {chosen[name]:g}"
                           for name in from_preset)
        note = f"{values} from the model's recommendation ({preset.source})"
    return chosen, note


def _vram_budget(value: float | None) -> int | None:
    """--vram-budget GB → bytes (GiB, as GPUs are sized), or None for the engine's default."""
    import math

    if value is None:
        return None
    if not math.isfinite(value) or not 0 < value <= 2**20:
        raise InferenceError(f"--vram-budget {value:g}: expected GiB above 0 (e.g. 12)")
    return max(1, int(value * 2**30))


def _load_reference(path: str):
    """--reference: uint8 (H, W, 3). The size is read from the header first, so a 10000² file is
    refused before it is decoded; unreadable files are the image loader's one line."""
    import warnings

    from PIL import Image

    from .defaults import MAX_SIDE
    from .images import load_rgb

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's decompression-bomb warning: the size check says it
            with Image.open(path) as image:
                width, height = image.size
    except Exception:  # noqa: BLE001 - load_rgb below reports the file's problem in one line
        width = height = None
    if width is not None and not (16 <= width <= MAX_SIDE and 16 <= height <= MAX_SIDE):
        raise InferenceError(f"--reference {path}: a {width}x{height} image; each side must be between 16 and "
                             f"{MAX_SIDE} px")
    try:
        return load_rgb(path)
    except InferenceError as exc:
        raise InferenceError(f"--reference {exc}") from None


def _generate(args) -> int:
    from PIL import Image, PngImagePlugin
    from tqdm import tqdm

    from .api import GenerationRequest, validate_request
    from .engine import Engine, ModelRef
    from .images import load_mask, load_rgb

    from .outputs import check_destination, write_atomically

    out = check_destination(args.out, ".png")  # before any work: a bad destination costs no render
    model_path = Path(args.model) if args.model else house_model_path()
    if not args.model and not model_path.exists():
        raise InferenceError("no --model given and the house model is not installed (assets/house/full)")
    device = _check_device(args.device)
    init = load_rgb(args.init_image) if args.init_image else None
    mask = load_mask(args.mask) if args.mask else None
    engine = Engine(device, vram_budget=_vram_budget(args.vram_budget))
    ref = ModelRef(model_path, vae_path=args.vae, unet_path=args.unet, dtype=args.dtype,
                   prediction_type=args.prediction_type)
    info = engine.info(ref)
    if not info.runnable:
        raise InferenceError(f"{model_path.name}: holds a {info.kind.replace('_', ' ')}, not a full checkpoint")
    if args.reference and info.variant != "kontext":  # before reading it: only Kontext uses a reference
        raise InferenceError(f"--reference {args.reference}: {model_path.name} is not a FLUX Kontext model")
    reference = _load_reference(args.reference) if args.reference else None
    if args.unet:
        unet_info = engine.info(args.unet)
        if unet_info.kind != "unet":
            raise InferenceError(f"--unet {args.unet}: holds a {unet_info.kind.replace('_', ' ')}, not a UNet")
        if unet_info.family and info.family and unet_info.family != info.family:
            raise InferenceError(f"--unet {Path(args.unet).name}: a {unet_info.family_description} UNet does not fit "
                                 f"the {info.family_description} model {model_path.name}")
        if unet_info.preset is not None:  # a Lightning/Hyper UNet brings its own step count and CFG
            info = dataclasses.replace(info, preset=unet_info.preset)
    native = engine.native_resolution(ref)
    width = args.width or (init.shape[1] if init is not None else native)
    height = args.height or (init.shape[0] if init is not None else native)
    strength = args.strength if args.strength is not None else (
        DEFAULT_IMG2IMG_STRENGTH if init is not None and mask is None else 1.0)
    settings, note = _settings(args, info)
    prompt, prompt_loras = _prompt_loras(args)
    request = GenerationRequest(prompt=prompt, negative_prompt=args.negative, seed=args.seed,
                                width=width, height=height, init_image=init, strength=strength, mask=mask,
                                loras=tuple(_lora_spec(value) for value in args.lora) + prompt_loras,
                                tcd_gamma=args.tcd_gamma, reference_image=reference,
                                **settings)
    if args.extend:
        request = _outpaint(args, request, init, mask)
    validate_request(request)  # before any loading or progress output, so bad input stays one line
    warnings = engine.request_warnings(ref, request, sampler_chosen=args.sampler is not None)
    if args.farm:
        for line in ([f"note: {note}"] if note else []) + [f"warning: {w}" for w in warnings]:
            print(line, file=sys.stderr)
        return _generate_on_farm(args, request, model_path, out)
    engine.load(ref)  # before any note: a file that cannot load stays one error line
    if note:
        print(f"note: {note}", file=sys.stderr)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    interrupted = {"flag": False}

    def on_sigint(signum, frame):
        interrupted["flag"] = True

    previous = signal.signal(signal.SIGINT, on_sigint)
    bars: list = []

    def progress(step: int, total: int, _latents) -> None:
        if not bars:  # created on the first step: nothing is printed for requests that fail early
            bars.append(tqdm(total=total, desc="sampling", unit="step", file=sys.stderr, mininterval=0.5))
        bars[0].update(step - bars[0].n)

    try:
        result = engine.generate(ref, request, progress=progress, should_stop=lambda: interrupted["flag"])
    finally:
        for bar in bars:
            bar.close()
        signal.signal(signal.SIGINT, previous)
    for warning in result.info.get("lora_warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    model = engine.load(ref).model
    info_text = PngImagePlugin.PngInfo()
    info_text.add_text("parameters", _parameters_text(args, request, model))
    # A unique O_EXCL temp file in the destination folder, fsync, rename: never a half-written PNG,
    # never a planted symlink followed, the old file untouched on any failure.
    write_atomically(out, lambda handle: Image.fromarray(result.image).save(handle, format="PNG", pnginfo=info_text))
    print(str(out))
    return 0


def _generate_on_farm(args, request, model_path: Path, out: Path) -> int:
    """`generate --farm HOST:PORT`: the same request on the Ray render farm (inference.farm); an
    unreachable farm or a lost last worker renders here, with a one-line note."""
    from types import SimpleNamespace

    import torch
    from PIL import Image, PngImagePlugin
    from tqdm import tqdm

    from .farm.client import DefaultLocalRunner, render
    from .farm.jobs import FarmJob, ModelSpec, Notice, Progress
    from .outputs import write_atomically

    spec = ModelSpec.for_path(str(model_path), dtype=args.dtype, prediction_type=args.prediction_type)
    # --vae / --unet files travel like the model: by SHA-256, shipped once, .safetensors only.
    vae = ModelSpec.for_path(str(args.vae)) if args.vae else None
    unet = ModelSpec.for_path(str(args.unet)) if args.unet else None
    # The worker renders with this process's torch thread count, so the PNG equals a local one bit for bit.
    job = FarmJob(request, spec, preview_every_s=None, vae=vae, unet=unet,
                  threads=torch.get_num_threads())
    interrupted = {"flag": False}
    bars: list = []

    def on_event(event) -> None:
        if isinstance(event, Notice):
            print(f"note: {event.message}", file=sys.stderr)
        elif isinstance(event, Progress) and event.total:
            if not bars or bars[0].total != event.total or event.step < bars[0].n:  # a retry starts over
                for bar in bars:
                    bar.close()
                bars[:] = [tqdm(total=event.total, desc=f"sampling ({event.worker})", unit="step", file=sys.stderr,
                                mininterval=0.5)]
            bars[0].update(event.step - bars[0].n)

    previous = signal.signal(signal.SIGINT, lambda signum, frame: interrupted.update(flag=True))
    try:
        result = render(args.farm, job, on_event=on_event, should_stop=lambda: interrupted["flag"],
                        worker_cpus=args.farm_cpus, worker_gpus=args.farm_gpus,
                        local_runner=DefaultLocalRunner(device=_check_device(args.device)))
    finally:
        for bar in bars:
            bar.close()
        signal.signal(signal.SIGINT, previous)
    model = SimpleNamespace(name=model_path.name, file_hash=spec.content_hash[:10] if model_path.is_file() else "")
    info_text = PngImagePlugin.PngInfo()
    info_text.add_text("parameters", _parameters_text(args, request, model))
    write_atomically(out, lambda handle: Image.fromarray(result.image).save(handle, format="PNG", pnginfo=info_text))
    print(str(out))
    return 0


def _farm(args) -> int:
    """`farm start-local`: see inference/farm/local.py."""
    from .farm.errors import FarmUnavailableError
    from .farm.local import serve

    try:
        return serve(args.workers, args.port)
    except FarmUnavailableError as exc:
        raise InferenceError(str(exc)) from None


def _batch(args) -> int:
    """`batch PROMPTS --out DIR [--farm ADDRESS]`: see inference/farm/batch.py. Exit 0 when every
    item is there, 1 when some failed (each said in one line; the others are kept), 130 on Ctrl-C."""
    import os
    from types import SimpleNamespace

    import torch
    from PIL import Image, PngImagePlugin
    from tqdm import tqdm

    from .api import GenerationRequest, validate_request
    from .engine import Engine, ModelRef
    from .farm.batch import Manifest, SerialRunner, job_key, prepare_folder, read_prompts, run_batch
    from .farm.batch import connect as connect_farm
    from .farm.client import DefaultLocalRunner
    from .farm.jobs import FarmJob, ModelSpec, Notice
    from .outputs import write_atomically

    if args.farm_workers is not None and not 1 <= args.farm_workers <= 256:
        raise InferenceError(f"--farm-workers {args.farm_workers}: expected 1 to 256")
    items = read_prompts(args.prompts, args.seed)  # hostile files end here, before any loading
    folder = prepare_folder(args.out)
    model_path = Path(args.model) if args.model else house_model_path()
    if not model_path.exists():
        raise InferenceError(f"{model_path}: no such model" if args.model else
                             "no --model given and the house model is not installed (assets/house/full)")
    device = _check_device(args.device)
    engine = Engine(device)
    ref = ModelRef(model_path, dtype=args.dtype, prediction_type=args.prediction_type)
    info = engine.info(ref)
    if not info.runnable:
        raise InferenceError(f"{model_path.name}: holds a {info.kind.replace('_', ' ')}, not a full checkpoint")
    settings, note = _settings(args, info)
    native = engine.native_resolution(ref)
    spec = ModelSpec.for_path(str(model_path), dtype=args.dtype, prediction_type=args.prediction_type)
    manifest = Manifest(folder)
    work, requests = [], {}
    for item in items:
        request = GenerationRequest(prompt=item.prompt, negative_prompt=args.negative, seed=item.seed,
                                    width=args.width or native, height=args.height or native, **settings)
        validate_request(request)
        # The client's thread count travels with the job: farm pixels equal a local render's.
        job = FarmJob(request, spec, preview_every_s=None, threads=torch.get_num_threads())
        key = job_key(job)
        requests[item.name] = request
        if not manifest.finished(item.name, key):
            work.append((job, item.name, key))
    for line in ([f"note: {note}"] if note else []) + ([f"note: {manifest.note}"] if manifest.note else []):
        print(line, file=sys.stderr)
    done_before = len(items) - len(work)
    if not work:  # nothing to render: the farm is not even contacted
        print(f"{len(items)} of {len(items)} images already in {folder}", file=sys.stderr)
        return 0
    model = SimpleNamespace(name=model_path.name, file_hash=spec.content_hash[:10] if model_path.is_file() else "")

    def save(path: Path, result, job) -> None:
        text = PngImagePlugin.PngInfo()
        text.add_text("parameters", _parameters_text(args, job.request, model))
        write_atomically(path, lambda handle: Image.fromarray(result.image).save(handle, format="PNG", pnginfo=text))

    if args.farm and args.farm.split(":")[0] in ("127.0.0.1", "localhost") and "ray" not in sys.modules:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # a local head: Ray must not swap in the LAN address
    runner = SerialRunner(DefaultLocalRunner(device=device))
    farm, notice = connect_farm(args.farm, args.farm_workers, worker_cpus=args.farm_cpus,
                                worker_gpus=args.farm_gpus, local_runner=runner)
    if notice and args.farm:
        print(f"note: {notice}", file=sys.stderr)
    interrupted = {"flag": False}
    previous = signal.signal(signal.SIGINT, lambda signum, frame: interrupted.update(flag=True))
    where = f"{len(farm.worker_names())} farm workers" if farm.address else "here"
    bar = tqdm(total=len(items), initial=done_before, desc=f"batch ({where})", unit="image", file=sys.stderr)

    def on_done(name: str, error: str | None) -> None:
        if error is None:
            bar.update(1)
        else:
            bar.write(f"error: {name}: {error}", file=sys.stderr)

    def on_event(event) -> None:
        if isinstance(event, Notice):
            bar.write(f"note: {event.message}", file=sys.stderr)

    try:
        with farm:
            outcome = run_batch(farm, work, folder, save, manifest, on_done=on_done, on_event=on_event,
                                should_stop=lambda: interrupted["flag"])
    finally:
        bar.close()
        signal.signal(signal.SIGINT, previous)
    written = done_before + len(outcome.rendered)
    if outcome.cancelled:
        print(f"interrupted: {written} of {len(items)} images in {folder}; run the same command again to "
              "finish", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"{written} of {len(items)} images in {folder} ({len(outcome.rendered)} rendered in "
          f"{outcome.elapsed_s:.1f} s" + (f", {len(outcome.failed)} failed" if outcome.failed else "") + ")",
          file=sys.stderr)
    return 1 if outcome.failed else 0


def _inspect(args) -> int:
    from dataclasses import asdict

    from .api import read_model_info
    from .loader import inspect_model

    info = read_model_info(args.path, args.prediction_type)
    if info.kind == "lora":
        from .lora.formats import inspect_lora

        print(json.dumps(inspect_lora(args.path), indent=2, default=str))
        return 0
    if (info.family or "").startswith("flux") and Path(args.path).is_file():
        # A FLUX transformer file (BFL/ComfyUI layout, fp8 or GGUF): its own report, with the
        # quantisation and the companion files (ae, clip_l, t5xxl) found beside it.
        from .flux.file_info import inspect_flux_file

        print(json.dumps(inspect_flux_file(args.path), indent=2, default=str))
        return 0
    report = inspect_model(args.path, args.prediction_type)
    # The torch-free facts the editor and the CLI plan with, next to the loader's key report.
    report.update(native_resolution=info.native_resolution, latent_channels=info.latent_channels,
                  latent_scaling_factor=info.latent_scaling_factor, latents_mean=info.latents_mean,
                  latents_std=info.latents_std, scheduler_class=info.scheduler_class,
                  recommended=asdict(info.preset) if info.preset else None, warnings=list(info.warnings))
    print(json.dumps(report, indent=2))
    return 0


def _bench(args) -> int:
    from .bench import run_bench, write_report

    _check_device(args.device)
    if args.runs < 1 or args.warmup < 0:
        raise InferenceError(f"--runs {args.runs} / --warmup {args.warmup}: need runs ≥ 1 and warmup ≥ 0")
    if args.compare == "diffusers":
        try:
            import diffusers  # noqa: F401
        except ImportError:
            raise InferenceError("--compare diffusers needs the test extra: pip install -e '.[test]'") from None
    cases = [c.strip() for c in args.cases.split(",")] if args.cases else None
    report = run_bench(device=args.device, quick=args.quick, compare=args.compare, runs=args.runs,
                       warmup=args.warmup, cases=cases, dtype=args.dtype,
                       log=lambda line: print(line, file=sys.stderr))
    write_report(report, args.json_out)
    print(json.dumps(report, indent=2))
    return 0


def _prompt_loras(args) -> tuple[str, tuple]:
    """--prompt without its <lora:NAME:W> tags, and the tags resolved against --lora-dir."""
    from .library import ModelLibrary
    from .lora.prompt import extract_loras, resolve_loras

    prompt, tags = extract_loras(args.prompt)
    if not tags:
        return args.prompt, ()
    if not args.lora_dir:
        raise InferenceError(f"--prompt names LoRA {tags[0][0]!r}: give the folder it is in with --lora-dir")
    return prompt, resolve_loras(tags, ModelLibrary.scan(args.lora_dir, _library_cache()))


def _library_cache() -> Path:
    from .library import default_cache_path

    return default_cache_path()


def _library(args) -> int:
    from .library import ModelLibrary

    for folder in args.dirs:
        if not Path(folder).is_dir():
            raise InferenceError(f"library {folder}: no such folder")
    library = ModelLibrary.scan(args.dirs, args.cache or _library_cache())
    entries = library.filter(kind=args.kind, family=args.family, search=args.search)
    if args.hashes:
        for entry in entries:
            library.short_hash(entry)
    chosen = {id(e) for e in entries}
    print(json.dumps([row for e, row in zip(library.entries, library.to_json()) if id(e) in chosen], indent=2))
    return 0


def _convert(args) -> int:
    from .formats.pickle_checkpoint import convert_pickle_to_safetensors
    from .outputs import check_destination

    check_destination(args.dst, ".safetensors")  # before the (slow) load of the source
    report = convert_pickle_to_safetensors(args.src, args.dst)
    print(json.dumps({"written": str(args.dst), **{k: v for k, v in vars(report).items() if k != "dst"}}, default=str))
    return 0


def _download(args) -> int:
    """`download URL --to DIR`: a tqdm bar on stderr, one JSON line on stdout; Ctrl-C keeps the
    partial file (`DIR/.NAME.part`) and the same command resumes it."""
    from tqdm import tqdm

    from .download import download_file

    bars: list = []

    def progress(done: int, total: int | None) -> None:
        if not bars or bars[0].total != total:  # the size is known only once the server answers
            for bar in bars:
                bar.close()
            bars[:] = [tqdm(total=total, initial=done, desc="downloading", unit="B", unit_scale=True,
                            unit_divisor=1024, file=sys.stderr, mininterval=0.5)]
        bars[0].update(done - bars[0].n)  # negative when a server ignoring Range makes it restart

    try:
        result = download_file(args.url, args.to, sha256=args.sha256, filename=args.name, progress=progress)
    except CancelledError as exc:  # also Ctrl-C: download_file turns it into a cancel
        result, cancelled = None, exc
    finally:
        for bar in bars:  # before any message, so an error line starts on a line of its own
            bar.close()
    if result is None:
        print(f"interrupted: {cancelled}", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(json.dumps({"written": str(result.path), "sha256": result.sha256, "bytes": result.size,
                      "resumed_from": result.resumed_from}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    parser.__class__ = _Parser
    for action in parser._subparsers._group_actions:  # noqa: SLF001 - make subparsers one-line too
        for sub in action.choices.values():
            sub.__class__ = _Parser
    try:
        args = parser.parse_args(argv)
        handler = {"inspect": _inspect, "generate": _generate, "convert": _convert, "bench": _bench,
                   "library": _library, "download": _download,
                   "batch": _batch, "farm": _farm}[args.command]
        return handler(args)
    except _ArgumentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except CancelledError:
        print("interrupted: nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except InferenceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
