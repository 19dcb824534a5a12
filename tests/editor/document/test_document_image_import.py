"""Flat image import/export: bit depths, palettes, CMYK, EXIF orientation."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from editor.document import Document
from editor.io import DocumentFileError, document_from_image, export_flattened, import_image_as_layer, load_image


def write_png_rgb16(path, arr16: np.ndarray) -> None:
    """Minimal 16-bit RGB PNG encoder (Pillow cannot write this mode)."""
    h, w, _ = arr16.shape
    raw = b"".join(b"\x00" + arr16[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    path.write_bytes(png)


def test_16bit_gray_png_is_scaled_not_clipped(tmp_path):
    v16 = np.array([[0, 257, 32768, 65535, 1000, 60000]], dtype=np.uint16)
    Image.fromarray(v16).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    rgba = load_image(tmp_path / "g16.png")
    expected = np.rint(v16.astype(float) * 255 / 65535).astype(np.uint8)
    assert np.array_equal(rgba[..., 0], expected) and np.array_equal(rgba[..., 2], expected)
    assert (rgba[..., 3] == 255).all()


def test_16bit_rgb_png(tmp_path):
    rng = np.random.default_rng(0)
    v16 = rng.integers(0, 65536, (5, 7, 3), dtype=np.uint16)
    write_png_rgb16(tmp_path / "rgb16.png", v16)
    rgba = load_image(tmp_path / "rgb16.png")
    assert rgba.shape == (5, 7, 4)
    assert np.abs(rgba[..., :3].astype(int) - v16.astype(int) * 255 / 65535).max() <= 1


def test_16bit_tiff(tmp_path):
    v16 = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    Image.fromarray(v16).save(tmp_path / "g16.tif")
    rgba = load_image(tmp_path / "g16.tif")
    assert np.abs(rgba[..., 1].astype(int) - v16.astype(int) * 255 / 65535).max() <= 0.5 + 1e-9


def test_paletted_png_with_transparency(tmp_path):
    im = Image.new("P", (4, 2))
    im.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 759)
    im.putdata([0, 1, 2, 0, 1, 1, 2, 2])
    im.save(tmp_path / "p.png", transparency=1)
    rgba = load_image(tmp_path / "p.png")
    assert tuple(rgba[0, 0]) == (255, 0, 0, 255)
    assert tuple(rgba[0, 1]) == (0, 0, 0, 0)  # transparent index, canonical
    assert tuple(rgba[0, 2]) == (0, 0, 255, 255)


def test_la_png(tmp_path):
    Image.new("LA", (3, 3), (200, 100)).save(tmp_path / "la.png")
    assert tuple(load_image(tmp_path / "la.png")[1, 1]) == (200, 200, 200, 100)


def test_cmyk_jpeg(tmp_path):
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=95)
    assert Image.open(tmp_path / "c.jpg").mode == "CMYK"
    rgba = load_image(tmp_path / "c.jpg")
    assert rgba.shape == (16, 16, 4) and (rgba[..., 3] == 255).all()
    r, g, b = rgba[8, 8, :3].astype(int)
    assert r > 230 and g < 25 and b < 25  # red, not inverted or garbled


def test_exif_rotated_jpeg(tmp_path):
    im = Image.new("RGB", (40, 20), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 10, 10))  # red block in the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    im.save(tmp_path / "rot.jpg", exif=exif, quality=95)
    rgba = load_image(tmp_path / "rot.jpg")
    assert rgba.shape == (40, 20, 4)  # portrait after applying the orientation
    assert rgba[5, 15, 0] > 200 and rgba[5, 15, 2] < 60  # top-left went to the top-right
    assert rgba[35, 5, 2] > 200


def test_webp_and_errors(tmp_path):
    Image.new("RGBA", (6, 4), (1, 2, 3, 128)).save(tmp_path / "a.webp", lossless=True)
    assert tuple(load_image(tmp_path / "a.webp")[0, 0]) == (1, 2, 3, 128)
    (tmp_path / "bad.png").write_bytes(b"definitely not an image")
    with pytest.raises(DocumentFileError, match="not a supported image"):
        load_image(tmp_path / "bad.png")
    with pytest.raises(DocumentFileError, match="not found"):
        load_image(tmp_path / "missing.png")


def test_pixel_limit(tmp_path, monkeypatch):
    import editor.io.images as images

    Image.new("RGB", (300, 300)).save(tmp_path / "big.png")
    monkeypatch.setattr(images, "MAX_CANVAS_PIXELS", 10_000)
    with pytest.raises(DocumentFileError, match="too large"):
        load_image(tmp_path / "big.png")


def test_new_document_and_import_as_layer(tmp_path):
    Image.new("RGB", (30, 20), (10, 20, 30)).save(tmp_path / "bg.png")
    doc = document_from_image(tmp_path / "bg.png")
    assert (doc.width, doc.height) == (30, 20) and not doc.undo_stack.can_undo()
    Image.new("RGBA", (5, 5), (255, 0, 0, 255)).save(tmp_path / "dot.png")
    layer = import_image_as_layer(doc, tmp_path / "dot.png", x=28, y=-2)
    assert layer.name == "dot" and len(doc.undo_stack) == 1
    assert tuple(doc.render()[0, 29]) == (255, 0, 0, 255)
    doc.undo()
    assert tuple(doc.render()[0, 29]) == (10, 20, 30, 255)


@pytest.mark.parametrize("ext", ["png", "jpg", "webp"])
def test_export_flattened(tmp_path, ext):
    doc = Document(20, 10)
    doc.add_layer_from_image(np.full((10, 10, 4), (255, 0, 0, 255), np.uint8))
    export_flattened(doc, tmp_path / f"out.{ext}", quality=95)
    back = load_image(tmp_path / f"out.{ext}")
    assert back.shape == (10, 20, 4)
    assert abs(int(back[5, 5, 0]) - 255) <= 8 and back[5, 5, 1] <= 12
    if ext == "jpg":
        assert back[5, 15, :3].min() >= 245  # transparent -> white background
    elif ext == "png":
        assert back[5, 15, 3] == 0
    with pytest.raises(DocumentFileError):
        export_flattened(doc, tmp_path / "out.bmp2")


def test_fast_png_path_matches_pillow_for_rgb_and_rgba(tmp_path):
    import io

    from editor.io.images import decode_png_rgba8, image_to_rgba

    rng = np.random.default_rng(4)
    for mode, ch in (("RGBA", 4), ("RGB", 3)):
        arr = rng.integers(0, 256, (33, 47, ch), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr, mode).save(buf, "PNG")
        fast = decode_png_rgba8(buf.getvalue())
        assert fast is not None
        assert np.array_equal(fast, image_to_rgba(Image.open(io.BytesIO(buf.getvalue())), canonical=False))
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (5, 5), dtype=np.uint8)).save(buf, "PNG")
    assert decode_png_rgba8(buf.getvalue()) is None  # grey: Pillow path
    assert decode_png_rgba8(b"not a png at all, just bytes....." * 2) is None
