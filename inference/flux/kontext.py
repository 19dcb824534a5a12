"""FLUX.1 Kontext: the reference image as extra image tokens, as diffusers' FluxKontextPipeline.

The reference (the canvas to edit) is encoded to latents — the VAE posterior's mean, no random
draw — packed like the noisy latents and appended to the image token sequence, with position ids
(1, row, col) where the generated tokens have (0, row, col). The transformer's output keeps only
the generated part. Before encoding the reference is resized as diffusers does: its size rounded
down to a multiple of 16, then (`auto_resize`, diffusers' default) replaced by the preferred
Kontext resolution of the nearest aspect ratio (all about 1 MP, what Kontext was trained on),
resampled with PIL's Lanczos.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import InvalidRequestError
from .sampling import image_ids, pack_latents

# (width, height) pairs Kontext was trained on (BFL's list, as diffusers' PREFERRED_KONTEXT_RESOLUTIONS).
PREFERRED_RESOLUTIONS = (
    (672, 1568), (688, 1504), (720, 1456), (752, 1392), (800, 1328), (832, 1248), (880, 1184), (944, 1104),
    (1024, 1024), (1104, 944), (1184, 880), (1248, 832), (1328, 800), (1392, 752), (1456, 720), (1504, 688),
    (1568, 672))


def reference_size(width: int, height: int, multiple: int = 16, auto_resize: bool = True) -> tuple[int, int]:
    """(width, height) the reference is encoded at: diffusers' `_auto_resize` choice (ties broken
    by the smaller width, as its `min` over tuples), rounded down to `multiple`."""
    width, height = width - width % multiple, height - height % multiple
    if width < multiple or height < multiple:
        raise InvalidRequestError(f"reference image {width}x{height} is too small: both sides must be at least "
                                  f"{multiple} px")
    if auto_resize:
        aspect = width / height
        _, width, height = min((abs(aspect - w / h), w, h) for w, h in PREFERRED_RESOLUTIONS)
    return width // multiple * multiple, height // multiple * multiple


def resize_reference(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """uint8 (H, W, 3) → (height, width, 3) with PIL's Lanczos (diffusers' VaeImageProcessor.resize);
    an image already at that size is returned as it is."""
    if rgb.shape[:2] == (height, width):
        return rgb
    from PIL import Image

    return np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).resize((width, height), Image.Resampling.LANCZOS))


def reference_tokens(latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled reference latents (1, C, h, w) → (packed tokens (1, h/2·w/2, 4C), their position ids
    (h/2·w/2, 3) with index 1)."""
    rows, cols = latents.shape[2] // 2, latents.shape[3] // 2
    return pack_latents(latents), image_ids(rows, cols, index=1)
