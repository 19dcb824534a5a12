"""GGUF FLUX transformers (city96 / ComfyUI-GGUF layout): torch block decoding against the `gguf`
package's numpy reference, quantised weights kept compressed and decoded per layer, detection,
and hostile files (one line naming the file; exit code 2 from the CLI's inspect).

Tolerances: the torch decoders equal numpy's bit for bit (both compute d·q in float32); the
transformer output from GGUF equals the one from the decoded fp32 weights to 1e-5 (measured
0 to ~1e-6: only summation order can differ); whole images to 1/255 (measured 0)."""
from __future__ import annotations

import struct

import numpy as np
import pytest
import torch
from _flux_files import (  # noqa: F401
    encode,
    ggml_type,
    gguf_from_state,
    random_blocks,
    tiny_dev_folder,
    write_gguf,
)

from inference.errors import ModelFormatError, UnsupportedModelError
from inference.flux.config import FluxConfig
from inference.flux.gguf import QUANTISED, read_gguf
from inference.flux.loader import load_bfl_transformer
from inference.flux.quant import BLOCKS, CompressedLinear, dequantize
from inference.flux.sampling import image_ids, text_ids
from inference.flux.single_file import load_flux_single_file
from inference.flux.transformer import FluxTransformer

gguf = pytest.importorskip("gguf")

# hidden 256: every matrix has rows of whole 256-value K-quant blocks.
CONFIG = FluxConfig(in_channels=64, out_channels=64, vec_in_dim=32, context_in_dim=256, hidden_size=256,
                    mlp_ratio=2.0, num_heads=2, depth=1, depth_single_blocks=1, axes_dim=(16, 56, 56),
                    guidance_embed=True)
# Every type a city96 FLUX file uses, over the layers (the rest: F32 vectors).
TYPES = {"double_blocks.0.img_attn.qkv.weight": "Q4_K", "double_blocks.0.txt_attn.qkv.weight": "Q5_K",
         "double_blocks.0.img_mlp.0.weight": "Q4_0", "double_blocks.0.img_mlp.2.weight": "Q6_K",
         "double_blocks.0.txt_mlp.0.weight": "Q5_0", "double_blocks.0.txt_mlp.2.weight": "Q4_1",
         "single_blocks.0.linear1.weight": "Q5_1", "single_blocks.0.linear2.weight": "Q8_0",
         "img_in.weight": "BF16", "final_layer.linear.weight": "F16"}


def _choose(name: str, tensor: torch.Tensor) -> str:
    if name in TYPES:
        return TYPES[name]
    return "Q8_0" if tensor.dim() == 2 and tensor.shape[1] % 32 == 0 else "F32"


def _random_model(seed: int = 0) -> FluxTransformer:
    torch.manual_seed(seed)
    model = FluxTransformer(CONFIG)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(0.05 * torch.randn_like(param))
    return model.eval()


def _inputs(guidance: bool = True):
    g = torch.Generator().manual_seed(5)
    return (torch.randn(1, 12, 64, generator=g), image_ids(3, 4), torch.randn(1, 5, 256, generator=g), text_ids(5),
            torch.tensor([0.6]), torch.randn(1, 32, generator=g), torch.tensor([3.5]) if guidance else None)


@pytest.mark.parametrize("qtype", sorted(BLOCKS))
def test_torch_decoders_equal_gguf_numpy(qtype):
    block, size = BLOCKS[qtype]
    assert gguf.GGML_QUANT_SIZES[ggml_type(qtype)] == (block, size)
    rows, cols = 6, 2 * 256
    if qtype in ("Q4_K", "Q5_K", "Q6_K"):
        blocks = random_blocks(rows, cols, qtype, seed=1)
    else:
        blocks = gguf.quants.quantize(np.random.default_rng(2).standard_normal((rows, cols)).astype(np.float32),
                                      ggml_type(qtype))
        blocks[0, size:2 * size] = np.random.default_rng(3).integers(0, 256, size, dtype=np.uint8)  # raw bits
        blocks[0, size:size + 2] = np.array([0.01], np.float16).view(np.uint8)
    expected = gguf.quants.dequantize(blocks, ggml_type(qtype)).reshape(rows, cols)
    got = dequantize(torch.from_numpy(blocks), qtype, (rows, cols))
    assert got.dtype == torch.float32 and torch.equal(got, torch.from_numpy(expected))
    assert dequantize(torch.from_numpy(blocks), qtype, (rows, cols), torch.bfloat16).dtype == torch.bfloat16


def test_reader_covers_exactly_the_decoders():
    assert set(QUANTISED) == set(BLOCKS)


def test_gguf_transformer_equals_the_decoded_fp32_weights(tmp_path):
    model = _random_model()
    path = tmp_path / "flux1-tiny-Q4_K.gguf"
    decoded = gguf_from_state(path, model.state_dict(), _choose, prefix="model.diffusion_model.")
    report: dict = {}
    loaded = load_bfl_transformer(path, dtype=torch.float32, report=report)
    assert loaded.config == CONFIG
    layer = loaded.double_blocks[0].img_attn.qkv
    assert isinstance(layer, CompressedLinear) and layer.qtype == "Q4_K" and layer.qweight.dtype == torch.uint8
    assert layer.qweight.numel() == 768 * 256 // 256 * 144  # still 4.5 bits a weight in memory
    assert isinstance(loaded.img_in, CompressedLinear) is False  # BF16/F16 small tensors: plain
    counts = report["compressed_layers"]["transformer"]
    assert counts["Q4_K"] == counts["Q5_K"] == counts["Q6_K"] == 1 and counts["Q8_0"] >= 5
    with torch.device("meta"):
        reference = FluxTransformer(CONFIG)
    reference.load_state_dict(decoded, strict=True, assign=True)
    with torch.no_grad():
        got, expected = loaded(*_inputs()), reference.eval()(*_inputs())
    assert expected.abs().mean() > 0.01
    assert (got - expected).abs().max() < 1e-5
    # bf16 compute: blocks decoded straight to bf16 per call = the decoded weights cast to bf16
    # (measured equal; random weights make bf16 itself drift ~1 from fp32, so compare like with like).
    half = load_bfl_transformer(path, dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16 and half.double_blocks[0].img_attn.qkv.qweight.dtype == torch.uint8
    with torch.no_grad():
        assert (half(*_inputs()).float() - reference.to(torch.bfloat16)(*_inputs()).float()).abs().max() < 1e-2


def test_gguf_image_equals_the_decoded_weights_image(tmp_path, tiny_dev_folder):  # noqa: F811 - the fixture
    """Through the whole tiny FLUX dev pipeline: transformer from GGUF (Q8_0/Q4_0 on the 32-wide
    layers, Q4_K/Q5_K on the 256-wide time and guidance embedders) vs from its decoded fp32 values."""
    from inference.api import GenerationRequest
    from inference.flux.loader import load_flux_folder
    from inference.flux.pipeline import FluxPipeline
    from inference.formats.safetensors_file import save_tensors

    folder = tiny_dev_folder
    state = load_flux_folder(folder).transformer.state_dict()
    kinds = {"time_in.in_layer.weight": "Q4_K", "guidance_in.in_layer.weight": "Q5_K"}

    def choose(name, tensor):
        if name in kinds:
            return kinds[name]
        return ("Q4_0" if "mlp" in name else "Q8_0") if tensor.dim() == 2 and tensor.shape[1] % 32 == 0 else "F32"

    decoded = gguf_from_state(tmp_path / "flux1-tiny.gguf", state, choose)
    save_tensors(decoded, tmp_path / "decoded.safetensors")
    request = GenerationRequest(prompt="a lighthouse", seed=3, steps=2, guidance=3.5, width=64, height=64)
    images = [FluxPipeline(load_flux_folder(folder, transformer_path=tmp_path / name)).generate(request).image
              for name in ("flux1-tiny.gguf", "decoded.safetensors")]
    diff = np.abs(images[0].astype(int) - images[1].astype(int)).max()
    assert diff <= 1, diff


def test_gguf_detection_and_inspection(tmp_path):
    from inference.flux.file_info import inspect_flux_file
    from inference.model_info import read_model_info

    gguf_from_state(tmp_path / "flux1-dev-Q4_K_S.gguf", _random_model().state_dict(), _choose)
    info = read_model_info(tmp_path / "flux1-dev-Q4_K_S.gguf")
    assert info.family.startswith("flux1") and info.format == "gguf" and info.unet_in_channels == 64
    assert info.kind == "unet" and "ae" in info.warnings[0]  # no companions beside it: not runnable alone
    assert {"Q4_K", "Q5_K", "Q6_K", "Q8_0", "Q4_0", "F32", "F16", "BF16"} <= set(info.dtypes)
    report = inspect_flux_file(tmp_path / "flux1-dev-Q4_K_S.gguf")
    assert report["quantization"]["Q4_K"] == 1 and report["quantization"]["F32"] > 5
    assert report["gguf_architecture"] == "flux" and report["transformer_config"]["hidden_size"] == 256


def test_cli_inspect_reports_a_gguf_transformer(tmp_path, capsys):
    import json

    from inference.cli import main

    gguf_from_state(tmp_path / "flux1-dev-Q4_K_S.gguf", _random_model().state_dict(), _choose)
    assert main(["inspect", str(tmp_path / "flux1-dev-Q4_K_S.gguf")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["quantization"]["Q8_0"] >= 1 and report["gguf_architecture"] == "flux"


# ----------------------------------------------------------------------------- hostile files
def _small_gguf(path, name="double_blocks.0.img_attn.qkv.weight", arch="flux"):
    data, _ = encode(np.ones((4, 64), np.float32), "Q8_0")
    return write_gguf(path, {name: (data, "Q8_0"), "img_in.weight": (np.ones((4, 64), np.float32), "F32")},
                      architecture=arch)


def _patch_type(path, name: str, type_id: int) -> None:
    raw = bytearray(path.read_bytes())
    at = raw.index(name.encode()) + len(name)
    n_dims = struct.unpack_from("<I", raw, at)[0]
    struct.pack_into("<I", raw, at + 4 + 8 * n_dims, type_id)
    path.write_bytes(bytes(raw))


def _hostile(tmp_path, case: str):
    path = tmp_path / f"{case}.gguf"
    _small_gguf(path)
    raw = path.read_bytes()
    if case == "truncated":
        path.write_bytes(raw[: len(raw) - 40])
    elif case == "header_cut":
        path.write_bytes(raw[:30])
    elif case == "magic":
        path.write_bytes(b"GGML" + raw[4:])
    elif case == "unknown_type":
        _patch_type(path, "img_in.weight", 250)
    elif case == "undecoded_type":
        _patch_type(path, "img_in.weight", int(ggml_type("IQ2_XXS")))
    elif case == "not_flux":
        _small_gguf(path, name="blk.0.attn_q.weight", arch="llama")
    return path


@pytest.mark.parametrize("case,error,words", [
    ("truncated", ModelFormatError, "truncated"), ("header_cut", ModelFormatError, "GGUF"),
    ("magic", ModelFormatError, "magic"), ("unknown_type", ModelFormatError, "GGUF"),
    ("undecoded_type", ModelFormatError, "IQ2_XXS"), ("not_flux", UnsupportedModelError, "llama")])
def test_hostile_gguf_files_are_one_line_errors(tmp_path, capsys, case, error, words):
    from inference.cli import main

    path = _hostile(tmp_path, case)
    with pytest.raises((ModelFormatError, UnsupportedModelError)) as caught:
        load_bfl_transformer(path)
    message = str(caught.value)
    assert isinstance(caught.value, error) and "\n" not in message and path.name in message, message
    assert words.lower() in message.lower(), message
    assert main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and path.name in err and words.lower() in err.lower(), err
    with pytest.raises(error, match=path.name):  # the engine's route: the same line
        load_flux_single_file(path)


def test_gguf_shape_mismatch_names_the_tensor(tmp_path):
    model = _random_model()
    state = dict(model.state_dict())
    state["double_blocks.0.img_mlp.2.weight"] = state["double_blocks.0.img_mlp.2.weight"][:, :256]
    path = tmp_path / "flux1-bad.gguf"
    gguf_from_state(path, state, lambda name, t: "Q8_0" if t.dim() == 2 else "F32")
    with pytest.raises(ModelFormatError, match=r"flux1-bad\.gguf: transformer weights do not fit.*img_mlp\.2"):
        load_bfl_transformer(path)


def test_orig_shape_metadata_is_checked(tmp_path):
    path = tmp_path / "bad-shape.gguf"
    data, _ = encode(np.ones((4, 64), np.float32), "Q8_0")
    write_gguf(path, {"double_blocks.0.img_attn.qkv.weight": (data, "Q8_0")},
               metadata={"comfy.gguf.orig_shape.double_blocks.0.img_attn.qkv.weight": [3, 7]})
    with pytest.raises(ModelFormatError, match="bad-shape.gguf: .*orig_shape"):
        read_gguf(path)
