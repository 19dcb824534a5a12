"""`python -m inference bench`: latency of the engine's hot paths, optionally against diffusers.

Cases use random weights in the real architectures (speed does not depend on the values) and
the house model when it is installed. Each case reports the median and p90 of ≥ 20 timed runs
after warm-up; `--compare diffusers` times diffusers' pipeline on the same weights, settings and
device in the same run and reports `ratio_vs_diffusers` = diffusers ÷ ours (> 1: we are faster).
"""
from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from . import convert
from .bench_farm import bench_farm_batch
from .loader import DiffusionModel, TextEncoder
from .models.clip_text import CLIPTextConfig, CLIPTextModel
from .models.taesd import TAESD
from .models.unet import UNetConfig, UNetModel
from .models.vae import AutoencoderKL, VAEConfig
from .pipeline import GenerationRequest, Pipeline
from .registry import family_by_name
from .tokenizer import CLIPTokenizer

TURBO_SCHEDULER = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
                   "num_train_timesteps": 1000, "prediction_type": "epsilon", "timestep_spacing": "trailing",
                   "steps_offset": 1}

# Published architectures, as diffusers configs (so --compare can build the same models there).
SD21_UNET = dict(block_out_channels=(320, 640, 1280, 1280), attention_head_dim=(5, 10, 20, 20), cross_attention_dim=1024,
                 use_linear_projection=True, upcast_attention=True, layers_per_block=2, sample_size=64)
SDXL_UNET = dict(block_out_channels=(320, 640, 1280), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), transformer_layers_per_block=(1, 2, 10),
                 attention_head_dim=(5, 10, 20), cross_attention_dim=2048, use_linear_projection=True, layers_per_block=2,
                 addition_embed_type="text_time", addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816,
                 sample_size=128)
SD_VAE = dict(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
              up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4, sample_size=512)
CLIP_L = CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)
OPEN_CLIP_H = CLIPTextConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16,
                             hidden_act="gelu")
BIG_G = CLIPTextConfig(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
                       hidden_act="gelu", projection_dim=1280)


@dataclass
class CaseResult:
    name: str
    device: str
    dtype: str
    resolution: str
    steps: int
    median_ms: float
    p90_ms: float
    runs: int
    diffusers_median_ms: float | None = None
    ratio_vs_diffusers: float | None = None
    max_pixel_diff: int | None = None  # /255, ours vs diffusers' image (FLUX cases with --compare)
    note: str = ""

    def to_json(self) -> dict:
        data = dict(vars(self))
        return {k: v for k, v in data.items() if v is not None and v != ""}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device, runs: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - start) * 1000.0)
    return times


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def _random_fill(module: torch.nn.Module, device: torch.device, dtype: torch.dtype, seed: int = 0) -> torch.nn.Module:
    """Materialise a meta-built module with small random values directly on the device."""
    module = module.to_empty(device=device)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            values = torch.randn(param.shape, generator=generator) * 0.02
            param.copy_(values.to(device))
    return module.to(dtype).eval().requires_grad_(False)


def _build(factory, device, dtype, seed=0):
    with torch.device("meta"):
        module = factory()
    return _random_fill(module, device, dtype, seed)


def _from_diffusers(diffusers_module, our_factory, rename, device, dtype):
    """Build our module with exactly the diffusers module's weights (for --compare)."""
    state = rename(diffusers_module.state_dict())
    with torch.device("meta"):
        ours = our_factory()
    ours.load_state_dict(state, strict=True, assign=True)
    return ours.to(device=device, dtype=dtype).eval().requires_grad_(False)


@dataclass
class Architecture:
    name: str
    family: str
    unet: dict
    text: list[tuple[CLIPTextConfig, str]]  # (config, family text-encoder slot)


SD_TURBO = Architecture("sd-turbo", "sd2", SD21_UNET, [(OPEN_CLIP_H, "sd2")])
SDXL_TURBO = Architecture("sdxl-turbo", "sdxl", SDXL_UNET, [(CLIP_L, "sdxl"), (BIG_G, "sdxl")])


def _assemble(arch: Architecture, device: torch.device, dtype: torch.dtype, tiny_vae: bool, compare: bool,
              scheduler: dict):
    """Our DiffusionModel plus (when comparing) the diffusers modules holding the same weights."""
    family = family_by_name(arch.family)
    unet_config = convert.unet_config_from_diffusers(arch.unet)
    reference = {}
    if compare:
        import diffusers
        import transformers

        torch.manual_seed(0)
        d_unet = diffusers.UNet2DConditionModel(**arch.unet)
        unet = _from_diffusers(d_unet, lambda: UNetModel(unet_config), lambda sd: convert.unet_diffusers_to_ldm(sd, unet_config),
                               device, dtype)
        reference["unet"] = d_unet.to(device=device, dtype=dtype).eval()
        if tiny_vae:
            d_vae = diffusers.AutoencoderTiny()
            vae = _from_diffusers(d_vae, TAESD, convert.taesd_diffusers_to_ours, device, dtype)
        else:
            d_vae = diffusers.AutoencoderKL(**SD_VAE)
            vae_config = convert.vae_config_from_diffusers(d_vae.config)
            vae = _from_diffusers(d_vae, lambda: AutoencoderKL(vae_config),
                                  lambda sd: convert.vae_diffusers_to_ldm(sd, vae_config), device, dtype)
        reference["vae"] = d_vae.to(device=device, dtype=dtype).eval()
        texts = []
        for index, (config, _) in enumerate(arch.text):
            hf_config = transformers.CLIPTextConfig(
                hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
                num_hidden_layers=config.num_hidden_layers, num_attention_heads=config.num_attention_heads,
                hidden_act=config.hidden_act, projection_dim=config.projection_dim or 512)
            cls = transformers.CLIPTextModelWithProjection if config.projection_dim else transformers.CLIPTextModel
            hf_model = cls(hf_config)
            texts.append(_from_diffusers(hf_model, lambda c=config: CLIPTextModel(c), convert.hf_clip_state, device, dtype))
            reference[f"text_{index}"] = hf_model.to(device=device, dtype=dtype).eval()
    else:
        unet = _build(lambda: UNetModel(unet_config), device, dtype)
        if tiny_vae:
            vae = _build(TAESD, device, dtype, 1)
        else:
            vae_config = convert.vae_config_from_diffusers(SD_VAE)
            vae = _build(lambda: AutoencoderKL(vae_config), device, dtype, 1)
        texts = [_build(lambda c=config: CLIPTextModel(c), device, dtype, 2 + i) for i, (config, _) in enumerate(arch.text)]
    specs = family.text_encoders if arch.family != "sd2" else (replace(family.text_encoders[0], hidden_layer=-1),)
    encoders = [TextEncoder(spec, model, CLIPTokenizer.default(pad_token_id=spec.pad_token_id))
                for spec, model in zip(specs, texts)]
    model = DiffusionModel(name=arch.name, path=Path(arch.name), family=family, unet=unet, vae=vae,
                           text_encoders=encoders, scheduler_config=dict(scheduler),
                           prediction_type=scheduler.get("prediction_type", "epsilon"), dtype=dtype, device=device)
    return model, reference


def _preview_request(size: int) -> GenerationRequest:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    # One-step img2img as SD-Turbo does it: 2 steps at strength 0.5 = one UNet evaluation.
    return GenerationRequest(prompt="a photo of a cat", seed=1, steps=2, sampler="euler", timestep_spacing="trailing",
                             guidance=0.0, width=size, height=size, init_image=image, strength=0.5)


def _diffusers_preview(arch: Architecture, reference: dict, request: GenerationRequest, scheduler: dict, device):
    import diffusers
    from PIL import Image

    kwargs = dict(unet=reference["unet"], vae=reference["vae"], scheduler=diffusers.EulerDiscreteScheduler.from_config(scheduler))
    if arch.family == "sdxl":
        tokenizer = _hf_tokenizer(49407)
        pipe = diffusers.StableDiffusionXLImg2ImgPipeline(text_encoder=reference["text_0"], text_encoder_2=reference["text_1"],
                                                          tokenizer=tokenizer, tokenizer_2=_hf_tokenizer(0), **kwargs)
    else:
        pipe = diffusers.StableDiffusionImg2ImgPipeline(text_encoder=reference["text_0"], tokenizer=_hf_tokenizer(0),
                                                        safety_checker=None, feature_extractor=None,
                                                        requires_safety_checker=False, **kwargs)
    pipe.set_progress_bar_config(disable=True)
    image = Image.fromarray(request.init_image)
    with torch.no_grad():
        embeds = pipe.encode_prompt(request.prompt, device=device, num_images_per_prompt=1,
                                    do_classifier_free_guidance=False)
    if arch.family == "sdxl":
        prompt_kwargs = dict(prompt_embeds=embeds[0], pooled_prompt_embeds=embeds[2])
    else:
        prompt_kwargs = dict(prompt_embeds=embeds[0])

    def run():
        pipe(image=image, strength=request.strength, num_inference_steps=request.steps, guidance_scale=0.0,
             generator=torch.Generator().manual_seed(request.seed), output_type="np", **prompt_kwargs)

    return run


_TOKENIZER_DIRS: dict[int, Path] = {}


def _hf_tokenizer(pad_id: int):
    import tempfile

    import transformers

    if pad_id not in _TOKENIZER_DIRS:
        folder = Path(tempfile.mkdtemp(prefix="bench-tok-"))
        _TOKENIZER_DIRS[pad_id] = CLIPTokenizer.default(pad_token_id=pad_id).write_folder(folder)
    return transformers.CLIPTokenizer.from_pretrained(_TOKENIZER_DIRS[pad_id])


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def bench_preview(arch: Architecture, size: int, device, dtype, runs, warmup, compare) -> CaseResult:
    model, reference = _assemble(arch, device, dtype, tiny_vae=True, compare=compare, scheduler=TURBO_SCHEDULER)
    pipeline = Pipeline(model)
    request = _preview_request(size)
    times = time_call(lambda: pipeline.generate(request), device, runs, warmup)
    result = CaseResult(f"{arch.name}-preview", str(device), _dtype_name(dtype), f"{size}x{size}", 1,
                        statistics.median(times), _percentile(times, 90), runs,
                        note="1-step img2img (strength 0.5 of 2 trailing steps), TAESD encode+decode, prompt cached")
    if compare:
        reference_times = time_call(_diffusers_preview(arch, reference, request, TURBO_SCHEDULER, device), device,
                                    runs, warmup)
        _add_ratio(result, reference_times)
    return result


def bench_final(arch: Architecture, size: int, steps: int, device, dtype, runs, warmup, compare) -> CaseResult:
    scheduler = dict(TURBO_SCHEDULER, timestep_spacing="leading")
    model, reference = _assemble(arch, device, dtype, tiny_vae=False, compare=compare, scheduler=scheduler)
    pipeline = Pipeline(model)
    request = GenerationRequest(prompt="a castle on a hill", negative_prompt="blurry", seed=1, steps=steps,
                                sampler="euler", guidance=7.0, width=size, height=size)
    times = time_call(lambda: pipeline.generate(request), device, runs, warmup)
    result = CaseResult(f"{arch.name}-final", str(device), _dtype_name(dtype), f"{size}x{size}", steps,
                        statistics.median(times), _percentile(times, 90), runs, note="txt2img with CFG, full VAE decode")
    if compare:
        import diffusers

        cls = diffusers.StableDiffusionXLPipeline if arch.family == "sdxl" else diffusers.StableDiffusionPipeline
        extra = {} if arch.family == "sdxl" else dict(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        texts = ({"text_encoder": reference["text_0"], "text_encoder_2": reference["text_1"], "tokenizer": _hf_tokenizer(49407),
                  "tokenizer_2": _hf_tokenizer(0)} if arch.family == "sdxl"
                 else {"text_encoder": reference["text_0"], "tokenizer": _hf_tokenizer(0)})
        pipe = cls(unet=reference["unet"], vae=reference["vae"],
                   scheduler=diffusers.EulerDiscreteScheduler.from_config(scheduler), **texts, **extra)
        pipe.set_progress_bar_config(disable=True)
        reference_times = time_call(lambda: pipe(request.prompt, negative_prompt=request.negative_prompt,
                                                 num_inference_steps=steps, guidance_scale=7.0, width=size, height=size,
                                                 generator=torch.Generator().manual_seed(1), output_type="np"),
                                    device, runs, warmup)
        _add_ratio(result, reference_times)
    return result


def bench_vae_decode(size: int, device, dtype, runs, warmup, compare) -> CaseResult:
    vae_config = convert.vae_config_from_diffusers(SD_VAE)
    reference = None
    if compare:
        import diffusers

        torch.manual_seed(0)
        reference = diffusers.AutoencoderKL(**SD_VAE)
        vae = _from_diffusers(reference, lambda: AutoencoderKL(vae_config),
                              lambda sd: convert.vae_diffusers_to_ldm(sd, vae_config), device, dtype)
        reference = reference.to(device=device, dtype=dtype).eval()
    else:
        vae = _build(lambda: AutoencoderKL(vae_config), device, dtype)
    latents = torch.randn(1, 4, size // 8, size // 8, generator=torch.Generator().manual_seed(0)).to(device, dtype)
    with torch.no_grad():
        times = time_call(lambda: vae.decode(latents), device, runs, warmup)
        result = CaseResult("vae-decode", str(device), _dtype_name(dtype), f"{size}x{size}", 0,
                            statistics.median(times), _percentile(times, 90), runs)
        if reference is not None:
            _add_ratio(result, time_call(lambda: reference.decode(latents), device, runs, warmup))
    return result


def bench_text_encode(device, dtype, runs, warmup, compare) -> CaseResult:
    reference = None
    if compare:
        import transformers

        torch.manual_seed(0)
        reference = transformers.CLIPTextModel(transformers.CLIPTextConfig(
            hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12))
        model = _from_diffusers(reference, lambda: CLIPTextModel(CLIP_L), convert.hf_clip_state, device, dtype)
        reference = reference.to(device=device, dtype=dtype).eval()
    else:
        model = _build(lambda: CLIPTextModel(CLIP_L), device, dtype)
    ids = torch.full((1, 77), 49407, dtype=torch.long, device=device)
    ids[0, 0] = 49406
    with torch.no_grad():
        times = time_call(lambda: model(ids), device, runs, warmup)
        result = CaseResult("text-encode-clip-l", str(device), _dtype_name(dtype), "77 tokens", 0,
                            statistics.median(times), _percentile(times, 90), runs)
        if reference is not None:
            _add_ratio(result, time_call(lambda: reference(ids), device, runs, warmup))
    return result


def bench_house(kind: str, device, dtype, runs, warmup, compare) -> CaseResult | None:
    from .cli import house_model_path
    from .loader import load_model

    folder = house_model_path().parent / kind
    if not (folder / "model_index.json").is_file():
        return None
    model = load_model(folder, device=device, dtype=dtype)
    pipeline = Pipeline(model)
    size = 128
    if kind == "preview":
        rng = np.random.default_rng(0)
        request = GenerationRequest(prompt="a house by a lake at sunset", seed=1, steps=1, sampler="euler",
                                    timestep_spacing="trailing", guidance=0.0, width=size, height=size)
        name, steps, note = "house-preview", 1, "one-step txt2img incl. decode, prompt cached"
        del rng
    else:
        request = GenerationRequest(prompt="a house by a lake at sunset", seed=1, steps=20, sampler="euler",
                                    guidance=5.0, width=size, height=size)
        name, steps, note = "house-full", 20, "20-step txt2img with CFG incl. decode"
    times = time_call(lambda: pipeline.generate(request), device, runs, warmup)
    result = CaseResult(name, str(device), _dtype_name(dtype), f"{size}x{size}", steps, statistics.median(times),
                        _percentile(times, 90), runs, note=note)
    if compare:
        import diffusers

        pipe = diffusers.StableDiffusionPipeline.from_pretrained(folder, torch_dtype=dtype).to(device)
        pipe.set_progress_bar_config(disable=True)
        with torch.no_grad():
            embeds = pipe.encode_prompt(request.prompt, device=device, num_images_per_prompt=1,
                                        do_classifier_free_guidance=request.guidance > 1, negative_prompt="")
        prompt_kwargs = dict(prompt_embeds=embeds[0])
        if request.guidance > 1:
            prompt_kwargs["negative_prompt_embeds"] = embeds[1]
        reference_times = time_call(lambda: pipe(num_inference_steps=request.steps, guidance_scale=request.guidance,
                                                 width=size, height=size, generator=torch.Generator().manual_seed(1),
                                                 output_type="np", **prompt_kwargs), device, runs, warmup)
        _add_ratio(result, reference_times)
    return result


def bench_house_lora(device, dtype, runs, warmup) -> CaseResult | None:
    from .bench_lora import bench_house_preview_lora
    from .cli import house_model_path

    figures = bench_house_preview_lora(house_model_path().parent / "preview", device, dtype, runs, warmup, time_call)
    if figures is None:
        return None
    note = (f"one-step 128² frame with a rank-8 LoRA on every UNet/text layer (merged): without a LoRA "
            f"{figures['without']:.1f} ms, with {figures['with']:.1f} ms, with its weight changing every frame "
            f"{figures['weight_changing']:.1f} ms (same run)")
    return CaseResult("house-preview-lora", str(device), _dtype_name(dtype), "128x128", 1, figures["with"],
                      _percentile(figures["times"], 90), runs, note=note)


def _flux_case(device: torch.device, dtype: torch.dtype, runs: int) -> Callable[..., CaseResult]:
    """CaseResult maker handed to the FLUX cases (inference/bench_flux.py)."""
    def make(name: str, size: int, steps: int, times: list[float], note: str) -> CaseResult:
        return CaseResult(name, str(device), _dtype_name(dtype), f"{size}x{size}", steps, statistics.median(times),
                          _percentile(times, 90), runs, note=note)
    return make


def bench_flux(kind: str, quick: bool, device: torch.device, dtype: torch.dtype, runs: int, warmup: int,
               compare: bool = False) -> CaseResult:
    from .bench_flux import bench_flux_final, bench_flux_preview

    # FLUX runs in bf16 on GPUs (fp16 overflows in its activations), whatever the SD cases use.
    dtype = torch.bfloat16 if dtype == torch.float16 else dtype
    case = bench_flux_preview if kind == "preview" else bench_flux_final
    return case(quick, device, dtype, runs, warmup, time_call, _flux_case(device, dtype, runs), _build, compare)


def _add_ratio(result: CaseResult, reference_times: list[float]) -> None:
    result.diffusers_median_ms = statistics.median(reference_times)
    result.ratio_vs_diffusers = result.diffusers_median_ms / result.median_ms


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def run_bench(device: str = "cpu", quick: bool = False, compare: str | None = None, runs: int = 20,
              warmup: int = 3, cases: list[str] | None = None, dtype: str | None = None,
              log: Callable[[str], None] = print) -> dict:
    torch_device = torch.device(device)
    torch_dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}[
        dtype or ("float16" if torch_device.type == "cuda" else "float32")]
    comparing = compare == "diffusers"
    # --quick: small resolutions and short step counts so the whole run fits in minutes on a CPU.
    preview_size, sdxl_preview, final_size, final_steps, vae_size = (
        (128, 128, 256, 2, 256) if quick else (512, 512, 1024, 30, 1024))
    plan: list[tuple[str, Callable[[], CaseResult | None]]] = [
        ("sd-turbo-preview", lambda: bench_preview(SD_TURBO, preview_size, torch_device, torch_dtype, runs, warmup, comparing)),
        ("sdxl-turbo-preview", lambda: bench_preview(SDXL_TURBO, sdxl_preview, torch_device, torch_dtype, runs, warmup, comparing)),
        ("sdxl-final", lambda: bench_final(SDXL_TURBO, final_size, final_steps, torch_device, torch_dtype, runs, warmup, comparing)),
        ("vae-decode", lambda: bench_vae_decode(vae_size, torch_device, torch_dtype, runs, warmup, comparing)),
        ("text-encode", lambda: bench_text_encode(torch_device, torch_dtype, runs, warmup, comparing)),
        ("house-preview", lambda: bench_house("preview", torch_device, torch.float32 if torch_device.type == "cpu" else torch_dtype, runs, warmup, comparing)),
        ("house-preview-lora", lambda: bench_house_lora(torch_device, torch.float32 if torch_device.type == "cpu" else torch_dtype, runs, warmup)),
        ("flux-schnell-preview", lambda: bench_flux("preview", quick, torch_device, torch_dtype, runs, warmup, comparing)),
        ("flux-dev-final", lambda: bench_flux("final", quick, torch_device, torch_dtype, runs, warmup, comparing)),
        ("house-full", lambda: bench_house("full", torch_device, torch.float32 if torch_device.type == "cpu" else torch_dtype, runs, warmup, comparing)),
        ("farm-batch", lambda: bench_farm_batch(quick, runs, log)),
    ]
    results, skipped = [], []
    for name, job in plan:
        if cases and name not in cases:
            continue
        log(f"bench: {name} …")
        result = job()
        if result is None:
            skipped.append(name)
            log(f"bench: {name} skipped (what it needs is missing: see the line above, if any)")
            continue
        log(f"bench: {name}: median {result.median_ms:.1f} ms, p90 {result.p90_ms:.1f} ms"
            + (f", diffusers {result.diffusers_median_ms:.1f} ms (×{result.ratio_vs_diffusers:.2f})"
               if result.ratio_vs_diffusers else "")
            + (f", max diff {result.max_pixel_diff}/255" if result.max_pixel_diff is not None else ""))
        results.append(result.to_json())
        if torch_device.type == "cuda":
            torch.cuda.empty_cache()
    return {"device_name": device_name(torch_device), "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d"), "quick": quick, "skipped": skipped, "cases": results}


def write_report(report: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
