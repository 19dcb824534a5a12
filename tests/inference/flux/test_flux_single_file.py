"""FLUX.1 from ComfyUI-style single files (transformer + ae + clip_l + t5, tokenizer folder) against
the equivalent diffusers folder: the same image (≤ 1/255, measured 0), discovery of the companion
files in a `models/` library, explicit paths, the engine's load route, and one-line errors for
missing pieces."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from _flux_files import comfy_library, tiny_dev_folder  # noqa: F401 - a fixture

from inference.api import GenerationRequest
from inference.errors import ModelFormatError, UnsupportedModelError
from inference.flux.discover import TOKENIZERS_ENV, find_flux_files
from inference.flux.loader import FluxModel, load_flux_folder
from inference.flux.pipeline import FluxPipeline
from inference.flux.single_file import load_flux_single_file

REQUEST = GenerationRequest(prompt="a lighthouse on a cliff", seed=7, steps=2, guidance=3.5, width=64, height=64)


@pytest.fixture(scope="module")
def library(tmp_path_factory, tiny_dev_folder):  # noqa: F811 - the imported fixture
    root = tmp_path_factory.mktemp("comfy")
    state = load_flux_folder(tiny_dev_folder).transformer.state_dict()
    return comfy_library(root, tiny_dev_folder, state, clip_prefix="text_encoders.clip_l.transformer.")


@pytest.fixture(scope="module")
def folder_image(tiny_dev_folder):  # noqa: F811
    return FluxPipeline(load_flux_folder(tiny_dev_folder)).generate(REQUEST).image


def test_single_files_render_the_folders_image(library, folder_image):
    files = find_flux_files(library["transformer"])
    assert (files.ae, files.clip_l, files.t5) == (library["ae"], library["clip_l"], library["t5"])
    assert files.tokenizers.name == "tokenizer_2"
    model = load_flux_single_file(library["transformer"])
    assert model.variant == "base" and model.guidance_embed and model.scheduler_config["use_dynamic_shifting"]
    image = FluxPipeline(model).generate(REQUEST).image
    assert np.abs(image.astype(int) - folder_image.astype(int)).max() <= 1


def test_explicit_paths_and_a_flat_folder(library, tmp_path, tiny_dev_folder):  # noqa: F811
    flat = tmp_path / "flat"
    flat.mkdir()
    for key in ("transformer", "ae", "clip_l"):
        shutil.copy(library[key], flat / library[key].name)
    files = find_flux_files(flat / library["transformer"].name, t5=library["t5"],
                            tokenizers=tiny_dev_folder)  # a whole FLUX folder: its tokenizer_2/ is used
    assert files.ae == flat / "ae.safetensors" and files.t5 == library["t5"]
    assert files.tokenizers == tiny_dev_folder / "tokenizer_2"


def test_engine_routes_a_transformer_file_to_the_single_file_loader(library, monkeypatch):
    from inference.engine import Engine, ModelRef
    from inference.model_info import read_model_info

    info = read_model_info(library["transformer"])
    assert info.kind == "checkpoint" and info.family == "flux1-dev" and info.format == "single_file"
    loaded = Engine()._load_model(ModelRef(library["transformer"]))  # the load branch only
    assert isinstance(loaded, FluxModel) and loaded.path == library["transformer"]


def test_missing_companions_are_one_line_naming_the_file(library, tmp_path, monkeypatch):
    monkeypatch.delenv(TOKENIZERS_ENV, raising=False)
    lonely = tmp_path / "models" / "unet" / "flux1-dev-lonely.safetensors"
    lonely.parent.mkdir(parents=True)
    shutil.copy(library["transformer"], lonely)
    with pytest.raises(ModelFormatError) as caught:
        load_flux_single_file(lonely)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("flux1-dev-lonely.safetensors: ")
    assert all(part in message for part in ("ae (ae.safetensors)", "clip_l (clip_l.safetensors)",
                                            "t5 (t5xxl_fp16.safetensors)"))
    with pytest.raises(ModelFormatError, match=r"nothere\.safetensors: no such file \(ae"):
        find_flux_files(lonely, ae=tmp_path / "nothere.safetensors")
    # All weights present but no T5 tokenizer anywhere: one line saying which files to get.
    with pytest.raises(ModelFormatError, match=r"flux1-dev-lonely\.safetensors: the T5 tokenizer .*tokenizer\.json"):
        load_flux_single_file(lonely, ae=library["ae"], clip_l=library["clip_l"], t5=library["t5"])


def test_wrong_companions_are_one_line(library, tmp_path):
    with pytest.raises(UnsupportedModelError, match=r"clip_l\.safetensors: not a FLUX\.1 autoencoder"):
        load_flux_single_file(library["transformer"], ae=library["clip_l"])
    with pytest.raises(UnsupportedModelError, match=r"ae\.safetensors: not a T5 encoder"):
        load_flux_single_file(library["transformer"], t5=library["ae"])
    with pytest.raises(UnsupportedModelError, match=r"t5xxl_fp16\.safetensors: not a CLIP text encoder"):
        load_flux_single_file(library["transformer"], clip_l=library["t5"])


def test_inspection_names_the_companions_and_reads_no_weights(library):
    from inference.flux.file_info import inspect_flux_file

    report = inspect_flux_file(library["transformer"])
    assert report["companions"]["ae"] == str(library["ae"]) and report["companions"]["t5"] == str(library["t5"])
    assert report["quantization"] == {"F32": report["tensors"]} and report["variant"] == "base"
    meta = load_flux_single_file(library["transformer"], meta=True)
    assert meta.transformer.img_in.weight.device.type == "meta" and meta.t5.shared.weight.device.type == "meta"
    assert not meta.report["missing_keys"] and not meta.report["unexpected_keys"]


def test_t5_in_fp8_stays_fp8_and_matches_its_fp32_values(library, tmp_path):
    """t5xxl_fp8_e4m3fn.safetensors: matrices kept in fp8, widened per layer; the encoder equals
    one loaded from the fp32 file made of the same fp8 values (exactly)."""
    from inference.flux.quant import CompressedLinear
    from inference.flux.weights import load_t5_file
    from inference.formats.safetensors_file import load_tensors, save_tensors

    state = load_tensors(library["t5"])
    fp8 = {k: v.to(torch.float8_e4m3fn) if v.dim() == 2 and "relative_attention_bias" not in k else v
           for k, v in state.items()}
    save_tensors(fp8, tmp_path / "t5xxl_fp8_e4m3fn.safetensors")
    save_tensors({k: v.float() for k, v in fp8.items()}, tmp_path / "t5_fp32.safetensors")
    small = load_t5_file(tmp_path / "t5xxl_fp8_e4m3fn.safetensors", device=torch.device("cpu"), dtype=torch.float32,
                         report={})
    full = load_t5_file(tmp_path / "t5_fp32.safetensors", device=torch.device("cpu"), dtype=torch.float32, report={})
    q = small.encoder.block[0].layer[0].SelfAttention.q
    assert isinstance(q, CompressedLinear) and q.qweight.dtype == torch.float8_e4m3fn
    ids = torch.tensor([[5, 9, 3, 1, 0, 0]])
    with torch.no_grad():
        assert torch.equal(small(ids), full(ids))


def test_all_in_one_file_carries_its_companions(library, folder_image, tmp_path, tiny_dev_folder):  # noqa: F811
    """ComfyUI's "checkpoint" FLUX: transformer, vae., text_encoders.clip_l. and text_encoders.t5xxl.
    in one file; nothing is looked up beside it but the tokenizer."""
    from inference.formats.safetensors_file import load_tensors, save_tensors

    prefixes = {"transformer": "", "ae": "vae.", "clip_l": "", "t5": "text_encoders.t5xxl.transformer."}
    merged = {}
    for key, prefix in prefixes.items():
        merged.update({prefix + k: v for k, v in load_tensors(library[key]).items()})
    path = tmp_path / "flux1-dev-aio.safetensors"
    save_tensors(merged, path, metadata={"canvasai.rope_axes": "4,6,6", "canvasai.norm_groups": "8",
                                         "canvasai.text_head_dim": "8"})
    shutil.copytree(tiny_dev_folder / "tokenizer_2", tmp_path / "tokenizer_2")
    files = find_flux_files(path)
    assert files.ae == files.clip_l == files.t5 == path
    image = FluxPipeline(load_flux_single_file(path)).generate(REQUEST).image
    assert np.abs(image.astype(int) - folder_image.astype(int)).max() <= 1


def test_gguf_transformer_with_library_companions(library):
    """The common real-world set: a city96 GGUF in models/unet beside a BFL file, ae, clip_l, t5 from
    the library. Same image as the fp32 file of the decoded GGUF values (≤ 1/255, measured 0)."""
    pytest.importorskip("gguf")
    from _flux_files import gguf_from_state

    from inference.flux.quant import CompressedLinear
    from inference.formats.safetensors_file import load_tensors, save_tensors

    unet = library["transformer"].parent
    state = {k.removeprefix("model.diffusion_model."): v for k, v in load_tensors(library["transformer"]).items()}
    decoded = gguf_from_state(unet / "flux1-dev-Q8_0.gguf", state,
                              lambda name, t: "Q8_0" if t.dim() == 2 and t.shape[1] % 32 == 0 else "F32",
                              metadata={"canvasai.rope_axes": "4,6,6"})
    save_tensors(decoded, unet / "flux1-dev-decoded.safetensors", metadata={"canvasai.rope_axes": "4,6,6"})
    model = load_flux_single_file(unet / "flux1-dev-Q8_0.gguf")
    assert isinstance(model.transformer.double_blocks[0].img_attn.qkv, CompressedLinear)
    images = [FluxPipeline(m).generate(REQUEST).image
              for m in (model, load_flux_single_file(unet / "flux1-dev-decoded.safetensors"))]
    assert np.abs(images[0].astype(int) - images[1].astype(int)).max() <= 1
