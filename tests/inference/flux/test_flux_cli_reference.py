"""`generate --reference IMAGE` for FLUX Kontext: the CLI's pixels equal the pipeline's with the
same `reference_image`; hostile references and models are one line, exit 2, nothing written."""
from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from flux_models import build_flux
from inference.api import GenerationRequest
from inference.cli import main
from inference.flux.loader import load_flux_folder
from inference.flux.pipeline import FluxPipeline

ARGS = ["--prompt", "make it night", "--width", "64", "--height", "64", "--steps", "2", "--seed", "7"]


@pytest.fixture(scope="module")
def schnell(tmp_path_factory):
    return build_flux(tmp_path_factory.mktemp("flux_cli_reference"), dev=False, seed=6)


def _reference(path, width: int = 48, height: int = 32) -> np.ndarray:
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return pixels


def test_reference_renders_like_the_pipeline(flux_kontext_folder, tmp_path):
    reference = _reference(tmp_path / "canvas.png")
    out = tmp_path / "edit.png"
    assert main(["generate", "--model", str(flux_kontext_folder), "--reference", str(tmp_path / "canvas.png"),
                 "--guidance", "2.5", *ARGS, "--out", str(out)]) == 0
    request = GenerationRequest(prompt="make it night", width=64, height=64, steps=2, seed=7, guidance=2.5,
                                reference_image=reference)
    expected = FluxPipeline(load_flux_folder(flux_kontext_folder)).generate(request)
    assert expected.info["reference_size"]  # the reference was used
    assert np.array_equal(np.asarray(Image.open(out).convert("RGB")), expected.image)


def _hostile(tmp_path, name: str):
    """(path given to --reference, text the error line must contain)."""
    path = tmp_path / name
    if name == "missing.png":
        return path, "no such image file"
    if name == "notes.png":
        path.write_text("not an image at all\n")
        return path, "not a readable image"
    if name == "folder.png":
        path.mkdir()
        return path, "folder"
    if name == "dot.png":
        Image.new("RGB", (1, 1)).save(path)
        return path, "1x1"
    if name == "huge.png":  # 10000² (1-bit: a small file) — refused from its header, never decoded
        Image.new("1", (10000, 10000)).save(path)
        return path, "10000x10000"
    raise AssertionError(name)


@pytest.mark.parametrize("name", ["missing.png", "notes.png", "folder.png", "dot.png", "huge.png"])
def test_hostile_references_are_one_line(flux_kontext_folder, tmp_path, capsys, name):
    path, says = _hostile(tmp_path, name)
    out = tmp_path / "o.png"
    capsys.readouterr()
    started = time.monotonic()
    code = main(["generate", "--model", str(flux_kontext_folder), "--reference", str(path), *ARGS,
                 "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "--reference" in err[0] and str(path) in err[0] and says in err[0], err
    assert time.monotonic() - started < 20 and not out.exists()


def test_reference_to_a_non_kontext_model_is_one_line(schnell, tmp_path, capsys):
    _reference(tmp_path / "canvas.png")
    out = tmp_path / "o.png"
    capsys.readouterr()
    code = main(["generate", "--model", str(schnell), "--reference", str(tmp_path / "canvas.png"), *ARGS,
                 "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "not a FLUX Kontext model" in err[0], err
    assert str(tmp_path / "canvas.png") in err[0] and schnell.name in err[0] and not out.exists()
