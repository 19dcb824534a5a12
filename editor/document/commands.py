"""Concrete undo commands. Each one only records what changed and calls
the document's private mutators, which keep the signals and render cache
consistent; so undo/redo and the original edit share one code path."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from .geometry import Rect
from .layers import LayerGroup, Node, RasterLayer
from .selection import mask_bounds
from .tiles import TileDelta, TileGrid
from .undo import Command

if TYPE_CHECKING:
    from .document import Document


class PixelsCommand(Command):
    """Tile-level before/after of one layer's pixels or mask."""

    def __init__(self, doc: "Document", layer: RasterLayer, target: str, delta: TileDelta, text: str) -> None:
        self.doc, self.layer, self.target, self.delta, self.text = doc, layer, target, delta, text

    def redo(self) -> None:
        self.doc._apply_delta(self.layer, self.target, self.delta, "after")

    def undo(self) -> None:
        self.doc._apply_delta(self.layer, self.target, self.delta, "before")

    def byte_size(self) -> int:
        return self.delta.byte_size()


class InsertNodeCommand(Command):
    def __init__(self, doc: "Document", node: Node, parent: LayerGroup, index: int, text: str = "Add layer") -> None:
        self.doc, self.node, self.parent, self.index, self.text = doc, node, parent, index, text

    def redo(self) -> None:
        self.doc._insert_node(self.node, self.parent, self.index)

    def undo(self) -> None:
        self.doc._remove_node(self.node)

    def byte_size(self) -> int:
        # While applied the layer lives in the document, not in the history;
        # an undone insert sits in the redo branch, which the next push drops.
        return 0


class RemoveNodeCommand(Command):
    def __init__(self, doc: "Document", node: Node, text: str = "Remove layer") -> None:
        self.doc, self.node, self.text = doc, node, text
        assert node.parent is not None
        self.parent = node.parent
        self.index = node.index_in_parent()

    def redo(self) -> None:
        self.doc._remove_node(self.node)

    def undo(self) -> None:
        self.doc._insert_node(self.node, self.parent, self.index)

    def byte_size(self) -> int:
        return self.node.byte_size()


class MoveNodeCommand(Command):
    """Reorder within a group or move to another group."""

    def __init__(self, doc: "Document", node: Node, parent: LayerGroup, index: int, text: str = "Move layer") -> None:
        assert node.parent is not None
        self.doc, self.node, self.text = doc, node, text
        self.old_parent, self.old_index = node.parent, node.index_in_parent()
        self.new_parent, self.new_index = parent, index

    def redo(self) -> None:
        self.doc._remove_node(self.node)
        self.doc._insert_node(self.node, self.new_parent, self.new_index)

    def undo(self) -> None:
        self.doc._remove_node(self.node)
        self.doc._insert_node(self.node, self.old_parent, self.old_index)


class SetPropertyCommand(Command):
    """One attribute of a node (name, opacity, visible, blend_mode, alpha_locked,
    isolated, attributes, offset as (x, y)). Repeated changes of the same
    property of the same node merge, so dragging a slider is one step."""

    def __init__(self, doc: "Document", node: Node, prop: str, new: Any, text: str = "") -> None:
        self.doc, self.node, self.prop, self.new = doc, node, prop, new
        self.old = doc._get_property(node, prop)
        self.text = text or f"Change {prop.replace('_', ' ')}"

    def redo(self) -> None:
        self.doc._set_property(self.node, self.prop, self.new)

    def undo(self) -> None:
        self.doc._set_property(self.node, self.prop, self.old)

    def merge_key(self) -> Optional[object]:
        if self.prop in ("opacity", "offset", "name"):
            return ("prop", self.node.uid, self.prop)
        return None

    def merge_with(self, newer: Command) -> bool:
        assert isinstance(newer, SetPropertyCommand)
        self.new = newer.new
        return True


class SetMaskCommand(Command):
    """Attach, replace or remove (None) a layer's mask grid."""

    def __init__(self, doc: "Document", layer: RasterLayer, new: Optional[TileGrid], text: str) -> None:
        self.doc, self.layer, self.old, self.new, self.text = doc, layer, layer.mask, new, text

    def redo(self) -> None:
        self.doc._set_mask(self.layer, self.new)

    def undo(self) -> None:
        self.doc._set_mask(self.layer, self.old)

    def byte_size(self) -> int:
        return sum(g.byte_size() for g in (self.old, self.new) if g is not None)


class PackedMask:
    """A selection mask stored as its bounding-box crop (undo memory)."""

    __slots__ = ("width", "height", "rect", "crop")

    def __init__(self, mask: Optional[np.ndarray], width: int, height: int) -> None:
        self.width, self.height = width, height
        self.rect = mask_bounds(mask)
        self.crop = None if mask is None else np.ascontiguousarray(mask[self.rect.slices()])

    def unpack(self) -> Optional[np.ndarray]:
        if self.crop is None:
            return None
        out = np.zeros((self.height, self.width), dtype=np.uint8)
        out[self.rect.slices()] = self.crop
        return out

    def byte_size(self) -> int:
        return 0 if self.crop is None else self.crop.nbytes


class SetSelectionCommand(Command):
    def __init__(self, doc: "Document", new: Optional[np.ndarray], text: str = "Select") -> None:
        self.doc, self.text = doc, text
        self.old = PackedMask(doc.selection.mask, doc.width, doc.height)
        self.new = PackedMask(new, doc.width, doc.height)

    def redo(self) -> None:
        self.doc._set_selection(self.new.unpack())

    def undo(self) -> None:
        self.doc._set_selection(self.old.unpack())

    def byte_size(self) -> int:
        return self.old.byte_size() + self.new.byte_size()


class ResizeCanvasCommand(Command):
    """New canvas size; existing content moves by (dx, dy). Layer pixels are
    never cropped (only offsets change), so undo is exact and cheap."""

    def __init__(self, doc: "Document", width: int, height: int, dx: int, dy: int, new_selection: Optional[np.ndarray]):
        self.doc, self.text = doc, "Resize canvas"
        self.old_size = (doc.width, doc.height)
        self.new_size = (width, height)
        self.dx, self.dy = dx, dy
        self.old_sel = PackedMask(doc.selection.mask, doc.width, doc.height)
        self.new_sel = PackedMask(new_selection, width, height)

    def redo(self) -> None:
        self.doc._resize(self.new_size[0], self.new_size[1], self.dx, self.dy, self.new_sel.unpack())

    def undo(self) -> None:
        self.doc._resize(self.old_size[0], self.old_size[1], -self.dx, -self.dy, self.old_sel.unpack())

    def byte_size(self) -> int:
        return self.old_sel.byte_size() + self.new_sel.byte_size()


def canvas_rect_of(doc: "Document") -> Rect:
    return Rect(0, 0, doc.width, doc.height)
