"""LoRA images against diffusers with the same LoRA loaded (PEFT backend), on tiny models.

Each case writes a LoRA with random, non-trivial weights for the tiny SD1 / SDXL folders of
tiny_models.py in a real file format, loads it into diffusers (`load_lora_weights`, or PEFT's own
LoHa/LoKr layers, which diffusers cannot load for these UNets) and into our engine (merge), and
requires the PNG pixels to agree within 2/255. Removing the LoRAs must give back the base
model's pixels bit for bit, from the very same weight objects.
"""
from __future__ import annotations

import lora_helpers as helpers
import numpy as np
import pytest
import torch
from tiny_models import build_sd, build_sdxl
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
UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
                "conv1", "conv2", "conv_shortcut", "time_emb_proj"]
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("lora")


@pytest.fixture(scope="module")
def sd1(root):
    return build_sd(root, kind="sd1")


@pytest.fixture(scope="module")
def sdxl(root):
    return build_sdxl(root)


_models: dict = {}


def _ours(folder) -> Pipeline:
    if folder not in _models:
        _models[folder] = Pipeline(load_model(folder))
    return _models[folder]


def _reference(folder, xl: bool = False):
    import diffusers

    cls = diffusers.StableDiffusionXLPipeline if xl else diffusers.StableDiffusionPipeline
    pipe = cls.from_pretrained(folder)
    pipe.scheduler = diffusers.EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _reference_image(pipe) -> np.ndarray:
    out = pipe(prompt=PROMPT, negative_prompt=NEGATIVE, num_inference_steps=STEPS, guidance_scale=7.5, width=SIZE,
               height=SIZE, generator=torch.Generator().manual_seed(SEED), output_type="pil")
    return np.asarray(out.images[0]).astype(np.int16)


def _our_image(pipeline: Pipeline, stack) -> np.ndarray:
    patcher_for(pipeline.model).apply(stack)
    pipeline.prompt_cache = type(pipeline.prompt_cache)()  # text weights changed (see the report's wiring)
    request = GenerationRequest(prompt=PROMPT, negative_prompt=NEGATIVE, seed=SEED, steps=STEPS, sampler="euler",
                                guidance=7.5, width=SIZE, height=SIZE)
    return pipeline.generate(request).image.astype(np.int16)


def _assert_match(ours: np.ndarray, reference: np.ndarray, base: np.ndarray) -> int:
    assert np.abs(reference - base).mean() > 2, "the LoRA barely changes the image: the test would prove nothing"
    difference = int(np.abs(reference - ours).max())
    print(f"max difference {difference}/255, LoRA effect {np.abs(reference - base).mean():.2f}")
    assert difference <= TOLERANCE, f"max difference {difference}/255"
    return difference


def _kohya_sd1(root, folder, pipe=None, seed: int = 1):
    path = root / f"kohya-sd1-{seed}.safetensors"
    if not path.exists():
        pipe = pipe or _reference(folder)
        helpers.kohya_lora(path, {"lora_unet_": helpers.unet_layers(pipe.unet),
                                  "lora_te_": helpers.text_layers(pipe.text_encoder)},
                           seed=seed, alpha=2.5, conv_alpha=1.5,
                           metadata={"ss_base_model_version": "sd_v1",
                                     "ss_tag_frequency": '{"10_lhouse tower": {"lhouse tower": 12, "sea": 7}}'})
    return path


def _peft_sd1(root, folder, seed: int = 2):
    """A PEFT LoRA saved by diffusers itself (lora_A/lora_B + lora_adapter_metadata), alpha ≠ rank
    with per-module rank and alpha patterns."""
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    path = root / f"peft-sd1-{seed}" / "pytorch_lora_weights.safetensors"
    if path.exists():
        return path
    import diffusers

    pipe = _reference(folder)
    unet_config = LoraConfig(r=4, lora_alpha=6, target_modules=UNET_TARGETS, rank_pattern={"conv2": 2},
                             alpha_pattern={"to_k": 3}, init_lora_weights=False)
    text_config = LoraConfig(r=4, lora_alpha=2, target_modules=TEXT_TARGETS, init_lora_weights=False)
    pipe.unet.add_adapter(unet_config)
    pipe.text_encoder.add_adapter(text_config)
    helpers.randomise_adapter(pipe.unet, seed, ("lora_A", "lora_B"), 0.12)
    helpers.randomise_adapter(pipe.text_encoder, seed + 1, ("lora_A", "lora_B"), 0.12)
    diffusers.StableDiffusionPipeline.save_lora_weights(
        path.parent, unet_lora_layers=get_peft_model_state_dict(pipe.unet),
        text_encoder_lora_layers=get_peft_model_state_dict(pipe.text_encoder),
        unet_lora_adapter_metadata=unet_config.to_dict(), text_encoder_lora_adapter_metadata=text_config.to_dict())
    return path


@pytest.fixture(scope="module")
def sd1_base(sd1):
    return _our_image(_ours(sd1), [])


# ----------------------------------------------------------------------------- oracles
def test_kohya_sd1_locon_matches_diffusers(root, sd1, sd1_base):
    pipe = _reference(sd1)
    path = _kohya_sd1(root, sd1, pipe)
    lora = load_lora(path)
    assert lora.info["algorithm"] == "locon" and lora.info["targets"] == {"te1": 18, "unet": 121}
    pipe.load_lora_weights(str(path), adapter_name="kohya")
    pipe.set_adapters(["kohya"], adapter_weights=[0.8])
    ours = _our_image(_ours(sd1), [LoraWeight(lora, 0.8)])
    _assert_match(ours, _reference_image(pipe), sd1_base)


def test_peft_sd1_matches_diffusers(root, sd1, sd1_base):
    path = _peft_sd1(root, sd1)
    lora = load_lora(path)
    assert lora.info["format"] == "peft" and lora.info["targets"] == {"te1": 18, "unet": 115}
    pipe = _reference(sd1)
    pipe.load_lora_weights(str(path), adapter_name="peft")
    ours = _our_image(_ours(sd1), [LoraWeight(lora)])
    _assert_match(ours, _reference_image(pipe), sd1_base)


def test_two_stacked_loras_with_separate_text_weights_match_diffusers(root, sd1, sd1_base):
    pipe = _reference(sd1)
    kohya, peft = _kohya_sd1(root, sd1, pipe), _peft_sd1(root, sd1)
    pipe.load_lora_weights(str(kohya), adapter_name="kohya")
    pipe.load_lora_weights(str(peft), adapter_name="peft")
    pipe.set_adapters(["kohya", "peft"], adapter_weights=[{"unet": 0.7, "text_encoder": 0.4}, 0.5])
    stack = [LoraWeight(load_lora(kohya), unet=0.7, text=0.4), LoraWeight(load_lora(peft), 0.5)]
    ours = _our_image(_ours(sd1), stack)
    _assert_match(ours, _reference_image(pipe), sd1_base)


def test_kohya_sdxl_unet_and_both_text_encoders_match_diffusers(root, sdxl):
    pipe = _reference(sdxl, xl=True)
    base = _our_image(_ours(sdxl), [])
    path = root / "kohya-sdxl.safetensors"
    unet = helpers.unet_layers(pipe.unet)
    ldm = helpers.ldm_names(list(unet), layers_per_block=2)  # kohya trains SDXL on the SGM UNet
    helpers.kohya_lora(path, {"lora_unet_": {ldm[name]: w for name, w in unet.items()},
                              "lora_te1_": helpers.text_layers(pipe.text_encoder),
                              "lora_te2_": helpers.text_layers(pipe.text_encoder_2)},
                       seed=3, alpha=2.0, conv_alpha=3.0, metadata={"ss_base_model_version": "sdxl_base_v1-0"})
    lora = load_lora(path)
    assert lora.info["family"] == "sdxl"
    assert lora.info["targets"] == {"te1": 18, "te2": 19, "unet": len(unet)}
    pipe.load_lora_weights(str(path), adapter_name="xl")
    pipe.set_adapters(["xl"], adapter_weights=[0.9])
    ours = _our_image(_ours(sdxl), [LoraWeight(lora, 0.9)])
    _assert_match(ours, _reference_image(pipe), base)


def test_removing_the_loras_restores_the_base_model_exactly(root, sd1, sd1_base):
    pipeline = _ours(sd1)
    model = pipeline.model
    patcher_for(model).apply([])
    before = {name: p for name, p in model.unet.named_parameters()}
    before.update({f"te.{name}": p for name, p in model.text_encoders[0].model.named_parameters()})
    snapshot = {name: p.detach().clone() for name, p in before.items()}
    stack = [LoraWeight(load_lora(_kohya_sd1(root, sd1)), 0.7, 0.4),
             LoraWeight(load_lora(_peft_sd1(root, sd1)), 0.5)]
    with_loras = _our_image(pipeline, stack)
    assert np.abs(with_loras - sd1_base).mean() > 2
    changed = [name for name, p in model.unet.named_parameters() if p is not before[name]]
    assert len(changed) > 100
    restored = _our_image(pipeline, [])
    assert np.array_equal(restored, sd1_base)
    after = {name: p for name, p in model.unet.named_parameters()}
    after.update({f"te.{name}": p for name, p in model.text_encoders[0].model.named_parameters()})
    assert all(after[name] is before[name] for name in before)
    assert all(torch.equal(after[name], snapshot[name]) for name in before)


def test_switching_weights_equals_applying_them_fresh(root, sd1):
    model = _ours(sd1).model
    lora = load_lora(_kohya_sd1(root, sd1))
    patcher = patcher_for(model)
    patcher.apply([LoraWeight(lora, 1.0)])
    patcher.apply([LoraWeight(lora, 0.3, 0.0)])  # a slider move: recomputed from the kept originals
    switched = {name: p.detach().clone() for name, p in model.unet.named_parameters()}
    text_switched = {name: p.detach().clone() for name, p in model.text_encoders[0].model.named_parameters()}
    patcher.clear()
    patcher.apply([LoraWeight(lora, 0.3, 0.0)])
    for name, p in model.unet.named_parameters():
        assert torch.equal(p, switched[name]), name
    for name, p in model.text_encoders[0].model.named_parameters():
        assert torch.equal(p, text_switched[name]), name
    patcher.clear()


# ----------------------------------------------------------------------------- LyCORIS via PEFT's layers
_lycoris_cases: dict = {}


def _lycoris_case(root, folder, kind: str, seed: int):
    if (kind, seed) not in _lycoris_cases:
        _lycoris_cases[kind, seed] = _make_lycoris_case(root, folder, kind, seed)
    return _lycoris_cases[kind, seed]


def _make_lycoris_case(root, folder, kind: str, seed: int):
    """Inject PEFT's LoHa/LoKr layers into the diffusers pipeline (the reference), then write the
    same factors as a LyCORIS file with kohya names (what A1111 / kohya / LyCORIS read)."""
    from peft import LoHaConfig, LoKrConfig, inject_adapter_in_model

    pipe = _reference(folder)
    if kind == "loha":
        config = LoHaConfig(r=4, alpha=3.0, target_modules=UNET_TARGETS, use_effective_conv2d=True)
        text_config = LoHaConfig(r=4, alpha=6.0, target_modules=TEXT_TARGETS)
        markers = ("hada_",)
    else:
        config = LoKrConfig(r=2, alpha=3.0, target_modules=UNET_TARGETS, decompose_both=True,
                            use_effective_conv2d=True)
        text_config = LoKrConfig(r=2, alpha=1.0, target_modules=TEXT_TARGETS, decompose_both=True)
        markers = ("lokr_",)
    inject_adapter_in_model(config, pipe.unet, adapter_name="default")
    inject_adapter_in_model(text_config, pipe.text_encoder, adapter_name="default")
    helpers.randomise_adapter(pipe.unet, seed, markers, 0.35 if kind == "loha" else 0.3)
    helpers.randomise_adapter(pipe.text_encoder, seed + 1, markers, 0.35 if kind == "loha" else 0.3)
    tensors = {}
    for prefix, model, alpha in (("lora_unet_", pipe.unet, config.alpha), ("lora_te_", pipe.text_encoder,
                                                                            text_config.alpha)):
        for name, module in model.named_modules():
            factors = {role: getattr(module, role)["default"].detach().clone() for role in
                       getattr(module, "adapter_layer_names", ()) if "default" in getattr(module, role)}
            if not factors:
                continue
            path = name if prefix == "lora_unet_" or name.startswith("text_model.") else "text_model." + name
            key = prefix + path.replace(".", "_")
            if kind == "lokr" and "lokr_w1" in factors and "lokr_w2" in factors:
                # LyCORIS never scales a LoKr whose factors are both whole; PEFT always scales by
                # alpha/r: bake PEFT's scale into w1 (diffusers' _bake_lokr_alpha_ in reverse).
                factors["lokr_w1"] = factors["lokr_w1"] * module.scaling["default"]
            tensors.update({f"{key}.{role}": value for role, value in factors.items()})
            tensors[f"{key}.alpha"] = torch.tensor(float(alpha))
    path = root / f"{kind}-{seed}.safetensors"
    from inference.formats.safetensors_file import save_tensors

    save_tensors(tensors, path)
    return pipe, path


@pytest.mark.parametrize("kind", ["loha", "lokr"])
def test_lycoris_matches_peft_layers(root, sd1, sd1_base, kind):
    pipe, path = _lycoris_case(root, sd1, kind, seed=5)
    lora = load_lora(path)
    assert lora.info["algorithm"] == kind and lora.info["format"] == "kohya"
    ours = _our_image(_ours(sd1), [LoraWeight(lora)])
    _assert_match(ours, _reference_image(pipe), sd1_base)


def test_lokr_forms_are_all_present(root, sd1):
    """The LoKr case above must exercise whole and decomposed factors and the Tucker w2 (lokr_t2)."""
    lora = load_lora(_lycoris_case(root, sd1, "lokr", seed=5)[1])
    roles = {role for module in lora.modules.values() for role in module.tensors}
    assert {"lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2_a", "lokr_w2_b", "lokr_t2"} <= roles


def test_dora_peft_matches_diffusers(root, sd1, sd1_base):
    """A PEFT DoRA file (lora_magnitude_vector) saved and loaded by diffusers itself."""
    import diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipe = _reference(sd1)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["to_q", "to_v", "ff.net.2", "conv1"], use_dora=True,
                        init_lora_weights=False)
    pipe.unet.add_adapter(config)
    helpers.randomise_adapter(pipe.unet, 7, ("lora_A", "lora_B"), 0.2)
    with torch.no_grad():
        for name, module in pipe.unet.named_modules():
            if hasattr(module, "lora_magnitude_vector") and "default" in module.lora_magnitude_vector:
                magnitude = module.lora_magnitude_vector["default"].weight
                magnitude.mul_(1 + 0.3 * torch.randn(magnitude.shape, generator=torch.Generator().manual_seed(8)))
    folder = root / "dora"
    diffusers.StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=get_peft_model_state_dict(pipe.unet),
                                                        unet_lora_adapter_metadata=config.to_dict())
    path = folder / "pytorch_lora_weights.safetensors"
    lora = load_lora(path)
    assert lora.info["dora"]
    reference = _reference(sd1)
    reference.load_lora_weights(str(path), adapter_name="dora")
    ours = _our_image(_ours(sd1), [LoraWeight(lora)])
    _assert_match(ours, _reference_image(reference), sd1_base)


def test_conv_layers_are_patched(root, sd1):
    """LoCon reaches every convolution kohya trains (ResBlock convs, shortcut, samplers)."""
    model = _ours(sd1).model
    lora = load_lora(_kohya_sd1(root, sd1))
    patcher = patcher_for(model)
    patcher.apply([LoraWeight(lora)])
    patched = {name for name, m in model.unet.named_modules()
               if isinstance(m, nn.Conv2d) and id(m) in patcher._originals}
    patcher.clear()
    for name in ("input_blocks.1.0.in_layers.2", "input_blocks.1.0.out_layers.3", "input_blocks.3.0.op",
                 "output_blocks.0.0.skip_connection", "output_blocks.2.1.conv", "input_blocks.0.0", "out.2"):
        assert name in patched, name
