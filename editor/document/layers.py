"""The layer tree: raster layers and groups.

Children are stored bottom-to-top (index 0 is painted first), the natural
order for compositing; OpenRaster's top-most-first order is handled by the
file code. Nodes are plain data: every user-visible change goes through a
Document command so it is undoable and observed.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
import re
from typing import Iterator, Optional

import numpy as np

from .blendmodes import BlendMode
from .geometry import EMPTY_RECT, Rect
from .tiles import TileGrid

_uid_counter = itertools.count(1)

# Attribute keys become XML attribute local names in .ora files.
ATTRIBUTE_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


def check_attribute_key(key: str) -> None:
    if not isinstance(key, str) or not ATTRIBUTE_KEY_RE.match(key):
        raise ValueError(f"invalid layer attribute key {key!r} (must be an XML name without ':')")


class Node(ABC):
    """Common properties of layers and groups."""

    def __init__(
        self,
        name: str = "",
        *,
        opacity: float = 1.0,
        visible: bool = True,
        blend_mode: BlendMode = BlendMode.NORMAL,
        attributes: Optional[dict[str, str]] = None,
    ) -> None:
        # uid: stable identity for the UI and for tests; never reused in-process.
        self.uid: int = next(_uid_counter)
        self.name = name
        self.opacity = float(opacity)
        self.visible = bool(visible)
        self.blend_mode = BlendMode(blend_mode)
        self.attributes: dict[str, str] = dict(attributes or {})
        self.parent: Optional["LayerGroup"] = None

    @property
    def is_group(self) -> bool:
        return False

    def ancestors(self) -> Iterator["LayerGroup"]:
        p = self.parent
        while p is not None:
            yield p
            p = p.parent

    def index_in_parent(self) -> int:
        if self.parent is None:
            raise ValueError("node has no parent")
        for i, c in enumerate(self.parent.children):
            if c is self:
                return i
        raise ValueError("node not found in its parent")

    @abstractmethod
    def canvas_bounds(self) -> Rect:
        """Bounds of the node's pixels in canvas coordinates (may exceed the canvas)."""

    def uses_non_local_ops(self) -> bool:
        return not self.blend_mode.is_local

    @abstractmethod
    def byte_size(self) -> int:
        """Bytes of pixel (and mask) storage the node holds."""

    def effectively_visible(self) -> bool:
        return self.visible and all(a.visible for a in self.ancestors())


class RasterLayer(Node):
    """A paint layer: sparse RGBA tiles at an integer offset, plus an optional mask.

    The offset (x, y) may be negative; moving a layer or extending the canvas
    only changes the offset, never the tiles. The mask shares the layer's
    local coordinates (it moves with the layer); missing mask tiles are 255.
    """

    def __init__(
        self,
        name: str = "Layer",
        *,
        x: int = 0,
        y: int = 0,
        tiles: Optional[TileGrid] = None,
        mask: Optional[TileGrid] = None,
        alpha_locked: bool = False,
        **kw,
    ) -> None:
        super().__init__(name, **kw)
        self.x = int(x)
        self.y = int(y)
        self.tiles = tiles if tiles is not None else TileGrid(4, 0)
        self.mask = mask
        self.alpha_locked = bool(alpha_locked)

    def canvas_bounds(self) -> Rect:
        return self.tiles.tile_bounds().translated(self.x, self.y)

    def content_bounds(self) -> Rect:
        """Tight bounds of non-transparent pixels, canvas coordinates."""
        return self.tiles.content_bounds().translated(self.x, self.y)

    def to_local(self, rect: Rect) -> Rect:
        return rect.translated(-self.x, -self.y)

    def read(self, rect: Rect) -> np.ndarray:
        """Straight RGBA uint8 of a canvas-coordinate rect (transparent where empty)."""
        return self.tiles.read_region(self.to_local(rect))

    def read_mask(self, rect: Rect) -> Optional[np.ndarray]:
        if self.mask is None:
            return None
        return self.mask.read_region(self.to_local(rect))

    def byte_size(self) -> int:
        return self.tiles.byte_size() + (self.mask.byte_size() if self.mask is not None else 0)


class LayerGroup(Node):
    """A group. ``isolated`` True means OpenRaster isolation="isolate";
    False means "auto" (pass-through): children blend straight into the
    backdrop, unless opacity < 1 or a non-normal blend mode forces isolation
    (the OpenRaster stack rule)."""

    def __init__(self, name: str = "Group", *, isolated: bool = True, children=None, **kw) -> None:
        super().__init__(name, **kw)
        self.isolated = bool(isolated)
        self.children: list[Node] = []
        for c in children or []:
            self.insert(len(self.children), c)

    @property
    def is_group(self) -> bool:
        return True

    def renders_isolated(self) -> bool:
        return self.isolated or self.opacity < 1.0 or self.blend_mode is not BlendMode.NORMAL

    def insert(self, index: int, node: Node) -> None:
        if node.parent is not None:
            raise ValueError("node already has a parent")
        if node is self or (node.is_group and any(a is node for a in self.ancestors())):
            raise ValueError("cannot put a group inside itself")
        self.children.insert(index, node)
        node.parent = self

    def remove(self, node: Node) -> int:
        idx = node.index_in_parent()
        del self.children[idx]
        node.parent = None
        return idx

    def walk(self) -> Iterator[Node]:
        """All descendants, depth first, bottom-to-top within each group."""
        for c in self.children:
            yield c
            if isinstance(c, LayerGroup):
                yield from c.walk()

    def canvas_bounds(self) -> Rect:
        out = EMPTY_RECT
        for c in self.children:
            out = out.union(c.canvas_bounds())
        return out

    def uses_non_local_ops(self) -> bool:
        return super().uses_non_local_ops() or any(c.uses_non_local_ops() for c in self.children)

    def byte_size(self) -> int:
        return sum(c.byte_size() for c in self.children)


def clone_node(node: Node) -> Node:
    """Deep copy of a subtree with fresh uids; tile arrays are shared (read-only)."""
    common = dict(
        opacity=node.opacity, visible=node.visible, blend_mode=node.blend_mode, attributes=dict(node.attributes)
    )
    if isinstance(node, RasterLayer):
        return RasterLayer(
            node.name,
            x=node.x,
            y=node.y,
            tiles=node.tiles.copy(),
            mask=node.mask.copy() if node.mask is not None else None,
            alpha_locked=node.alpha_locked,
            **common,
        )
    assert isinstance(node, LayerGroup)
    return LayerGroup(node.name, isolated=node.isolated, children=[clone_node(c) for c in node.children], **common)
