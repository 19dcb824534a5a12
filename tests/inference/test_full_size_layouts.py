"""Full-size SD 1.5 / 1.5-inpainting / 2.1 / SDXL (base, refiner) layouts, checked without memory.

The layouts (tests/layouts.py) come from diffusers / transformers models built at the published
configurations on the meta device, renamed to the original single-file names; diffusers' own
single-file converters must map them back onto those models key for key. They are then written
as header-only sparse .safetensors files and as diffusers folders, and `inspect_model` must
report the right family, variant and prediction type, nothing missing or unexpected, and the
exact parameter counts.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import layouts

REPO = Path(__file__).resolve().parents[2]
SINGLE_FILE_TEXT_NAMES = {"clip_l", "open_clip_h", "open_clip_bigg"}
KINDS = ["sd15", "sd15_inpaint", "sd21", "sd21_base", "sdxl", "sdxl_refiner"]


@pytest.fixture(scope="module")
def built():
    return {}


def _layout(built, kind: str) -> layouts.Layout:
    if kind not in built:
        built[kind] = (layouts.full_layout("sd21", v_prediction=False) if kind == "sd21_base"
                       else layouts.full_layout(kind))
    return built[kind]


def _single_file(built, kind: str, root: Path, metadata=None, extra=None) -> Path:
    layout = _layout(built, kind)
    tensors = dict(layout.tensors, **(extra or {}))
    path = layouts.write_header_only(root / f"{kind}.safetensors", tensors, metadata=metadata, data=layout.data)
    assert path.stat().st_size > 1_000_000_000  # the header promises gigabytes…
    assert layouts.disk_usage(path) < 4_000_000  # …that occupy no disk
    return path


def _expected_text_count(tower: layouts.TextTower) -> int:
    """Our encoder for a single file's tower: all of its layers, the projection only where pooled."""
    projection = getattr(tower.full, "text_projection", None)
    unused = projection.weight.numel() if projection is not None and not tower.pooled else 0
    return layouts.count(tower.full) - unused


def _assert_clean(report: dict) -> None:
    assert report["missing_keys"] == []
    assert report["unexpected_keys"] == []
    assert report["shape_mismatches"] == []


# ----------------------------------------------------------------------------- the layouts are real
@pytest.mark.parametrize("kind", ["sd15", "sd15_inpaint", "sd21", "sdxl", "sdxl_refiner"])
def test_layout_is_what_diffusers_reads_from_a_real_single_file(built, kind):
    layout = _layout(built, kind)
    layouts.verify_with_diffusers(layout)
    if kind in layouts.UNET_PARAMETERS:
        assert layouts.count(layout.unet) == layouts.UNET_PARAMETERS[kind]
    assert layouts.count(layout.vae) == 83_653_863


def test_the_verifier_notices_a_wrong_key_or_shape(built):
    layout = _layout(built, "sd15")
    renamed = dict(layout.tensors)
    value = renamed.pop("model.diffusion_model.input_blocks.1.0.in_layers.2.weight")
    renamed["model.diffusion_model.input_blocks.1.0.in_layers.1.weight"] = value  # a ResBlock misnamed
    with pytest.raises(AssertionError, match="unet"):
        layouts.verify_with_diffusers(layouts.Layout(**{**vars(layout), "tensors": renamed}))

    sd21 = _layout(built, "sd21")
    reshaped = dict(sd21.tensors)
    reshaped["cond_stage_model.model.positional_embedding"] = torch.empty(76, 1024, device="meta")
    with pytest.raises(AssertionError, match="open_clip_h"):
        layouts.verify_with_diffusers(layouts.Layout(**{**vars(sd21), "tensors": reshaped}))


# ----------------------------------------------------------------------------- single files
@pytest.mark.parametrize("kind", KINDS)
def test_inspect_full_size_single_file(built, kind, tmp_path):
    from inference.loader import inspect_model

    layout = _layout(built, kind)
    report = inspect_model(_single_file(built, kind, tmp_path))
    assert report["format"] == "single_file"
    assert report["family"] == layout.family
    assert report["unet_in_channels"] == layout.in_channels
    assert report["variant"] == ("inpaint" if layout.in_channels == 9 else "base")
    assert report["inpaint"] is (layout.in_channels == 9)
    assert report["prediction_type"] == layout.prediction_type
    _assert_clean(report)
    extras = [k for k in layout.tensors if not k.startswith(("model.diffusion_model.", "first_stage_model."))
              and (k.endswith(("position_ids", "logit_scale")) or "." not in k or k.startswith("model_ema."))]
    assert report["ignored_keys"] == len(extras)
    parameters = report["parameters"]
    assert parameters["unet"] == layouts.count(layout.unet)
    if kind in layouts.UNET_PARAMETERS:
        assert parameters["unet"] == layouts.UNET_PARAMETERS[kind]
    assert parameters["vae"] == layouts.count(layout.vae)
    texts = {name: value for name, value in parameters.items() if name in SINGLE_FILE_TEXT_NAMES}
    assert texts == {tower.name: _expected_text_count(tower) for tower in layout.texts}


def test_exact_unet_counts_of_the_published_models(built, tmp_path):
    from inference.loader import inspect_model

    counts = {kind: inspect_model(_single_file(built, kind, tmp_path))["parameters"]["unet"]
              for kind in ("sd15", "sd21", "sdxl")}
    assert counts == {"sd15": 859_520_964, "sd21": 865_910_724, "sdxl": 2_567_463_684}


def test_sdxl_file_with_sgm_denoiser_sigmas_is_clean(built, tmp_path):
    """Checkpoints saved by SGM training code also carry `denoiser.sigmas`; nothing uses it."""
    from inference.loader import inspect_model

    extra = {"denoiser.sigmas": torch.empty(1000, dtype=torch.float32, device="meta")}
    report = inspect_model(_single_file(built, "sdxl", tmp_path, extra=extra))
    _assert_clean(report)
    assert report["family"] == "sdxl"
    assert report["ignored_keys"] == 3  # position_ids, logit_scale, denoiser.sigmas


def test_modelspec_metadata_sets_the_prediction_type_and_the_caller_overrides_it(built, tmp_path):
    from inference.loader import inspect_model

    # The SD2 heuristic reads "eps" from this file's weights; its ModelSpec says 768-v.
    path = _single_file(built, "sd21_base", tmp_path)
    assert inspect_model(path)["prediction_type"] == "epsilon"
    path = _single_file(built, "sd21_base", tmp_path, metadata={"modelspec.architecture": "stable-diffusion-v2-768-v"})
    assert inspect_model(path)["prediction_type"] == "v_prediction"
    assert inspect_model(path, prediction_type="epsilon")["prediction_type"] == "epsilon"
    path = _single_file(built, "sdxl", tmp_path, metadata={"modelspec.architecture": "stable-diffusion-xl-v1-base",
                                                            "modelspec.prediction_type": "v"})
    report = inspect_model(path)
    assert (report["family"], report["prediction_type"]) == ("sdxl", "v_prediction")


def test_cli_inspect_prints_json(built, tmp_path):
    path = _single_file(built, "sd15", tmp_path)
    result = subprocess.run([sys.executable, "-m", "inference", "inspect", str(path)], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["family"] == "sd1" and report["variant"] == "base"
    assert report["parameters"]["unet"] == 859_520_964
    assert report["missing_keys"] == report["unexpected_keys"] == report["shape_mismatches"] == []


# ----------------------------------------------------------------------------- diffusers folders
@pytest.mark.parametrize("kind", KINDS)
def test_inspect_full_size_diffusers_folder(built, kind, tmp_path):
    from inference.loader import inspect_model

    layout = _layout(built, kind)
    folder = layouts.write_diffusers_folder(tmp_path / kind, layout)
    for weights in folder.glob("*/*.safetensors"):
        assert layouts.disk_usage(weights) < 2_000_000
    report = inspect_model(folder)
    assert report["format"] == "diffusers"
    assert report["family"] == layout.family
    assert report["unet_in_channels"] == layout.in_channels
    assert report["variant"] == ("inpaint" if layout.in_channels == 9 else "base")
    assert report["prediction_type"] == layout.prediction_type
    _assert_clean(report)
    parameters = report["parameters"]
    assert parameters["unet"] == layouts.count(layout.unet)
    if kind in layouts.UNET_PARAMETERS:
        assert parameters["unet"] == layouts.UNET_PARAMETERS[kind]
    assert parameters["vae"] == layouts.count(layout.vae)
    expected_texts = {("text_encoder_2" if tower.pooled else "text_encoder"): layouts.count(tower.diffusers)
                      for tower in layout.texts}
    assert {k: v for k, v in parameters.items() if k.startswith("text_encoder")} == expected_texts
