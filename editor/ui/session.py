"""The editing state around one document: active layer, colours, brushes,
tool options. Observable properties with ``<name>_changed`` signals (as in
Krita AI Diffusion), so panels bind to them instead of to each other.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from PySide6.QtCore import QObject, Signal

from editor.document import BrushSettings, Document, Node, RasterLayer, SelectionOp

from .bridge import DocumentBridge

# Separate settings per brush kind: users asked for a mask brush that does
# not share size/hardness with the paint brush (common complaint #10).
BRUSH_KINDS = ("paint", "erase", "mask")
_DEFAULT_BRUSHES = {
    "paint": BrushSettings(size=24.0, hardness=0.8, opacity=1.0, flow=1.0, spacing=0.1),
    "erase": BrushSettings(size=40.0, hardness=0.6, opacity=1.0, flow=1.0, spacing=0.1),
    "mask": BrushSettings(size=64.0, hardness=0.5, opacity=1.0, flow=1.0, spacing=0.1, pressure_size=True),
}
MIN_BRUSH_SIZE = 1.0
MAX_BRUSH_SIZE = 1000.0


class ToolRefused(Exception):
    """A tool cannot act on the current target; the message is for the status bar."""


class EditorSession(QObject):
    document_changed = Signal(object)  # the new Document
    active_changed = Signal()  # active node or edit target (pixels / mask)
    color_changed = Signal(tuple)
    brush_changed = Signal(str)  # brush kind
    options_changed = Signal()  # selection / fill / smoothing options
    modified_changed = Signal(bool)

    def __init__(self, document: Document, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.document = document
        self.bridge = DocumentBridge(document, self)
        self._active_uid: Optional[int] = None
        self.edit_target = "pixels"
        self.color: tuple[int, int, int] = (20, 20, 20)
        self.brushes: dict[str, BrushSettings] = dict(_DEFAULT_BRUSHES)
        self.smoothing = 0.35
        self.selection_feather = 0.0
        self.selection_mode = SelectionOp.REPLACE
        self.fill_tolerance = 32
        self.fill_sample_merged = False
        self.fill_whole_selection = False
        # Set when a document is restored from an autosave: it differs from its
        # file although its (empty) undo history says "clean".
        self._force_modified = False
        self._was_modified = False
        self._connect_bridge()
        self._pick_fallback_active()

    # ----------------------------------------------------------- document
    def set_document(self, document: Document, select: Optional[Node] = None, modified: bool = False) -> None:
        self.bridge.detach()
        self.bridge.deleteLater()
        self.document = document
        self.bridge = DocumentBridge(document, self)
        self._connect_bridge()
        self._force_modified = modified
        self._active_uid = None
        self.edit_target = "pixels"
        if select is not None and document.find(select.uid) is not None:
            self._active_uid = select.uid
        else:
            self._pick_fallback_active()
        self.document_changed.emit(document)
        self.active_changed.emit()
        self._emit_modified()

    def _connect_bridge(self) -> None:
        self.bridge.layers_changed.connect(self._on_layers_changed)
        self.bridge.history_changed.connect(self._emit_modified)

    def is_modified(self) -> bool:
        return self._force_modified or not self.document.undo_stack.is_clean()

    def mark_saved(self) -> None:
        self._force_modified = False
        self._emit_modified()

    def _emit_modified(self) -> None:
        now = self.is_modified()
        if now != self._was_modified:
            self._was_modified = now
            self.modified_changed.emit(now)

    # -------------------------------------------------------- active layer
    def active_node(self) -> Optional[Node]:
        if self._active_uid is None:
            return None
        return self.document.find(self._active_uid)

    def active_layer(self) -> Optional[RasterLayer]:
        node = self.active_node()
        return node if isinstance(node, RasterLayer) else None

    def set_active(self, node: Optional[Node], target: str = "pixels") -> None:
        uid = node.uid if node is not None else None
        if target == "mask" and not (isinstance(node, RasterLayer) and node.mask is not None):
            target = "pixels"
        if uid == self._active_uid and target == self.edit_target:
            return
        self._active_uid = uid
        self.edit_target = target
        self.active_changed.emit()

    def _on_layers_changed(self, _node: object) -> None:
        node = self.active_node()
        if node is None:
            self._pick_fallback_active()
            self.active_changed.emit()
        elif self.edit_target == "mask" and (not isinstance(node, RasterLayer) or node.mask is None):
            self.edit_target = "pixels"  # the mask was deleted or applied (or undone)
            self.active_changed.emit()

    def _pick_fallback_active(self) -> None:
        layers = self.document.raster_layers()
        nodes = list(self.document.nodes())
        pick = layers[-1] if layers else (nodes[-1] if nodes else None)
        self._active_uid = pick.uid if pick is not None else None
        self.edit_target = "pixels"

    def paint_target(self) -> tuple[RasterLayer, str]:
        """The layer and target ("pixels" or "mask") painting tools act on."""
        node = self.active_node()
        if node is None:
            raise ToolRefused("No layer to paint on: add a layer first (Ctrl+Shift+N)")
        if not isinstance(node, RasterLayer):
            raise ToolRefused(f"“{node.name}” is a group: select a paint layer")
        if not node.effectively_visible():
            raise ToolRefused(f"“{node.name}” is hidden: show it to paint on it")  # as Krita refuses
        return node, self.edit_target

    # ------------------------------------------------------- colour, brush
    def set_color(self, rgb: tuple[int, int, int]) -> None:
        rgb = tuple(int(min(max(c, 0), 255)) for c in rgb[:3])  # type: ignore[assignment]
        if rgb != self.color:
            self.color = rgb  # type: ignore[assignment]
            self.color_changed.emit(self.color)

    def brush(self, kind: str) -> BrushSettings:
        return self.brushes[kind]

    def update_brush(self, kind: str, **changes) -> None:
        if "size" in changes:
            changes["size"] = float(min(max(changes["size"], MIN_BRUSH_SIZE), MAX_BRUSH_SIZE))
        new = dataclasses.replace(self.brushes[kind], **changes)
        if new != self.brushes[kind]:
            self.brushes[kind] = new
            self.brush_changed.emit(kind)

    def scale_brush(self, kind: str, factor: float) -> None:
        """``[`` / ``]``: multiplicative steps feel even from 2 px to 500 px."""
        size = self.brushes[kind].size
        new = size * factor
        # Always move by at least one pixel so small brushes do not get stuck.
        new = max(new, size + 1) if factor > 1 else min(new, size - 1)
        self.update_brush(kind, size=round(new))

    def set_option(self, name: str, value) -> None:
        if getattr(self, name) != value:
            setattr(self, name, value)
            self.options_changed.emit()
