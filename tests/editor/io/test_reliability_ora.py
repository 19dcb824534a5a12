"""Hostile .ora and image files: shared layer files decode once, the pixel budget counts
references, decoders never print ahead of the one error line, and killed saves' temp files go
away on the next save of the same document."""
from __future__ import annotations

import io
import os
from pathlib import Path
import struct
import subprocess
import sys
import time
import warnings
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from editor.document import Document
from editor.document.tiles import TileTransaction
from editor.io import DocumentFileError, load_image, load_ora, ora_read, save_ora
from editor.io import images as editor_images
from editor.io.atomic import STALE_TEMP_AGE, atomic_write, cleanup_stale_temp_files_of
from inference.errors import InvalidRequestError
from inference.images import load_mask, load_rgb


def _png(arr: np.ndarray, level: int = 1) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG", compress_level=level)
    return buf.getvalue()


def _ora(path, w: int, h: int, layers: list[str], files: dict[str, bytes]) -> str:
    stack = "".join(f'<layer src="{src}" name="l{i}" x="{i % 7}" y="0"/>' for i, src in enumerate(layers))
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(zipfile.ZipInfo("mimetype"), b"image/openraster")
        zf.writestr("stack.xml", f'<image w="{w}" h="{h}"><stack>{stack}</stack></image>')
        for name, data in files.items():
            zf.writestr(name, data)
    return str(path)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_header_only(w: int, h: int) -> bytes:
    """A valid-looking PNG that claims w x h pixels (tiny: one empty IDAT)."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"")) + _chunk(b"IEND", b"")


def _png_bad_deflate(arr: np.ndarray) -> bytes:
    """Correct chunk structure and CRCs, but garbage inside the compressed stream (libpng errors out)."""
    good = _png(arr)
    pos, out = 8, [good[:8]]
    while pos < len(good):
        length, kind = struct.unpack(">I4s", good[pos:pos + 8])
        data = good[pos + 8:pos + 8 + length]
        if kind == b"IDAT":
            data = data[:2] + bytes(b ^ 0x5A for b in data[2:])
        out.append(_chunk(kind, data))
        pos += 12 + length
    return b"".join(out)


# ---- one file, many references -----------------------------------------------------------------------


def test_a_file_used_by_many_layers_is_decoded_once_and_shared(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (256, 256, 4), dtype=np.uint8)
    arr[..., 3] = 255
    path = _ora(tmp_path / "many.ora", 256, 256, ["data/a.png"] * 300 + ["data/b.png"],
                {"data/a.png": _png(arr), "data/b.png": _png(arr[::-1].copy())})
    calls = []
    real = ora_read.decode_png_rgba8
    monkeypatch.setattr(ora_read, "decode_png_rgba8", lambda data: calls.append(len(data)) or real(data))
    start = time.perf_counter()
    doc = load_ora(path).document
    elapsed = time.perf_counter() - start
    layers = doc.raster_layers()
    assert len(layers) == 301 and len(calls) == 2  # two distinct files, two decodes
    assert elapsed < 5.0
    shared = [layer for layer in layers if layer.tiles.get((0, 0)) is layers[-1].tiles.get((0, 0))]
    assert len(shared) == 300  # the 300 references share their tile arrays...
    first = layers[-1]
    assert np.array_equal(first.tiles.read_region(first.tiles.tile_bounds()), np.asarray(Image.open(
        io.BytesIO(_png(arr)))))
    assert sorted({layer.x for layer in layers[1:]}) == list(range(7))  # each reference keeps its own offset
    # ...copy-on-write: an edit of one layer leaves the others and the shared tiles alone.
    before = first.tiles.get((0, 0)).copy()
    tx = TileTransaction(first.tiles)
    tx.writable((0, 0))[:] = 7
    tx.commit()
    assert (first.tiles.get((0, 0)) == 7).all()
    assert np.array_equal(layers[-2].tiles.get((0, 0)), before)


def test_pixel_budget_counts_every_reference(tmp_path, monkeypatch):
    big = _png(np.zeros((4096, 4096, 4), np.uint8), level=9)  # 16.7 M pixels, a few KB
    path = _ora(tmp_path / "refs.ora", 4096, 4096, ["data/a.png"] * 65, {"data/a.png": big})
    decoded = []
    monkeypatch.setattr(ora_read, "decode_png_rgba8", lambda data: decoded.append(1))
    start = time.perf_counter()
    with pytest.raises(DocumentFileError) as info:
        load_ora(path)
    assert time.perf_counter() - start < 2.0
    message = str(info.value)
    assert "\n" not in message and path in message
    assert "too many pixels in total" in message and "once per layer" in message
    assert decoded == []  # refused before decoding anything
    # 64 references (1 G pixels) are within the budget: the count is per reference, not per file.
    assert 64 * 4096 * 4096 <= ora_read.MAX_TOTAL_LAYER_PIXELS < 65 * 4096 * 4096


# ---- one line, nothing printed ahead ---------------------------------------------------------------


def _assert_one_line_and_quiet(message: str, capfd) -> None:
    out, err = capfd.readouterr()
    assert "\n" not in message, message
    assert err == "", f"printed on stderr: {err!r}"


@pytest.mark.parametrize("mode", ["RGBA", "RGB"])
def test_truncated_layer_png_is_one_line(tmp_path, capfd, mode):
    from editor.headless import run_export

    arr = np.random.default_rng(1).integers(0, 256, (128, 128, len(mode)), dtype=np.uint8)
    data = _png(arr)
    path = _ora(tmp_path / "t.ora", 128, 128, ["data/a.png"], {"data/a.png": data[: len(data) // 2]})
    capfd.readouterr()
    err = io.StringIO()
    assert run_export(str(tmp_path / "out.png"), path, err=err) == 2
    lines = err.getvalue().splitlines()
    assert len(lines) == 1 and "cannot decode layer file 'data/a.png'" in lines[0], lines
    _assert_one_line_and_quiet(lines[0], capfd)


def test_bad_deflate_stream_folds_libpng_into_the_line(tmp_path, capfd):
    arr = np.random.default_rng(2).integers(0, 256, (64, 64, 4), dtype=np.uint8)
    path = _ora(tmp_path / "d.ora", 64, 64, ["data/a.png"], {"data/a.png": _png_bad_deflate(arr)})
    capfd.readouterr()
    with pytest.raises(DocumentFileError) as info:
        load_ora(path)
    message = str(info.value)
    assert "cannot decode layer file 'data/a.png'" in message
    _assert_one_line_and_quiet(message, capfd)


def test_png_chunk_walk():
    good = _png(np.zeros((8, 8, 4), np.uint8))
    assert editor_images.png_chunks_complete(good)
    for cut in (9, 20, 33, len(good) // 2, len(good) - 1):
        assert not editor_images.png_chunks_complete(good[:cut])


def _damaged_tiff() -> bytes:
    arr = np.random.default_rng(3).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "TIFF", compression="tiff_lzw")
    data = bytearray(buf.getvalue())
    for i in range(100, 3000):
        data[i] ^= 0xA5
    return bytes(data)


def test_image_import_folds_decoder_chatter(tmp_path, capfd):
    cases = {"bad.tif": _damaged_tiff(), "huge.png": _png_header_only(20000, 15000),
             "cut.png": _png(np.zeros((64, 64, 3), np.uint8))[:60]}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        capfd.readouterr()
        with warnings.catch_warnings(record=True) as leaked:
            warnings.simplefilter("always")
            with pytest.raises(DocumentFileError) as info:
                load_image(tmp_path / name)
        message = str(info.value)
        assert str(tmp_path / name) in message
        _assert_one_line_and_quiet(message, capfd)
        assert not [w for w in leaked if "PIL" in (w.filename or "")], leaked
        if name == "bad.tif":
            assert "[" in message  # libtiff's line, folded in
        if name == "huge.png":
            assert "image too large" in message and "DecompressionBombWarning" in message


def test_engine_image_loading_folds_decoder_chatter(tmp_path, capfd):
    cases = {"bad.tif": _damaged_tiff(), "cut.png": _png(np.zeros((64, 64, 3), np.uint8))[:60],
             "empty.png": b"", "text.png": b"not an image\n"}
    (tmp_path / "folder.png").mkdir()
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    for name in [*cases, "folder.png", "missing.png"]:
        for load in (load_rgb, load_mask):
            capfd.readouterr()
            with warnings.catch_warnings(record=True) as leaked:
                warnings.simplefilter("always")
                with pytest.raises(InvalidRequestError) as info:
                    load(tmp_path / name)
            message = str(info.value)
            assert str(tmp_path / name) in message
            _assert_one_line_and_quiet(message, capfd)
            assert not leaked, [str(w.message) for w in leaked]
    msg = str(pytest.raises(InvalidRequestError, load_rgb, tmp_path / "bad.tif").value)
    assert "Using code not yet in table" in msg or "decoder error" in msg


def test_unrelated_stderr_output_is_given_back(capfd):
    from editor.io.quiet import decoder_messages

    capfd.readouterr()
    with decoder_messages() as messages:
        os.write(2, b"libpng warning: iCCP: known incorrect sRGB profile\n")
        os.write(2, b"someone else's line\n")
        assert messages.summary() == "libpng warning: iCCP: known incorrect sRGB profile"
    _, err = capfd.readouterr()
    assert err == "someone else's line\n"


# ---- leftovers of killed saves ----------------------------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_next_save_removes_stale_temp_files_of_that_document(tmp_path):
    target = tmp_path / "doc.ora"
    dead, alive = _dead_pid(), os.getppid()
    names = {
        f".doc.ora.{dead}.abc123xy.tmp": False,      # dead writer: removed
        f".doc.ora.{alive}.fresh001.tmp": True,      # live PID, recent: a save in progress, kept
        f".doc.ora.{alive}.stale001.tmp": False,     # live PID but hours old (PID reuse): removed
        f".other.ora.{dead}.abc123xy.tmp": True,     # another document's: kept
        f".doc.ora.{dead}.abc.ora.tmp": True,        # not our pattern: kept
        "doc.ora.tmp": True,
    }
    for name in names:
        (tmp_path / name).write_bytes(b"partial")
    old = time.time() - STALE_TEMP_AGE - 60
    os.utime(tmp_path / f".doc.ora.{alive}.stale001.tmp", (old, old))
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    os.symlink(victim, tmp_path / f".doc.ora.{dead}.link0001.tmp")  # planted link: left alone
    doc = Document(16, 16)
    save_ora(doc, target)
    remaining = {p.name for p in tmp_path.iterdir()}
    for name, kept in names.items():
        assert (name in remaining) == kept, name
    assert f".doc.ora.{dead}.link0001.tmp" in remaining and victim.read_bytes() == b"keep"
    assert load_ora(target).document.width == 16
    assert cleanup_stale_temp_files_of(target) == 0


def test_killed_save_leftover_is_removed_by_the_next_save(tmp_path):
    target = tmp_path / "doc.ora"
    save_ora(Document(8, 8), target)
    child = (
        "import sys, time\n"
        f"sys.path.insert(0, {str(Path(os.path.abspath(__file__)).parents[3])!r})\n"
        "from editor.io.atomic import atomic_write\n"
        "def slow(f):\n"
        "    f.write(b'x' * 4096); f.flush(); print('W', flush=True); time.sleep(60)\n"
        "atomic_write(sys.argv[1], slow)\n")
    proc = subprocess.Popen([sys.executable, "-c", child, str(target)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "W"
    proc.kill()
    proc.wait(timeout=30)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1 and leftovers[0].startswith(f".doc.ora.{proc.pid}.")
    atomic_write(target.with_name("other.png"), lambda f: f.write(b"x"))  # another file's save: kept
    assert len([p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]) == 1
    save_ora(Document(8, 8), target)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
