"""Tool icons drawn with QPainter (no image assets to ship or license).
They use the palette's text colour, so they suit light and dark themes."""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QGuiApplication, QIcon, QPainter, QPainterPath, QPalette, QPen, QPixmap, QPolygonF

SIZE = 24
MASK_TINT = QColor(236, 56, 220)


def _pen(color: QColor, width: float = 1.6, dashed: bool = False) -> QPen:
    pen = QPen(color, width)
    pen.setCapStyle(Qt.PenCapStyle.RoundCap)
    pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
    if dashed:
        pen.setStyle(Qt.PenStyle.CustomDashLine)
        pen.setDashPattern([2.0, 1.6])
    return pen


def _brush(p: QPainter, c: QColor) -> None:
    p.setPen(_pen(c, 2.4))
    p.drawLine(QPointF(19, 4), QPointF(10, 13))
    path = QPainterPath(QPointF(10, 13))
    path.cubicTo(QPointF(5, 13), QPointF(6, 19), QPointF(3, 21))
    path.cubicTo(QPointF(9, 21), QPointF(13, 18), QPointF(11.5, 14.5))
    p.setPen(_pen(c, 1.2))
    p.setBrush(c)
    p.drawPath(path)


def _eraser(p: QPainter, c: QColor) -> None:
    p.setPen(_pen(c, 1.6))
    body = QPolygonF([QPointF(13, 4), QPointF(21, 12), QPointF(12, 21), QPointF(4, 13)])
    p.drawPolygon(body)
    p.setBrush(c)
    p.drawPolygon(QPolygonF([QPointF(8.5, 8.5), QPointF(16.5, 16.5), QPointF(12, 21), QPointF(4, 13)]))
    p.drawLine(QPointF(12, 21), QPointF(21, 21))


def _mask(p: QPainter, c: QColor) -> None:
    p.setPen(_pen(c, 1.4))
    p.setBrush(QColor(MASK_TINT.red(), MASK_TINT.green(), MASK_TINT.blue(), 170))
    p.drawEllipse(QRectF(3, 3, 18, 18))
    p.setBrush(c)
    path = QPainterPath()
    path.moveTo(12, 3)
    path.arcTo(QRectF(3, 3, 18, 18), 90, 180)
    path.closeSubpath()
    p.drawPath(path)


def _rect(p: QPainter, c: QColor) -> None:
    p.setPen(_pen(c, 1.6, dashed=True))
    p.drawRect(QRectF(4, 5, 16, 14))


def _ellipse(p: QPainter, c: QColor) -> None:
    p.setPen(_pen(c, 1.6, dashed=True))
    p.drawEllipse(QRectF(3, 5, 18, 14))


def _lasso(p: QPainter, c: QColor) -> None:
    p.setPen(_pen(c, 1.6, dashed=True))
    path = QPainterPath(QPointF(6, 15))
    path.cubicTo(QPointF(0, 8), QPointF(12, 1), QPointF(19, 6))
    path.cubicTo(QPointF(24, 10), QPointF(17, 17), QPointF(10, 15))
    p.drawPath(path)
    p.setPen(_pen(c, 1.6))
    p.drawLine(QPointF(9, 15), QPointF(8, 21))


def _move(p: QPainter, c: QColor) -> None:
    p.setPen(_pen(c, 1.6))
    p.drawLine(QPointF(12, 3), QPointF(12, 21))
    p.drawLine(QPointF(3, 12), QPointF(21, 12))
    for tip, a, b in (((12, 3), (9, 6), (15, 6)), ((12, 21), (9, 18), (15, 18)),
                      ((3, 12), (6, 9), (6, 15)), ((21, 12), (18, 9), (18, 15))):
        p.drawPolyline(QPolygonF([QPointF(*a), QPointF(*tip), QPointF(*b)]))


def _eyedropper(p: QPainter, c: QColor) -> None:
    p.setPen(_pen(c, 2.2))
    p.drawLine(QPointF(5, 19), QPointF(14, 10))
    p.setBrush(c)
    p.setPen(_pen(c, 1.2))
    p.drawEllipse(QRectF(14, 3, 7, 7))
    p.drawLine(QPointF(11, 7), QPointF(17, 13))


def _fill(p: QPainter, c: QColor) -> None:
    p.setPen(_pen(c, 1.6))
    bucket = QPolygonF([QPointF(4, 10), QPointF(12, 3), QPointF(19, 10), QPointF(11, 18)])
    p.drawPolygon(bucket)
    p.setBrush(c)
    p.drawEllipse(QRectF(17, 14, 4, 6))


def _zoom(p: QPainter, c: QColor) -> None:
    p.setPen(_pen(c, 1.8))
    p.drawEllipse(QRectF(3, 3, 13, 13))
    p.setPen(_pen(c, 3.0))
    p.drawLine(QPointF(15, 15), QPointF(21, 21))
    p.setPen(_pen(c, 1.4))
    p.drawLine(QPointF(6.5, 9.5), QPointF(12.5, 9.5))
    p.drawLine(QPointF(9.5, 6.5), QPointF(9.5, 12.5))


def _pan(p: QPainter, c: QColor) -> None:
    p.setPen(_pen(c, 1.5))
    for x, top in ((7, 7), (10, 4), (13, 4), (16, 6)):
        p.drawLine(QPointF(x, 13), QPointF(x, top))
    path = QPainterPath(QPointF(5.5, 12))
    path.lineTo(5.5, 16)
    path.cubicTo(QPointF(6, 20), QPointF(9, 21), QPointF(12, 21))
    path.cubicTo(QPointF(16, 21), QPointF(18, 18), QPointF(18, 14))
    path.lineTo(18, 9)
    p.drawPath(path)


_DRAW: dict[str, Callable[[QPainter, QColor], None]] = {
    "brush": _brush, "eraser": _eraser, "mask_brush": _mask, "rect_select": _rect,
    "ellipse_select": _ellipse, "lasso": _lasso, "move": _move, "eyedropper": _eyedropper,
    "fill": _fill, "zoom": _zoom, "pan": _pan,
}


def painted_icon(draw: Callable[[QPainter, QColor], None]) -> QIcon:
    """A SIZE-px icon (1× and 2× pixmaps) painted by ``draw`` in the palette's text colour."""
    color = QGuiApplication.palette().color(QPalette.ColorRole.WindowText)
    icon = QIcon()
    for scale in (1, 2):
        pm = QPixmap(SIZE * scale, SIZE * scale)
        pm.setDevicePixelRatio(scale)
        pm.fill(Qt.GlobalColor.transparent)
        p = QPainter(pm)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        draw(p, color)
        p.end()
        icon.addPixmap(pm)
    return icon


def tool_icon(tool_id: str) -> QIcon:
    return painted_icon(_DRAW.get(tool_id, _rect))
