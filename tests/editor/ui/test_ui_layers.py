"""Layers panel and history panel: every widget edit becomes one model edit
(one undo step), and the views follow the model after undo/redo."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractItemView, QApplication

from editor.document import BlendMode, LayerGroup, Rect

from test_ui_support import drag, editor_env, window  # noqa: F401 - fixtures


def names_top_first(win) -> list[str]:
    tree = win.layers_panel.tree
    return [tree.topLevelItem(i).text(0) for i in range(tree.topLevelItemCount())]


def settle(win) -> None:
    QApplication.processEvents()
    win.layers_panel.rebuild()
    win.history_panel.rebuild()


def test_tree_shows_layers_top_first_and_follows_add_remove_duplicate(window, qtbot):
    doc = window.session.document
    assert names_top_first(window) == ["Paint", "Background"]
    qtbot.keyClick(window.canvas, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    settle(window)
    new = window.session.active_node()
    assert names_top_first(window)[0] == new.name and new.name.startswith("Layer")
    assert window.layers_panel.tree.currentItem().text(0) == new.name
    window.layer_actions.actions["duplicate"].trigger()
    settle(window)
    assert names_top_first(window)[0] == f"{new.name} copy"
    window.layer_actions.actions["delete"].trigger()
    window.layer_actions.actions["delete"].trigger()
    settle(window)
    assert names_top_first(window) == ["Paint", "Background"]
    window.undo()
    settle(window)
    assert len(doc.root.children) == 3


def test_rename_by_editing_the_item(window):
    doc = window.session.document
    item = window.layers_panel.tree.topLevelItem(0)
    item.setText(0, "Ink")  # what the inline editor does on commit
    assert doc.raster_layers()[-1].name == "Ink"
    assert doc.undo_stack.undo_text() == "Rename layer"
    window.undo()
    settle(window)
    assert names_top_first(window)[0] == "Paint"


def test_visibility_and_alpha_lock_checkboxes(window):
    doc = window.session.document
    paint = doc.raster_layers()[-1]
    item = window.layers_panel.tree.topLevelItem(0)
    item.setCheckState(1, Qt.CheckState.Unchecked)
    assert paint.visible is False
    settle(window)
    item = window.layers_panel.tree.topLevelItem(0)
    item.setCheckState(1, Qt.CheckState.Checked)
    item.setCheckState(2, Qt.CheckState.Checked)
    assert paint.visible and paint.alpha_locked
    settle(window)
    assert window.layers_panel.alpha_lock.isChecked()


def test_opacity_slider_drag_is_one_undo_step_and_blend_mode(window):
    doc = window.session.document
    paint = doc.raster_layers()[-1]
    panel = window.layers_panel
    steps = len(doc.undo_stack)
    for v in (90, 70, 50):
        panel.opacity_slider.setValue(v)
    panel.opacity_slider.sliderReleased.emit()
    assert abs(paint.opacity - 0.5) < 1e-9
    assert len(doc.undo_stack) == steps + 1
    assert panel.opacity_spin.value() == 50
    idx = panel.blend.findData(BlendMode.MULTIPLY)
    panel.blend.setCurrentIndex(idx)
    panel.blend.activated.emit(idx)
    assert paint.blend_mode is BlendMode.MULTIPLY
    window.undo()
    window.undo()
    assert paint.opacity == 1.0 and paint.blend_mode is BlendMode.NORMAL
    settle(window)
    assert panel.opacity_slider.value() == 100


def test_reorder_by_buttons_and_by_drop_into_group(window):
    doc = window.session.document
    paint, bg = doc.raster_layers()[1], doc.raster_layers()[0]
    window.layer_actions.actions["lower"].trigger()
    settle(window)
    assert names_top_first(window) == ["Background", "Paint"]
    window.layer_actions.actions["raise"].trigger()
    settle(window)
    assert names_top_first(window) == ["Paint", "Background"]
    window.layer_actions.actions["new_group"].trigger()
    settle(window)
    group = window.session.active_node()
    assert isinstance(group, LayerGroup)
    panel = window.layers_panel
    panel.drop_node(panel.item_for(bg.uid), panel.item_for(group.uid), QAbstractItemView.DropIndicatorPosition.OnItem)
    settle(window)
    assert bg.parent is group
    group_item = panel.item_for(group.uid)
    assert group_item.childCount() == 1 and group_item.child(0).text(0) == "Background"
    # Drop "Paint" above the group: it becomes the top layer of the root.
    assert doc.root.children == [paint, group]
    panel.drop_node(panel.item_for(paint.uid), panel.item_for(group.uid), QAbstractItemView.DropIndicatorPosition.AboveItem)
    assert doc.root.children == [group, paint]
    window.undo()
    assert doc.root.children == [paint, group]
    # ... and below a layer inside the group: it joins the group under it.
    panel.drop_node(panel.item_for(paint.uid), panel.item_for(bg.uid), QAbstractItemView.DropIndicatorPosition.BelowItem)
    assert group.children == [paint, bg]


def test_group_layer_shortcut_and_mask_row(window, qtbot):
    doc = window.session.document
    paint = doc.raster_layers()[-1]
    qtbot.keyClick(window.canvas, Qt.Key.Key_G, Qt.KeyboardModifier.ControlModifier)
    assert isinstance(paint.parent, LayerGroup) and paint.parent is not doc.root
    assert doc.undo_stack.undo_text() == "Group layer"
    window.layer_actions.actions["add_mask"].trigger()
    settle(window)
    item = window.layers_panel.item_for(paint.uid, "mask")
    assert item is not None and item.text(0) == "Mask"
    assert window.layers_panel.tree.currentItem() is item
    window.layers_panel.tree.setCurrentItem(window.layers_panel.item_for(paint.uid))
    assert window.session.edit_target == "pixels"
    window.layers_panel.tree.setCurrentItem(item)
    assert window.session.edit_target == "mask"
    window.layer_actions.actions["delete_mask"].trigger()
    assert paint.mask is None and window.session.edit_target == "pixels"


def test_merge_down_and_clear(window, qtbot):
    doc = window.session.document
    paint = doc.raster_layers()[-1]
    doc.select_rect(Rect(10, 10, 20, 20))
    doc.fill_selection(paint, (0, 0, 255))
    doc.select_none()
    qtbot.keyClick(window.canvas, Qt.Key.Key_E, Qt.KeyboardModifier.ControlModifier)
    assert len(doc.raster_layers()) == 1
    bg = doc.raster_layers()[0]
    assert tuple(bg.read(Rect(15, 15, 1, 1))[0, 0]) == (0, 0, 255, 255)
    doc.select_rect(Rect(0, 0, 50, 50))
    window.layer_actions.actions["clear"].trigger()
    assert bg.read(Rect(0, 0, 50, 50))[..., 3].max() == 0


def test_history_panel_lists_steps_and_click_jumps(window):
    doc = window.session.document
    window.session.smoothing = 0.0
    for y in (20, 50, 80):
        drag(window.canvas, [(20, y), (100, y)])
    settle(window)
    hist = window.history_panel.list
    assert hist.count() == 4 and hist.currentRow() == 3
    assert hist.item(1).text() == "Paint stroke"
    hist.setCurrentRow(1)  # what a click does
    assert doc.undo_stack.index == 1
    settle(window)
    assert hist.currentRow() == 1
    alpha = doc.raster_layers()[-1].read(Rect(0, 0, 200, 150))[..., 3]
    assert alpha[20].any() and not alpha[50].any() and not alpha[80].any()
    hist.setCurrentRow(3)
    assert doc.undo_stack.index == 3
    hist.setCurrentRow(0)
    assert doc.undo_stack.index == 0
