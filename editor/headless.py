"""Qt-free document entry points shared by the window and the command line:
open a file as a document, make a new one, flatten-export (``--export``).

Kept out of ``editor.ui`` so ``python -m editor --export`` never loads Qt.
"""

from __future__ import annotations

import os
import sys
from typing import Optional

from editor.document import Document, LayerGroup, Node, RasterLayer
from editor.io import DocumentFileError, document_from_image, export_flattened, load_ora

# Extensions we open as documents or import as layers (Pillow-decoded) and
# the ones a flattened export can write.
ORA_EXTENSIONS = (".ora",)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif")
OPEN_EXTENSIONS = ORA_EXTENSIONS + IMAGE_EXTENSIONS
EXPORT_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")

EXIT_OK = 0
EXIT_BAD_INPUT = 2


def is_openable(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in OPEN_EXTENSIONS


def open_document(path: "str | os.PathLike[str]") -> tuple[Document, list[str], Optional[Node]]:
    """Load ``.ora`` (all layers) or a flat image (one layer).

    Returns (document, warnings, layer to select). Raises DocumentFileError
    with a readable reason for anything it cannot open.
    """
    p = os.fspath(path)
    if os.path.splitext(p)[1].lower() in ORA_EXTENSIONS:
        result = load_ora(p)
        return result.document, list(result.warnings), result.selected
    doc = document_from_image(p)
    # A flat image is not our native format: Save must ask for an .ora name
    # (GIMP's "Save vs Export" rule), so the source is not the save target.
    doc.file_path = None
    layers = doc.raster_layers()
    return doc, [], layers[-1] if layers else None


def new_document(width: int, height: int, background: Optional[tuple[int, int, int]] = (255, 255, 255)) -> Document:
    """A fresh document: an opaque (or no) background plus an empty paint
    layer on top, so the first stroke does not land on the background
    (Krita's default). Creation is not an undo step."""
    doc = Document(width, height)
    if background is not None:
        bg = doc.add_layer("Background")
        doc.fill_selection(bg, background)
    doc.add_layer("Layer 1")
    doc.undo_stack.clear()
    return doc


def copy_layers_into(target: Document, source: Document, name: str) -> Node:
    """Add ``source``'s layer tree to ``target`` as one group (one undo step).

    Used by "Import as layer" for .ora files. Masks are baked into the pixels
    first (on the throwaway source document), since the model has no API to
    attach mask pixels to a new layer.
    """
    for layer in source.raster_layers():
        if layer.mask is not None:
            source.apply_mask(layer)

    def copy_children(src: LayerGroup, dst: Optional[LayerGroup]) -> None:
        for child in src.children:  # bottom to top, so appending keeps the order
            props = dict(opacity=child.opacity, visible=child.visible, blend_mode=child.blend_mode)
            if isinstance(child, RasterLayer):
                bounds = child.tiles.content_bounds()
                if bounds.is_empty():
                    target.add_layer(child.name, parent=dst, alpha_locked=child.alpha_locked, **props)
                    continue
                pixels = child.tiles.read_region(bounds)
                target.add_layer_from_image(
                    pixels, child.x + bounds.x, child.y + bounds.y, name=child.name, parent=dst,
                    attributes=dict(child.attributes), alpha_locked=child.alpha_locked, **props,
                )
            elif isinstance(child, LayerGroup):
                group = target.add_group(child.name, parent=dst, isolated=child.isolated, **props)
                copy_children(child, group)

    with target.undo_stack.macro(f"Import {name}"):
        group = target.add_group(name)
        copy_children(source.root, group)
    return group


def export_file(input_path: str, output_path: str) -> None:
    """Flatten ``input_path`` (any openable file) into ``output_path``."""
    ext = os.path.splitext(output_path)[1].lower()
    if ext not in EXPORT_EXTENSIONS:
        raise DocumentFileError(output_path, "unknown export format (use .png, .jpg or .webp)")
    if not is_openable(input_path):
        raise DocumentFileError(input_path, "unsupported file type (open .ora, .png, .jpg, .webp or .tif)")
    doc, _warnings, _sel = open_document(input_path)
    export_flattened(doc, output_path)


def run_export(output_path: str, input_path: str, err=None) -> int:
    """The ``--export`` command: exit 0, or one line on stderr and exit 2."""
    err = err or sys.stderr
    try:
        export_file(input_path, output_path)
    except DocumentFileError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_BAD_INPUT
    except (OSError, ValueError, MemoryError) as exc:  # belt and braces: never a traceback
        print(f"error: {input_path}: {exc}", file=err)
        return EXIT_BAD_INPUT
    return EXIT_OK
