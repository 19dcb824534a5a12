"""The engine's public, torch-free surface: requests, results, modes, samplers, defaults, model facts,
model downloads.

The editor, the CLI and the render farm import this module (and the engine facade,
`inference.engine`) and nothing else of the engine, so a UI process, a farm client or a test can
build, validate and serialise requests and read what a model file is without importing torch.
Importing this module never imports torch (a test checks it in a fresh interpreter).
"""
from __future__ import annotations

from .defaults import (DEFAULT_GUIDANCE, DEFAULT_IMG2IMG_STRENGTH, DEFAULT_SAMPLER, DEFAULT_STEPS, MAX_GUIDANCE,
                       MAX_SIDE, MAX_STEPS, SEED_MAX)
# Downloading a model by URL into a library folder (stdlib only): the editor's File ▸ Download model…
# and the CLI share one implementation, and the checks a dialog runs before starting it.
from .download import DownloadError, DownloadResult, check_sha256, download_file
from .download import check_filename as check_model_filename
from .download import check_url as check_download_url
# The model library (the LoRAs of the editor's model folders) and the speed-LoRA presets (Live's
# "FINAL + speed LoRA" preview models), both torch-free.
from .library import LibraryEntry, ModelLibrary, default_cache_path
from .lora.speed import SpeedPreset, recognise_speed_lora
from .model_info import ModelInfo, Preset, read_model_info

# Image-editing helpers the editor shares with the CLI: one outpaint pre-fill / soft-seam and one
# seam correction for both (torch-free).
from .outpaint import DEFAULT_STRENGTH as OUTPAINT_STRENGTH
from .outpaint import extend_canvas, fill_empty, outpaint_request, seam_change_map
from .requests import (MAX_STRUCTURE_BOUND, GenerationRequest, GenerationResult, LoraSpec, Mode, as_mask_array,
                       as_rgb_array, validate_request)
from .samplers.registry import SAMPLERS, SPACINGS, SamplerInfo, check_sampler, sampler_for_scheduler_class
from .seams import seam_correct

__all__ = [
    "DEFAULT_GUIDANCE", "DEFAULT_IMG2IMG_STRENGTH", "DEFAULT_SAMPLER", "DEFAULT_STEPS", "MAX_GUIDANCE", "MAX_SIDE",
    "MAX_STEPS", "MAX_STRUCTURE_BOUND", "OUTPAINT_STRENGTH", "SAMPLERS", "SEED_MAX", "SPACINGS",
    "DownloadError", "DownloadResult", "GenerationRequest", "GenerationResult", "LibraryEntry", "LoraSpec", "Mode",
    "ModelInfo", "ModelLibrary",
    "Preset", "SamplerInfo", "SpeedPreset", "default_cache_path", "recognise_speed_lora",
    "as_mask_array", "as_rgb_array", "check_download_url", "check_model_filename", "check_sampler", "check_sha256",
    "download_file", "extend_canvas", "fill_empty", "outpaint_request", "read_model_info",
    "sampler_for_scheduler_class", "seam_change_map", "seam_correct", "validate_request",
]
