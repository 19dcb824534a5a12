"""Layers panel: the layer tree (top-most first, as in every editor), with
visibility and alpha-lock check boxes, rename by double-click, drag and drop
to reorder or move into groups, a "Mask" row under masked layers (select it
to paint on the mask), and blend mode / opacity controls for the active node.

The tree is rebuilt from the model after each change (coalesced), so it can
never disagree with the document; edits go through the document API.
"""

from __future__ import annotations

from typing import Callable, Optional

from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtGui import QAction, QBrush, QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView, QCheckBox, QComboBox, QHBoxLayout, QHeaderView, QLabel, QMenu, QSlider, QSpinBox,
    QStyle, QToolButton, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget,
)

from editor.ai.layer_info import generation_summary
from editor.document import BlendMode, LayerGroup, Node, RasterLayer

from .layer_actions import LayerActions
from .session import EditorSession
from .thumbnails import THUMB_H, THUMB_W, group_icon, thumbnail_for

UID_ROLE = Qt.ItemDataRole.UserRole
KIND_ROLE = Qt.ItemDataRole.UserRole + 1  # "node" or "mask"
COL_NAME, COL_VISIBLE, COL_ALPHA = 0, 1, 2
THUMBNAIL_DELAY_MS = 400  # previews refresh when painting pauses, not per dab


def blend_label(mode: BlendMode) -> str:
    return mode.value.replace("-", " ").title()


class ActionButton(QToolButton):
    """A compact button for a QAction. (setDefaultAction would replace our
    short label with the action's menu text whenever the action changes.)"""

    def __init__(self, action, text: str) -> None:
        super().__init__()
        self._action = action
        self.setText(text)
        self.setAutoRaise(True)
        self.clicked.connect(action.trigger)
        action.changed.connect(self._sync)
        self._sync()

    def _sync(self) -> None:
        self.setEnabled(self._action.isEnabled())
        self.setToolTip(self._action.toolTip())


class LayerTree(QTreeWidget):
    """QTreeWidget whose drops become ``Document.move_layer`` calls."""

    def __init__(self, panel: "LayersPanel") -> None:
        super().__init__(panel)
        self.panel = panel
        self.setDragDropMode(QAbstractItemView.DragDropMode.InternalMove)
        self.setDefaultDropAction(Qt.DropAction.MoveAction)
        self.setDropIndicatorShown(True)

    def dropEvent(self, event) -> None:  # noqa: N802 - Qt override
        dragged = self.currentItem()
        target = self.itemAt(event.position().toPoint())
        pos = self.dropIndicatorPosition()
        event.setDropAction(Qt.DropAction.IgnoreAction)  # the model moves it, then we rebuild
        event.accept()
        if dragged is None:
            return
        self.panel.drop_node(dragged, target, pos)


class LayersPanel(QWidget):
    def __init__(self, session: EditorSession, actions: LayerActions, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.session = session
        self.layer_actions = actions
        self._collapsed: set[int] = set()
        self._syncing = False
        self._rebuild_timer = QTimer(self)
        self._rebuild_timer.setSingleShot(True)
        self._rebuild_timer.setInterval(0)
        self._rebuild_timer.timeout.connect(self.rebuild)
        self._thumbs: dict[tuple[int, str], object] = {}  # (uid, "node" | "mask") -> QIcon
        self._thumb_timer = QTimer(self)
        self._thumb_timer.setSingleShot(True)
        self._thumb_timer.setInterval(THUMBNAIL_DELAY_MS)
        self._thumb_timer.timeout.connect(self.refresh_thumbnails)
        self._group_icon = group_icon()

        self.blend = QComboBox()
        for mode in BlendMode:
            self.blend.addItem(blend_label(mode), mode)
        self.blend.setToolTip("Blend mode")
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_spin = QSpinBox()
        self.opacity_spin.setRange(0, 100)
        self.opacity_spin.setSuffix(" %")
        self.alpha_lock = QCheckBox("Lock alpha")
        self.alpha_lock.setToolTip("Paint only where the layer already has pixels")
        self.pass_through = QCheckBox("Pass through")
        self.pass_through.setToolTip("Group children blend directly with the layers below the group")

        self.tree = LayerTree(self)
        self.tree.setColumnCount(3)
        self.tree.setHeaderLabels(["Layer", "Show", "α"])
        header = self.tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(COL_NAME, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(COL_VISIBLE, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(COL_ALPHA, QHeaderView.ResizeMode.ResizeToContents)
        self.tree.setEditTriggers(QAbstractItemView.EditTrigger.DoubleClicked | QAbstractItemView.EditTrigger.EditKeyPressed)
        self.tree.setIconSize(QSize(THUMB_W + 2, THUMB_H + 2))

        top = QHBoxLayout()
        top.addWidget(self.blend, 1)
        top.addWidget(QLabel("Opacity"))
        top.addWidget(self.opacity_slider, 1)
        top.addWidget(self.opacity_spin)
        flags = QHBoxLayout()
        flags.addWidget(self.alpha_lock)
        flags.addWidget(self.pass_through)
        flags.addStretch(1)
        buttons = QHBoxLayout()
        buttons.setSpacing(2)
        labels = {"new_layer": "+", "new_group": "▣", "duplicate": "Dup", "raise": "▲", "lower": "▼",
                  "add_mask": "◐", "delete": "✕"}
        for key, text in labels.items():
            buttons.addWidget(ActionButton(actions.actions[key], text))
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addLayout(flags)
        layout.addWidget(self.tree, 1)
        layout.addLayout(buttons)

        # Extra context-menu actions for a node (the AI host adds Regenerate / Vary / Use these settings).
        self.context_actions: Optional[Callable[[Node], list[QAction]]] = None
        self.tree.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.tree.customContextMenuRequested.connect(self._context_menu)
        self.tree.itemChanged.connect(self._on_item_changed)
        self.tree.currentItemChanged.connect(self._on_current_changed)
        self.tree.itemExpanded.connect(lambda it: self._collapsed.discard(it.data(COL_NAME, UID_ROLE)))
        self.tree.itemCollapsed.connect(lambda it: self._collapsed.add(it.data(COL_NAME, UID_ROLE)))
        self.blend.activated.connect(self._on_blend)
        self.opacity_slider.valueChanged.connect(self._on_opacity)
        self.opacity_slider.sliderReleased.connect(self._break_merge)
        self.opacity_spin.valueChanged.connect(self._on_opacity)
        self.opacity_spin.editingFinished.connect(self._break_merge)
        self.alpha_lock.toggled.connect(self._on_alpha_lock)
        self.pass_through.toggled.connect(self._on_pass_through)
        session.document_changed.connect(self._on_document_changed)
        session.active_changed.connect(self._sync_active)
        self._on_document_changed()

    def context_menu_actions(self, node: Node) -> list[QAction]:
        """What the right-click menu of ``node`` offers (tests read it without opening the menu)."""
        actions = [self.layer_actions.actions[k] for k in ("duplicate", "delete", "merge_down")]
        extra = self.context_actions(node) if self.context_actions is not None else []
        return actions + list(extra)

    def _context_menu(self, pos) -> None:
        node = self._node_of(self.tree.itemAt(pos))
        if node is None:
            return
        self.session.set_active(node)
        menu = QMenu(self)
        actions = self.context_menu_actions(node)
        for i, action in enumerate(actions):
            if i == 3:
                menu.addSeparator()
            menu.addAction(action)
        menu.exec(self.tree.viewport().mapToGlobal(pos))

    # ----------------------------------------------------------- rebuilding
    def _on_document_changed(self, *_args) -> None:
        self._collapsed.clear()
        self._thumbs.clear()
        bridge = self.session.bridge
        bridge.layers_changed.connect(self._schedule_rebuild)
        bridge.layers_changed.connect(self._schedule_thumbnails)
        bridge.pixels_changed.connect(self._schedule_thumbnails)
        self.rebuild()
        self.refresh_thumbnails()

    def _schedule_thumbnails(self, *_args) -> None:
        self._thumb_timer.start()  # restarts: waits for a pause in the edits

    def refresh_thumbnails(self) -> None:
        """Recompute every layer preview and put it on the existing rows."""
        self._thumb_timer.stop()
        doc = self.session.document
        thumbs: dict[tuple[int, str], object] = {}
        for layer in doc.raster_layers():
            thumbs[(layer.uid, "node")] = thumbnail_for(layer, doc.width, doc.height)
            if layer.mask is not None:
                thumbs[(layer.uid, "mask")] = thumbnail_for(layer, doc.width, doc.height, mask=True)
        self._thumbs = thumbs
        self.tree.blockSignals(True)  # an icon change is not a rename
        try:
            for (uid, kind), icon in thumbs.items():
                item = self.item_for(uid, kind)
                if item is not None and icon is not None:
                    item.setIcon(COL_NAME, icon)
        finally:
            self.tree.blockSignals(False)

    def _schedule_rebuild(self, *_args) -> None:
        if not self._rebuild_timer.isActive():
            self._rebuild_timer.start(0)

    def rebuild(self) -> None:
        self._rebuild_timer.stop()
        if self.tree.state() == QAbstractItemView.State.EditingState:
            self._rebuild_timer.start(200)  # do not close the name editor under the user
            return
        self._syncing = True
        self.tree.blockSignals(True)
        try:
            self.tree.clear()
            self._add_children(self.tree.invisibleRootItem(), self.session.document.root)
        finally:
            self.tree.blockSignals(False)
            self._syncing = False
        self._sync_active()

    def _add_children(self, parent_item: QTreeWidgetItem, group: LayerGroup) -> None:
        style = self.style()
        for node in reversed(group.children):  # top-most first
            item = QTreeWidgetItem(parent_item)
            item.setText(COL_NAME, node.name)
            item.setData(COL_NAME, UID_ROLE, node.uid)
            item.setData(COL_NAME, KIND_ROLE, "node")
            flags = (Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEditable
                     | Qt.ItemFlag.ItemIsDragEnabled | Qt.ItemFlag.ItemIsUserCheckable)
            if isinstance(node, LayerGroup):
                flags |= Qt.ItemFlag.ItemIsDropEnabled
            item.setFlags(flags)
            item.setCheckState(COL_VISIBLE, Qt.CheckState.Checked if node.visible else Qt.CheckState.Unchecked)
            item.setToolTip(COL_VISIBLE, "Visible")
            details = [blend_label(node.blend_mode)] if node.blend_mode is not BlendMode.NORMAL else []
            if node.opacity < 1.0:
                details.append(f"{round(node.opacity * 100)} %")
            tip = f"{node.name} ({', '.join(details)})" if details else ""
            generated = generation_summary(getattr(node, "attributes", None) or {})
            if generated:  # an AI layer: what made it (right-click: regenerate, vary, use these settings)
                tip = f"{tip or node.name}\n{generated}"
            if tip:
                item.setToolTip(COL_NAME, tip)
            if not node.effectively_visible():
                item.setForeground(COL_NAME, QBrush(QColor(140, 140, 140)))
            if isinstance(node, RasterLayer):
                item.setCheckState(COL_ALPHA, Qt.CheckState.Checked if node.alpha_locked else Qt.CheckState.Unchecked)
                item.setToolTip(COL_ALPHA, "Alpha locked")
                icon = self._thumbs.get((node.uid, "node")) or style.standardIcon(QStyle.StandardPixmap.SP_FileIcon)
                item.setIcon(COL_NAME, icon)
                if node.mask is not None:
                    m = QTreeWidgetItem(item)
                    m.setText(COL_NAME, "Mask")
                    m.setData(COL_NAME, UID_ROLE, node.uid)
                    m.setData(COL_NAME, KIND_ROLE, "mask")
                    m.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
                    f = QFont(m.font(COL_NAME))
                    f.setItalic(True)
                    m.setFont(COL_NAME, f)
                    m.setToolTip(COL_NAME, "Layer mask: select to paint on it (white reveals, eraser hides)")
                    mask_icon = self._thumbs.get((node.uid, "mask"))
                    if mask_icon is not None:
                        m.setIcon(COL_NAME, mask_icon)
                    item.setExpanded(True)
            else:
                item.setIcon(COL_NAME, self._group_icon)
                self._add_children(item, node)  # type: ignore[arg-type]
                item.setExpanded(node.uid not in self._collapsed)

    def item_for(self, uid: int, kind: str = "node") -> Optional[QTreeWidgetItem]:
        it = self.tree.invisibleRootItem()
        stack = [it.child(i) for i in range(it.childCount())]
        while stack:
            item = stack.pop()
            if item.data(COL_NAME, UID_ROLE) == uid and item.data(COL_NAME, KIND_ROLE) == kind:
                return item
            stack.extend(item.child(i) for i in range(item.childCount()))
        return None

    def _node_of(self, item: Optional[QTreeWidgetItem]) -> Optional[Node]:
        if item is None:
            return None
        return self.session.document.find(item.data(COL_NAME, UID_ROLE))

    # ------------------------------------------------------ active node sync
    def _sync_active(self) -> None:
        node = self.session.active_node()
        self._syncing = True
        try:
            if node is not None:
                kind = "mask" if self.session.edit_target == "mask" else "node"
                item = self.item_for(node.uid, kind)
                if item is not None and self.tree.currentItem() is not item:
                    self.tree.setCurrentItem(item)
            self.blend.setEnabled(node is not None)
            self.opacity_slider.setEnabled(node is not None)
            self.opacity_spin.setEnabled(node is not None)
            self.alpha_lock.setEnabled(isinstance(node, RasterLayer))
            self.pass_through.setEnabled(isinstance(node, LayerGroup))
            if node is not None:
                self.blend.setCurrentIndex(self.blend.findData(node.blend_mode))
                self.opacity_slider.setValue(round(node.opacity * 100))
                self.opacity_spin.setValue(round(node.opacity * 100))
            self.alpha_lock.setChecked(isinstance(node, RasterLayer) and node.alpha_locked)
            self.pass_through.setChecked(isinstance(node, LayerGroup) and not node.isolated)
        finally:
            self._syncing = False

    def _on_current_changed(self, current: Optional[QTreeWidgetItem], _previous) -> None:
        if self._syncing or current is None:
            return
        node = self._node_of(current)
        if node is not None:
            target = "mask" if current.data(COL_NAME, KIND_ROLE) == "mask" else "pixels"
            self.session.set_active(node, target)

    # ---------------------------------------------------------------- edits
    def _guarded(self) -> bool:
        return self._syncing or self.session.document.stroke_active

    def _on_item_changed(self, item: QTreeWidgetItem, column: int) -> None:
        if self._guarded() or item.data(COL_NAME, KIND_ROLE) != "node":
            return
        node = self._node_of(item)
        if node is None:
            return
        doc = self.session.document
        if column == COL_NAME:
            name = item.text(COL_NAME).strip()
            if name and name != node.name:
                doc.rename_layer(node, name)
                doc.undo_stack.break_merge()
            elif not name:
                self._schedule_rebuild()  # empty name: show the old one again
        elif column == COL_VISIBLE:
            doc.set_visible(node, item.checkState(COL_VISIBLE) == Qt.CheckState.Checked)
        elif column == COL_ALPHA and isinstance(node, RasterLayer):
            doc.set_alpha_locked(node, item.checkState(COL_ALPHA) == Qt.CheckState.Checked)

    def _on_blend(self, index: int) -> None:
        node = self.session.active_node()
        if node is not None and not self._guarded():
            self.session.document.set_blend_mode(node, self.blend.itemData(index))

    def _on_opacity(self, value: int) -> None:
        if self._guarded():
            return
        node = self.session.active_node()
        self._syncing = True
        self.opacity_slider.setValue(value)
        self.opacity_spin.setValue(value)
        self._syncing = False
        if node is not None:
            # Consecutive opacity changes merge into one undo step (the model's rule).
            self.session.document.set_opacity(node, value / 100.0)

    def _break_merge(self) -> None:
        self.session.document.undo_stack.break_merge()

    def _on_alpha_lock(self, checked: bool) -> None:
        node = self.session.active_node()
        if isinstance(node, RasterLayer) and not self._guarded():
            self.session.document.set_alpha_locked(node, checked)

    def _on_pass_through(self, checked: bool) -> None:
        node = self.session.active_node()
        if isinstance(node, LayerGroup) and not self._guarded():
            self.session.document.set_isolated(node, not checked)

    def drop_node(self, dragged: QTreeWidgetItem, target: Optional[QTreeWidgetItem], pos) -> None:
        """Turn a tree drop into a model move (tree is top-most first)."""
        node = self._node_of(dragged)
        if node is None or dragged.data(COL_NAME, KIND_ROLE) != "node" or self.session.document.stroke_active:
            return
        doc = self.session.document
        target_node = self._node_of(target)
        if target is not None and target.data(COL_NAME, KIND_ROLE) == "mask":
            pos = QAbstractItemView.DropIndicatorPosition.AboveItem  # a mask row stands for its layer
        if target_node is None or target_node is node:
            if target_node is None:
                doc.move_layer(node, doc.root, None)  # empty area: on top of everything
            return
        if pos == QAbstractItemView.DropIndicatorPosition.OnItem and isinstance(target_node, LayerGroup):
            parent, index = target_node, None  # into the group, on top
        else:
            parent = target_node.parent
            assert parent is not None
            idx = target_node.index_in_parent()
            if node.parent is parent and node.index_in_parent() < idx:
                idx -= 1  # indices are counted after the dragged node is removed
            below = pos == QAbstractItemView.DropIndicatorPosition.BelowItem
            index = idx if below else idx + 1
        try:
            doc.move_layer(node, parent, index)
        except (ValueError, IndexError) as exc:
            self.layer_actions.message.emit(f"Cannot move there: {exc}")
        self.session.set_active(node)
