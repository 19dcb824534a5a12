"""LoRA file recognition (torch-free), name matching on full-size layouts, the delta formulas,
and the unknown-key policy. Images against diffusers live in test_lora_oracle.py."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import layouts
import pytest
import torch
from torch import nn

from inference import convert
from inference.errors import UnsupportedModelError
from inference.formats.safetensors_file import save_tensors
from inference.lora import deltas
from inference.lora.apply import LoraWeight, load_lora, patcher_for, resolve
from inference.lora.formats import inspect_lora, parse_key
from inference.lora.keys import build_index
from inference.models.clip_text import CLIPTextModel
from inference.models.unet import UNetModel

ROOT = Path(__file__).resolve().parents[3]


def _write(tmp_path, name: str, tensors: dict, metadata: dict | None = None) -> Path:
    path = tmp_path / name
    save_tensors({k: v.contiguous() for k, v in tensors.items()}, path, metadata=metadata or {})
    return path


def _lora(prefix: str, out: int, inp: int, rank: int = 4, alpha: float | None = 2.0, kernel=()) -> dict:
    tensors = {f"{prefix}.lora_down.weight": torch.randn(rank, inp, *kernel),
               f"{prefix}.lora_up.weight": torch.randn(out, rank, *([1, 1] if kernel else []))}
    if alpha is not None:
        tensors[f"{prefix}.alpha"] = torch.tensor(alpha)
    return tensors


# ----------------------------------------------------------------------------- detection
def test_kohya_sd1_lora(tmp_path):
    tensors = {**_lora("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k", 320, 768),
               **_lora("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q", 320, 320),
               **_lora("lora_te_text_model_encoder_layers_0_self_attn_q_proj", 768, 768, alpha=1.0)}
    info = inspect_lora(_write(tmp_path, "style.safetensors", tensors))
    assert (info["format"], info["algorithm"], info["dora"]) == ("kohya", "lora", False)
    assert info["family"] == "sd1" and info["family_reason"] == "cross-attention width 768"
    assert info["targets"] == {"te1": 1, "unet": 2} and info["ranks"] == {4: 3}
    assert info["alphas"] == [1.0, 2.0] and info["alpha_range"] == [1.0, 2.0]
    assert info["name"] == "style" and info["unrecognised_count"] == 0


def test_locon_conv_layers(tmp_path):
    tensors = {**_lora("lora_unet_down_blocks_0_resnets_0_conv1", 320, 320, kernel=(3, 3)),
               **_lora("lora_unet_down_blocks_0_attentions_0_proj_in", 320, 320, kernel=(1, 1))}
    info = inspect_lora(_write(tmp_path, "locon.safetensors", tensors))
    assert info["algorithm"] == "locon" and info["algorithms"] == ["locon", "lora"]
    assert info["kind"] == "LyCORIS LoCon (kohya names)"


def test_loha_including_tucker(tmp_path):
    tensors = {"lora_unet_input_blocks_4_1_proj_in.hada_w1_a": torch.randn(640, 8),
               "lora_unet_input_blocks_4_1_proj_in.hada_w1_b": torch.randn(8, 640),
               "lora_unet_input_blocks_4_1_proj_in.hada_w2_a": torch.randn(640, 8),
               "lora_unet_input_blocks_4_1_proj_in.hada_w2_b": torch.randn(8, 640),
               "lora_unet_input_blocks_4_1_proj_in.alpha": torch.tensor(4.0)}
    for part in ("1", "2"):
        base = "lora_unet_input_blocks_4_0_in_layers_2"
        tensors[f"{base}.hada_t{part}"] = torch.randn(8, 8, 3, 3)
        tensors[f"{base}.hada_w{part}_a"] = torch.randn(8, 640)
        tensors[f"{base}.hada_w{part}_b"] = torch.randn(8, 320)
    info = inspect_lora(_write(tmp_path, "loha.safetensors", tensors, {"ss_base_model_version": "sdxl_base_v1-0"}))
    assert info["algorithm"] == "loha" and info["kind"] == "LyCORIS LoHa (kohya names)"
    assert info["family"] == "sdxl" and info["family_reason"] == "metadata"
    assert info["ranks"] == {8: 2} and info["modules"] == 2


def test_lokr_whole_and_decomposed_factors(tmp_path):
    tensors = {"lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k.lokr_w1": torch.randn(4, 8),
               "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k.lokr_w2_a": torch.randn(160, 4),
               "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k.lokr_w2_b": torch.randn(4, 128),
               "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k.alpha": torch.tensor(2.0),
               "lora_te_text_model_encoder_layers_0_mlp_fc1.lokr_w1_a": torch.randn(8, 2),
               "lora_te_text_model_encoder_layers_0_mlp_fc1.lokr_w1_b": torch.randn(2, 8),
               "lora_te_text_model_encoder_layers_0_mlp_fc1.lokr_w2": torch.randn(384, 96)}
    info = inspect_lora(_write(tmp_path, "lokr.safetensors", tensors))
    assert info["algorithm"] == "lokr" and info["ranks"] == {4: 1, 2: 1}
    assert info["family"] == "sd2" and info["family_reason"] == "cross-attention width 1024"  # 8 · 128


def test_dora_scale(tmp_path):
    tensors = _lora("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q", 320, 320)
    tensors["lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.dora_scale"] = torch.rand(1, 320)
    info = inspect_lora(_write(tmp_path, "dora.safetensors", tensors))
    assert info["dora"] and info["kind"] == "LoRA + DoRA (kohya names)" and info["modules"] == 1


def test_peft_diffusers_format_with_adapter_metadata(tmp_path):
    tensors = {"unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight": torch.randn(4, 320),
               "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.weight": torch.randn(320, 4),
               "text_encoder.encoder.layers.0.self_attn.q_proj.lora_A.weight": torch.randn(4, 1024),
               "text_encoder.encoder.layers.0.self_attn.q_proj.lora_B.weight": torch.randn(1024, 4)}
    metadata = {"lora_adapter_metadata": json.dumps({"unet.r": 4, "unet.lora_alpha": 8})}
    info = inspect_lora(_write(tmp_path, "pytorch_lora_weights.safetensors", tensors, metadata))
    assert (info["format"], info["algorithm"]) == ("peft", "lora")
    assert info["targets"] == {"te1": 1, "unet": 1} and info["alphas"] == [8.0]
    assert info["family"] == "sd2" and info["family_reason"] == "text encoder width 1024"


def test_old_diffusers_formats():
    down = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_out_lora.down.weight"
    parsed = parse_key(down)
    assert (parsed.component, parsed.module, parsed.role, parsed.style) == (
        "unet", "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0", "down", "diffusers_old")
    parsed = parse_key("text_encoder.text_model.encoder.layers.3.self_attn.to_k_lora.up.weight")
    assert (parsed.component, parsed.module, parsed.role) == ("te1", "text_model.encoder.layers.3.self_attn.k_proj", "up")
    parsed = parse_key("text_encoder_2.text_model.encoder.layers.3.mlp.fc1.lora_linear_layer.down.weight")
    assert (parsed.component, parsed.module, parsed.role) == ("te2", "text_model.encoder.layers.3.mlp.fc1", "down")
    parsed = parse_key("unet.mid_block.attentions.0.proj_in.lora.up.weight")
    assert (parsed.module, parsed.role, parsed.style) == ("mid_block.attentions.0.proj_in", "up", "diffusers_old")
    parsed = parse_key("base_model.model.up_blocks.1.attentions.2.proj_out.lora_B.weight")
    assert (parsed.component, parsed.module, parsed.style) == ("unet", "up_blocks.1.attentions.2.proj_out", "peft")
    assert parse_key("lora_unet_x.oft_blocks") == "unsupported algorithm: OFT"
    assert parse_key("model.diffusion_model.out.2.weight") == "unknown key"


def test_kohya_sdxl_family_and_trigger_words(tmp_path):
    tensors = {**_lora("lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k", 640, 2048),
               **_lora("lora_te1_text_model_encoder_layers_0_self_attn_q_proj", 768, 768),
               **_lora("lora_te2_text_model_encoder_layers_0_self_attn_q_proj", 1280, 1280)}
    tags = {"10_zkz woman": {"zkz woman": 40, "smile": 12, "outdoors": 9}, "5_zkz woman portrait": {"zkz woman": 10}}
    info = inspect_lora(_write(tmp_path, "xl.safetensors", tensors, {"ss_tag_frequency": json.dumps(tags)}))
    assert info["family"] == "sdxl" and info["targets"] == {"te1": 1, "te2": 1, "unet": 1}
    assert info["trigger_words"] == ["zkz woman", "zkz woman portrait"]
    assert info["tags"] == [("zkz woman", 50), ("smile", 12), ("outdoors", 9)]
    explicit = inspect_lora(_write(tmp_path, "xl2.safetensors", tensors, {"modelspec.trigger_phrase": "zkz, red hat"}))
    assert explicit["trigger_words"] == ["zkz", "red hat"]


def test_files_without_lora_modules_are_refused_with_their_keys(tmp_path):
    junk = _write(tmp_path, "junk.safetensors", {"model.diffusion_model.out.2.weight": torch.zeros(4, 8)})
    with pytest.raises(UnsupportedModelError, match=r"junk.safetensors: not a LoRA .*model.diffusion_model.out.2.weight"):
        inspect_lora(junk)
    oft = _write(tmp_path, "oft.safetensors", {"lora_unet_a_b.oft_blocks": torch.zeros(4, 2, 2)})
    with pytest.raises(UnsupportedModelError, match=r"^oft.safetensors: a OFT network, which is not supported"):
        inspect_lora(oft)
    half = _write(tmp_path, "half.safetensors", {"lora_unet_a_b.lora_down.weight": torch.zeros(2, 8)})
    with pytest.raises(UnsupportedModelError, match="half.safetensors"):
        inspect_lora(half)


def test_inspect_imports_no_torch(tmp_path):
    path = _write(tmp_path, "t.safetensors", _lora("lora_te_text_model_encoder_layers_0_mlp_fc2", 768, 3072))
    code = (f"import sys; from inference.lora.formats import inspect_lora; i = inspect_lora({str(path)!r}); "
            "print(i['format'], i['alphas'], 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.stdout.split() == ["kohya", "[2.0]", "False"], result.stderr


# ----------------------------------------------------------------------------- names on full-size layouts
def _meta_model(kind: str):
    """Our networks at a published configuration, on the meta device, shaped like a DiffusionModel."""
    layout = layouts.full_layout(kind)
    config = convert.unet_config_from_diffusers(layout.unet_config)
    with torch.device("meta"):
        unet = UNetModel(config)
        texts = []
        for folder, tower in zip(("text_encoder", "text_encoder_2") if kind == "sdxl" else ("text_encoder",),
                                 layout.texts):
            model = CLIPTextModel(convert.clip_config_from_transformers(tower.diffusers.config.to_dict()))
            texts.append(SimpleNamespace(spec=SimpleNamespace(folder=folder), model=model))
    model = SimpleNamespace(unet=unet, text_encoders=texts, name=kind, family=SimpleNamespace(name=layout.family))
    return layout, model


def _patchable(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(m.weight.shape) for name, m in module.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))}


@pytest.mark.parametrize("kind", ["sd15", "sd21", "sdxl"])
def test_every_diffusers_and_ldm_unet_name_finds_its_layer(kind):
    """kohya SD1/SD2 (diffusers paths), kohya SDXL (LDM paths, via layouts.py's independent
    renaming), LCM-style SDXL (diffusers paths) and PEFT names all reach the same-shaped layer."""
    layout, model = _meta_model(kind)
    index = build_index(model)
    diffusers_layers = _patchable(layout.unet)
    ldm = {k[: -len(".weight")]: k for k in layouts.unet_diffusers_to_ldm(
        {f"{n}.weight": torch.empty(0) for n in diffusers_layers}, layout.unet_config["layers_per_block"])}
    ldm_of = dict(zip(diffusers_layers, ldm))
    for name, shape in diffusers_layers.items():
        for key in (f"lora_unet_{name.replace('.', '_')}.lora_down.weight", f"unet.{name}.lora_A.weight",
                    f"lora_unet_{ldm_of[name].replace('.', '_')}.lora_down.weight"):
            target = index[parse_key(key).lookup]
            assert tuple(target.module.weight.shape) == shape, key
            assert target.name == ldm_of[name]
    for tower, encoder in zip(layout.texts, model.text_encoders):
        prefix = "lora_te2_" if encoder.spec.folder == "text_encoder_2" else ("lora_te1_" if kind == "sdxl" else "lora_te_")
        for name, shape in _patchable(tower.diffusers).items():
            hf = name if name.startswith(("text_model.", "text_projection")) else "text_model." + name
            target = index[parse_key(f"{prefix}{hf.replace('.', '_')}.lora_up.weight").lookup]
            assert tuple(target.module.weight.shape) == shape
            folder = encoder.spec.folder
            assert index[parse_key(f"{folder}.{name}.lora_B.weight").lookup] is not None


# ----------------------------------------------------------------------------- formulas
def test_delta_formulas_against_written_out_sums():
    g = torch.Generator().manual_seed(0)
    up, mid, down = torch.randn(6, 3, 1, 1, generator=g), torch.randn(3, 3, 3, 3, generator=g), torch.randn(3, 5, 1, 1, generator=g)
    expected = torch.zeros(6, 5, 3, 3)
    for o in range(6):
        for i in range(5):
            for a in range(3):
                for b in range(3):
                    expected[o, i] += up[o, a, 0, 0] * mid[a, b] * down[b, i, 0, 0]
    assert torch.allclose(deltas.module_delta({"down": down, "up": up, "mid": mid}, (6, 5, 3, 3)), expected, atol=1e-5)
    conv_down = torch.randn(3, 5, 3, 3, generator=g)
    locon = deltas.module_delta({"down": conv_down, "up": up}, (6, 5, 3, 3))
    assert torch.allclose(locon, torch.einsum("or,rihw->oihw", up[:, :, 0, 0], conv_down), atol=1e-5)
    w1a, w1b, w2a, w2b = (torch.randn(s, generator=g) for s in ((6, 2), (2, 5), (6, 2), (2, 5)))
    assert torch.allclose(deltas.module_delta({"hada_w1_a": w1a, "hada_w1_b": w1b, "hada_w2_a": w2a, "hada_w2_b": w2b},
                                              (6, 5)), (w1a @ w1b) * (w2a @ w2b), atol=1e-5)
    k1, k2 = torch.randn(2, 3, generator=g), torch.randn(3, 2, generator=g)
    kron = deltas.module_delta({"lokr_w1": k1, "lokr_w2": k2}, (6, 6))
    assert all(kron[i * 3 + p, j * 2 + q] == k1[i, j] * k2[p, q] for i in range(2) for j in range(3)
               for p in range(3) for q in range(2))
    assert deltas.scale({"lokr_w1": k1, "lokr_w2": k2}, alpha=8.0) == 1.0  # whole LoKr factors: never scaled
    assert deltas.scale({"down": down, "up": up}, alpha=1.5) == 0.5
    assert deltas.scale({"down": down, "up": up}, alpha=None) == 1.0
    with pytest.raises(ValueError, match=r"\(6, 45\) does not fit \(6, 4, 3, 3\)"):
        deltas.module_delta({"down": conv_down, "up": up}, (6, 4, 3, 3))


def test_dora_both_axes():
    g = torch.Generator().manual_seed(1)
    weight, delta = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    rows = torch.rand(4, generator=g) + 0.5
    out = deltas.dora_weight(weight, delta, rows, per_output=True)
    assert torch.allclose(out.norm(dim=1), rows, atol=1e-5)  # each output row has its magnitude
    columns = torch.rand(1, 3, generator=g) + 0.5
    out = deltas.dora_weight(weight, delta, columns, per_output=False)
    assert torch.allclose(out.norm(dim=0), columns[0], atol=1e-5)  # LyCORIS: each input column
    assert deltas.dora_per_output((4, 1), (4, 3), "kohya") and not deltas.dora_per_output((1, 3), (4, 3), "kohya")
    assert deltas.dora_per_output((1, 4, 1, 1), (4, 3, 3, 3), "peft")


# ----------------------------------------------------------------------------- the unknown-key policy
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tiny_models import build_sd

    from inference.loader import load_model

    return load_model(build_sd(tmp_path_factory.mktemp("lora_formats")))


def _tiny_lora(model, tmp_path, name: str, extra: dict | None = None, count: int = 40) -> Path:
    layers = [(n, m) for n, m in model.unet.named_modules() if isinstance(m, nn.Linear)][:count]
    tensors = {}
    for n, m in layers:
        tensors.update(_lora(f"lora_unet_{n.replace('.', '_')}", m.out_features, m.in_features, rank=2))
    tensors.update(extra or {})
    return _write(tmp_path, name, tensors)


def test_a_few_unmatched_modules_warn_with_count_and_names(tiny, tmp_path):
    extra = _lora("lora_unet_input_blocks_99_1_proj_in", 8, 8, rank=2)
    lora = load_lora(_tiny_lora(tiny, tmp_path, "mostly.safetensors", extra))
    result = resolve(lora, tiny)
    assert len(result.pairs) == 40
    expected = (f"mostly.safetensors: 1 of 41 LoRA modules match no layer of {tiny.name} and were skipped: "
                "input_blocks_99_1_proj_in")
    assert result.warnings == [expected]
    assert patcher_for(tiny).apply([LoraWeight(lora)]) == result.warnings
    patcher_for(tiny).clear()


def test_many_unmatched_modules_are_an_error_naming_the_first(tiny, tmp_path):
    extra = {}
    for i in range(6):
        extra.update(_lora(f"lora_unet_input_blocks_9{i}_1_proj_in", 8, 8, rank=2))
    lora = load_lora(_tiny_lora(tiny, tmp_path, "other.safetensors", extra))
    with pytest.raises(UnsupportedModelError, match=r"^other.safetensors: 6 of 46 LoRA modules match no layer of "
                                                    r".*: input_blocks_90_1_proj_in, input_blocks_91_1_proj_in, "
                                                    r"input_blocks_92_1_proj_in …$"):
        patcher_for(tiny).apply([LoraWeight(lora)])
    assert not patcher_for(tiny).active  # nothing was half-applied


def test_a_layer_of_the_wrong_shape_is_an_error(tiny, tmp_path):
    name, layer = next((n, m) for n, m in tiny.unet.named_modules() if n.endswith("attn2.to_k"))
    wrong = _write(tmp_path, "sdxl-style.safetensors",
                   _lora(f"lora_unet_{name.replace('.', '_')}", layer.out_features, 2048, rank=2),
                   {"ss_base_model_version": "sdxl_base_v1-0"})
    with pytest.raises(UnsupportedModelError, match=rf"^sdxl-style.safetensors: 1 LoRA module\(s\) do not fit "
                                                    rf"{tiny.name} \(an sdxl LoRA\? the model is sd1\): "
                                                    rf"unet:{name.replace('.', '[.]')} \(32, 2048\) does not fit "
                                                    rf"\(32, 32\)$"):
        patcher_for(tiny).apply([LoraWeight(load_lora(wrong))])


def test_merge_formulas_in_half_precision_with_kohya_dora(tmp_path_factory):
    """fp16 weights get (W + Σ sᵢΔᵢ) summed in float32 and cast once; a LyCORIS dora_scale (one
    magnitude per input column) rescales W + ΔW, and the strength scales the difference to W."""
    from tiny_models import build_sd

    from inference.loader import load_model

    model = load_model(build_sd(tmp_path_factory.mktemp("lora_fp16")), dtype="float16")
    linear_name, linear = next((n, m) for n, m in model.unet.named_modules() if n.endswith("attn1.to_q"))
    conv_name, conv = next((n, m) for n, m in model.unet.named_modules() if n.endswith("in_layers.2"))
    g = torch.Generator().manual_seed(4)
    lin = {"down": torch.randn(2, linear.in_features, generator=g), "up": torch.randn(linear.out_features, 2, generator=g)}
    cnv = {"down": torch.randn(3, conv.in_channels, 3, 3, generator=g), "up": torch.randn(conv.out_channels, 3, 1, 1, generator=g)}
    magnitude = torch.rand(1, linear.in_features, generator=g) + 0.5
    tensors = {}
    for name, factors, alpha in ((linear_name, lin, 1.0), (conv_name, cnv, 6.0)):
        key = f"lora_unet_{name.replace('.', '_')}"
        tensors.update({f"{key}.lora_down.weight": factors["down"], f"{key}.lora_up.weight": factors["up"],
                        f"{key}.alpha": torch.tensor(alpha)})
    tensors[f"lora_unet_{linear_name.replace('.', '_')}.dora_scale"] = magnitude
    path = tmp_path_factory.mktemp("lora_fp16_file") / "dora.safetensors"
    save_tensors(tensors, path)
    base_linear, base_conv = linear.weight.float().clone(), conv.weight.float().clone()
    patcher_for(model).apply([LoraWeight(load_lora(path), 0.6)])
    assert linear.weight.dtype == conv.weight.dtype == torch.float16
    expected_conv = base_conv + 0.6 * 2.0 * torch.einsum("or,rihw->oihw", cnv["up"][:, :, 0, 0], cnv["down"])
    assert torch.equal(conv.weight, expected_conv.half())
    patched = base_linear + 0.5 * lin["up"] @ lin["down"]
    decomposed = patched * (magnitude / patched.norm(dim=0, keepdim=True))
    assert torch.allclose(linear.weight.float(), (base_linear + 0.6 * (decomposed - base_linear)).half().float(),
                          atol=1e-3, rtol=0)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    patcher_for(model).clear()
    assert torch.equal(conv.weight.float(), base_conv) and torch.equal(linear.weight.float(), base_linear)


def test_a_failure_while_merging_leaves_the_base_model(tiny, tmp_path, monkeypatch):
    from inference.lora import apply as lora_apply

    lora = load_lora(_tiny_lora(tiny, tmp_path, "fails.safetensors"))
    before = {name: p for name, p in tiny.unet.named_parameters()}
    calls = []

    def flaky(out, original, parts):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("out of memory")
        return real(out, original, parts)

    real = lora_apply._merge_into
    monkeypatch.setattr(lora_apply, "_merge_into", flaky)
    with pytest.raises(RuntimeError, match="out of memory"):
        patcher_for(tiny).apply([LoraWeight(lora)])
    assert not patcher_for(tiny).active
    assert all(p is before[name] for name, p in tiny.unet.named_parameters())
