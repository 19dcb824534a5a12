"""Small dialogs: new document, canvas size (any direction), preferences
(autosave, undo memory, where final renders run), recovery of autosaves from
crashed sessions."""

from __future__ import annotations

import os
import time
from typing import Optional

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QButtonGroup, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFormLayout, QGridLayout, QGroupBox,
    QHBoxLayout, QLabel, QLineEdit, QListWidget, QListWidgetItem, QPushButton, QRadioButton, QSpinBox, QToolButton,
    QVBoxLayout, QWidget,
)

from editor.document.document import MAX_CANVAS_SIDE
from editor.io import RecoveryFile

from ..settings import Settings, farm_address_problem

ANCHOR_NAMES = ("↖", "↑", "↗", "←", "•", "→", "↙", "↓", "↘")


class NewDocumentDialog(QDialog):
    BACKGROUNDS = (("White", (255, 255, 255)), ("Transparent", None), ("Black", (0, 0, 0)))

    def __init__(self, parent: Optional[QWidget] = None, width: int = 1024, height: int = 1024) -> None:
        super().__init__(parent)
        self.setWindowTitle("New Document")
        self.width_spin = QSpinBox()
        self.height_spin = QSpinBox()
        for s, v in ((self.width_spin, width), (self.height_spin, height)):
            s.setRange(1, MAX_CANVAS_SIDE)
            s.setValue(v)
            s.setSuffix(" px")
        self.background = QComboBox()
        for name, rgb in self.BACKGROUNDS:
            self.background.addItem(name, rgb)
        form = QFormLayout(self)
        form.addRow("Width", self.width_spin)
        form.addRow("Height", self.height_spin)
        form.addRow("Background", self.background)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def values(self) -> tuple[int, int, Optional[tuple[int, int, int]]]:
        return self.width_spin.value(), self.height_spin.value(), self.background.currentData()


class CanvasSizeDialog(QDialog):
    """New width/height with a 3x3 anchor (Photoshop/GIMP), or pixels to add
    per side (negative crops). Both views stay in sync; ``sides()`` is what
    ``Document.extend_canvas`` takes."""

    def __init__(self, width: int, height: int, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Canvas Size")
        self._w0, self._h0 = width, height
        self._syncing = False
        self.width_spin = QSpinBox()
        self.height_spin = QSpinBox()
        for s, v in ((self.width_spin, width), (self.height_spin, height)):
            s.setRange(1, MAX_CANVAS_SIDE)
            s.setValue(v)
            s.setSuffix(" px")
        self.anchor_group = QButtonGroup(self)
        grid = QGridLayout()
        grid.setSpacing(2)
        for i, name in enumerate(ANCHOR_NAMES):
            b = QToolButton()
            b.setText(name)
            b.setCheckable(True)
            b.setFixedSize(28, 28)
            self.anchor_group.addButton(b, i)
            grid.addWidget(b, i // 3, i % 3)
        self.anchor_group.button(4).setChecked(True)
        self.side_spins = {}
        sides = QFormLayout()
        for name in ("left", "top", "right", "bottom"):
            s = QSpinBox()
            s.setRange(-MAX_CANVAS_SIDE, MAX_CANVAS_SIDE)
            s.setSuffix(" px")
            self.side_spins[name] = s
            sides.addRow(f"Add {name}", s)
            s.valueChanged.connect(self._from_sides)
        self.result_label = QLabel()

        size_box = QGroupBox("New size")
        size_form = QFormLayout(size_box)
        size_form.addRow("Width", self.width_spin)
        size_form.addRow("Height", self.height_spin)
        anchor_row = QHBoxLayout()
        anchor_row.addLayout(grid)
        anchor_row.addStretch(1)
        size_form.addRow("Anchor", anchor_row)
        side_box = QGroupBox("Extend (negative values crop)")
        side_box.setLayout(sides)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"Current size: {width} × {height} px"))
        layout.addWidget(size_box)
        layout.addWidget(side_box)
        layout.addWidget(self.result_label)
        layout.addWidget(buttons)
        self.width_spin.valueChanged.connect(self._from_size)
        self.height_spin.valueChanged.connect(self._from_size)
        self.anchor_group.idClicked.connect(lambda _i: self._from_size())
        self._show_result()

    def _from_size(self) -> None:
        if self._syncing:
            return
        dw, dh = self.width_spin.value() - self._w0, self.height_spin.value() - self._h0
        col, row = self.anchor_group.checkedId() % 3, self.anchor_group.checkedId() // 3
        # Anchor left/top: all growth goes right/bottom; centre: split (extra pixel right/bottom).
        left = (0, dw // 2, dw)[col]
        top = (0, dh // 2, dh)[row]
        self._set_sides(left, top, dw - left, dh - top)

    def _set_sides(self, left: int, top: int, right: int, bottom: int) -> None:
        self._syncing = True
        for name, v in zip(("left", "top", "right", "bottom"), (left, top, right, bottom)):
            self.side_spins[name].setValue(v)
        self._syncing = False
        self._show_result()

    def _from_sides(self) -> None:
        if self._syncing:
            return
        left, top, right, bottom = self.sides()
        self._syncing = True
        self.width_spin.setValue(self._w0 + left + right)
        self.height_spin.setValue(self._h0 + top + bottom)
        self._syncing = False
        self._show_result()

    def _show_result(self) -> None:
        left, top, right, bottom = self.sides()
        w, h = self._w0 + left + right, self._h0 + top + bottom
        ok = 1 <= w <= MAX_CANVAS_SIDE and 1 <= h <= MAX_CANVAS_SIDE
        self.result_label.setText(f"Result: {w} × {h} px" + ("" if ok else "  (out of range)"))

    def sides(self) -> tuple[int, int, int, int]:
        s = self.side_spins
        return s["left"].value(), s["top"].value(), s["right"].value(), s["bottom"].value()

    def set_sides(self, left: int = 0, top: int = 0, right: int = 0, bottom: int = 0) -> None:
        """Programmatic entry (tests, scripts)."""
        self._set_sides(left, top, right, bottom)
        self._from_sides()


class PreferencesDialog(QDialog):
    def __init__(self, settings: Settings, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Preferences")
        self.autosave = QDoubleSpinBox()
        self.autosave.setRange(0.1, 240.0)
        self.autosave.setDecimals(1)
        self.autosave.setSuffix(" min")
        self.autosave.setValue(settings.autosave_minutes)
        self.idle = QDoubleSpinBox()
        self.idle.setRange(1.0, 3600.0)
        self.idle.setDecimals(0)
        self.idle.setSuffix(" s")
        self.idle.setValue(settings.autosave_idle_seconds)
        self.undo_mb = QSpinBox()
        self.undo_mb.setRange(64, 64 * 1024)
        self.undo_mb.setSuffix(" MiB")
        self.undo_mb.setValue(settings.undo_memory_mb)
        form = QFormLayout(self)
        form.addRow("Autosave every", self.autosave)
        form.addRow("Autosave after idle", self.idle)
        form.addRow("Undo memory", self.undo_mb)
        form.addRow(self._render_on_box(settings))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _render_on_box(self, settings: Settings) -> QGroupBox:
        """"Render on: this machine / Ray cluster at ADDRESS" (final renders and variations)."""
        box = QGroupBox("Render on (final renders and variations; the live preview always renders here)")
        self.render_here = QRadioButton("This machine")
        self.render_farm = QRadioButton("Ray cluster at")
        self.farm_address = QLineEdit(settings.farm_address)
        self.farm_address.setPlaceholderText("HOST:PORT of the head, e.g. 10.0.0.5:6379")
        self.farm_address.setToolTip("Only this address is contacted. A Ray cluster runs any code its clients "
                                     "send: keep it on a trusted network, never reachable from the internet.")
        self.farm_gpus = QDoubleSpinBox()
        self.farm_gpus.setRange(0.0, 8.0)
        self.farm_gpus.setDecimals(2)
        self.farm_gpus.setSingleStep(0.5)
        self.farm_gpus.setSpecialValueText("none (one CPU worker per machine)")
        self.farm_gpus.setValue(settings.farm_gpus)
        self.farm_gpus.setToolTip("GPUs per farm worker: 1 starts one worker per GPU of the cluster")
        self.farm_error = QLabel()
        self.farm_error.setWordWrap(True)
        self.farm_error.setStyleSheet("color: #d04040;")
        self.farm_error.hide()
        (self.render_farm if settings.render_on == "farm" else self.render_here).setChecked(True)
        self.render_farm.toggled.connect(self._farm_toggled)
        self.farm_address.textEdited.connect(lambda _t: self.farm_error.hide())
        self._farm_toggled(self.render_farm.isChecked())
        farm_row = QHBoxLayout()
        farm_row.addWidget(self.render_farm)
        farm_row.addWidget(self.farm_address, 1)
        layout = QVBoxLayout(box)
        layout.addWidget(self.render_here)
        layout.addLayout(farm_row)
        gpu_row = QHBoxLayout()
        gpu_row.addWidget(QLabel("GPUs per worker"))
        gpu_row.addWidget(self.farm_gpus, 1)
        layout.addLayout(gpu_row)
        layout.addWidget(self.farm_error)
        return box

    def _farm_toggled(self, on: bool) -> None:
        self.farm_address.setEnabled(on)
        self.farm_gpus.setEnabled(on)
        self.farm_error.hide()

    def farm_problem(self) -> str:
        """One line about the farm address when "Ray cluster" is chosen and it is unusable."""
        if not self.render_farm.isChecked():
            return ""
        address = self.farm_address.text().strip()
        if not address:
            return "Enter the address of the Ray cluster's head (HOST:PORT, e.g. 10.0.0.5:6379)"
        return farm_address_problem(address)

    def accept(self) -> None:  # noqa: D102 - refuse an unusable farm address with its reason
        problem = self.farm_problem()
        if problem:
            self.farm_error.setText(problem[:1].upper() + problem[1:])
            self.farm_error.show()
            self.farm_address.setFocus()
            return
        super().accept()

    def apply_to(self, settings: Settings) -> None:
        settings.autosave_minutes = self.autosave.value()
        settings.autosave_idle_seconds = self.idle.value()
        settings.undo_memory_mb = self.undo_mb.value()
        settings.render_on = "farm" if self.render_farm.isChecked() else "local"
        settings.farm_address = self.farm_address.text().strip()
        settings.farm_gpus = self.farm_gpus.value()
        settings.clamped()


def describe_recovery(rec: RecoveryFile) -> str:
    age = max(0.0, time.time() - rec.mtime)
    when = f"{age / 60:.0f} min ago" if age < 5400 else time.strftime("%Y-%m-%d %H:%M", time.localtime(rec.mtime))
    name = os.path.basename(rec.source_path) if rec.source_path else "Untitled document"
    return f"{name} — autosaved {when}"


class RecoveryDialog(QDialog):
    """Krita-style: documents from sessions that did not close cleanly.
    Restore opens the checked ones; Discard deletes them; Later keeps them."""

    RESTORE, DISCARD, LATER = 1, 2, 3

    def __init__(self, found: list[RecoveryFile], parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Recover Documents")
        self.found = found
        self.choice = self.LATER
        self.list = QListWidget()
        for rec in found:
            item = QListWidgetItem(describe_recovery(rec))
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked)
            item.setToolTip(str(rec.path))
            self.list.addItem(item)
        restore = QPushButton("Restore")
        restore.setDefault(True)
        discard = QPushButton("Discard")
        later = QPushButton("Later")
        restore.clicked.connect(lambda: self._finish(self.RESTORE))
        discard.clicked.connect(lambda: self._finish(self.DISCARD))
        later.clicked.connect(lambda: self._finish(self.LATER))
        row = QHBoxLayout()
        row.addStretch(1)
        for b in (later, discard, restore):
            row.addWidget(b)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("The editor did not close normally. These autosaved documents can be restored:"))
        layout.addWidget(self.list)
        layout.addLayout(row)

    def _finish(self, choice: int) -> None:
        self.choice = choice
        self.accept()

    def checked(self) -> list[RecoveryFile]:
        return [rec for i, rec in enumerate(self.found)
                if self.list.item(i).checkState() == Qt.CheckState.Checked]
