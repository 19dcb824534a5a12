"""The frame tool's icon, drawn like the other tool icons (palette text colour)."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QIcon, QPainter, QPen, QPolygonF

from editor.ui.icons import painted_icon


def _draw(p: QPainter, colour: QColor) -> None:
    pen = QPen(colour, 1.6)
    pen.setJoinStyle(Qt.PenJoinStyle.MiterJoin)
    p.setPen(pen)
    p.drawRect(QRectF(3.5, 5.5, 15, 13))
    p.setBrush(colour)
    for x, y in ((3.5, 5.5), (18.5, 5.5), (3.5, 18.5), (18.5, 18.5)):
        p.drawRect(QRectF(x - 1.8, y - 1.8, 3.6, 3.6))
    # A four-point spark: "generate here".
    c = QPointF(11, 12)
    spark = QPolygonF([QPointF(c.x(), c.y() - 4.5), QPointF(c.x() + 1.2, c.y() - 1.2), QPointF(c.x() + 4.5, c.y()),
                       QPointF(c.x() + 1.2, c.y() + 1.2), QPointF(c.x(), c.y() + 4.5),
                       QPointF(c.x() - 1.2, c.y() + 1.2), QPointF(c.x() - 4.5, c.y()),
                       QPointF(c.x() - 1.2, c.y() - 1.2)])
    p.setPen(Qt.PenStyle.NoPen)
    p.drawPolygon(spark)


def frame_icon() -> QIcon:
    return painted_icon(_draw)
