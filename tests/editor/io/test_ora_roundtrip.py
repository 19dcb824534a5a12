"""OpenRaster save -> load round trips, and the written file follows the spec."""

from __future__ import annotations

import io
import zipfile
import xml.etree.ElementTree as ET

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from editor.document import BlendMode, Document, LayerGroup, RasterLayer, Rect, TileGrid
from editor.io import load_ora, save_ora
from editor.io.ora_common import ATTR_NS, DOC_NS

# Names: any Unicode XML 1.0 can carry (no C0 controls except tab/newline, no surrogates).
xml_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\ufffe\uffff"
                           + "".join(chr(c) for c in range(1, 32) if c not in (9, 10, 13))),
    max_size=12,
)
attr_key = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,10}", fullmatch=True)
opacities = st.one_of(st.sampled_from([0.0, 1.0, 0.5, 56 / 255]), st.floats(0, 1))

layer_spec = st.fixed_dictionaries(
    {
        "kind": st.just("layer"),
        "name": xml_text,
        "opacity": opacities,
        "visible": st.booleans(),
        "mode": st.sampled_from(list(BlendMode)),
        "x": st.integers(-300, 300),
        "y": st.integers(-300, 300),
        "w": st.integers(0, 90),
        "h": st.integers(1, 90),
        "seed": st.integers(0, 2**31),
        "attributes": st.dictionaries(attr_key, xml_text, max_size=3),
        "alpha_locked": st.booleans(),
        "mask": st.sampled_from([None, 0, 255]),
    }
)


def group_spec(children):
    return st.fixed_dictionaries(
        {
            "kind": st.just("group"),
            "name": xml_text,
            "opacity": opacities,
            "visible": st.booleans(),
            "mode": st.sampled_from(list(BlendMode)),
            "isolated": st.booleans(),
            "attributes": st.dictionaries(attr_key, xml_text, max_size=2),
            "children": st.lists(children, max_size=4),
        }
    )


tree = st.lists(st.recursive(layer_spec, group_spec, max_leaves=8), min_size=1, max_size=5)


def build(doc: Document, parent: LayerGroup, specs) -> None:
    for s in specs:
        common = dict(opacity=s["opacity"], visible=s["visible"], blend_mode=s["mode"], attributes=s["attributes"])
        if s["kind"] == "group":
            g = LayerGroup(s["name"], isolated=s["isolated"], **common)
            parent.insert(len(parent.children), g)
            build(doc, g, s["children"])
            continue
        rng = np.random.default_rng(s["seed"])
        px = rng.integers(0, 256, (s["h"], s["w"], 4), dtype=np.uint8)
        px[rng.random((s["h"], s["w"])) < 0.3] = 0  # holes
        layer = RasterLayer(s["name"], x=s["x"], y=s["y"], tiles=TileGrid.from_array(px),
                            alpha_locked=s["alpha_locked"], **common)
        if s["mask"] is not None:
            m = rng.integers(0, 256, (max(s["h"] // 2, 1), max(s["w"], 1)), dtype=np.uint8)
            layer.mask = TileGrid.from_array(m, 3, -2, default=s["mask"])
        parent.insert(len(parent.children), layer)


def content(grid: TileGrid, dx: int, dy: int):
    b = grid.content_bounds()
    return (grid.channels, grid.default, b.translated(dx, dy), grid.read_region(b).tobytes())


def describe(node):
    base = (type(node).__name__, node.name, node.opacity, node.visible, node.blend_mode, sorted(node.attributes.items()))
    if isinstance(node, RasterLayer):
        mask = None if node.mask is None else content(node.mask, node.x, node.y)
        return base + (node.alpha_locked, content(node.tiles, node.x, node.y), mask)
    return base + (node.isolated, [describe(c) for c in node.children])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(tree, st.integers(1, 200), st.integers(1, 200))
def test_roundtrip_random_stacks(tmp_path, specs, w, h):
    doc = Document(w, h)
    build(doc, doc.root, specs)
    path = tmp_path / "rt.ora"
    save_ora(doc, path)
    res = load_ora(path)
    assert res.warnings == []
    back = res.document
    assert (back.width, back.height) == (w, h)
    assert describe(back.root) == describe(doc.root)
    assert np.array_equal(back.render(), doc.render())


def test_written_file_follows_the_spec(tmp_path):
    doc = Document(600, 300)
    g = doc.add_group("grp", isolated=False)
    inner = doc.add_layer_from_image(np.full((40, 50, 4), 200, np.uint8), -20, 280, parent=g)
    doc.set_attributes(inner, {"prompt": "a cat", "seed": "7"})
    doc.add_group("iso", isolated=True)
    doc.add_layer("empty")
    path = tmp_path / "spec.ora"
    save_ora(doc, path)
    with zipfile.ZipFile(path) as zf:
        first = zf.infolist()[0]
        assert first.filename == "mimetype" and first.compress_type == zipfile.ZIP_STORED
        assert zf.read("mimetype") == b"image/openraster"
        raw = zf.read("stack.xml")
        assert b'xmlns:canvasai="' + ATTR_NS.encode() + b'"' in raw
        root = ET.fromstring(raw)
        assert root.tag == "image" and root.get("w") == "600" and root.get("h") == "300"
        (top,) = list(root)
        assert top.tag == "stack" and top.attrib == {}  # the root stack carries no attributes
        names = set(zf.namelist())
        for el in top.iter():
            if el.tag == "stack" and el is not top:
                assert el.get("isolation") in ("isolate", "auto")
                assert "x" not in el.attrib and "y" not in el.attrib
            if el.tag == "layer":
                assert el.get("src") in names
                for key in ("name", "x", "y", "opacity", "visibility", "composite-op"):
                    assert key in el.attrib
        # Top-most first: "empty" was added last.
        assert [c.get("name") for c in top] == ["empty", "iso", "grp"]
        layer_el = top.find("./stack[@name='grp']/layer")
        assert layer_el.get(f"{{{ATTR_NS}}}prompt") == "a cat"
        assert (layer_el.get("x"), layer_el.get("y")) == ("-20", "280")  # past the canvas, kept
        merged = Image.open(io.BytesIO(zf.read("mergedimage.png")))
        assert merged.size == (600, 300) and merged.mode == "RGBA"
        thumb = Image.open(io.BytesIO(zf.read("Thumbnails/thumbnail.png")))
        assert max(thumb.size) == 256 and thumb.size == (256, 128)
        assert all(f"{{{DOC_NS}}}" not in k for k in layer_el.attrib)  # no extensions needed here
    assert doc.undo_stack.is_clean() and doc.file_path == str(path)


def test_unicode_and_escaping_in_names_and_attributes(tmp_path):
    doc = Document(10, 10)
    lay = doc.add_layer('ü "quoted" <&> \t tab\nnewline 🎨')
    doc.set_attributes(lay, {"prompt": "<b>&amp;</b> \"x\" 'y'\nline2", "negative": ""})
    save_ora(doc, tmp_path / "u.ora")
    back = load_ora(tmp_path / "u.ora").document.raster_layers()[0]
    assert back.name == lay.name and back.attributes == lay.attributes


def test_unknown_composite_op_falls_back_with_warning(tmp_path):
    doc = Document(8, 8)
    doc.add_layer_from_image(np.full((8, 8, 4), 255, np.uint8))
    save_ora(doc, tmp_path / "a.ora")
    src = zipfile.ZipFile(tmp_path / "a.ora")
    out = tmp_path / "b.ora"
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "stack.xml":
                data = data.replace(b"svg:src-over", b"krita:vivid_light")
            dst.writestr(info, data)
    res = load_ora(out)
    assert res.document.raster_layers()[0].blend_mode is BlendMode.NORMAL
    assert any("krita:vivid_light" in w for w in res.warnings)


def test_empty_canvas_regions_and_rect_api(tmp_path):
    doc = Document(70, 70)
    lay = doc.add_layer()
    doc.select_rect(Rect(5, 5, 10, 10))
    doc.fill_selection(lay, (1, 2, 3))
    save_ora(doc, tmp_path / "r.ora")
    back = load_ora(tmp_path / "r.ora").document
    assert back.raster_layers()[0].content_bounds() == Rect(5, 5, 10, 10)
