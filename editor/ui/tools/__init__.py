"""Canvas tools and their shortcuts (Krita/Photoshop conventions)."""

from __future__ import annotations

from dataclasses import dataclass

from .base import PointerEvent, Tool, ToolHost
from .brush_tools import BrushTool, MaskBrushTool
from .frame_tool import FrameTool
from .selection_tools import EllipseSelectTool, LassoTool, RectSelectTool
from .simple_tools import EyedropperTool, FillTool, MoveTool, PanTool, ZoomTool


@dataclass(frozen=True)
class ToolSpec:
    tool_id: str
    label: str
    shortcut: str
    tip: str


# Order = tool bar order.
TOOL_SPECS = (
    ToolSpec("brush", "Brush", "B", "Paint with the round brush; Ctrl+click picks a colour, Shift+click draws a line"),
    ToolSpec("eraser", "Eraser", "E", "Erase to transparency (or hide, on a layer mask)"),
    ToolSpec("mask_brush", "Mask", "Q", "Paint the selection / inpaint mask; Alt+drag removes"),
    ToolSpec("rect_select", "Rect", "M", "Rectangle selection (Shift+M: ellipse); Shift adds, Alt subtracts"),
    ToolSpec("ellipse_select", "Ellipse", "", "Ellipse selection; Shift adds, Alt subtracts"),
    ToolSpec("lasso", "Lasso", "L", "Freehand selection; Shift adds, Alt subtracts"),
    ToolSpec("move", "Move", "V", "Move the active layer (arrow keys nudge)"),
    ToolSpec("eyedropper", "Picker", "I", "Pick a colour from the image"),
    ToolSpec("fill", "Fill", "F", "Fill a similar-colour area; Shift+click fills the whole selection"),
    ToolSpec("ai_frame", "Frame", "G", "Generation frame: drag it to move, drag a handle to resize, drag outside "
             "for a new one; arrows nudge, Enter generates (or accepts a result), Esc discards"),
    ToolSpec("zoom", "Zoom", "Z", "Click to zoom in, Alt+click or right-click to zoom out"),
    ToolSpec("pan", "Pan", "H", "Drag to pan (or hold Space, or drag with the middle button)"),
)


def create_tools(host: ToolHost) -> dict[str, Tool]:
    tools: list[Tool] = [
        BrushTool(host, "paint"),
        BrushTool(host, "erase"),
        MaskBrushTool(host),
        RectSelectTool(host),
        EllipseSelectTool(host),
        LassoTool(host),
        MoveTool(host),
        EyedropperTool(host),
        FillTool(host),
        FrameTool(host),
        ZoomTool(host),
        PanTool(host),
    ]
    return {t.tool_id: t for t in tools}


__all__ = ["PointerEvent", "TOOL_SPECS", "Tool", "ToolHost", "ToolSpec", "create_tools"]
