"""Sharded and variant diffusers folders, as `save_pretrained` writes large models.

The folder from tests/tiny_models.py is re-saved with its UNet in fp16 shards + index
(`diffusion_pytorch_model.safetensors.index.fp16.json`), its VAE as an fp16 variant file and its
text encoder in fp32 shards (`model.safetensors.index.json`); diffusers loads it with
`variant="fp16"` and both must render the same pixels. Damaged indexes fail with one line.
"""
from __future__ import annotations

import json

import pytest
import torch

from inference.errors import ModelFormatError
from inference.formats.diffusers_weights import component_weights
from inference.formats.safetensors_file import save_tensors
from inference.loader import inspect_model, load_model
from inference.model_info import read_model_info
from inference.pipeline import GenerationRequest, Pipeline
from tiny_models import build_sd, max_difference_vs_diffusers, shard_folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("sharded")
    plain = build_sd(root, kind="sd1")
    return plain, shard_folder(plain, root / "sharded")


def test_sharded_fp16_variant_folder_renders_like_diffusers(folders):
    import diffusers

    _, sharded = folders
    assert len(list((sharded / "unet").glob("diffusion_pytorch_model.fp16-*-of-*.safetensors"))) > 3
    assert (sharded / "text_encoder" / "model.safetensors.index.json").is_file()
    model = load_model(sharded)
    assert model.unet.time_embed[0].weight.dtype == torch.float32  # fp16 files upcast on load
    pipe = diffusers.StableDiffusionPipeline.from_pretrained(sharded, variant="fp16")
    pipe.scheduler = diffusers.EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    request = GenerationRequest(prompt="a lighthouse on a cliff at sunset", negative_prompt="blurry", seed=3,
                                steps=4, sampler="euler", guidance=7.0, width=64, height=64)
    difference = max_difference_vs_diffusers(pipe, Pipeline(model), request)
    print(f"sharded fp16-variant folder: max difference {difference}/255")
    assert difference <= 2


def test_inspect_and_model_info_count_every_shard(folders):
    plain, sharded = folders
    reference = read_model_info(plain)
    info = read_model_info(sharded)
    assert info.parameters == reference.parameters
    assert info.parameters["unet"] == 1_106_212 and info.parameters["text_encoder"] == 1_606_096
    assert info.dtypes == ("F16", "F32")
    report = inspect_model(sharded)
    assert report["parameters"] == inspect_model(plain)["parameters"]
    assert report["missing_keys"] == report["unexpected_keys"] == []


# ----------------------------------------------------------------------------- damaged indexes
def _shards(folder, weight_map: dict, contents: dict[str, list[str]], raw_index: str | None = None):
    folder.mkdir(exist_ok=True)
    for name, keys in contents.items():
        save_tensors({k: torch.zeros(2) for k in keys}, folder / name)
    index = folder / "diffusion_pytorch_model.safetensors.index.json"
    index.write_text(raw_index if raw_index is not None else json.dumps({"metadata": {}, "weight_map": weight_map}))
    return folder


GOOD = {"a": "s1.safetensors", "b": "s2.safetensors"}


def test_a_valid_index_gives_each_shard_once(tmp_path):
    folder = _shards(tmp_path / "ok", GOOD, {"s1.safetensors": ["a"], "s2.safetensors": ["b"]})
    files = component_weights(folder, "diffusion_pytorch_model")
    assert [f.path.name for f in files] == ["s1.safetensors", "s2.safetensors"]


@pytest.mark.parametrize("weight_map,contents,raw,message", [
    ({"a": "../s1.safetensors"}, {"s1.safetensors": ["a"]}, None, "'../s1.safetensors' is not a .safetensors file name"),
    ({"a": "/etc/passwd"}, {}, None, "is not a .safetensors file name"),
    ({"a": "s1.safetensors", "b": "s3.safetensors"}, {"s1.safetensors": ["a"]}, None, "shard s3.safetensors is missing"),
    ({"a": "s1.safetensors", "b": "s1.safetensors"}, {"s1.safetensors": ["a"]}, None, "'b' is not in its shard"),
    ({"a": "s1.safetensors"}, {"s1.safetensors": ["a", "b"]}, None, "holds tensor 'b' but the index does not list it"),
    (GOOD, {"s1.safetensors": ["a", "b"], "s2.safetensors": ["b"]}, None, "holds tensor 'b' but the index puts it in s2"),
    ({}, {"s1.safetensors": ["a"]}, '{"weight_map": {"a": "s1.safetensors", "a": "s1.safetensors"}}', "'a' is listed twice"),
    ({}, {}, '{"weight_map": {}}', "the index has no weight_map"),
    ({}, {}, "{not json", "unreadable index"),
])
def test_damaged_index_is_refused_in_one_line(tmp_path, weight_map, contents, raw, message):
    folder = _shards(tmp_path / "bad", weight_map, contents, raw)
    with pytest.raises(ModelFormatError, match=message) as caught:
        component_weights(folder, "diffusion_pytorch_model")
    assert "\n" not in str(caught.value)


def test_folder_without_weights_names_what_it_looked_for(folders, tmp_path):
    import shutil

    plain, _ = folders
    broken = tmp_path / "broken"
    shutil.copytree(plain, broken)
    (broken / "unet" / "diffusion_pytorch_model.safetensors").rename(broken / "unet" / "weights.safetensors")
    with pytest.raises(ModelFormatError, match=r"no diffusion_pytorch_model.safetensors, .*index.json .*"
                                               r"\(found weights.safetensors\)"):
        load_model(broken)
    with pytest.raises(ModelFormatError, match="no diffusion_pytorch_model.safetensors"):
        read_model_info(broken)
