"""Tiny random-weight Stable Diffusion pipelines in the real diffusers layouts, built offline.

They are the oracle fixtures: diffusers + transformers run them as the reference, our engine
loads the same folders. Sizes are small enough to run dozens of generations in seconds.
"""
from __future__ import annotations

from pathlib import Path

import torch

from inference.registry import SD_SCHEDULER, SDXL_SCHEDULER
from inference.tokenizer import CLIPTokenizer

TEXT_WIDTH = 32


def _text_config(act: str, projection: bool = False):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(vocab_size=49408, hidden_size=TEXT_WIDTH, intermediate_size=48, num_hidden_layers=3,
                          num_attention_heads=4, max_position_embeddings=77, hidden_act=act,
                          projection_dim=TEXT_WIDTH if projection else 512, bos_token_id=49406,
                          eos_token_id=49407, pad_token_id=1)


def _vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=(16, 16, 32, 32), down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=1, norm_num_groups=8,
                         latent_channels=4, sample_size=64)


def _tokenizer_folder(root: Path, name: str, pad_id: int) -> Path:
    return CLIPTokenizer.default(pad_token_id=pad_id).write_folder(root / name)


def build_sd(root: Path, *, kind: str = "sd1", in_channels: int = 4, seed: int = 0,
             time_cond_proj_dim: int | None = None) -> Path:
    """kind: "sd1" (CLIP-L style, eps, conv projections) or "sd2" (OpenCLIP style, v, linear).
    `time_cond_proj_dim`: an LCM-distilled UNet (guidance embedding), saved as a
    LatentConsistencyModelPipeline with an LCMScheduler, like SimianLuo/LCM_Dreamshaper_v7."""
    from diffusers import (LatentConsistencyModelPipeline, LCMScheduler, PNDMScheduler, StableDiffusionInpaintPipeline, StableDiffusionInstructPix2PixPipeline,
                           StableDiffusionPipeline, UNet2DConditionModel)
    from transformers import CLIPTextModel, CLIPTokenizer as HFTokenizer

    torch.manual_seed(seed)
    sd2 = kind == "sd2"
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=in_channels, out_channels=4, block_out_channels=(32, 64), layers_per_block=2 if not sd2 else 1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TEXT_WIDTH, attention_head_dim=(2, 4) if sd2 else 4, norm_num_groups=8,
        use_linear_projection=sd2, upcast_attention=sd2, time_cond_proj_dim=time_cond_proj_dim)
    text_encoder = CLIPTextModel(_text_config("gelu" if sd2 else "quick_gelu"))
    folder = root / f"{kind}-{in_channels}ch{'-lcm' if time_cond_proj_dim else ''}"
    tok_dir = _tokenizer_folder(root / "tok", kind, 0 if sd2 else 49407)
    tokenizer = HFTokenizer.from_pretrained(tok_dir)
    scheduler_cfg = dict(SD_SCHEDULER)
    scheduler_cfg.pop("_class_name")
    if sd2:
        scheduler_cfg["prediction_type"] = "v_prediction"
    scheduler = (LCMScheduler if time_cond_proj_dim else PNDMScheduler).from_config(scheduler_cfg)
    cls = {9: StableDiffusionInpaintPipeline, 8: StableDiffusionInstructPix2PixPipeline}.get(in_channels, StableDiffusionPipeline)
    if time_cond_proj_dim:
        cls = LatentConsistencyModelPipeline
    pipe = cls(vae=_vae(), text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
               safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    _randomise_norms(pipe)
    if time_cond_proj_dim:  # default init makes the guidance input nearly invisible: strengthen it
        with torch.no_grad():
            pipe.unet.time_embedding.cond_proj.weight.mul_(20.0)
    pipe.save_pretrained(folder)
    return folder


def build_sdxl(root: Path, *, in_channels: int = 4, seed: int = 0, unet_overrides: dict | None = None,
               name: str | None = None, vae_overrides: dict | None = None) -> Path:
    """`unet_overrides`: UNet2DConditionModel arguments replacing the defaults below (pruned layouts);
    `vae_overrides`: VAE config values (Playground v2.5's latents_mean/latents_std/scaling_factor)."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLInpaintPipeline, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer as HFTokenizer

    torch.manual_seed(seed)
    unet_args = dict(
        sample_size=8, in_channels=in_channels, out_channels=4, block_out_channels=(32, 64), layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=2 * TEXT_WIDTH, attention_head_dim=(2, 4), transformer_layers_per_block=(1, 2),
        norm_num_groups=8, use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=TEXT_WIDTH + 6 * 256)
    unet = UNet2DConditionModel(**dict(unet_args, **(unet_overrides or {})))
    text_encoder = CLIPTextModel(_text_config("quick_gelu"))
    text_encoder_2 = CLIPTextModelWithProjection(_text_config("gelu", projection=True))
    tok1 = HFTokenizer.from_pretrained(_tokenizer_folder(root / "tok", "xl1", 49407))
    tok2 = HFTokenizer.from_pretrained(_tokenizer_folder(root / "tok", "xl2", 0))
    cfg = dict(SDXL_SCHEDULER)
    cfg.pop("_class_name")
    vae = _vae()
    vae.register_to_config(**dict({"scaling_factor": 0.13025}, **(vae_overrides or {})))
    cls = StableDiffusionXLInpaintPipeline if in_channels == 9 else StableDiffusionXLPipeline
    pipe = cls(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tok1, tokenizer_2=tok2,
               unet=unet, scheduler=EulerDiscreteScheduler.from_config(cfg))
    _randomise_norms(pipe)
    folder = root / (name or f"sdxl-{in_channels}ch")
    pipe.save_pretrained(folder)
    return folder


def _randomise_norms(pipe) -> None:
    """Default inits leave norms at 1/0 and some biases at 0, which hides naming mistakes; perturb them."""
    generator = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for module in (pipe.unet, pipe.vae):
            for name, param in module.named_parameters():
                if param.dim() == 1:
                    param.add_(0.1 * torch.randn(param.shape, generator=generator))



def shard_folder(folder: Path, out: Path, *, variant: str | None = "fp16", shard_size: str = "200KB") -> Path:
    """A copy of a tiny SD1/SD2 pipeline folder as large models are published: the UNet in fp16
    shards with an index (`diffusion_pytorch_model.safetensors.index.fp16.json`), the VAE as an
    fp16 variant file, the text encoder in fp32 shards (`model.safetensors.index.json`)."""
    import shutil

    import diffusers
    import transformers

    shutil.copytree(folder, out)
    for component in ("unet", "vae", "text_encoder"):
        for weights in (out / component).glob("*.safetensors"):
            weights.unlink()
    dtype = torch.float16 if variant == "fp16" else torch.bfloat16 if variant == "bf16" else torch.float32
    unet = diffusers.UNet2DConditionModel.from_pretrained(folder / "unet").to(dtype)
    unet.save_pretrained(out / "unet", max_shard_size=shard_size, variant=variant)
    diffusers.AutoencoderKL.from_pretrained(folder / "vae").to(dtype).save_pretrained(out / "vae", variant=variant)
    text = transformers.CLIPTextModel.from_pretrained(folder / "text_encoder")
    text.save_pretrained(out / "text_encoder", max_shard_size="100KB")
    return out


def max_difference_vs_diffusers(pipe, ours, request, **kwargs) -> int:
    """Render `request` with our Pipeline and with a diffusers pipeline (same seed); the largest
    per-channel pixel difference. Refuses a flat reference, which would prove nothing."""
    import numpy as np

    pipe.set_progress_bar_config(disable=True)
    args = dict(prompt=request.prompt, num_inference_steps=request.steps, guidance_scale=request.guidance,
                generator=torch.Generator().manual_seed(request.seed), output_type="pil",
                width=request.width, height=request.height)
    if request.negative_prompt:
        args["negative_prompt"] = request.negative_prompt
    args.update(kwargs)
    reference = np.asarray(pipe(**args).images[0]).astype(np.int16)
    mine = ours.generate(request).image.astype(np.int16)
    assert reference.shape == mine.shape
    assert reference.std() > 5, "degenerate reference image"
    return int(np.abs(reference - mine).max())
