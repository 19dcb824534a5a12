"""Reproducible, resumable training of the house model: VAE → UNet + text encoder → preview distillation.

`python -m training.house train --out DIR [--minutes N] [--device cuda]`

Each stage gets a share of `--minutes` (VAE 20 %, UNet 55 %, distillation 25 %) and records the
seconds it has used in `DIR/state.json`; checkpoints (`vae.pt`, `unet.pt`, `preview.pt`: model,
EMA, optimiser, step) are written every `--save-every` minutes and at the end of a stage. Running
the same command again resumes; running it with a larger `--minutes` continues every stage whose
budget grew. Randomness is seeded per step, so a run is reproducible up to where the clock stops it.

Warm start (`--init FOLDER`, a shipped house folder such as `assets/house`): every stage starts
from those weights instead of from scratch. The VAE stage then fine-tunes the decoder only, with
the encoder frozen, so the latent space (and the UNet trained on it) stays valid — the same move as
SD's ft-MSE decoder; the latent scale is kept from the folder. The UNet and text encoder continue
from `full/`, the preview student from `preview/`. Learning rates decay on a cosine over each
stage's time budget, so a run ends on small steps whatever its length.

Part weighting (`--part-weighted`): the UNet's loss per latent cell is scaled by the same part
weights as the VAE's (objects, trees, sun/moon/stars), averaged over the cell's 8×8 pixels and
cached with the latents. Sky and ground fill ~90 % of a scene; under a plain mean they decide the
gradient, and the small parts the captions name come out as colourless blobs.

Preview distillation ("ODE-pair distillation", Luhman & Luhman 2021, extended to every img2img
start): the EMA teacher with CFG draws trajectories with 12 trailing Euler steps, whose grid
contains every timestep a one-step img2img can start from (999, 749, 666, 499, 332, 249). Each
trajectory point x_t is paired with the trajectory's end x_0, and the student (initialised from the
teacher) learns x_t → x_0 in one evaluation, without CFG. A quarter of each batch is real latents
noised to the same timesteps with their clean latent as target, which anchors img2img on real
images (whose noised latents lie slightly off the teacher's trajectories).
"""
from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from inference.models.clip_text import CLIPTextModel
from inference.models.unet import UNetModel
from inference.models.vae import AutoencoderKL
from inference.tokenizer import CLIPTokenizer, tokenize

from . import configs
from .captions import caption, training_attributes
from .checkpoint import load_checkpoint, save_checkpoint
from .scene import random_scene

SHARES = {"vae": 0.20, "unet": 0.55, "distill": 0.25}
TEACHER_STEPS = 12
ONE_STEP_TIMESTEPS = (999, 749, 666, 499, 332, 249)


# ----------------------------------------------------------------------------- schedule helpers
def alphas_cumprod() -> torch.Tensor:
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0).float()


def trailing_timesteps(steps: int) -> list[int]:
    return [int(t) for t in (np.round(np.arange(1000, 0, -1000 / steps)) - 1)[:steps]]


def v_to_x0(x_vp: torch.Tensor, v: torch.Tensor, t: torch.Tensor, ac: torch.Tensor) -> torch.Tensor:
    a = ac[t].sqrt().view(-1, 1, 1, 1)
    s = (1 - ac[t]).sqrt().view(-1, 1, 1, 1)
    return a * x_vp - s * v


# ----------------------------------------------------------------------------- state + checkpoints
class RunState:
    def __init__(self, out: Path):
        self.path = out / "state.json"
        self.data = json.loads(self.path.read_text()) if self.path.exists() else {"elapsed": {}, "steps": {}}

    def elapsed(self, stage: str) -> float:
        return float(self.data["elapsed"].get(stage, 0.0))

    def update(self, stage: str, elapsed: float, step: int, **extra) -> None:
        self.data["elapsed"][stage] = elapsed
        self.data["steps"][stage] = step
        self.data.update(extra)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        tmp.replace(self.path)


def save(path: Path, **items) -> None:
    """Atomic checkpoint write; only tensors and plain values, so `load` can stay weights-only."""
    save_checkpoint(path, **items)


def load(path: Path) -> dict | None:
    """A checkpoint of this run (None if absent), read with torch.load(weights_only=True)."""
    return load_checkpoint(path)


def ema_update(ema: torch.nn.Module, model: torch.nn.Module, step: int, max_decay: float = 0.999) -> None:
    decay = min(max_decay, (1 + step) / (10 + step))
    with torch.no_grad():
        for pe, pm in zip(ema.parameters(), model.parameters()):
            pe.lerp_(pm, 1 - decay)


def scene_batch(first_seed: int, count: int, size: int = configs.RESOLUTION,
                with_weights: bool = False):
    """`count` training scenes as a (-1..1) batch and their attributes; with `with_weights`, also a
    per-pixel loss weight that lifts the small parts (objects, trees, sun/moon/stars) over the large
    flat regions, which otherwise dominate a mean loss and leave the small parts colourless."""
    images, attrs, weights = [], [], []
    for k in range(count):
        img, truth = random_scene(first_seed + k, size, size, accept=training_attributes)
        images.append(img)
        attrs.append(truth.attrs)
        if with_weights:
            w = np.ones(img.shape[:2], np.float32)
            for part, gain in PART_WEIGHTS.items():
                if part in truth.masks:
                    w += gain * truth.masks[part]
            weights.append(w)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1
    if with_weights:
        return x, attrs, torch.from_numpy(np.stack(weights))[:, None]
    return x, attrs


PART_WEIGHTS = {"object": 6.0, "vegetation": 2.0, "sky_feature": 3.0}


def weighted_mse(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Mean squared error; with `weights` (N,1,H,W), a weighted mean normalised by the batch's mean
    weight, so the loss keeps the plain MSE's scale and learning rate."""
    if weights is None:
        return F.mse_loss(pred, target)
    return ((pred - target) ** 2 * weights).mean() / weights.mean()


def cosine_lr(base: float, progress: float, warmup: float, step: int, floor: float = 0.1) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to `floor`·base at the end of the budget."""
    decay = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, progress))))
    return base * min(1.0, (step + 1) / warmup) * decay


def init_models(folder: Path) -> dict:
    """Weights of a shipped house folder (`full/`, `preview/`) as state dicts for a warm start."""
    from inference.loader import load_model

    full = load_model(folder / "full", dtype="float32")
    out = {"vae": full.vae.state_dict(), "unet": full.unet.state_dict(),
           "text": full.text_encoders[0].model.state_dict(), "scaling": float(full.vae.config.scaling_factor)}
    if (folder / "preview").is_dir():
        out["preview"] = load_model(folder / "preview", dtype="float32").unet.state_dict()
    return out


class Timer:
    """Stage clock: seconds used so far (persisted) + this run's wall time."""

    def __init__(self, used: float, budget: float):
        self.start, self.used, self.budget = time.time(), used, budget

    def now(self) -> float:
        return self.used + time.time() - self.start

    def done(self) -> bool:
        return self.now() >= self.budget


# ----------------------------------------------------------------------------- stage 1: VAE
def train_vae(out: Path, state: RunState, budget: float, device: torch.device, save_every: float,
              seed: int, init: dict | None = None, latent_noise: float = 0.0) -> AutoencoderKL:
    """``latent_noise`` (> 0, decoder-only runs): each sample's latent gets per-cell Gaussian noise of
    an RMS drawn uniformly up to this (in the scaled latents the UNet sees), and the decoder must
    still give the scene back: a decoder that does not turn small latent changes into new shapes
    (issue 20, scripts/decoder_sensitivity.py)."""
    ck = load(out / "vae.pt")
    torch.manual_seed(seed)
    vae = AutoencoderKL(configs.VAE).to(device)
    with torch.no_grad():
        # Start with a near-deterministic posterior (std ≈ 0.02): with the default std ≈ 1 the decoder
        # sees mostly noise and learns only the mean colour for hundreds of steps.
        vae.quant_conv.bias[configs.VAE.z_channels:] = -8.0
    base_lr, decoder_only = 1.5e-3, init is not None
    if decoder_only:
        vae.load_state_dict(init["vae"])
        base_lr = 5e-4
        for module in (vae.encoder, vae.quant_conv):
            module.requires_grad_(False)
    trainable = [p for p in vae.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=base_lr, weight_decay=0.0)
    step = 0
    if ck:
        vae.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step = ck["step"]
    timer = Timer(state.elapsed("vae"), budget)
    last_save = time.time()
    bar = tqdm(desc="vae", unit="step", initial=step)
    while not timer.done():
        torch.manual_seed(seed * 1000003 + step)
        x, _, w = scene_batch(seed * 10**7 + step * 16, 16, with_weights=True)
        # 64-px crops: the VAE is fully convolutional, and crops cost a quarter of full scenes.
        g = torch.Generator().manual_seed(step)
        i, j = (int(v) for v in torch.randint(0, 65, (2,), generator=g))
        x, w = x[:, :, i:i + 64, j:j + 64].to(device), w[:, :, i:i + 64, j:j + 64].to(device)
        w = w / w.mean()
        mean, std = vae.encode_moments(x)
        z = mean + std * torch.randn_like(std)
        if latent_noise > 0 and decoder_only:
            # Scaled latents are raw × scaling, so RMS r in them is r / scaling here.
            level = torch.rand((z.shape[0], 1, 1, 1), generator=g) * (latent_noise / init["scaling"])
            z = z + level.to(device) * torch.randn(z.shape, generator=g).to(device)
        rec = vae.decode(z)
        l1 = ((rec - x).abs() * w).mean()
        grad = ((rec[..., 1:, :] - rec[..., :-1, :]) - (x[..., 1:, :] - x[..., :-1, :])).abs().mean() + \
               ((rec[..., 1:] - rec[..., :-1]) - (x[..., 1:] - x[..., :-1])).abs().mean()
        kl = 0.5 * (mean ** 2 + std ** 2 - 1 - torch.log(std ** 2 + 1e-8)).mean()
        loss = l1 + 0.5 * grad + 1e-5 * kl
        warmup = 50 if not decoder_only else 20
        lr = cosine_lr(base_lr, timer.now() / budget, warmup, step) if decoder_only else \
            base_lr * min(1.0, (step + 1) / warmup)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        step += 1
        bar.update(1)
        bar.set_postfix(l1=f"{l1.item():.4f}", kl=f"{kl.item():.2f}")
        if time.time() - last_save > save_every or timer.done():
            save(out / "vae.pt", model=vae.state_dict(), opt=opt.state_dict(), step=step)
            state.update("vae", timer.now(), step)
            last_save = time.time()
    bar.close()
    if not ck or step != ck["step"]:
        save(out / "vae.pt", model=vae.state_dict(), opt=opt.state_dict(), step=step)
        state.update("vae", timer.now(), step)
    return vae.eval()


@torch.no_grad()
def latent_cache(out: Path, vae: AutoencoderKL, device: torch.device, count: int, seed: int,
                 scaling: float | None = None) -> dict:
    """Posterior (mean, std) of `count` training scenes, the scaling factor (measured, unless a warm
    start fixes it) and their attributes."""
    path = out / "latents.pt"
    vae_step = load(out / "vae.pt")["step"]
    cached = load(path)
    if cached and cached["vae_step"] == vae_step and cached["mean"].shape[0] == count and "weights" in cached:
        return cached
    means, stds, attrs, weights = [], [], [], []
    for first in tqdm(range(0, count, 50), desc="encode"):
        x, a, w = scene_batch(seed * 10**8 + 5 * 10**7 + first, min(50, count - first), with_weights=True)
        m, s = vae.encode_moments(x.to(device))
        means.append(m.cpu())
        stds.append(s.cpu())
        # The part weights at latent resolution (each latent cell = the mean over its 8×8 pixels).
        weights.append(F.avg_pool2d(w, 8))
        attrs += a
    mean, std = torch.cat(means), torch.cat(stds)
    scaling = float(1.0 / mean.std()) if scaling is None else scaling
    cached = {"mean": mean, "std": std, "attrs": attrs, "scaling": scaling, "vae_step": vae_step,
              "weights": torch.cat(weights)}
    save(path, **cached)
    return cached


# ----------------------------------------------------------------------------- stage 2: UNet + text
def encode_text(text_model: CLIPTextModel, tokenizer: CLIPTokenizer, prompts: list[str],
                device: torch.device) -> torch.Tensor:
    ids = torch.cat([tokenize(tokenizer, p) for p in prompts]).to(device)
    return text_model(ids).last_hidden_state


def _tokenize_check() -> None:
    tok = CLIPTokenizer.default(pad_token_id=configs.PAD_TOKEN_ID)
    assert tokenize(tok, "a").shape == (1, 77)


def latent_batch(cache: dict, idx: torch.Tensor, g: torch.Generator,
                 with_weights: bool = False):
    """Scaled posterior samples of cached scenes, half of them mirrored; with `with_weights`, also
    their latent-resolution part weights (mirrored alike)."""
    z = cache["mean"][idx] + cache["std"][idx] * torch.randn(cache["std"][idx].shape, generator=g)
    flip = torch.rand(len(idx), generator=g) < 0.5
    z[flip] = z[flip].flip(-1)
    if not with_weights:
        return z * cache["scaling"]
    w = cache["weights"][idx].clone()
    w[flip] = w[flip].flip(-1)
    return z * cache["scaling"], w


def train_unet(out: Path, state: RunState, budget: float, device: torch.device, save_every: float,
               seed: int, cache: dict, batch: int = 32, init: dict | None = None,
               part_weighted: bool = False) -> tuple[UNetModel, CLIPTextModel]:
    """Noise-prediction (v) training. With `part_weighted`, the loss of each latent cell is scaled by
    the part weights of its pixels (objects, trees, sun/moon): a plain mean lets the sky and ground,
    ~90 % of every scene, decide the gradient, and the small parts the captions name stay blobs."""
    tok = CLIPTokenizer.default(pad_token_id=configs.PAD_TOKEN_ID)
    torch.manual_seed(seed)
    unet, text = UNetModel(configs.UNET).to(device), CLIPTextModel(configs.TEXT).to(device)
    with torch.no_grad():
        text.text_model.embeddings.token_embedding.weight.normal_(0, 0.02)
        text.text_model.embeddings.position_embedding.weight.normal_(0, 0.01)
    if init is not None:
        unet.load_state_dict(init["unet"])
        text.load_state_dict(init["text"])
    ema_unet, ema_text = copy.deepcopy(unet), copy.deepcopy(text)
    params = list(unet.parameters()) + list(text.parameters())
    opt = torch.optim.AdamW(params, lr=5e-4, weight_decay=1e-4)
    step = 0
    ck = load(out / "unet.pt")
    if ck:
        unet.load_state_dict(ck["unet"]); text.load_state_dict(ck["text"])
        ema_unet.load_state_dict(ck["ema_unet"]); ema_text.load_state_dict(ck["ema_text"])
        opt.load_state_dict(ck["opt"]); step = ck["step"]
    ac = alphas_cumprod().to(device)
    n = cache["mean"].shape[0]
    timer = Timer(state.elapsed("unet"), budget)
    last_save = time.time()
    bar = tqdm(desc="unet", unit="step", initial=step)

    def checkpoint():
        save(out / "unet.pt", unet=unet.state_dict(), text=text.state_dict(), ema_unet=ema_unet.state_dict(),
             ema_text=ema_text.state_dict(), opt=opt.state_dict(), step=step, scaling=cache["scaling"])
        state.update("unet", timer.now(), step)

    while not timer.done():
        g = torch.Generator().manual_seed(seed * 1000003 + step)
        rng = np.random.default_rng([seed, step])
        idx = torch.randint(0, n, (batch,), generator=g)
        # The weights draw nothing from `g`: both branches see the same latents and noise.
        x0, w = latent_batch(cache, idx, g, with_weights=True) if part_weighted else (latent_batch(cache, idx, g), None)
        x0, w = x0.to(device), (None if w is None else w.to(device))
        prompts = [caption(cache["attrs"][int(i)], rng) if rng.random() > 0.1 else "" for i in idx]
        t = torch.randint(0, 1000, (batch,), generator=g).to(device)
        noise = torch.randn(x0.shape, generator=g).to(device)
        a, s = ac[t].sqrt().view(-1, 1, 1, 1), (1 - ac[t]).sqrt().view(-1, 1, 1, 1)
        x_t = a * x0 + s * noise
        target = a * noise - s * x0
        context = encode_text(text, tok, prompts, device)
        pred = unet(x_t, t.float(), context)
        loss = weighted_mse(pred.float(), target, w)
        lr = cosine_lr(5e-4, timer.now() / budget, 200, step) if init is not None else 5e-4 * min(1.0, (step + 1) / 200)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema_update(ema_unet, unet, step)
        ema_update(ema_text, text, step)
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if time.time() - last_save > save_every:
            checkpoint()
            last_save = time.time()
    bar.close()
    if not ck or step != ck["step"]:
        checkpoint()
    return ema_unet.eval(), ema_text.eval()


# ----------------------------------------------------------------------------- stage 3: distillation
@torch.no_grad()
def teacher_trajectories(unet: UNetModel, context: torch.Tensor, uncond: torch.Tensor, noise: torch.Tensor,
                         guidance: float, steps: int = TEACHER_STEPS) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Euler with trailing spacing, CFG; returns the VP latents before each step and the final x0."""
    ac = alphas_cumprod()
    ts = trailing_timesteps(steps)
    sig = [float(((1 - ac[t]) / ac[t]).sqrt()) for t in ts] + [0.0]
    x = noise * sig[0]  # VE latent (the engine's Euler-trailing start, up to sqrt(s^2+1)/s ≈ 1)
    states = []
    for i, t in enumerate(ts):
        c_in = 1 / math.sqrt(sig[i] ** 2 + 1)
        x_vp = x * c_in
        states.append(x_vp.clone())
        tt = torch.full((x.shape[0] * 2,), float(t))
        v = unet(torch.cat([x_vp, x_vp]), tt, torch.cat([uncond.expand_as(context), context])).float()
        vu, vc = v.chunk(2)
        v = vu + guidance * (vc - vu)
        den = x * c_in ** 2 - v * sig[i] * c_in
        x = den + (x - den) / sig[i] * sig[i + 1]
    return states, x


def distill(out: Path, state: RunState, budget: float, device: torch.device, save_every: float, seed: int,
            cache: dict, teacher: UNetModel, text: CLIPTextModel, pair_count: int = 600,
            batch: int = 32, init: dict | None = None) -> UNetModel:
    tok = CLIPTokenizer.default(pad_token_id=configs.PAD_TOKEN_ID)
    timer = Timer(state.elapsed("distill"), budget)
    pairs = load(out / "pairs.pt")
    n = cache["mean"].shape[0]
    if pairs is None:
        uncond = encode_text(text, tok, [""], device)
        all_states, finals, idxs = [], [], []
        rng = np.random.default_rng([seed, 99])
        for first in tqdm(range(0, pair_count, 50), desc="teacher pairs"):
            g = torch.Generator().manual_seed(seed * 7919 + first)
            idx = torch.randint(0, n, (50,), generator=g)
            prompts = [caption(cache["attrs"][int(i)], rng) for i in idx]
            context = encode_text(text, tok, prompts, device)
            noise = torch.randn((50, 4, 16, 16), generator=g)
            states, x0 = teacher_trajectories(teacher, context, uncond, noise.to(device), configs.FULL_GUIDANCE)
            all_states.append(torch.stack(states, 1).cpu())
            finals.append(x0.cpu())
            idxs.append(idx)
        pairs = {"states": torch.cat(all_states), "x0": torch.cat(finals), "idx": torch.cat(idxs)}
        save(out / "pairs.pt", **pairs)
        state.update("distill", timer.now(), 0)
    ts_all = trailing_timesteps(TEACHER_STEPS)
    keep = [ts_all.index(t) for t in ONE_STEP_TIMESTEPS]
    student = copy.deepcopy(teacher).train()
    if init is not None and "preview" in init:
        student.load_state_dict(init["preview"])
    opt = torch.optim.AdamW(student.parameters(), lr=1e-4, weight_decay=0.0)
    ema = copy.deepcopy(student).eval()
    step = 0
    ck = load(out / "preview.pt")
    if ck:
        student.load_state_dict(ck["unet"]); ema.load_state_dict(ck["ema_unet"])
        opt.load_state_dict(ck["opt"]); step = ck["step"]
    for p in text.parameters():
        p.requires_grad_(False)
    ac = alphas_cumprod().to(device)
    last_save = time.time()
    bar = tqdm(desc="distill", unit="step", initial=step)

    def checkpoint():
        save(out / "preview.pt", unet=student.state_dict(), ema_unet=ema.state_dict(), opt=opt.state_dict(), step=step)
        state.update("distill", timer.now(), step)

    m = pairs["x0"].shape[0]
    n_real = batch // 4
    while not timer.done():
        g = torch.Generator().manual_seed(seed * 31 + step)
        rng = np.random.default_rng([seed, 31, step])
        pi = torch.randint(0, m, (batch - n_real,), generator=g)
        # Half of the pair samples start from pure noise (txt2img), the rest from an img2img start.
        ki = torch.tensor([keep[0] if rng.random() < 0.5 else keep[int(rng.integers(len(keep)))] for _ in pi])
        x_pair = pairs["states"][pi, ki]
        t_pair = torch.tensor([ts_all[k] for k in ki.tolist()])
        ri = torch.randint(0, n, (n_real,), generator=g)
        x0_real = latent_batch(cache, ri, g)
        t_real = torch.tensor([ONE_STEP_TIMESTEPS[1 + int(rng.integers(len(ONE_STEP_TIMESTEPS) - 1))] for _ in ri])
        noise = torch.randn(x0_real.shape, generator=g)
        acr = ac.cpu()[t_real]
        x_real = acr.sqrt().view(-1, 1, 1, 1) * x0_real + (1 - acr).sqrt().view(-1, 1, 1, 1) * noise
        idx = torch.cat([pairs["idx"][pi], ri])
        prompts = [caption(cache["attrs"][int(i)], rng) for i in idx]
        x_t = torch.cat([x_pair, x_real]).to(device)
        t = torch.cat([t_pair, t_real]).to(device)
        target = torch.cat([pairs["x0"][pi], x0_real]).to(device)
        with torch.no_grad():
            context = encode_text(text, tok, prompts, device)
        if init is not None:
            for group in opt.param_groups:
                group["lr"] = cosine_lr(1e-4, timer.now() / budget, 50, step)
        v = student(x_t, t.float(), context).float()
        loss = F.mse_loss(v_to_x0(x_t, v, t, ac), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        ema_update(ema, student, step, 0.995)
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if time.time() - last_save > save_every:
            checkpoint()
            last_save = time.time()
    bar.close()
    if not ck or step != ck["step"]:
        checkpoint()
    return ema.eval()


# ----------------------------------------------------------------------------- driver
def run(out: str | Path, minutes: float = 45.0, device: str = "cpu", save_every_min: float = 3.0,
        seed: int = 0, threads: int | None = None, scenes: int = 3000, init: str | Path | None = None,
        pairs: int = 600, shares: dict[str, float] | None = None, part_weighted: bool = False,
        latent_noise: float = 0.0) -> dict:
    if latent_noise and not init:  # checked before anything is written
        raise ValueError("--latent-noise fine-tunes a decoder: it needs --init (a house folder)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    state = RunState(out)
    state.update("vae", state.elapsed("vae"), state.data["steps"].get("vae", 0), minutes=minutes, seed=seed)
    save_every = save_every_min * 60
    shares = {**SHARES, **(shares or {})}
    budget = {k: v * minutes * 60 for k, v in shares.items()}
    warm = init_models(Path(init)) if init else None
    if init:
        state.update("vae", state.elapsed("vae"), state.data["steps"].get("vae", 0), init=str(init))
    vae = train_vae(out, state, budget["vae"], dev, save_every, seed, warm, latent_noise)
    cache = latent_cache(out, vae, dev, scenes, seed, warm["scaling"] if warm else None)
    unet, text = train_unet(out, state, budget["unet"], dev, save_every, seed, cache, init=warm,
                            part_weighted=part_weighted)
    distill(out, state, budget["distill"], dev, save_every, seed, cache, unet, text, pair_count=pairs, init=warm)
    state.update("distill", state.elapsed("distill"), state.data["steps"].get("distill", 0),
                 scaling=cache["scaling"])
    return state.data
