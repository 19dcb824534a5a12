"""`generate --farm HOST:PORT` with nothing listening there: one note, a local render, the same PNG."""
from __future__ import annotations

import importlib.util
import socket
import time

import numpy as np
import pytest
from PIL import Image

from inference.cli import main

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs ray (the 'farm' extra)")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_farm_renders_locally_with_one_note(tmp_path, capsys):
    common = ["generate", "--prompt", "a lake", "--steps", "2", "--seed", "4"]
    local, farmed = tmp_path / "local.png", tmp_path / "farm.png"
    assert main(common + ["--out", str(local)]) == 0
    started = time.monotonic()
    capsys.readouterr()
    assert main(common + ["--farm", f"127.0.0.1:{_closed_port()}", "--out", str(farmed)]) == 0
    assert time.monotonic() - started < 60
    notes = [line for line in capsys.readouterr().err.splitlines() if "locally" in line]
    assert len(notes) == 1 and notes[0].startswith("note:")
    assert np.array_equal(np.asarray(Image.open(local)), np.asarray(Image.open(farmed)))


def test_farm_with_a_missing_or_pickled_vae_or_unet_is_one_line(tmp_path, capsys):
    """--vae/--unet work with --farm (test_farm_ray.py renders one); a file that is missing, or a
    pickle the farm never ships, is refused in one line before anything is contacted."""
    pickled = tmp_path / "vae.pt"
    pickled.write_bytes(b"\x80\x04N.")
    for flag, path in (("--unet", tmp_path / "u.safetensors"), ("--vae", tmp_path / "v.safetensors"),
                       ("--vae", pickled)):
        code = main(["generate", "--prompt", "x", "--steps", "1", "--width", "64", "--height", "64",
                     "--farm", "127.0.0.1:1", flag, str(path), "--out", str(tmp_path / "o.png")])
        err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("note:")]
        assert code == 2 and len(err) == 1, (flag, path, err)
    assert not (tmp_path / "o.png").exists()
