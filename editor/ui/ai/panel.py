"""The AI dock: prompt, settings, models, Live, Generate/Cancel, progress and
the staging strip. Widgets follow the controller's signals; edits go to the
controller (``update_request``), never to the engine directly.

Torch-free at import time: the panel is shown (with "Loading…") before the
AI core is imported in the background, then ``bind`` wires it up.
"""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QGridLayout, QGroupBox, QHBoxLayout, QLabel,
    QListWidget, QListWidgetItem, QMenu, QPlainTextEdit, QProgressBar, QPushButton, QSizePolicy, QSlider, QSpinBox,
    QToolButton, QVBoxLayout, QWidget,
)

from inference.api import SAMPLERS as ENGINE_SAMPLERS
from inference.api import SEED_MAX

from .lora_panel import LoraPanel
from .overlay import qimage_from_rgba

SAMPLERS = tuple((name, info.display_name) for name, info in ENGINE_SAMPLERS.items())
THUMB = 64
# Fixed heights (in text lines) of the areas whose text changes: a message, a mode or a progress line
# appearing must never move the controls below it (a click meant for Cancel would hit empty space).
HEADER_LINES = 2
STATUS_LINES = 3
LEVEL_STYLES = {
    "info": "color: palette(window-text);",
    "warning": "color: #e0b050;",
    "error": "color: #ff7a6e; font-weight: bold;",
}
STRENGTH_TIP = ("How much of the picture in the frame may change: low keeps it close to what is there, "
                "100 % paints it anew. Auto: 60 % when redrawing a picture, 100 % otherwise. Only that share "
                "of the steps runs (60 % of 20 steps = 12).")
STEPS_TIP = "More steps: finer detail, slower. Redrawing runs only the Strength share of them."
GUIDANCE_TIP = "How closely the picture follows the prompt: higher is more literal, lower more free"
NEGATIVE_TIP = "What the image should not show. A1111 syntax: (word:1.4) stresses a word, [word] weakens it."


def _small_label(text: str = "") -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


class AIPanel(QWidget):
    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.controller = None
        self._syncing = False
        self.setMinimumWidth(260)

        self.mode_label = _fixed_label(HEADER_LINES, "Loading the AI engine…", wrap=False)
        self.mode_label.setTextFormat(Qt.TextFormat.RichText)
        self.message_label = _fixed_label(STATUS_LINES)
        self._message_timer = QTimer(self)
        self._message_timer.setSingleShot(True)
        self._message_timer.timeout.connect(self._fade_info)

        self.prompt = QPlainTextEdit()
        self.prompt.setPlaceholderText("Describe what the frame should show…")
        self.prompt.setTabChangesFocus(True)
        self.prompt.setFixedHeight(72)
        self.negative = QPlainTextEdit()
        self.negative.setPlaceholderText("Negative prompt (optional)")
        self.negative.setToolTip(NEGATIVE_TIP)
        self.negative.setTabChangesFocus(True)
        self.negative.setFixedHeight(44)

        self.seed = QDoubleSpinBox()  # QSpinBox stops at 2**31 - 1; seeds are 32-bit
        self.seed.setDecimals(0)
        self.seed.setRange(0, SEED_MAX)
        self.seed.setKeyboardTracking(False)
        self.seed.setToolTip("The same seed and settings give the same image")
        self.seed_lock = QToolButton()
        self.seed_lock.setText("Lock")
        self.seed_lock.setCheckable(True)
        self.seed_lock.setToolTip("Locked: every Generate uses this seed. Unlocked: a new seed each time")
        self.seed_random = QToolButton()
        self.seed_random.setText("Random")
        self.seed_random.setToolTip("New random seed")
        self.steps = QSpinBox()
        self.steps.setRange(1, 150)
        self.steps.setKeyboardTracking(False)
        self.steps.setToolTip(STEPS_TIP)
        self.guidance = QDoubleSpinBox()
        self.guidance.setRange(0.0, 30.0)
        self.guidance.setSingleStep(0.5)
        self.guidance.setDecimals(1)
        self.guidance.setKeyboardTracking(False)
        self.guidance.setToolTip(GUIDANCE_TIP)
        self.guidance_label = QLabel("Guidance")  # "Guidance (distilled)" for FLUX dev (_sync_guidance)
        self.guidance_label.setToolTip(GUIDANCE_TIP)
        # "Guidance (distilled)" is wider than the dock's grid gives it: wrap under "Guidance" rather
        # than clip (the row grows only while a guidance-distilled FLUX model is the final).
        self.guidance_label.setWordWrap(True)
        self.strength = QSpinBox()
        self.strength.setRange(0, 100)
        self.strength.setSuffix(" %")
        self.strength.setSpecialValueText("Auto")
        self.strength.setKeyboardTracking(False)
        self.strength.setToolTip(STRENGTH_TIP)
        self.sampler = QComboBox()
        for name, label in SAMPLERS:
            self.sampler.addItem(label, name)
            self.sampler.setItemData(self.sampler.count() - 1, ENGINE_SAMPLERS[name].description,
                                     Qt.ItemDataRole.ToolTipRole)
        self.variations = QSpinBox()
        self.variations.setRange(1, 8)
        self.variations.setToolTip("How many results Generate makes (seed, seed+1, …)")

        self.preview_model = QComboBox()
        self.preview_model.setToolTip("Fast model for the live preview (stays loaded)")
        self.final_model = QComboBox()
        self.final_model.setToolTip("Model for Generate")
        for combo in (self.preview_model, self.final_model):
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(12)
        self.add_model = QToolButton()
        self.add_model.setText("Add model…")
        self.add_model.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.add_model)
        menu.addAction("Checkpoint file (.safetensors)…", self._add_checkpoint)
        menu.addAction("Diffusers folder…", self._add_folder)
        self.add_model.setMenu(menu)
        self.lora_panel = LoraPanel()

        self.live = QCheckBox("Live preview")
        self.live.setToolTip("Redraw the frame with the fast model as you paint, select or type. "
                             "Generate then refines what you see")
        self.live_opacity_label = QLabel("Opacity")
        self.live_opacity = QSlider(Qt.Orientation.Horizontal)
        self.live_opacity.setRange(10, 100)
        self.live_opacity.setToolTip("How strongly the live preview covers the canvas")
        self.live_opacity_label.setBuddy(self.live_opacity)
        self.live_stats = _fixed_label(1, wrap=False)
        self.live_stats.setToolTip("Time per preview frame, frames per second over the last seconds, and "
                                   "frames skipped because newer edits replaced them")
        self._stats_timer = QTimer(self)  # the rate decays to "idle" when edits stop
        self._stats_timer.setInterval(1000)
        self._stats_timer.timeout.connect(self._refresh_live_stats)

        self.generate_button = QPushButton("Generate")
        self.generate_button.setDefault(True)
        self.generate_button.setToolTip("Render the frame with the final model (Ctrl+Enter). With Live on, "
                                        "it refines the preview you see")
        self.generate_button.setMinimumHeight(32)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the running generation (Esc); the document stays as it was")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        self.progress.setFixedHeight(8)
        self.progress_text = _fixed_label(1, wrap=False)
        self.progress_thumb = QLabel()
        self.progress_thumb.setFixedSize(THUMB, THUMB)
        self.progress_thumb.setAlignment(Qt.AlignmentFlag.AlignCenter)
        keep = self.progress_thumb.sizePolicy()
        keep.setRetainSizeWhenHidden(True)  # showing the thumbnail must not move anything
        self.progress_thumb.setSizePolicy(keep)
        self.progress_thumb.hide()

        self.results = QListWidget()
        self.results.setViewMode(QListWidget.ViewMode.IconMode)
        self.results.setFlow(QListWidget.Flow.LeftToRight)
        self.results.setWrapping(False)
        self.results.setIconSize(QSize(THUMB, THUMB))
        self.results.setFixedHeight(THUMB + 26)
        self.results.setMovement(QListWidget.Movement.Static)
        self.results.setSpacing(2)
        self.results.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.previous_button = QToolButton()
        self.previous_button.setArrowType(Qt.ArrowType.LeftArrow)
        self.previous_button.setToolTip("Previous result")
        self.next_button = QToolButton()
        self.next_button.setArrowType(Qt.ArrowType.RightArrow)
        self.next_button.setToolTip("Next result")
        self.result_index = QLabel("")
        self.accept_button = QPushButton("Accept")
        self.accept_button.setToolTip("Add the result as a new layer (Enter with the frame tool; Ctrl+Z removes it)")
        self.discard_button = QPushButton("Discard")
        self.discard_button.setToolTip("Drop the results; the document stays as it was (Esc with the frame tool)")

        self._layout()
        self.setEnabled(False)

    def _layout(self) -> None:
        root = QVBoxLayout(self)
        root.setContentsMargins(6, 6, 6, 6)
        root.setSpacing(6)
        root.addWidget(self.mode_label)
        root.addWidget(self.prompt)
        root.addWidget(self.negative)

        settings = QGridLayout()
        settings.setHorizontalSpacing(6)
        settings.setVerticalSpacing(4)
        seed_row = QHBoxLayout()
        seed_row.setSpacing(2)
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(self.seed_lock)
        seed_row.addWidget(self.seed_random)
        settings.addWidget(QLabel("Seed"), 0, 0)
        settings.addLayout(seed_row, 0, 1, 1, 3)
        settings.addWidget(QLabel("Steps"), 1, 0)
        settings.addWidget(self.steps, 1, 1)
        settings.addWidget(self.guidance_label, 1, 2)
        settings.addWidget(self.guidance, 1, 3)
        settings.addWidget(QLabel("Strength"), 2, 0)
        settings.addWidget(self.strength, 2, 1)
        settings.addWidget(QLabel("Results"), 2, 2)
        settings.addWidget(self.variations, 2, 3)
        settings.addWidget(QLabel("Sampler"), 3, 0)
        settings.addWidget(self.sampler, 3, 1, 1, 3)
        settings.setColumnStretch(1, 1)
        settings.setColumnStretch(3, 1)
        root.addLayout(settings)

        models = QGroupBox("Models")
        form = QFormLayout(models)
        form.setContentsMargins(6, 4, 6, 6)
        form.addRow("Preview", self.preview_model)
        form.addRow("Final", self.final_model)
        form.addRow("", self.add_model)
        root.addWidget(models)
        root.addWidget(self.lora_panel)

        live_row = QHBoxLayout()
        live_row.addWidget(self.live)
        live_row.addStretch(1)
        live_row.addWidget(self.live_opacity_label)
        live_row.addWidget(self.live_opacity, 2)
        root.addLayout(live_row)
        root.addWidget(self.live_stats)

        buttons = QHBoxLayout()
        buttons.addWidget(self.generate_button, 2)
        buttons.addWidget(self.cancel_button, 1)
        root.addLayout(buttons)
        progress_row = QHBoxLayout()
        progress_col = QVBoxLayout()
        progress_col.addWidget(self.progress)
        progress_col.addWidget(self.progress_text)
        progress_col.addWidget(self.message_label)
        progress_col.addStretch(1)
        progress_row.addLayout(progress_col, 1)
        progress_row.addWidget(self.progress_thumb, 0, Qt.AlignmentFlag.AlignTop)
        root.addLayout(progress_row)

        self.results_box = QGroupBox("Results")
        results = QVBoxLayout(self.results_box)
        results.setContentsMargins(6, 4, 6, 6)
        results.addWidget(self.results)
        nav = QHBoxLayout()
        nav.addWidget(self.previous_button)
        nav.addWidget(self.result_index, 1, Qt.AlignmentFlag.AlignCenter)
        nav.addWidget(self.next_button)
        results.addLayout(nav)
        decide = QHBoxLayout()
        decide.addWidget(self.accept_button)
        decide.addWidget(self.discard_button)
        results.addLayout(decide)
        root.addWidget(self.results_box)

        # The active layer's generation settings (an AI layer's "properties"), below everything else
        # so showing it moves no control.
        self.layer_box = QGroupBox("AI layer")
        layer_col = QVBoxLayout(self.layer_box)
        layer_col.setContentsMargins(6, 4, 6, 6)
        self.layer_info = _small_label()
        layer_col.addWidget(self.layer_info)
        self.layer_buttons = QHBoxLayout()
        layer_col.addLayout(self.layer_buttons)
        self.layer_box.hide()
        root.addWidget(self.layer_box)
        root.addStretch(1)
        for label in self.findChildren(QLabel):
            if label.sizePolicy().horizontalPolicy() != QSizePolicy.Policy.Ignored:  # fixed areas stay as set
                label.setSizePolicy(QSizePolicy.Policy.Preferred, label.sizePolicy().verticalPolicy())

    # ------------------------------------------------------------ binding
    def resizeEvent(self, event) -> None:  # noqa: N802 - the header elides to the new width
        super().resizeEvent(event)
        self._show_mode()

    def set_unavailable(self, text: str) -> None:
        """The AI core could not be loaded: say so; the rest of the editor works."""
        self.setEnabled(True)
        for child in self.findChildren(QWidget):
            if child not in (self.mode_label, self.message_label):
                child.setEnabled(False)
        self.mode_label.setText("<b>AI features are off</b>")
        self.show_message(text, "error")

    def bind(self, controller) -> None:
        self.controller = c = controller
        self.setEnabled(True)
        self._fill_models()
        self._sync_request()
        self.live_opacity.setValue(round(c.live_opacity * 100))
        self.prompt.textChanged.connect(lambda: self._edit(prompt=self.prompt.toPlainText()))
        self.negative.textChanged.connect(lambda: self._edit(negative_prompt=self.negative.toPlainText()))
        self.seed.valueChanged.connect(lambda v: self._edit(seed=int(round(v))))
        self.seed_lock.toggled.connect(self._on_seed_lock)
        self.seed_random.clicked.connect(lambda: c.randomize_seed())
        self.steps.valueChanged.connect(lambda v: self._edit(steps=int(v)))
        self.guidance.valueChanged.connect(lambda v: self._edit(guidance=float(v)))
        self.strength.valueChanged.connect(lambda v: self._edit(strength=(v / 100.0) if v else None))
        self.sampler.currentIndexChanged.connect(lambda _i: self._edit(sampler=self.sampler.currentData()))
        self.variations.valueChanged.connect(lambda v: self._edit(variations=int(v)))
        self.preview_model.activated.connect(lambda _i: c.set_models(preview=self.preview_model.currentData()))
        self.final_model.activated.connect(lambda _i: c.set_models(final=self.final_model.currentData()))
        self.live.toggled.connect(self._on_live_toggled)
        self.live_opacity.valueChanged.connect(lambda v: c.set_live_opacity(v / 100.0))
        self.generate_button.clicked.connect(lambda: c.generate())
        self.cancel_button.clicked.connect(lambda: c.cancel())
        self.previous_button.clicked.connect(lambda: c.staging.previous())  # c.staging: the current document's
        self.next_button.clicked.connect(lambda: c.staging.next())
        self.results.currentRowChanged.connect(self._on_result_row)
        self.accept_button.clicked.connect(lambda: c.accept())
        self.discard_button.clicked.connect(lambda: c.discard())
        self.lora_panel.bind(c)
        self.lora_panel.trigger_clicked.connect(self.insert_prompt_word)

        c.mode_changed.connect(lambda _d: self._show_mode())
        c.frame_changed.connect(self._show_mode)
        c.message.connect(self.show_message)
        c.progress_changed.connect(self._on_progress)
        c.progress_preview.connect(self._on_progress_preview)
        c.busy_changed.connect(self._on_busy)
        c.live_changed.connect(self._on_live_changed)
        c.live_stats_changed.connect(self._on_live_stats)
        c.staging_changed.connect(self._on_staging)
        c.request_changed.connect(self._sync_request)
        c.models_changed.connect(self._fill_models)
        self._show_mode()
        self._on_staging()
        self._on_busy(False)

    def _edit(self, **changes) -> None:
        if not self._syncing and self.controller is not None:
            self.controller.update_request(**changes)

    def _sync_request(self) -> None:
        r = self.controller.request
        self._syncing = True
        try:
            if self.prompt.toPlainText() != r.prompt:
                self.prompt.setPlainText(r.prompt)
            if self.negative.toPlainText() != r.negative_prompt:
                self.negative.setPlainText(r.negative_prompt)
            self.seed.setValue(min(int(r.seed), SEED_MAX))  # a double holds every 32-bit seed exactly
            self.seed_lock.setChecked(r.seed_locked)
            self.steps.setValue(int(r.steps))
            self.guidance.setValue(float(r.guidance))
            self.strength.setValue(0 if r.strength is None else round(r.strength * 100))
            index = self.sampler.findData(r.sampler)
            self.sampler.setCurrentIndex(max(0, index))
            self.variations.setValue(int(r.variations))
            self._select_model(self.preview_model, r.preview_model)
            self._select_model(self.final_model, r.final_model)
        finally:
            self._syncing = False
        self._sync_guidance()

    def _sync_guidance(self) -> None:
        """FLUX dev embeds guidance (not CFG): say so; schnell ignores it: grey the control out."""
        control = getattr(self.controller, "guidance_control", None)
        if control is None:
            return
        state = control()
        tip = state.tooltip or GUIDANCE_TIP
        self.guidance_label.setText(state.label)
        for widget in (self.guidance_label, self.guidance):
            widget.setToolTip(tip)
        self.guidance.setEnabled(state.enabled)

    def _fill_models(self) -> None:
        c = self.controller
        for combo, current in ((self.preview_model, c.request.preview_model),
                               (self.final_model, c.request.final_model)):
            combo.blockSignals(True)
            combo.clear()
            for entry in c.entries.values():
                text = entry.label if entry.available else f"{entry.label} (missing)"
                combo.addItem(text, entry.id)
                tip = entry.problem or "\n".join(filter(None, (entry.description, str(entry.path))))
                combo.setItemData(combo.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
            self._select_model(combo, current)
            combo.blockSignals(False)
        self._sync_guidance()

    @staticmethod
    def _select_model(combo: QComboBox, model_id: str) -> None:
        index = combo.findData(model_id)
        if index >= 0 and index != combo.currentIndex():
            combo.blockSignals(True)
            combo.setCurrentIndex(index)
            combo.blockSignals(False)

    def insert_prompt_word(self, word: str) -> None:
        """A LoRA's trigger word, at the prompt's cursor, set off by commas (the edit reaches the request
        through textChanged)."""
        cursor = self.prompt.textCursor()
        text, at = self.prompt.toPlainText(), cursor.position()
        before, after = text[:at].rstrip(), text[at:].lstrip()
        insert = (", " if before and not before.endswith(",") else (" " if before else "")) + word
        insert += ", " if after and not after.startswith(",") else ""
        cursor.setPosition(len(before))
        cursor.setPosition(len(text) - len(after), cursor.MoveMode.KeepAnchor)
        cursor.insertText(insert)
        self.prompt.setTextCursor(cursor)
        self.prompt.setFocus()

    # ------------------------------------------------------------ updates
    def _show_mode(self) -> None:
        c = self.controller
        if c is None or c.mode is None:
            return
        f = c.frame
        reason = f"{c.mode.reason[:1].upper()}{c.mode.reason[1:]}"
        self.mode_label.setText(f"<b>{c.mode.label}</b> · {f.w}×{f.h}<br><span style='color: gray'>"
                                f"{_elided(self.mode_label, reason)}</span>")
        self.mode_label.setToolTip(f"{c.mode.label}: {reason}. Frame {f.w}×{f.h} at {f.x}, {f.y}")

    def show_message(self, text: str, level: str = "info") -> None:
        """Messages go to the fixed status area under the buttons; an empty text clears it."""
        self.message_label.setStyleSheet(LEVEL_STYLES.get(level, ""))
        self.message_label.setText(text)
        self.message_label.setToolTip(text)
        self.message_level = level if text else ""
        if level == "info" and text:
            self._message_timer.start(8000)
        else:
            self._message_timer.stop()

    message_level = ""

    def _fade_info(self) -> None:
        if self.message_level == "info":
            self.show_message("", "")

    def _on_progress(self, fraction: float, text: str) -> None:
        if fraction < 0:
            self.progress.setValue(0)
            self.progress_text.setText("")
            return
        self.progress.setValue(round(fraction * 1000))
        self.progress_text.setText(text)

    def _on_progress_preview(self, image) -> None:
        if image is None:
            self.progress_thumb.hide()
            return
        self.progress_thumb.setPixmap(_thumbnail(image))
        self.progress_thumb.show()

    def _on_busy(self, busy: bool) -> None:
        # Cancel has one target: the running generation. A live render needs none (newer edits replace it).
        self.generate_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)

    def _on_live_toggled(self, on: bool) -> None:
        if self._syncing:
            return
        state = self.controller.set_live(on)
        if state != on:
            self._on_live_changed(state)

    def _on_live_changed(self, on: bool) -> None:
        self._syncing = True
        self.live.setChecked(on)
        self._syncing = False
        self.live_opacity.setEnabled(on)
        self.live_opacity_label.setEnabled(on)
        if on:
            self._stats_timer.start()
        else:
            self._stats_timer.stop()
            self.live_stats.setText("")
        self._on_busy(self.controller.busy)

    def _on_live_stats(self, _stats=None) -> None:
        self._refresh_live_stats()

    def _refresh_live_stats(self) -> None:
        live = self.controller.live if self.controller is not None else None
        text = live.readout() if live is not None and self.controller.live_enabled else ""
        self.live_stats.setText(f"Preview: {text}" if text else "")

    def _on_seed_lock(self, locked: bool) -> None:
        self._edit(seed_locked=bool(locked))
        self.seed_lock.setText("Locked" if locked else "Lock")

    def _on_staging(self) -> None:
        staging = self.controller.staging
        self.results.blockSignals(True)
        if self.results.count() != staging.count or any(
                self.results.item(i).data(Qt.ItemDataRole.UserRole) != id(im) for i, im in enumerate(staging.images)):
            self.results.clear()
            for i, image in enumerate(staging.images):
                item = QListWidgetItem(QIcon(_thumbnail(image)), str(i + 1))
                item.setData(Qt.ItemDataRole.UserRole, id(image))
                item.setToolTip(f"Result {i + 1}: seed {image.seed}")
                self.results.addItem(item)
        if staging.count:
            self.results.setCurrentRow(staging.index)
        self.results.blockSignals(False)
        has = staging.count > 0
        for w in (self.accept_button, self.discard_button, self.previous_button, self.next_button):
            w.setEnabled(has)
        self.previous_button.setEnabled(staging.count > 1)
        self.next_button.setEnabled(staging.count > 1)
        self.result_index.setText(f"{staging.index + 1} / {staging.count}" if has else "No results yet")
        self.results.setVisible(has)

    def _on_result_row(self, row: int) -> None:
        if row >= 0:
            self.controller.staging.select(row)

    # ------------------------------------------------------------ AI layer
    def set_layer_actions(self, actions) -> None:
        """Regenerate / Vary / Use these settings, as buttons under the layer's settings."""
        for action in actions:
            button = QToolButton()
            button.setDefaultAction(action)
            self.layer_buttons.addWidget(button)
        self.layer_buttons.addStretch(1)

    def show_layer(self, name: str, lines: list[str]) -> None:
        """The active layer's generation settings ([] hides the box: not an AI layer)."""
        self.layer_box.setVisible(bool(lines))
        self.layer_box.setTitle(f"AI layer “{name}”" if lines else "AI layer")
        self.layer_info.setText("\n".join(lines))

    # ------------------------------------------------------------- models
    def choose_model_file(self) -> str:
        path, _ = QFileDialog.getOpenFileName(self, "Add a model checkpoint", "",
                                              "Checkpoints (*.safetensors *.gguf *.sft);;All files (*)")
        return path

    def choose_model_folder(self) -> str:
        return QFileDialog.getExistingDirectory(self, "Add a diffusers model folder (with model_index.json)")

    def _add_checkpoint(self) -> None:
        path = self.choose_model_file()
        if path:
            self.controller.add_model(path)

    def _add_folder(self) -> None:
        path = self.choose_model_folder()
        if path:
            self.controller.add_model(path)


def _fixed_label(lines: int, text: str = "", wrap: bool = True) -> QLabel:
    """A label exactly ``lines`` text lines tall, whatever it shows (empty included)."""
    label = QLabel(text)
    label.setWordWrap(wrap)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    label.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
    label.setFixedHeight(label.fontMetrics().lineSpacing() * lines + 2)
    label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)  # long text never widens the dock
    return label


def _elided(label: QLabel, text: str) -> str:
    width = max(80, label.width() - 8)
    return label.fontMetrics().elidedText(text, Qt.TextElideMode.ElideRight, width)


def _thumbnail(image) -> QPixmap:
    pixmap = QPixmap.fromImage(qimage_from_rgba(image.rgba))
    return pixmap.scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
