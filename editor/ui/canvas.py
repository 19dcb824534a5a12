"""The canvas widget: shows the document, routes pointer input to tools.

Drawing pipeline: the model reports dirty rects -> display tiles are marked
dirty -> a zero-timer re-renders only those rects (outside paintEvent) ->
``update()`` of the matching widget area -> paintEvent blits cached QImages.
Navigation: wheel zooms at the cursor, Shift+wheel / trackpad scrolls, Space+
drag or middle-drag pans, Ctrl+0 fits, Ctrl+1 is 100 %.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from PySide6.QtCore import QPoint, QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import (
    QBrush, QColor, QCursor, QDragEnterEvent, QDropEvent, QKeyEvent, QMouseEvent, QPainter, QPen,
    QPixmap, QPointingDevice, QTabletEvent, QWheelEvent,
)
from PySide6.QtWidgets import QWidget

from editor.document import Document, Rect
from editor.headless import is_openable

from .selection_overlay import SelectionOverlay, outline_path
from .session import EditorSession
from .tile_cache import DisplayTiles, level_for_zoom
from .tools import PointerEvent, Tool, create_tools
from .tools.selection_tools import draw_dashed
from .viewport import Viewport

BACKGROUND = QColor(46, 47, 50)
WHEEL_ZOOM_PER_NOTCH = 1.25
# Rendering per event-loop turn; the rest continues on the next turn, so
# input keeps flowing while a big view fills in.
REFRESH_BUDGET_S = 0.025


def _checker_brush() -> QBrush:
    pm = QPixmap(16, 16)
    pm.fill(QColor(236, 236, 236))
    p = QPainter(pm)
    p.fillRect(0, 0, 8, 8, QColor(200, 200, 200))
    p.fillRect(8, 8, 8, 8, QColor(200, 200, 200))
    p.end()
    return QBrush(pm)


class CanvasView(QWidget):
    zoom_changed = Signal(float)
    cursor_moved = Signal(object)  # QPointF in image coordinates, or None when the pointer left
    files_dropped = Signal(list, QPointF)  # local paths, drop position in image coordinates
    message = Signal(str)
    tool_changed = Signal(str)

    def __init__(self, session: EditorSession, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.session = session
        self.viewport = Viewport()
        self.tiles = DisplayTiles(self._render_canvas)
        self.overlay = SelectionOverlay()
        # Painters drawn over the document (the AI frame and its preview): objects with
        # paint(painter, viewport); and what the frame tool edits (set by the AI host).
        self.overlays: list = []
        self.frame_target = None
        self.tools: dict[str, Tool] = create_tools(self)
        self.tool: Tool = self.tools["brush"]
        self._checker = _checker_brush()
        self._flush_timer = QTimer(self)
        self._flush_timer.setSingleShot(True)
        self._flush_timer.setInterval(0)
        self._flush_timer.timeout.connect(self._flush)
        self._fitted = False
        self._auto_fit = False
        self._space_held = False
        self._panning = False
        self._pan_last = QPointF()
        self._tablet_down = False
        self._hover: Optional[QPointF] = None  # widget coordinates
        self.setMouseTracking(True)
        self.setTabletTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAcceptDrops(True)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setMinimumSize(200, 150)
        self.setCursor(self.tool.cursor())
        session.document_changed.connect(self._on_document_changed)
        self._attach(session.document)

    # ------------------------------------------------------------ document
    @property
    def document(self) -> Document:
        return self.session.document

    def _attach(self, doc: Document) -> None:
        bridge = self.session.bridge
        bridge.pixels_changed.connect(self._on_pixels_changed)
        bridge.selection_changed.connect(self._on_selection_changed)
        bridge.canvas_resized.connect(self._on_canvas_resized)
        self.tiles.set_canvas(doc.width, doc.height)
        self.tiles.clear()
        self.overlay.set_canvas(doc.width, doc.height)
        self.overlay.set_mask(doc.selection.mask)

    def _on_document_changed(self, doc: Document) -> None:
        self.tool.cancel()
        self._attach(doc)
        self.fit_to_window()

    def _render_canvas(self, rect: Rect) -> np.ndarray:
        return self.document.render(rect, premultiplied=True)

    def _on_pixels_changed(self, rect: Rect) -> None:
        self.tiles.invalidate(rect)
        self._schedule_flush()

    def _on_selection_changed(self) -> None:
        mask = self.document.selection.mask
        if mask is not None and mask is self.overlay.mask:
            # The mask brush already tinted this exact array; only the outline is new.
            self.overlay.outline = outline_path(mask)
        else:
            self.overlay.set_mask(mask)
        self._schedule_flush()
        self.update()

    def _on_canvas_resized(self, width: int, height: int, dx: int, dy: int) -> None:
        # Keep the old content where it was on screen (extending left/top moves the origin).
        self.viewport.pan(-dx * self.viewport.zoom, -dy * self.viewport.zoom)
        self.tiles.set_canvas(width, height)
        self.overlay.set_canvas(width, height)
        self.overlay.set_mask(self.document.selection.mask)
        self._view_changed()

    # ToolHost: the mask brush shows its working copy while the pen is down.
    def set_working_selection(self, mask: Optional[np.ndarray], changed: Rect) -> None:
        if mask is None:
            self.overlay.set_mask(self.document.selection.mask)
        else:
            self.overlay.set_mask(mask, changed, outline=False)
        self._schedule_flush()

    # ------------------------------------------------------ tile refreshing
    def visible_image_rect(self) -> Rect:
        return self.viewport.image_rect_of(QRectF(self.rect()))

    def _schedule_flush(self) -> None:
        if not self._flush_timer.isActive():
            self._flush_timer.start()

    def _flush(self, budget_s: Optional[float] = REFRESH_BUDGET_S) -> bool:
        """Re-render dirty visible tiles (within a time budget), then repaint
        only what changed. Returns True when nothing is left to render."""
        visible = self.visible_image_rect()
        changed, done = self.tiles.refresh(visible, budget_s)
        if done:
            overlay_changed, done = self.overlay.tiles.refresh(visible, budget_s)
            changed = changed.union(overlay_changed)
        if not changed.is_empty():
            r = self.viewport.rect_to_widget(QRectF(changed.x, changed.y, changed.w, changed.h))
            self.update(r.toAlignedRect().adjusted(-2, -2, 2, 2))
        if not done:
            self._schedule_flush()
        return done

    def flush_all(self) -> None:
        """Render everything visible now (tests, screenshots)."""
        self._flush(None)

    def _view_changed(self) -> None:
        level = level_for_zoom(self.viewport.zoom)
        self.tiles.set_level(level)
        self.overlay.tiles.set_level(level)
        self._flush()
        self.update()
        self.zoom_changed.emit(self.viewport.zoom)

    # ------------------------------------------------------------ navigation
    def fit_to_window(self) -> None:
        doc = self.document
        self.viewport.fit(doc.width, doc.height, self.width(), self.height())
        self._fitted = True
        self._auto_fit = True  # until the user zooms or pans, a resize (docks settling) fits again
        self._view_changed()

    def reveal(self, rect: QRectF, margin: float = 24.0) -> bool:
        """Bring an image-space ``rect`` (the generation frame, which may reach past
        the canvas) into view: zoom out just enough to show it with the canvas,
        centred. Returns whether the view changed."""
        vp = self.viewport
        inner = QRectF(self.rect()).adjusted(margin, margin, -margin, -margin)
        if inner.isEmpty() or inner.contains(vp.rect_to_widget(rect)):
            return False
        doc = self.document
        union = rect.united(QRectF(0, 0, doc.width, doc.height))
        vp.zoom = min(vp.zoom, inner.width() / max(union.width(), 1.0), inner.height() / max(union.height(), 1.0))
        centre = union.center()
        vp.offset = QPointF(round(self.width() / 2.0 - centre.x() * vp.zoom),
                            round(self.height() / 2.0 - centre.y() * vp.zoom))
        self._auto_fit = False
        self._view_changed()
        return True

    def set_zoom(self, zoom: float, anchor: Optional[QPointF] = None) -> None:
        anchor = anchor if anchor is not None else QPointF(self.width() / 2.0, self.height() / 2.0)
        self._auto_fit = False
        self.viewport.zoom_at(zoom, anchor)
        if abs(self.viewport.zoom - 1.0) < 1e-9:
            # Whole-pixel offset at 100 %: crisp pixels, no resampling seams.
            self.viewport.offset = QPointF(round(self.viewport.offset.x()), round(self.viewport.offset.y()))
        self._view_changed()

    def zoom_step(self, direction: int, anchor: Optional[QPointF] = None) -> None:
        self.set_zoom(Viewport.next_step(self.viewport.zoom, direction), anchor)

    def pan_by(self, dx: float, dy: float) -> None:
        self._auto_fit = False
        self.viewport.pan(dx, dy)
        self._view_changed()

    def show_message(self, text: str) -> None:
        self.message.emit(text)

    def update_overlay(self) -> None:
        self.update()

    # ----------------------------------------------------------------- tools
    def set_tool(self, tool_id: str) -> None:
        tool = self.tools[tool_id]
        if tool is self.tool:
            return
        self.tool.cancel()
        self.tool = tool
        self.setCursor(tool.cursor())
        self.update()
        self.tool_changed.emit(tool_id)

    # --------------------------------------------------------------- painting
    def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
        p = QPainter(self)
        p.fillRect(event.rect(), BACKGROUND)
        doc = self.document
        vp = self.viewport
        canvas = vp.rect_to_widget(QRectF(0, 0, doc.width, doc.height))
        p.save()
        p.setBrushOrigin(canvas.topLeft())
        p.fillRect(canvas.intersected(QRectF(event.rect())), self._checker)
        p.restore()

        visible = vp.image_rect_of(QRectF(event.rect()))
        p.save()
        p.setTransform(vp.transform())
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, vp.zoom < 1.0)
        for target, image, source in self.tiles.drawable(visible):
            p.drawImage(target, image, source)
        for target, image, source in self.overlay.tiles.drawable(visible):
            p.drawImage(target, image, source)
        p.restore()
        if self.tiles.needs_refresh(visible):
            self._schedule_flush()  # never render here; the timer will, then repaint

        p.setPen(QPen(QColor(20, 20, 22), 1))
        p.drawRect(canvas.adjusted(-1, -1, 0, 0))
        for overlay in self.overlays:
            overlay.paint(p, vp)
        outline = self.overlay.outline
        if not outline.isEmpty():
            draw_dashed(p, lambda: p.drawPath(vp.transform().map(outline)))
        self.tool.paint_overlay(p, vp)
        self._paint_brush_outline(p)
        p.end()

    def _brush_radius_widget(self) -> float:
        kind = self.tool.brush_kind
        if kind is None:
            return 0.0
        return self.session.brush(kind).size * self.viewport.zoom / 2.0

    def _paint_brush_outline(self, p: QPainter) -> None:
        r = self._brush_radius_widget()
        if self._hover is None or r <= 0 or self._panning:
            return
        p.save()
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        for color, width in ((QColor(0, 0, 0, 160), 3), (QColor(255, 255, 255, 220), 1)):
            p.setPen(QPen(color, width))
            p.drawEllipse(self._hover, r, r)
        p.restore()

    def _update_brush_outline(self, old: Optional[QPointF], new: Optional[QPointF]) -> None:
        r = self._brush_radius_widget() + 3
        if r <= 3:
            return
        for c in (old, new):
            if c is not None:
                self.update(QRectF(c.x() - r, c.y() - r, 2 * r, 2 * r).toAlignedRect())

    # ---------------------------------------------------------------- input
    def _pointer(self, widget_pos: QPointF, button, modifiers, pressure: float = 1.0,
                 tablet: bool = False, eraser: bool = False) -> PointerEvent:
        return PointerEvent(self.viewport.to_image(widget_pos), QPointF(widget_pos), pressure, button,
                            modifiers, tablet, eraser)

    def _set_hover(self, pos: Optional[QPointF]) -> None:
        old, self._hover = self._hover, (QPointF(pos) if pos is not None else None)
        self._update_brush_outline(old, self._hover)
        self.cursor_moved.emit(self.viewport.to_image(pos) if pos is not None else None)

    def _begin_pan(self, pos: QPointF) -> None:
        self._panning = True
        self._pan_last = QPointF(pos)
        self.setCursor(QCursor(Qt.CursorShape.ClosedHandCursor))

    def _end_pan(self) -> None:
        self._panning = False
        self.setCursor(QCursor(Qt.CursorShape.OpenHandCursor) if self._space_held else self.tool.cursor())

    def _press(self, ev: PointerEvent) -> None:
        self.setFocus(Qt.FocusReason.MouseFocusReason)
        if ev.button == Qt.MouseButton.MiddleButton or (self._space_held and ev.button == Qt.MouseButton.LeftButton):
            self._begin_pan(ev.widget_pos)
            return
        if self.tool.active:
            return  # a second button while drawing: ignore
        self.tool.press(ev)

    def _move(self, ev: PointerEvent) -> None:
        self._set_hover(ev.widget_pos)
        if self._panning:
            d = ev.widget_pos - self._pan_last
            self._pan_last = QPointF(ev.widget_pos)
            self.pan_by(d.x(), d.y())
            return
        if self.tool.active:
            self.tool.move(ev)
        else:
            self.tool.hover(ev)

    def _release(self, ev: PointerEvent) -> None:
        if self._panning:
            if ev.button in (Qt.MouseButton.MiddleButton, Qt.MouseButton.LeftButton):
                self._end_pan()
            return
        if self.tool.active:
            self.tool.release(ev)
            self.setCursor(self.tool.cursor())

    def mousePressEvent(self, e: QMouseEvent) -> None:  # noqa: N802
        if self._tablet_down:
            return  # synthesized from a tablet event we already handled
        self._press(self._pointer(e.position(), e.button(), e.modifiers()))

    def mouseMoveEvent(self, e: QMouseEvent) -> None:  # noqa: N802
        if self._tablet_down:
            return
        pe = self._pointer(e.position(), Qt.MouseButton.NoButton, e.modifiers())
        if self.tool.active and e.buttons() == Qt.MouseButton.NoButton:
            # The release went missing (grab lost, window switch): end the stroke
            # here rather than leave it open and block undo.
            pe.button = Qt.MouseButton.LeftButton
            self._release(pe)
            return
        if self._panning and e.buttons() == Qt.MouseButton.NoButton:
            self._end_pan()
        self._move(pe)

    def mouseReleaseEvent(self, e: QMouseEvent) -> None:  # noqa: N802
        if self._tablet_down:
            return
        self._release(self._pointer(e.position(), e.button(), e.modifiers()))

    def tabletEvent(self, e: QTabletEvent) -> None:  # noqa: N802
        e.accept()  # no synthesized mouse events: pressure would be lost
        eraser = e.pointerType() == QPointingDevice.PointerType.Eraser
        t = e.type()
        if t == QTabletEvent.Type.TabletPress:
            self._tablet_down = True
            self._press(self._pointer(e.position(), e.button(), e.modifiers(), e.pressure(), True, eraser))
        elif t == QTabletEvent.Type.TabletMove:
            self._move(self._pointer(e.position(), Qt.MouseButton.NoButton, e.modifiers(), e.pressure(), True, eraser))
        elif t == QTabletEvent.Type.TabletRelease:
            self._release(self._pointer(e.position(), e.button(), e.modifiers(), e.pressure(), True, eraser))
            self._tablet_down = False

    def wheelEvent(self, e: QWheelEvent) -> None:  # noqa: N802
        angle = e.angleDelta()
        pixels = e.pixelDelta()
        mods = e.modifiers()
        if mods & Qt.KeyboardModifier.ShiftModifier:
            d = angle.y() or angle.x()
            self.pan_by(d / 2.0, 0.0)
        elif not pixels.isNull() and not mods & Qt.KeyboardModifier.ControlModifier:
            self.pan_by(pixels.x(), pixels.y())  # trackpad two-finger scroll
        elif angle.y():
            self.set_zoom(self.viewport.zoom * WHEEL_ZOOM_PER_NOTCH ** (angle.y() / 120.0), e.position())
        e.accept()

    def keyPressEvent(self, e: QKeyEvent) -> None:  # noqa: N802
        if e.key() == Qt.Key.Key_Space:
            if not e.isAutoRepeat() and not self._panning:
                self._space_held = True
                self.setCursor(QCursor(Qt.CursorShape.OpenHandCursor))
            e.accept()
            return
        if e.key() == Qt.Key.Key_Escape and self.tool.active:
            self.tool.cancel()
            e.accept()
            return
        if self.tool.key_press(e):
            e.accept()
            return
        super().keyPressEvent(e)

    def keyReleaseEvent(self, e: QKeyEvent) -> None:  # noqa: N802
        if e.key() == Qt.Key.Key_Space and not e.isAutoRepeat():
            self._space_held = False
            if not self._panning:
                self.setCursor(self.tool.cursor())
            e.accept()
            return
        super().keyReleaseEvent(e)

    def focusOutEvent(self, e) -> None:  # noqa: N802
        self._space_held = False  # a missed key release must not leave pan mode stuck
        super().focusOutEvent(e)

    def leaveEvent(self, e) -> None:  # noqa: N802
        self._set_hover(None)
        super().leaveEvent(e)

    def resizeEvent(self, e) -> None:  # noqa: N802
        # The first fit happens before the docks have their final widths; refitting while the view is
        # still the automatic one keeps the canvas (and a frame beside it) clear of the docks.
        if not self._fitted or self._auto_fit:
            self.fit_to_window()
        else:
            # Keep the view centred on the same image point.
            old, new = e.oldSize(), e.size()
            if old.isValid():
                self.viewport.pan((new.width() - old.width()) / 2.0, (new.height() - old.height()) / 2.0)
            self._view_changed()
        super().resizeEvent(e)

    def showEvent(self, e) -> None:  # noqa: N802
        if not self._fitted:
            self.fit_to_window()
        super().showEvent(e)

    # ------------------------------------------------------------ drag & drop
    @staticmethod
    def _dropped_paths(e) -> list[str]:
        mime = e.mimeData()
        if not mime.hasUrls():
            return []
        return [u.toLocalFile() for u in mime.urls() if u.isLocalFile() and is_openable(u.toLocalFile())]

    def dragEnterEvent(self, e: QDragEnterEvent) -> None:  # noqa: N802
        if self._dropped_paths(e):
            e.acceptProposedAction()
        else:
            e.ignore()

    def dragMoveEvent(self, e) -> None:  # noqa: N802
        if self._dropped_paths(e):
            e.acceptProposedAction()

    def dropEvent(self, e: QDropEvent) -> None:  # noqa: N802
        paths = self._dropped_paths(e)
        if paths:
            e.acceptProposedAction()
            self.files_dropped.emit(paths, self.viewport.to_image(e.position()))

    def widget_point(self, image_x: float, image_y: float) -> QPoint:
        """Widget position of an image point (handy for scripted input)."""
        return self.viewport.to_widget(QPointF(image_x, image_y)).toPoint()
