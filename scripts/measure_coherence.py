"""Measure preview → final coherence on the editor's real default path (no Qt).

For each case an ``AISession`` (the state machine the Qt controller adapts) is
set up exactly as the controller sets it up with the house models: the final
model's steps/guidance from ``house.json``, the preview model's own steps and
guidance for Live. Live renders the frame (the live preview), then
``generate()`` runs what the Generate button runs: the refine of that preview
(same seed, defaults). The preview layer and the staged final are composed
over the document as the canvas shows them and compared with
``editor.ai.coherence`` over the area the result layer covers.

    python scripts/measure_coherence.py --json OUT.json [--strength 0.5 0.3 ...] [--cases 6] [--save DIR]

``--strength`` overrides the refine strength (``session.REFINE_STRENGTH``) to
sweep it; without it the editor's default is measured.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from editor.ai import catalog  # noqa: E402
from editor.ai import session as session_module  # noqa: E402
from editor.ai.coherence import Coherence, compare  # noqa: E402
from editor.ai.frame import GenerationFrame  # noqa: E402
from editor.ai.modes import EditMode  # noqa: E402
from editor.ai.request import EditRequest, GeneratedImage  # noqa: E402
from editor.ai.session import AISession  # noqa: E402
from editor.document import Document, Rect  # noqa: E402
from editor.document.selection import ellipse_mask  # noqa: E402

MODES = ("txt2img", "img2img", "inpaint", "outpaint")
SIDE = 128  # the house model's native size: one model pass per frame, no resampling
TIMEOUT_S = 120.0
SSIM_MIN = 0.8  # the product threshold (issue 20)


@dataclass
class Case:
    mode: str
    index: int
    prompt: str
    seed: int
    scene: Optional[np.ndarray]  # RGB document content (None: a new white document)
    scene_seed: int
    attrs: Optional[dict] = None  # what the prompt asks for (the house rules read it back)


def _prompts(count: int, seed: int) -> list[tuple[dict, str]]:
    from training.house.captions import held_out_prompts

    return held_out_prompts(count, seed=seed)


def _scene(seed: int) -> tuple[np.ndarray, dict]:
    from training.house.scene import random_scene

    image, truth = random_scene(seed, SIDE, SIDE)
    return np.asarray(image)[..., :3].astype(np.uint8), getattr(truth, "attrs", {})


def build_cases(per_mode: int, case_set: int = 0) -> list[Case]:
    """``per_mode`` cases of each mode, each with its own prompt, seed and document. ``case_set``
    picks disjoint prompts, seeds and documents (0 is the set the defaults were tuned on; report
    held-out sets 1, 2, ... beside it)."""
    prompts = _prompts(per_mode * len(MODES), seed=2020 + case_set)
    cases = []
    for m, mode in enumerate(MODES):
        for i in range(per_mode):
            k = m * per_mode + i
            prompt = prompts[k][1]
            scene_seed = 9000 + k + 100_000 * case_set
            scene = None if mode == "txt2img" else _scene(scene_seed)[0]
            seed = 1000 + 37 * k + 1_000_003 * case_set
            cases.append(Case(mode, i, prompt, seed=seed, scene=scene, scene_seed=scene_seed, attrs=prompts[k][0]))
    return cases


def make_document(case: Case) -> tuple[Document, GenerationFrame]:
    doc = Document(SIDE, SIDE)
    pixels = np.full((SIDE, SIDE, 4), 255, np.uint8)  # a new white document
    if case.scene is not None:
        pixels[..., :3] = case.scene
    doc.add_layer_from_image(pixels, 0, 0, name="background")
    frame = GenerationFrame(0, 0, SIDE, SIDE)
    if case.mode == "inpaint":
        rng = np.random.default_rng(case.scene_seed)
        w, h = (int(v) for v in rng.integers(40, 72, size=2))
        x, y = int(rng.integers(8, SIDE - w - 8)), int(rng.integers(8, SIDE - h - 8))
        doc.set_selection(ellipse_mask(SIDE, SIDE, Rect(x, y, w, h)))
    elif case.mode == "outpaint":
        frame = GenerationFrame(SIDE // 2, 0, SIDE, SIDE)  # half past the right edge
    return doc, frame


class Pump:
    """Worker reports queued and run on this thread, as the Qt adapter's queued signals do."""

    def __init__(self) -> None:
        self.events: list = []

    def post(self, handler, *args) -> None:
        self.events.append((handler, args))

    def until(self, done, timeout: float = TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while self.events:
                handler, args = self.events.pop(0)
                handler(*args)
            if done():
                return
            time.sleep(0.002)
        raise TimeoutError("the session did not finish in time")


def house_engine():
    """One TorchEngine over both house models, as the controller's catalog builds it."""
    from editor.ai.engine import TorchEngine

    entries = [catalog.resolve(catalog.HOUSE_PREVIEW), catalog.resolve(catalog.HOUSE_FULL)]
    for entry in entries:
        if not entry.available:
            raise SystemExit(entry.problem)
    return TorchEngine(catalog.engine_specs(entries, resident=[catalog.HOUSE_PREVIEW])), entries


def on_canvas(image: GeneratedImage, doc: Document) -> np.ndarray:
    """The image as the canvas shows it: the layer over the document (transparent → white)."""
    under = doc.render(image.rect).astype(np.float32)
    alpha_doc = under[..., 3:4] / 255.0
    base = under[..., :3] * alpha_doc + 255.0 * (1.0 - alpha_doc)
    a = image.rgba[..., 3:4].astype(np.float32) / 255.0
    return np.clip(image.rgba[..., :3].astype(np.float32) * a + base * (1.0 - a) + 0.5, 0, 255).astype(np.uint8)


def covered(image: GeneratedImage) -> tuple[slice, slice]:
    """Bounding box of the pixels the result layer paints (inpaint: the selection, not its context)."""
    ys, xs = np.nonzero(image.rgba[..., 3] > 0)
    return slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1)


def save_pair(folder: Path, case: Case, preview: np.ndarray, final: np.ndarray) -> Path:
    """preview | final | ΔE map (white = ΔE ≥ 50), 2× nearest-neighbour, for looking at a case."""
    from PIL import Image

    from editor.ai.coherence import delta_e_map

    diff = np.clip(delta_e_map(preview, final) * (255.0 / 50.0), 0, 255).astype(np.uint8)
    strip = np.concatenate([preview, final, np.repeat(diff[..., None], 3, axis=2)], axis=1)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{case.mode}-{case.index}.png"
    Image.fromarray(strip).resize((strip.shape[1] * 2, strip.shape[0] * 2), Image.NEAREST).save(path)
    return path


def adherence_share(attrs: dict, rgb: np.ndarray) -> float:
    """Share of the prompt's attribute groups the house rules read back from a txt2img picture
    (training/house/rules.py): what the final adds over the preview, beside how much it changes."""
    from training.house.rules import adherence, read_attributes

    verdicts = adherence(attrs, read_attributes(rgb))
    return sum(verdicts.values()) / len(verdicts)


def run_case(engine, entries, case: Case, save: Optional[Path] = None,
             bound: Optional[float] = None) -> tuple[Coherence, dict]:
    """One case on the default path; ``bound`` overrides the final model's refine bound (0: none)."""
    preview_entry, final_entry = entries
    pump = Pump()
    doc, frame = make_document(case)
    request = EditRequest(frame=Rect(0, 0, 8, 8), prompt=case.prompt, seed=case.seed,
                          steps=final_entry.steps or 20,
                          guidance=final_entry.guidance if final_entry.guidance is not None else 7.0,
                          preview_model=preview_entry.id, final_model=final_entry.id)
    ai = AISession(doc, request, post=pump.post, engine_for=lambda _ids: (engine, ""),
                   preview_settings=lambda _m: (preview_entry.steps or catalog.DEFAULT_PREVIEW_STEPS,
                                                preview_entry.guidance),
                   partial_denoise=lambda _m: preview_entry.partial_denoise,
                   refine_bound=lambda _m: final_entry.refine_bound if bound is None else bound)
    try:
        ai.set_frame(frame)
        ai.poll()
        assert ai.set_live(True)
        pump.until(lambda: ai.live_image is not None and ai.live.idle)
        preview = ai.live_image
        mode = ai.live.last_frame.plan.mode
        if mode.value != EditMode(case.mode).value:
            raise AssertionError(f"case {case.mode}/{case.index} was planned as {mode.value}")
        started = time.perf_counter()
        job = ai.generate()
        if job is None or not ai.refining:
            raise AssertionError("Generate did not refine the preview")
        strength = job.plan.strength
        shown = ai.live.last_frame
        pump.until(lambda: ai.final_job is None)
        final_s = time.perf_counter() - started
        final = ai.staging.current
        if final is None:
            raise AssertionError(f"no result: {ai.last_error}")
        if final.rect != preview.rect:
            raise AssertionError(f"final {final.rect} and preview {preview.rect} differ in place")
        area = covered(final)
        seen, made = on_canvas(preview, doc)[area], on_canvas(final, doc)[area]
        result = compare(seen, made)
        if save is not None:
            save_pair(save, case, seen, made)
        extra = {}
        if case.mode == "txt2img" and case.attrs:
            extra = {"adherence_preview": adherence_share(case.attrs, seen),
                     "adherence_final": adherence_share(case.attrs, made)}
        return result, {**extra,"strength": strength, "guidance": job.plan.request.guidance, "final_s": round(final_s, 3),
                        "preview_by": "final" if shown.plan.model_id == final_entry.id else "preview",
                        "preview_s": round(shown.compute_time, 4)}
    finally:
        ai.close_service()


def summarise(rows: list[dict]) -> dict:
    def agg(items: list[dict]) -> dict:
        return {
            "cases": len(items),
            "ssim": round(float(np.mean([r["ssim"] for r in items])), 4),
            "ssim_min": round(float(np.min([r["ssim"] for r in items])), 4),
            "delta_e": round(float(np.mean([r["delta_e"] for r in items])), 2),
            "mean_abs_rgb": round(float(np.mean([r["mean_abs_rgb"] for r in items])), 2),
            "new_blobs": round(float(np.mean([r["new_blobs"] for r in items])), 3),
            "new_blobs_total": int(np.sum([r["new_blobs"] for r in items])),
            "sharpness_preview": round(float(np.mean([r["sharpness_preview"] for r in items])), 1),
            "sharpness_final": round(float(np.mean([r["sharpness_final"] for r in items])), 1),
            "sharper_final_share": round(float(np.mean([r["sharpness_final"] > r["sharpness_preview"]
                                                        for r in items])), 3),
            "preview_s_median": round(float(np.median([r.get("preview_s", 0.0) for r in items])), 4),
            "preview_by_final": int(sum(r.get("preview_by") == "final" for r in items)),
        }

    out = {mode: agg([r for r in rows if r["mode"] == mode]) for mode in MODES if any(r["mode"] == mode for r in rows)}
    scored = [r for r in rows if "adherence_final" in r]
    if scored and "txt2img" in out:
        out["txt2img"]["adherence_preview"] = round(float(np.mean([r["adherence_preview"] for r in scored])), 3)
        out["txt2img"]["adherence_final"] = round(float(np.mean([r["adherence_final"] for r in scored])), 3)
    out["overall"] = agg(rows)
    out["meets"] = all(v["ssim"] >= SSIM_MIN and v["new_blobs"] == 0 for v in out.values() if isinstance(v, dict))
    return out


TUNABLES = ("REFINE_STRENGTH", "REFINE_GUIDANCE", "REFINE_HOLD", "REFINE_STRUCTURE_SCALE", "PARTIAL_PREVIEW_STEPS")


def measure(per_mode: int, strength: Optional[float] = None, threads: int = 2,
            guidance: Optional[float] = None, save: Optional[Path] = None, case_set: int = 0,
            bound: Optional[float] = None, **overrides) -> dict:
    """Run the cases; ``strength``/``guidance`` override the refine's (None: the editor's default), as
    do ``overrides`` (session constants by lower-case name: hold=, structure_scale=, partial_preview_steps=;
    bound= replaces the final model's refine bound, 0 for none)."""
    import torch

    torch.set_num_threads(threads)
    saved = {name: getattr(session_module, name) for name in TUNABLES}
    default = saved["REFINE_STRENGTH"]
    if strength is not None:
        session_module.REFINE_STRENGTH = float(strength)
    if guidance is not None:
        session_module.REFINE_GUIDANCE = float(guidance)
    for key, value in overrides.items():
        name = {"hold": "REFINE_HOLD", "structure_scale": "REFINE_STRUCTURE_SCALE"}.get(key, key.upper())
        if name not in TUNABLES:
            raise ValueError(f"unknown setting {key!r}")
        if value is not None:
            setattr(session_module, name, value)
    settings = {name.lower(): getattr(session_module, name) for name in TUNABLES}
    started = time.perf_counter()
    try:
        engine, entries = house_engine()
        settings["refine_bound"] = entries[1].refine_bound if bound is None else float(bound)
        rows = []
        for case in build_cases(per_mode, case_set):
            result, extra = run_case(engine, entries, case, save if save is None or not case_set
                                     else save / f"set{case_set}", bound)
            rows.append({"mode": case.mode, "index": case.index, "prompt": case.prompt, "seed": case.seed,
                         **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.as_dict().items()},
                         **extra})
        used_guidance = rows[0]["guidance"] if rows else None
    finally:
        for name, value in saved.items():
            setattr(session_module, name, value)
    return {"refine_strength": settings["refine_strength"], "refine_guidance": used_guidance,
            "default_strength": default, "settings": settings, "case_set": case_set, "summary": summarise(rows),
            "cases": rows,
            "runtime_s": round(time.perf_counter() - started, 1)}


MAX_CASES = 200  # per mode; a run of 96 cases takes about 80 s on two threads
MAX_CASE_SET = 1000  # keeps every case's seed a 32-bit number


def _outside(values, low: float, high: float) -> Optional[float]:
    """The first of ``values`` not within [low, high] (NaN included), else None."""
    return next((v for v in values or () if not low <= v <= high), None)


def check_args(args: argparse.Namespace) -> str:
    """What is wrong with the command line, in one line ("" when nothing is): checked before any
    model loads, so a bad value costs no run."""
    from inference.api import MAX_GUIDANCE, MAX_STEPS, MAX_STRUCTURE_BOUND

    ranges = (("--strength", args.strength, 0.0, 1.0), ("--guidance", args.guidance, 0.0, MAX_GUIDANCE),
              ("--hold", args.hold, 0.0, 1.0), ("--structure-scale", args.structure_scale, 0, 64),
              ("--bound", args.bound, 0.0, MAX_STRUCTURE_BOUND), ("--case-set", args.case_set, 0, MAX_CASE_SET),
              ("--cases", [args.cases], 1, MAX_CASES), ("--threads", [args.threads], 1, 256),
              ("--partial-steps", [] if args.partial_steps is None else [args.partial_steps], 1, MAX_STEPS))
    for flag, values, low, high in ranges:
        bad = _outside(values, low, high)
        if bad is not None:
            return f"{flag} {bad:g} must be between {low:g} and {high:g}"
    if args.strength is not None and 0.0 in args.strength:
        return "--strength 0 would not refine at all: give a share above 0"
    if args.save is not None and args.save.exists() and not args.save.is_dir():
        return f"--save {args.save} is a file, not a folder"
    if args.json and Path(args.json).is_dir():
        return f"--json {args.json} is a folder, not a file"
    if args.json and not Path(args.json).resolve().parent.is_dir():
        return f"--json {args.json}: its folder does not exist"
    return ""


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--cases", type=int, default=6, help="cases per mode (default 6: 24 in all)")
    parser.add_argument("--strength", type=float, nargs="*", help="refine strengths to sweep (default: the editor's)")
    parser.add_argument("--guidance", type=float, nargs="*", help="refine guidances to sweep (default: the editor's)")
    parser.add_argument("--hold", type=float, nargs="*", help="refine hold shares to sweep (default: the editor's)")
    parser.add_argument("--structure-scale", type=int, nargs="*", help="refine ILVR scales to sweep")
    parser.add_argument("--bound", type=float, nargs="*", help="refine latent-change bounds to sweep (0: none)")
    parser.add_argument("--partial-steps", type=int, help="steps of the final model's canvas-start live frames")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--case-set", type=int, nargs="*", default=[0],
                        help="case sets (0: the tuning set; 1, 2, ...: held out)")
    parser.add_argument("--save", type=Path, help="write preview | final | ΔE strips per case to this folder")
    args = parser.parse_args(argv)
    problem = check_args(args)
    if problem:
        print(f"measure_coherence: {problem}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    runs = [measure(args.cases, s, args.threads, g, save=args.save, case_set=c, hold=h, structure_scale=k, bound=b,
                    partial_preview_steps=args.partial_steps)
            for g in (args.guidance or [None]) for s in (args.strength or [None]) for h in (args.hold or [None])
            for k in (args.structure_scale or [None]) for b in (args.bound or [None]) for c in args.case_set]
    for run in runs:
        print(f"case set {run['case_set']}, refine {run['settings']} ({run['runtime_s']} s)", flush=True)
        for mode, v in run["summary"].items():
            if isinstance(v, dict):
                print(f"  {mode:9s} n={v['cases']:2d} ssim={v['ssim']:.3f} (min {v['ssim_min']:.3f}) "
                      f"dE={v['delta_e']:.2f} |dRGB|={v['mean_abs_rgb']:.2f} blobs={v['new_blobs']:.2f} "
                      f"sharpness {v['sharpness_preview']:.0f} -> {v['sharpness_final']:.0f} "
                      f"(final sharper in {v['sharper_final_share']:.0%})")
        t2i = run["summary"].get("txt2img", {})
        if "adherence_final" in t2i:
            print(f"  txt2img prompt adherence (house rules): preview {t2i['adherence_preview']:.3f} -> "
                  f"final {t2i['adherence_final']:.3f}")
        print(f"  meets SSIM >= {SSIM_MIN} and no new blobs in every mode: {run['summary']['meets']}")
    report = {"runs": runs, "runtime_s": round(time.perf_counter() - started, 1)}
    print(f"runtime {report['runtime_s']} s")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
