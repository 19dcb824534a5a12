"""Out-of-memory handling for the VAE decode: retry in overlapping tiles.

The VAE decoder needs far more activation memory than a UNet step (its last
stages run at full image resolution), so a generation that sampled fine can
still fail at the very end. Like ComfyUI, we then decode tile by tile with
shrinking tiles; overlaps are blended with linear ramps so no seam shows.

The engine decodes inside ``Pipeline.generate``; :func:`guard_decode` wraps
the model's ``vae.decode`` for the duration of a call (an adapter until the
engine grows a decode hook).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator, Sequence

import torch

from .errors import InferenceError

Decode = Callable[[torch.Tensor], torch.Tensor]

DEFAULT_TILES = (64, 32, 16)  # latent cells per tile side, tried in order


class OutOfMemoryError(InferenceError):
    """The device ran out of memory; the message says what to try."""


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def _ramp(length: int, fade_start: int, fade_end: int, device, dtype) -> torch.Tensor:
    """1-D weights: rising over ``fade_start`` samples, falling over ``fade_end``."""
    w = torch.ones(length, device=device, dtype=dtype)
    if fade_start > 0:
        w[:fade_start] = torch.linspace(0, 1, fade_start + 2, device=device, dtype=dtype)[1:-1]
    if fade_end > 0:
        w[length - fade_end:] = torch.linspace(1, 0, fade_end + 2, device=device, dtype=dtype)[1:-1]
    return w


def tiled_decode(decode: Decode, z: torch.Tensor, tile: int = 64, overlap: int = 16, scale: int = 8) -> torch.Tensor:
    """Decode latents ``z`` (B, C, h, w) in overlapping ``tile`` x ``tile`` tiles.

    ``decode`` maps (B, C, th, tw) -> (B, 3, th*scale, tw*scale). Where tiles
    overlap, their outputs are blended with linear ramps across the overlap.
    """
    _, _, h, w = z.shape
    tile = max(1, int(tile))
    overlap = min(max(0, int(overlap)), tile // 2)
    ys, xs = _starts(h, tile, overlap), _starts(w, tile, overlap)
    out = None
    total = None
    for y in ys:
        for x in xs:
            th, tw = min(tile, h - y), min(tile, w - x)
            part = decode(z[:, :, y:y + th, x:x + tw]).float()
            if out is None:
                out = torch.zeros((z.shape[0], part.shape[1], h * scale, w * scale), device=part.device)
                total = torch.zeros((1, 1, h * scale, w * scale), device=part.device)
            # Fade only the sides that overlap a neighbour tile.
            fade = overlap * scale
            wy = _ramp(th * scale, fade if y > 0 else 0, fade if y + th < h else 0, part.device, torch.float32)
            wx = _ramp(tw * scale, fade if x > 0 else 0, fade if x + tw < w else 0, part.device, torch.float32)
            weight = (wy[:, None] * wx[None, :])[None, None]
            region = (slice(None), slice(None), slice(y * scale, (y + th) * scale), slice(x * scale, (x + tw) * scale))
            out[region] += part * weight
            total[region] += weight
            del part
    assert out is not None and total is not None
    return out / total.clamp_min(1e-6)


def decode_with_fallback(decode: Decode, z: torch.Tensor, tiles: Sequence[int] = DEFAULT_TILES,
                         on_retry: Callable[[int], None] | None = None) -> torch.Tensor:
    """``decode(z)``; on out-of-memory, tiled decodes with shrinking tiles;
    if every size fails, :class:`OutOfMemoryError` with a clear message."""
    try:
        return decode(z)
    except Exception as exc:  # noqa: BLE001 - only OOM is handled, the rest re-raised
        if not is_out_of_memory(exc):
            raise
    free_memory()
    for tile in tiles:
        if tile >= max(z.shape[-2:]):
            continue  # would be the same as the full decode
        if on_retry is not None:
            on_retry(tile)
        try:
            return tiled_decode(decode, z, tile=tile, overlap=max(2, tile // 4))
        except Exception as exc:  # noqa: BLE001
            if not is_out_of_memory(exc):
                raise
            free_memory()
    h, w = z.shape[-2] * 8, z.shape[-1] * 8
    raise OutOfMemoryError(
        f"Out of memory while decoding the {w}x{h} image, even in tiles of {min(tiles) * 8} px. "
        "Try a smaller frame, or close other programs that use the GPU."
    )


@contextlib.contextmanager
def guard_decode(vae: torch.nn.Module, tiles: Sequence[int] = DEFAULT_TILES,
                 on_retry: Callable[[int], None] | None = None) -> Iterator[None]:
    """Within the block, ``vae.decode`` falls back to tiled decoding on OOM."""
    original = vae.decode
    if getattr(original, "_tiled_fallback", False):  # already guarded (re-entrant use)
        yield
        return

    def guarded(z: torch.Tensor) -> torch.Tensor:
        return decode_with_fallback(original, z, tiles, on_retry)

    guarded._tiled_fallback = True  # type: ignore[attr-defined]
    vae.decode = guarded  # instance attribute shadows the bound method
    try:
        yield
    finally:
        try:
            del vae.decode
        except AttributeError:
            pass
