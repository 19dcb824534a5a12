"""Recognising models the engine does not run, to refuse them by name (torch-free).

People download FLUX, SD3, PixArt, Stable Cascade, Kolors… files and point the editor at them.
Without this, they would fail deep inside detection with "weights do not fit" or "no UNet input
convolution", which says nothing useful. Each entry names a model type by a key only its
checkpoints carry (diffusers' `CHECKPOINT_KEY_NAMES` and the published checkpoints), with or
without the `model.diffusion_model.` prefix of ComfyUI/A1111 exports.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from .errors import UnsupportedModelError

_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "model.", "unet.", "transformer.")

# (what to call it, keys that identify it) — checked in order; the first hit names the model.
FOREIGN_MODELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("FLUX.2", ("single_stream_modulation.lin.weight",)),
    ("Chroma (FLUX-based)", ("distilled_guidance_layer.in_proj.bias",)),
    ("FLUX.1", ("double_blocks.0.img_attn.norm.key_norm.scale", "double_blocks.0.img_attn.qkv.weight")),
    ("Stable Diffusion 3/3.5 (MMDiT)", ("joint_blocks.0.context_block.adaLN_modulation.1.bias",
                                        "joint_blocks.0.x_block.attn.qkv.weight")),
    ("Stable Cascade stage C", ("clip_txt_mapper.weight",)),
    ("Stable Cascade stage B", ("down_blocks.1.0.channelwise.0.weight",)),
    ("PixArt", ("y_embedder.y_proj.fc1.weight", "adaln_single.linear.weight")),
    ("Sana/PixArt-style DiT", ("blocks.0.cross_attn.q_linear.weight",)),
    ("AuraFlow", ("double_layers.0.attn.w2q.weight", "cond_seq_linear.weight")),
    ("Hunyuan-DiT", ("mlp_t5.0.weight", "text_embedding_padding")),
    ("HunyuanVideo", ("txt_in.individual_token_refiner.blocks.0.adaLN_modulation.1.bias",)),
    ("HiDream", ("double_stream_blocks.0.block.adaLN_modulation.1.bias",)),
    ("Lumina 2", ("cap_embedder.0.weight",)),
    ("Wan (video)", ("head.modulation",)),
    ("Mochi (video)", ("blocks.0.attn.qkv_x.weight",)),
    ("LTX-Video", ("patchify_proj.weight",)),
    ("Qwen-Image", ("txt_in.text_norm.weight", "txt_norm.weight")),
    ("Kolors (ChatGLM text encoder)", ("encoder_hid_proj.weight",
                                       "text_encoder.transformer.embedding.word_embeddings.weight")),
    ("ControlNet (not a base model)", ("control_model.time_embed.0.weight", "controlnet_cond_embedding.conv_in.weight")),
    ("AnimateDiff motion module (not a base model)",
     ("down_blocks.0.motion_modules.0.temporal_transformer.norm.weight", "mid_block.motion_modules.0.temporal_transformer.norm.bias")),
)

# diffusers pipeline classes (model_index.json `_class_name`) the engine runs, and the ones among
# them that only share the name (other networks or extra inputs: MMDiT, upscalers, depth, unCLIP).
SUPPORTED_PIPELINE_PREFIXES = ("StableDiffusion", "LatentConsistencyModel")
UNSUPPORTED_PIPELINE_PREFIXES = ("StableDiffusion3", "StableDiffusionUpscale", "StableDiffusionLatentUpscale",
                                 "StableDiffusionDepth2Img", "StableUnCLIP", "StableDiffusionUnCLIP")


def _unprefixed(keys: Iterable[str]) -> set[str]:
    found = set()
    for key in keys:
        found.add(key)
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                found.add(key[len(prefix):])
    return found


def foreign_model(shapes: Mapping[str, tuple[int, ...]]) -> str | None:
    """The name of the non-Stable-Diffusion model type these keys belong to, or None."""
    keys = _unprefixed(shapes)
    for name, markers in FOREIGN_MODELS:
        if any(marker in keys for marker in markers):
            return name
    adm = shapes.get("model.diffusion_model.label_emb.0.0.weight") or shapes.get("add_embedding.linear_1.weight")
    if adm is not None and len(adm) == 2 and adm[1] == 5632:  # Kolors' 4096-wide ChatGLM pooled + time ids
        return "Kolors (ChatGLM text encoder)"
    return None


def refuse_foreign(shapes: Mapping[str, tuple[int, ...]], source: str) -> None:
    """One line naming the model type when a file is not a Stable Diffusion model."""
    name = foreign_model(shapes)
    if name is not None:
        raise UnsupportedModelError(f"{source}: a {name} checkpoint, not a Stable Diffusion 1.x/2.x/XL model "
                                    "(the only single files this loader runs)")


def refuse_foreign_pipeline(index: Mapping, source: str) -> None:
    """Same for a diffusers folder, by its pipeline class (KolorsPipeline, FluxPipeline, PixArt…)."""
    pipeline_class = index.get("_class_name", "")
    if not isinstance(pipeline_class, str) or not pipeline_class:
        return
    if not pipeline_class.startswith(SUPPORTED_PIPELINE_PREFIXES) or pipeline_class.startswith(
            UNSUPPORTED_PIPELINE_PREFIXES):
        raise UnsupportedModelError(f"{source}: {pipeline_class} models are not supported by this loader "
                                    "(it runs Stable Diffusion 1.x/2.x/XL pipelines)")
