"""Staging of generated variations: browse them, then Accept (one new layer,
one undo step) or Discard (the document is not touched).

Staged images are not part of the document; the UI draws the current one as
an overlay at ``current.rect``. Call everything here on the UI thread.
"""

from __future__ import annotations

from typing import Optional, Sequence

from editor.document.layers import LayerGroup, RasterLayer
from editor.document.signals import Signal

from .outpaint import plan_canvas_growth
from .request import GeneratedImage

LAYER_NAME_CHARS = 40


def layer_name(image: GeneratedImage) -> str:
    prompt = " ".join(image.attributes.get("prompt", "").split())
    if len(prompt) > LAYER_NAME_CHARS:
        prompt = prompt[: LAYER_NAME_CHARS - 1] + "…"
    return f"AI: {prompt}" if prompt else "AI: generated"


class Staging:
    """``changed`` is emitted (no arguments) whenever the staged set or the
    current index changes."""

    def __init__(self, document):
        self.document = document
        self.images: list[GeneratedImage] = []
        self.index = 0
        self.changed = Signal("staging_changed")

    # ----------------------------------------------------------------- browse
    @property
    def count(self) -> int:
        return len(self.images)

    @property
    def current(self) -> Optional[GeneratedImage]:
        return self.images[self.index] if self.images else None

    def stage(self, images: Sequence[GeneratedImage], *, append: bool = False) -> None:
        """Show new results (``append`` keeps the earlier ones, the first new one becomes current)."""
        images = [im for im in images if not im.preview]
        if not images:
            return
        if append:
            self.index = len(self.images)
            self.images.extend(images)
        else:
            self.images = list(images)
            self.index = 0
        self.changed.emit()

    def select(self, index: int) -> None:
        if not self.images:
            return
        index = max(0, min(int(index), len(self.images) - 1))
        if index != self.index:
            self.index = index
            self.changed.emit()

    def next(self) -> None:
        if self.images:
            self.select((self.index + 1) % len(self.images))

    def previous(self) -> None:
        if self.images:
            self.select((self.index - 1) % len(self.images))

    # ---------------------------------------------------------------- decide
    def discard(self) -> None:
        """Drop the staged images; the document is not touched."""
        if self.images:
            self.images = []
            self.index = 0
            self.changed.emit()

    def accept(self, *, parent: Optional[LayerGroup] = None, index: Optional[int] = None,
               name: Optional[str] = None, keep_others: bool = False) -> Optional[RasterLayer]:
        """Add the current image as ONE new layer holding its metadata — one
        undo step, which also grows the canvas first when the image reaches
        past it (outpainting). Returns the layer (None when nothing is staged).

        The image sits where its plan put it; if the canvas was grown or
        shifted since, generate again (its coordinates are the old ones).
        """
        image = self.current
        if image is None:
            return None
        doc = self.document
        growth = plan_canvas_growth(image.rect, doc.width, doc.height)
        attributes = dict(image.attributes)
        if growth.needed and "frame" in attributes:
            x, y, w, h = (int(v) for v in attributes["frame"].split(","))
            attributes["frame"] = f"{x + growth.left},{y + growth.top},{w},{h}"
        name = name or layer_name(image)
        if growth.needed:
            with doc.undo_stack.macro(f"Accept “{name}” (expand canvas)"):
                doc.extend_canvas(growth.left, growth.top, growth.right, growth.bottom)
                layer = doc.add_layer_from_image(image.rgba, image.x + growth.left, image.y + growth.top,
                                                 name=name, parent=parent, index=index, attributes=attributes)
        else:
            # A macro only to name the step: the history shows the result, not "Add layer from image".
            with doc.undo_stack.macro(f"Accept “{name}”"):
                layer = doc.add_layer_from_image(image.rgba, image.x, image.y, name=name, parent=parent,
                                                 index=index, attributes=attributes)
        if keep_others:
            del self.images[self.index]
            self.index = min(self.index, max(0, len(self.images) - 1))
        else:
            self.images = []
            self.index = 0
        self.changed.emit()
        return layer
