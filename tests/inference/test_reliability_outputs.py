"""Engine output files (inference.outputs), --device parsing (inference.devices) and the NaN/Inf
guard (inference.guards) under hostile or failing conditions."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.devices import parse_device
from inference.errors import InferenceError
from inference.guards import check_finite
from inference.outputs import check_destination, write_atomically

ROOT = Path(__file__).resolve().parents[2]
OLD = b"\x89PNG old file, must survive" * 100


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def _one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text and "\r" not in text, text
    return text


# ---- check_destination ------------------------------------------------------------------------------


def test_destination_checks_run_before_any_work(tmp_path):
    assert check_destination(tmp_path / "out.png") == tmp_path / "out.png"
    assert check_destination(tmp_path / "OUT.PNG")  # suffix compared case-insensitively
    cases = [
        (tmp_path / "missing" / "out.png", "does not exist"),
        (tmp_path, "is a folder"),
        (tmp_path / "out.jpg", "must end in .png"),
        ("", "not a usable output path"),
    ]
    (tmp_path / "dir.png").mkdir()
    cases.append((tmp_path / "dir.png", "is a folder"))
    (tmp_path / "file").write_bytes(b"x")
    cases.append((tmp_path / "file" / "out.png", "is not a folder"))
    os.symlink(tmp_path / "nowhere.png", tmp_path / "dangling.png")
    cases.append((tmp_path / "dangling.png", "dangling"))
    for path, expected in cases:
        with pytest.raises(InferenceError) as info:
            check_destination(path)
        message = _one_line(info.value)
        assert expected in message and str(path) in message


@contextlib.contextmanager
def _tmpfs(path: Path, size: str = "64k"):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True).returncode == 0
    if not mounted:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _make_readonly(folder: Path):
    """A folder writes fail in: a read-only tmpfs as root (root ignores permissions), else chmod."""
    if os.geteuid() == 0:
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
    else:
        folder.chmod(0o555)


def test_read_only_folder(tmp_path):
    ctx = _tmpfs(tmp_path / "ro") if os.geteuid() == 0 else contextlib.nullcontext(tmp_path / "ro")
    with ctx as folder:
        folder.mkdir(exist_ok=True)
        (folder / "out.png").write_bytes(OLD)
        _make_readonly(folder)
        try:
            with pytest.raises(InferenceError) as info:
                check_destination(folder / "out.png")
            assert "not writable" in _one_line(info.value)
            with pytest.raises(InferenceError) as info:
                write_atomically(folder / "out.png", lambda f: f.write(b"new"))
            message = _one_line(info.value)
            assert str(folder / "out.png") in message
            assert "read-only" in message or "permission denied" in message
            assert (folder / "out.png").read_bytes() == OLD
        finally:
            if os.geteuid() != 0:
                folder.chmod(0o755)


def test_writes_atomically_and_keeps_permissions(tmp_path):
    out = tmp_path / "out.png"
    out.write_bytes(OLD)
    out.chmod(0o640)
    write_atomically(out, lambda f: f.write(b"new image"))
    assert out.read_bytes() == b"new image"
    assert (out.stat().st_mode & 0o777) == 0o640
    assert _leftovers(tmp_path) == []


def test_planted_symlink_at_the_old_partial_name_is_not_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    out = tmp_path / "out.png"
    out.write_bytes(OLD)
    os.symlink(victim, tmp_path / "out.png.partial")  # the old fixed temp name
    os.symlink(victim, tmp_path / f".out.png.{os.getpid()}.tmp")
    write_atomically(out, lambda f: f.write(b"new"))
    assert victim.read_bytes() == b"precious"
    assert out.read_bytes() == b"new" and not out.is_symlink()
    assert os.path.islink(tmp_path / "out.png.partial")


def test_a_failing_writer_leaves_the_old_file(tmp_path):
    out = tmp_path / "out.png"
    out.write_bytes(OLD)

    def broken(handle):
        handle.write(b"half")
        raise RuntimeError("encoder crashed")

    with pytest.raises(RuntimeError, match="encoder crashed"):
        write_atomically(out, broken)
    assert out.read_bytes() == OLD and _leftovers(tmp_path) == []

    def no_space(handle):
        raise OSError(28, "No space left on device")

    with pytest.raises(InferenceError) as info:
        write_atomically(out, no_space)
    assert _one_line(info.value) == f"{out}: cannot write, previous file kept: disk full"
    assert out.read_bytes() == OLD and _leftovers(tmp_path) == []


def test_folder_as_out(tmp_path):
    with pytest.raises(InferenceError, match="is a folder"):
        write_atomically(tmp_path, lambda f: f.write(b"x"))
    assert _leftovers(tmp_path) == []


def test_full_disk_on_a_tiny_tmpfs(tmp_path):
    with _tmpfs(tmp_path / "small", "64k") as folder:
        out = folder / "out.png"
        out.write_bytes(OLD[:1000])
        big = os.urandom(256 * 1024)
        with pytest.raises(InferenceError) as info:
            write_atomically(out, lambda f: f.write(big))
        assert "disk full" in _one_line(info.value)
        assert out.read_bytes() == OLD[:1000]
        assert _leftovers(folder) == []


CHILD = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {root!r})
    from inference.outputs import write_atomically

    def slow(handle):
        for _ in range(2000):
            handle.write(os.urandom(4096))
            handle.flush()
            print("W", flush=True)
            time.sleep(0.001)

    write_atomically(sys.argv[1], slow)
""")


@pytest.mark.parametrize("writes_before_kill", [1, 40])
def test_sigkill_during_the_write_keeps_the_old_file(tmp_path, writes_before_kill):
    out = tmp_path / "out.png"
    out.write_bytes(OLD)
    proc = subprocess.Popen([sys.executable, "-c", CHILD.format(root=str(ROOT)), str(out)],
                            stdout=subprocess.PIPE, text=True)
    for _ in range(writes_before_kill):
        assert proc.stdout.readline().strip() == "W"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert out.read_bytes() == OLD  # byte-identical
    temps = _leftovers(tmp_path)
    assert len(temps) == 1 and temps[0].startswith(".out.png.")  # only the dead writer's temp file


# ---- parse_device -----------------------------------------------------------------------------------


def test_parse_device_accepts_the_four_forms():
    assert parse_device("cpu") == "cpu"
    assert parse_device("  CPU \n") == "cpu"
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus:
        assert parse_device(" Cuda ") == "cuda"
        assert parse_device(f"cuda:{gpus - 1}") == f"cuda:{gpus - 1}"
    for text in ("cuda", "cuda:0", f"cuda:{gpus}", "cuda:3"):
        if gpus and text in ("cuda", "cuda:0"):
            continue
        if text == "cuda:3" and gpus > 3:
            continue
        with pytest.raises(InferenceError) as info:
            parse_device(text)
        assert _one_line(info.value).startswith(f"--device {text}")
    if not (torch.backends.mps.is_available()):
        with pytest.raises(InferenceError, match="MPS is not available"):
            parse_device("MPS")


def test_parse_device_names_the_count(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert parse_device("cuda:0") == "cuda:0"
    with pytest.raises(InferenceError) as info:
        parse_device("cuda:3")
    assert _one_line(info.value) == "--device cuda:3: this machine has 1 CUDA GPU (cuda:0)"


@pytest.mark.parametrize("text", ["GPU", "tpu", "cuda:", "cuda:-1", "cuda:1.5", "cpu:0", "mps:1", "cuda 0", "", "  ",
                                  "cuda:0\nrm -rf /", "cuda:99999", "ｃｐｕ", "cuda:٣"])
def test_parse_device_refuses_malformed_values(text):
    with pytest.raises(InferenceError) as info:
        parse_device(text)
    assert _one_line(info.value).startswith("--device ")


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.text(max_size=30), st.from_regex(r"\s*(cpu|cuda|mps|CUDA)(:[0-9]{0,6})?\s*", fullmatch=True)))
def test_parse_device_raises_only_inference_errors(text):
    try:
        result = parse_device(text)
    except InferenceError as error:
        _one_line(error)
        assert len(str(error)) < 200
        return
    assert result in ("cpu", "cuda", "mps") or result.startswith("cuda:")


# ---- check_finite -----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_check_finite_refuses_nan_and_inf(bad):
    for values in (torch.tensor([0.0, bad]), torch.tensor([[1.0, bad]], dtype=torch.float16),
                   np.array([1.0, bad], np.float32), [0.0, bad], bad):
        with pytest.raises(InferenceError) as info:
            check_finite(values, "latents", "try float32 / another VAE")
        assert _one_line(info.value) == "the model produced NaN/Inf in the latents: try float32 / another VAE"


def test_check_finite_accepts_finite_and_integer_data():
    check_finite(torch.randn(2, 4, 8, 8), "latents", "hint")
    check_finite(torch.zeros(3, dtype=torch.uint8), "pixels", "hint")
    check_finite(np.full((4, 4, 3), 255, np.uint8), "pixels", "hint")
    check_finite(torch.tensor([65504.0], dtype=torch.float16), "pixels", "hint")
    check_finite([1, 2.5], "pixels", "hint")


# ----------------------------------------------------------------------------- wired into the CLI
def _generate(args, capsys):
    from inference.cli import main

    capsys.readouterr()
    code = main(["generate", "--prompt", "a lake", "--steps", "1", *args])
    return code, capsys.readouterr().err.strip().splitlines()


def test_cli_refuses_a_bad_destination_before_any_work(tmp_path, capsys, monkeypatch):
    import inference.engine as engine_module

    monkeypatch.setattr(engine_module.Engine, "load", lambda *a, **k: pytest.fail("loaded a model"))
    for out, message in ((tmp_path / "missing" / "o.png", "does not exist"), (tmp_path, "folder"),
                         (tmp_path / "o.jpg", ".png")):
        code, err = _generate(["--out", str(out)], capsys)
        assert code == 2 and len(err) == 1 and message in err[0], err


def test_cli_output_never_follows_a_planted_partial_symlink(tmp_path, capsys):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (tmp_path / "o.png.partial").symlink_to(victim)
    code, _ = _generate(["--out", str(tmp_path / "o.png")], capsys)
    assert code == 0 and victim.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.png", "o.png.partial", "victim.txt"]


@pytest.mark.parametrize("device", ["cuda:0", "gpu", "cuda:x", "", "cpu;rm"])
def test_cli_bad_devices_are_one_line(tmp_path, capsys, device):
    code, err = _generate(["--device", device, "--out", str(tmp_path / "o.png")], capsys)
    assert code == 2 and len(err) == 1


def test_nan_latents_are_an_error_not_a_black_image(tmp_path, capsys, monkeypatch):
    import torch

    from inference.samplers import schedules

    original = schedules.Schedule.output_latents
    monkeypatch.setattr(schedules.Schedule, "output_latents", lambda self, x: original(self, x) * torch.nan)
    out = tmp_path / "o.png"
    code, err = _generate(["--out", str(out)], capsys)
    # The render ran (its note and progress bar are above); the failure is one error line, no file.
    errors = [line for line in err if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "NaN" in errors[0] and not out.exists()


def test_convert_refuses_a_missing_destination_folder(tmp_path, capsys):
    from inference.cli import main

    src = tmp_path / "m.ckpt"
    src.write_bytes(b"\x80\x02}q\x00.")
    code = main(["convert", str(src), str(tmp_path / "nowhere" / "m.safetensors")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "does not exist" in err[0]
