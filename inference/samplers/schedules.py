"""Noise schedules: the timesteps and sigmas one sampler walks, equal to diffusers' schedulers.

``build_schedule(sampler, config, steps, *, spacing=None, strength=1.0) -> Schedule``

The engine samples in k-diffusion "VE" space: a noisy latent is ``x = x0 + sigma * noise`` and
the UNet sees ``x / sqrt(sigma**2 + 1)``. A ``Schedule`` holds, for one sampler and step count,

* ``timesteps`` float32 [n]: the values diffusers passes to the UNet at each step;
* ``sigmas`` float32 [n+1]: the VE sigma of the latent before each step, plus where it ends;
* the per-step constants the sampler needs (solver orders, DDIM/LCM coefficients, x0 clipping),
  all precomputed here as Python floats so the sampling loop never syncs with the device.

It also converts between our VE latent and the tensor diffusers' loop holds (``to_diffusers`` /
``from_diffusers``): Euler and Euler-a hold the VE latent itself; DDIM, DPM-Solver and LCM hold
the "VP" latent ``x / sqrt(sigma**2 + 1)``. ``initial_latents``, ``noised_latents`` and
``output_latents`` are the three places a pipeline needs that.

diffusers quirks reproduced here (0.42.1):

* each class has its own default ``timestep_spacing`` (Euler: linspace, DDIM/LCM: leading);
  Euler's linspace timesteps are fractional and its sigmas are interpolated linearly;
* Euler with "leading" spacing starts from ``noise * sqrt(sigma_max**2 + 1)`` (init_noise_sigma);
* DPM++ 2M Karras ignores the spacing: sigmas are Karras over the full training range, the UNet
  gets those sigmas' timesteps *rounded* (except squaredcos_cap_v2) while the solver keeps the
  unrounded sigma; the first step of every run and the step to sigma 0 are first order;
* DDIM steps from timestep t to ``t - num_train // steps`` whatever the spacing, which is not
  always the next timestep (linspace, non-divisible trailing), and its last step lands on
  alpha_cumprod[0] (not sigma 0) unless ``set_alpha_to_one``; it clips x0 to +-1 by default;
* LCM ignores the spacing: timesteps come from a 50-step (``original_inference_steps``) grid, with
  c_skip/c_out boundary scalings and fresh noise after every step but the last;
* Euler, Euler-a and DPM clamp alpha_cumprod[-1] to 2**-24 under ``rescale_betas_zero_snr``;
  DDIM and LCM keep it 0, an infinite sigma, which VE space cannot hold (InvalidRequestError);
* TCD (TCDScheduler) walks LCM's timesteps; each step goes to s = floor((1 - gamma) * t_next)
  along the predicted trajectory, then re-noises up to t_next with fresh noise (gamma > 0, every
  step but the last); the last step ends at alpha_cumprod[0], not at sigma 0. gamma is diffusers'
  step() argument ``eta``: ``build_schedule(..., eta=)``, default 0.3;
* EDM configs (``_class_name`` EDMEulerScheduler / EDMDPMSolverMultistepScheduler, Playground
  v2.5): euler and dpmpp_2m_karras walk Karras (or exponential) sigmas over [sigma_min, sigma_max]
  on the VE latent, the UNet gets c_noise = log(sigma) / 4, the start is
  ``noise * sqrt(sigma_max**2 + 1)`` (diffusers' init_noise_sigma), and the denoiser applies EDM
  preconditioning (``make_denoiser(..., schedule)``). EDM Euler computes its Karras ramp in
  float64, EDM DPM in float32; with final_sigmas_type "sigma_min" Euler ends on its last Karras
  sigma and DPM on the configured sigma_min. Other samplers refuse EDM configs;
* "sgm_uniform" and "simple" (ComfyUI's names, for SDXL-Lightning / Hyper-SD presets) are our
  own spacings for euler / euler_a: "simple" takes training timesteps N-1-int(i*N/steps) (equal to
  diffusers' "trailing" whenever steps divides N: 1, 2, 4, 5, 8, 10... of 1000), "sgm_uniform" takes
  t = linspace(N-1, 0, steps+1)[:-1] with sigmas interpolated in log space; both end at sigma 0.

One deliberate deviation: for "trailing" spacing, numpy's float ``arange`` gives diffusers one
timestep too many (t = -1) for some step counts (61, 103, ...); we keep exactly ``steps``.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from inference.errors import InvalidRequestError
from inference.samplers.config import SchedulerConfig, as_config, check_sampler_name
from inference.samplers.registry import SIGMA_SPACINGS, check_spacing

# Samplers whose diffusers loop holds the VP latent (init_noise_sigma 1, no scale_model_input);
# under an EDM config every sampler holds the VE latent.
_VP_SAMPLERS = frozenset({"dpmpp_2m_karras", "ddim", "lcm", "tcd"})
# TCD's gamma (diffusers' `eta`): the value the TCD authors and diffusers' TCD docs use.
# diffusers' SD/SDXL pipelines pass their own eta argument, 0.0 unless told otherwise.
TCD_DEFAULT_ETA = 0.3


@dataclass(frozen=True, eq=False)
class Schedule:
    """What one sampling run walks; built by ``build_schedule``, read by the samplers.

    ``n = len(timesteps)`` steps; step ``i`` takes the latent from ``sigmas[i]`` to ``sigmas[i+1]``
    and calls the model with ``(x, sigmas[i], timesteps[i])``.
    """

    sampler: str
    timesteps: torch.Tensor  # float32 [n], what diffusers passes to the UNet
    sigmas: torch.Tensor  # float32 [n+1], VE sigma before each step, then the final one
    prediction_type: str
    init_noise_sigma: float  # diffusers' scheduler.init_noise_sigma for this run
    vp_latents: bool  # diffusers' loop holds x / sqrt(sigma^2 + 1) rather than x
    start_index: int = 0  # img2img: steps skipped at the start of the full schedule
    # Sampler-specific per-step constants (length n, or empty when the sampler has none).
    orders: tuple[int, ...] = ()  # DPM-Solver: 1 or 2 per step
    solver_type: str = "midpoint"  # DPM-Solver second-order variant
    ddim_coeffs: tuple[tuple[float, float], ...] = ()  # DDIM: x_next = a * x0 + b * eps
    lcm_c_skip: tuple[float, ...] = ()
    lcm_c_out: tuple[float, ...] = ()
    tcd_gamma: float = 0.0  # TCD: > 0 draws fresh noise after every step but the last
    tcd_keep: tuple[float, ...] = ()  # TCD: x_s = keep * x + (1 - keep) * x0, keep = sigma_s / sigma_t
    tcd_noise: tuple[float, ...] = ()  # TCD: then + noise * sqrt(sigma_next^2 - sigma_s^2)
    edm_sigma_data: float | None = None  # EDM preconditioning (Karras et al. 2022), else None
    x0_clip: float | None = None  # clamp x0 to +-this (DDIM/LCM clip_sample)
    x0_threshold: tuple[float, float] | None = None  # dynamic thresholding (ratio, max value)
    # Python copies of the tensors above, for a loop without device syncs.
    sigma_values: tuple[float, ...] = field(init=False)
    timestep_values: tuple[float, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigma_values", tuple(float(s) for s in self.sigmas.tolist()))
        object.__setattr__(self, "timestep_values", tuple(float(t) for t in self.timesteps.tolist()))

    @property
    def num_steps(self) -> int:
        return len(self.timestep_values)

    def _vp_scale(self, step: int) -> float:
        sigma = self.sigma_values[step]
        return math.sqrt(sigma * sigma + 1.0)

    def to_diffusers(self, x: torch.Tensor, step: int) -> torch.Tensor:
        """Our VE latent at ``sigmas[step]`` as the tensor diffusers' loop holds at that point."""
        return x / self._vp_scale(step) if self.vp_latents else x

    def from_diffusers(self, latents: torch.Tensor, step: int) -> torch.Tensor:
        """Inverse of ``to_diffusers``."""
        return latents * self._vp_scale(step) if self.vp_latents else latents

    def initial_latents(self, noise: torch.Tensor) -> torch.Tensor:
        """txt2img start: diffusers' ``randn * init_noise_sigma`` as a VE latent at ``sigmas[0]``."""
        return self.from_diffusers(noise * self.init_noise_sigma, 0)

    def noised_latents(self, clean: torch.Tensor, noise: torch.Tensor, step: int = 0) -> torch.Tensor:
        """``clean`` noised to ``sigmas[step]``: diffusers' ``add_noise`` at ``timesteps[step]``.

        Every scheduler's add_noise is ``clean + sigma * noise`` once read in VE space (the VP ones
        compute ``alpha * clean + sigma_vp * noise``, i.e. the same latent times alpha).
        """
        return clean + noise * self.sigma_values[step]

    def output_latents(self, x: torch.Tensor) -> torch.Tensor:
        """What diffusers hands to the VAE: the final latent, in VP form for the VP samplers."""
        return self.to_diffusers(x, self.num_steps)


# ---------------------------------------------------------------------------------------------
# Training noise levels


def _cosine_betas(n: int, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal's squaredcos_cap_v2 schedule: betas from alpha_bar(t) = cos^2(...)."""

    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), max_beta) for i in range(n)]
    return torch.tensor(betas, dtype=torch.float32)


def _zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Lin et al. 2023, Algorithm 1: shift/scale sqrt(alpha_bar) so the last one is exactly 0."""
    sqrt_ab = torch.cumprod(1.0 - betas, dim=0).sqrt()
    first, last = sqrt_ab[0].clone(), sqrt_ab[-1].clone()
    sqrt_ab -= last
    sqrt_ab *= first / (first - last)
    ab = sqrt_ab**2
    alphas = torch.cat([ab[0:1], ab[1:] / ab[:-1]])
    return 1 - alphas


def _alphas_cumprod(cfg: Mapping[str, Any], *, clamp_terminal: bool) -> torch.Tensor:
    """float32 alpha_bar[t] for t in 0..N-1, computed with the same float32 ops as diffusers."""
    n = int(cfg["num_train_timesteps"])
    if cfg["trained_betas"] is not None:
        betas = torch.tensor(cfg["trained_betas"], dtype=torch.float32)
        if betas.ndim != 1 or len(betas) != n:
            raise InvalidRequestError(f"scheduler trained_betas must hold {n} values, got {tuple(betas.shape)}")
    elif cfg["beta_schedule"] == "linear":
        betas = torch.linspace(cfg["beta_start"], cfg["beta_end"], n, dtype=torch.float32)
    elif cfg["beta_schedule"] == "scaled_linear":
        betas = torch.linspace(cfg["beta_start"] ** 0.5, cfg["beta_end"] ** 0.5, n, dtype=torch.float32) ** 2
    elif cfg["beta_schedule"] == "squaredcos_cap_v2":
        betas = _cosine_betas(n)
    else:
        raise InvalidRequestError(f"unsupported scheduler beta_schedule {cfg['beta_schedule']!r}")
    if cfg["rescale_betas_zero_snr"]:
        betas = _zero_terminal_snr(betas)
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    if cfg["rescale_betas_zero_snr"] and clamp_terminal:
        alphas_cumprod[-1] = 2**-24  # what the k-diffusion-style classes do to keep sigma finite
    return alphas_cumprod


def _train_sigmas(alphas_cumprod: torch.Tensor) -> np.ndarray:
    """float32 VE sigma for every training timestep (ascending in t)."""
    return (((1 - alphas_cumprod) / alphas_cumprod) ** 0.5).numpy()


def _sigma_to_t(sigma: float, log_sigmas: np.ndarray) -> float:
    """Fractional training timestep whose sigma is ``sigma``, interpolating in log sigma."""
    log_sigma = np.log(np.maximum(sigma, 1e-10))
    low = int(np.searchsorted(log_sigmas, log_sigma, side="right")) - 1  # last log_sigmas <= it
    low = min(max(low, 0), len(log_sigmas) - 2)
    w = (log_sigmas[low] - log_sigma) / (log_sigmas[low] - log_sigmas[low + 1])
    w = np.clip(w, 0, 1)
    # int64 indices, as diffusers' index arrays: a float32 w then interpolates in float64.
    return float((1 - w) * np.int64(low) + w * np.int64(low + 1))


def _karras(sigma_min: float, sigma_max: float, n: int, rho: float = 7.0) -> np.ndarray:
    """Karras et al. 2022, eq. 5: sigmas evenly spaced in sigma^(1/rho)."""
    ramp = np.linspace(0, 1, n)
    min_inv_rho, max_inv_rho = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho


# ---------------------------------------------------------------------------------------------
# Timestep spacing (Lin et al. 2023, table 2), in each class's own arithmetic


def _trailing(n_train: int, steps: int) -> np.ndarray:
    # Sliced to `steps`: numpy's float arange sometimes yields one extra (negative) timestep.
    return np.arange(n_train, 0, -n_train / steps).round()[:steps]


def _euler_timesteps(spacing: str, n_train: int, steps: int, offset: int) -> np.ndarray:
    if spacing == "linspace":
        return np.linspace(0, n_train - 1, steps, dtype=np.float32)[::-1].copy()
    if spacing == "leading":
        ts = (np.arange(0, steps) * (n_train // steps)).round()[::-1].copy().astype(np.float32)
        return ts + offset
    return _trailing(n_train, steps).astype(np.float32) - 1


def _simple(train: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """ComfyUI's "simple": every (N/steps)-th training sigma from the top, index truncated.

    Equal to diffusers' "trailing" whenever steps divides N (1, 2, 4, 5, 8, 10... of 1000);
    otherwise trailing rounds where this truncates, so some trailing timesteps sit one lower.
    """
    n_train = len(train)
    index = np.array([n_train - 1 - int(x * (n_train / steps)) for x in range(steps)], dtype=np.int64)
    return index.astype(np.float32), train[index]


def _sgm_uniform(train: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """ComfyUI's "sgm_uniform": steps+1 points evenly from t=N-1 to t=0, the last dropped.

    The sigma at a fractional t interpolates the training table in log sigma, in float32 (as
    ComfyUI does). The UNet gets the t diffusers computes back from that sigma (what
    EulerDiscreteScheduler.set_timesteps(sigmas=...) passes), which is t up to float rounding.
    """
    n_train = len(train)
    t = torch.linspace(n_train - 1, 0, steps + 1, dtype=torch.float32)[:-1]
    log_table = torch.from_numpy(train).log()
    low, high, w = t.floor().long(), t.ceil().long(), t.frac()
    sigmas = ((1 - w) * log_table[low] + w * log_table[high]).exp().numpy()
    log_sigmas = np.log(train)
    timesteps = np.array([_sigma_to_t(sigma, log_sigmas) for sigma in sigmas], dtype=np.float32)
    return timesteps, sigmas


_SIGMA_SPACED = {"simple": _simple, "sgm_uniform": _sgm_uniform}


def _ddim_timesteps(spacing: str, n_train: int, steps: int, offset: int) -> np.ndarray:
    if spacing == "linspace":
        return np.linspace(0, n_train - 1, steps).round()[::-1].copy().astype(np.int64)
    if spacing == "leading":
        return (np.arange(0, steps) * (n_train // steps)).round()[::-1].copy().astype(np.int64) + offset
    return _trailing(n_train, steps).astype(np.int64) - 1


# ---------------------------------------------------------------------------------------------
# Per-sampler schedules over the full step count (truncation for img2img comes after)


@dataclass
class _Full:
    timesteps: np.ndarray  # [n]
    sigmas: np.ndarray  # float32 [n+1]
    init_noise_sigma: float = 1.0
    extras: dict[str, Any] = field(default_factory=dict)  # per-step tuples and flags


def _reject(cfg: Mapping[str, Any], sampler: str, keys: tuple[str, ...]) -> None:
    for key in keys:
        if cfg.get(key):
            raise InvalidRequestError(f"scheduler option {key}={cfg[key]!r} is not supported by sampler {sampler!r}")


def _final_sigma(cfg: Mapping[str, Any], alphas_cumprod: torch.Tensor) -> float:
    kind = cfg["final_sigmas_type"]
    if kind == "zero":
        return 0.0
    if kind == "sigma_min":
        return float(((1 - alphas_cumprod[0]) / alphas_cumprod[0]) ** 0.5)
    raise InvalidRequestError(f"unsupported scheduler final_sigmas_type {kind!r}")


def _euler_init_noise_sigma(sigmas: np.ndarray, spacing: str) -> float:
    max_sigma = torch.from_numpy(sigmas).max()
    if spacing != "leading":
        return float(max_sigma)
    return float((max_sigma**2 + 1) ** 0.5)  # the "leading" quirk: a VP-style start


def _discrete_sigmas(cfg: Mapping[str, Any], train: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Euler/Euler-a timesteps [n] and sigmas [n] (no final sigma) for the config's spacing."""
    spacing = cfg["timestep_spacing"]
    if spacing in _SIGMA_SPACED:
        return _SIGMA_SPACED[spacing](train, steps)
    n_train = int(cfg["num_train_timesteps"])
    timesteps = _euler_timesteps(spacing, n_train, steps, int(cfg["steps_offset"]))
    return timesteps, np.interp(timesteps, np.arange(0, len(train)), train)


def _build_euler(cfg: Mapping[str, Any], steps: int) -> _Full:
    _reject(cfg, "euler", ("use_exponential_sigmas", "use_beta_sigmas"))
    if cfg["interpolation_type"] != "linear":
        raise InvalidRequestError(f"unsupported scheduler interpolation_type {cfg['interpolation_type']!r}")
    ac = _alphas_cumprod(cfg, clamp_terminal=True)
    train = _train_sigmas(ac)
    log_sigmas = np.log(train)
    timesteps, sigmas = _discrete_sigmas(cfg, train, steps)
    sigma_spaced = cfg["timestep_spacing"] in _SIGMA_SPACED
    if cfg["use_karras_sigmas"] and sigma_spaced:
        raise InvalidRequestError(f"timestep spacing {cfg['timestep_spacing']!r} picks the sigmas itself; "
                                  "it cannot be combined with the model's use_karras_sigmas")
    if cfg["use_karras_sigmas"]:
        lo = cfg["sigma_min"] if cfg["sigma_min"] is not None else sigmas[-1].item()
        hi = cfg["sigma_max"] if cfg["sigma_max"] is not None else sigmas[0].item()
        sigmas = _karras(lo, hi, steps)
        timesteps = np.array([_sigma_to_t(s, log_sigmas) for s in sigmas])  # fractional, unrounded
    # The sigma spacings end at 0 whatever final_sigmas_type says (ComfyUI appends 0).
    final = 0.0 if sigma_spaced else _final_sigma(cfg, ac)
    sigmas = np.concatenate([sigmas, [final]]).astype(np.float32)
    timesteps = timesteps.astype(np.float32)
    if cfg["timestep_type"] == "continuous" and cfg["prediction_type"] == "v_prediction":
        # EDM-style models get c_noise = log(sigma) / 4 instead of a training timestep.
        timesteps = (0.25 * torch.from_numpy(sigmas[:-1]).log()).numpy()
    return _Full(timesteps, sigmas, _euler_init_noise_sigma(sigmas, cfg["timestep_spacing"]))


def _build_euler_ancestral(cfg: Mapping[str, Any], steps: int) -> _Full:
    ac = _alphas_cumprod(cfg, clamp_terminal=True)
    timesteps, sigmas = _discrete_sigmas(cfg, _train_sigmas(ac), steps)
    sigmas = np.concatenate([sigmas, [0.0]]).astype(np.float32)
    return _Full(timesteps, sigmas, _euler_init_noise_sigma(sigmas, cfg["timestep_spacing"]))


def _x0_postprocess(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """DDIM/LCM/DPM x0 post-processing: dynamic thresholding wins over plain clipping."""
    if cfg.get("thresholding"):
        return {"x0_threshold": (float(cfg["dynamic_thresholding_ratio"]), float(cfg["sample_max_value"]))}
    if cfg.get("clip_sample"):
        return {"x0_clip": float(cfg["clip_sample_range"])}
    return {}


def _build_dpmpp_2m_karras(cfg: Mapping[str, Any], steps: int) -> _Full:
    _reject(cfg, "dpmpp_2m_karras", ("use_exponential_sigmas", "use_beta_sigmas", "use_flow_sigmas"))
    if cfg["variance_type"] is not None:
        raise InvalidRequestError(f"unsupported scheduler variance_type {cfg['variance_type']!r}")
    ac = _alphas_cumprod(cfg, clamp_terminal=True)
    train = _train_sigmas(ac)
    log_sigmas = np.log(train)
    # Karras over the whole training range (flipped to descending); the spacing plays no part.
    descending = np.flip(train).copy()
    lo = cfg["sigma_min"] if cfg["sigma_min"] is not None else descending[-1].item()
    hi = cfg["sigma_max"] if cfg["sigma_max"] is not None else descending[0].item()
    sigmas = _karras(lo, hi, steps)
    timesteps = np.array([_sigma_to_t(s, log_sigmas) for s in sigmas])
    if cfg["beta_schedule"] != "squaredcos_cap_v2":
        timesteps = timesteps.round()
    timesteps = timesteps.astype(np.int64)
    sigmas = np.concatenate([sigmas, [_final_sigma(cfg, ac)]]).astype(np.float32)
    return _Full(timesteps, sigmas, 1.0, _dpm_extras(cfg, len(timesteps)))


def _dpm_extras(cfg: Mapping[str, Any], n: int) -> dict[str, Any]:
    """DPM-Solver++(2M) per-step orders and options (shared by the discrete and EDM classes)."""
    if cfg["solver_type"] not in ("midpoint", "heun"):
        raise InvalidRequestError(f"unsupported scheduler solver_type {cfg['solver_type']!r}")
    # diffusers drops to first order on the last step in these cases ("lower_order_final").
    last_first_order = (
        cfg["euler_at_final"]
        or (cfg["lower_order_final"] and n < 15)
        or cfg["final_sigmas_type"] == "zero"
    )
    orders = tuple(1 if (i == n - 1 and last_first_order) else 2 for i in range(n))
    return {"orders": orders, "solver_type": cfg["solver_type"], **_x0_postprocess(cfg)}


def _vp_sigma(alpha_cumprod: float) -> float:
    if alpha_cumprod <= 0.0:
        raise InvalidRequestError(
            "rescale_betas_zero_snr gives timestep 999 infinite noise, which ddim and lcm cannot "
            "start from; use euler, euler_a or dpmpp_2m_karras (or leading spacing with ddim)"
        )
    return math.sqrt((1.0 - alpha_cumprod) / alpha_cumprod)


def _build_ddim(cfg: Mapping[str, Any], steps: int) -> _Full:
    ac = _alphas_cumprod(cfg, clamp_terminal=False).tolist()
    n_train = int(cfg["num_train_timesteps"])
    final_ac = 1.0 if cfg["set_alpha_to_one"] else ac[0]
    timesteps = _ddim_timesteps(cfg["timestep_spacing"], n_train, steps, int(cfg["steps_offset"]))
    stride = n_train // steps  # DDIM's "previous timestep" ignores the spacing
    a_from = [ac[t] for t in timesteps]
    a_to = [ac[t - stride] if t - stride >= 0 else final_ac for t in timesteps]
    # Our latent after step i sits at the next step's sigma (what the next UNet call reads);
    # DDIM's target alpha may differ from it, hence a * x0 + b * eps rescaled to that sigma.
    a_next = a_from[1:] + [a_to[-1]]
    coeffs = tuple((math.sqrt(p / q), math.sqrt((1.0 - p) / q)) for p, q in zip(a_to, a_next, strict=True))
    sigmas = np.array([_vp_sigma(a) for a in a_from] + [_vp_sigma(a_to[-1])], dtype=np.float32)
    return _Full(timesteps, sigmas, 1.0, {"ddim_coeffs": coeffs, **_x0_postprocess(cfg)})


def _consistency_timesteps(cfg: Mapping[str, Any], steps: int, name: str) -> np.ndarray:
    """LCM/TCD timesteps: ``steps`` evenly picked from the distillation grid of
    ``original_inference_steps`` (both classes compute the same)."""
    n_train = int(cfg["num_train_timesteps"])
    original = int(cfg["original_inference_steps"])
    if original > n_train:
        raise InvalidRequestError(f"scheduler original_inference_steps {original} exceeds {n_train} training steps")
    if steps > original:
        raise InvalidRequestError(f"steps {steps} exceeds the {name} schedule of {original} steps")
    k = n_train // original
    grid = (np.asarray(list(range(1, original + 1))) * k - 1)[::-1].copy()  # the distillation grid
    pick = np.floor(np.linspace(0, len(grid), num=steps, endpoint=False)).astype(np.int64)
    return grid[pick]


def _build_lcm(cfg: Mapping[str, Any], steps: int) -> _Full:
    ac = _alphas_cumprod(cfg, clamp_terminal=False).tolist()
    timesteps = _consistency_timesteps(cfg, steps, "LCM")
    scaling = float(cfg["timestep_scaling"])
    c_skip, c_out = [], []
    for t in timesteps.tolist():
        scaled = t * scaling  # consistency-model boundary condition with sigma_data = 0.5
        c_skip.append(0.25 / (scaled**2 + 0.25))
        c_out.append(scaled / (scaled**2 + 0.25) ** 0.5)
    sigmas = np.array([_vp_sigma(ac[t]) for t in timesteps] + [0.0], dtype=np.float32)
    extras = {"lcm_c_skip": tuple(c_skip), "lcm_c_out": tuple(c_out), **_x0_postprocess(cfg)}
    return _Full(timesteps, sigmas, 1.0, extras)


def _tcd_s_timesteps(prev: list[int], eta: float) -> list[int]:
    """TCD's intermediate s = floor((1 - gamma) * t_prev), in diffusers' float32 tensor arithmetic."""
    return torch.floor((1 - eta) * torch.tensor(prev, dtype=torch.long)).to(torch.long).tolist()


def _build_tcd(cfg: Mapping[str, Any], steps: int) -> _Full:
    """Strategic stochastic sampling (Zheng et al. 2024): from x_t jump along the predicted
    trajectory down to s = floor((1 - gamma) t_prev), then re-noise up to t_prev. The last step
    lands on s = 0, i.e. alpha_cumprod[0], not on a clean latent. TCD never clips x0."""
    eta = float(cfg["eta"])
    ac = _alphas_cumprod(cfg, clamp_terminal=False).tolist()
    timesteps = _consistency_timesteps(cfg, steps, "TCD")
    prev = [int(t) for t in timesteps[1:]] + [0]
    s_steps = _tcd_s_timesteps(prev, eta)
    sigma_t = [_vp_sigma(ac[t]) for t in timesteps]
    sigma_s = [_vp_sigma(ac[s]) for s in s_steps]
    sigma_prev = [_vp_sigma(ac[t]) for t in prev]
    keep = tuple(s / t for s, t in zip(sigma_s, sigma_t, strict=True))
    noise = tuple(math.sqrt(max(p * p - s * s, 0.0)) for p, s in zip(sigma_prev, sigma_s, strict=True))
    # After step i the latent sits at t_prev: re-noised there, or (gamma = 0) s is t_prev itself.
    # The last step has no re-noising and ends at s = 0.
    sigmas = np.array(sigma_t + [sigma_s[-1]], dtype=np.float32)
    return _Full(timesteps, sigmas, 1.0, {"tcd_gamma": eta, "tcd_keep": keep, "tcd_noise": noise})


_BUILDERS = {
    "euler": _build_euler,
    "euler_a": _build_euler_ancestral,
    "dpmpp_2m_karras": _build_dpmpp_2m_karras,
    "ddim": _build_ddim,
    "lcm": _build_lcm,
    "tcd": _build_tcd,
}


# ---------------------------------------------------------------------------------------------
# EDM (Karras et al. 2022) schedules: EDMEulerScheduler, EDMDPMSolverMultistepScheduler


def _edm_sigmas(cfg: Mapping[str, Any], steps: int, ramp_dtype: torch.dtype) -> torch.Tensor:
    """float32 [steps] descending sigmas. EDM Euler builds its Karras ramp in float64, EDM DPM
    in float32: each is reproduced in its own precision."""
    lo, hi = float(cfg["sigma_min"]), float(cfg["sigma_max"])
    if cfg["sigma_schedule"] == "karras":
        ramp = torch.linspace(0, 1, steps, dtype=ramp_dtype)
        rho = float(cfg["rho"])
        min_inv_rho, max_inv_rho = lo ** (1 / rho), hi ** (1 / rho)
        sigmas = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho
    elif cfg["sigma_schedule"] == "exponential":
        sigmas = torch.linspace(math.log(lo), math.log(hi), steps).exp().flip(0)
    else:
        raise InvalidRequestError(f"unsupported scheduler sigma_schedule {cfg['sigma_schedule']!r}")
    return sigmas.to(torch.float32)


def _check_edm(cfg: Mapping[str, Any]) -> None:
    if cfg["prediction_type"] not in ("epsilon", "v_prediction"):
        raise InvalidRequestError(f"EDM schedulers take prediction_type epsilon or v_prediction, "
                                  f"not {cfg['prediction_type']!r}")
    if cfg["final_sigmas_type"] not in ("zero", "sigma_min"):
        raise InvalidRequestError(f"unsupported scheduler final_sigmas_type {cfg['final_sigmas_type']!r}")
    if not 0 < float(cfg["sigma_min"]) < float(cfg["sigma_max"]):
        raise InvalidRequestError(f"EDM sigma range must satisfy 0 < sigma_min < sigma_max, "
                                  f"got {cfg['sigma_min']!r}, {cfg['sigma_max']!r}")


def _edm_full(cfg: Mapping[str, Any], sigmas: torch.Tensor, final: float, extras: dict[str, Any]) -> _Full:
    timesteps = (0.25 * sigmas.log()).numpy()  # c_noise, what the UNet gets as its timestep
    all_sigmas = torch.cat([sigmas, torch.tensor([final], dtype=torch.float32)]).numpy()
    # diffusers' init_noise_sigma for both classes is sqrt(sigma_max^2 + 1), not sigma_max.
    init = (float(cfg["sigma_max"]) ** 2 + 1) ** 0.5
    return _Full(timesteps, all_sigmas, init, {"edm_sigma_data": float(cfg["sigma_data"]), **extras})


def _build_edm_euler(cfg: Mapping[str, Any], steps: int) -> _Full:
    _check_edm(cfg)
    sigmas = _edm_sigmas(cfg, steps, torch.float64)
    final = float(sigmas[-1]) if cfg["final_sigmas_type"] == "sigma_min" else 0.0
    return _edm_full(cfg, sigmas, final, {})


def _build_edm_dpmpp(cfg: Mapping[str, Any], steps: int) -> _Full:
    _check_edm(cfg)
    sigmas = _edm_sigmas(cfg, steps, torch.float32)
    # Unlike EDM Euler, EDM DPM ends on the configured sigma_min, not the last Karras sigma.
    final = float(cfg["sigma_min"]) if cfg["final_sigmas_type"] == "sigma_min" else 0.0
    return _edm_full(cfg, sigmas, final, _dpm_extras(cfg, steps))


_EDM_BUILDERS = {"euler": _build_edm_euler, "dpmpp_2m_karras": _build_edm_dpmpp}

_PER_STEP_EXTRAS = ("orders", "ddim_coeffs", "lcm_c_skip", "lcm_c_out", "tcd_keep", "tcd_noise")


def _check_steps_and_strength(steps: int, strength: float, n_train: int) -> int:
    """Validate; return t_start as diffusers' img2img ``get_timesteps`` computes it."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise InvalidRequestError(f"steps must be a positive integer, got {steps!r}")
    if steps > n_train:
        raise InvalidRequestError(f"steps {steps} exceeds the {n_train} training timesteps")
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0.0 < strength <= 1.0:
        raise InvalidRequestError(f"strength must be in (0, 1], got {strength!r}")
    init_timestep = min(int(steps * strength), steps)
    if init_timestep < 1:
        raise InvalidRequestError(f"strength {strength} leaves no denoising step out of {steps}; raise strength or steps")
    return max(steps - init_timestep, 0)


def _check_eta(sampler: str, eta: float | None) -> float:
    if eta is None:
        return TCD_DEFAULT_ETA
    if sampler != "tcd":
        raise InvalidRequestError(f"eta (gamma) applies to sampler 'tcd' only, not {sampler!r}")
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 0.0 <= eta <= 1.0:
        raise InvalidRequestError(f"tcd eta (gamma) must be in [0, 1], got {eta!r}")
    return float(eta)


def _resolve(sampler: str, config: SchedulerConfig, spacing: str | None, eta: float | None) -> dict[str, Any]:
    """The class's config view, with the request's spacing and TCD gamma folded in."""
    check_spacing(sampler, spacing)
    if config.is_edm and spacing in SIGMA_SPACINGS:
        raise InvalidRequestError(f"timestep spacing {spacing!r} picks discrete training timesteps; "
                                  f"this model's EDM scheduler {config.class_name} has none")
    eta = _check_eta(sampler, eta)
    cfg = config.resolved(sampler, timestep_spacing=spacing)
    if sampler == "tcd":
        cfg["eta"] = eta
    return cfg


def build_schedule(
    sampler: str,
    config: SchedulerConfig | Mapping[str, Any],
    steps: int,
    *,
    spacing: str | None = None,
    strength: float = 1.0,
    eta: float | None = None,
) -> Schedule:
    """The schedule diffusers' scheduler for ``sampler`` walks for ``steps`` steps.

    ``config`` is the model's scheduler_config.json (dict or ``SchedulerConfig``); ``spacing``
    overrides its timestep_spacing (diffusers' three have no effect on lcm, tcd, dpmpp_2m_karras
    and EDM configs, as in diffusers; sgm_uniform and simple apply to euler and euler_a only);
    ``strength < 1`` keeps the last ``int(steps * strength)`` steps, as img2img pipelines do;
    ``eta`` is TCD's gamma (default ``TCD_DEFAULT_ETA``). A config naming an EDM class gives
    that class's schedule for euler / dpmpp_2m_karras (InvalidRequestError for the others); its
    denoiser must then come from ``make_denoiser(unet_fn, prediction_type, schedule)``.
    """
    check_sampler_name(sampler)
    config = as_config(config)
    cfg = _resolve(sampler, config, spacing, eta)
    t_start = _check_steps_and_strength(steps, strength, int(cfg["num_train_timesteps"]))
    builder = _EDM_BUILDERS[sampler] if config.is_edm else _BUILDERS[sampler]
    full = builder(cfg, int(steps))
    extras = dict(full.extras)
    for key in _PER_STEP_EXTRAS:
        if key in extras:
            extras[key] = tuple(extras[key][t_start:])
    if "orders" in extras:
        # A run always starts first order: diffusers' multistep history is empty at its first step.
        extras["orders"] = (1,) + extras["orders"][1:]
    return Schedule(
        sampler=sampler,
        timesteps=torch.from_numpy(np.asarray(full.timesteps[t_start:], dtype=np.float32).copy()),
        sigmas=torch.from_numpy(np.asarray(full.sigmas[t_start:], dtype=np.float32).copy()),
        prediction_type=str(cfg["prediction_type"]),
        init_noise_sigma=float(full.init_noise_sigma),
        vp_latents=sampler in _VP_SAMPLERS and not config.is_edm,
        start_index=t_start,
        **extras,
    )
