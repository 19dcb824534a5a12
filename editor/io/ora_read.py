"""OpenRaster reader, tolerant of real-world writers and hostile files.

Tolerated (with a warning where information is lost): missing x/y (0),
missing visibility/opacity/composite-op (defaults), mimetype not first or
missing, no mergedimage.png, layers past the canvas (kept; only rendering
clips), unknown composite ops such as svg:-dp-divide or
mypaint:spectral-wgm (fall back to svg:src-over), non-PNG layers (skipped).
Refused with DocumentFileError: not a zip, wrong mimetype, zip bombs, path
traversal in src, broken or DTD-carrying XML, missing or undecodable layer
files, absurd sizes.
"""

from __future__ import annotations

import io
import math
import os
import struct
import zipfile
import zlib
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from PIL import Image

from editor.document import BlendMode, Document, LayerGroup, Node, RasterLayer, TileGrid
from editor.document.blendmodes import ORA_TO_MODE
from editor.document.document import MAX_CANVAS_PIXELS, check_canvas_size
from editor.document.layers import ATTRIBUTE_KEY_RE

from .errors import DocumentFileError
from .images import check_pixel_count, decode_png_rgba8, image_to_rgba
from .quiet import decoder_messages, with_messages
from .ora_common import (
    ATTR_NS,
    DOC_NS,
    MAX_DEPTH,
    MAX_NODES,
    MAX_STACK_XML,
    MAX_TOTAL_LAYER_PIXELS,
    MIMETYPE,
    attr,
    check_zip_directory,
    parse_stack_xml,
    safe_member_name,
)

_ATTR_PREFIX = f"{{{ATTR_NS}}}"

# What zipfile/zlib raise on damaged archives (besides our own checks).
_ARCHIVE_ERRORS = (
    zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, struct.error, OSError, EOFError, ValueError,
    RuntimeError, NotImplementedError, UnicodeDecodeError,
)


@dataclass
class OraLoadResult:
    document: Document
    warnings: list[str] = field(default_factory=list)
    selected: Optional[Node] = None  # the layer the writer marked selected="true"
    image_attributes: dict[str, str] = field(default_factory=dict)  # our <image> extensions


@dataclass
class _Pending:
    node: RasterLayer
    src: str
    x: int
    y: int
    mask_src: Optional[str] = None
    mask_x: int = 0
    mask_y: int = 0
    mask_default: int = 255


class _Reader:
    def __init__(self, path: str, zf: zipfile.ZipFile) -> None:
        self.path = path
        self.zf = zf
        self.names = set(zf.namelist())
        self.warnings: list[str] = []
        self.pending: list[_Pending] = []
        self.selected: Optional[Node] = None
        self.node_count = 0

    def warn(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)

    # -- attribute parsing ------------------------------------------------
    def _int(self, el: ET.Element, key: str, default: int = 0) -> int:
        raw = el.get(key)
        if raw is None:
            return default
        try:
            v = float(raw)
            if not math.isfinite(v) or abs(v) > 1e7:
                raise ValueError
            return int(round(v))
        except ValueError:
            self.warn(f"invalid {key}={raw!r} on {el.get('name', el.tag)!r}; using {default}")
            return default

    def _opacity(self, el: ET.Element) -> float:
        raw = el.get("opacity")
        if raw is None:
            return 1.0
        try:
            v = float(raw)
            if not math.isfinite(v):
                raise ValueError
        except ValueError:
            self.warn(f"invalid opacity {raw!r}; using 1.0")
            return 1.0
        return min(max(v, 0.0), 1.0)

    def _mode(self, el: ET.Element) -> BlendMode:
        op = el.get("composite-op")
        if op is None:
            return BlendMode.NORMAL
        mode = ORA_TO_MODE.get(op.strip())
        if mode is None:
            self.warn(f"unsupported composite-op {op!r} on {el.get('name', '')!r}: drawn as svg:src-over")
            return BlendMode.NORMAL
        return mode

    def _common(self, el: ET.Element) -> dict:
        attributes = {}
        for key, value in el.attrib.items():
            if key.startswith(_ATTR_PREFIX):
                local = key[len(_ATTR_PREFIX) :]
                if ATTRIBUTE_KEY_RE.match(local):
                    attributes[local] = value
        return dict(
            opacity=self._opacity(el),
            visible=el.get("visibility", "visible").strip() != "hidden",
            blend_mode=self._mode(el),
            attributes=attributes,
        )

    # -- tree ------------------------------------------------------------
    def _count(self) -> None:
        self.node_count += 1
        if self.node_count > MAX_NODES:
            raise DocumentFileError(self.path, f"too many layers (more than {MAX_NODES})")

    def stack(self, el: ET.Element, group: LayerGroup, depth: int, ox: int = 0, oy: int = 0) -> None:
        """Read the children of a <stack>; (ox, oy) is the sum of the x/y of
        enclosing stacks, which old spec drafts allowed and which we add to
        the layers' positions (we never write it)."""
        if depth > MAX_DEPTH:
            raise DocumentFileError(self.path, f"layer groups nested deeper than {MAX_DEPTH}")
        # Children are listed top-most first; our groups store bottom-to-top.
        for child in reversed(list(el)):
            tag = child.tag
            if tag == "stack":
                self._count()
                props = self._common(child)
                sub = LayerGroup(child.get("name", ""), isolated=child.get("isolation", "auto").strip() == "isolate", **props)
                group.insert(len(group.children), sub)
                self._maybe_selected(child, sub)
                sx, sy = self._int(child, "x"), self._int(child, "y")
                if sx or sy:
                    self.warn(f"group {sub.name!r} has an x/y offset; applied to its layers")
                self.stack(child, sub, depth + 1, ox + sx, oy + sy)
            elif tag == "layer":
                self._count()
                self.layer(child, group, ox, oy)
            else:
                self.warn(f"unsupported element <{tag}> skipped")

    def _maybe_selected(self, el: ET.Element, node: Node) -> None:
        if el.get("selected", "").strip() == "true" and self.selected is None:
            self.selected = node

    def layer(self, el: ET.Element, group: LayerGroup, ox: int = 0, oy: int = 0) -> None:
        src = el.get("src")
        name = el.get("name", "")
        if src is None:
            self.warn(f"layer {name!r} has no src; skipped")
            return
        member = safe_member_name(self.path, src)
        if member not in self.names:
            raise DocumentFileError(self.path, f"missing layer file {src!r}")
        if not member.lower().endswith(".png"):
            self.warn(f"layer {name!r}: non-PNG layer data {src!r} is not supported; skipped")
            return
        props = self._common(el)
        layer = RasterLayer(name, alpha_locked=el.get(attr(DOC_NS, "alpha-locked")) == "true", **props)
        group.insert(len(group.children), layer)
        self._maybe_selected(el, layer)
        pending = _Pending(layer, member, self._int(el, "x") + ox, self._int(el, "y") + oy)
        mask_src = el.get(attr(DOC_NS, "mask-src"))
        if mask_src is not None:
            msrc = safe_member_name(self.path, mask_src)
            if msrc not in self.names:
                raise DocumentFileError(self.path, f"missing mask file {mask_src!r}")
            pending.mask_src = msrc
            pending.mask_x = self._int(el, attr(DOC_NS, "mask-x")) + ox
            pending.mask_y = self._int(el, attr(DOC_NS, "mask-y")) + oy
            pending.mask_default = 0 if el.get(attr(DOC_NS, "mask-default")) == "0" else 255
        self.pending.append(pending)

    # -- pixels ----------------------------------------------------------
    def _open_png(self, member: str, data: bytes) -> Image.Image:
        try:
            im = Image.open(io.BytesIO(data), formats=["PNG"])
        except Image.DecompressionBombError as exc:
            raise DocumentFileError(self.path, f"layer file {member!r} is too large ({exc})") from exc
        except Exception as exc:  # noqa: BLE001 - any decoder failure means a broken file
            raise DocumentFileError(self.path, f"layer file {member!r} is not a valid PNG ({exc})") from exc
        try:
            check_pixel_count(self.path, *im.size)
        except DocumentFileError as exc:
            raise DocumentFileError(self.path, f"layer file {member!r}: {exc.problem}") from exc
        return im

    def decode_all(self) -> None:
        """Decode every referenced file once and give each layer its tiles.

        Read the bytes serially (one file handle) and check every header before decoding anything;
        the pixel budget counts every reference (a file used by 50 layers counts 50 times: that is
        what the layers cost to composite), then each distinct file is decoded once, in threads
        (Pillow's PNG decoder, OpenCV and zlib release the GIL, which halves load time on a
        2-core machine), and layers that share a file share its tiles copy-on-write
        (`TileGrid.copy`: frozen tiles, a private copy on the first edit).
        """
        blobs: dict[str, bytes] = {}
        sizes: dict[str, int] = {}
        refs = [p.src for p in self.pending] + [p.mask_src for p in self.pending if p.mask_src]
        total_pixels = 0
        for member in refs:
            if member not in sizes:
                try:
                    blobs[member] = self.zf.read(member)
                except _ARCHIVE_ERRORS as exc:
                    raise DocumentFileError(self.path, f"cannot read {member!r} from the archive ({exc})") from exc
                with self._open_png(member, blobs[member]) as im:
                    sizes[member] = im.size[0] * im.size[1]
            total_pixels += sizes[member]
            if total_pixels > MAX_TOTAL_LAYER_PIXELS:
                raise DocumentFileError(
                    self.path, f"layers hold too many pixels in total (more than {MAX_TOTAL_LAYER_PIXELS}, "
                               "counting a file once per layer that uses it)")

        def decode(member: str, as_mask: bool) -> np.ndarray:
            if not as_mask:
                fast = decode_png_rgba8(blobs[member])  # header already size-checked above
                if fast is not None:
                    return fast
            try:
                with self._open_png(member, blobs[member]) as im:
                    im.load()
                    if as_mask:
                        return np.asarray(im.convert("L") if im.mode != "L" else im, dtype=np.uint8).copy()
                    return image_to_rgba(im, canonical=False)
            except DocumentFileError:
                raise
            except Exception as exc:  # noqa: BLE001 - truncated/corrupt PNG data
                raise DocumentFileError(self.path, with_messages(f"cannot decode layer file {member!r} ({exc})",
                                                                 messages)) from exc

        # One job per distinct file and use: its layer tiles, and its mask tiles per placement
        # (mask tiles live in the layer's coordinates, so the offset is part of the key).
        layer_grids: dict[str, TileGrid] = {}
        mask_grids: dict[tuple[str, int, int, int], TileGrid] = {}
        masks_of: dict[str, set[tuple[str, int, int, int]]] = {}
        for p in self.pending:
            layer_grids.setdefault(p.src, None)
            if p.mask_src:
                masks_of.setdefault(p.mask_src, set()).add(
                    (p.mask_src, p.mask_x - p.x, p.mask_y - p.y, p.mask_default))

        def build_layer(member: str) -> None:
            layer_grids[member] = TileGrid.from_array(decode(member, False))

        def build_masks(member: str) -> None:
            m = decode(member, True)
            for key in masks_of[member]:
                mask_grids[key] = TileGrid.from_array(m, key[1], key[2], default=key[3])

        jobs = [(build_layer, m) for m in layer_grids] + [(build_masks, m) for m in masks_of]
        workers = max(1, min(4, os.cpu_count() or 1, len(jobs)))
        with decoder_messages() as messages:
            if workers == 1:
                for job, member in jobs:
                    job(member)
            else:
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    for fut in [pool.submit(job, member) for job, member in jobs]:
                        fut.result()

        used: set[int] = set()

        def share(grid: TileGrid) -> TileGrid:
            # The first user takes the grid itself, the others a copy sharing its frozen tiles.
            if id(grid) in used:
                return grid.copy()
            used.add(id(grid))
            return grid

        for p in self.pending:
            p.node.x, p.node.y = p.x, p.y
            p.node.tiles = share(layer_grids[p.src])
            if p.mask_src:
                p.node.mask = share(mask_grids[(p.mask_src, p.mask_x - p.x, p.mask_y - p.y, p.mask_default)])


def load_ora(path: "str | os.PathLike[str]", **doc_kwargs) -> OraLoadResult:
    """Open an .ora file as a new Document (empty undo history)."""
    p = os.fspath(path)
    try:
        zf = zipfile.ZipFile(p)
    except FileNotFoundError as exc:
        raise DocumentFileError(p, "file not found") from exc
    except IsADirectoryError as exc:
        raise DocumentFileError(p, "is a folder, not an OpenRaster file") from exc
    except PermissionError as exc:
        raise DocumentFileError(p, "permission denied") from exc
    except _ARCHIVE_ERRORS as exc:
        raise DocumentFileError(p, f"not an OpenRaster file (not a valid zip archive: {exc})") from exc
    with zf:
        try:
            return _load(p, zf, doc_kwargs)
        except DocumentFileError:
            raise
        except _ARCHIVE_ERRORS as exc:
            raise DocumentFileError(p, f"damaged archive ({type(exc).__name__}: {exc})") from exc


def _load(p: str, zf: zipfile.ZipFile, doc_kwargs: dict) -> OraLoadResult:
    infos = zf.infolist()
    check_zip_directory(p, infos)
    reader = _Reader(p, zf)
    if "mimetype" in reader.names:
        if zf.read("mimetype").strip() != MIMETYPE:
            raise DocumentFileError(p, "not an OpenRaster file (wrong mimetype)")
        if infos[0].filename != "mimetype":
            reader.warn("mimetype is not the first archive entry")
    else:
        reader.warn("archive has no mimetype entry")
    if "stack.xml" not in reader.names:
        raise DocumentFileError(p, "not an OpenRaster file (no stack.xml)")
    if zf.getinfo("stack.xml").file_size > MAX_STACK_XML:
        raise DocumentFileError(p, "stack.xml is too large")
    root_el = parse_stack_xml(p, zf.read("stack.xml"))
    try:
        w, h = int(root_el.get("w", "")), int(root_el.get("h", ""))
        check_canvas_size(w, h)
    except ValueError as exc:
        raise DocumentFileError(p, f"invalid canvas size w={root_el.get('w')!r} h={root_el.get('h')!r}") from exc
    stacks = [c for c in root_el if c.tag == "stack"]
    if len(stacks) != 1:
        raise DocumentFileError(p, f"stack.xml must have exactly one root <stack>, found {len(stacks)}")
    doc = Document(w, h, **doc_kwargs)
    reader.stack(stacks[0], doc.root, 1)
    reader.decode_all()
    if "mergedimage.png" not in reader.names:
        reader.warn("no mergedimage.png (written by an old application)")
    doc.file_path = os.path.abspath(p)
    image_attrs = {
        k[len(DOC_NS) + 2 :]: v for k, v in root_el.attrib.items() if k.startswith(f"{{{DOC_NS}}}")
    }
    return OraLoadResult(doc, reader.warnings, reader.selected, image_attrs)


def read_merged_image(path: "str | os.PathLike[str]") -> Optional[np.ndarray]:
    """The writer's own mergedimage.png as RGBA (None if absent); for previews and tests."""
    p = os.fspath(path)
    try:
        with zipfile.ZipFile(p) as zf:
            check_zip_directory(p, zf.infolist())
            if "mergedimage.png" not in zf.namelist():
                return None
            with Image.open(io.BytesIO(zf.read("mergedimage.png")), formats=["PNG"]) as im:
                check_pixel_count(p, *im.size)
                if im.size[0] * im.size[1] > MAX_CANVAS_PIXELS:
                    return None
                im.load()
                return image_to_rgba(im)
    except _ARCHIVE_ERRORS as exc:
        raise DocumentFileError(p, f"cannot read mergedimage.png ({exc})") from exc
