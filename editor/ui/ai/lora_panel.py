"""The LoRA list of the AI dock: "Add LoRA…" (a picker of the library's LoRAs for the final model's
family, with their ``NAME.preview.png`` thumbnails), then one row per LoRA: an on/off box with its
name, a weight slider (−2…2) with its value, a remove button, and its trigger words as chips that
insert the word into the prompt.

The state lives in the request (``editor.ai.loras``); every edit goes to the controller, and the
rows follow ``loras_changed`` (rebuilt) and ``request_changed`` (values only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QSizePolicy,
    QSlider,
    QToolButton,
    QVBoxLayout,
    QWidget,
    QWidgetAction,
)

from editor.ai.loras import MAX_WEIGHT, MIN_WEIGHT

PICKER_THUMB = 48
SLIDER_SCALE = 100  # slider units per weight unit (0.01 steps)
MAX_CHIPS = 8  # trigger words shown per row
MAX_NAME = 24  # characters of a LoRA's name shown on its row


class LoraRow(QWidget):
    """One LoRA: [x] name  ——o—— 0.80  ✕  /  chips."""

    def __init__(self, label: str, weight: float, enabled: bool, words: list[str], tip: str,
                 parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        # A long file name is shortened (full name in the tooltip): it must never widen the dock.
        self.enabled = QCheckBox(label if len(label) <= MAX_NAME else f"{label[:MAX_NAME - 1]}…")
        self.enabled.setChecked(enabled)
        self.enabled.setToolTip(f"{label}\n{tip}\nOn: the LoRA is applied; off: kept in the list, not applied")
        self.weight = QSlider(Qt.Orientation.Horizontal)
        self.weight.setRange(round(MIN_WEIGHT * SLIDER_SCALE), round(MAX_WEIGHT * SLIDER_SCALE))
        self.weight.setSingleStep(5)
        self.weight.setPageStep(25)
        self.weight.setValue(round(weight * SLIDER_SCALE))
        self.weight.setToolTip("How strongly the LoRA changes the model (1 = as trained, negative inverts it)")
        self.value = QLabel(f"{weight:.2f}")
        self.value.setMinimumWidth(self.value.fontMetrics().horizontalAdvance("-2.00") + 4)
        self.remove = QToolButton()
        self.remove.setText("✕")
        self.remove.setAutoRaise(True)
        self.remove.setToolTip("Remove this LoRA from the list")
        self.chips: list[QToolButton] = []
        for word in words[:MAX_CHIPS]:
            chip = QToolButton()
            chip.setText(word)
            chip.setAutoRaise(False)
            chip.setStyleSheet("QToolButton { border: 1px solid palette(mid); border-radius: 8px; padding: 0 6px; }")
            chip.setToolTip(f"Insert “{word}” into the prompt (a trigger word of this LoRA)")
            self.chips.append(chip)
        self.weight.valueChanged.connect(lambda v: self.value.setText(f"{v / SLIDER_SCALE:.2f}"))

        col = QVBoxLayout(self)
        col.setContentsMargins(0, 0, 0, 0)
        col.setSpacing(1)
        top = QHBoxLayout()
        top.setSpacing(4)
        top.addWidget(self.enabled, 2)
        top.addWidget(self.weight, 3)
        top.addWidget(self.value)
        top.addWidget(self.remove)
        col.addLayout(top)
        if self.chips:
            chips = QHBoxLayout()
            chips.setSpacing(3)
            chips.setContentsMargins(18, 0, 0, 0)
            for chip in self.chips:
                chips.addWidget(chip)
            chips.addStretch(1)
            col.addLayout(chips)

    def set_values(self, weight: float, enabled: bool) -> None:
        for widget in (self.weight, self.enabled):
            widget.blockSignals(True)
        self.weight.setValue(round(weight * SLIDER_SCALE))
        self.value.setText(f"{weight:.2f}")
        self.enabled.setChecked(enabled)
        for widget in (self.weight, self.enabled):
            widget.blockSignals(False)


class LoraPanel(QGroupBox):
    trigger_clicked = Signal(str)  # a trigger word chip: the dock inserts it into the prompt

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__("LoRAs", parent)
        self.controller = None
        self.rows: list[LoraRow] = []
        self._paths: list[str] = []
        self.add_button = QToolButton()
        self.add_button.setText("Add LoRA…")
        self.add_button.setToolTip("Add a LoRA from the model folders (those made for the final model's family)")
        self.add_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.menu = QMenu(self.add_button)
        self.picker = QListWidget()
        self.picker.setIconSize(QSize(PICKER_THUMB, PICKER_THUMB))
        self.picker.setMinimumWidth(260)
        self.picker.itemActivated.connect(self._on_picked)
        self.picker.itemClicked.connect(self._on_picked)
        # A folder of hundreds of LoRAs: type words of the name to narrow the list.
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search LoRAs…")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self.apply_search)
        picker_box = QWidget()
        picker_col = QVBoxLayout(picker_box)
        picker_col.setContentsMargins(4, 4, 4, 4)
        picker_col.setSpacing(4)
        picker_col.addWidget(self.search)
        picker_col.addWidget(self.picker)
        action = QWidgetAction(self.menu)
        action.setDefaultWidget(picker_box)
        self.menu.addAction(action)
        self.menu.aboutToShow.connect(self.fill_picker)
        self.add_button.setMenu(self.menu)
        # One line, never wrapped: a label that re-wraps would move every control below the list.
        self.empty = QLabel("None: add one from the model folders")
        self.empty.setToolTip("LoRAs apply to Generate, and to Live when the preview model is of the same family")
        self.empty.setStyleSheet("color: gray;")
        self.empty.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)

        self._rows_box = QVBoxLayout()
        self._rows_box.setSpacing(4)
        col = QVBoxLayout(self)
        col.setContentsMargins(6, 4, 6, 6)
        col.setSpacing(4)
        col.addLayout(self._rows_box)
        col.addWidget(self.empty)
        add_row = QHBoxLayout()
        add_row.addWidget(self.add_button)
        add_row.addStretch(1)
        col.addLayout(add_row)

    def bind(self, controller) -> None:
        self.controller = controller
        controller.loras_changed.connect(self.sync)
        controller.request_changed.connect(self.sync)
        controller.models_changed.connect(self.sync)
        self.sync()

    # ------------------------------------------------------------ picker
    def fill_picker(self) -> None:
        """The library's LoRAs for the final model (refreshed each time the picker opens)."""
        self.picker.clear()
        listed = set(self._paths)
        for entry in self.controller.lora_choices():
            item = QListWidgetItem(entry.name)
            item.setData(Qt.ItemDataRole.UserRole, entry.path)
            item.setIcon(_thumbnail(entry.preview))
            words = ", ".join(entry.trigger_words[:6])
            item.setToolTip("\n".join(filter(None, (entry.path, f"Trigger words: {words}" if words else ""))))
            if entry.path in listed:
                item.setText(f"{entry.name} (in the list)")
            self.picker.addItem(item)
        if not self.picker.count():
            item = QListWidgetItem("No LoRAs for this model in the model folders")
            item.setFlags(Qt.ItemFlag.NoItemFlags)
            self.picker.addItem(item)
        rows = min(self.picker.count(), 8)
        self.picker.setFixedHeight(rows * (PICKER_THUMB + 6) + 6)
        self.apply_search(self.search.text())

    def apply_search(self, text: str) -> None:
        """Show the picker's LoRAs whose name (or path) holds every word typed, in any case."""
        words = text.lower().split()
        for index in range(self.picker.count()):
            item = self.picker.item(index)
            path = item.data(Qt.ItemDataRole.UserRole)
            if not path:  # the "no LoRAs" line
                continue
            haystack = f"{item.text()} {path}".lower()
            item.setHidden(not all(word in haystack for word in words))

    def _on_picked(self, item: QListWidgetItem) -> None:
        path = item.data(Qt.ItemDataRole.UserRole)
        if path:
            self.menu.close()
            self.controller.add_lora(path)

    # -------------------------------------------------------------- rows
    def sync(self) -> None:
        """Rows follow the request: rebuilt when the list changed, else only their values."""
        items = self.controller.request.loras
        paths = [item.path for item in items]
        if paths != self._paths:
            self._rebuild(items)
        else:
            for row, item in zip(self.rows, items):
                row.set_values(item.weight, item.enabled)
        self.empty.setVisible(not items)

    def _rebuild(self, items) -> None:
        for row in self.rows:
            self._rows_box.removeWidget(row)
            row.setParent(None)
            row.deleteLater()
        self.rows, self._paths = [], [item.path for item in items]
        for index, item in enumerate(items):
            words = self.controller.lora_trigger_words(item.path)
            tip = "\n".join(filter(None, (item.path, f"AutoV2 {item.short_hash}" if item.short_hash else "",
                                          "" if Path(item.path).is_file() else "The file is missing")))
            row = LoraRow(item.label, item.weight, item.enabled, words, tip)
            row.enabled.toggled.connect(lambda on, i=index: self.controller.set_lora(i, enabled=on))
            row.weight.valueChanged.connect(lambda v, i=index: self.controller.set_lora(i, weight=v / SLIDER_SCALE))
            row.remove.clicked.connect(lambda _=False, i=index: self.controller.remove_lora(i))
            for chip, word in zip(row.chips, words):
                chip.clicked.connect(lambda _=False, w=word: self.trigger_clicked.emit(w))
            self._rows_box.addWidget(row)
            self.rows.append(row)


def _thumbnail(path: Optional[str]) -> QIcon:
    """The LoRA's NAME.preview.png; a blank square without one, so every name starts at the same x."""
    square = QPixmap(PICKER_THUMB, PICKER_THUMB)
    square.fill(QColor(128, 128, 128, 40))
    preview = QPixmap(path) if path else QPixmap()
    if not preview.isNull():
        preview = preview.scaled(PICKER_THUMB, PICKER_THUMB, Qt.AspectRatioMode.KeepAspectRatio,
                                 Qt.TransformationMode.SmoothTransformation)
        painter = QPainter(square)
        painter.drawPixmap((PICKER_THUMB - preview.width()) // 2, (PICKER_THUMB - preview.height()) // 2, preview)
        painter.end()
    return QIcon(square)
