"""Architecture detection: LDM key shapes → UNet config → registry family; file classification;
clear errors for unknown architectures and incomplete checkpoints."""
from __future__ import annotations

import itertools

import pytest
import torch

import layouts
from inference import detect
from inference.errors import InferenceError, ModelFormatError, UnsupportedModelError
from inference.formats.safetensors_file import save_tensors
from inference.loader import inspect_model, load_model
from inference.models.taesd import TAESD
from inference.models.unet import UNetConfig, UNetModel
from inference.models.vae import AutoencoderKL, VAEConfig
from inference.registry import FAMILIES, match_family, variant_of


def _shapes(module_or_state) -> dict[str, tuple[int, ...]]:
    state = module_or_state.state_dict() if isinstance(module_or_state, torch.nn.Module) else module_or_state
    return {k: tuple(v.shape) for k, v in state.items()}


def _meta(factory):
    with torch.device("meta"):
        return factory()


# Tiny UNets with each family's conditioning (context width, SDXL ADM input) and projection kind.
TINY = {
    "sd1": dict(context_dim=768, use_linear_in_transformer=False, adm_in_channels=None, transformer_depth=(1, 1)),
    "sd2": dict(context_dim=1024, use_linear_in_transformer=True, adm_in_channels=None, transformer_depth=(1, 1),
                upcast_attention=True),
    "sdxl": dict(context_dim=2048, use_linear_in_transformer=True, adm_in_channels=2816, transformer_depth=(0, 2)),
    "sdxl_refiner": dict(context_dim=1280, use_linear_in_transformer=True, adm_in_channels=2560,
                         transformer_depth=(0, 4)),
}


def _tiny_config(family: str, in_channels: int) -> UNetConfig:
    values = dict(TINY[family])
    depth = values.pop("transformer_depth")
    linear = values["use_linear_in_transformer"]
    return UNetConfig(in_channels=in_channels, model_channels=64, channel_mult=(1, 2), num_res_blocks=1,
                      transformer_depth=depth, transformer_depth_middle=depth[-1],
                      num_heads=(1, 2) if linear else (8, 8), **values)  # 64-wide heads, or SD1's 8 heads


def test_every_registry_family_has_a_detection_case():
    assert {family.name for family in FAMILIES} == set(TINY)


@pytest.mark.parametrize("in_channels,variant", [(4, "base"), (9, "inpaint"), (8, "instruct-pix2pix")])
@pytest.mark.parametrize("family", list(TINY))
def test_tiny_ldm_unet_is_detected_as_its_family_and_variant(family, in_channels, variant):
    config = _tiny_config(family, in_channels)
    shapes = _shapes(_meta(lambda: UNetModel(config)))
    detected = detect.detect_unet(shapes, "tiny.safetensors")
    assert detected.to_dict() == config.to_dict()
    assert match_family(detect.unet_facts(detected)).name == family
    assert variant_of(detected.in_channels) == variant


@pytest.mark.parametrize("kind", ["sd15", "sd15_inpaint", "sd21", "sdxl", "sdxl_refiner"])
def test_full_size_layouts_match_exactly_one_family(kind):
    layout = layouts.full_layout(kind)
    shapes = detect.strip_prefix(_shapes(layout.tensors), detect.UNET_PREFIX)
    facts = detect.unet_facts(detect.detect_unet(shapes, f"{kind}.safetensors"))
    matching = [f.name for f in FAMILIES if all(facts.get(k) == v for k, v in f.matches.items())]
    assert matching == [layout.family]


def test_no_two_registry_entries_can_match_the_same_model():
    for first, second in itertools.combinations(FAMILIES, 2):
        shared = set(first.matches) & set(second.matches)
        assert any(first.matches[k] != second.matches[k] for k in shared), (
            f"registry entries {first.name!r} and {second.name!r} cannot be told apart by {sorted(shared)}")
        assert first.name != second.name


def test_head_hints_from_metadata_set_the_head_counts():
    config = _tiny_config("sd1", 4)
    shapes = _shapes(_meta(lambda: UNetModel(config)))
    assert detect.detect_unet(shapes, "x", num_heads=(4,)).num_heads == (4, 4)
    assert detect.detect_unet(shapes, "x", num_heads=(2, 4)).num_heads == (2, 4)
    assert detect.detect_unet(shapes, "x", head_dim=16).num_heads == (4, 8)
    with pytest.raises(UnsupportedModelError, match="3 head counts for 2 UNet levels"):
        detect.detect_unet(shapes, "x", num_heads=(1, 2, 3))


def test_modelspec_metadata_is_parsed():
    hints = detect.hints_from_metadata({"modelspec.architecture": "stable-diffusion-v2-768-v"}, "f")
    assert (hints.family, hints.prediction_type) == ("sd2", "v_prediction")
    hints = detect.hints_from_metadata({"modelspec.architecture": "stable-diffusion-xl-v1-base",
                                        "modelspec.prediction_type": "v", "canvasai.num_heads": "2,4",
                                        "canvasai.norm_groups": "8", "canvasai.text_head_dim": "16"}, "f")
    assert (hints.family, hints.prediction_type, hints.num_heads, hints.norm_groups, hints.text_head_dim) == (
        "sdxl", "v_prediction", (2, 4), 8, 16)
    assert detect.hints_from_metadata({"modelspec.architecture": "stable-diffusion-xl-v1-refiner"}, "f").family == \
        "sdxl_refiner"
    assert detect.hints_from_metadata({"modelspec.architecture": "stable-diffusion-v1/lora"}, "f").family == "sd1"
    assert detect.hints_from_metadata({"modelspec.architecture": "flux-1-dev", "format": "pt"}, "f") == \
        detect.FileHints(architecture="flux-1-dev")
    with pytest.raises(InferenceError, match="bad.safetensors.*canvasai.head_dim"):  # the schema refuses it
        detect.hints_from_metadata({"canvasai.head_dim": "sixty-four"}, "bad.safetensors")
    with pytest.raises(UnsupportedModelError, match="prediction_type"):
        detect.hints_from_metadata({"modelspec.prediction_type": "flow"}, "bad.safetensors")


# ----------------------------------------------------------------------------- classify_file
@pytest.fixture(scope="module")
def sd15():
    return layouts.full_layout("sd15")


def test_classify_checkpoint_unet_and_vae(sd15):
    shapes = _shapes(sd15.tensors)
    assert detect.classify_file(shapes) == "checkpoint"
    assert detect.classify_file(detect.strip_prefix(shapes, detect.UNET_PREFIX)) == "unet"
    vae = {k: v for k, v in shapes.items() if k.startswith(detect.VAE_PREFIX)}
    assert detect.classify_file(vae) == "vae_ldm"
    assert detect.classify_file(detect.strip_prefix(shapes, detect.VAE_PREFIX)) == "vae"
    assert detect.classify_file({"decoder.conv_in.weight": (512, 4, 3, 3)}) == "vae"


def test_classify_taesd_files():
    from diffusers import AutoencoderTiny

    ours = _meta(TAESD)
    assert detect.classify_file(_shapes(ours.encoder)) == "taesd_encoder"
    assert detect.classify_file(_shapes(ours.decoder)) == "taesd_decoder"
    assert detect.classify_file(_shapes(ours)) == "taesd"
    diffusers_tiny = _shapes(_meta(AutoencoderTiny))
    assert detect.classify_file(diffusers_tiny) == "taesd_diffusers"
    # diffusers' AutoencoderTiny and the original TAESD files hold the same tensors, renamed.
    from inference.convert import taesd_diffusers_to_ours

    assert _shapes(taesd_diffusers_to_ours(_meta(AutoencoderTiny).state_dict())) == _shapes(ours)


def test_classify_unknown():
    assert detect.classify_file({"transformer_blocks.0.attn.to_q.weight": (3072, 3072)}) == "unknown"
    assert detect.classify_file({}) == "unknown"


# ----------------------------------------------------------------------------- errors
def _header_only(tmp_path, name, tensors, metadata=None):
    return layouts.write_header_only(tmp_path / name, tensors, metadata=metadata)


def test_unknown_architecture_names_the_file(tmp_path):
    meta = torch.device("meta")
    sd3_like = {"model.diffusion_model.joint_blocks.0.context_block.adaLN_modulation.1.bias":
                torch.empty(9216, dtype=torch.float16, device=meta),
                "model.diffusion_model.x_embedder.proj.weight": torch.empty(1536, 16, 2, 2, dtype=torch.float16,
                                                                            device=meta)}
    path = _header_only(tmp_path, "mystery-dit.safetensors", sd3_like)
    with pytest.raises(UnsupportedModelError, match="mystery-dit.safetensors"):
        load_model(path)
    with pytest.raises(UnsupportedModelError, match="mystery-dit.safetensors"):
        inspect_model(path)

    flux_like = {"double_blocks.0.img_attn.qkv.weight": torch.empty(9216, 3072, dtype=torch.float16, device=meta)}
    path = _header_only(tmp_path, "some-transformer.safetensors", flux_like)
    with pytest.raises(UnsupportedModelError, match="some-transformer.safetensors"):
        load_model(path)


def test_unet_with_an_unknown_context_width_names_the_file(tmp_path):
    config = UNetConfig(model_channels=64, channel_mult=(1, 2), num_res_blocks=1, transformer_depth=(1, 0),
                        context_dim=4096)
    tensors = {detect.UNET_PREFIX + k: v.to(torch.float16) for k, v in _meta(lambda: UNetModel(config)).state_dict().items()}
    vae = _meta(lambda: AutoencoderKL(VAEConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1)))
    tensors.update({detect.VAE_PREFIX + k: v.to(torch.float16) for k, v in vae.state_dict().items()})
    path = _header_only(tmp_path, "wide-context.safetensors", tensors)
    with pytest.raises(UnsupportedModelError, match="wide-context.safetensors.*context 4096.*no supported family"):
        load_model(path)


@pytest.fixture(scope="module")
def tiny():
    return layouts.tiny_checkpoint()


def test_small_real_checkpoint_loads(tiny, tmp_path):
    state, metadata = tiny
    save_tensors(state, tmp_path / "tiny.safetensors", metadata=metadata)
    model = load_model(tmp_path / "tiny.safetensors")
    assert model.family.name == "sd1" and model.unet.config.num_heads == (4, 4)
    assert torch.equal(model.unet.input_blocks[1][0].in_layers[2].weight,
                       state["model.diffusion_model.input_blocks.1.0.in_layers.2.weight"].float())


@pytest.mark.parametrize("key", [
    "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight",
    "model.diffusion_model.output_blocks.3.0.skip_connection.bias",
    "model.diffusion_model.out.0.weight",
    # keys that detection itself reads
    "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight",
    "model.diffusion_model.input_blocks.1.1.proj_in.weight",
    "first_stage_model.encoder.down.1.block.0.conv1.weight",
    "first_stage_model.decoder.mid.attn_1.q.bias",
    "cond_stage_model.transformer.text_model.encoder.layers.0.mlp.fc1.weight",
    "cond_stage_model.transformer.text_model.final_layer_norm.bias",
])
def test_checkpoint_missing_one_key_fails_clearly_naming_it(tiny, tmp_path, key):
    state, metadata = tiny
    incomplete = {k: v for k, v in state.items() if k != key}
    path = tmp_path / "incomplete.safetensors"
    save_tensors(incomplete, path, metadata=metadata)
    short = key  # the message may name the key without its component prefix
    for prefix in ("model.diffusion_model.", "first_stage_model.", "cond_stage_model.transformer."):
        short = short.removeprefix(prefix)
    with pytest.raises(ModelFormatError) as caught:
        load_model(path)
    message = str(caught.value)
    assert message.startswith("incomplete.safetensors: ")
    assert short in message
