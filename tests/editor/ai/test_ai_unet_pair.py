"""UNet-only files (SDXL-Lightning, Hyper-SD, DMD2) in the editor's model picker: paired with the
final model as their base, run through the engine facade, refused in one line when they don't fit."""
from __future__ import annotations

import numpy as np
import pytest

from editor.ai import catalog
from editor.ai.engine import TorchEngine
from inference.api import GenerationRequest
from inference.formats.safetensors_file import save_tensors
from tiny_models import build_sd, build_sdxl


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from diffusers import UNet2DConditionModel

    root = tmp_path_factory.mktemp("unet_pair")
    base = build_sdxl(root / "base")
    other = build_sdxl(root / "other", seed=7)
    unet = UNet2DConditionModel.from_pretrained(other / "unet")
    unet_file = root / "sdxl_lightning_2step_unet.safetensors"
    save_tensors({k: v.contiguous() for k, v in unet.state_dict().items()}, unet_file)
    return {"base": base, "unet": unet_file, "sd1": build_sd(root / "sd1", kind="sd1")}


def test_a_unet_file_pairs_with_the_base_and_renders_like_the_loader(models):
    from inference.loader import load_model
    from inference.pipeline import Pipeline

    entry = catalog.inspected_unet_entry(str(models["unet"]), str(models["base"]))
    assert entry.unet_path == models["unet"] and entry.path == models["base"]
    assert entry.steps == 2 and entry.guidance == 0.0  # the Lightning 2-step preset, from the name
    assert "on base" not in entry.label and entry.label.startswith("sdxl_lightning_2step_unet on ")
    assert catalog.resolve(entry.id).unet_path == models["unet"]  # the id round-trips through settings
    engine = TorchEngine(catalog.engine_specs([entry]))
    request = GenerationRequest(prompt="a lake", width=64, height=64, steps=2, guidance=0.0, seed=3,
                                timestep_spacing="trailing")
    ours = engine.generate(entry.id, request).image
    direct = Pipeline(load_model(models["base"], unet_path=models["unet"])).generate(request).image
    plain = Pipeline(load_model(models["base"])).generate(request).image
    assert np.array_equal(ours, direct) and not np.array_equal(ours, plain)


@pytest.mark.parametrize("case, message", [("family", "does not fit"), ("not_unet", "not a UNet"),
                                           ("missing_base", "needs a base model")])
def test_unets_that_do_not_fit_are_refused_in_one_line(models, tmp_path, case, message):
    unet, base = str(models["unet"]), str(models["base"])
    if case == "family":
        base = str(models["sd1"])
    elif case == "not_unet":
        unet = str(models["sd1"] / "vae" / "diffusion_pytorch_model.safetensors")
    else:
        base = str(tmp_path / "gone")
    with pytest.raises(catalog.ModelRefused) as caught:
        catalog.inspected_unet_entry(unet, base)
    assert "\n" not in str(caught.value) and (message in str(caught.value) or case == "not_unet")
