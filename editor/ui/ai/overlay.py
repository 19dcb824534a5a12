"""What the AI draws over the canvas: the image in the frame (live preview,
a final render's latest step, or the staged result), the frame itself with
its mode label, and a progress strip. None of it is in the document."""

from __future__ import annotations

from typing import Optional

import numpy as np
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QImage, QPainter, QPen

from ..viewport import Viewport

ACCENT = QColor(96, 172, 255)
ACCENT_STAGED = QColor(255, 196, 64)
LABEL_BG = QColor(22, 24, 28, 215)
LABEL_FG = QColor(236, 238, 242)
OUTLINE = QColor(12, 12, 14, 190)


def qimage_from_rgba(rgba: np.ndarray) -> QImage:
    """A QImage owning a copy of straight (not premultiplied) uint8 RGBA."""
    rgba = np.ascontiguousarray(rgba)
    h, w = rgba.shape[:2]
    return QImage(rgba.data, w, h, 4 * w, QImage.Format.Format_RGBA8888).copy()


class FrameOverlay:
    """Painted by the canvas after the document tiles (``canvas.overlays``)."""

    def __init__(self, host) -> None:
        self.host = host  # AIHost: .controller (None until loaded), .frame_visible()
        self._image_key: Optional[object] = None
        self._qimage: Optional[QImage] = None

    def _cached_qimage(self, image) -> QImage:
        if image is not self._image_key:
            self._image_key = image  # holding it keeps the identity check sound
            self._qimage = qimage_from_rgba(image.rgba)
        return self._qimage

    def label_text(self) -> str:
        c = self.host.controller
        frame = c.frame
        if c.staging.count:
            return f"Result {c.staging.index + 1}/{c.staging.count} · Enter accepts · Esc discards"
        mode = c.mode.label if c.mode is not None else "Generate"
        text = f"{mode} · {frame.w}×{frame.h}"
        if c.waiting_for_preview:
            text += " · waiting for the preview"
        elif c.final_job is not None:
            text += " · rendering · Esc cancels"
        elif c.live_enabled:
            text += f" · {c.live_state()}"
        return text

    def paint(self, p: QPainter, vp: Viewport) -> None:
        c = self.host.controller
        if c is None or not self.host.frame_visible():
            return
        shown = c.overlay_image()
        if shown is not None:
            image, opacity = shown
            p.save()
            p.setTransform(vp.transform())
            p.setOpacity(opacity)
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, vp.zoom < 1.0)
            r = image.rect
            p.drawImage(QRectF(r.x, r.y, r.w, r.h), self._cached_qimage(image))
            p.restore()

        frame = c.frame
        box = vp.rect_to_widget(QRectF(frame.x, frame.y, frame.w, frame.h))
        colour = ACCENT_STAGED if c.staging.count else ACCENT
        p.save()
        p.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        p.setBrush(Qt.BrushStyle.NoBrush)
        outline = QPen(OUTLINE, 3)
        outline.setCosmetic(True)
        p.setPen(outline)
        p.drawRect(box)
        pen = QPen(colour, 1)
        pen.setCosmetic(True)
        p.setPen(pen)
        p.drawRect(box)

        if c.final_job is not None:  # progress strip along the inside of the bottom edge
            strip = QRectF(box.left() + 1, box.bottom() - 5, max(0.0, box.width() - 2), 4)
            p.fillRect(strip, QColor(0, 0, 0, 140))
            p.fillRect(QRectF(strip.left(), strip.top(), strip.width() * c.progress_fraction, strip.height()), colour)

        font = QFont(p.font())
        font.setPointSizeF(max(8.0, font.pointSizeF() * 0.9))
        font.setBold(True)
        p.setFont(font)
        metrics = QFontMetricsF(font)
        text = self.label_text()
        pill = QRectF(0, 0, metrics.horizontalAdvance(text) + 14, metrics.height() + 6)
        top = box.top() - pill.height() - 3
        pill.moveTo(box.left(), top if top >= 0 else box.top() + 3)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(LABEL_BG)
        p.drawRoundedRect(pill, 4, 4)
        p.setBrush(colour)
        p.drawRoundedRect(QRectF(pill.left(), pill.top(), 4, pill.height()), 2, 2)
        p.setPen(LABEL_FG)
        p.drawText(pill.adjusted(8, 0, 0, 0), int(Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft), text)
        p.restore()
