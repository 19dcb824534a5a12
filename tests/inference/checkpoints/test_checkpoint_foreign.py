"""Models the engine does not run are refused by name, in one line, never as "weights do not fit".

Each file carries the keys of its real checkpoints (SAI's SD3/Cascade, PixArt, AuraFlow,
Kolors as diffusers and LDM names), header-only; diffusers' own `infer_diffusers_model_type`
confirms the key patterns where it knows them.
"""
from __future__ import annotations

import json

import pytest
import torch

import layouts
from inference.errors import UnsupportedModelError
from inference.loader import inspect_model, load_model
from inference.model_info import read_model_info
from tiny_models import build_sd

META = "meta"


def _t(*shape):
    return torch.empty(shape, dtype=torch.float16, device=META)


FLUX = {"img_in.weight": _t(3072, 64), "time_in.in_layer.weight": _t(3072, 256),
        "double_blocks.0.img_attn.qkv.weight": _t(9216, 3072), "double_blocks.0.img_attn.norm.key_norm.scale": _t(128),
        "single_blocks.0.linear1.weight": _t(21504, 3072), "final_layer.linear.weight": _t(64, 3072)}
SD3 = {"joint_blocks.0.context_block.adaLN_modulation.1.bias": _t(9216),
       "joint_blocks.0.x_block.attn.qkv.weight": _t(4608, 1536), "x_embedder.proj.weight": _t(1536, 16, 2, 2),
       "pos_embed": _t(1, 36864, 1536)}
CASCADE_C = {"clip_txt_mapper.weight": _t(8192, 1280), "down_blocks.0.0.channelwise.0.weight": _t(8192, 2048)}
PIXART = {"x_embedder.proj.weight": _t(1152, 4, 2, 2), "y_embedder.y_proj.fc1.weight": _t(1152, 4096),
          "t_block.1.weight": _t(6912, 1152), "blocks.0.cross_attn.q_linear.weight": _t(1152, 1152)}
AURAFLOW = {"double_layers.0.attn.w2q.weight": _t(3072, 3072), "double_layers.0.attn.w1q.weight": _t(3072, 3072),
            "cond_seq_linear.weight": _t(3072, 2048),
            "t_embedder.mlp.0.weight": _t(3072, 256)}
KOLORS_DIFFUSERS = {"conv_in.weight": _t(320, 4, 3, 3), "down_blocks.0.resnets.0.conv1.weight": _t(320, 320, 3, 3),
                    "encoder_hid_proj.weight": _t(2048, 4096), "add_embedding.linear_1.weight": _t(1280, 5632),
                    "conv_out.weight": _t(4, 320, 3, 3)}

CASES = [
    ("sd3.5_medium.safetensors", SD3, "model.diffusion_model.", "Stable Diffusion 3/3.5", "sd3"),
    ("stable_cascade_stage_c.safetensors", CASCADE_C, "", "Stable Cascade stage C", None),
    ("PixArt-Sigma-XL-2-1024-MS.safetensors", PIXART, "", "PixArt", None),
    ("auraflow.safetensors", AURAFLOW, "", "AuraFlow", "auraflow"),
    ("kolors_unet.fp16.safetensors", KOLORS_DIFFUSERS, "", "Kolors", None),
]


@pytest.mark.parametrize("name,keys,prefix,expected,diffusers_type", CASES)
def test_foreign_single_file_is_refused_by_name(tmp_path, name, keys, prefix, expected, diffusers_type):
    tensors = {prefix + k: v for k, v in keys.items()}
    if diffusers_type:
        from diffusers.loaders.single_file_utils import infer_diffusers_model_type

        assert infer_diffusers_model_type(tensors).startswith(diffusers_type)
    path = layouts.write_header_only(tmp_path / name, tensors)
    for call in (lambda: load_model(path), lambda: inspect_model(path), lambda: read_model_info(path)):
        with pytest.raises(UnsupportedModelError, match=rf"^{name}: a {expected}") as caught:
            call()
        message = str(caught.value)
        assert "\n" not in message and "do not fit" not in message


def test_kolors_ldm_unet_is_refused_by_its_conditioning_width(tmp_path):
    layout = layouts.full_layout("sdxl")
    tensors = dict(layout.tensors)
    tensors["model.diffusion_model.label_emb.0.0.weight"] = _t(1280, 5632)
    path = layouts.write_header_only(tmp_path / "kolors.safetensors", tensors)
    with pytest.raises(UnsupportedModelError, match="kolors.safetensors: a Kolors \\(ChatGLM text encoder\\) checkpoint"):
        inspect_model(path)


@pytest.mark.parametrize("prefix", ["", "model.diffusion_model."])
def test_flux_single_files_go_to_the_flux_reader_not_the_sd_loader(tmp_path, prefix):
    """FLUX transformer files run through inference/flux (tests/inference/flux/test_flux_single_file.py):
    the SD loader refuses them by name, and the model-info reader sends them to the FLUX reader,
    which names the first key a truncated file lacks."""
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    tensors = {prefix + k: v for k, v in FLUX.items()}
    assert infer_diffusers_model_type(tensors).startswith("flux")
    path = layouts.write_header_only(tmp_path / "flux1-dev.safetensors", tensors)
    for call in (lambda: load_model(path), lambda: inspect_model(path)):
        with pytest.raises(UnsupportedModelError, match=r"^flux1-dev.safetensors: a FLUX.1 checkpoint, not a Stable"):
            call()
    with pytest.raises(UnsupportedModelError, match=r"^flux1-dev.safetensors: not a FLUX.1 transformer state dict "
                                                    r"\(no double_blocks.0.img_attn.norm.query_norm.scale\)$"):
        read_model_info(path)


def test_foreign_unet_file_over_a_base_is_refused_by_name(tmp_path):
    base = build_sd(tmp_path, kind="sd1")
    path = layouts.write_header_only(tmp_path / "flux1-schnell.safetensors", FLUX)
    with pytest.raises(UnsupportedModelError, match="flux1-schnell.safetensors: a FLUX.1 checkpoint"):
        load_model(base, unet_path=path)


@pytest.mark.parametrize("pipeline", ["KolorsPipeline", "PixArtSigmaPipeline", "StableDiffusion3Pipeline",
                                      "StableCascadeCombinedPipeline", "StableDiffusionUpscalePipeline"])
def test_foreign_pipeline_folder_is_refused_by_class(tmp_path, pipeline):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": pipeline, "unet": ["diffusers", "X"]}))
    for call in (lambda: load_model(folder), lambda: inspect_model(folder), lambda: read_model_info(folder)):
        with pytest.raises(UnsupportedModelError, match=f"^model: {pipeline} models are not supported"):
            call()
