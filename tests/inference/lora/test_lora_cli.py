"""LoRAs through the engine facade and the CLI: `generate --lora FILE[:W[:TW]]`, `inspect LORA`,
switching without reloading, removal back to the base pixels, and one-line errors."""
from __future__ import annotations

import json
from pathlib import Path

import lora_helpers as helpers
import numpy as np
import pytest
from PIL import Image

from inference.api import GenerationRequest, LoraSpec, validate_request
from inference.cli import main
from inference.engine import Engine, ModelRef
from inference.errors import InvalidRequestError


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from diffusers import StableDiffusionPipeline
    from tiny_models import build_sd

    root = tmp_path_factory.mktemp("lora_cli")
    folder = build_sd(root, kind="sd1")
    pipe = StableDiffusionPipeline.from_pretrained(folder)
    lora = root / "style.safetensors"
    helpers.kohya_lora(lora, {"lora_unet_": helpers.unet_layers(pipe.unet),
                              "lora_te_": helpers.text_layers(pipe.text_encoder)}, seed=3,
                       metadata={"ss_tag_frequency": json.dumps({"10_inkstyle": {"inkstyle": 10, "lake": 3}})})
    return folder, lora


def _render(engine, ref, loras=()):
    request = GenerationRequest(prompt="a lake", width=64, height=64, steps=2, seed=5, loras=tuple(loras))
    return engine.generate(ref, request).image


def test_lora_switching_is_exact_and_never_reloads(setup):
    folder, lora = setup
    engine = Engine("cpu")
    ref = ModelRef(folder)
    base = _render(engine, ref)
    styled = _render(engine, ref, [LoraSpec(str(lora), 0.8)])
    text_only = _render(engine, ref, [LoraSpec(str(lora), 0.0, 1.0)])
    again = _render(engine, ref)
    assert np.abs(styled.astype(int) - base).max() > 3  # the LoRA shows
    assert np.abs(text_only.astype(int) - base).max() > 0  # text weights reach the prompt cache
    assert np.array_equal(again, base)  # removing it restores the base pixels exactly
    assert len(engine.loads) == 1


def test_cli_generate_with_lora_and_inspect(setup, tmp_path, capsys):
    folder, lora = setup
    base, styled, zero = tmp_path / "base.png", tmp_path / "styled.png", tmp_path / "zero.png"
    common = ["generate", "--model", str(folder), "--prompt", "a lake", "--steps", "2", "--seed", "5"]
    assert main(common + ["--out", str(base)]) == 0
    assert main(common + ["--lora", f"{lora}:0.8", "--out", str(styled)]) == 0
    assert main(common + ["--lora", f"{lora}:0:0", "--out", str(zero)]) == 0
    pixels = {p: np.asarray(Image.open(p)).astype(int) for p in (base, styled, zero)}
    assert np.abs(pixels[styled] - pixels[base]).max() > 3
    assert np.array_equal(pixels[zero], pixels[base])
    capsys.readouterr()
    assert main(["inspect", str(lora)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "kohya" and "inkstyle" in json.dumps(report)


@pytest.mark.parametrize("value, message", [("missing.safetensors", "no such file"),
                                            ("{lora}:abc:1:2", "no such file")])
def test_cli_bad_lora_arguments_are_one_line(setup, tmp_path, capsys, value, message):
    folder, lora = setup
    code = main(["generate", "--model", str(folder), "--prompt", "x", "--steps", "1",
                 "--lora", value.format(lora=lora), "--out", str(tmp_path / "o.png")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0]


@pytest.mark.parametrize("weight", [float("nan"), 9.0, -100.0])
def test_absurd_lora_weights_are_refused(weight):
    request = GenerationRequest(prompt="x", width=64, height=64, loras=(LoraSpec("a.safetensors", weight),))
    with pytest.raises(InvalidRequestError, match="a.safetensors: weight"):
        validate_request(request)


def test_prompt_lora_tags_resolve_against_lora_dir(setup, tmp_path, capsys, monkeypatch):
    """`--prompt "a lake <lora:style:0.8>" --lora-dir DIR` renders what `--lora style.safetensors:0.8` does."""
    monkeypatch.setenv("CANVASAI_DATA_DIR", str(tmp_path / "data"))  # the library cache goes there
    folder, lora = setup
    common = ["generate", "--model", str(folder), "--steps", "2", "--seed", "5"]
    tagged, flagged = tmp_path / "tagged.png", tmp_path / "flagged.png"
    assert main(common + ["--prompt", "a lake <lora:style:0.8>", "--lora-dir", str(lora.parent),
                          "--out", str(tagged)]) == 0
    assert main(common + ["--prompt", "a lake", "--lora", f"{lora}:0.8", "--out", str(flagged)]) == 0
    assert np.array_equal(np.asarray(Image.open(tagged)), np.asarray(Image.open(flagged)))
    capsys.readouterr()
    code = main(common + ["--prompt", "a lake <lora:stlye:1>", "--lora-dir", str(lora.parent),
                          "--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "close: style" in err[0]


def test_library_command_lists_the_folder(setup, tmp_path, capsys):
    folder, lora = setup
    assert main(["library", str(lora.parent), "--kind", "lora", "--cache", str(tmp_path / "cache.json")]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [Path(row["path"]).name for row in rows] == ["style.safetensors"]
    assert main(["library", str(tmp_path / "nowhere")]) == 2
