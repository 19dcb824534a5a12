"""Layer operations as QActions (Layer menu, layer panel buttons, shortcuts).

Every action is one call into the document API (or one macro), hence one
undo step; views update from the model's signals, never from here.
"""

from __future__ import annotations

import re
from typing import Callable, Optional

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction, QKeySequence

from editor.document import LayerGroup, Node, RasterLayer

from .session import EditorSession


class LayerActions(QObject):
    message = Signal(str)

    def __init__(self, session: EditorSession, parent: QObject) -> None:
        super().__init__(parent)
        self.session = session
        self.actions: dict[str, QAction] = {}
        a = self._add
        a("new_layer", "&New Layer", self.add_layer, "Ctrl+Shift+N", "Add an empty layer above the active one")
        a("new_group", "New &Group", self.add_group, None, "Add an empty group above the active layer")
        a("group_layer", "Group La&yer", self.group_active, "Ctrl+G", "Put the active layer into a new group")
        a("duplicate", "&Duplicate Layer", self.duplicate, "Ctrl+J", "Duplicate the active layer or group")
        a("delete", "De&lete Layer", self.delete, None, "Delete the active layer or group")
        a("raise", "&Raise Layer", lambda: self.shift(1), "Ctrl+]", "Move the layer up")
        a("lower", "Lo&wer Layer", lambda: self.shift(-1), "Ctrl+[", "Move the layer down")
        a("merge_down", "&Merge Down", self.merge_down, "Ctrl+E", "Merge the layer into the one below")
        a("add_mask", "Add &Mask", lambda: self.add_mask(False), None, "Add a layer mask that reveals everything")
        a("mask_from_selection", "Add Mask from &Selection", lambda: self.add_mask(True), None,
          "Add a layer mask that reveals the selection")
        a("delete_mask", "Delete Mas&k", self.delete_mask, None, "Remove the layer mask")
        a("apply_mask", "A&pply Mask", self.apply_mask, None, "Bake the mask into the layer's transparency")
        a("clear", "&Clear", self.clear, "Delete", "Erase the selected pixels of the active layer")
        a("fill_fg", "&Fill with Colour", self.fill_with_color, "Shift+Backspace",
          "Fill the selection (or the layer) with the paint colour")
        session.active_changed.connect(self._update_enabled)
        session.document_changed.connect(self._reconnect)
        self._reconnect()

    def _add(self, key: str, text: str, slot: Callable[[], None], shortcut: Optional[str], tip: str) -> None:
        act = QAction(text, self)
        if shortcut:
            act.setShortcut(QKeySequence(shortcut))
        act.setToolTip(f"{tip} ({shortcut})" if shortcut else tip)
        act.setStatusTip(tip)
        act.triggered.connect(lambda _checked=False, f=slot: self._run(f))
        self.actions[key] = act

    def _reconnect(self, *_args) -> None:
        self.session.bridge.layers_changed.connect(self._update_enabled)
        self._update_enabled()

    def _run(self, slot: Callable[[], None]) -> None:
        if self.session.document.stroke_active:
            return  # never change the tree under a stroke in progress
        try:
            slot()
        except (ValueError, TypeError, IndexError) as exc:
            self.message.emit(f"Cannot do that: {exc}")

    def _update_enabled(self, *_args) -> None:
        node = self.session.active_node()
        raster = isinstance(node, RasterLayer)
        has_mask = raster and node.mask is not None  # type: ignore[union-attr]
        below = _node_below(node)
        for key in ("duplicate", "delete", "raise", "lower", "group_layer"):
            self.actions[key].setEnabled(node is not None)
        self.actions["merge_down"].setEnabled(raster and isinstance(below, RasterLayer))
        self.actions["add_mask"].setEnabled(raster and not has_mask)
        self.actions["mask_from_selection"].setEnabled(raster and not has_mask)
        self.actions["delete_mask"].setEnabled(has_mask)
        self.actions["apply_mask"].setEnabled(has_mask)
        self.actions["clear"].setEnabled(raster)
        self.actions["fill_fg"].setEnabled(raster)

    # ------------------------------------------------------------- helpers
    @property
    def doc(self):
        return self.session.document

    def insert_point(self) -> tuple[Optional[LayerGroup], int]:
        """Above the active node in its parent (Krita's rule), else on top."""
        node = self.session.active_node()
        if node is None or node.parent is None:
            return None, len(self.doc.root.children)
        return node.parent, node.index_in_parent() + 1

    def _unique_name(self, base: str) -> str:
        """"Layer 2" after "Layer 1": one more than the highest number in use
        (counting layers would skip numbers: "Background" and AI layers count)."""
        numbers = [int(m.group(1)) for n in self.doc.nodes()
                   if (m := re.fullmatch(rf"{re.escape(base)} (\d+)", n.name))]
        return f"{base} {max(numbers, default=0) + 1}"

    # ------------------------------------------------------------- actions
    def add_layer(self) -> RasterLayer:
        parent, index = self.insert_point()
        layer = self.doc.add_layer(self._unique_name("Layer"), parent=parent, index=index)
        self.session.set_active(layer)
        return layer

    def add_group(self) -> LayerGroup:
        parent, index = self.insert_point()
        names = {n.name for n in self.doc.nodes()}
        i = 1
        while f"Group {i}" in names:
            i += 1
        group = self.doc.add_group(f"Group {i}", parent=parent, index=index)
        self.session.set_active(group)
        return group

    def group_active(self) -> Optional[LayerGroup]:
        node = self.session.active_node()
        if node is None:
            return self.add_group()
        parent, index = node.parent, node.index_in_parent()
        with self.doc.undo_stack.macro("Group layer"):
            group = self.doc.add_group("Group", parent=parent, index=index + 1)
            self.doc.move_layer(node, group, 0)
        self.session.set_active(node)
        return group

    def duplicate(self) -> Optional[Node]:
        node = self.session.active_node()
        if node is None:
            return None
        copy = self.doc.duplicate_layer(node)
        self.session.set_active(copy)
        return copy

    def delete(self) -> None:
        node = self.session.active_node()
        if node is None:
            return
        # Keep a sensible active layer: the one below, else the one above.
        below = _node_below(node)
        parent = node.parent
        idx = node.index_in_parent()
        self.doc.remove_layer(node)
        if below is not None:
            self.session.set_active(below)
        elif parent is not None and parent.children:
            self.session.set_active(parent.children[min(idx, len(parent.children) - 1)])
        elif parent is not None and parent is not self.doc.root:
            self.session.set_active(parent)

    def shift(self, direction: int) -> None:
        """Raise (+1) or lower (-1); past the end of a group, leave the group."""
        node = self.session.active_node()
        if node is None or node.parent is None:
            return
        parent, idx = node.parent, node.index_in_parent()
        new = idx + direction
        if 0 <= new < len(parent.children):
            self.doc.move_layer(node, parent, new)
        elif parent is not self.doc.root and parent.parent is not None:
            grand = parent.parent
            gidx = parent.index_in_parent()
            self.doc.move_layer(node, grand, gidx + 1 if direction > 0 else gidx)
        self.session.set_active(node)

    def merge_down(self) -> None:
        layer = self.session.active_layer()
        if layer is None:
            return
        below = self.doc.merge_down(layer)
        self.session.set_active(below)

    def add_mask(self, from_selection: bool) -> None:
        layer = self.session.active_layer()
        if layer is None:
            return
        if from_selection and not self.doc.selection.is_active():
            self.message.emit("Nothing is selected: the mask reveals the whole layer")
        self.doc.add_mask(layer, from_selection=from_selection)
        self.session.set_active(layer, "mask")  # like Krita: the new mask becomes the paint target

    def delete_mask(self) -> None:
        layer = self.session.active_layer()
        if layer is not None:
            self.doc.delete_mask(layer)

    def apply_mask(self) -> None:
        layer = self.session.active_layer()
        if layer is not None:
            self.doc.apply_mask(layer)

    def clear(self) -> None:
        layer = self.session.active_layer()
        if layer is not None:
            self.doc.fill_selection(layer, (0, 0, 0), erase=True, target=self.session.edit_target)

    def fill_with_color(self) -> None:
        layer = self.session.active_layer()
        if layer is not None:
            color = self.session.color
            if self.session.edit_target == "mask":
                g = round(0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2])
                color = (g, g, g)
            self.doc.fill_selection(layer, color, target=self.session.edit_target)


def _node_below(node: Optional[Node]) -> Optional[Node]:
    if node is None or node.parent is None:
        return None
    idx = node.index_in_parent()
    return node.parent.children[idx - 1] if idx > 0 else None
