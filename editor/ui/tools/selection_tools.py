"""Rectangle, ellipse and freehand lasso selection.

Each finished drag is one model call (``select_rect`` / ``select_ellipse`` /
``select_polygon``), hence one undo step. A click without a drag deselects
(Krita, Photoshop). Modifiers pick the operation: Shift adds, Alt
subtracts, Shift+Alt intersects; otherwise the tool option's mode.
"""

from __future__ import annotations

import math
from typing import Optional

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPen, QPolygonF

from editor.document import Rect, SelectionOp

from ..viewport import Viewport
from .base import PointerEvent, Tool, selection_op

CLICK_DISTANCE = 3.0  # widget pixels: less than this is a click, not a drag


def draw_dashed(painter: QPainter, draw) -> None:
    """Black/white dashes: visible on any background."""
    painter.save()
    painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    pen = QPen(QColor(255, 255, 255), 1)
    pen.setCosmetic(True)
    painter.setPen(pen)
    painter.setBrush(Qt.BrushStyle.NoBrush)
    draw()
    pen = QPen(QColor(0, 0, 0), 1, Qt.PenStyle.CustomDashLine)
    pen.setDashPattern([4, 4])
    pen.setCosmetic(True)
    painter.setPen(pen)
    draw()
    painter.restore()


class _ShapeSelectTool(Tool):
    shape = "rect"

    def __init__(self, host) -> None:
        super().__init__(host)
        self._start: Optional[QPointF] = None
        self._end: Optional[QPointF] = None
        self._start_widget = QPointF()
        self._op = SelectionOp.REPLACE

    def press(self, ev: PointerEvent) -> None:
        if ev.button != Qt.MouseButton.LeftButton:
            return
        self._start = self._end = QPointF(ev.pos)
        self._start_widget = QPointF(ev.widget_pos)
        self._op = selection_op(ev.modifiers, self.session.selection_mode)
        self.active = True

    def move(self, ev: PointerEvent) -> None:
        if self.active:
            self._end = QPointF(ev.pos)
            self.host.update_overlay()

    def release(self, ev: PointerEvent) -> None:
        if not self.active:
            return
        self.active = False
        self._end = QPointF(ev.pos)
        moved = (ev.widget_pos - self._start_widget).manhattanLength()
        rect = self.pixel_rect()
        self.host.update_overlay()
        doc = self.session.document
        if moved < CLICK_DISTANCE or rect.is_empty():
            if self._op is SelectionOp.REPLACE:
                doc.select_none()
            return
        feather = self.session.selection_feather
        if self.shape == "rect":
            doc.select_rect(rect, self._op, feather)
        else:
            doc.select_ellipse(rect, self._op, feather)

    def cancel(self) -> None:
        self.active = False
        self.host.update_overlay()

    def pixel_rect(self) -> Rect:
        """The dragged box snapped to whole pixels."""
        if self._start is None or self._end is None:
            return Rect(0, 0, 0, 0)
        x0, x1 = sorted((self._start.x(), self._end.x()))
        y0, y1 = sorted((self._start.y(), self._end.y()))
        return Rect.from_bounds(round(x0), round(y0), round(x1), round(y1))

    def paint_overlay(self, painter: QPainter, viewport: Viewport) -> None:
        if not self.active:
            return
        r = self.pixel_rect()
        box = viewport.rect_to_widget(QRectF(r.x, r.y, r.w, r.h))
        draw_dashed(painter, lambda: painter.drawRect(box) if self.shape == "rect" else painter.drawEllipse(box))


class RectSelectTool(_ShapeSelectTool):
    tool_id = "rect_select"
    label = "Rectangle select"
    shape = "rect"


class EllipseSelectTool(_ShapeSelectTool):
    tool_id = "ellipse_select"
    label = "Ellipse select"
    shape = "ellipse"


class LassoTool(Tool):
    tool_id = "lasso"
    label = "Lasso select"

    def __init__(self, host) -> None:
        super().__init__(host)
        self._points: list[QPointF] = []
        self._last_widget = QPointF()
        self._op = SelectionOp.REPLACE

    def press(self, ev: PointerEvent) -> None:
        if ev.button != Qt.MouseButton.LeftButton:
            return
        self._points = [QPointF(ev.pos)]
        self._last_widget = QPointF(ev.widget_pos)
        self._op = selection_op(ev.modifiers, self.session.selection_mode)
        self.active = True

    def move(self, ev: PointerEvent) -> None:
        if not self.active:
            return
        # One vertex per ~2 screen pixels: smooth enough, and keeps the polygon small.
        if math.dist((ev.widget_pos.x(), ev.widget_pos.y()), (self._last_widget.x(), self._last_widget.y())) >= 2.0:
            self._points.append(QPointF(ev.pos))
            self._last_widget = QPointF(ev.widget_pos)
            self.host.update_overlay()

    def release(self, ev: PointerEvent) -> None:
        if not self.active:
            return
        self.active = False
        self._points.append(QPointF(ev.pos))
        pts = [(p.x(), p.y()) for p in self._points]
        self._points = []
        self.host.update_overlay()
        doc = self.session.document
        if len(pts) < 3 or abs(_signed_area(pts)) < 1.0:
            if self._op is SelectionOp.REPLACE:
                doc.select_none()
            return
        doc.select_polygon(pts, self._op, self.session.selection_feather)

    def cancel(self) -> None:
        self.active = False
        self._points = []
        self.host.update_overlay()

    def paint_overlay(self, painter: QPainter, viewport: Viewport) -> None:
        if not self.active or len(self._points) < 2:
            return
        poly = QPolygonF([viewport.to_widget(p) for p in self._points])
        draw_dashed(painter, lambda: painter.drawPolyline(poly))


def _signed_area(pts: list[tuple[float, float]]) -> float:
    return 0.5 * sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1]))
