"""TCD, EDM (Playground v2.5) schedules and the sgm_uniform / simple spacings against diffusers.

Same method as tests/test_samplers.py: diffusers' own loop (from_config, set_timesteps, img2img
truncation with set_begin_index, init_noise_sigma / add_noise, scale_model_input, step with the
generator) and ours run the same deterministic toy "UNet" from the same seed; every UNet input,
every intermediate latent and the final latents are compared. Final latents: max abs diff <= 1e-4.
"""
from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_samplers import SD15, SD21, SEED, SHAPE, TURBO, clean_latents

from inference.errors import InvalidRequestError
from inference.samplers import (
    TCD_DEFAULT_ETA,
    build_schedule,
    make_denoiser,
    noise_like,
    sample,
)
from inference.samplers.registry import (
    SAMPLERS,
    SPACINGS,
    check_spacing,
    equivalent_class,
    sampler_for_scheduler_class,
    scheduler_substitution,
)

diffusers = pytest.importorskip("diffusers")
from diffusers.utils.torch_utils import randn_tensor  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

FINAL_TOL = 1e-4


def toy_unet(x_in: torch.Tensor, t) -> torch.Tensor:
    """Deterministic, nonlinear, timestep-dependent stand-in for a UNet that, unlike
    test_samplers' toy, mostly predicts its input back: as eps, v or EDM output that keeps the
    latents at a real model's scale (|x0| of a few units), so an absolute 1e-4 on the final
    latents means what it would for real latents."""
    t = float(t)
    return 0.7 * x_in + 0.3 * torch.tanh(x_in) + 0.05 * torch.roll(x_in, 1, dims=1) + 0.01 * t / 1000.0 * x_in

SDXL = {  # stabilityai/stable-diffusion-xl-base-1.0 scheduler_config.json
    "_class_name": "EulerDiscreteScheduler",
    "_diffusers_version": "0.19.0.dev0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "sample_max_value": 1.0,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "trained_betas": None,
    "use_karras_sigmas": False,
}
PLAYGROUND = {  # modelled on playground-v2.5-1024px-aesthetic's scheduler_config.json
    "_class_name": "EDMDPMSolverMultistepScheduler",
    "_diffusers_version": "0.27.0.dev0",
    "algorithm_type": "dpmsolver++",
    "dynamic_thresholding_ratio": 0.995,
    "euler_at_final": False,
    "final_sigmas_type": "zero",
    "lower_order_final": True,
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "rho": 7.0,
    "sample_max_value": 1.0,
    "sigma_data": 0.5,
    "sigma_max": 80.0,
    "sigma_min": 0.002,
    "solver_order": 2,
    "solver_type": "midpoint",
    "thresholding": False,
}
PLAYGROUND_V = {**PLAYGROUND, "prediction_type": "v_prediction"}
PLAYGROUND_EULER = {**PLAYGROUND, "_class_name": "EDMEulerScheduler"}
TCD_CONFIGS = {"sd15": SD15, "sdxl": SDXL, "sd21_v": SD21}


# ---------------------------------------------------------------------------------------------
# The two loops


def run_diffusers(scheduler, steps, strength=1.0, step_kwargs=None, timesteps_set=None):
    """diffusers' img2img/txt2img loop over an already configured scheduler."""
    if timesteps_set is None:
        scheduler.set_timesteps(steps)
    else:
        timesteps_set(scheduler)
    generator = torch.Generator().manual_seed(SEED)
    init_timestep = min(int(steps * strength), steps)
    t_start = max(steps - init_timestep, 0)
    timesteps = scheduler.timesteps[t_start * scheduler.order:]
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(t_start * scheduler.order)
    noise = randn_tensor(SHAPE, generator=generator)
    if strength < 1.0:
        latents = scheduler.add_noise(clean_latents(), noise, timesteps[:1].repeat(SHAPE[0]))
    else:
        latents = noise * scheduler.init_noise_sigma
    calls, trajectory = [], []
    for t in timesteps:
        x_in = scheduler.scale_model_input(latents, t)
        calls.append((x_in.clone(), float(t)))
        out = toy_unet(x_in, t)
        latents = scheduler.step(out, t, latents, generator=generator, return_dict=False, **(step_kwargs or {}))[0]
        trajectory.append(latents.clone())
    return latents, calls, trajectory


def run_ours(name, cfg, steps, strength=1.0, spacing=None, eta=None):
    schedule = build_schedule(name, cfg, steps, spacing=spacing, strength=strength, eta=eta)
    generator = torch.Generator().manual_seed(SEED)
    noise = noise_like(torch.empty(SHAPE), generator)
    x = schedule.noised_latents(clean_latents(), noise) if strength < 1.0 else schedule.initial_latents(noise)
    calls, trajectory = [], []

    def unet_fn(x_in, t):
        calls.append((x_in.clone(), t))
        return toy_unet(x_in, t)

    def callback(i, x, denoised):
        trajectory.append(schedule.to_diffusers(x, i + 1))

    model = make_denoiser(unet_fn, schedule.prediction_type, schedule)
    x = sample(name, model, x, schedule, generator=generator, callback=callback)
    return schedule.output_latents(x), calls, trajectory, schedule


def compare(ours, ref, exact_timesteps=True) -> float:
    """Assert every UNet call and latent agree; return the final latents' max abs diff."""
    out, calls, traj, _ = ours
    ref_out, ref_calls, ref_traj = ref
    assert len(calls) == len(ref_calls)
    if exact_timesteps:
        assert [t for _, t in calls] == [t for _, t in ref_calls], "UNet timesteps differ"
    else:
        np.testing.assert_allclose([t for _, t in calls], [t for _, t in ref_calls], rtol=1e-6, atol=1e-6)
    for (x_in, _), (ref_in, _) in zip(calls, ref_calls, strict=True):
        scale = max(1.0, ref_in.abs().max().item())
        torch.testing.assert_close(x_in, ref_in, rtol=1e-5, atol=FINAL_TOL * scale)
    for step, ref_step in zip(traj, ref_traj, strict=True):
        scale = max(1.0, ref_step.abs().max().item())
        torch.testing.assert_close(step, ref_step, rtol=1e-5, atol=FINAL_TOL * scale)
    size = ref_out.abs().max().item()
    assert size > 1e-3, "degenerate reference: the comparison would prove nothing"
    diff = (out - ref_out).abs().max().item()
    # Absolute on real-scale latents, and relative too for the few runs that end small.
    assert diff <= FINAL_TOL and diff <= 1e-4 * size, (diff, size)
    return diff


# ---------------------------------------------------------------------------------------------
# TCD


def tcd_reference(cfg, steps, strength, eta):
    scheduler = diffusers.TCDScheduler.from_config(cfg)
    return run_diffusers(scheduler, steps, strength, {"eta": eta})


def _tcd_cases():
    for config in TCD_CONFIGS:
        for steps in (1, 2, 4, 8):
            for eta in (0.3, 0.0, 0.7, 1.0):
                for strength in (1.0, 0.5):
                    if int(steps * strength) >= 1:
                        yield pytest.param(config, steps, eta, strength, id=f"{config}-{steps}-eta{eta}-{strength}")


@pytest.mark.parametrize(("config", "steps", "eta", "strength"), list(_tcd_cases()))
def test_tcd_matches_diffusers(config, steps, eta, strength):
    cfg = TCD_CONFIGS[config]
    compare(run_ours("tcd", cfg, steps, strength, eta=eta), tcd_reference(cfg, steps, strength, eta))


def test_tcd_default_eta_is_diffusers_step_default():
    # diffusers' TCDScheduler.step defaults eta to 0.3, the value TCD's authors recommend.
    assert TCD_DEFAULT_ETA == 0.3
    ours = run_ours("tcd", SDXL, 4)
    scheduler = diffusers.TCDScheduler.from_config(SDXL)
    compare(ours, run_diffusers(scheduler, 4))  # step() called without eta
    assert ours[3].timestep_values == (999.0, 759.0, 499.0, 259.0)


@settings(max_examples=40, deadline=None)
@given(steps=st.integers(1, 50), strength=st.floats(0.05, 1.0), eta=st.floats(0.0, 1.0),
       config=st.sampled_from(sorted(TCD_CONFIGS)))
def test_tcd_matches_diffusers_for_any_steps_strength_eta(steps, strength, eta, config):
    cfg = TCD_CONFIGS[config]
    if int(steps * strength) < 1:
        with pytest.raises(InvalidRequestError, match="strength"):
            build_schedule("tcd", cfg, steps, strength=strength, eta=eta)
        return
    compare(run_ours("tcd", cfg, steps, strength, eta=eta), tcd_reference(cfg, steps, strength, eta))


def test_tcd_last_step_lands_on_alpha_cumprod_0():
    # TCD's last step goes to s = floor((1 - gamma) * 0) = 0: alpha_cumprod[0], not sigma 0.
    schedule = build_schedule("tcd", SDXL, 4)
    ac0 = diffusers.TCDScheduler.from_config(SDXL).alphas_cumprod[0].item()
    assert schedule.sigma_values[-1] == pytest.approx(math.sqrt((1 - ac0) / ac0), rel=1e-6)
    assert schedule.tcd_gamma == 0.3 and schedule.vp_latents


@pytest.mark.parametrize("eta", [-0.1, 1.5, True])
def test_tcd_rejects_bad_eta(eta):
    with pytest.raises(InvalidRequestError, match="eta"):
        build_schedule("tcd", SDXL, 4, eta=eta)


def test_eta_is_for_tcd_only():
    with pytest.raises(InvalidRequestError, match="'euler_a'"):
        build_schedule("euler_a", SDXL, 4, eta=0.5)


# ---------------------------------------------------------------------------------------------
# EDM


EDM_CLASSES = {"euler": diffusers.EDMEulerScheduler, "dpmpp_2m_karras": diffusers.EDMDPMSolverMultistepScheduler}
EDM_CONFIGS = {"playground": PLAYGROUND, "playground_v": PLAYGROUND_V, "edm_euler_class": PLAYGROUND_EULER}


def edm_reference(name, cfg, steps, strength=1.0):
    scheduler = EDM_CLASSES[name].from_config(cfg)
    return run_diffusers(scheduler, steps, strength)


def _edm_cases():
    for name in EDM_CLASSES:
        for config in EDM_CONFIGS:
            for steps in (1, 2, 4, 20, 30):
                for strength in (1.0, 0.6):
                    if int(steps * strength) >= 1:
                        yield pytest.param(name, config, steps, strength, id=f"{name}-{config}-{steps}-{strength}")


@pytest.mark.parametrize(("name", "config", "steps", "strength"), list(_edm_cases()))
def test_edm_matches_diffusers(name, config, steps, strength):
    cfg = EDM_CONFIGS[config]
    compare(run_ours(name, cfg, steps, strength), edm_reference(name, cfg, steps, strength))


@pytest.mark.parametrize(
    ("name", "cfg", "steps"),
    [
        ("euler", {**PLAYGROUND, "final_sigmas_type": "sigma_min"}, 10),
        ("dpmpp_2m_karras", {**PLAYGROUND, "final_sigmas_type": "sigma_min"}, 10),
        ("dpmpp_2m_karras", {**PLAYGROUND, "final_sigmas_type": "sigma_min", "lower_order_final": False}, 16),
        ("dpmpp_2m_karras", {**PLAYGROUND, "euler_at_final": True}, 16),
        ("dpmpp_2m_karras", {**PLAYGROUND, "solver_type": "heun"}, 12),
        ("dpmpp_2m_karras", {**PLAYGROUND, "thresholding": True, "sample_max_value": 1.5}, 8),
        ("euler", {**PLAYGROUND, "sigma_schedule": "exponential"}, 12),
        ("euler", {**PLAYGROUND, "sigma_data": 1.0, "sigma_min": 0.01, "sigma_max": 20.0, "rho": 5.0}, 9),
        ("dpmpp_2m_karras", {**PLAYGROUND_V, "sigma_data": 1.0, "sigma_max": 40.0}, 9),
        ("euler", {"_class_name": "EDMEulerScheduler"}, 6),  # bare defaults
    ],
    ids=lambda v: str(v) if isinstance(v, (int, str)) else None,
)
def test_edm_config_variants_match_diffusers(name, cfg, steps):
    compare(run_ours(name, cfg, steps), edm_reference(name, cfg, steps))


@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(sorted(EDM_CLASSES)), config=st.sampled_from(sorted(EDM_CONFIGS)),
       steps=st.integers(1, 40), strength=st.floats(0.05, 1.0))
def test_edm_matches_diffusers_for_any_steps_strength(name, config, steps, strength):
    cfg = EDM_CONFIGS[config]
    if int(steps * strength) < 1:
        with pytest.raises(InvalidRequestError, match="strength"):
            build_schedule(name, cfg, steps, strength=strength)
        return
    compare(run_ours(name, cfg, steps, strength), edm_reference(name, cfg, steps, strength))


def test_edm_schedule_numbers():
    schedule = build_schedule("dpmpp_2m_karras", PLAYGROUND, 30)
    assert schedule.edm_sigma_data == 0.5 and not schedule.vp_latents
    assert schedule.sigma_values[0] == pytest.approx(80.0, rel=1e-6)
    assert schedule.sigma_values[-2] == pytest.approx(0.002, rel=1e-5) and schedule.sigma_values[-1] == 0.0
    assert schedule.timestep_values[0] == pytest.approx(0.25 * math.log(80.0), rel=1e-6)
    assert schedule.init_noise_sigma == pytest.approx(math.sqrt(80.0**2 + 1), rel=1e-9)
    assert schedule.orders == (1,) + (2,) * 28 + (1,)


def test_edm_preconditioning_formulas():
    # One call: x0 = c_skip x + c_out F(c_in x), c_noise as the timestep (Karras et al. table 1).
    seen = []

    def unet_fn(x_in, t):
        seen.append((x_in, t))
        return torch.full_like(x_in, 2.0)

    for prediction, sign in (("epsilon", 1.0), ("v_prediction", -1.0)):
        schedule = build_schedule("euler", {**PLAYGROUND, "prediction_type": prediction}, 4)
        model = make_denoiser(unet_fn, prediction, schedule)
        x, sigma = torch.ones(1, 4, 2, 2), 3.0
        out = model(x, sigma, 0.25 * math.log(sigma))
        total = sigma**2 + 0.25
        assert seen[-1][0][0, 0, 0, 0].item() == pytest.approx(1 / math.sqrt(total), rel=1e-6)
        expected = 0.25 / total + 2.0 * sign * sigma * 0.5 / math.sqrt(total)
        assert out[0, 0, 0, 0].item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("name", ["euler_a", "ddim", "lcm", "tcd"])
def test_edm_config_refuses_other_samplers_by_name(name):
    with pytest.raises(InvalidRequestError) as info:
        build_schedule(name, PLAYGROUND, 8)
    message = str(info.value)
    assert f"'{name}'" in message and "EDMDPMSolverMultistepScheduler" in message
    assert "euler (EDMEulerScheduler)" in message and "\n" not in message


def test_edm_refuses_sample_prediction_and_sigma_spacings():
    with pytest.raises(InvalidRequestError, match="'sample'"):
        build_schedule("euler", {**PLAYGROUND, "prediction_type": "sample"}, 8)
    with pytest.raises(InvalidRequestError, match="'sgm_uniform'"):
        build_schedule("euler", PLAYGROUND, 8, spacing="sgm_uniform")
    # diffusers' own spacings are not EDM keys: ignored, as EDM's from_config ignores them.
    a, b = build_schedule("euler", PLAYGROUND, 8, spacing="trailing"), build_schedule("euler", PLAYGROUND, 8)
    assert torch.equal(a.sigmas, b.sigmas) and torch.equal(a.timesteps, b.timesteps)


def test_denoiser_and_schedule_preconditioning_must_agree():
    edm = build_schedule("euler", PLAYGROUND, 4)
    vp = build_schedule("euler", SD15, 4)
    x = edm.initial_latents(torch.zeros(SHAPE))
    with pytest.raises(InvalidRequestError, match="make_denoiser"):
        sample("euler", make_denoiser(toy_unet, "epsilon"), x, edm)
    with pytest.raises(InvalidRequestError, match="make_denoiser"):
        sample("euler", make_denoiser(toy_unet, "epsilon", edm), x, vp)
    # A VP schedule passed to make_denoiser changes nothing for VP models.
    a = sample("euler", make_denoiser(toy_unet, "epsilon"), x, vp)
    b = sample("euler", make_denoiser(toy_unet, "epsilon", vp), x, vp)
    assert torch.equal(a, b)


def test_edm_img2img_noises_like_add_noise():
    clean, noise = clean_latents(), torch.randn(SHAPE, generator=torch.Generator().manual_seed(5))
    for name, cls in EDM_CLASSES.items():
        schedule = build_schedule(name, PLAYGROUND, 10, strength=0.4)
        scheduler = cls.from_config(PLAYGROUND)
        scheduler.set_timesteps(10)
        scheduler.set_begin_index(6)
        ref = scheduler.add_noise(clean, noise, scheduler.timesteps[6:7])
        torch.testing.assert_close(schedule.noised_latents(clean, noise), ref, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# sgm_uniform and simple


def simple_formula(train: np.ndarray, steps: int) -> tuple[list[int], list[float]]:
    """ComfyUI's "simple", written out: index N-1-int(x * N/steps) for x < steps, then sigma 0."""
    n = len(train)
    index = [n - 1 - int(x * (n / steps)) for x in range(steps)]
    return index, [float(train[i]) for i in index] + [0.0]


def sgm_uniform_formula(train: np.ndarray, steps: int) -> list[float]:
    """ComfyUI's "sgm_uniform" in float64: t = linspace(N-1, 0, steps+1)[:-1], sigma by log-linear
    interpolation of the training table, then 0."""
    n = len(train)
    t = np.linspace(n - 1, 0, steps + 1)[:-1]
    return list(np.exp(np.interp(t, np.arange(n), np.log(train.astype(np.float64))))) + [0.0]


def train_sigmas(cfg) -> np.ndarray:
    ac = diffusers.EulerDiscreteScheduler.from_config(cfg).alphas_cumprod
    return (((1 - ac) / ac) ** 0.5).numpy()


def euler_reference(name, cfg, steps, strength, *, timesteps=None, sigmas=None):
    """diffusers Euler / Euler-a walking exactly the given timesteps or sigmas."""
    base = {**cfg, "timestep_spacing": "trailing"}  # init_noise_sigma = max sigma, as ours
    if name == "euler":
        scheduler = diffusers.EulerDiscreteScheduler.from_config(base)
        kwargs = {"timesteps": timesteps} if sigmas is None else {"sigmas": sigmas}
        return run_diffusers(scheduler, steps, strength, timesteps_set=lambda s: s.set_timesteps(**kwargs))
    scheduler = diffusers.EulerAncestralDiscreteScheduler.from_config(base)

    def set_walk(s):  # EulerAncestral has no custom-sigma API: set its two tables directly
        s.set_timesteps(steps)
        s.sigmas = torch.tensor(sigmas, dtype=torch.float32)
        s.timesteps = torch.tensor(timesteps, dtype=torch.float32)

    return run_diffusers(scheduler, steps, strength, timesteps_set=set_walk)


@pytest.mark.parametrize("name", ["euler", "euler_a"])
@pytest.mark.parametrize("steps", [1, 2, 4, 8, 5, 10, 25])
@pytest.mark.parametrize("config", ["sd15", "sd21_v", "sdxl"])
def test_simple_equals_trailing_when_steps_divide_1000(name, steps, config):
    cfg = {"sd15": SD15, "sd21_v": SD21, "sdxl": SDXL}[config]
    ours = build_schedule(name, cfg, steps, spacing="simple")
    trailing = build_schedule(name, cfg, steps, spacing="trailing")
    assert torch.equal(ours.timesteps, trailing.timesteps) and torch.equal(ours.sigmas, trailing.sigmas)
    assert ours.init_noise_sigma == trailing.init_noise_sigma
    # and the whole run equals diffusers' scheduler with timestep_spacing="trailing"
    scheduler = {"euler": diffusers.EulerDiscreteScheduler,
                 "euler_a": diffusers.EulerAncestralDiscreteScheduler}[name].from_config(cfg, timestep_spacing="trailing")
    compare(run_ours(name, cfg, steps, spacing="simple"), run_diffusers(scheduler, steps))


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(["euler", "euler_a"]), steps=st.integers(1, 60), strength=st.floats(0.1, 1.0),
       config=st.sampled_from(["sd15", "sd21_v", "turbo"]))
def test_simple_equals_formula_and_diffusers_custom_timesteps(name, steps, strength, config):
    cfg = {"sd15": SD15, "sd21_v": SD21, "turbo": TURBO}[config]
    if int(steps * strength) < 1:
        return
    index, sigmas = simple_formula(train_sigmas(cfg), steps)
    schedule = build_schedule(name, cfg, steps, spacing="simple")
    assert schedule.timesteps.tolist() == [float(i) for i in index]
    assert list(schedule.sigma_values) == pytest.approx(sigmas, rel=1e-6)
    ref = euler_reference(name, cfg, steps, strength, timesteps=index,
                          sigmas=None if name == "euler" else sigmas)
    compare(run_ours(name, cfg, steps, strength, spacing="simple"), ref)


def test_simple_differs_from_trailing_where_rounding_differs():
    # 3 steps: trailing rounds 333.3 -> [999, 666, 332]; simple truncates -> [999, 666, 333].
    assert build_schedule("euler", SD15, 3, spacing="trailing").timesteps.tolist() == [999.0, 666.0, 332.0]
    assert build_schedule("euler", SD15, 3, spacing="simple").timesteps.tolist() == [999.0, 666.0, 333.0]


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(["euler", "euler_a"]), steps=st.integers(1, 60), strength=st.floats(0.1, 1.0),
       config=st.sampled_from(["sd15", "sd21_v", "sdxl"]))
def test_sgm_uniform_equals_formula_and_diffusers_custom_sigmas(name, steps, strength, config):
    cfg = {"sd15": SD15, "sd21_v": SD21, "sdxl": SDXL}[config]
    if int(steps * strength) < 1:
        return
    schedule = build_schedule(name, cfg, steps, spacing="sgm_uniform")
    formula = sgm_uniform_formula(train_sigmas(cfg), steps)
    np.testing.assert_allclose(schedule.sigma_values, formula, rtol=2e-6, atol=0)
    np.testing.assert_allclose(schedule.timestep_values, np.linspace(999, 0, steps + 1)[:-1], rtol=0, atol=2e-3)
    ref = euler_reference(name, cfg, steps, strength, timesteps=list(schedule.timestep_values),
                          sigmas=list(schedule.sigma_values))
    compare(run_ours(name, cfg, steps, strength, spacing="sgm_uniform"), ref)


def test_sgm_uniform_numbers():
    # 4 steps: t = 999, 749.25, 499.5, 249.75 (trailing would be 999, 749, 499, 249).
    schedule = build_schedule("euler", SDXL, 4, spacing="sgm_uniform")
    np.testing.assert_allclose(schedule.timestep_values, [999.0, 749.25, 499.5, 249.75], atol=2e-3)
    assert schedule.sigma_values[0] == pytest.approx(14.614647, rel=1e-6) and schedule.sigma_values[-1] == 0.0
    assert schedule.init_noise_sigma == pytest.approx(14.614647, rel=1e-6)


@pytest.mark.parametrize("name", ["dpmpp_2m_karras", "ddim", "lcm", "tcd"])
@pytest.mark.parametrize("spacing", ["sgm_uniform", "simple"])
def test_sigma_spacings_refused_where_they_make_no_sense(name, spacing):
    with pytest.raises(InvalidRequestError) as info:
        build_schedule(name, SD15, 4, spacing=spacing)
    assert f"'{spacing}'" in str(info.value) and f"'{name}'" in str(info.value)
    assert "euler, euler_a" in str(info.value)


def test_sigma_spacing_with_karras_config_is_refused():
    with pytest.raises(InvalidRequestError, match="use_karras_sigmas"):
        build_schedule("euler", {**SD15, "use_karras_sigmas": True}, 4, spacing="sgm_uniform")


def test_sigma_spacing_is_not_a_config_value():
    # A scheduler_config.json only names diffusers' spacings.
    with pytest.raises(InvalidRequestError, match="'simple'"):
        build_schedule("euler", {**SD15, "timestep_spacing": "simple"}, 4)


def test_spacings_registry():
    assert SPACINGS == ("leading", "linspace", "trailing", "sgm_uniform", "simple")
    assert "sgm_uniform" in SAMPLERS["euler"].spacings and "simple" in SAMPLERS["euler_a"].spacings
    assert "simple" not in SAMPLERS["ddim"].spacings
    check_spacing("lcm", "trailing")  # accepted (and ignored, as diffusers does)
    check_spacing("euler", None)


# ---------------------------------------------------------------------------------------------
# Registry: TCD, EDM, substitution warning


def test_registry_classes():
    assert SAMPLERS["tcd"].scheduler_class == "TCDScheduler"
    assert sampler_for_scheduler_class("TCDScheduler") == "tcd"
    assert sampler_for_scheduler_class("EDMDPMSolverMultistepScheduler") == "dpmpp_2m_karras"
    assert sampler_for_scheduler_class("EDMEulerScheduler") == "euler"
    assert sampler_for_scheduler_class("PNDMScheduler") is None
    assert equivalent_class("euler", "EDMDPMSolverMultistepScheduler") == "EDMEulerScheduler"
    assert equivalent_class("euler", "PNDMScheduler") == "EulerDiscreteScheduler"


@pytest.mark.parametrize(
    ("class_name", "sampler", "explicit", "expected"),
    [
        ("PNDMScheduler", "euler", False,
         "model's scheduler PNDMScheduler is not implemented; sampling with euler (EulerDiscreteScheduler)"),
        ("UniPCMultistepScheduler", "dpmpp_2m_karras", False,
         ("model's scheduler UniPCMultistepScheduler is not implemented; "
          "sampling with dpmpp_2m_karras (DPMSolverMultistepScheduler)")),
        ("DEISMultistepScheduler", "euler", False,
         "model's scheduler DEISMultistepScheduler is not implemented; sampling with euler (EulerDiscreteScheduler)"),
        ("HeunDiscreteScheduler", "euler_a", False,
         ("model's scheduler HeunDiscreteScheduler is not implemented; "
          "sampling with euler_a (EulerAncestralDiscreteScheduler)")),
        ("KDPM2DiscreteScheduler", "lcm", False,
         "model's scheduler KDPM2DiscreteScheduler is not implemented; sampling with lcm (LCMScheduler)"),
        ("DPMSolverSinglestepScheduler", "tcd", False,
         "model's scheduler DPMSolverSinglestepScheduler is not implemented; sampling with tcd (TCDScheduler)"),
        ("PNDMScheduler", "euler", True, None),  # the user chose the sampler
        ("EulerDiscreteScheduler", "euler", False, None),  # equal
        ("EDMDPMSolverMultistepScheduler", "dpmpp_2m_karras", False, None),
        ("EDMDPMSolverMultistepScheduler", "euler", False, None),  # EDM Euler: implemented
        ("TCDScheduler", "tcd", False, None),
        ("DDIMScheduler", "euler", False, None),  # implemented: running euler is a choice
        (None, "euler", False, None),
        ("", "euler", False, None),
    ],
)
def test_scheduler_substitution(class_name, sampler, explicit, expected):
    assert scheduler_substitution(class_name, sampler, explicit=explicit) == expected


def test_scheduler_substitution_rejects_unknown_sampler():
    with pytest.raises(InvalidRequestError, match="'heun'"):
        scheduler_substitution("PNDMScheduler", "heun")


def test_registry_and_api_import_without_torch():
    code = ("import sys, inference.api, inference.samplers.registry as r; "
            "assert 'torch' not in sys.modules; print(r.scheduler_substitution('PNDMScheduler', 'euler'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().startswith("model's scheduler PNDMScheduler is not implemented")


@pytest.mark.gpu
@pytest.mark.parametrize(("name", "cfg"), [("euler", PLAYGROUND), ("dpmpp_2m_karras", PLAYGROUND_V), ("tcd", SDXL)])
def test_cuda_matches_cpu(name, cfg):
    schedule = build_schedule(name, cfg, 6)
    model = make_denoiser(toy_unet, schedule.prediction_type, schedule)
    x = schedule.initial_latents(torch.randn(SHAPE, generator=torch.Generator().manual_seed(0)))
    cpu = sample(name, model, x, schedule, generator=torch.Generator().manual_seed(4))
    gpu = sample(name, model, x.cuda(), schedule, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-4)


def test_new_sampling_loops_make_no_tensor_to_python_conversions(monkeypatch):
    # Proxy for "no host syncs", as in test_samplers: TCD and the EDM loops included.
    cases = [("tcd", SDXL), ("euler", PLAYGROUND), ("dpmpp_2m_karras", PLAYGROUND_V)]
    schedules = [(name, build_schedule(name, cfg, 4)) for name, cfg in cases]
    calls = []
    real_item, real_tolist = torch.Tensor.item, torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "item", lambda self: calls.append("item") or real_item(self))
    monkeypatch.setattr(torch.Tensor, "tolist", lambda self: calls.append("tolist") or real_tolist(self))
    for name, schedule in schedules:
        model = make_denoiser(toy_unet, schedule.prediction_type, schedule)
        x = schedule.initial_latents(torch.randn(SHAPE, generator=torch.Generator().manual_seed(0)))
        sample(name, model, x, schedule, generator=torch.Generator().manual_seed(1))
    assert calls == []
