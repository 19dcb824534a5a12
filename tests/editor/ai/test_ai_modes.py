"""Mode detection from the frame's contents."""
import numpy as np
import pytest

from editor.ai.modes import EditMode, detect_mode, detect_mode_in_document
from editor.document import Document, Rect


def rgba(alpha, plain=False):
    """A picture (a gradient) with this alpha; ``plain``: one flat colour instead."""
    a = np.asarray(alpha, np.uint8)
    out = np.zeros(a.shape + (4,), np.uint8)
    out[..., :3] = 100 if plain else (np.arange(a.shape[1], dtype=np.uint8) * 9)[None, :, None]
    out[..., 3] = a
    return out


def half(value_left, value_right, shape=(16, 16)):
    a = np.full(shape, value_left, np.uint8)
    a[:, shape[1] // 2:] = value_right
    return a


SEL = np.zeros((16, 16), np.uint8)
SEL[4:8, 4:8] = 255


@pytest.mark.parametrize("alpha,selection,off_canvas,mode", [
    (np.zeros((16, 16)), None, False, EditMode.TXT2IMG),
    (np.zeros((16, 16)), SEL, False, EditMode.TXT2IMG),        # nothing to inpaint in
    (np.full((16, 16), 3), None, False, EditMode.TXT2IMG),     # faint stray alpha is still empty
    (np.zeros((16, 16)), None, True, EditMode.TXT2IMG),       # empty past the canvas: just generate
    (np.full((16, 16), 255), None, False, EditMode.IMG2IMG),
    (np.full((16, 16), 200), None, False, EditMode.IMG2IMG),   # semi-opaque content is content
    (np.full((16, 16), 255), SEL, False, EditMode.INPAINT),
    (half(255, 0), SEL, False, EditMode.INPAINT),              # explicit selection wins
    (half(255, 0), None, False, EditMode.OUTPAINT),
    (np.full((16, 16), 255), None, True, EditMode.OUTPAINT),
    (np.full((16, 16), 255), np.zeros((16, 16), np.uint8), False, EditMode.IMG2IMG),  # empty selection
])
def test_mode_table(alpha, selection, off_canvas, mode):
    decision = detect_mode(rgba(alpha), selection, off_canvas)
    assert decision.mode == mode
    assert decision.label in (mode.label, "Fill empty area") and decision.reason


def test_labels_are_human():
    assert {m.label for m in EditMode} == {"Generate", "Prompt edit", "Inpaint selection", "Expand",
                                           "Edit with Kontext"}  # FLUX Kontext (issue 18)


def test_a_plain_background_counts_as_empty():
    white = np.full((16, 16, 4), 255, np.uint8)
    white[3, 5, :3] = 252  # a little noise stays plain
    decision = detect_mode(white)
    assert decision.mode == EditMode.TXT2IMG and decision.label == "Generate" and decision.blank
    assert detect_mode(rgba(np.full((16, 16), 255), plain=True)).mode == EditMode.TXT2IMG
    past = detect_mode(white, off_canvas=True)  # past the edge of a white canvas: it grows, white repainted
    assert (past.mode, past.label, past.blank) == (EditMode.OUTPAINT, "Expand", True)
    stroke = white.copy()
    stroke[8, 2:10, :3] = 40  # one painted line: a picture, no longer plain
    assert detect_mode(stroke).mode == EditMode.IMG2IMG and not detect_mode(stroke).blank


def test_transparent_area_inside_the_canvas_is_filled_not_expanded():
    decision = detect_mode(rgba(half(255, 0)))
    assert decision.mode == EditMode.OUTPAINT and decision.label == "Fill empty area"
    assert "grows" not in decision.reason
    assert detect_mode(rgba(np.full((16, 16), 255)), off_canvas=True).label == "Expand"


def test_modes_read_from_a_document():
    doc = Document(64, 64)
    layer = doc.add_layer("paint")
    assert detect_mode_in_document(doc, Rect(0, 0, 64, 64)).mode == EditMode.TXT2IMG
    picture = np.zeros((64, 32, 4), np.uint8)
    picture[..., 0] = np.arange(32, dtype=np.uint8)[None, :] * 7  # a gradient: content, not a plain fill
    picture[..., 3] = 255
    doc.add_layer_from_image(picture, 0, 0)
    assert detect_mode_in_document(doc, Rect(0, 0, 32, 32)).mode == EditMode.IMG2IMG
    assert detect_mode_in_document(doc, Rect(0, 0, 64, 32)).mode == EditMode.OUTPAINT
    assert detect_mode_in_document(doc, Rect(-16, 0, 32, 32)).mode == EditMode.OUTPAINT
    doc.select_rect(Rect(8, 8, 8, 8))
    assert detect_mode_in_document(doc, Rect(0, 0, 32, 32)).mode == EditMode.INPAINT
    # the selection is outside this frame: it does not count
    assert detect_mode_in_document(doc, Rect(0, 32, 32, 32)).mode == EditMode.IMG2IMG
