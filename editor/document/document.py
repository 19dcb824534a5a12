"""The document: canvas size, layer tree, selection, undo stack, observers.

Public methods are the editing API (each one is one undo step); methods
starting with ``_`` are the raw mutators that commands call. Single-threaded
by design: call it from the UI thread (the AI worker hands results over).
"""

from __future__ import annotations

import uuid
from typing import Iterator, Optional, Sequence

import numpy as np

from . import selection as sel
from .blendmodes import BlendMode
from .brush import BrushSettings, make_dab
from .commands import (
    InsertNodeCommand,
    MoveNodeCommand,
    PixelsCommand,
    RemoveNodeCommand,
    ResizeCanvasCommand,
    SetMaskCommand,
    SetPropertyCommand,
    SetSelectionCommand,
)
from .compositing import RenderCache, render_region
from .geometry import Rect
from .layers import LayerGroup, Node, RasterLayer, check_attribute_key, clone_node
from .painting import MODES, TARGETS, LayerEdit, apply_mask_to_pixels, dab_coverage, dab_patch, fill_region, merge_pixels
from .selection import Selection, SelectionOp
from .signals import Signal
from .tiles import TileDelta, TileGrid
from .undo import Command, MacroCommand, UndoStack

# 16384 x 16384 (Krita's practical maximum); a selection mask of this size is 256 MiB.
MAX_CANVAS_PIXELS = 1 << 28
MAX_CANVAS_SIDE = 65535

def check_canvas_size(width: int, height: int) -> None:
    if not (1 <= width <= MAX_CANVAS_SIDE and 1 <= height <= MAX_CANVAS_SIDE) or width * height > MAX_CANVAS_PIXELS:
        raise ValueError(f"canvas size {width}x{height} out of range")


class Document:
    def __init__(
        self,
        width: int,
        height: int,
        *,
        undo_memory_limit: int = 1024 * 1024 * 1024,
        min_undo_steps: int = 10,
        render_cache_bytes: int = 256 * 1024 * 1024,
    ) -> None:
        check_canvas_size(width, height)
        self.width = int(width)
        self.height = int(height)
        self.uid = uuid.uuid4().hex[:12]  # names recovery files of this document
        self.file_path: Optional[str] = None
        self.root = LayerGroup("root", isolated=True)
        self.selection = Selection(self.width, self.height)
        self.undo_stack = UndoStack(undo_memory_limit, min_undo_steps)

        self.layers_changed = Signal("layers_changed")  # (node or None)
        self.pixels_changed = Signal("pixels_changed")  # (Rect, canvas coordinates)
        self.selection_changed = Signal("selection_changed")  # ()
        self.canvas_resized = Signal("canvas_resized")  # (width, height, dx, dy)
        self.history_changed = self.undo_stack.changed  # ()

        self._cache = RenderCache(self, render_cache_bytes)
        self._stroke: Optional[dict[tuple[int, str], LayerEdit]] = None
        self._stroke_text = ""

    # ------------------------------------------------------------------ queries
    @property
    def canvas_rect(self) -> Rect:
        return Rect(0, 0, self.width, self.height)

    def nodes(self) -> Iterator[Node]:
        return self.root.walk()

    def raster_layers(self) -> list[RasterLayer]:
        return [n for n in self.root.walk() if isinstance(n, RasterLayer)]

    def find(self, uid: int) -> Optional[Node]:
        return next((n for n in self.root.walk() if n.uid == uid), None)

    def render(self, rect: Optional[Rect] = None, premultiplied: bool = False) -> np.ndarray:
        """Composited RGBA uint8 of a canvas region, from the tile cache."""
        return self._cache.render(rect, premultiplied)

    def render_uncached(self, rect: Optional[Rect] = None) -> np.ndarray:
        """Straight RGBA uint8 composite computed from scratch (reference for
        tests); like ``render``, pixels outside the canvas are transparent."""
        rect = rect or self.canvas_rect
        out = np.zeros((max(rect.h, 0), max(rect.w, 0), 4), np.uint8)
        inside = rect.intersect(self.canvas_rect)
        if not inside.is_empty():
            out[inside.slices(rect.x, rect.y)] = render_region(self.root, inside)
        return out

    @property
    def render_cache(self) -> RenderCache:
        return self._cache

    # --------------------------------------------------------------- undo API
    def undo(self) -> bool:
        self._require_no_stroke()
        return self.undo_stack.undo()

    def redo(self) -> bool:
        self._require_no_stroke()
        return self.undo_stack.redo()

    def _push(self, cmd: Command) -> Command:
        self._require_no_stroke()
        self.undo_stack.push(cmd)
        return cmd

    def _require_no_stroke(self) -> None:
        if self._stroke is not None:
            raise RuntimeError("finish the stroke (end_stroke) first")

    # ------------------------------------------------------------- layer tree
    def _resolve_parent(self, parent: Optional[LayerGroup], index: Optional[int]) -> tuple[LayerGroup, int]:
        parent = parent if parent is not None else self.root
        if parent is not self.root and not any(a is self.root for a in parent.ancestors()):
            raise ValueError("parent group is not part of this document")
        if index is None:
            index = len(parent.children)
        if not 0 <= index <= len(parent.children):
            raise IndexError("layer index out of range")
        return parent, index

    def add_layer(
        self, name: str = "Layer", parent: Optional[LayerGroup] = None, index: Optional[int] = None, **props
    ) -> RasterLayer:
        """New empty raster layer; by default on top of the root stack."""
        parent, index = self._resolve_parent(parent, index)
        layer = RasterLayer(name, **props)
        self._push(InsertNodeCommand(self, layer, parent, index, "Add layer"))
        return layer

    def add_group(
        self, name: str = "Group", parent: Optional[LayerGroup] = None, index: Optional[int] = None, **props
    ) -> LayerGroup:
        parent, index = self._resolve_parent(parent, index)
        group = LayerGroup(name, **props)
        self._push(InsertNodeCommand(self, group, parent, index, "Add group"))
        return group

    def add_layer_from_image(
        self,
        rgba: np.ndarray,
        x: int = 0,
        y: int = 0,
        name: str = "Layer",
        parent: Optional[LayerGroup] = None,
        index: Optional[int] = None,
        attributes: Optional[dict[str, str]] = None,
        **props,
    ) -> RasterLayer:
        """One undo step adding a layer holding ``rgba`` (straight uint8, HxWx4
        or HxWx3) with its top-left at canvas (x, y). Used by "Accept" of the
        AI feature and by image import."""
        for k in attributes or {}:
            check_attribute_key(k)
        arr = np.asarray(rgba)
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] not in (3, 4):
            raise ValueError("image must be uint8 with shape (h, w, 3|4)")
        if arr.shape[2] == 3:
            arr = np.concatenate([arr, np.full(arr.shape[:2] + (1,), 255, np.uint8)], axis=2)
        parent, index = self._resolve_parent(parent, index)
        layer = RasterLayer(name, x=x, y=y, tiles=TileGrid.from_array(arr), attributes=attributes, **props)
        self._push(InsertNodeCommand(self, layer, parent, index, "Add layer from image"))
        return layer

    def remove_layer(self, node: Node) -> None:
        self._check_node(node)
        self._push(RemoveNodeCommand(self, node))

    def move_layer(self, node: Node, parent: Optional[LayerGroup] = None, index: Optional[int] = None) -> None:
        """Move ``node`` to ``index`` of ``parent`` (index counted after removal)."""
        self._check_node(node)
        parent = parent if parent is not None else node.parent
        assert parent is not None
        if parent is node or (isinstance(node, LayerGroup) and any(a is node for a in parent.ancestors())):
            raise ValueError("cannot move a group into itself")
        size_after_removal = len(parent.children) - (1 if node.parent is parent else 0)
        index = size_after_removal if index is None else index
        if not 0 <= index <= size_after_removal:
            raise IndexError("layer index out of range")
        if node.parent is parent and node.index_in_parent() == index:
            return
        self._push(MoveNodeCommand(self, node, parent, index))

    def duplicate_layer(self, node: Node) -> Node:
        self._check_node(node)
        copy = clone_node(node)
        copy.name = f"{node.name} copy"
        assert node.parent is not None
        self._push(InsertNodeCommand(self, copy, node.parent, node.index_in_parent() + 1, "Duplicate layer"))
        return copy

    def rename_layer(self, node: Node, name: str) -> None:
        self._set_prop_cmd(node, "name", str(name), "Rename layer")

    def set_opacity(self, node: Node, opacity: float) -> None:
        self._set_prop_cmd(node, "opacity", min(max(float(opacity), 0.0), 1.0), "Layer opacity")

    def set_visible(self, node: Node, visible: bool) -> None:
        self._set_prop_cmd(node, "visible", bool(visible), "Show layer" if visible else "Hide layer")

    def set_blend_mode(self, node: Node, mode: BlendMode | str) -> None:
        self._set_prop_cmd(node, "blend_mode", BlendMode(mode), "Blend mode")

    def set_alpha_locked(self, layer: RasterLayer, locked: bool) -> None:
        self._set_prop_cmd(layer, "alpha_locked", bool(locked), "Alpha lock")

    def set_isolated(self, group: LayerGroup, isolated: bool) -> None:
        self._set_prop_cmd(group, "isolated", bool(isolated), "Group isolation")

    def set_attributes(self, node: Node, attributes: dict[str, str]) -> None:
        """Replace the namespaced extra data (e.g. AI generation metadata)."""
        clean = {}
        for k, v in attributes.items():
            check_attribute_key(k)
            clean[k] = str(v)
        self._set_prop_cmd(node, "attributes", clean, "Layer metadata")

    def set_layer_offset(self, layer: RasterLayer, x: int, y: int) -> None:
        self._set_prop_cmd(layer, "offset", (int(x), int(y)), "Move layer")

    def translate_layer(self, layer: RasterLayer, dx: int, dy: int) -> None:
        self.set_layer_offset(layer, layer.x + int(dx), layer.y + int(dy))

    def _set_prop_cmd(self, node: Node, prop: str, value, text: str) -> None:
        self._check_node(node)
        if prop in ("alpha_locked", "offset") and not isinstance(node, RasterLayer):
            raise TypeError(f"{prop} applies to raster layers only")
        if prop == "isolated" and not isinstance(node, LayerGroup):
            raise TypeError("isolation applies to groups only")
        if self._get_property(node, prop) == value:
            return
        self._push(SetPropertyCommand(self, node, prop, value, text))

    def _check_node(self, node: Node) -> None:
        if node is self.root or not any(a is self.root for a in node.ancestors()):
            raise ValueError("node is not a layer of this document")

    # ------------------------------------------------------------------ masks
    def add_mask(self, layer: RasterLayer, *, from_selection: bool = False, reveal: bool = True) -> None:
        """Attach an 8-bit mask: all revealed (255), all hidden, or the selection."""
        self._check_node(layer)
        if layer.mask is not None:
            raise ValueError("layer already has a mask")
        if from_selection and self.selection.is_active():
            m = self.selection.mask
            assert m is not None
            grid = TileGrid.from_array(m, -layer.x, -layer.y, default=0)
        else:
            grid = TileGrid(1, 255 if reveal else 0)
        self._push(SetMaskCommand(self, layer, grid, "Add mask"))

    def delete_mask(self, layer: RasterLayer) -> None:
        self._check_node(layer)
        if layer.mask is None:
            return
        self._push(SetMaskCommand(self, layer, None, "Delete mask"))

    def apply_mask(self, layer: RasterLayer) -> None:
        """Bake the mask into the layer's alpha and remove it (one step)."""
        self._check_node(layer)
        self._require_no_stroke()
        if layer.mask is None:
            return
        with self.undo_stack.macro("Apply mask"):
            self._apply_mask_steps(layer)

    def _apply_mask_steps(self, layer: RasterLayer) -> None:
        delta = apply_mask_to_pixels(layer)
        self._push_applied_delta(layer, "pixels", delta, "Apply mask")
        self._push(SetMaskCommand(self, layer, None, "Apply mask"))

    def _push_applied_delta(self, layer: RasterLayer, target: str, delta: TileDelta, text: str) -> None:
        """Record a delta that is already in the grid (and announce it)."""
        if delta.is_empty():
            return
        self._pixels_dirty(delta.bounds().translated(layer.x, layer.y))
        self.undo_stack.push(PixelsCommand(self, layer, target, delta, text), applied=True)

    # ------------------------------------------------------------- pixel edits
    def fill_selection(
        self, layer: RasterLayer, color: Sequence[int], *, opacity: float = 1.0, erase: bool = False,
        target: str = "pixels",
    ) -> None:
        """Fill the selection (the whole canvas if none) with a flat colour, or erase it."""
        self._check_node(layer)
        self._require_no_stroke()
        rect = self.selection.bounds() if self.selection.is_active() else self.canvas_rect
        delta = fill_region(layer, rect, color, "erase" if erase else "normal", opacity, self.selection, target)
        self._push_applied_delta(layer, target, delta, "Clear" if erase else "Fill")

    def merge_down(self, layer: RasterLayer) -> RasterLayer:
        """Composite ``layer`` into the raster layer below it and remove it.

        The lower layer keeps its name, opacity and blend mode; its mask (if
        any) is applied first, and the upper layer's opacity, mask and blend
        mode are baked in, as in GIMP and Krita. A hidden upper layer
        contributes nothing (it is simply removed).
        """
        self._check_node(layer)
        self._require_no_stroke()
        parent = layer.parent
        assert parent is not None
        idx = layer.index_in_parent()
        below = parent.children[idx - 1] if idx > 0 else None
        if not isinstance(layer, RasterLayer) or not isinstance(below, RasterLayer):
            raise ValueError("merge down needs a raster layer above a raster layer")
        with self.undo_stack.macro("Merge down"):
            if below.mask is not None:
                self._apply_mask_steps(below)
            self._push_applied_delta(below, "pixels", merge_pixels(layer, below), "Merge down")
            self._push(RemoveNodeCommand(self, layer))
        return below

    # ----------------------------------------------------------------- strokes
    def begin_stroke(self, text: str = "Paint") -> None:
        """Start one undo step of dabs (on any number of layers)."""
        self._require_no_stroke()
        if self.undo_stack.in_macro():
            raise RuntimeError("cannot start a stroke inside a macro")
        self._stroke = {}
        self._stroke_text = text

    @property
    def stroke_active(self) -> bool:
        return self._stroke is not None

    def apply_dab(
        self,
        layer: RasterLayer,
        x: int,
        y: int,
        patch: Optional[np.ndarray] = None,
        *,
        mask: Optional[np.ndarray] = None,
        color: Optional[Sequence[int] | int] = None,
        mode: str = "normal",
        opacity: float = 1.0,
        target: str = "pixels",
    ) -> Rect:
        """Paint one dab whose top-left is canvas (x, y).

        Either ``patch`` (straight RGBA uint8, composited directly) or
        ``mask`` (float coverage 0..1, or uint8 0..255) with ``color`` (RGB,
        or a grey level for ``target="mask"``). ``mode`` is "normal" or
        "erase". Coverage dabs build up to ``opacity`` and no further within
        the stroke. The selection limits the effect; alpha lock keeps alpha.
        Returns the dirty canvas rect (also emitted via pixels_changed).
        Do not mix patch and mask dabs on one layer within a stroke: mask dabs
        recompute their area from the pre-stroke pixels.
        """
        if self._stroke is None:
            raise RuntimeError("begin_stroke() first")
        if mode not in MODES or target not in TARGETS:
            raise ValueError(f"mode must be one of {MODES}, target one of {TARGETS}")
        self._check_node(layer)
        key = (layer.uid, target)
        edit = self._stroke.get(key)
        if edit is None:
            edit = self._stroke[key] = LayerEdit(layer, target)
        if patch is not None:
            rect = dab_patch(edit, x, y, patch, mode, opacity, self.selection)
        elif mask is not None:
            m = mask.astype(np.float32) / 255.0 if mask.dtype == np.uint8 else mask
            rect = dab_coverage(edit, x, y, m, color if color is not None else (0, 0, 0), mode, opacity, self.selection)
        else:
            raise ValueError("apply_dab needs a patch or a mask")
        self._pixels_dirty(rect)
        return rect

    def paint_dab(
        self, layer: RasterLayer, x: float, y: float, brush: BrushSettings, pressure: float = 1.0, *,
        erase: bool = False, target: str = "pixels",
    ) -> Rect:
        """Rasterise a round dab centred at (x, y) with ``brush`` and paint it."""
        dab = make_dab(brush, x, y, pressure)
        return self.apply_dab(
            layer, dab.x0, dab.y0, mask=dab.mask, color=brush.color, mode="erase" if erase else "normal",
            opacity=dab.opacity, target=target,
        )

    def end_stroke(self) -> Optional[Command]:
        """Commit the stroke as one undo step (nothing if it changed nothing)."""
        if self._stroke is None:
            raise RuntimeError("no stroke in progress")
        cmds: list[Command] = []
        for edit in self._stroke.values():
            delta = edit.txn.commit()
            if not delta.is_empty():
                cmds.append(PixelsCommand(self, edit.layer, edit.target, delta, self._stroke_text))
        self._stroke = None
        if not cmds:
            return None
        cmd = cmds[0] if len(cmds) == 1 else MacroCommand(self._stroke_text, cmds)
        self.undo_stack.push(cmd, applied=True)
        return cmd

    def cancel_stroke(self) -> None:
        """Revert the dabs of the open stroke; nothing is recorded."""
        if self._stroke is None:
            return
        for edit in self._stroke.values():
            bounds = TileDelta(dict(edit.txn.before), {}).bounds()
            edit.txn.rollback()
            self._pixels_dirty(bounds.translated(edit.layer.x, edit.layer.y))
        self._stroke = None

    # --------------------------------------------------------------- selection
    def set_selection(self, mask: Optional[np.ndarray], text: str = "Select") -> None:
        """Replace the selection with a full-canvas uint8 mask (None = deselect)."""
        self._require_no_stroke()
        if mask is not None:
            mask = np.asarray(mask)
            if mask.shape != (self.height, self.width) or mask.dtype != np.uint8:
                raise ValueError("selection mask must be uint8 of the canvas size")
            if not mask.any():
                mask = None
        old = self.selection.mask
        if (old is None and mask is None) or (old is not None and mask is not None and np.array_equal(old, mask)):
            return
        self._push(SetSelectionCommand(self, mask, text))

    def _select_shape(self, shape: np.ndarray, op: SelectionOp | str, feather: float, text: str) -> None:
        shape_f = sel.feather(shape, feather) if feather > 0 else shape
        shape_f = shape_f if shape_f is not None else np.zeros_like(shape)
        self.set_selection(sel.combine(self.selection.mask, shape_f, SelectionOp(op)), text)

    def select_rect(self, rect: Rect, op: SelectionOp | str = "replace", feather: float = 0.0) -> None:
        self._select_shape(sel.rect_mask(self.width, self.height, rect), op, feather, "Rectangle select")

    def select_ellipse(self, rect: Rect, op: SelectionOp | str = "replace", feather: float = 0.0) -> None:
        self._select_shape(sel.ellipse_mask(self.width, self.height, rect), op, feather, "Ellipse select")

    def select_polygon(
        self, points: Sequence[tuple[float, float]], op: SelectionOp | str = "replace", feather: float = 0.0
    ) -> None:
        self._select_shape(sel.polygon_mask(self.width, self.height, points), op, feather, "Lasso select")

    def select_all(self) -> None:
        self.set_selection(np.full((self.height, self.width), 255, np.uint8), "Select all")

    def select_none(self) -> None:
        self.set_selection(None, "Deselect")

    def invert_selection(self) -> None:
        self.set_selection(sel.invert(self.selection.mask, self.width, self.height), "Invert selection")

    def grow_selection(self, radius: int) -> None:
        self.set_selection(sel.grow(self.selection.mask, int(radius)), "Grow selection")

    def shrink_selection(self, radius: int) -> None:
        self.set_selection(sel.shrink(self.selection.mask, int(radius)), "Shrink selection")

    def feather_selection(self, radius: float) -> None:
        self.set_selection(sel.feather(self.selection.mask, float(radius)), "Feather selection")

    # ------------------------------------------------------------------ canvas
    def resize_canvas(self, width: int, height: int, dx: int = 0, dy: int = 0) -> None:
        """New canvas size; old content moves by (dx, dy). Layer pixels are kept
        even where they fall outside, so shrinking then growing loses nothing."""
        check_canvas_size(width, height)
        if (width, height, dx, dy) == (self.width, self.height, 0, 0):
            return
        new_sel = sel.shift_mask(self.selection.mask, width, height, dx, dy)
        self._push(ResizeCanvasCommand(self, int(width), int(height), int(dx), int(dy), new_sel))

    def extend_canvas(self, left: int = 0, top: int = 0, right: int = 0, bottom: int = 0) -> None:
        """Grow (or with negative values crop) each side; used for outpainting."""
        self.resize_canvas(self.width + left + right, self.height + top + bottom, left, top)

    # ============================================== raw mutators (commands only)
    def _pixels_dirty(self, rect: Rect) -> None:
        rect = rect.intersect(self.canvas_rect)
        if rect.is_empty():
            return
        self._cache.invalidate(rect)  # before observers run, so they render fresh pixels
        self.pixels_changed.emit(rect)

    def _affected(self, node: Node) -> Rect:
        """Canvas area whose composite may depend on ``node`` (conservative:
        hidden nodes count too, so showing/hiding needs no special case)."""
        return self.canvas_rect if node.uses_non_local_ops() else node.canvas_bounds()

    def _insert_node(self, node: Node, parent: LayerGroup, index: int) -> None:
        parent.insert(index, node)
        self.layers_changed.emit(node)
        self._pixels_dirty(self._affected(node))

    def _remove_node(self, node: Node) -> None:
        dirty = self._affected(node)
        assert node.parent is not None
        node.parent.remove(node)
        self.layers_changed.emit(node)
        self._pixels_dirty(dirty)

    def _get_property(self, node: Node, prop: str):
        if prop == "offset":
            assert isinstance(node, RasterLayer)
            return (node.x, node.y)
        if prop == "attributes":
            return dict(node.attributes)
        return getattr(node, prop)

    def _set_property(self, node: Node, prop: str, value) -> None:
        # Names and metadata do not change pixels; everything else may, in the
        # union of the old and new footprint (offset and blend mode move it).
        visual = prop not in ("name", "attributes")
        before = self._affected(node) if visual else None
        if prop == "offset":
            assert isinstance(node, RasterLayer)
            node.x, node.y = value
        elif prop == "attributes":
            node.attributes = dict(value)
        else:
            setattr(node, prop, value)
        self.layers_changed.emit(node)
        if before is not None:
            self._pixels_dirty(before.union(self._affected(node)))

    def _set_mask(self, layer: RasterLayer, grid: Optional[TileGrid]) -> None:
        layer.mask = grid
        self.layers_changed.emit(layer)
        # Only where the layer has pixels (or everywhere for dst-in/dst-atop).
        self._pixels_dirty(self._affected(layer))

    def _apply_delta(self, layer: RasterLayer, target: str, delta: TileDelta, which: str) -> None:
        grid = layer.tiles if target == "pixels" else layer.mask
        assert grid is not None, "mask missing while undoing a mask edit"
        delta.apply(grid, which)
        self._pixels_dirty(delta.bounds().translated(layer.x, layer.y))

    def _set_selection(self, mask: Optional[np.ndarray]) -> None:
        self.selection._set(mask)
        self.selection_changed.emit()

    def _resize(self, width: int, height: int, dx: int, dy: int, selection: Optional[np.ndarray]) -> None:
        self.width, self.height = width, height
        for layer in self.raster_layers():
            layer.x += dx
            layer.y += dy
        self.selection = Selection(width, height, selection)
        self._cache.invalidate(None)
        self.canvas_resized.emit(width, height, dx, dy)
        self.selection_changed.emit()
        self.pixels_changed.emit(self.canvas_rect)
