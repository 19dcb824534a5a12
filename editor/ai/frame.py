"""The generation frame: the canvas rectangle a generation reads and writes,
and the mapping between its size and the model's working resolution.

Frames live on an 8-pixel grid in canvas coordinates (the VAE's latent cell),
so a frame that grows the canvas grows it by whole latent cells and a 1:1
mapping puts every latent cell on whole canvas pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from editor.document.geometry import Rect

GRID = 8  # pixels per latent cell of every supported VAE

Fit = Literal["shorter", "longer", "area"]


def snap(value: float, grid: int = GRID) -> int:
    """Nearest multiple of ``grid`` (halves round up, also for negatives)."""
    return int(np.floor(value / grid + 0.5)) * grid


def snap_size(value: float, grid: int = GRID) -> int:
    """Nearest multiple of ``grid`` that is at least one cell."""
    return max(grid, snap(value, grid))


def snap_down(value: float, grid: int = GRID) -> int:
    return int(np.floor(value / grid)) * grid


def snap_up(value: float, grid: int = GRID) -> int:
    return int(np.ceil(value / grid)) * grid


@dataclass(frozen=True)
class GenerationFrame:
    """A rect on the canvas whose corners are multiples of ``GRID``.

    Build it with :meth:`snapped` (or :meth:`covering`); every helper returns
    a new, still-snapped frame, so the invariant holds whatever the UI does.
    """

    x: int
    y: int
    w: int
    h: int

    def __post_init__(self) -> None:
        if any(v % GRID for v in (self.x, self.y, self.w, self.h)) or self.w < GRID or self.h < GRID:
            raise ValueError(f"frame {self.x},{self.y} {self.w}x{self.h} is not on the {GRID}-pixel grid")

    # ------------------------------------------------------------ constructors
    @staticmethod
    def snapped(x: float, y: float, w: float, h: float) -> "GenerationFrame":
        """Nearest grid frame: corners rounded to the grid, at least one cell."""
        return GenerationFrame(snap(x), snap(y), snap_size(w), snap_size(h))

    @staticmethod
    def from_rect(rect: Rect) -> "GenerationFrame":
        return GenerationFrame.snapped(rect.x, rect.y, rect.w, rect.h)

    @staticmethod
    def covering(rect: Rect) -> "GenerationFrame":
        """Smallest grid frame that contains ``rect`` (snaps outward)."""
        x0, y0 = snap_down(rect.x), snap_down(rect.y)
        x1, y1 = snap_up(rect.x1), snap_up(rect.y1)
        return GenerationFrame(x0, y0, max(GRID, x1 - x0), max(GRID, y1 - y0))

    @staticmethod
    def centered(cx: float, cy: float, w: float, h: float) -> "GenerationFrame":
        w, h = snap_size(w), snap_size(h)
        return GenerationFrame(snap(cx - w / 2), snap(cy - h / 2), w, h)

    # ----------------------------------------------------------------- queries
    @property
    def rect(self) -> Rect:
        return Rect(self.x, self.y, self.w, self.h)

    @property
    def x1(self) -> int:
        return self.x + self.w

    @property
    def y1(self) -> int:
        return self.y + self.h

    def is_inside(self, canvas: Rect) -> bool:
        return canvas.contains_rect(self.rect)

    # ----------------------------------------------------------------- editing
    def moved(self, dx: float, dy: float) -> "GenerationFrame":
        return GenerationFrame(snap(self.x + dx), snap(self.y + dy), self.w, self.h)

    def moved_to(self, x: float, y: float) -> "GenerationFrame":
        return GenerationFrame(snap(x), snap(y), self.w, self.h)

    def resized(self, w: float, h: float, anchor: Literal["top-left", "center"] = "top-left") -> "GenerationFrame":
        w, h = snap_size(w), snap_size(h)
        if anchor == "center":
            return GenerationFrame.centered(self.x + self.w / 2, self.y + self.h / 2, w, h)
        return GenerationFrame(self.x, self.y, w, h)

    def with_edges(self, left: float | None = None, top: float | None = None,
                   right: float | None = None, bottom: float | None = None) -> "GenerationFrame":
        """Drag one or more edges to canvas positions (a resize handle);
        the opposite edge stays put and the frame keeps at least one cell."""
        x0 = snap(left) if left is not None else self.x
        y0 = snap(top) if top is not None else self.y
        x1 = snap(right) if right is not None else self.x1
        y1 = snap(bottom) if bottom is not None else self.y1
        if x1 - x0 < GRID:
            x0, x1 = (x1 - GRID, x1) if left is not None else (x0, x0 + GRID)
        if y1 - y0 < GRID:
            y0, y1 = (y1 - GRID, y1) if top is not None else (y0, y0 + GRID)
        return GenerationFrame(x0, y0, x1 - x0, y1 - y0)

    def clamped_into(self, canvas: Rect) -> "GenerationFrame":
        """Move (not resize) the frame so it lies inside ``canvas`` where it fits."""
        x = min(max(self.x, snap_up(canvas.x)), snap_down(canvas.x1 - self.w))
        y = min(max(self.y, snap_up(canvas.y)), snap_down(canvas.y1 - self.h))
        x = self.x if self.w > canvas.w else x
        y = self.y if self.h > canvas.h else y
        return GenerationFrame(x, y, self.w, self.h)


# --------------------------------------------------------------------------- resolution
def model_size(width: int, height: int, native: int, fit: Fit = "shorter", max_ratio: float = 2.0,
               grid: int = GRID) -> tuple[int, int]:
    """Model working size for a ``width`` x ``height`` area.

    ``fit="shorter"`` scales so the shorter side is ``native`` (models are
    trained on squares of that size; the longer side may be up to
    ``max_ratio * native``, beyond which the scale drops so the long side
    is capped), ``"longer"`` so the longer side is ``native``, ``"area"`` so
    the pixel count is ``native**2``. Small areas are scaled up ("make the
    region big, then shrink it"), large ones down. Both sides are multiples of
    ``grid``.
    """
    if width <= 0 or height <= 0 or native < grid:
        raise ValueError(f"bad size {width}x{height} for native resolution {native}")
    short, long_ = min(width, height), max(width, height)
    if fit == "shorter":
        scale = native / short
        scale = min(scale, max_ratio * native / long_)
    elif fit == "longer":
        scale = native / long_
    elif fit == "area":
        scale = native / float(np.sqrt(width * height))
    else:
        raise ValueError(f"unknown fit {fit!r}")
    return snap_size(width * scale, grid), snap_size(height * scale, grid)


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an image (HxW or HxWxC) to ``size`` = (w, h) with the filter that
    suits the direction: area averaging down (no aliasing), Lanczos up (sharp)."""
    h, w = image.shape[:2]
    tw, th = size
    if (w, h) == (tw, th):
        return image.copy()
    shrinking = tw * th < w * h
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LANCZOS4
    out = cv2.resize(image, (tw, th), interpolation=interpolation)
    if image.ndim == 3 and out.ndim == 2:  # OpenCV drops a single channel axis
        out = out[..., None]
    return out


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a coverage mask: area down, bilinear up (Lanczos rings on hard edges)."""
    h, w = mask.shape[:2]
    tw, th = size
    if (w, h) == (tw, th):
        return mask.copy()
    interpolation = cv2.INTER_AREA if tw * th < w * h else cv2.INTER_LINEAR
    return cv2.resize(mask, (tw, th), interpolation=interpolation)


@dataclass(frozen=True)
class ResolutionMap:
    """Frame (or crop) size <-> model working size."""

    width: int
    height: int
    model_width: int
    model_height: int

    @staticmethod
    def for_size(width: int, height: int, native: int, fit: Fit = "shorter",
                 max_ratio: float = 2.0) -> "ResolutionMap":
        mw, mh = model_size(width, height, native, fit, max_ratio)
        return ResolutionMap(width, height, mw, mh)

    @property
    def size(self) -> tuple[int, int]:
        return (self.width, self.height)

    @property
    def model(self) -> tuple[int, int]:
        return (self.model_width, self.model_height)

    @property
    def scale(self) -> float:
        """Model pixels per canvas pixel (geometric mean of both axes)."""
        return float(np.sqrt(self.model_width * self.model_height / (self.width * self.height)))

    def to_model(self, image: np.ndarray) -> np.ndarray:
        return resize_image(image, self.model)

    def from_model(self, image: np.ndarray) -> np.ndarray:
        return resize_image(image, self.size)

    def mask_to_model(self, mask: np.ndarray) -> np.ndarray:
        return resize_mask(mask, self.model)

    def mask_from_model(self, mask: np.ndarray) -> np.ndarray:
        return resize_mask(mask, self.size)
