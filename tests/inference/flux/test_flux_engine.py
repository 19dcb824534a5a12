"""FLUX folders through the torch-free API, the engine facade and the CLI (the same code paths the
editor uses): facts without weights, the pipeline's own pixels, and the CLI's presets."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from flux_models import build_flux
from inference.api import GenerationRequest, read_model_info
from inference.cli import main
from inference.engine import Engine, ModelRef


@pytest.fixture(scope="module")
def schnell(tmp_path_factory):
    return build_flux(tmp_path_factory.mktemp("flux_engine"), dev=False)


def test_flux_folder_facts_and_engine_render(schnell):
    from inference.flux.loader import load_flux_folder
    from inference.flux.pipeline import FluxPipeline

    info = read_model_info(schnell)
    assert info.family.startswith("flux1") and info.kind == "checkpoint" and info.preset.guidance == 0.0
    engine = Engine("cpu")
    ref = ModelRef(schnell)
    request = GenerationRequest(prompt="a red boat", width=64, height=64, steps=2, seed=3, guidance=0.0)
    assert engine.request_warnings(ref, request) == []  # FLUX samples with its own scheduler: no note
    image = engine.generate(ref, request).image
    direct = FluxPipeline(load_flux_folder(schnell)).generate(request).image
    assert image.shape == (64, 64, 3) and np.array_equal(image, direct)
    # The SD pipeline's latent refine (init latents, structure keeping) is not in the FLUX pipeline:
    # refused in one line rather than silently ignored.
    from inference.errors import InvalidRequestError

    init = dict(prompt="a red boat", width=64, height=64, steps=2, seed=3, guidance=0.0, init_image=image,
                strength=0.5)
    for extra in ({"structure_scale": 2}, {"structure_bound": 0.05}, {"init_latents": np.zeros((16, 8, 8), np.float32)}):
        with pytest.raises(InvalidRequestError, match="not supported for FLUX yet"):
            engine.generate(ref, GenerationRequest(**init, **extra))


def test_cli_renders_a_flux_folder_with_its_preset(schnell, tmp_path, capsys):
    out = tmp_path / "flux.png"
    assert main(["generate", "--model", str(schnell), "--prompt", "a red boat", "--width", "64", "--height", "64",
                 "--out", str(out)]) == 0
    assert Image.open(out).size == (64, 64)
    parameters = Image.open(out).info["parameters"]
    assert f"Steps: {read_model_info(schnell).preset.steps}," in parameters


@pytest.mark.parametrize("component, field, value", [
    ("transformer", "num_layers", 10**9), ("transformer", "num_attention_heads", "24"),
    ("transformer", "attention_head_dim", 2**20), ("transformer", "axes_dims_rope", [1, 2]),
    ("transformer", "patch_size", 2), ("text_encoder_2", "num_layers", 10**7),
    ("text_encoder_2", "d_model", -1), ("text_encoder_2", "feed_forward_proj", "swish"),
    ("text_encoder_2", "layer_norm_epsilon", "tiny"),
])
def test_hostile_flux_configs_are_one_line_before_anything_is_built(schnell, tmp_path, capsys, component, field,
                                                                    value):
    import json
    import shutil
    import time

    folder = tmp_path / "flux"
    shutil.copytree(schnell, folder)
    config_path = folder / component / "config.json"
    config = json.loads(config_path.read_text())
    config[field] = value
    config_path.write_text(json.dumps(config))
    started = time.monotonic()
    code = main(["generate", "--model", str(folder), "--prompt", "x", "--width", "64", "--height", "64",
                 "--out", str(tmp_path / "o.png")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "config.json" in err[0], err
    assert time.monotonic() - started < 30 and not (tmp_path / "o.png").exists()
