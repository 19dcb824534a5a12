"""Pickle checkpoints are refused, never unpickled implicitly, and convert only weights-only."""
from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from inference.errors import ModelFormatError
from inference.formats import pickle_checkpoint as pc
from inference.formats.pickle_checkpoint import (
    check_not_pickle,
    convert_pickle_to_safetensors,
    sniff_pickle,
)
from inference.formats.safetensors_file import load_tensors, read_header, save_tensors


class Exploit:
    """Unpickling this calls open(marker, "w"): a stand-in for arbitrary code execution."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def evil_checkpoint(path: Path, marker: Path, *, zip_format: bool = True) -> Path:
    payload = {"state_dict": {"w": torch.ones(2)}, "hook": Exploit(marker)}
    torch.save(payload, path, _use_new_zipfile_serialization=zip_format)
    return path


def test_exploit_is_real_when_loaded_unsafely(tmp_path):
    # Guards the tests below: without weights_only this file does run code.
    marker = tmp_path / "pwned"
    path = evil_checkpoint(tmp_path / "evil.ckpt", marker)
    torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_pickle_checkpoint_is_refused_without_running_it(tmp_path, zip_format):
    marker = tmp_path / "pwned"
    path = evil_checkpoint(tmp_path / "model.ckpt", marker, zip_format=zip_format)
    with pytest.raises(ModelFormatError) as info:
        check_not_pickle(path)
    message = str(info.value)
    assert message.startswith("model.ckpt: pickle checkpoints can run code when loaded")
    assert "python -m inference convert model.ckpt model.safetensors" in message
    assert not marker.exists()


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_conversion_blocks_code_execution(tmp_path, zip_format):
    marker = tmp_path / "pwned"
    src = evil_checkpoint(tmp_path / "model.ckpt", marker, zip_format=zip_format)
    dst = tmp_path / "model.safetensors"
    with pytest.raises(ModelFormatError, match=r"^model\.ckpt: refused: the checkpoint contains"):
        convert_pickle_to_safetensors(src, dst)
    assert not marker.exists()
    assert not dst.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.ckpt"]


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_pickle_renamed_to_safetensors_is_refused_by_content(tmp_path, zip_format):
    marker = tmp_path / "pwned"
    path = evil_checkpoint(tmp_path / "model.safetensors", marker, zip_format=zip_format)
    for func in (check_not_pickle, read_header, load_tensors):
        with pytest.raises(ModelFormatError, match="model.safetensors: pickle checkpoints") as info:
            func(path)
        assert "model.converted.safetensors" in str(info.value)
    assert not marker.exists()


def test_plain_pickle_protocols_are_detected():
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        data = pickle.dumps({"a": 1}, protocol=protocol)
        assert sniff_pickle(data[:16], len(data)) == "pickle", protocol


def test_safetensors_file_is_not_a_pickle(tmp_path):
    path = tmp_path / "ok.safetensors"
    save_tensors({"w": torch.ones(3)}, path)
    check_not_pickle(path)  # no exception


def test_safetensors_data_under_pickle_extension_gets_rename_hint(tmp_path):
    path = tmp_path / "unet.bin"
    save_tensors({"w": torch.ones(3)}, path)
    with pytest.raises(ModelFormatError, match="unet.bin: looks like safetensors data.*"
                                               "rename it to unet.safetensors"):
        check_not_pickle(path)


@pytest.mark.parametrize("suffix", [".ckpt", ".pt", ".pth", ".bin", ".CKPT"])
def test_pickle_extensions_refused_even_when_empty_or_missing(tmp_path, suffix):
    path = tmp_path / f"x{suffix}"
    with pytest.raises(ModelFormatError, match="pickle checkpoints can run code"):
        check_not_pickle(path)
    path.write_bytes(b"")
    with pytest.raises(ModelFormatError, match="pickle checkpoints can run code"):
        check_not_pickle(path)


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_tensor_only_checkpoint_converts_and_loads_back_equal(tmp_path, zip_format):
    shared = torch.randn(4, 4)
    state = {
        "unet.w": shared,
        "unet.tied": shared,  # shared storage must still convert
        "unet.half": torch.randn(3).half(),
        "unet.bf16": torch.randn(2, 3).to(torch.bfloat16),
        "unet.steps": torch.arange(5),
        "unet.view": shared[1],
        "ema_decay": 0.999,
    }
    src = tmp_path / "sd.ckpt"
    torch.save({"state_dict": state, "global_step": 10}, src,
               _use_new_zipfile_serialization=zip_format)
    dst = tmp_path / "sd.safetensors"
    report = convert_pickle_to_safetensors(src, dst)
    assert report.unwrapped_state_dict and report.tensors == 6
    assert report.dropped == ("ema_decay",)
    loaded = load_tensors(dst)
    expected = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    assert loaded.keys() == expected.keys()
    for name, tensor in expected.items():
        assert loaded[name].dtype == tensor.dtype and torch.equal(loaded[name], tensor), name
    assert read_header(dst).metadata == {"format": "pt", "converted_from": "sd.ckpt"}


def test_bare_state_dict_converts(tmp_path):
    src = tmp_path / "vae.pt"
    torch.save({"a": torch.ones(2), "b": torch.zeros(1, dtype=torch.int32)}, src)
    report = convert_pickle_to_safetensors(src, tmp_path / "vae.safetensors")
    assert not report.unwrapped_state_dict and report.dropped == ()
    assert torch.equal(load_tensors(tmp_path / "vae.safetensors")["a"], torch.ones(2))


@pytest.mark.parametrize("payload,phrase", [
    ({"step": 3, "name": "x"}, "checkpoint contains no tensors to convert"),
    ([torch.ones(2)], "checkpoint holds a list, not a mapping"),
])
def test_checkpoint_without_usable_tensors_is_rejected(tmp_path, payload, phrase):
    src = tmp_path / "odd.pt"
    torch.save(payload, src)
    with pytest.raises(ModelFormatError, match=f"^odd.pt: {phrase}"):
        convert_pickle_to_safetensors(src, tmp_path / "odd.safetensors")
    assert not (tmp_path / "odd.safetensors").exists()


def test_garbage_and_missing_sources_are_rejected(tmp_path):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ModelFormatError, match="^junk.ckpt: not a readable torch checkpoint"):
        convert_pickle_to_safetensors(junk, tmp_path / "junk.safetensors")
    with pytest.raises(ModelFormatError, match="^gone.ckpt: file not found"):
        convert_pickle_to_safetensors(tmp_path / "gone.ckpt", tmp_path / "gone.safetensors")


def test_destination_must_differ_from_source(tmp_path):
    src = tmp_path / "m.pt"
    torch.save({"a": torch.ones(1)}, src)
    before = src.read_bytes()
    with pytest.raises(ModelFormatError, match="destination is the source file itself"):
        convert_pickle_to_safetensors(src, tmp_path / "." / "m.pt")
    assert src.read_bytes() == before


def test_old_torch_is_refused_before_loading(tmp_path, monkeypatch):
    src = tmp_path / "m.ckpt"
    torch.save({"a": torch.ones(1)}, src)
    monkeypatch.setattr(torch, "__version__", "2.5.1+cu121")

    def no_load(*args, **kwargs):
        raise AssertionError("torch.load must not be called on an old torch")

    monkeypatch.setattr(torch, "load", no_load)
    with pytest.raises(ModelFormatError, match=r"^m.ckpt: converting pickle checkpoints needs "
                                               r"torch >= 2\.6 \(found 2\.5\.1\+cu121\)"):
        convert_pickle_to_safetensors(src, tmp_path / "m.safetensors")


def test_version_parsing():
    assert pc._torch_version("2.13.0+cpu") == (2, 13)
    assert pc._torch_version("2.6.0a0+git123") == (2, 6)
    assert pc._torch_version("garbage") == (0, 0)


def test_conversion_output_is_opened_like_any_safetensors(tmp_path):
    src = tmp_path / "m.pth"
    torch.save({"a": torch.ones(2)}, src)
    convert_pickle_to_safetensors(src, tmp_path / "m.safetensors")
    check_not_pickle(tmp_path / "m.safetensors")
    assert load_tensors(tmp_path / "m.safetensors").keys() == {"a"}
