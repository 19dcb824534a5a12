"""Measure how long the UI thread's event loop stalls: a timer that should
tick every ``interval_ms`` records the largest gap between ticks."""

from __future__ import annotations

import time

from PySide6.QtCore import QObject, Qt, QTimer


class StallMeter(QObject):
    def __init__(self, interval_ms: int = 5, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)
        self._last = 0.0
        self.max_gap_s = 0.0
        self.ticks = 0

    def start(self) -> None:
        self.max_gap_s = 0.0
        self.ticks = 0
        self._last = time.perf_counter()
        self._timer.start()

    def stop(self) -> float:
        self._timer.stop()
        return self.max_gap_ms

    def _tick(self) -> None:
        now = time.perf_counter()
        self.max_gap_s = max(self.max_gap_s, now - self._last)
        self._last = now
        self.ticks += 1

    @property
    def max_gap_ms(self) -> float:
        return self.max_gap_s * 1000.0
