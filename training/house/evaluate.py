"""Evaluation of the shipped house models on held-out prompts (attribute combinations never trained on).

* adherence — per attribute group, the share of images whose pixel rules (`rules.py`) read back the
  prompted value; the same rules' accuracy on the generator's own renders is reported as the ceiling,
  and on those renders passed through the shipped VAE (encode → decode) as the ceiling of a perfect
  UNet, since every generated image is decoded by that VAE;
* coherence — final = img2img of the one-step preview (same seed, strength 0.5, full model): median
  SSIM of the two at 32×32 grey;
* seams — inpainting (latent blending, 4-channel UNet, seam-corrected feathered paste-back): mean
  |grad| on a 3-px band along the mask boundary (1 px outside, 2 px inside) ÷ mean |grad| of the
  untouched image; and whether pixels outside are identical. The same ratio of the untouched image
  itself is reported as the floor: a band that crosses the scene's own edges cannot score below it;
* outpainting — a 128² scene extended to 192×128 with the engine's recipe (`inference.outpaint`:
  edge-stretch pre-fill, strength `OUTPAINT_STRENGTH`): horizon row in the 32 px left vs right of the
  seam, success when they differ ≤ 4 px (also reported with the previous, edge-step horizon rule,
  `rules.edge_horizon_row`, for comparison with older figures); and the seam energy of the same 3-px band along the seam
  (÷ the untouched scene's mean |grad|).
"""
from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import torch

from inference.images import rgb_to_tensor, tensor_to_rgb
from inference.loader import load_model
from inference.outpaint import DEFAULT_STRENGTH as OUTPAINT_STRENGTH
from inference.outpaint import RAMP_PX, SEAM_CHANGE, outpaint_request
from inference.pipeline import GenerationRequest, Pipeline

from . import configs
from .captions import held_out_prompts
from .rules import adherence, edge_horizon_row, horizon_row, read_attributes, read_time
from .scene import render_scene


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Global-window-free SSIM (Gaussian 7×7 windows) of two grey images in [0, 255]."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    blur = lambda x: cv2.GaussianBlur(x, (7, 7), 1.5)  # noqa: E731
    ma, mb = blur(a), blur(b)
    va, vb, cov = blur(a * a) - ma ** 2, blur(b * b) - mb ** 2, blur(a * b) - ma * mb
    s = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2))
    return float(s.mean())


def small_grey(img: np.ndarray, size: int = 32) -> np.ndarray:
    return cv2.resize(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), (size, size), interpolation=cv2.INTER_AREA)


def grad_mag(img: np.ndarray) -> np.ndarray:
    g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gx, gy = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    return np.hypot(gx, gy)


def seam_band(mask: np.ndarray) -> np.ndarray:
    """bool: the 3-px band along the mask boundary — 1 px outside, 2 px inside."""
    inside = (mask >= 128).astype(np.uint8)
    return (cv2.dilate(inside, np.ones((3, 3), np.uint8)) - cv2.erode(inside, np.ones((5, 5), np.uint8))) > 0


def seam_energy(result: np.ndarray, original: np.ndarray, mask: np.ndarray) -> float:
    return float(grad_mag(result)[seam_band(mask)].mean() / max(grad_mag(original).mean(), 1e-6))


def horizon_step_at(img: np.ndarray, x: int, time: str, rule=horizon_row) -> int:
    """How many rows the horizon rule's reading jumps between the 32-px strips either side of column x."""
    return abs(rule(img[:, x - 32:x], time) - rule(img[:, x:x + 32], time))


@torch.no_grad()
def vae_roundtrip(vae, images: list[np.ndarray], batch: int = 16) -> list[np.ndarray]:
    """Encode (posterior mean) and decode uint8 RGB images with a house VAE: what a UNet that drew
    the scene perfectly in latent space would show after decoding (the engine's own conversions)."""
    out = []
    for i in range(0, len(images), batch):
        x = torch.cat([rgb_to_tensor(img, torch.device("cpu"), vae.dtype) for img in images[i:i + batch]])
        mean, _ = vae.encode_moments(x)
        decoded = vae.decode(mean)
        out += [tensor_to_rgb(decoded[k:k + 1]) for k in range(len(decoded))]
    return out


def _mean(values) -> float:
    return round(float(np.mean(values)), 4) if len(values) else float("nan")


ADHERENCE_SEED = 1000  # held-out prompt i is generated (and its truth rendered) with seed 1000 + i


def tally(hits: dict[str, list[bool]], attrs: dict[str, str], img: np.ndarray) -> None:
    """Add the rules' verdict per attribute group on `img` (prompted with `attrs`) to `hits`."""
    for group, ok in adherence(attrs, read_attributes(img)).items():
        hits.setdefault(group, []).append(ok)


def group_accuracy(hits: dict[str, list[bool]], with_mean: bool = True) -> dict[str, float]:
    """Share of hits per group, and (with `with_mean`) the mean over the groups."""
    groups = {g: _mean(v) for g, v in hits.items()}
    return {**groups, "mean": _mean(list(groups.values()))} if with_mean else groups


def held_out_truths(prompts: int) -> list[tuple[dict, np.ndarray]]:
    """The generator's renders of the held-out prompts, with the seeds the evaluation uses."""
    size = configs.RESOLUTION
    return [(attrs, render_scene(attrs, size, size, ADHERENCE_SEED + i)[0])
            for i, (attrs, _) in enumerate(held_out_prompts(prompts))]


def decoded_truth_accuracy(vae, truths: list[tuple[dict, np.ndarray]]) -> dict[str, float]:
    """The rules' accuracy per group (and mean) on the renders passed through `vae`: the ceiling of
    a UNet that drew every scene perfectly, which judges a decoder before it ships."""
    hits: dict[str, list[bool]] = {}
    for (attrs, _), img in zip(truths, vae_roundtrip(vae, [img for _, img in truths])):
        tally(hits, attrs, img)
    return group_accuracy(hits)


def load_vae(source: str | Path):
    """A house VAE from a shipped folder (its `full/`) or from a training run's `vae.pt`."""
    source = Path(source)
    if source.suffix == ".pt":
        from inference.models.vae import AutoencoderKL
        from .checkpoint import entry, load_checkpoint, load_state

        checkpoint = load_checkpoint(source, required=True)  # weights-only: a crafted .pt runs nothing
        vae = AutoencoderKL(configs.VAE)
        load_state(vae, entry(checkpoint, "model", source), source, "model")
        return vae.eval()
    return load_model(source / "full", dtype="float32").vae


def evaluate(models: str | Path = "assets/house", prompts: int = 144, threads: int | None = None,
             inpaint_cases: int = 144, outpaint_strength: float = OUTPAINT_STRENGTH) -> dict:
    if threads:
        torch.set_num_threads(threads)
    models = Path(models)
    full_model = load_model(models / "full", dtype="float32")
    full = Pipeline(full_model)
    preview = Pipeline(load_model(models / "preview", dtype="float32"))
    size = configs.RESOLUTION
    cases = held_out_prompts(prompts)
    hits_full: dict[str, list[bool]] = {}
    hits_prev: dict[str, list[bool]] = {}
    ceiling: dict[str, list[bool]] = {}
    truths: list[tuple[dict, np.ndarray]] = []
    coherence = []
    start = time.time()
    for i, (attrs, prompt) in enumerate(cases):
        seed = ADHERENCE_SEED + i
        img_full = full.generate(GenerationRequest(prompt, seed=seed, steps=configs.FULL_STEPS,
                                                   guidance=configs.FULL_GUIDANCE, width=size, height=size)).image
        img_prev = preview.generate(GenerationRequest(prompt, seed=seed, steps=1, guidance=0.0,
                                                      width=size, height=size)).image
        final = full.generate(GenerationRequest(prompt, seed=seed, steps=configs.FULL_STEPS,
                                                guidance=configs.FULL_GUIDANCE, width=size, height=size,
                                                init_image=img_prev, strength=0.5)).image
        coherence.append(ssim(small_grey(img_prev), small_grey(final)))
        truth_img, _ = render_scene(attrs, size, size, seed)
        truths.append((attrs, truth_img))
        for store, img in ((hits_full, img_full), (hits_prev, img_prev), (ceiling, truth_img)):
            tally(store, attrs, img)
    vae_adh = decoded_truth_accuracy(full_model.vae, truths)
    seams, floors, identical, continuity, hz_diffs, out_seams, prefill_continuity = [], [], [], [], [], [], []
    edge_rule_continuity = []
    for j, (attrs, prompt) in enumerate(cases[:inpaint_cases]):
        seed = 5000 + j
        scene, truth = render_scene(attrs, size, size, seed)
        rng = np.random.default_rng(seed)
        mask = np.zeros((size, size), np.uint8)
        x0, y0 = int(rng.integers(16, 64)), int(rng.integers(16, 64))
        mask[y0:y0 + 48, x0:x0 + 48] = 255
        out = full.generate(GenerationRequest(prompt, seed=seed, steps=configs.FULL_STEPS, guidance=configs.FULL_GUIDANCE,
                                              width=size, height=size, init_image=scene, mask=mask)).image
        seams.append(seam_energy(out, scene, mask))
        floors.append(seam_energy(scene, scene, mask))
        identical.append(bool((out[mask < 128] == scene[mask < 128]).all()))
        # Outpainting: extend to the right by 64 px.
        base = GenerationRequest(prompt, seed=seed, steps=configs.FULL_STEPS, guidance=configs.FULL_GUIDANCE)
        extend = outpaint_request(base, scene, right=64, strength=outpaint_strength)
        out = full.generate(extend).image
        out_seams.append(seam_energy(out, scene, extend.mask))
        time_of_day = read_time(out)
        diff = horizon_step_at(out, size, time_of_day)
        hz_diffs.append(diff)
        continuity.append(diff <= 4)
        edge_rule_continuity.append(horizon_step_at(out, size, time_of_day, edge_horizon_row) <= 4)
        # Control: the same rule on the untouched pre-fill (what the model starts from), an exact
        # copy of the border column: a rule that reads the ground line scores it near 1.
        prefill_continuity.append(horizon_step_at(extend.init_image, size, time_of_day) <= 4)
    return {
        "held_out_prompts": len(cases),
        "adherence_full": group_accuracy(hits_full),
        "adherence_one_step": group_accuracy(hits_prev),
        "rule_accuracy_on_ground_truth": group_accuracy(ceiling, with_mean=False),
        "rule_accuracy_on_vae_decoded_ground_truth": vae_adh,
        "coherence_ssim32_median": round(float(np.median(coherence)), 4),
        "inpaint_seam_energy_mean": _mean(seams),
        "inpaint_seam_energy_floor": _mean(floors),
        "inpaint_outside_identical": all(identical),
        "outpaint_horizon_continuity": _mean(continuity),
        "outpaint_horizon_diff_px": [int(d) for d in hz_diffs],
        "outpaint_horizon_continuity_of_the_prefill": _mean(prefill_continuity),
        "outpaint_horizon_continuity_edge_rule": _mean(edge_rule_continuity),
        "outpaint_seam_energy_mean": _mean(out_seams),
        "inpainting_method": "latent blending (4-channel UNet) + seam-corrected feathered paste-back",
        "outpainting_method": f"edge-stretch pre-fill, strength {outpaint_strength}, soft seam "
                              f"(change {SEAM_CHANGE} at the seam, ramp {RAMP_PX} px)",
        "seconds": round(time.time() - start, 1),
    }
