"""Helpers for the FLUX single-file / GGUF / fp8 tests: GGUF writing with real or random-but-valid
GGML blocks, and a ComfyUI-style library (transformer + ae + clip_l + t5) made from a tiny folder."""
from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
import torch

# Types `gguf.quants.quantize` implements; the K-quants it only decodes get random valid blocks.
QUANTIZABLE = ("Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1")
# Offsets of the f16 scale fields inside a block (set to small finite values in random blocks).
_F16_FIELDS = {"Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,)}


def ggml_type(name: str):
    import gguf

    return gguf.GGMLQuantizationType[name]


def random_blocks(rows: int, cols: int, qtype: str, seed: int = 0) -> np.ndarray:
    """(rows, cols/256·type_size) uint8 blocks: random bits, the f16 scales in a range that
    gives weights of magnitude ~0.05."""
    import gguf

    block, size = gguf.GGML_QUANT_SIZES[ggml_type(qtype)]
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(rows * cols // block, size), dtype=np.uint8)
    for offset in _F16_FIELDS[qtype]:
        scale = rng.uniform(2e-5, 1e-4 if qtype != "Q6_K" else 2e-3, size=blocks.shape[0]).astype(np.float16)
        blocks[:, offset:offset + 2] = scale.view(np.uint8).reshape(-1, 2)
    return blocks.reshape(rows, -1)


def encode(values: np.ndarray, qtype: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(what goes in the GGUF file, the float32 values it decodes to)."""
    import gguf

    values = np.ascontiguousarray(values, dtype=np.float32)
    if qtype == "F32":
        return values, values
    if qtype == "F16":
        half = values.astype(np.float16)
        return half, half.astype(np.float32)
    if qtype == "BF16":
        bf = torch.from_numpy(values).to(torch.bfloat16)
        return bf.view(torch.int16).numpy(), bf.float().numpy()
    if qtype in QUANTIZABLE:
        blocks = gguf.quants.quantize(values, ggml_type(qtype))
    else:
        blocks = random_blocks(values.shape[0], values.shape[1], qtype, seed)
    decoded = gguf.quants.dequantize(blocks, ggml_type(qtype)).reshape(values.shape).astype(np.float32)
    return blocks, decoded


def write_gguf(path: Path, tensors: Mapping[str, tuple[np.ndarray, str]], *, architecture: str = "flux",
               metadata: Mapping[str, object] | None = None) -> Path:
    """`tensors`: name → (data from `encode`, GGML type name)."""
    import gguf

    writer = gguf.GGUFWriter(str(path), architecture)
    for key, value in (metadata or {}).items():
        if isinstance(value, list):
            writer.add_array(key, value)
        else:
            writer.add_string(key, str(value))
    for name, (data, qtype) in tensors.items():
        if qtype in ("F32", "F16"):
            writer.add_tensor(name, data)
        else:
            writer.add_tensor(name, data, raw_shape=data.shape, raw_dtype=ggml_type(qtype))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def gguf_from_state(path: Path, state: Mapping[str, torch.Tensor], choose, *, prefix: str = "",
                    metadata: Mapping[str, object] | None = None) -> dict[str, torch.Tensor]:
    """Write `state` as GGUF, each tensor in the type `choose(name, tensor)` returns; return the
    float32 state dict the file decodes to (the reference weights)."""
    tensors, decoded = {}, {}
    for i, (name, tensor) in enumerate(state.items()):
        qtype = choose(name, tensor)
        data, values = encode(tensor.float().numpy(), qtype, seed=i)
        tensors[prefix + name] = (data, qtype)
        decoded[name] = torch.from_numpy(np.array(values)).reshape(tensor.shape)
    write_gguf(path, tensors, metadata=metadata)
    return decoded


def comfy_library(root: Path, folder: Path, transformer_state: Mapping[str, torch.Tensor], *,
                  name: str = "flux1-dev-tiny.safetensors", clip_prefix: str = "",
                  tokenizers: bool = True) -> dict[str, Path]:
    """A ComfyUI `models/` tree from a tiny diffusers FLUX folder: the transformer in BFL keys under
    `model.diffusion_model.` in models/unet/, ae (LDM keys = ours) in models/vae/, clip_l in
    models/clip/ (transformers keys, with the tiny CLIP's head width as metadata), t5 in
    models/text_encoders/ with the T5 tokenizer in models/text_encoders/tokenizer_2/."""
    from inference.flux.loader import load_flux_folder
    from inference.formats.safetensors_file import load_tensors, save_tensors

    models = root / "models"
    for sub in ("unet", "vae", "clip", "text_encoders"):
        (models / sub).mkdir(parents=True, exist_ok=True)
    model = load_flux_folder(folder)
    paths = {"transformer": models / "unet" / name, "ae": models / "vae" / "ae.safetensors",
             "clip_l": models / "clip" / "clip_l.safetensors", "t5": models / "text_encoders" / "t5xxl_fp16.safetensors"}
    save_tensors({f"model.diffusion_model.{k}": v.contiguous() for k, v in transformer_state.items()},
                 paths["transformer"], metadata={"canvasai.rope_axes": "4,6,6"})  # the tiny heads' axes
    save_tensors({k: v.contiguous() for k, v in model.vae.state_dict().items()}, paths["ae"],
                 metadata={"canvasai.norm_groups": "8"})  # the tiny VAE's GroupNorm groups (FLUX's: 32)
    clip = load_tensors(folder / "text_encoder" / "model.safetensors")
    save_tensors({clip_prefix + k: v for k, v in clip.items()}, paths["clip_l"],
                 metadata={"canvasai.text_head_dim": "8"})
    shutil.copy(folder / "text_encoder_2" / "model.safetensors", paths["t5"])
    if tokenizers:
        shutil.copytree(folder / "tokenizer_2", models / "text_encoders" / "tokenizer_2")
    return paths


@pytest.fixture(scope="session")
def tiny_dev_folder(tmp_path_factory) -> Path:
    """One tiny dev-like FLUX folder for the single-file, GGUF and fp8 image tests (import the
    fixture into the test module to use it)."""
    from flux_models import build_flux

    return build_flux(tmp_path_factory.mktemp("flux_files"), dev=True, seed=4)
