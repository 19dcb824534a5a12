"""Pruned SDXL UNets: segmind/SSD-1B and segmind/Segmind-Vega.

They vary the transformer depth block by block (`transformer_layers_per_block` per level and
per layer, `reverse_transformer_layers_per_block` for the up blocks) and keep one ResBlock as the
middle block (diffusers' `UNetMidBlock2D`). Full-size header-only files and folders must inspect
cleanly with the parameter counts diffusers builds from the real configs; a tiny model with the
same kinds of irregularity must render like diffusers from its folder and from a single file.
"""
from __future__ import annotations

import pytest

import layouts
from inference.formats.safetensors_file import save_tensors
from inference.loader import inspect_model, load_model
from inference.model_info import read_model_info
from inference.pipeline import GenerationRequest, Pipeline
from test_single_file_oracle import file_metadata, single_file_state
from tiny_models import build_sdxl, max_difference_vs_diffusers

KINDS = ["ssd1b", "vega"]


@pytest.fixture(scope="module")
def built():
    return {}


def _layout(built, kind):
    if kind not in built:
        built[kind] = layouts.full_layout(kind)
    return built[kind]


def _assert_clean(report):
    assert report["missing_keys"] == report["unexpected_keys"] == report["shape_mismatches"] == []


@pytest.mark.parametrize("kind", KINDS)
def test_full_size_pruned_single_file(built, kind, tmp_path):
    layout = _layout(built, kind)
    assert layouts.count(layout.unet) == layouts.UNET_PARAMETERS[kind]  # what diffusers builds from the config
    assert len(layout.unet.mid_block.resnets) == 1 and not layout.unet.mid_block.attentions
    path = layouts.write_header_only(tmp_path / f"{kind}.safetensors", layout.tensors)
    report = inspect_model(path)
    _assert_clean(report)
    assert (report["family"], report["prediction_type"], report["variant"]) == ("sdxl", "epsilon", "base")
    assert report["parameters"]["unet"] == layouts.UNET_PARAMETERS[kind]
    assert report["unet_config"]["middle_block"] == "res"
    info = read_model_info(path)
    assert (info.family, info.native_resolution, info.latent_channels, info.unet_in_channels) == ("sdxl", 1024, 4, 4)
    assert info.parameters["unet"] == layouts.UNET_PARAMETERS[kind]
    assert info.preset.source == "Stable Diffusion XL defaults"


def test_ssd1b_depths_are_read_block_by_block(built, tmp_path):
    path = layouts.write_header_only(tmp_path / "ssd.safetensors", _layout(built, "ssd1b").tensors)
    config = inspect_model(path)["unet_config"]
    assert tuple(config["transformer_depth"]) == (0, 2, 4)
    assert tuple(config["transformer_depth_output"]) == (4, 4, 10, 2, 1, 1, 0, 0, 0)
    assert config["transformer_depth_input"] is None  # the down blocks are regular per level


@pytest.mark.parametrize("kind", KINDS)
def test_full_size_pruned_diffusers_folder(built, kind, tmp_path):
    layout = _layout(built, kind)
    folder = layouts.write_diffusers_folder(tmp_path / kind, layout)
    report = inspect_model(folder)
    _assert_clean(report)
    assert report["family"] == "sdxl"
    assert report["parameters"]["unet"] == layouts.UNET_PARAMETERS[kind]
    assert read_model_info(folder).parameters["unet"] == layouts.UNET_PARAMETERS[kind]


# ----------------------------------------------------------------------------- tiny oracle
IRREGULAR = {"transformer_layers_per_block": (1, (2, 1)), "reverse_transformer_layers_per_block": ((1, 3, 2), 1),
             "mid_block_type": "UNetMidBlock2D"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("pruned")
    folder = build_sdxl(root, unet_overrides=IRREGULAR, name="tiny-pruned")
    model = load_model(folder)
    path = root / "tiny-pruned.safetensors"
    save_tensors(single_file_state(model, "sdxl"), path, metadata=file_metadata(folder, "sdxl"))
    return folder, model, path


def test_tiny_pruned_config_is_read_per_layer(tiny):
    _, model, path = tiny
    config = model.unet.config
    assert (config.transformer_depth_input, config.transformer_depth_output) == ((0, 0, 2, 1), (1, 3, 2, 0, 0, 0))
    assert config.middle_block == "res"
    assert load_model(path).unet.config == config


@pytest.mark.parametrize("source", ["folder", "single_file"])
def test_tiny_pruned_sdxl_renders_like_diffusers(tiny, source):
    import diffusers

    folder, model, path = tiny
    ours = model if source == "folder" else load_model(path)
    pipe = diffusers.StableDiffusionXLPipeline.from_pretrained(folder)
    request = GenerationRequest(prompt="a lighthouse on a cliff at sunset", negative_prompt="blurry", seed=8, steps=4,
                                sampler="euler", guidance=6.0, width=64, height=64)
    difference = max_difference_vs_diffusers(pipe, Pipeline(ours), request)
    print(f"pruned SDXL from {source}: max difference {difference}/255")
    assert difference <= 2
