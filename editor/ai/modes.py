"""Which kind of generation a frame calls for, read from what it contains
(InvokeAI's rule, with an explicit selection taking precedence):

=================================  ===========  ====================
frame contents                     mode         label
=================================  ===========  ====================
nothing visible, or a plain        txt2img      Generate
background (white, one colour)
a selection inside the frame       inpaint      Inpaint selection
past the canvas                    outpaint     Expand
partly empty, inside the canvas    outpaint     Fill empty area
opaque content, no selection       img2img      Prompt edit
  ... with a FLUX Kontext final    kontext      Edit with Kontext
=================================  ===========  ====================

A selection wins over transparency because it is the user's explicit
statement of what should change; transparent context around it is pre-filled
for the model but stays transparent in the document.

A plain background counts as empty: a new document is white, and a user who
draws a frame on it means "make a picture here", not "edit this white". A
frame past the edge of a plain canvas is still an Expand (the canvas grows),
but marked ``blank`` so the plan repaints the plain part too instead of
joining a picture to the white with a visible seam.
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
# Opaque content whose channels vary by at most this much is a plain background (JPEG noise,
# dithering of a "white" canvas stay under it; the faintest painted stroke does not).
FLAT_SPREAD = 4


class EditMode(str, Enum):
    TXT2IMG = "txt2img"
    IMG2IMG = "img2img"
    INPAINT = "inpaint"
    OUTPAINT = "outpaint"
    # The frame's picture is FLUX Kontext's reference, the prompt an edit instruction; the image is
    # made from noise (editor.ai.flux.adjust_decision turns img2img into this for a Kontext model).
    KONTEXT = "kontext"

    @property
    def label(self) -> str:
        return MODE_LABELS[self]


MODE_LABELS = {
    EditMode.TXT2IMG: "Generate",
    EditMode.IMG2IMG: "Prompt edit",
    EditMode.INPAINT: "Inpaint selection",
    EditMode.OUTPAINT: "Expand",
    EditMode.KONTEXT: "Edit with Kontext",
}


FILL_LABEL = "Fill empty area"  # outpainting inside the canvas: nothing grows


@dataclass(frozen=True)
class ModeDecision:
    mode: EditMode
    label: str
    reason: str  # a phrase for the user: "the frame is empty"
    blank: bool = False  # the visible content is a plain background: repaint it too


def _decision(mode: EditMode, reason: str, label: str = "", blank: bool = False) -> ModeDecision:
    return ModeDecision(mode, label or mode.label, reason, blank)


def is_plain(rgba: np.ndarray) -> bool:
    """Fully opaque and (nearly) one colour: a background, not a picture."""
    if rgba.size == 0 or int(rgba[..., 3].min()) < 255:
        return False
    rgb = rgba[..., :3].reshape(-1, 3)
    return bool((rgb.max(axis=0).astype(np.int16) - rgb.min(axis=0)).max() <= FLAT_SPREAD)


def detect_mode(rgba: np.ndarray, selection: Optional[np.ndarray] = None, off_canvas: bool = False) -> ModeDecision:
    """Mode for a frame's composite ``rgba`` (HxWx4, off-canvas pixels
    transparent) and its part of the selection (HxW uint8 or None)."""
    alpha = rgba[..., 3]
    if int(alpha.max(initial=0)) < VISIBLE_ALPHA:
        return _decision(EditMode.TXT2IMG, "the frame is empty: a new picture is made")
    if selection is not None and selection.any():
        return _decision(EditMode.INPAINT, "only the selection inside the frame is repainted")
    visible = rgba[alpha >= EMPTY_ALPHA]
    plain = is_plain(visible[None]) if visible.size else False
    if off_canvas:
        if plain:
            return _decision(EditMode.OUTPAINT, "the canvas grows to the frame; its plain background is "
                             "painted over too", blank=True)
        return _decision(EditMode.OUTPAINT, "the frame reaches past the canvas: it grows to fit")
    if (alpha < EMPTY_ALPHA).any():
        return _decision(EditMode.OUTPAINT, "the transparent part of the frame is filled", label=FILL_LABEL)
    if plain:
        return _decision(EditMode.TXT2IMG, "the frame shows a plain background: a new picture is made", blank=True)
    return _decision(EditMode.IMG2IMG, "the picture in the frame is redrawn to match the prompt")


def detect_mode_in_document(document, frame: Rect) -> ModeDecision:
    """Same, reading the document (UI thread: the document is single-threaded)."""
    rgba = document.render(frame)
    selection = document.selection.region(frame)
    return detect_mode(rgba, selection, off_canvas=not document.canvas_rect.contains_rect(frame))
