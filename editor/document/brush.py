"""A simple round brush: dab masks and stroke spacing, in pure numpy.

The brush engine proper (UI side) feeds pointer events in; this module turns
them into (x0, y0, coverage mask) dabs that ``Document.apply_dab`` paints.
Pressure is just a number in [0, 1] that can scale size and flow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np


@dataclass(frozen=True)
class BrushSettings:
    size: float = 16.0  # diameter in px at full pressure
    hardness: float = 0.8  # 1 = hard edge, 0 = soft all the way to the centre
    opacity: float = 1.0  # cap on the whole stroke's coverage
    flow: float = 1.0  # coverage added by one dab
    spacing: float = 0.1  # dab distance as a fraction of the diameter
    color: tuple[int, int, int] = (0, 0, 0)
    pressure_size: bool = True
    pressure_flow: bool = False
    min_size: float = 1.0


@dataclass(frozen=True)
class Dab:
    x0: int  # canvas position of mask[0, 0]
    y0: int
    mask: np.ndarray  # float32 coverage in [0, 1], flow already applied
    opacity: float


def dab_mask(diameter: float, hardness: float, cx: float, cy: float) -> tuple[int, int, np.ndarray]:
    """Coverage of a round dab centred at (cx, cy), in canvas pixels.

    Pixel (i, j) has its centre at (i + 0.5, j + 0.5). Inside ``hardness *
    radius`` coverage is 1; beyond it falls off smoothly (smoothstep) to 0 at
    the radius. The outer edge is anti-aliased over one pixel, so hard
    brushes have no jaggies and tiny brushes do not vanish.
    """
    radius = max(float(diameter), 0.1) / 2.0
    hardness = min(max(float(hardness), 0.0), 1.0)
    x0 = int(math.floor(cx - radius - 1.0))
    y0 = int(math.floor(cy - radius - 1.0))
    x1 = int(math.ceil(cx + radius + 1.0))
    y1 = int(math.ceil(cy + radius + 1.0))
    xs = np.arange(x0, x1, dtype=np.float32) + np.float32(0.5 - cx)
    ys = np.arange(y0, y1, dtype=np.float32) + np.float32(0.5 - cy)
    dist = np.sqrt(ys[:, None] ** 2 + xs[None, :] ** 2)
    edge = np.clip(radius + 0.5 - dist, 0.0, 1.0)  # 1-px anti-aliased rim
    inner = hardness * radius
    if inner >= radius - 1e-6:
        falloff = np.ones_like(dist)
    else:
        t = np.clip((dist - inner) / (radius - inner), 0.0, 1.0)
        falloff = 1.0 - t * t * (3.0 - 2.0 * t)
    if radius < 0.5:
        # Sub-pixel brush: keep its area roughly right instead of a 1 px spike.
        edge = edge * (radius / 0.5) ** 2
    return x0, y0, (edge * falloff).astype(np.float32)


def make_dab(brush: BrushSettings, x: float, y: float, pressure: float = 1.0) -> Dab:
    p = min(max(float(pressure), 0.0), 1.0)
    size = brush.size * p if brush.pressure_size else brush.size
    size = max(size, brush.min_size)
    flow = brush.flow * (p if brush.pressure_flow else 1.0)
    x0, y0, mask = dab_mask(size, brush.hardness, x, y)
    if flow < 1.0:
        mask *= np.float32(flow)
    return Dab(x0, y0, mask, brush.opacity)


class StrokeSpacer:
    """Places dabs along a polyline at ``spacing * diameter`` intervals.

    Carries the leftover distance between segments so dab density does not
    depend on how often pointer events arrive.
    """

    def __init__(self, brush: BrushSettings) -> None:
        self.brush = brush
        self._last: tuple[float, float, float] | None = None
        self._carry = 0.0

    def _step(self, pressure: float) -> float:
        size = self.brush.size * (pressure if self.brush.pressure_size else 1.0)
        return max(1.0, max(size, self.brush.min_size) * self.brush.spacing)

    def add_point(self, x: float, y: float, pressure: float = 1.0) -> Iterator[tuple[float, float, float]]:
        """Yield (x, y, pressure) dab centres up to this pointer position."""
        if self._last is None:
            self._last = (x, y, pressure)
            self._carry = 0.0
            yield (x, y, pressure)
            return
        lx, ly, lp = self._last
        seg = math.hypot(x - lx, y - ly)
        pos = 0.0  # distance along this segment
        since = self._carry  # distance travelled since the previous dab
        while True:
            t = pos / seg if seg > 0 else 1.0
            need = max(0.0, self._step(lp + (pressure - lp) * t) - since)
            if seg <= 0 or pos + need > seg:
                break
            pos += need
            t = pos / seg
            yield (lx + (x - lx) * t, ly + (y - ly) * t, lp + (pressure - lp) * t)
            since = 0.0
        self._carry = since + (seg - pos)
        self._last = (x, y, pressure)
