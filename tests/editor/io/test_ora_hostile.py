"""Malformed and hostile .ora files must fail with one clear DocumentFileError."""

from __future__ import annotations

import io
import os
import zipfile

import numpy as np
import pytest
from PIL import Image

from editor.document import Document
from editor.io import DocumentFileError, load_ora, save_ora


def _png(w=4, h=4, mode="RGBA") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (w, h), (255, 0, 0, 255) if mode == "RGBA" else 0).save(buf, "PNG")
    return buf.getvalue()


def make_ora(path, stack_xml: bytes, files: dict[str, bytes] | None = None, mimetype=b"image/openraster") -> str:
    with zipfile.ZipFile(path, "w") as zf:
        if mimetype is not None:
            zf.writestr(zipfile.ZipInfo("mimetype"), mimetype, compress_type=zipfile.ZIP_STORED)
        zf.writestr("stack.xml", stack_xml)
        for name, data in (files or {}).items():
            zf.writestr(name, data)
    return str(path)


GOOD_XML = b'<image w="8" h="8"><stack><layer src="data/a.png" name="a"/></stack></image>'


def expect_error(path, *fragments):
    with pytest.raises(DocumentFileError) as info:
        load_ora(path)
    msg = str(info.value)
    assert str(path) in msg, "the message must name the file"
    for f in fragments:
        assert f in msg.lower(), msg
    return info.value


def test_minimal_valid_file_loads(tmp_path):
    doc = load_ora(make_ora(tmp_path / "ok.ora", GOOD_XML, {"data/a.png": _png()})).document
    assert doc.render()[0, 0, 0] == 255


def test_not_a_zip(tmp_path):
    p = tmp_path / "junk.ora"
    p.write_bytes(b"\x89PNG not a zip at all" * 100)
    expect_error(p, "not an openraster file")
    (tmp_path / "empty.ora").write_bytes(b"")
    expect_error(tmp_path / "empty.ora", "zip")
    expect_error(tmp_path / "missing.ora", "not found")
    expect_error(tmp_path, "folder")


def test_truncated_zip(tmp_path):
    doc = Document(64, 64)
    doc.add_layer_from_image(np.random.default_rng(0).integers(0, 256, (64, 64, 4), dtype=np.uint8))
    save_ora(doc, tmp_path / "full.ora")
    data = (tmp_path / "full.ora").read_bytes()
    (tmp_path / "cut.ora").write_bytes(data[: len(data) // 2])
    expect_error(tmp_path / "cut.ora")


def test_wrong_mimetype(tmp_path):
    expect_error(make_ora(tmp_path / "m.ora", GOOD_XML, {"data/a.png": _png()}, b"application/zip"), "mimetype")


def test_zip_bomb_rejected_before_inflating(tmp_path):
    # 2 GiB of zeros would be ~2 MB deflated; the declared size alone must stop it.
    p = tmp_path / "bomb.ora"
    with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(zipfile.ZipInfo("mimetype"), b"image/openraster", compress_type=zipfile.ZIP_STORED)
        zf.writestr("stack.xml", GOOD_XML)
        with zf.open("data/a.png", "w", force_zip64=True) as f:
            chunk = bytes(1 << 20)
            for _ in range(64):  # 64 MiB of zeros -> ~64 KiB stored: ratio ~1000
                f.write(chunk)
    expect_error(p, "zip bomb")


def test_declared_size_limit_and_entry_count(tmp_path, monkeypatch):
    from editor.io import ora_common

    p = make_ora(tmp_path / "many.ora", GOOD_XML, {f"junk/{i}": b"x" for i in range(50)} | {"data/a.png": _png()})
    monkeypatch.setattr(ora_common, "MAX_ENTRIES", 20)
    expect_error(p, "too many entries")
    monkeypatch.setattr(ora_common, "MAX_ENTRIES", 20_000)
    monkeypatch.setattr(ora_common, "MAX_TOTAL_SIZE", 100)
    expect_error(p, "too much data")


def test_png_pixel_bomb(tmp_path):
    # A tiny PNG that claims 100000 x 100000 pixels.
    big = _png(1, 1)
    ihdr_at = big.index(b"IHDR")
    import struct
    import zlib

    fields = struct.pack(">IIBBBBB", 100000, 100000, 8, 6, 0, 0, 0)
    chunk = b"IHDR" + fields
    big = big[: ihdr_at - 4] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + big[ihdr_at + 4 + 13 + 4 :]
    expect_error(make_ora(tmp_path / "px.ora", GOOD_XML, {"data/a.png": big}), "too large")


@pytest.mark.parametrize("src", ["../evil.png", "data/../../evil.png", "/etc/passwd", "C:/evil.png", "data\\..\\evil.png"])
def test_path_traversal_in_src(tmp_path, src):
    xml = f'<image w="8" h="8"><stack><layer src="{src}" name="a"/></stack></image>'.encode()
    expect_error(make_ora(tmp_path / "t.ora", xml, {"data/a.png": _png()}), "path")


def test_broken_xml(tmp_path):
    expect_error(make_ora(tmp_path / "x.ora", b"<image w='8' h='8'><stack><layer", {"data/a.png": _png()}), "xml")
    expect_error(make_ora(tmp_path / "r.ora", b"<notimage/>", {}), "<image>")
    expect_error(make_ora(tmp_path / "s.ora", b'<image w="8" h="8"></image>', {}), "root <stack>")
    expect_error(make_ora(tmp_path / "w.ora", b'<image w="-3" h="8"><stack/></image>', {}), "canvas size")
    expect_error(make_ora(tmp_path / "n.ora", b'<image w="8"><stack/></image>', {}), "canvas size")


def test_billion_laughs_dtd_rejected(tmp_path):
    xml = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
           b'<image w="8" h="8"><stack><layer src="data/a.png" name="&lol2;"/></stack></image>')
    expect_error(make_ora(tmp_path / "dtd.ora", xml, {"data/a.png": _png()}), "dtd")


def test_missing_stack_xml_and_missing_layer(tmp_path):
    p = tmp_path / "nostack.ora"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("mimetype", b"image/openraster")
    expect_error(p, "stack.xml")
    expect_error(make_ora(tmp_path / "miss.ora", GOOD_XML, {}), "missing layer file", "data/a.png")


def test_corrupt_layer_png(tmp_path):
    bad = _png(64, 64)
    bad = bad[:60] + b"\x00" * 40 + bad[100:]
    expect_error(make_ora(tmp_path / "c.ora", GOOD_XML, {"data/a.png": bad}), "data/a.png")
    expect_error(make_ora(tmp_path / "d.ora", GOOD_XML, {"data/a.png": b"GIF89a....."}), "data/a.png")


def test_deep_nesting_rejected(tmp_path):
    xml = b'<image w="8" h="8"><stack>' + b"<stack>" * 200 + b"</stack>" * 200 + b"</stack></image>"
    expect_error(make_ora(tmp_path / "deep.ora", xml), "nested")


def test_tolerated_quirks_load_with_warnings(tmp_path):
    xml = (b'<image w="8" h="8"><stack><text name="t"/><layer src="data/a.svg" name="vec"/>'
           b'<layer src="data/a.png" opacity="bogus" x="1.0" y="nan"/></stack></image>')
    p = make_ora(tmp_path / "q.ora", xml, {"data/a.png": _png(), "data/a.svg": b"<svg/>"}, mimetype=None)
    res = load_ora(p)
    (layer,) = res.document.raster_layers()
    assert (layer.x, layer.y, layer.opacity) == (1, 0, 1.0)
    assert len(res.warnings) >= 4


def test_every_failure_is_a_document_file_error(tmp_path):
    """Fuzz-style: random byte flips in a valid file never escape as other exceptions."""
    doc = Document(40, 30)
    doc.add_layer_from_image(np.random.default_rng(1).integers(0, 256, (30, 40, 4), dtype=np.uint8))
    doc.add_group("g").name = "g"
    save_ora(doc, tmp_path / "base.ora")
    data = bytearray((tmp_path / "base.ora").read_bytes())
    rng = np.random.default_rng(2)
    for i in range(150):
        mutated = bytearray(data)
        for pos in rng.integers(0, len(data), size=int(rng.integers(1, 8))):
            mutated[pos] = int(rng.integers(0, 256))
        p = tmp_path / f"f{i}.ora"
        p.write_bytes(bytes(mutated))
        try:
            load_ora(p)
        except DocumentFileError:
            pass
    os.remove(tmp_path / "base.ora")


def test_stack_offsets_from_old_drafts_are_applied(tmp_path):
    xml = (b'<image w="16" h="16"><stack><stack x="5" y="3" name="g">'
           b'<layer src="data/a.png" name="a" x="1" y="2"/></stack></stack></image>')
    res = load_ora(make_ora(tmp_path / "so.ora", xml, {"data/a.png": _png()}))
    (layer,) = res.document.raster_layers()
    assert (layer.x, layer.y) == (6, 5)
    assert any("offset" in w for w in res.warnings)
