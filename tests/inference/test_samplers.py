"""Samplers against diffusers' schedulers (the oracle), plus their own contract.

Each oracle case runs diffusers' denoising loop (from_config, set_timesteps, img2img truncation,
init_noise_sigma / add_noise, scale_model_input, step with the generator) and ours with the same
deterministic toy "UNet" and seed, and compares every UNet call and every intermediate latent.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.errors import CancelledError, InvalidRequestError
from inference.samplers import (
    SAMPLER_NAMES,
    SAMPLERS,
    SchedulerConfig,
    build_schedule,
    make_denoiser,
    noise_like,
    sample,
)

diffusers = pytest.importorskip("diffusers")
from diffusers.utils.torch_utils import randn_tensor  # noqa: E402

# diffusers' schedulers call np.array on tensors, which numpy 2 flags; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SHAPE = (2, 4, 8, 8)
SEED = 31

SD15 = {  # runwayml/stable-diffusion-v1-5 scheduler_config.json
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.6.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
}
SD15_LEADING = {**SD15, "timestep_spacing": "leading"}
SD21 = {  # stabilityai/stable-diffusion-2-1
    **SD15,
    "_class_name": "DDIMScheduler",
    "prediction_type": "v_prediction",
}
TURBO = {  # stabilityai/sd-turbo
    **SD15,
    "_class_name": "EulerDiscreteScheduler",
    "interpolation_type": "linear",
    "prediction_type": "epsilon",
    "sample_max_value": 1.0,
    "timestep_spacing": "trailing",
    "use_karras_sigmas": False,
}
CONFIGS = {"sd15": SD15, "sd15_leading": SD15_LEADING, "sd21_v": SD21, "turbo": TURBO}


def diffusers_scheduler(name: str, cfg: dict, spacing: str | None = None):
    overrides = {} if spacing is None else {"timestep_spacing": spacing}
    if name == "euler":
        return diffusers.EulerDiscreteScheduler.from_config(cfg, **overrides)
    if name == "euler_a":
        return diffusers.EulerAncestralDiscreteScheduler.from_config(cfg, **overrides)
    if name == "dpmpp_2m_karras":
        return diffusers.DPMSolverMultistepScheduler.from_config(
            cfg, algorithm_type="dpmsolver++", solver_order=2, use_karras_sigmas=True, **overrides
        )
    if name == "ddim":
        return diffusers.DDIMScheduler.from_config(cfg, **overrides)
    if name == "tcd":  # step()'s default eta, 0.3, is also ours
        return diffusers.TCDScheduler.from_config(cfg, **overrides)
    return diffusers.LCMScheduler.from_config(cfg, **overrides)


def toy_unet(x_in: torch.Tensor, t) -> torch.Tensor:
    """Deterministic, nonlinear, timestep-dependent stand-in for a UNet (eps, v or x0)."""
    t = float(t)
    return 0.3 * torch.tanh(x_in) + 0.01 * t / 1000.0 * x_in + 0.05 * torch.roll(x_in, 1, dims=1)


def clean_latents() -> torch.Tensor:
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(1234)) * 0.8


def blend_mask() -> torch.Tensor:
    mask = torch.zeros(SHAPE)
    mask[..., :, :4] = 1.0  # left half is generated, right half is known
    return mask


def run_diffusers(name, cfg, steps, strength=1.0, spacing=None, inpaint=False):
    """The diffusers loop as StableDiffusion(Img2Img|Inpaint)Pipeline runs it."""
    scheduler = diffusers_scheduler(name, cfg, spacing)
    scheduler.set_timesteps(steps)
    generator = torch.Generator().manual_seed(SEED)
    timesteps = scheduler.timesteps
    # get_timesteps. txt2img pipelines leave begin_index unset, which only differs when the first
    # timestep repeats (diffusers then starts at the repeat and runs off the end): set it always.
    init_timestep = min(int(steps * strength), steps)
    t_start = max(steps - init_timestep, 0)
    timesteps = scheduler.timesteps[t_start * scheduler.order :]
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(t_start * scheduler.order)
    noise = randn_tensor(SHAPE, generator=generator)
    if strength < 1.0:
        latents = scheduler.add_noise(clean_latents(), noise, timesteps[:1].repeat(SHAPE[0]))
    else:
        latents = noise * scheduler.init_noise_sigma
    calls, trajectory = [], []
    for i, t in enumerate(timesteps):
        x_in = scheduler.scale_model_input(latents, t)
        out = toy_unet(x_in, t)
        calls.append((x_in.clone(), float(t)))
        latents = scheduler.step(out, t, latents, generator=generator, return_dict=False)[0]
        if inpaint:
            known = clean_latents()
            if i < len(timesteps) - 1:
                known = scheduler.add_noise(known, noise, torch.tensor([timesteps[i + 1]]))
            latents = (1 - blend_mask()) * known + blend_mask() * latents
        trajectory.append(latents.clone())
    return latents, calls, trajectory


def run_ours(name, cfg, steps, strength=1.0, spacing=None, inpaint=False):
    schedule = build_schedule(name, cfg, steps, spacing=spacing, strength=strength)
    generator = torch.Generator().manual_seed(SEED)
    noise = noise_like(torch.empty(SHAPE), generator)
    x = schedule.noised_latents(clean_latents(), noise) if strength < 1.0 else schedule.initial_latents(noise)
    calls, trajectory = [], []

    def unet_fn(x_in, t):
        calls.append((x_in.clone(), t))
        return toy_unet(x_in, t)

    def callback(i, x, denoised):
        if inpaint:
            last = i == schedule.num_steps - 1
            known = schedule.from_diffusers(clean_latents(), i + 1) if last else (
                schedule.noised_latents(clean_latents(), noise, i + 1)
            )
            x = (1 - blend_mask()) * known + blend_mask() * x
        trajectory.append(schedule.to_diffusers(x, i + 1))
        return x

    model = make_denoiser(unet_fn, schedule.prediction_type)
    x = sample(name, model, x, schedule, generator=generator, callback=callback)
    return schedule.output_latents(x), calls, trajectory, schedule


def assert_matches(name, cfg, steps, strength=1.0, spacing=None, inpaint=False, tol=1e-4):
    ref, ref_calls, ref_traj = run_diffusers(name, cfg, steps, strength, spacing, inpaint)
    out, calls, traj, schedule = run_ours(name, cfg, steps, strength, spacing, inpaint)
    assert [t for _, t in calls] == [t for _, t in ref_calls], "UNet timesteps differ"
    assert schedule.timestep_values == tuple(t for _, t in ref_calls)
    for (x_in, _), (ref_in, _) in zip(calls, ref_calls, strict=True):
        scale = max(1.0, ref_in.abs().max().item())
        torch.testing.assert_close(x_in, ref_in, rtol=1e-5, atol=tol * scale)
    for ours_step, ref_step in zip(traj, ref_traj, strict=True):
        scale = max(1.0, ref_step.abs().max().item())
        torch.testing.assert_close(ours_step, ref_step, rtol=1e-5, atol=tol * scale)
    scale = max(1.0, ref.abs().max().item())
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=tol * scale)


def _oracle_cases():
    for name in SAMPLER_NAMES:
        step_counts = (1, 2, 4, 20) if name in ("lcm", "dpmpp_2m_karras") else (1, 4, 20)
        for config in ("sd15", "sd21_v", "turbo"):
            for steps in step_counts:
                for strength in (1.0, 0.5):
                    if int(steps * strength) < 1:
                        continue
                    yield pytest.param(name, config, steps, strength, id=f"{name}-{config}-{steps}-{strength}")


@pytest.mark.parametrize(("name", "config", "steps", "strength"), list(_oracle_cases()))
def test_matches_diffusers(name, config, steps, strength):
    assert_matches(name, CONFIGS[config], steps, strength)


@pytest.mark.parametrize("name", SAMPLER_NAMES)
@pytest.mark.parametrize("spacing", ["leading", "linspace", "trailing"])
def test_spacing_override_matches_diffusers(name, spacing):
    assert_matches(name, SD15, 7, spacing=spacing)
    assert_matches(name, SD21, 10, 0.7, spacing=spacing)


@pytest.mark.parametrize(
    ("name", "cfg", "steps", "strength"),
    [
        # Euler's "leading" init_noise_sigma quirk, and its from_config default spacing.
        ("euler", SD15_LEADING, 20, 1.0),
        ("euler_a", SD15_LEADING, 20, 1.0),
        ("euler", {}, 12, 1.0),  # bare defaults: linear betas
        # Karras sigmas requested by the config (unrounded fractional timesteps).
        ("euler", {**SD15, "use_karras_sigmas": True}, 10, 1.0),
        ("euler", {**SD15, "use_karras_sigmas": True, "sigma_min": 0.1, "sigma_max": 10.0}, 6, 1.0),
        ("euler", {**SD15, "final_sigmas_type": "sigma_min"}, 8, 1.0),
        ("euler", {**SD21, "timestep_type": "continuous"}, 8, 1.0),
        ("euler", {**SD15, "prediction_type": "sample"}, 6, 1.0),
        # Zero terminal SNR: the k-diffusion-style classes clamp alpha_bar[-1] to 2**-24.
        ("euler", {**SD21, "rescale_betas_zero_snr": True, "timestep_spacing": "trailing"}, 8, 1.0),
        ("euler_a", {**SD21, "rescale_betas_zero_snr": True, "timestep_spacing": "trailing"}, 8, 1.0),
        ("dpmpp_2m_karras", {**SD21, "rescale_betas_zero_snr": True}, 8, 1.0),
        ("ddim", {**SD21, "rescale_betas_zero_snr": True}, 8, 1.0),  # leading: t=999 never used
        # DPM variants.
        ("dpmpp_2m_karras", {**SD15, "final_sigmas_type": "sigma_min"}, 8, 1.0),
        ("dpmpp_2m_karras", {**SD15, "final_sigmas_type": "sigma_min", "lower_order_final": False}, 16, 1.0),
        ("dpmpp_2m_karras", {**SD15, "solver_type": "heun"}, 8, 1.0),
        ("dpmpp_2m_karras", {**SD15, "thresholding": True, "sample_max_value": 1.5}, 6, 1.0),
        ("dpmpp_2m_karras", {**SD15, "beta_schedule": "squaredcos_cap_v2"}, 8, 1.0),
        ("dpmpp_2m_karras", {**SD15, "sigma_min": 0.1}, 8, 1.0),  # undeclared, yet read by DPM
        ("dpmpp_2m_karras", {**TURBO, "sigma_min": 0.1, "sigma_max": 12.0}, 8, 1.0),
        ("dpmpp_2m_karras", SD15, 50, 0.3),  # duplicate rounded timesteps at the tail
        # DDIM: default clip_sample, set_alpha_to_one, thresholding, prev-timestep mismatch.
        ("ddim", {k: v for k, v in SD15.items() if k != "clip_sample"}, 6, 1.0),
        ("ddim", {**SD15, "set_alpha_to_one": True}, 6, 1.0),
        ("ddim", {**SD15, "thresholding": True, "sample_max_value": 1.2}, 6, 1.0),
        ("ddim", {**SD15, "timestep_spacing": "linspace"}, 6, 1.0),
        ("ddim", {**SD15, "timestep_spacing": "trailing"}, 3, 1.0),
        ("ddim", {**SD15, "timestep_spacing": "trailing", "set_alpha_to_one": True}, 7, 1.0),
        ("ddim", {**SD15, "prediction_type": "sample"}, 5, 0.6),
        ("ddim", {**SD15, "beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02}, 5, 1.0),
        # LCM: own defaults, options.
        ("lcm", {}, 4, 1.0),
        ("lcm", {**SD15, "original_inference_steps": 25, "timestep_scaling": 5.0}, 5, 1.0),
        ("lcm", {**SD15, "clip_sample": True}, 4, 1.0),
        ("lcm", SD15, 8, 0.3),
    ],
    ids=lambda v: str(v) if isinstance(v, (int, float, str)) else None,
)
def test_config_variants_match_diffusers(name, cfg, steps, strength):
    assert_matches(name, cfg, steps, strength)


@pytest.mark.parametrize("name", SAMPLER_NAMES)
@pytest.mark.parametrize("config", ["sd15", "sd21_v"])
def test_callback_replacement_matches_diffusers_inpainting(name, config):
    assert_matches(name, CONFIGS[config], 6, inpaint=True)


@settings(max_examples=80, deadline=None)
@given(
    name=st.sampled_from(SAMPLER_NAMES),
    config=st.sampled_from(sorted(CONFIGS)),
    spacing=st.sampled_from([None, "leading", "linspace", "trailing"]),
    steps=st.integers(1, 50),
    strength=st.floats(0.05, 1.0),
)
def test_timesteps_and_sigmas_match_diffusers(name, config, spacing, steps, strength):
    cfg = CONFIGS[config]
    if int(steps * strength) < 1:
        with pytest.raises(InvalidRequestError, match="strength"):
            build_schedule(name, cfg, steps, spacing=spacing, strength=strength)
        return
    scheduler = diffusers_scheduler(name, cfg, spacing)
    scheduler.set_timesteps(steps)
    t_start = max(steps - min(int(steps * strength), steps), 0)
    schedule = build_schedule(name, cfg, steps, spacing=spacing, strength=strength)
    # [:steps - t_start]: diffusers' occasional extra trailing timestep (see the next test).
    expected = scheduler.timesteps[t_start:].to(torch.float32)[: steps - t_start]
    assert torch.equal(schedule.timesteps, expected)
    assert schedule.start_index == t_start
    if name in ("euler", "euler_a", "dpmpp_2m_karras") and len(scheduler.timesteps) == steps:
        ref = scheduler.sigmas[t_start:]
        torch.testing.assert_close(schedule.sigmas, ref[: len(schedule.sigmas)], rtol=1e-6, atol=0)


def test_trailing_keeps_exactly_steps():
    # numpy's float arange gives diffusers 62 timesteps (the last one -1) for 61 trailing steps.
    scheduler = diffusers.EulerDiscreteScheduler.from_config(TURBO)
    scheduler.set_timesteps(61)
    assert len(scheduler.timesteps) == 62
    schedule = build_schedule("euler", TURBO, 61)
    assert schedule.num_steps == 61 and len(schedule.sigmas) == 62
    assert torch.equal(schedule.timesteps, scheduler.timesteps[:61])
    assert schedule.sigma_values[-1] == 0.0


@pytest.mark.parametrize("name", ["euler", "euler_a", "ddim", "dpmpp_2m_karras", "lcm"])
def test_one_step_turbo_is_t999(name):
    schedule = build_schedule(name, TURBO, 1)
    assert schedule.timesteps.tolist() == [999.0]
    assert schedule.sigma_values[0] == pytest.approx(14.614646, rel=1e-6)


def test_default_spacing_comes_from_each_class():
    # The SD1.5 dict names no spacing: Euler takes linspace, DDIM leading (+steps_offset).
    assert build_schedule("euler", SD15, 4).timesteps.tolist() == [999.0, 666.0, 333.0, 0.0]
    assert build_schedule("ddim", SD15, 4).timesteps.tolist() == [751.0, 501.0, 251.0, 1.0]
    assert build_schedule("euler", SD15, 4, spacing="leading").timesteps.tolist() == [751.0, 501.0, 251.0, 1.0]
    # Euler "leading" starts VP-style; trailing starts at sigma_max.
    leading = build_schedule("euler", SD15_LEADING, 4)
    assert leading.init_noise_sigma == pytest.approx(math.sqrt(leading.sigma_values[0] ** 2 + 1), rel=1e-6)
    assert build_schedule("euler", TURBO, 4).init_noise_sigma == pytest.approx(14.614646, rel=1e-6)


def test_use_default_values_keys_are_dropped():
    cfg = {**SD15, "timestep_spacing": "leading", "_use_default_values": ["timestep_spacing"]}
    assert build_schedule("euler", cfg, 4).timesteps.tolist() == [999.0, 666.0, 333.0, 0.0]
    scheduler = diffusers.EulerDiscreteScheduler.from_config(cfg)
    assert scheduler.config.timestep_spacing == "linspace"


def test_scheduler_config_fields():
    config = SchedulerConfig.from_dict(SD21)
    assert config.prediction_type == "v_prediction"
    assert config.steps_offset == 1 and config.num_train_timesteps == 1000
    assert config.beta_schedule == "scaled_linear" and config.timestep_spacing is None
    assert config.raw["skip_prk_steps"] is True
    assert config.resolved("ddim")["timestep_spacing"] == "leading"
    assert config.resolved("euler")["timestep_spacing"] == "linspace"
    assert config.resolved("lcm")["clip_sample"] is False
    # A SchedulerConfig and a dict give the same schedule.
    a, b = build_schedule("ddim", config, 5), build_schedule("ddim", SD21, 5)
    assert torch.equal(a.sigmas, b.sigmas) and torch.equal(a.timesteps, b.timesteps)


def test_noised_latents_is_add_noise_for_every_step():
    clean, noise = clean_latents(), torch.randn(SHAPE, generator=torch.Generator().manual_seed(5))
    for name in SAMPLER_NAMES:
        schedule = build_schedule(name, SD15, 6)
        scheduler = diffusers_scheduler(name, SD15)
        scheduler.set_timesteps(6)
        for i, t in enumerate(scheduler.timesteps):
            if hasattr(scheduler, "set_begin_index"):
                scheduler.set_begin_index(i)
            ref = scheduler.add_noise(clean, noise, t.reshape(1))
            ours = schedule.to_diffusers(schedule.noised_latents(clean, noise, i), i)
            torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def _counting_model(counter):
    def unet_fn(x_in, t):
        counter.append(t)
        return toy_unet(x_in, t)

    return unet_fn


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_cancellation_raises_within_one_step(name):
    schedule = build_schedule(name, SD15, 8)
    calls: list = []
    model = make_denoiser(_counting_model(calls), schedule.prediction_type)
    polls = []

    def should_stop():
        polls.append(1)
        return len(polls) > 3

    x = schedule.initial_latents(torch.randn(SHAPE, generator=torch.Generator().manual_seed(0)))
    with pytest.raises(CancelledError):
        sample(name, model, x, schedule, should_stop=should_stop)
    assert len(calls) == 3  # stopped before the 4th UNet call


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_callback_sees_every_step_and_can_replace(name):
    schedule = build_schedule(name, SD15, 5)
    model = make_denoiser(toy_unet, schedule.prediction_type)
    seen = []

    def callback(i, x, denoised):
        seen.append(i)
        assert x.shape == denoised.shape == SHAPE
        return torch.zeros_like(x) if i == schedule.num_steps - 1 else None

    x = schedule.initial_latents(torch.randn(SHAPE, generator=torch.Generator().manual_seed(0)))
    out = sample(name, model, x, schedule, callback=callback, generator=torch.Generator().manual_seed(1))
    assert seen == list(range(schedule.num_steps))
    assert torch.count_nonzero(out) == 0


def test_same_seed_same_result_and_generator_advances():
    schedule = build_schedule("euler_a", SD15, 6)
    model = make_denoiser(toy_unet, schedule.prediction_type)
    x = schedule.initial_latents(torch.randn(SHAPE, generator=torch.Generator().manual_seed(0)))
    a = sample("euler_a", model, x, schedule, generator=torch.Generator().manual_seed(9))
    b = sample("euler_a", model, x, schedule, generator=torch.Generator().manual_seed(9))
    c = sample("euler_a", model, x, schedule, generator=torch.Generator().manual_seed(10))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_registry_and_schedule_mismatch():
    assert set(SAMPLERS) == set(SAMPLER_NAMES)
    schedule = build_schedule("ddim", SD15, 4)
    model = make_denoiser(toy_unet, "epsilon")
    x = schedule.initial_latents(torch.zeros(SHAPE))
    with pytest.raises(InvalidRequestError, match="'ddim'"):
        sample("euler", model, x, schedule)
    with pytest.raises(InvalidRequestError, match="'heun'"):
        sample("heun", model, x, schedule)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"sampler": "k_lms"}, "'k_lms'"),
        ({"spacing": "uniform"}, "'uniform'"),
        ({"steps": 0}, "0"),
        ({"steps": 2.5}, "2.5"),
        ({"steps": 1001}, "1001"),
        ({"strength": 0.0}, "0.0"),
        ({"strength": 1.5}, "1.5"),
        ({"strength": -0.2}, "-0.2"),
        ({"strength": 0.1, "steps": 4}, "0.1"),
        ({"sampler": "lcm", "steps": 51}, "51"),
        ({"config": {**SD15, "beta_schedule": "cubic"}}, "'cubic'"),
        ({"config": {**SD15, "prediction_type": "flow_prediction"}}, "'flow_prediction'"),
        ({"config": {**SD15, "timestep_spacing": "odd"}}, "'odd'"),
        ({"config": {**SD15, "interpolation_type": "log_linear"}}, "'log_linear'"),
        ({"config": {**SD15, "use_exponential_sigmas": True}}, "use_exponential_sigmas"),
        ({"config": {**SD21, "rescale_betas_zero_snr": True}, "spacing": "trailing", "sampler": "ddim"},
         "rescale_betas_zero_snr"),
        ({"config": {**SD21, "rescale_betas_zero_snr": True}, "sampler": "lcm"}, "rescale_betas_zero_snr"),
    ],
)
def test_invalid_requests_name_the_value(kwargs, named):
    args = {"sampler": "euler", "config": SD15, "steps": 4, **kwargs}
    with pytest.raises(InvalidRequestError) as info:
        build_schedule(args.pop("sampler"), args.pop("config"), args.pop("steps"), **args)
    assert named in str(info.value)
    assert "\n" not in str(info.value)


def test_make_denoiser_rejects_unknown_prediction_type():
    with pytest.raises(InvalidRequestError, match="'flow'"):
        make_denoiser(toy_unet, "flow")


def test_noise_like_matches_randn_tensor_in_every_dtype():
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        ours = noise_like(torch.empty(SHAPE, dtype=dtype), torch.Generator().manual_seed(3))
        ref = randn_tensor(SHAPE, generator=torch.Generator().manual_seed(3), dtype=dtype)
        assert ours.dtype == dtype and torch.equal(ours, ref)


@pytest.mark.gpu
@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_cuda_matches_cpu(name):
    schedule = build_schedule(name, SD15, 6)
    model = make_denoiser(toy_unet, schedule.prediction_type)
    x = schedule.initial_latents(torch.randn(SHAPE, generator=torch.Generator().manual_seed(0)))
    cpu = sample(name, model, x, schedule, generator=torch.Generator().manual_seed(4))
    gpu = sample(name, model, x.cuda(), schedule, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-4)


def test_sampling_loop_makes_no_tensor_to_python_conversions(monkeypatch):
    # Proxy for "no host syncs": .item()/.tolist() on tensors are never called inside the loop.
    schedules = {name: build_schedule(name, SD15, 4) for name in SAMPLER_NAMES}
    calls = []
    real_item, real_tolist = torch.Tensor.item, torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "item", lambda self: calls.append("item") or real_item(self))
    monkeypatch.setattr(torch.Tensor, "tolist", lambda self: calls.append("tolist") or real_tolist(self))
    for name, schedule in schedules.items():
        model = make_denoiser(toy_unet, schedule.prediction_type)
        x = schedule.initial_latents(torch.randn(SHAPE, generator=torch.Generator().manual_seed(0)))
        sample(name, model, x, schedule, generator=torch.Generator().manual_seed(1))
    assert calls == []


def test_schedule_values_are_python_floats():
    schedule = build_schedule("dpmpp_2m_karras", SD15, 4)
    assert all(type(v) is float for v in schedule.sigma_values + schedule.timestep_values)
    assert schedule.timesteps.dtype == torch.float32 and schedule.sigmas.dtype == torch.float32
    assert len(schedule.sigmas) == schedule.num_steps + 1
    assert np.isclose(schedule.sigma_values[-1], 0.0)
