"""The torch-free engine API: imports, request validation, the sampler registry, ModelInfo, and
the native size the editor plans at equalling the size the CLI renders at."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference import api
from inference.errors import InferenceError, InvalidRequestError, ModelFormatError, UnsupportedModelError

ROOT = Path(__file__).resolve().parents[2]
HOUSE = ROOT / "assets" / "house"


def test_api_and_model_facts_import_without_torch():
    code = ("import sys, inference.api, inference.model_info, inference.requests; "
            "info = inference.api.read_model_info(sys.argv[1]); "
            "print(info.native_resolution, 'torch' in sys.modules, any(m.startswith('PySide6') for m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code, str(HOUSE / "full")], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.stdout.split() == ["128", "False", "False"], result.stderr


# ----------------------------------------------------------------------------- requests
def _request(**changes) -> api.GenerationRequest:
    return api.GenerationRequest(**{"prompt": "a lake", "width": 64, "height": 64, **changes})


@pytest.mark.parametrize("changes, message", [
    ({"width": True}, "width"), ({"width": 60}, "width"), ({"height": 8192}, "height"),
    ({"steps": 0}, "steps"), ({"steps": 2.5}, "steps"), ({"guidance": math.nan}, "guidance"),
    ({"guidance": -1.0}, "guidance"), ({"strength": math.inf}, "strength"), ({"strength": 0.0}, "strength"),
    ({"guidance_rescale": 1.5}, "guidance rescale"), ({"image_guidance": math.nan}, "image guidance"),
    ({"sampler": "heun"}, "sampler"), ({"timestep_spacing": "karras"}, "timestep spacing"),
    ({"seed": -1}, "seed"), ({"seed": 2**32}, "seed"), ({"seed": 1.0}, "seed"), ({"seed": "7"}, "seed"),
    ({"mask": np.zeros((64, 64), np.uint8)}, "mask needs an init image"),
    ({"init_image": np.zeros((32, 64, 3), np.uint8)}, "init image is 64x32"),
    ({"init_image": np.zeros((64, 64, 3), np.float32)}, "uint8"),
])
def test_bad_request_values_are_named_in_one_line(changes, message):
    with pytest.raises(InvalidRequestError) as caught:
        api.validate_request(_request(**changes))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_seed_range_is_the_32_bit_range_everywhere():
    api.validate_request(_request(seed=0))
    api.validate_request(_request(seed=api.SEED_MAX))
    assert api.SEED_MAX == 2**32 - 1


@settings(max_examples=150, deadline=None)
@given(width=st.one_of(st.integers(-10, 5000), st.floats(allow_nan=True), st.booleans(), st.none()),
       steps=st.one_of(st.integers(-5, 2000), st.floats(allow_nan=True)),
       guidance=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 500)),
       strength=st.floats(allow_nan=True, allow_infinity=True),
       seed=st.one_of(st.integers(-2**70, 2**70), st.floats(allow_nan=True), st.text(max_size=3)),
       sampler=st.one_of(st.sampled_from(list(api.SAMPLERS)), st.text(max_size=8)))
def test_any_request_values_pass_or_fail_with_an_inference_error(width, steps, guidance, strength, seed, sampler):
    request = api.GenerationRequest(prompt="x", width=width, height=64, steps=steps, guidance=guidance,
                                    strength=strength, seed=seed, sampler=sampler)
    try:
        api.validate_request(request)
    except InvalidRequestError as exc:
        assert "\n" not in str(exc)


# ----------------------------------------------------------------------------- samplers
def test_every_registered_sampler_is_implemented_and_names_a_real_diffusers_class():
    import diffusers

    from inference.samplers.samplers import SAMPLERS as IMPLEMENTED

    assert set(api.SAMPLERS) == set(IMPLEMENTED)
    for info in api.SAMPLERS.values():
        assert hasattr(diffusers, info.scheduler_class), info
        assert api.sampler_for_scheduler_class(info.scheduler_class) == info.id
    assert api.sampler_for_scheduler_class("PNDMScheduler") is None


def test_cli_offers_exactly_the_registered_samplers():
    from inference.cli import build_parser

    parser = build_parser()
    generate = parser._subparsers._group_actions[0].choices["generate"]  # noqa: SLF001
    sampler = next(a for a in generate._actions if a.dest == "sampler")  # noqa: SLF001
    assert list(sampler.choices) == list(api.SAMPLERS)
    assert sampler.default is None  # the model's preset decides


# ----------------------------------------------------------------------------- model info
def test_house_models_report_their_own_size_and_recommended_settings():
    full, preview = api.read_model_info(HOUSE / "full"), api.read_model_info(HOUSE / "preview")
    assert (full.kind, full.native_resolution, full.prediction_type, full.unet_in_channels) == \
        ("checkpoint", 128, "v_prediction", 4)
    assert (full.preset.steps, full.preset.guidance, full.preset.source) == (20, 3.0, "house.json")
    assert (preview.preset.steps, preview.preset.guidance) == (1, 0.0)
    assert full.latent_channels == 4 and full.runnable
    assert "128 px" in full.summary()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tiny_models import build_sd, build_sdxl

    root = tmp_path_factory.mktemp("api_models")
    return {"sd1": build_sd(root, kind="sd1"), "sd2": build_sd(root, kind="sd2"),
            "sd1-inpaint": build_sd(root, kind="sd1", in_channels=9), "sdxl": build_sdxl(root)}


@pytest.mark.parametrize("name", ["sd1", "sd2", "sd1-inpaint", "sdxl"])
def test_model_info_agrees_with_the_loaders_inspection(tiny, name):
    from inference.loader import inspect_model

    info = api.read_model_info(tiny[name])
    report = inspect_model(tiny[name])
    assert (info.family, info.prediction_type, info.unet_in_channels, info.variant) == \
        (report["family"], report["prediction_type"], report["unet_in_channels"], report["variant"])
    # Parameter counts from header shapes alone equal the counts of the built modules.
    assert info.parameters["unet"] == report["parameters"]["unet"]
    assert info.parameters["vae"] == report["parameters"]["vae"]
    assert info.native_resolution == 64  # sample_size 8 × the VAE's 8× scale, not the family's size


def test_editor_plans_at_the_size_the_cli_renders(tiny, tmp_path):
    """The SD2 family's native size is 768, but the folder says sample_size 8 (64 px): both the
    editor's planning size and the CLI's default render size must be 64."""
    from editor.ai.engine import ModelSpec, TorchEngine
    from inference.cli import main
    from PIL import Image

    folder = tiny["sd2"]
    assert json.loads((folder / "unet" / "config.json").read_text())["sample_size"] == 8
    editor_size = TorchEngine({"final": ModelSpec(folder)}).native_resolution("final")
    out = tmp_path / "out.png"
    assert main(["generate", "--model", str(folder), "--prompt", "a lake", "--steps", "1", "--out", str(out)]) == 0
    assert editor_size == 64 and Image.open(out).size == (64, 64)


@pytest.mark.parametrize("name, expected", [
    ("sd_xl_turbo_1.0_fp16", ("euler", 1, 0.0, "trailing")),
    ("sdxl_lightning_4step", ("euler", 4, 0.0, "trailing")),
    ("sdxl_lightning_8step_unet", ("euler", 8, 0.0, "trailing")),
    ("LCM_Dreamshaper_v7", ("lcm", 4, 1.5, None)),
    ("dreamshaper_8", None),
])
def test_distilled_models_are_recognised_by_name(tiny, tmp_path, name, expected):
    import shutil

    folder = tmp_path / name
    shutil.copytree(tiny["sd1"], folder)
    preset = api.read_model_info(folder).preset
    if expected is None:
        assert (preset.sampler, preset.steps, preset.guidance) == ("euler", api.DEFAULT_STEPS, api.DEFAULT_GUIDANCE)
    else:
        assert (preset.sampler, preset.steps, preset.guidance, preset.timestep_spacing) == expected


def test_cli_uses_the_models_preset_when_the_user_gives_none(tiny, tmp_path, capsys):
    import shutil

    from PIL import Image

    from inference.cli import main

    folder = tmp_path / "tiny-turbo"
    shutil.copytree(tiny["sd1"], folder)
    out = tmp_path / "turbo.png"
    assert main(["generate", "--model", str(folder), "--prompt", "a lake", "--out", str(out)]) == 0
    parameters = Image.open(out).info["parameters"]
    assert "Steps: 1," in parameters and "CFG scale: 0," in parameters
    assert "from the model's recommendation (Turbo" in capsys.readouterr().err
    assert main(["generate", "--model", str(folder), "--prompt", "a lake", "--steps", "2", "--guidance", "5",
                 "--out", str(out)]) == 0
    assert "Steps: 2," in Image.open(out).info["parameters"]


@pytest.mark.parametrize("make, error", [
    (lambda p: p.write_text("not a model"), ModelFormatError),
    (lambda p: p.write_bytes(b"\x80\x02}q\x00."), ModelFormatError),
])
def test_unusable_files_are_refused_in_one_line(tmp_path, make, error):
    path = tmp_path / "model.safetensors"
    make(path)
    with pytest.raises(error) as caught:
        api.read_model_info(path)
    assert "model.safetensors" in str(caught.value) and "\n" not in str(caught.value)


def test_non_sd_pipeline_folders_are_named_in_the_refusal(tmp_path):
    (tmp_path / "kolors").mkdir()
    (tmp_path / "kolors" / "model_index.json").write_text(json.dumps({"_class_name": "KolorsPipeline"}))
    with pytest.raises(UnsupportedModelError, match="KolorsPipeline models are not supported"):
        api.read_model_info(tmp_path / "kolors")


def test_missing_path_and_text_folder_are_refused(tmp_path):
    with pytest.raises(InferenceError, match="no such file"):
        api.read_model_info(tmp_path / "nope.safetensors")
    with pytest.raises(InferenceError, match="without model_index.json"):
        api.read_model_info(tmp_path)


def test_cli_warns_when_asked_far_above_the_native_size_and_states_defaults(tmp_path, capsys):
    """Issue 20 #12: 512² from the 128-native house model used to tile silently."""
    from inference.cli import build_parser, main

    out = tmp_path / "big.png"
    assert main(["generate", "--prompt", "a lake", "--steps", "1", "--width", "512", "--height", "256",
                 "--out", str(out)]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "native 128x128" in warnings[0]
    generate = build_parser()._subparsers._group_actions[0].choices["generate"]  # noqa: SLF001
    helps = {a.dest: a.help or "" for a in generate._actions}  # noqa: SLF001
    assert "native size" in helps["width"] and "recommendation" in helps["guidance"]
