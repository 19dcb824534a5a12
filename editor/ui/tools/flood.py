"""Contiguous "similar colour" region for the fill tool (numpy + OpenCV).

Qt-free; it lives next to the fill tool only because the document model
has no flood-fill API yet.
"""

from __future__ import annotations

import cv2
import numpy as np


def flood_region(pixels: np.ndarray, x: int, y: int, tolerance: int) -> np.ndarray:
    """Boolean mask of pixels 4-connected to (x, y) whose every channel is
    within ``tolerance`` (0..255) of the seed pixel. ``pixels`` is (H, W)
    or (H, W, C) uint8; straight RGBA includes alpha, so transparent areas
    are one region (transparent pixels are canonical zeros)."""
    arr = pixels if pixels.ndim == 3 else pixels[..., None]
    h, w = arr.shape[:2]
    if not (0 <= x < w and 0 <= y < h):
        return np.zeros((h, w), bool)
    seed = arr[y, x].astype(np.int16)
    diff = np.abs(arr.astype(np.int16) - seed).max(axis=2)
    similar = (diff <= int(tolerance)).astype(np.uint8)
    # Flood the 0/1 map from the seed with value 2: only the connected part changes.
    cv2.floodFill(similar, None, (int(x), int(y)), 2, loDiff=0, upDiff=0, flags=4)
    return similar == 2
