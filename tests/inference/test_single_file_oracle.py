"""Single-file checkpoints against diffusers' own single-file converters, on tiny models.

For each tiny diffusers folder (tests/tiny_models.py) we load it with our loader, turn our
LDM-named modules back into a single-file checkpoint with the real prefixes (OpenCLIP names for
SD2's and SDXL's OpenCLIP towers, via the inverse in tests/layouts.py), and then:

* diffusers' `convert_ldm_unet_checkpoint` / `convert_ldm_vae_checkpoint` /
  `convert_ldm_clip_checkpoint` / `convert_open_clip_checkpoint` must turn that checkpoint into
  state dicts that load strictly into diffusers / transformers models of the tiny config, and
  those models must compute what ours compute (UNet output, VAE encode/decode, every text hidden
  state, the pooled embedding);
* the checkpoint saved as a .safetensors file (with ModelSpec + `canvasai.*` metadata declaring
  what tiny shapes cannot show) must load with `load_model` and render the same pixels as the
  folder it came from.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import layouts
from inference.errors import UnsupportedModelError
from inference.formats.safetensors_file import read_header, save_tensors
from inference.loader import inspect_model, load_model
from inference.pipeline import GenerationRequest, Pipeline
from tiny_models import build_sd, build_sdxl

ATOL = 1e-5

ARCHITECTURES = {"sd1": "stable-diffusion-v1", "sd1_inpaint": "stable-diffusion-v1-inpainting",
                 "sd2": "stable-diffusion-v2-768-v", "sdxl": "stable-diffusion-xl-v1-base"}


# ----------------------------------------------------------------------------- building the checkpoint
def _schedule_buffers() -> dict[str, torch.Tensor]:
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1 - betas, 0)
    return {"betas": betas.float(), "alphas_cumprod": alphas_cumprod.float(),
            "alphas_cumprod_prev": torch.cat([torch.ones(1), alphas_cumprod[:-1].float()]),
            "sqrt_alphas_cumprod": alphas_cumprod.sqrt().float(),
            "sqrt_one_minus_alphas_cumprod": (1 - alphas_cumprod).sqrt().float()}


def _extra_open_clip_layer(state: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
    """OpenCLIP-H towers keep the last layer that SD2 never uses (diffusers folders drop it)."""
    last = max(int(k.split(".")[3]) for k in state if k.startswith("text_model.encoder.layers."))
    extra = {}
    for key, value in state.items():
        if key.startswith(f"text_model.encoder.layers.{last}."):
            new = key.replace(f".layers.{last}.", f".layers.{last + 1}.")
            extra[new] = torch.randn(value.shape, generator=generator) * 0.1 + (1.0 if "layer_norm" in key and
                                                                                   key.endswith("weight") else 0.0)
    return extra


def single_file_state(model, kind: str) -> dict[str, torch.Tensor]:
    """Our loaded DiffusionModel → a single-file checkpoint in the real LDM/SGM layout."""
    generator = torch.Generator().manual_seed(99)
    ckpt = {}
    ckpt.update(layouts.with_prefix(model.unet.state_dict(), "model.diffusion_model."))
    ckpt.update(layouts.with_prefix(model.vae.state_dict(), "first_stage_model."))
    position_ids = torch.arange(77, dtype=torch.int64)[None]
    for encoder in model.text_encoders:
        state = layouts.hf_clip_prefixed(encoder.model.state_dict())
        width = state["text_model.embeddings.token_embedding.weight"].shape[1]
        if kind.startswith("sd1"):
            ckpt.update(layouts.with_prefix(state, "cond_stage_model.transformer."))
            ckpt["cond_stage_model.transformer.text_model.embeddings.position_ids"] = position_ids
        elif kind == "sd2":
            state.update(_extra_open_clip_layer(state, generator))
            state["text_projection.weight"] = torch.randn(width, width, generator=generator)  # stored, unused
            open_clip = layouts.hf_clip_to_open_clip(state)
            open_clip["logit_scale"] = torch.tensor(4.6052)
            ckpt.update(layouts.with_prefix(open_clip, "cond_stage_model.model."))
        elif encoder.spec.pooled:  # SDXL bigG
            open_clip = layouts.hf_clip_to_open_clip(state)
            open_clip["logit_scale"] = torch.tensor(4.6052)
            ckpt.update(layouts.with_prefix(open_clip, "conditioner.embedders.1.model."))
        else:  # SDXL CLIP-L
            ckpt.update(layouts.with_prefix(state, "conditioner.embedders.0.transformer."))
            ckpt["conditioner.embedders.0.transformer.text_model.embeddings.position_ids"] = position_ids
    if not kind.startswith("sdxl"):
        ckpt.update(_schedule_buffers())
    return {k: v.detach().contiguous() for k, v in ckpt.items()}


def file_metadata(folder, kind: str) -> dict[str, str]:
    """ModelSpec architecture, plus the facts tiny shapes cannot show (heads, group counts)."""
    import json

    unet = json.loads((folder / "unet" / "config.json").read_text())
    vae = json.loads((folder / "vae" / "config.json").read_text())
    text = json.loads((folder / "text_encoder" / "config.json").read_text())
    heads = unet["num_attention_heads"] or unet["attention_head_dim"]
    heads = heads if isinstance(heads, list) else [heads]
    assert unet["norm_num_groups"] == vae["norm_num_groups"]
    return {"modelspec.sai_model_spec": "1.0.0", "modelspec.architecture": ARCHITECTURES[kind],
            "modelspec.implementation": "https://github.com/Stability-AI/generative-models",
            "modelspec.title": f"tiny {kind}", "canvasai.num_heads": ",".join(str(h) for h in heads),
            "canvasai.text_head_dim": str(text["hidden_size"] // text["num_attention_heads"]),
            "canvasai.norm_groups": str(unet["norm_num_groups"])}


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return {"root": tmp_path_factory.mktemp("single_file")}


def _case(cases, kind: str):
    if kind not in cases:
        root = cases["root"]
        if kind == "sdxl":
            folder = build_sdxl(root)
        else:
            folder = build_sd(root, kind=kind[:3], in_channels=9 if kind.endswith("inpaint") else 4)
        model = load_model(folder)
        ckpt = single_file_state(model, kind)
        path = root / f"{kind}.safetensors"
        save_tensors(ckpt, path, metadata=file_metadata(folder, kind))
        cases[kind] = (folder, model, ckpt, path)
    return cases[kind]


KINDS = ["sd1", "sd1_inpaint", "sd2", "sdxl"]


# ----------------------------------------------------------------------------- diffusers' converters
def _diffusers_unet(folder, ckpt):
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
    converted = convert_ldm_unet_checkpoint(ckpt, dict(unet.config))
    unet.load_state_dict(converted, strict=True)
    return unet.eval()


def _diffusers_vae(folder, ckpt):
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
    vae.load_state_dict(convert_ldm_vae_checkpoint(ckpt, dict(vae.config)), strict=True)
    return vae.eval()


def _diffusers_texts(folder, ckpt, kind):
    """(prefix, transformers model) per text tower, loaded strictly from diffusers' conversion."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    towers = []
    if kind.startswith("sd1"):
        specs = [("text_encoder", "cond_stage_model.transformer.", "hf", False, 0)]
    elif kind == "sd2":
        specs = [("text_encoder", "cond_stage_model.model.", "open_clip", False, 1)]  # + OpenCLIP's last layer
    else:
        specs = [("text_encoder", "conditioner.embedders.0.transformer.", "hf", False, 0),
                 ("text_encoder_2", "conditioner.embedders.1.model.", "open_clip", True, 0)]
    for folder_name, prefix, layout, pooled, extra_layers in specs:
        config = CLIPTextConfig.from_pretrained(folder / folder_name)
        config.num_hidden_layers += extra_layers
        model = (CLIPTextModelWithProjection if pooled else CLIPTextModel)(config)
        tower = layouts.TextTower(folder_name, prefix, layout, model, model, pooled)
        model.load_state_dict(layouts.diffusers_text_state(ckpt, tower, model), strict=True)
        towers.append(model.eval())
    return towers


@pytest.mark.parametrize("kind", KINDS)
def test_diffusers_converts_our_checkpoint_to_the_same_unet_and_vae(cases, kind):
    folder, model, ckpt, _ = _case(cases, kind)
    ref_unet, ref_vae = _diffusers_unet(folder, ckpt), _diffusers_vae(folder, ckpt)
    generator = torch.Generator().manual_seed(0)
    in_channels = model.unet.config.in_channels
    x = torch.randn(2, in_channels, 8, 8, generator=generator)
    t = torch.tensor([17.0, 801.0])
    context = torch.randn(2, 77, model.unet.config.context_dim, generator=generator)
    kwargs, y = {}, None
    if kind == "sdxl":
        text_embeds = torch.randn(2, model.text_encoders[1].model.config.projection_dim, generator=generator)
        time_ids = torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0], [96.0, 80.0, 8.0, 4.0, 64.0, 64.0]])
        kwargs["added_cond_kwargs"] = {"text_embeds": text_embeds, "time_ids": time_ids}
        time_embeds = ref_unet.add_time_proj(time_ids.flatten()).reshape(2, -1)
        y = torch.cat([text_embeds, time_embeds], dim=-1)
    with torch.no_grad():
        expected = ref_unet(x, t, encoder_hidden_states=context, **kwargs).sample
        ours = model.unet(x, t, context, y)
        assert expected.abs().max() > 0.1
        torch.testing.assert_close(ours, expected, atol=ATOL, rtol=ATOL)

        z = torch.randn(1, 4, 8, 8, generator=generator)
        torch.testing.assert_close(model.vae.decode(z), ref_vae.decode(z).sample, atol=ATOL, rtol=ATOL)
        image = torch.rand(1, 3, 64, 64, generator=generator) * 2 - 1
        posterior = ref_vae.encode(image).latent_dist
        mean, std = model.vae.encode_moments(image)
        torch.testing.assert_close(mean, posterior.mean, atol=ATOL, rtol=ATOL)
        torch.testing.assert_close(std, posterior.std, atol=ATOL, rtol=ATOL)


@pytest.mark.parametrize("kind", ["sd1", "sd2", "sdxl"])
def test_diffusers_converts_our_checkpoint_to_the_same_text_encoders(cases, kind):
    folder, model, ckpt, path = _case(cases, kind)
    references = _diffusers_texts(folder, ckpt, kind)
    reloaded = load_model(path)
    tokenizer = model.text_encoders[0].tokenizer
    ids = torch.tensor([tokenizer.encode("a lighthouse on a cliff at sunset")[:77]])
    ids = torch.cat([ids, torch.full((1, 77 - ids.shape[1]), 49407)], dim=1)
    assert len(references) == len(model.text_encoders) == len(reloaded.text_encoders)
    with torch.no_grad():
        for ref, from_folder, from_file in zip(references, model.text_encoders, reloaded.text_encoders):
            expected = ref(ids, output_hidden_states=True)
            file_out = from_file.model(ids)
            assert len(file_out.hidden_states) == len(expected.hidden_states)
            for ours, theirs in zip(file_out.hidden_states, expected.hidden_states):
                torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=ATOL)
            torch.testing.assert_close(file_out.last_hidden_state, expected.last_hidden_state, atol=ATOL, rtol=ATOL)
            if from_file.spec.pooled:
                torch.testing.assert_close(file_out.pooled, expected.text_embeds, atol=ATOL, rtol=ATOL)
            # The folder's encoder is the file's minus OpenCLIP's unused last layer (SD2) and agrees
            # on every hidden state they share.
            folder_out = from_folder.model(ids)
            for ours, theirs in zip(folder_out.hidden_states, expected.hidden_states):
                torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=ATOL)


# ----------------------------------------------------------------------------- our loader on the file
@pytest.mark.parametrize("kind", KINDS)
def test_reloaded_single_file_renders_the_folders_pixels(cases, kind):
    folder, model, ckpt, path = _case(cases, kind)
    reloaded = load_model(path)
    assert reloaded.family.name == model.family.name
    assert reloaded.prediction_type == model.prediction_type
    assert reloaded.variant == model.variant
    assert reloaded.unet.config.to_dict() == {**model.unet.config.to_dict(),
                                               "upcast_attention": reloaded.unet.config.upcast_attention}
    assert reloaded.vae.config == model.vae.config
    for name, tensor in model.unet.state_dict().items():
        assert torch.equal(tensor, reloaded.unet.state_dict()[name]), name
    rng = np.random.default_rng(5)
    request = GenerationRequest(prompt="a lighthouse on a cliff at sunset, oil painting", negative_prompt="blurry",
                                seed=11, steps=4, sampler="euler", guidance=7.5, width=64, height=64,
                                # Single files carry no scheduler config; the family default (the hub
                                # repos' PNDM config) spaces Euler "linspace", the tiny folder "leading".
                                timestep_spacing="leading", paste_back=False)
    if kind.endswith("inpaint"):
        request.init_image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        mask = np.zeros((64, 64), np.uint8)
        mask[16:48, 16:48] = 255
        request.mask = mask
    from_folder = Pipeline(model).generate(request).image
    from_file = Pipeline(reloaded).generate(request).image
    assert from_folder.std() > 5
    assert np.array_equal(from_folder, from_file)


def test_inspect_reports_the_tiny_single_file_cleanly(cases):
    _, model, _, path = _case(cases, "sd2")
    report = inspect_model(path)
    assert report["family"] == "sd2" and report["prediction_type"] == "v_prediction"
    assert report["missing_keys"] == report["unexpected_keys"] == report["shape_mismatches"] == []
    assert report["parameters"]["unet"] == layouts.count(model.unet)
    assert report["parameters"]["vae"] == layouts.count(model.vae)


def test_tiny_file_without_its_metadata_is_refused_with_its_name(cases, tmp_path):
    from inference.formats.safetensors_file import load_tensors

    _, _, _, path = _case(cases, "sd1")
    assert read_header(path).metadata["modelspec.architecture"] == "stable-diffusion-v1"
    bare = tmp_path / "bare-tiny.safetensors"
    save_tensors(load_tensors(path), bare)
    with pytest.raises(UnsupportedModelError, match="bare-tiny.safetensors.*matches no supported family"):
        load_model(bare)


def test_metadata_family_must_agree_with_the_sdxl_conditioning_input(cases, tmp_path):
    from inference.formats.safetensors_file import load_tensors

    _, _, _, path = _case(cases, "sd1")
    metadata = dict(read_header(path).metadata, **{"modelspec.architecture": "stable-diffusion-xl-v1-base"})
    wrong = tmp_path / "wrong-arch.safetensors"
    save_tensors(load_tensors(path), wrong, metadata=metadata)
    with pytest.raises(UnsupportedModelError, match="wrong-arch.safetensors.*stable-diffusion-xl-v1-base"):
        load_model(wrong)
