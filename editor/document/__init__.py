"""Headless document model of the editor: layers, compositing, selection,
undo. Pure Python + numpy/OpenCV; imports no Qt (the UI observes it through
:class:`~editor.document.signals.Signal`)."""

from .blendmodes import BlendMode
from .brush import BrushSettings, StrokeSpacer, dab_mask, make_dab
from .compositing import RenderCache, composite_region, render_region
from .document import MAX_CANVAS_PIXELS, Document
from .geometry import Rect
from .layers import LayerGroup, Node, RasterLayer
from .selection import Selection, SelectionOp
from .signals import Signal
from .tiles import TILE, TileGrid
from .undo import Command, MacroCommand, UndoStack

__all__ = [
    "BlendMode",
    "BrushSettings",
    "Command",
    "Document",
    "LayerGroup",
    "MacroCommand",
    "MAX_CANVAS_PIXELS",
    "Node",
    "RasterLayer",
    "Rect",
    "RenderCache",
    "Selection",
    "SelectionOp",
    "Signal",
    "StrokeSpacer",
    "TILE",
    "TileGrid",
    "UndoStack",
    "composite_region",
    "dab_mask",
    "make_dab",
    "render_region",
]
