"""Mode detection from the frame's contents."""
import numpy as np
import pytest

from editor.ai.modes import EditMode, detect_mode, detect_mode_in_document
from editor.document import Document, Rect


def rgba(alpha):
    a = np.asarray(alpha, np.uint8)
    out = np.zeros(a.shape + (4,), np.uint8)
    out[..., :3] = 100
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
    assert decision.label == mode.label and decision.reason


def test_labels_are_human():
    assert {m.label for m in EditMode} == {"Generate", "Prompt edit", "Inpaint selection", "Expand"}


def test_modes_read_from_a_document():
    doc = Document(64, 64)
    layer = doc.add_layer("paint")
    assert detect_mode_in_document(doc, Rect(0, 0, 64, 64)).mode == EditMode.TXT2IMG
    doc.select_rect(Rect(0, 0, 32, 64))
    doc.fill_selection(layer, (10, 200, 10))
    doc.select_none()
    assert detect_mode_in_document(doc, Rect(0, 0, 32, 32)).mode == EditMode.IMG2IMG
    assert detect_mode_in_document(doc, Rect(0, 0, 64, 32)).mode == EditMode.OUTPAINT
    assert detect_mode_in_document(doc, Rect(-16, 0, 32, 32)).mode == EditMode.OUTPAINT
    doc.select_rect(Rect(8, 8, 8, 8))
    assert detect_mode_in_document(doc, Rect(0, 0, 32, 32)).mode == EditMode.INPAINT
    # the selection is outside this frame: it does not count
    assert detect_mode_in_document(doc, Rect(0, 32, 32, 32)).mode == EditMode.IMG2IMG
