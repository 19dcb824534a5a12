"""UNet-only files over a base model: `load_model(base, unet_path=…)` (SDXL-Lightning, Hyper-SD, DMD2).

A second tiny SDXL UNet (other seed) is given in each published form — a diffusers UNet folder,
a diffusers-named single file (how SDXL-Lightning / Hyper-SD ship), an LDM-named file without
prefix and one with the `model.diffusion_model.` prefix — and the base with it must render
what diffusers' `StableDiffusionXLPipeline.from_pretrained(base, unet=that_unet)` renders.
"""
from __future__ import annotations

import pytest
import torch

import layouts
from inference.errors import UnsupportedModelError
from inference.formats.safetensors_file import save_tensors
from inference.loader import inspect_model, load_model
from inference.model_info import read_model_info
from inference.pipeline import GenerationRequest, Pipeline
from tiny_models import build_sd, build_sdxl, max_difference_vs_diffusers


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from diffusers import UNet2DConditionModel

    root = tmp_path_factory.mktemp("unet_only")
    base = build_sdxl(root / "base")
    other = build_sdxl(root / "other", seed=7)
    unet = UNet2DConditionModel.from_pretrained(other / "unet")
    state = {k: v.contiguous() for k, v in unet.state_dict().items()}
    files = {"folder": other / "unet"}
    files["diffusers_file"] = root / "sdxl_lightning_4step_unet.safetensors"
    save_tensors({k: v.half() for k, v in state.items()}, files["diffusers_file"])
    ldm = layouts.unet_diffusers_to_ldm(state, unet.config.layers_per_block)
    files["ldm_file"] = root / "ldm_unet.safetensors"
    save_tensors(ldm, files["ldm_file"])
    files["prefixed_file"] = root / "prefixed_unet.safetensors"
    save_tensors(layouts.with_prefix(ldm, "model.diffusion_model."), files["prefixed_file"])
    return {"base": base, "unet": unet, "files": files, "root": root}


@pytest.mark.parametrize("form", ["folder", "diffusers_file", "ldm_file", "prefixed_file"])
def test_base_with_unet_file_renders_like_diffusers_with_that_unet(tiny, form):
    import diffusers

    unet = tiny["unet"]
    if form == "diffusers_file":  # the file holds fp16 values: so must the reference UNet
        unet = diffusers.UNet2DConditionModel.from_config(unet.config)
        unet.load_state_dict({k: v.half().float() for k, v in tiny["unet"].state_dict().items()})
    model = load_model(tiny["base"], unet_path=tiny["files"][form])
    assert model.report["unet_path"] == str(tiny["files"][form])
    assert model.unet.input_blocks[0][0].weight.device.type == "cpu"
    pipe = diffusers.StableDiffusionXLPipeline.from_pretrained(tiny["base"], unet=unet)
    request = GenerationRequest(prompt="a lighthouse on a cliff at sunset", negative_prompt="blurry", seed=4,
                                steps=4, sampler="euler", guidance=5.0, width=64, height=64)
    difference = max_difference_vs_diffusers(pipe, Pipeline(model), request)
    print(f"UNet from {form}: max difference {difference}/255")
    assert difference <= 2


def test_the_replacement_really_changes_the_model(tiny):
    base = load_model(tiny["base"])
    swapped = load_model(tiny["base"], unet_path=tiny["files"]["ldm_file"])
    key = "input_blocks.1.0.in_layers.2.weight"
    assert not torch.equal(base.unet.state_dict()[key], swapped.unet.state_dict()[key])
    assert torch.equal(base.vae.state_dict()["decoder.conv_out.weight"], swapped.vae.state_dict()["decoder.conv_out.weight"])


def test_a_unet_of_another_family_is_refused_in_one_line(tiny):
    sd1 = build_sd(tiny["root"] / "sd1", kind="sd1")
    with pytest.raises(UnsupportedModelError, match=r"sd1-4ch/unet: this UNet \(context 32, ADM None\) cannot replace the "
                                                     r"UNet of sdxl-4ch, a Stable Diffusion XL model \(context 64, ADM 1568\)$"):
        load_model(tiny["base"], unet_path=sd1 / "unet")
    with pytest.raises(UnsupportedModelError, match="sdxl_lightning_4step_unet.safetensors: this UNet .*cannot replace the UNet of sd1-4ch"):
        load_model(sd1, unet_path=tiny["files"]["diffusers_file"])


def test_unet_only_file_alone_is_described_not_loaded(tiny):
    path = tiny["files"]["diffusers_file"]
    info = read_model_info(path)
    assert (info.kind, info.unet_in_channels, info.latent_channels) == ("unet", 4, 4)
    assert (info.preset.sampler, info.preset.steps, info.preset.timestep_spacing) == ("euler", 4, "trailing")
    assert info.parameters["unet"] == sum(p.numel() for p in tiny["unet"].parameters())
    assert inspect_model(tiny["files"]["prefixed_file"])["kind"] == "unet"
    with pytest.raises(UnsupportedModelError, match="holds only a UNet; load it over a base model"):
        load_model(tiny["files"]["prefixed_file"])


def test_full_size_lightning_unet_file_is_an_sdxl_unet(tmp_path):
    layout = layouts.full_layout("sdxl")
    state = {k: torch.empty(v.shape, dtype=torch.float16, device="meta") for k, v in layout.unet.state_dict().items()}
    path = layouts.write_header_only(tmp_path / "sdxl_lightning_8step_unet.safetensors", state)
    info = read_model_info(path)
    assert (info.kind, info.family, info.native_resolution) == ("unet", "sdxl", 1024)
    assert info.parameters["unet"] == 2_567_463_684
    assert (info.preset.steps, info.preset.guidance, info.preset.timestep_spacing) == (8, 0.0, "trailing")
    ldm = layouts.write_header_only(tmp_path / "hyper-sd-1step_unet.safetensors",
                                    {k: v for k, v in layout.tensors.items() if k.startswith("model.diffusion_model.")})
    info = read_model_info(ldm)
    assert (info.kind, info.family, info.parameters["unet"]) == ("unet", "sdxl", 2_567_463_684)
    assert (info.preset.steps, info.preset.guidance) == (1, 0.0)


def test_cli_unet_flag_renders_the_swapped_unet_with_its_preset(tiny, tmp_path, capsys):
    """`generate --model BASE --unet sdxl_lightning_4step_unet.safetensors`: the base with that UNet,
    at the Lightning preset (4 steps, no CFG, trailing) unless the user says otherwise."""
    import numpy as np
    from PIL import Image

    from inference.cli import main

    unet_file = tiny["files"]["diffusers_file"]
    out = tmp_path / "lightning.png"
    assert main(["generate", "--model", str(tiny["base"]), "--unet", str(unet_file), "--prompt", "a lake",
                 "--width", "64", "--height", "64", "--out", str(out)]) == 0
    parameters = Image.open(out).info["parameters"]
    assert "Steps: 4," in parameters and "CFG scale: 0," in parameters
    assert "Lightning 4-step" in capsys.readouterr().err
    model = load_model(tiny["base"], unet_path=unet_file)
    request = GenerationRequest(prompt="a lake", width=64, height=64, steps=4, guidance=0.0,
                                timestep_spacing="trailing")
    assert np.array_equal(np.asarray(Image.open(out)), Pipeline(model).generate(request).image)


def test_cli_refuses_a_unet_of_another_family_in_one_line(tiny, tmp_path, capsys):
    from inference.cli import main

    sd1 = build_sd(tmp_path, kind="sd1")
    capsys.readouterr()
    code = main(["generate", "--model", str(sd1), "--unet", str(tiny["files"]["diffusers_file"]), "--prompt", "x",
                 "--out", str(tmp_path / "o.png")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and ("does not fit" in err[0] or "cannot replace" in err[0])
