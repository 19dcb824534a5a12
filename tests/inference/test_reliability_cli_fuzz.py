"""Random CLI argument values, and hostile models under an address-space cap.

`generate` with random values for every numeric/text option either renders (exit 0) or exits 2
with exactly one stderr line; the render itself is stubbed so hundreds of cases run in seconds.
Hostile configs and headers are inspected in a subprocess whose address space is capped at 3 GB
and whose time is bounded: the refusal must come before any allocation the file asks for.
"""
from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inference.api import GenerationResult
from inference.cli import main

ROOT = Path(__file__).resolve().parents[2]
HOUSE = ROOT / "assets" / "house" / "full"

numbers = st.one_of(st.integers(-10**12, 10**12).map(str), st.floats(allow_nan=True, allow_infinity=True).map(str),
                    st.sampled_from(["", "nan", "-0", "1e309", "0x10", "½", "٣", " 8 ", "64"]),
                    st.text(max_size=6))
OPTIONS = {
    "--width": numbers, "--height": numbers, "--steps": numbers, "--guidance": numbers, "--strength": numbers,
    "--seed": numbers, "--guidance-rescale": numbers, "--tcd-gamma": numbers,
    "--sampler": st.one_of(st.sampled_from(["euler", "tcd", "lcm", "heun", ""]), st.text(max_size=6)),
    "--timestep-spacing": st.sampled_from(["trailing", "simple", "karras", ""]),
    "--device": st.one_of(st.sampled_from(["cpu", "cuda", "cuda:1", "mps", "tpu", "CPU "]), st.text(max_size=6)),
    "--extend": st.one_of(st.sampled_from(["0,0,64,0", "8,8,8,8", "1,2,3", "-8,0,0,0", "a,b,c,d"]), st.text(max_size=8)),
    "--prompt": st.text(max_size=40),
}


@pytest.fixture
def stubbed_engine(monkeypatch):
    """Loading and rendering are replaced by stand-ins: the fuzz is about argument handling."""
    import inference.engine as engine_module

    fake_model = SimpleNamespace(name="house", file_hash="0123456789")
    monkeypatch.setattr(engine_module.Engine, "load", lambda self, ref: SimpleNamespace(model=fake_model))
    monkeypatch.setattr(engine_module.Engine, "generate", lambda self, ref, request, **kw: GenerationResult(
        np.zeros((request.height, request.width, 3), np.uint8), request.seed))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chosen=st.dictionaries(st.sampled_from(sorted(OPTIONS)), st.none(), max_size=5).flatmap(
    lambda keys: st.fixed_dictionaries({key: OPTIONS[key] for key in keys})))
def test_random_generate_arguments_render_or_fail_in_one_line(stubbed_engine, tmp_path_factory, capfd, chosen):
    out = tmp_path_factory.mktemp("fuzz") / "o.png"
    argv = ["generate", "--prompt", chosen.pop("--prompt", "a lake"), "--out", str(out)]
    if "--extend" in chosen:
        init = out.parent / "in.png"
        from PIL import Image

        Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(init)
        argv += ["--init-image", str(init)]
    for key, value in chosen.items():
        argv.append(f"{key}={value}")
    capfd.readouterr()
    code = main(argv)
    err = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    if code == 0:
        assert out.is_file() and not any(line.startswith("error") for line in err), err
    else:
        assert code == 2 and len(err) == 1 and err[0].startswith("error"), (argv, err)
        assert not out.exists()


# ----------------------------------------------------------------------------- capped subprocesses
CAP_BYTES = 3 * 1024**3


def _capped() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CAP_BYTES, CAP_BYTES))


def _inspect_capped(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "inference", "inspect", str(path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, preexec_fn=_capped)


def _house_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "house"
    shutil.copytree(HOUSE, folder, ignore=shutil.ignore_patterns("*.safetensors"))
    for weights in HOUSE.glob("*/*.safetensors"):  # configs are what we mutate: link the weights
        (folder / weights.parent.name / weights.name).symlink_to(weights)
    return folder


@pytest.mark.parametrize("component, field, value", [
    ("unet", "block_out_channels", [2**30, 2**30, 2**30]),
    ("unet", "layers_per_block", 10**9),
    ("unet", "cross_attention_dim", 10**12),
    ("vae", "block_out_channels", [2**28, 2**29]),
    ("text_encoder", "hidden_size", 2**31),
    ("text_encoder", "num_hidden_layers", 10**7),
    ("scheduler", "num_train_timesteps", 10**12),
])
def test_absurd_config_sizes_are_refused_within_a_3gb_address_space(tmp_path, component, field, value):
    folder = _house_copy(tmp_path)
    name = "scheduler_config.json" if component == "scheduler" else "config.json"
    config_path = folder / component / name
    config = json.loads(config_path.read_text())
    config[field] = value
    config_path.write_text(json.dumps(config))
    result = _inspect_capped(folder)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and field in lines[0], result.stderr[-600:]


def test_the_untouched_copy_inspects_under_the_same_cap(tmp_path):
    result = _inspect_capped(_house_copy(tmp_path))
    assert result.returncode == 0, result.stderr[-600:]
    assert json.loads(result.stdout)["native_resolution"] == 128


def test_sigkill_during_generate_leaves_the_old_output_and_no_temp_file(tmp_path):
    """Killed mid-sampling: the previous PNG at --out is byte-identical and nothing else is left."""
    import os
    import signal
    import time

    out = tmp_path / "o.png"
    out.write_bytes(b"the previous render")
    process = subprocess.Popen([sys.executable, "-m", "inference", "generate", "--prompt", "a lake", "--steps", "400",
                                "--out", str(out)], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        seen = ""
        while "sampling" not in seen and time.monotonic() < deadline:  # tqdm's bar: sampling started
            seen += process.stderr.read(1)
        assert "sampling" in seen
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        process.kill()
    assert out.read_bytes() == b"the previous render"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.png"]
