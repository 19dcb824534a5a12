"""Stroke smoothing: an exponential moving average of pointer positions.

Like Krita's "basic" smoothing. The lag it introduces is paid back on
release: ``finish`` walks the smoothed point to where the pen actually
lifted, so strokes end where the user ended them.
"""

from __future__ import annotations

import math
from typing import Iterator, Optional


class StrokeSmoother:
    def __init__(self, amount: float) -> None:
        # amount 0 = raw input; 0.95 = very heavy. Weight of the new sample:
        self._alpha = 1.0 - min(max(float(amount), 0.0), 0.95)
        self._state: Optional[tuple[float, float, float]] = None

    @property
    def pressure(self) -> float:
        """Smoothed pressure so far (1.0 before the first sample)."""
        return self._state[2] if self._state else 1.0

    def start(self, x: float, y: float, pressure: float) -> tuple[float, float, float]:
        self._state = (x, y, pressure)
        return self._state

    def add(self, x: float, y: float, pressure: float) -> tuple[float, float, float]:
        if self._state is None:
            return self.start(x, y, pressure)
        sx, sy, sp = self._state
        a = self._alpha
        # Pressure is smoothed less: size changes should follow the pen closely.
        pa = min(1.0, a * 2.0)
        self._state = (sx + (x - sx) * a, sy + (y - sy) * a, sp + (pressure - sp) * pa)
        return self._state

    def finish(self, x: float, y: float, pressure: float, step: float = 2.0) -> Iterator[tuple[float, float, float]]:
        """Points from the smoothed position to the real end (at most ``step`` px apart)."""
        if self._state is None:
            return
        sx, sy, sp = self._state
        dist = math.hypot(x - sx, y - sy)
        n = max(1, int(math.ceil(dist / max(step, 0.5))))
        if dist < 1e-6:
            return
        for i in range(1, n + 1):
            t = i / n
            yield (sx + (x - sx) * t, sy + (y - sy) * t, sp + (pressure - sp) * t)
        self._state = (x, y, pressure)
