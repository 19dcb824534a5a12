"""Speed LoRAs (inference/lora/speed.py): the released files recognised by name, folder and metadata,
each with its published preset; anything else is not a speed LoRA. Torch-free."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from inference.api import SAMPLERS, SPACINGS, SpeedPreset, recognise_speed_lora

# (path as released, kind, family, sampler, steps, guidance, spacing)
RELEASED = [
    ("lcm-lora-sdv1-5.safetensors", "lcm", "sd1", "lcm", 4, 1.0, None),
    ("lcm-lora-sdxl/pytorch_lora_weights.safetensors", "lcm", "sdxl", "lcm", 4, 1.0, None),
    ("latent-consistency/lcm-lora-sdv1-5/pytorch_lora_weights.safetensors", "lcm", "sd1", "lcm", 4, 1.0, None),
    ("Hyper-SD15-1step-lora.safetensors", "hyper", "sd1", "tcd", 1, 1.0, None),
    ("Hyper-SD15-2steps-lora.safetensors", "hyper", "sd1", "ddim", 2, 1.0, "trailing"),
    ("Hyper-SD15-4steps-lora.safetensors", "hyper", "sd1", "ddim", 4, 1.0, "trailing"),
    ("Hyper-SD15-8steps-lora.safetensors", "hyper", "sd1", "ddim", 8, 1.0, "trailing"),
    ("Hyper-SDXL-1step-lora.safetensors", "hyper", "sdxl", "tcd", 1, 1.0, None),
    ("Hyper-SDXL-2steps-lora.safetensors", "hyper", "sdxl", "ddim", 2, 1.0, "trailing"),
    ("Hyper-SDXL-4steps-lora.safetensors", "hyper", "sdxl", "ddim", 4, 1.0, "trailing"),
    ("Hyper-SDXL-8steps-lora.safetensors", "hyper", "sdxl", "ddim", 8, 1.0, "trailing"),
    ("Hyper-SDXL-8steps-CFG-lora.safetensors", "hyper", "sdxl", "ddim", 8, 5.0, "trailing"),
    ("Hyper-SD15-12steps-CFG-lora.safetensors", "hyper", "sd1", "ddim", 12, 5.0, "trailing"),
    ("sdxl_lightning_2step_lora.safetensors", "lightning", "sdxl", "euler", 2, 1.0, "trailing"),
    ("sdxl_lightning_4step_lora.safetensors", "lightning", "sdxl", "euler", 4, 1.0, "trailing"),
    ("sdxl_lightning_8step_lora.safetensors", "lightning", "sdxl", "euler", 8, 1.0, "trailing"),
    ("dmd2_sdxl_4step_lora.safetensors", "dmd2", "sdxl", "lcm", 4, 1.0, None),
    ("dmd2_sdxl_4step_lora_fp16.safetensors", "dmd2", "sdxl", "lcm", 4, 1.0, None),
    ("TCD-SDXL-LoRA.safetensors", "tcd", "sdxl", "tcd", 4, 1.0, None),
]


@pytest.mark.parametrize("path, kind, family, sampler, steps, guidance, spacing", RELEASED)
def test_released_speed_loras_are_recognised_with_their_published_preset(path, kind, family, sampler, steps,
                                                                          guidance, spacing):
    preset = recognise_speed_lora(Path("/models/loras") / path)
    assert preset is not None
    assert (preset.kind, preset.family, preset.sampler, preset.steps, preset.guidance, preset.timestep_spacing) == (
        kind, family, sampler, steps, guidance, spacing)
    assert preset.sampler in SAMPLERS and (preset.timestep_spacing is None or preset.timestep_spacing in SPACINGS)
    assert preset.source and str(steps) in preset.label


@pytest.mark.parametrize("path", ["detail_tweaker_xl.safetensors", "ink_wash_v2.safetensors",
                                  "some-style/pytorch_lora_weights.safetensors", "hyperrealism_v3.safetensors",
                                  "clcm_portraits.safetensors", "add_more_lightness.safetensors"])
def test_ordinary_loras_are_not_speed_loras(path):
    assert recognise_speed_lora(path) is None


def test_metadata_title_names_a_renamed_file():
    metadata = {"modelspec.title": "Hyper-SDXL-8steps-lora", "modelspec.architecture": "stable-diffusion-xl-v1-base"}
    preset = recognise_speed_lora("my_fast_thing.safetensors", metadata)
    assert preset == SpeedPreset("hyper", "sdxl", "ddim", 8, 1.0, "trailing", preset.source)
    assert recognise_speed_lora("renamed.safetensors", {"ss_output_name": "lcm-lora-sdv1-5"}).kind == "lcm"
    assert recognise_speed_lora("renamed.safetensors", {"ss_output_name": "watercolour"}) is None


def test_the_family_read_from_the_file_wins_over_the_name():
    # An LCM-LoRA whose name says nothing of its family: the library's family (from tensor shapes) decides.
    assert recognise_speed_lora("lcm_lora.safetensors").family == ""
    assert recognise_speed_lora("lcm_lora.safetensors", family="sdxl").family == "sdxl"
    assert recognise_speed_lora("lcm-lora-sdv1-5.safetensors", family="sd1").family == "sd1"


def test_recognition_imports_no_torch():
    code = ("import sys; from inference.api import recognise_speed_lora; "
            "recognise_speed_lora('Hyper-SD15-8steps-lora.safetensors'); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[3])
    assert out.stdout.strip() == "False"
