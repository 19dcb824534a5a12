"""Tool options panel: paint colour, brush settings of the current brush
(paint, eraser and mask brush each keep their own), selection options and
fill options. Widgets follow the session's ``*_changed`` signals."""

from __future__ import annotations

from typing import Callable, Optional

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QCheckBox, QColorDialog, QComboBox, QDoubleSpinBox, QFormLayout, QGridLayout, QHBoxLayout, QLabel,
    QSlider, QSpinBox, QStackedWidget, QToolButton, QVBoxLayout, QWidget,
)

from editor.document import SelectionOp

from .session import MAX_BRUSH_SIZE, EditorSession

SWATCHES = (
    (0, 0, 0), (255, 255, 255), (128, 128, 128), (200, 40, 40), (240, 140, 30), (240, 210, 40),
    (60, 160, 70), (40, 120, 200), (110, 60, 170), (120, 80, 50),
)
KIND_TITLES = {"paint": "Brush", "erase": "Eraser", "mask": "Mask brush"}
COLOUR_TOOLS = ("brush", "eyedropper", "fill")  # the others (frame, selection, move...) never use the colour


class SliderSpin(QWidget):
    """A slider with a spin box: drag for feel, type for precision."""

    value_changed = Signal(float)

    def __init__(self, minimum: int, maximum: int, suffix: str = "", scale: float = 1.0) -> None:
        super().__init__()
        self._scale = scale
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(minimum, maximum)
        self.spin = QSpinBox()
        self.spin.setRange(minimum, maximum)
        self.spin.setSuffix(suffix)
        self.spin.setKeyboardTracking(False)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.spin)
        self.slider.valueChanged.connect(self._changed)
        self.spin.valueChanged.connect(self._changed)

    def _changed(self, v: int) -> None:
        for w in (self.slider, self.spin):
            if w.value() != v:
                w.blockSignals(True)
                w.setValue(v)
                w.blockSignals(False)
        self.value_changed.emit(v / self._scale)

    def set_value(self, value: float) -> None:
        v = int(round(value * self._scale))
        for w in (self.slider, self.spin):
            w.blockSignals(True)
            w.setValue(v)
            w.blockSignals(False)

    def value(self) -> float:
        return self.spin.value() / self._scale


class ColorButton(QToolButton):
    def __init__(self) -> None:
        super().__init__()
        self.setFixedSize(44, 28)
        self.setToolTip("Paint colour (click to choose)")

    def show_color(self, rgb: tuple[int, int, int]) -> None:
        self.setStyleSheet(f"QToolButton {{ background: rgb{tuple(rgb)}; border: 1px solid #111; }}")


class ToolOptionsPanel(QWidget):
    def __init__(self, session: EditorSession, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.session = session
        self.brush_kind = "paint"
        self._updating = False

        # Colour row
        self.color_button = ColorButton()
        self.color_button.clicked.connect(self.choose_color)
        swatches = QGridLayout()
        swatches.setSpacing(2)
        for i, rgb in enumerate(SWATCHES):
            b = QToolButton()
            b.setFixedSize(16, 16)
            b.setStyleSheet(f"QToolButton {{ background: rgb{rgb}; border: 1px solid #222; }}")
            b.setToolTip("rgb{}".format(rgb))
            b.clicked.connect(lambda _c=False, c=rgb: session.set_color(c))
            swatches.addWidget(b, i // 5, i % 5)
        self.color_row = QWidget()  # shown only for the tools that paint with the colour
        color_row = QHBoxLayout(self.color_row)
        color_row.setContentsMargins(0, 0, 0, 0)
        color_row.addWidget(self.color_button)
        color_row.addLayout(swatches)
        color_row.addStretch(1)

        # Brush page
        self.brush_title = QLabel()
        self.brush_title.setStyleSheet("font-weight: bold")
        self.size = SliderSpin(1, int(MAX_BRUSH_SIZE), " px")
        self.hardness = SliderSpin(0, 100, " %", 100.0)
        self.opacity = SliderSpin(1, 100, " %", 100.0)
        self.flow = SliderSpin(1, 100, " %", 100.0)
        self.spacing = SliderSpin(1, 200, " %", 100.0)
        self.smoothing = SliderSpin(0, 95, " %", 100.0)
        self.pressure_size = QCheckBox("Pressure → size")
        self.pressure_flow = QCheckBox("Pressure → flow")
        brush_page = QWidget()
        form = QFormLayout(brush_page)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow(self.brush_title)
        form.addRow("Size", self.size)
        form.addRow("Hardness", self.hardness)
        form.addRow("Opacity", self.opacity)
        form.addRow("Flow", self.flow)
        form.addRow("Spacing", self.spacing)
        form.addRow("Smoothing", self.smoothing)
        form.addRow(self.pressure_size)
        form.addRow(self.pressure_flow)
        for widget, field in ((self.size, "size"), (self.hardness, "hardness"), (self.opacity, "opacity"),
                              (self.flow, "flow"), (self.spacing, "spacing")):
            widget.value_changed.connect(self._brush_setter(field))
        self.pressure_size.toggled.connect(self._brush_setter("pressure_size"))
        self.pressure_flow.toggled.connect(self._brush_setter("pressure_flow"))
        self.smoothing.value_changed.connect(lambda v: self._set_option("smoothing", v))

        # Selection page
        self.selection_mode = QComboBox()
        for op in SelectionOp:
            self.selection_mode.addItem(op.value.title(), op)
        self.feather = QDoubleSpinBox()
        self.feather.setRange(0.0, 500.0)
        self.feather.setSuffix(" px")
        self.feather.setDecimals(1)
        selection_page = QWidget()
        sform = QFormLayout(selection_page)
        sform.setContentsMargins(0, 0, 0, 0)
        sform.addRow(QLabel("<b>Selection</b>"))
        sform.addRow("Mode", self.selection_mode)
        sform.addRow("Feather", self.feather)
        sform.addRow(QLabel("Shift adds, Alt subtracts,\nShift+Alt intersects; click deselects."))
        self.selection_mode.activated.connect(
            lambda i: self._set_option("selection_mode", self.selection_mode.itemData(i)))
        self.feather.valueChanged.connect(lambda v: self._set_option("selection_feather", float(v)))

        # Fill page
        self.tolerance = SliderSpin(0, 255)
        self.sample_merged = QCheckBox("Sample all layers")
        self.fill_selection = QCheckBox("Fill whole selection")
        fill_page = QWidget()
        fform = QFormLayout(fill_page)
        fform.setContentsMargins(0, 0, 0, 0)
        fform.addRow(QLabel("<b>Fill</b>"))
        fform.addRow("Tolerance", self.tolerance)
        fform.addRow(self.sample_merged)
        fform.addRow(self.fill_selection)
        self.tolerance.value_changed.connect(lambda v: self._set_option("fill_tolerance", int(v)))
        self.sample_merged.toggled.connect(lambda c: self._set_option("fill_sample_merged", c))
        self.fill_selection.toggled.connect(lambda c: self._set_option("fill_whole_selection", c))

        self.hint = QLabel()
        self.hint.setWordWrap(True)
        self.pages = QStackedWidget()
        for page in (brush_page, selection_page, fill_page, self.hint):
            self.pages.addWidget(page)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.color_row)
        layout.addWidget(self.pages)
        layout.addStretch(1)

        session.color_changed.connect(self.color_button.show_color)
        session.brush_changed.connect(self._on_brush_changed)
        session.options_changed.connect(self._sync_options)
        self.color_button.show_color(session.color)
        self._sync_brush()
        self._sync_options()

    # ---------------------------------------------------------------- tools
    def show_tool(self, tool_id: str, brush_kind: Optional[str], hint: str = "") -> None:
        self.color_row.setVisible(tool_id in COLOUR_TOOLS or brush_kind == "paint")
        if brush_kind is not None:
            self.brush_kind = brush_kind
            self._sync_brush()
            self.pages.setCurrentIndex(0)
        elif tool_id in ("rect_select", "ellipse_select", "lasso"):
            self.pages.setCurrentIndex(1)
        elif tool_id == "fill":
            self.pages.setCurrentIndex(2)
        else:
            self.hint.setText(hint)
            self.pages.setCurrentIndex(3)

    def choose_color(self) -> None:
        r, g, b = self.session.color
        c = QColorDialog.getColor(QColor(r, g, b), self, "Paint colour")
        if c.isValid():
            self.session.set_color((c.red(), c.green(), c.blue()))

    # ------------------------------------------------------------- syncing
    def _brush_setter(self, field: str) -> Callable[[object], None]:
        def setter(value: object) -> None:
            if not self._updating:
                self.session.update_brush(self.brush_kind, **{field: value})
        return setter

    def _set_option(self, name: str, value: object) -> None:
        if not self._updating:
            self.session.set_option(name, value)

    def _on_brush_changed(self, kind: str) -> None:
        if kind == self.brush_kind:
            self._sync_brush()

    def _sync_brush(self) -> None:
        b = self.session.brush(self.brush_kind)
        self._updating = True
        try:
            self.brush_title.setText(KIND_TITLES.get(self.brush_kind, "Brush"))
            self.size.set_value(b.size)
            self.hardness.set_value(b.hardness)
            self.opacity.set_value(b.opacity)
            self.flow.set_value(b.flow)
            self.spacing.set_value(b.spacing)
            self.pressure_size.setChecked(b.pressure_size)
            self.pressure_flow.setChecked(b.pressure_flow)
        finally:
            self._updating = False

    def _sync_options(self) -> None:
        s = self.session
        self._updating = True
        try:
            self.smoothing.set_value(s.smoothing)
            self.selection_mode.setCurrentIndex(self.selection_mode.findData(s.selection_mode))
            self.feather.setValue(s.selection_feather)
            self.tolerance.set_value(s.fill_tolerance)
            self.sample_merged.setChecked(s.fill_sample_merged)
            self.fill_selection.setChecked(s.fill_whole_selection)
        finally:
            self._updating = False
