"""`python -m inference`: generate writes a PNG with A1111 parameters; bad input is one line, exit 2."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inference.cli import main

from tiny_models import build_sd

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return build_sd(tmp_path_factory.mktemp("cli"), kind="sd1", in_channels=4)


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "inference", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_generate_writes_png_with_parameters_chunk(tiny_model, tmp_path):
    out = tmp_path / "out.png"
    code = main(["generate", "--model", str(tiny_model), "--prompt", "a (red:1.2) house", "--negative", "blur",
                 "--seed", "11", "--steps", "3", "--sampler", "euler_a", "--guidance", "5", "--width", "64",
                 "--height", "48", "--out", str(out)])
    assert code == 0
    with Image.open(out) as image:
        assert image.size == (64, 48)
        parameters = image.text["parameters"]
        pixels = np.asarray(image)
    lines = parameters.split("\n")
    assert lines[0] == "a (red:1.2) house"
    assert lines[1] == "Negative prompt: blur"
    for field in ("Steps: 3", "Sampler: euler_a", "CFG scale: 5", "Seed: 11", "Size: 64x48", f"Model: {tiny_model.name}"):
        assert field in lines[2]
    assert "Model hash: " in lines[2] and len(lines[2].split("Model hash: ")[1].split(",")[0]) == 10
    assert pixels.std() > 1


def test_img2img_and_inpaint_through_cli(tiny_model, tmp_path):
    init = tmp_path / "init.png"
    mask = tmp_path / "mask.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(init)
    mask_array = np.zeros((64, 64), np.uint8)
    mask_array[8:40, 8:40] = 255
    Image.fromarray(mask_array).save(mask)
    out = tmp_path / "inpainted.png"
    assert main(["generate", "--model", str(tiny_model), "--prompt", "x", "--steps", "2", "--init-image", str(init),
                 "--mask", str(mask), "--out", str(out)]) == 0
    result, original = np.asarray(Image.open(out)), np.asarray(Image.open(init))
    assert np.array_equal(result[mask_array == 0], original[mask_array == 0])
    out2 = tmp_path / "edited.png"
    assert main(["generate", "--model", str(tiny_model), "--prompt", "x", "--steps", "4", "--strength", "0.5",
                 "--init-image", str(init), "--out", str(out2)]) == 0
    assert "Denoising strength: 0.5" in Image.open(out2).text["parameters"]


def test_outpaint_through_cli(tiny_model, tmp_path):
    init = tmp_path / "init.png"
    original = np.random.default_rng(1).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(original).save(init)
    out = tmp_path / "wider.png"
    assert main(["generate", "--model", str(tiny_model), "--prompt", "x", "--steps", "4", "--init-image", str(init),
                 "--extend", "8,0,24,16", "--out", str(out)]) == 0
    result = np.asarray(Image.open(out))
    assert result.shape == (64, 96, 3)
    assert np.array_equal(result[:48, 8:72], original)
    assert "Denoising strength: 0.75" in Image.open(out).text["parameters"]


def test_inspect_prints_json(tiny_model):
    result = _run("inspect", str(tiny_model))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["format"] == "diffusers"
    assert report["family"] == "sd1" and report["prediction_type"] == "epsilon"
    assert report["unet_in_channels"] == 4 and report["missing_keys"] == [] and report["unexpected_keys"] == []
    assert report["parameters"]["unet"] > 100_000


@pytest.mark.parametrize("args,phrase", [
    (["inspect", "/nonexistent/model.safetensors"], "no such file"),
    (["generate", "--model", "/nonexistent/m.safetensors", "--prompt", "x", "--out", "OUT"], "no such file"),
    (["generate", "--model", "MODEL", "--prompt", "x", "--width", "60", "--height", "64", "--out", "OUT"], "width 60"),
    (["generate", "--model", "MODEL", "--prompt", "x", "--sampler", "plms", "--out", "OUT"], "plms"),
    (["generate", "--model", "MODEL", "--prompt", "x", "--init-image", "INIT", "--mask", "SMALLMASK", "--out", "OUT"],
     "mask is 32x32"),
    (["generate", "--model", "MODEL", "--prompt", "x", "--init-image", "INIT", "--strength", "0", "--out", "OUT"],
     "strength"),
    (["generate", "--model", "CORRUPT", "--prompt", "x", "--out", "OUT"], "corrupt.safetensors"),
    (["generate", "--model", "PICKLE", "--prompt", "x", "--out", "OUT"], "pickle"),
    (["generate", "--prompt", "x", "--model", "MODEL", "--device", "cuda", "--out", "OUT"], "cuda"),
    (["generate", "--prompt", "x"], "required"),
    (["generate", "--model", "MODEL", "--prompt", "x", "--extend", "8,0,8,0", "--out", "OUT"], "--init-image"),
    (["generate", "--model", "MODEL", "--prompt", "x", "--init-image", "INIT", "--extend", "8,8", "--out", "OUT"],
     "LEFT,TOP,RIGHT,BOTTOM"),
    (["generate", "--model", "MODEL", "--prompt", "x", "--init-image", "INIT", "--extend", "3,0,0,0", "--out", "OUT"],
     "multiples of 8"),
])
def test_bad_input_is_one_line_exit_2(tiny_model, tmp_path, args, phrase):
    import torch

    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("CUDA present")
    init = tmp_path / "init.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(init)
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(small)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    pickle_file = tmp_path / "model.ckpt"
    pickle_file.write_bytes(b"\x80\x04\x95")
    replacements = {"MODEL": str(tiny_model), "OUT": str(tmp_path / "o.png"), "INIT": str(init),
                    "SMALLMASK": str(small), "CORRUPT": str(corrupt), "PICKLE": str(pickle_file)}
    result = _run(*[replacements.get(a, a) for a in args])
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert phrase.lower() in lines[0].lower()
    assert not (tmp_path / "o.png").exists()


def test_ctrl_c_stops_cleanly_without_output(tiny_model, tmp_path):
    """SIGINT during sampling: exit 130, one line, no PNG written."""
    import signal
    import time

    out = tmp_path / "never.png"
    log_path = tmp_path / "stderr.txt"
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "inference", "generate", "--model", str(tiny_model),
                                    "--prompt", "x", "--steps", "1000", "--width", "256", "--height", "256",
                                    "--out", str(out)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.time() + 120
        # Interrupt once sampling has started (the progress bar has printed a step).
        while time.time() < deadline and "/1000" not in log_path.read_text(errors="replace"):
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    stderr_seen = log_path.read_text(errors="replace")
    assert process.returncode == 130, stderr_seen[-500:]
    assert "interrupted" in stderr_seen and "Traceback" not in stderr_seen
    assert not out.exists()


def test_generate_without_model_uses_the_house_model(tmp_path):
    from inference.cli import house_model_path

    if not (house_model_path() / "model_index.json").is_file():
        pytest.skip("house model not installed")
    out = tmp_path / "house.png"
    assert main(["generate", "--prompt", "a boat on a lake at night", "--steps", "2", "--guidance", "4",
                 "--out", str(out)]) == 0
    with Image.open(out) as image:
        assert image.size == (128, 128)  # the house model's native size, from its config
        assert "Model: full" in image.text["parameters"]
