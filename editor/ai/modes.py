"""Which kind of generation a frame calls for, read from what it contains
(InvokeAI's rule, with an explicit selection taking precedence):

=================================  ===========  ====================
frame contents                     mode         label
=================================  ===========  ====================
nothing visible (all transparent)  txt2img      Generate
a selection inside the frame       inpaint      Inpaint selection
partly empty, or past the canvas   outpaint     Expand
opaque content, no selection       img2img      Prompt edit
=================================  ===========  ====================

A selection wins over transparency because it is the user's explicit
statement of what should change; transparent context around it is pre-filled
for the model but stays transparent in the document.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Optional

import numpy as np

from editor.document.geometry import Rect

# A pixel with alpha below this counts as empty (nothing the model must keep).
EMPTY_ALPHA = 128
# A frame whose alpha never reaches this is blank (faint stray dabs do not count).
VISIBLE_ALPHA = 8


class EditMode(str, Enum):
    TXT2IMG = "txt2img"
    IMG2IMG = "img2img"
    INPAINT = "inpaint"
    OUTPAINT = "outpaint"

    @property
    def label(self) -> str:
        return MODE_LABELS[self]


MODE_LABELS = {
    EditMode.TXT2IMG: "Generate",
    EditMode.IMG2IMG: "Prompt edit",
    EditMode.INPAINT: "Inpaint selection",
    EditMode.OUTPAINT: "Expand",
}


@dataclass(frozen=True)
class ModeDecision:
    mode: EditMode
    label: str
    reason: str


def _decision(mode: EditMode, reason: str) -> ModeDecision:
    return ModeDecision(mode, mode.label, reason)


def detect_mode(rgba: np.ndarray, selection: Optional[np.ndarray] = None, off_canvas: bool = False) -> ModeDecision:
    """Mode for a frame's composite ``rgba`` (HxWx4, off-canvas pixels
    transparent) and its part of the selection (HxW uint8 or None)."""
    alpha = rgba[..., 3]
    if int(alpha.max(initial=0)) < VISIBLE_ALPHA:
        return _decision(EditMode.TXT2IMG, "the frame is empty")
    if selection is not None and selection.any():
        return _decision(EditMode.INPAINT, "a selection lies inside the frame")
    if off_canvas:
        return _decision(EditMode.OUTPAINT, "the frame reaches past the canvas")
    if (alpha < EMPTY_ALPHA).any():
        return _decision(EditMode.OUTPAINT, "part of the frame is transparent")
    return _decision(EditMode.IMG2IMG, "the frame holds opaque content")


def detect_mode_in_document(document, frame: Rect) -> ModeDecision:
    """Same, reading the document (UI thread: the document is single-threaded)."""
    rgba = document.render(frame)
    selection = document.selection.region(frame)
    return detect_mode(rgba, selection, off_canvas=not document.canvas_rect.contains_rect(frame))
