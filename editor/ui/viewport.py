"""View transform of the canvas: widget = image * zoom + offset.

Plain arithmetic on Qt geometry types, no widget, so it is easy to test and
shared by the canvas, tools and status bar.
"""

from __future__ import annotations

import math

from PySide6.QtCore import QPointF, QRectF, QSizeF
from PySide6.QtGui import QTransform

from editor.document import Rect

MIN_ZOOM = 1.0 / 64.0
MAX_ZOOM = 64.0
# Ctrl+plus / Ctrl+minus walk these (Krita-like: powers of two with halves between).
ZOOM_STEPS = tuple(
    sorted({2.0 ** (k / 2.0) for k in range(-12, 13)} | {2.0 ** k for k in range(-6, 7)})
)


class Viewport:
    def __init__(self) -> None:
        self.zoom = 1.0
        self.offset = QPointF(0.0, 0.0)

    # ----------------------------------------------------------- mapping
    def to_widget(self, p: QPointF) -> QPointF:
        return QPointF(p.x() * self.zoom + self.offset.x(), p.y() * self.zoom + self.offset.y())

    def to_image(self, p: QPointF) -> QPointF:
        return QPointF((p.x() - self.offset.x()) / self.zoom, (p.y() - self.offset.y()) / self.zoom)

    def rect_to_widget(self, r: QRectF) -> QRectF:
        return QRectF(self.to_widget(r.topLeft()), QSizeF(r.width() * self.zoom, r.height() * self.zoom))

    def rect_to_image(self, r: QRectF) -> QRectF:
        return QRectF(self.to_image(r.topLeft()), QSizeF(r.width() / self.zoom, r.height() / self.zoom))

    def image_rect_of(self, widget_rect: QRectF) -> Rect:
        """Integer image pixels touched by a widget-space rectangle."""
        r = self.rect_to_image(widget_rect)
        return Rect.from_bounds(
            math.floor(r.left()), math.floor(r.top()), math.ceil(r.right()), math.ceil(r.bottom())
        )

    def transform(self) -> QTransform:
        return QTransform(self.zoom, 0.0, 0.0, self.zoom, self.offset.x(), self.offset.y())

    # ----------------------------------------------------------- changes
    def zoom_at(self, new_zoom: float, anchor: QPointF) -> None:
        """Zoom keeping the image point under ``anchor`` (widget coords) fixed."""
        new_zoom = min(max(new_zoom, MIN_ZOOM), MAX_ZOOM)
        img = self.to_image(anchor)
        self.zoom = new_zoom
        self.offset = QPointF(anchor.x() - img.x() * new_zoom, anchor.y() - img.y() * new_zoom)

    def pan(self, dx: float, dy: float) -> None:
        self.offset = QPointF(self.offset.x() + dx, self.offset.y() + dy)

    def fit(self, image_w: int, image_h: int, widget_w: int, widget_h: int, margin: int = 24) -> None:
        """Whole image visible and centred (Ctrl+0); never magnify past 100 %
        on fit, like Krita, so small images are not shown blurry-huge."""
        avail_w, avail_h = max(widget_w - 2 * margin, 1), max(widget_h - 2 * margin, 1)
        zoom = min(avail_w / max(image_w, 1), avail_h / max(image_h, 1), 1.0)
        self.zoom = min(max(zoom, MIN_ZOOM), MAX_ZOOM)
        self.center(image_w, image_h, widget_w, widget_h)

    def center(self, image_w: int, image_h: int, widget_w: int, widget_h: int) -> None:
        self.offset = QPointF(
            round((widget_w - image_w * self.zoom) / 2.0), round((widget_h - image_h * self.zoom) / 2.0)
        )

    @staticmethod
    def next_step(zoom: float, direction: int) -> float:
        """The next preset zoom above (direction > 0) or below the current one."""
        if direction > 0:
            return next((z for z in ZOOM_STEPS if z > zoom * 1.001), ZOOM_STEPS[-1])
        return next((z for z in reversed(ZOOM_STEPS) if z < zoom / 1.001), ZOOM_STEPS[0])
