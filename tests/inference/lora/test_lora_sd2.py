"""A kohya / A1111 LoRA on an SD 2.x model, against diffusers + peft (`load_lora_weights`).

The tiny SD2 folder of tiny_models.py keeps SD 2.x's structure at small widths: linear
proj_in/proj_out (`use_linear_projection`), per-block attention head dims, upcast attention,
a v-prediction scheduler and a GELU CLIPTextModel (OpenCLIP-H as diffusers stores it, the
penultimate layer already being its last). The LoRA is what kohya sd-scripts writes for such a
model with `--network_dim 4 --network_alpha 3 --conv_dim 4 --conv_alpha 1.5`: `lora_unet_` modules
on the diffusers-named Transformer2DModel / ResnetBlock2D / Downsample2D / Upsample2D layers (LoCon
3×3 convolutions included) and `lora_te_text_model_encoder_layers_N_…` modules on the text
encoder's attention and MLP projections, with alpha ≠ rank and kohya's SD2 metadata.
"""
from __future__ import annotations

import json

import lora_helpers as helpers
import numpy as np
import pytest
import torch
from tiny_models import build_sd
from torch import nn

from inference.loader import load_model
from inference.lora.apply import LoraWeight, load_lora, patcher_for
from inference.pipeline import GenerationRequest, Pipeline

pytest.importorskip("peft")

TOLERANCE = 2  # /255 per channel
SIZE = 64
STEPS = 3
PROMPT = "a lighthouse on a cliff at sunset, oil painting"
NEGATIVE = "blurry, low quality"
SEED = 21
RANK, ALPHA, CONV_ALPHA = 4, 3.0, 1.5
# What kohya sd-scripts writes for a v2 / v-parameterization run (model_util's version string).
KOHYA_SD2_METADATA = {"ss_base_model_version": "sd_v2_v", "ss_v2": "True", "ss_v_parameterization": "True",
                      "ss_network_dim": str(RANK), "ss_network_alpha": str(ALPHA),
                      "ss_network_args": json.dumps({"conv_dim": str(RANK), "conv_alpha": str(CONV_ALPHA)}),
                      "ss_tag_frequency": json.dumps({"10_lhouse2 tower": {"lhouse2 tower": 9, "sea": 4}})}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("lora_sd2")


@pytest.fixture(scope="module")
def sd2(root):
    return build_sd(root, kind="sd2")


def _diffusers(folder):
    import diffusers

    pipe = diffusers.StableDiffusionPipeline.from_pretrained(folder)
    pipe.scheduler = diffusers.EulerDiscreteScheduler.from_config(pipe.scheduler.config)  # keeps v_prediction
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def reference(sd2):
    return _diffusers(sd2)


@pytest.fixture(scope="module")
def kohya_file(root, reference):
    """(path, {kohya module name: factors}) of the kohya SD2 LoCon file."""
    path = root / "kohya-sd2.safetensors"
    unet = helpers.kohya_unet_layers(reference.unet)
    text = helpers.text_layers(reference.text_encoder)
    modules = helpers.kohya_lora(path, {"lora_unet_": unet, "lora_te_": text}, seed=17, rank=RANK, alpha=ALPHA,
                                 conv_alpha=CONV_ALPHA, strength=0.3, metadata=KOHYA_SD2_METADATA)
    return path, modules


@pytest.fixture(scope="module")
def loaded_reference(reference, kohya_file):
    reference.load_lora_weights(str(kohya_file[0]), adapter_name="kohya_sd2")
    return reference


_pipelines: dict = {}


def _ours(folder) -> Pipeline:
    if folder not in _pipelines:
        _pipelines[folder] = Pipeline(load_model(folder))
    return _pipelines[folder]


def _our_image(pipeline: Pipeline, stack) -> np.ndarray:
    patcher_for(pipeline.model).apply(stack)
    pipeline.prompt_cache = type(pipeline.prompt_cache)()  # text weights changed
    request = GenerationRequest(prompt=PROMPT, negative_prompt=NEGATIVE, seed=SEED, steps=STEPS, sampler="euler",
                                guidance=7.5, width=SIZE, height=SIZE)
    return pipeline.generate(request).image.astype(np.int16)


def _reference_image(pipe) -> np.ndarray:
    out = pipe(prompt=PROMPT, negative_prompt=NEGATIVE, num_inference_steps=STEPS, guidance_scale=7.5, width=SIZE,
               height=SIZE, generator=torch.Generator().manual_seed(SEED), output_type="pil")
    return np.asarray(out.images[0]).astype(np.int16)


@pytest.fixture(scope="module")
def base(sd2):
    return _our_image(_ours(sd2), [])


# ----------------------------------------------------------------------------- the file itself
def test_the_file_is_a_kohya_sd2_locon_with_alpha_not_rank(kohya_file, reference):
    path, modules = kohya_file
    names = set(modules)
    # SD2's linear projections, cross-attention, LoCon 3×3 convolutions and the text encoder
    for name in ("lora_unet_down_blocks_0_attentions_0_proj_in", "lora_unet_up_blocks_1_attentions_0_proj_out",
                 "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_k",
                 "lora_unet_down_blocks_0_resnets_0_conv1", "lora_unet_down_blocks_0_downsamplers_0_conv",
                 "lora_unet_up_blocks_0_upsamplers_0_conv", "lora_unet_up_blocks_1_resnets_0_conv_shortcut",
                 "lora_unet_mid_block_resnets_1_time_emb_proj",
                 "lora_te_text_model_encoder_layers_2_self_attn_q_proj", "lora_te_text_model_encoder_layers_0_mlp_fc2"):
        assert name in names, name
    proj_in = reference.unet.down_blocks[0].attentions[0].proj_in
    assert isinstance(getattr(proj_in, "base_layer", proj_in), nn.Linear)  # SD2's linear projection
    assert reference.text_encoder.config.hidden_act == "gelu"
    assert reference.scheduler.config.prediction_type == "v_prediction"
    lora = load_lora(path)
    info = lora.info
    assert info["format"] == "kohya" and info["algorithm"] == "locon" and info["family"] == "sd2"
    assert info["targets"] == {"te1": 3 * 6, "unet": len(modules) - 18}
    assert info["ranks"] == {RANK: len(modules)} and info["alphas"] == [CONV_ALPHA, ALPHA]
    assert lora.refused == []
    assert {m.scale for m in lora.modules.values()} == {ALPHA / RANK, CONV_ALPHA / RANK}


def test_every_module_patches_a_layer_of_our_sd2_model(sd2, kohya_file):
    model = _ours(sd2).model
    patcher = patcher_for(model)
    warnings = patcher.apply([LoraWeight(load_lora(kohya_file[0]))])
    try:
        assert warnings == []
        components = {component for _, _, component in patcher._originals.values()}
        assert components == {"unet", "te1"}
        assert len(patcher._originals) == len(kohya_file[1])
        convs = [m for m, _, _ in patcher._originals.values() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
        assert len(convs) >= 8  # LoCon reaches the ResNet and sampler convolutions
    finally:
        patcher.clear()


# ----------------------------------------------------------------------------- the oracle
def _fresh(folder) -> Pipeline:
    """Our pipeline on a newly loaded model: each weight is merged into a model never patched before
    (see test_switching_the_weight_in_place_matches_diffusers for why)."""
    return Pipeline(load_model(folder))


def _compare(reference, ours, base, label: str, min_effect: float = 2.0) -> int:
    effect = np.abs(reference - base).mean()
    difference = int(np.abs(reference - ours).max())
    print(f"{label}: max difference {difference}/255, LoRA effect {effect:.2f}")
    assert effect > min_effect, "the LoRA barely changes the image: the test would prove nothing"
    assert difference <= TOLERANCE, f"max difference {difference}/255"
    return difference


@pytest.mark.parametrize("weight", [1.0, 0.6])
def test_kohya_sd2_unet_and_text_encoder_match_diffusers(sd2, kohya_file, loaded_reference, base, weight):
    loaded_reference.set_adapters(["kohya_sd2"], adapter_weights=[weight])
    reference = _reference_image(loaded_reference)
    ours = _our_image(_fresh(sd2), [LoraWeight(load_lora(kohya_file[0]), weight)])
    _compare(reference, ours, base, f"weight {weight}")


def test_text_encoder_part_alone_matches_diffusers(sd2, kohya_file, loaded_reference, base):
    """UNet weight 0, text weight 1: only the OpenCLIP-style (GELU) text encoder is patched."""
    loaded_reference.set_adapters(["kohya_sd2"], adapter_weights=[{"unet": 0.0, "text_encoder": 1.0}])
    reference = _reference_image(loaded_reference)
    ours = _our_image(_fresh(sd2), [LoraWeight(load_lora(kohya_file[0]), 0.0, 1.0)])
    _compare(reference, ours, base, "text encoder only", min_effect=1.0)


def test_switching_the_weight_in_place_matches_diffusers(sd2, kohya_file, loaded_reference, base):
    """A slider move: 1.0 then 0.6 on the same model (the LoCon file patches up_blocks.0.upsamplers.0.conv,
    whose CPU fast path caches kernels derived from its weight: the patcher must drop them)."""
    lora = load_lora(kohya_file[0])
    pipeline = _fresh(sd2)
    _our_image(pipeline, [LoraWeight(lora, 1.0)])
    loaded_reference.set_adapters(["kohya_sd2"], adapter_weights=[0.6])
    reference = _reference_image(loaded_reference)
    _compare(reference, _our_image(pipeline, [LoraWeight(lora, 0.6)]), base, "1.0 then 0.6 in place")


def test_removing_the_sd2_lora_restores_the_base_model_exactly(sd2, kohya_file, base):
    pipeline = _ours(sd2)
    model = pipeline.model
    patcher_for(model).apply([])
    before = {f"unet.{n}": p for n, p in model.unet.named_parameters()}
    before.update({f"te.{n}": p for n, p in model.text_encoders[0].model.named_parameters()})
    snapshot = {name: p.detach().clone() for name, p in before.items()}
    styled = _our_image(pipeline, [LoraWeight(load_lora(kohya_file[0]), 0.6)])
    assert np.abs(styled - base).mean() > 2
    restored = _our_image(pipeline, [])
    assert np.array_equal(restored, base)
    after = {f"unet.{n}": p for n, p in model.unet.named_parameters()}
    after.update({f"te.{n}": p for n, p in model.text_encoders[0].model.named_parameters()})
    assert all(after[name] is before[name] for name in before)
    assert all(torch.equal(after[name], snapshot[name]) for name in before)


# ----------------------------------------------------------------------------- the CLI
def test_cli_inspect_reports_the_sd2_family(kohya_file, capsys):
    from inference.cli import main

    capsys.readouterr()
    assert main(["inspect", str(kohya_file[0])]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "kohya" and report["algorithm"] == "locon"
    assert report["family"] == "sd2" and report["family_reason"] == "metadata"
    assert report["targets"] == {"te1": 18, "unet": len(kohya_file[1]) - 18}
    assert report["alpha_range"] == [CONV_ALPHA, ALPHA]
    assert "lhouse2 tower" in report["trigger_words"]


@pytest.mark.parametrize("metadata", [
    {"ss_v2": "True", "ss_base_model_version": "sd_v2"},  # kohya, eps-prediction 512 model
    {"ss_v2": "True"},  # kohya before ss_base_model_version
    {"modelspec.architecture": "stable-diffusion-v2-768-v/lora"},  # SAI ModelSpec only
])
def test_cli_inspect_reads_every_sd2_metadata_spelling(root, kohya_file, metadata, capsys):
    """The tiny widths say nothing about the family (real widths do: see test_lora_formats), so
    the metadata must; here the text-encoder half of the file under other metadata."""
    from inference.cli import main
    from inference.formats.safetensors_file import save_tensors

    path = root / f"sd2-meta-{len(metadata)}-{min(metadata)}.safetensors"
    save_tensors({f"{name}.{role}": value for name, factors in kohya_file[1].items() if name.startswith("lora_te_")
                  for role, value in factors.items()}, path, metadata=metadata)
    capsys.readouterr()
    assert main(["inspect", str(path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["family"] == "sd2" and report["targets"] == {"te1": 18}
