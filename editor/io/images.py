"""Flat image import (PNG, JPEG, WebP, TIFF...) and flattened export.

Everything becomes straight 8-bit sRGB RGBA: EXIF orientation applied,
16-bit scaled (not clipped), palette/LA/CMYK converted. There is no colour
management except for CMYK, whose embedded ICC profile is used when present
(a naive CMYK->RGB conversion is badly off); RGB profiles are ignored.
"""

from __future__ import annotations

import io
import os
import struct
from typing import Optional

import cv2
import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from editor.document import Document, RasterLayer
from editor.document.document import MAX_CANVAS_PIXELS, MAX_CANVAS_SIDE

from .atomic import atomic_write
from .errors import DocumentFileError
from .quiet import decoder_messages, with_messages

# Pillow's decompression-bomb guard: it warns above MAX_IMAGE_PIXELS and
# refuses above twice that. We accept images up to the canvas limit and check
# that limit ourselves right after reading the header.
Image.MAX_IMAGE_PIXELS = MAX_CANVAS_PIXELS

IMPORT_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF", "BMP", "GIF")


def check_pixel_count(path: str, width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise DocumentFileError(path, f"invalid image size {width}x{height}")
    if width > MAX_CANVAS_SIDE or height > MAX_CANVAS_SIDE or width * height > MAX_CANVAS_PIXELS:
        raise DocumentFileError(path, f"image too large ({width}x{height} pixels)")


def _from_16bit(arr: np.ndarray) -> np.ndarray:
    # Round to nearest: 65535 -> 255, 257 * v -> v (exact for 8-bit-in-16-bit data).
    a = np.clip(arr.astype(np.int64), 0, 65535)
    return ((a * 255 + 32767) // 65535).astype(np.uint8)


def _gray_to_rgba(gray: np.ndarray) -> np.ndarray:
    out = np.empty(gray.shape + (4,), np.uint8)
    out[..., :3] = gray[..., None]
    out[..., 3] = 255
    return out


def _cmyk_to_rgb(im: Image.Image) -> Image.Image:
    icc = im.info.get("icc_profile")
    if icc:
        try:
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            dst = ImageCms.createProfile("sRGB")
            return ImageCms.profileToProfile(im, src, dst, outputMode="RGB")
        except Exception:  # noqa: BLE001 - broken profile: fall back to the plain formula
            pass
    return im.convert("RGB")


def image_to_rgba(im: Image.Image, canonical: bool = True) -> np.ndarray:
    """Straight RGBA uint8 array of a Pillow image.

    With ``canonical=False`` the result may be a read-only view and colour
    under alpha 0 is left as stored (the .ora reader tiles it right away,
    and tiling canonicalises).
    """
    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(im)
        if mode == "I" and arr.size and int(arr.max()) > 65535:
            arr = arr.astype(np.float64) * (65535.0 / float(arr.max()))  # 32-bit data: use its range
        return _gray_to_rgba(_from_16bit(arr))  # opaque: already canonical
    if mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        scale = 255.0 if arr.size == 0 or float(np.nanmax(arr)) <= 1.0 else 1.0
        return _gray_to_rgba(np.rint(np.clip(np.nan_to_num(arr) * scale, 0, 255)).astype(np.uint8))
    if mode == "CMYK":
        im = _cmyk_to_rgb(im)
    elif mode == "LAB":
        try:
            lab = ImageCms.createProfile("LAB")
            im = ImageCms.profileToProfile(im, lab, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except Exception as exc:  # noqa: BLE001 - surfaced as a decode error
            raise ValueError(f"cannot convert Lab image to RGB ({exc})") from exc
    elif mode == "RGBa":
        im = im.convert("RGBA")
    elif mode == "La":
        im = im.convert("LA")
    if im.mode != "RGBA":
        im = im.convert("RGBA")  # P (tRNS honoured), PA, L, LA, 1, RGB, YCbCr, HSV
    arr = np.asarray(im, dtype=np.uint8)
    if canonical:
        arr = arr.copy()
        np.multiply(arr, arr[..., 3:4] != 0, out=arr)  # transparent -> (0, 0, 0, 0)
    return arr


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunks_complete(data: bytes) -> bool:
    """Whether the PNG's chunks lie within ``data`` and end with IEND (a cheap walk over the chunk
    headers, no CRC or inflate): a truncated file fails here instead of inside libpng."""
    pos, end = 8, len(data)
    unpack = struct.unpack_from
    while pos + 12 <= end:
        length, kind = unpack(">I4s", data, pos)
        if length > 0x7FFFFFFF:
            return False
        pos += 12 + length
        if kind == b"IEND":
            return pos <= end
    return False


def decode_png_rgba8(data: bytes) -> Optional[np.ndarray]:
    """Fast path for the common 8-bit RGB/RGBA PNG: OpenCV decodes straight
    into a numpy array (no extra copy, GIL released). Returns None for any
    other kind of PNG (palette, grey, 16-bit, interlaced...), which the
    caller decodes with Pillow. The caller has already bounded the size."""
    if len(data) < 33 or data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR":
        return None
    depth, colour_type, _comp, _filt, interlace = struct.unpack(">BBBBB", data[24:29])
    if depth != 8 or colour_type not in (2, 6) or interlace != 0:
        return None
    if not png_chunks_complete(data):
        return None  # truncated or damaged: Pillow reports it as one exception, libpng would print it
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.ndim != 3 or arr.shape[2] != (4 if colour_type == 6 else 3) or arr.dtype != np.uint8:
        return None
    if colour_type == 6:
        return cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA, dst=arr)
    return cv2.cvtColor(arr, cv2.COLOR_BGR2RGBA)


def load_image(path: "str | os.PathLike[str]") -> np.ndarray:
    """Read an image file as straight RGBA uint8 (H, W, 4)."""
    p = os.fspath(path)
    # Pillow's warnings and libtiff's/libjpeg's stderr lines go into the one error line (or away).
    with decoder_messages() as messages:
        try:
            with Image.open(p, formats=IMPORT_FORMATS) as im:
                check_pixel_count(p, *im.size)
                im.load()
                im = ImageOps.exif_transpose(im)
                return image_to_rgba(im)
        except DocumentFileError as exc:
            raise DocumentFileError(p, with_messages(exc.problem, messages)) from exc
        except FileNotFoundError as exc:
            raise DocumentFileError(p, "file not found") from exc
        except IsADirectoryError as exc:
            raise DocumentFileError(p, "is a folder, not an image") from exc
        except PermissionError as exc:
            raise DocumentFileError(p, "permission denied") from exc
        except UnidentifiedImageError as exc:
            raise DocumentFileError(p, with_messages("not a supported image file", messages)) from exc
        except Image.DecompressionBombError as exc:
            raise DocumentFileError(p, f"image too large ({exc})") from exc
        except (OSError, ValueError, SyntaxError, EOFError, struct.error, MemoryError) as exc:
            raise DocumentFileError(p, with_messages(f"cannot decode image: {exc}", messages)) from exc


def document_from_image(path: "str | os.PathLike[str]", **doc_kwargs) -> Document:
    """A new document the size of the image, with the image as its only layer."""
    rgba = load_image(path)
    h, w = rgba.shape[:2]
    doc = Document(w, h, **doc_kwargs)
    doc.add_layer_from_image(rgba, 0, 0, name=os.path.splitext(os.path.basename(os.fspath(path)))[0] or "Background")
    doc.undo_stack.clear()  # opening a file is not an undoable step
    return doc


def import_image_as_layer(
    document: Document, path: "str | os.PathLike[str]", x: int = 0, y: int = 0, name: Optional[str] = None
) -> RasterLayer:
    """Add the image as a new top layer at canvas (x, y): one undo step."""
    rgba = load_image(path)
    name = name or os.path.splitext(os.path.basename(os.fspath(path)))[0] or "Layer"
    return document.add_layer_from_image(rgba, x, y, name=name)


_EXPORT_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


def export_flattened(
    document: Document,
    path: "str | os.PathLike[str]",
    *,
    format: Optional[str] = None,
    quality: int = 92,
    background: tuple[int, int, int] = (255, 255, 255),
    lossless: bool = False,
) -> None:
    """Write the composite as PNG, JPEG (over ``background``) or WebP, atomically."""
    p = os.fspath(path)
    fmt = (format or _EXPORT_FORMATS.get(os.path.splitext(p)[1].lower(), "")).upper()
    if fmt not in ("PNG", "JPEG", "WEBP"):
        raise DocumentFileError(p, "unknown export format (use .png, .jpg or .webp)")
    rgba = document.render()
    im = Image.fromarray(rgba, "RGBA")
    if fmt == "JPEG":
        flat = Image.new("RGB", im.size, background)
        flat.paste(im, mask=im.getchannel("A"))
        im = flat

    def write(f) -> None:
        if fmt == "PNG":
            im.save(f, "PNG", compress_level=6)
        elif fmt == "JPEG":
            im.save(f, "JPEG", quality=quality, optimize=True)
        else:
            im.save(f, "WEBP", quality=quality, lossless=lossless, exact=True)

    atomic_write(p, write)
