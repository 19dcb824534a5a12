"""Every blend mode against an independent per-pixel implementation of the
W3C Compositing-1 formulas (straight colours, plain Python floats)."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

from editor.document import BlendMode, Document, Rect

# ---------------------------------------------------------------- reference


def ref_separable(mode: str, cb: float, cs: float) -> float:
    if mode == "multiply":
        return cb * cs
    if mode == "screen":
        return cb + cs - cb * cs
    if mode == "hard-light":
        if cs <= 0.5:
            return ref_separable("multiply", cb, 2 * cs)
        return ref_separable("screen", cb, 2 * cs - 1)
    if mode == "overlay":
        return ref_separable("hard-light", cs, cb)
    if mode == "darken":
        return min(cb, cs)
    if mode == "lighten":
        return max(cb, cs)
    if mode == "color-dodge":
        if cb == 0:
            return 0.0
        if cs == 1:
            return 1.0
        return min(1.0, cb / (1 - cs))
    if mode == "color-burn":
        if cb == 1:
            return 1.0
        if cs == 0:
            return 0.0
        return 1 - min(1.0, (1 - cb) / cs)
    if mode == "soft-light":
        if cs <= 0.5:
            return cb - (1 - 2 * cs) * cb * (1 - cb)
        d = ((16 * cb - 12) * cb + 4) * cb if cb <= 0.25 else math.sqrt(cb)
        return cb + (2 * cs - 1) * (d - cb)
    if mode == "difference":
        return abs(cb - cs)
    if mode == "exclusion":
        return cb + cs - 2 * cb * cs
    raise KeyError(mode)


def lum(c):
    return 0.3 * c[0] + 0.59 * c[1] + 0.11 * c[2]


def clip_color(c):
    l = lum(c)
    n, x = min(c), max(c)
    if n < 0:
        c = [l + (ch - l) * l / (l - n) for ch in c]
    if x > 1:
        c = [l + (ch - l) * (1 - l) / (x - l) for ch in c]
    return c


def set_lum(c, l):
    d = l - lum(c)
    return clip_color([ch + d for ch in c])


def sat(c):
    return max(c) - min(c)


def set_sat(c, s):
    # The spec's literal max/mid/min formulation.
    order = sorted(range(3), key=lambda i: c[i])
    i_min, i_mid, i_max = order
    out = [0.0, 0.0, 0.0]
    if c[i_max] > c[i_min]:
        out[i_mid] = (c[i_mid] - c[i_min]) * s / (c[i_max] - c[i_min])
        out[i_max] = s
    return out


def ref_non_separable(mode, cb, cs):
    if mode == "hue":
        return set_lum(set_sat(cs, sat(cb)), lum(cb))
    if mode == "saturation":
        return set_lum(set_sat(cb, sat(cs)), lum(cb))
    if mode == "color":
        return set_lum(cs, lum(cb))
    if mode == "luminosity":
        return set_lum(cb, lum(cs))
    raise KeyError(mode)


def ref_pixel(mode: str, b, s):
    """Composite straight source s over straight backdrop b (both RGBA in 0..1)."""
    cb, ab = list(b[:3]), b[3]
    cs, as_ = list(s[:3]), s[3]
    if mode == "plus":
        co = [min(1.0, as_ * cs[i] + ab * cb[i]) for i in range(3)]
        ao = min(1.0, as_ + ab)
    elif mode == "dst-in":
        co = [ab * cb[i] * as_ for i in range(3)]
        ao = ab * as_
    elif mode == "dst-out":
        co = [ab * cb[i] * (1 - as_) for i in range(3)]
        ao = ab * (1 - as_)
    elif mode == "src-atop":
        co = [as_ * cs[i] * ab + ab * cb[i] * (1 - as_) for i in range(3)]
        ao = ab
    elif mode == "dst-atop":
        co = [as_ * cs[i] * (1 - ab) + ab * cb[i] * as_ for i in range(3)]
        ao = as_
    else:
        if mode == "normal":
            blended = cs
        elif mode in ("hue", "saturation", "color", "luminosity"):
            blended = ref_non_separable(mode, cb, cs)
        else:
            blended = [ref_separable(mode, cb[i], cs[i]) for i in range(3)]
        mixed = [(1 - ab) * cs[i] + ab * blended[i] for i in range(3)]
        co = [as_ * mixed[i] + ab * cb[i] * (1 - as_) for i in range(3)]
        ao = as_ + ab * (1 - as_)
    if ao <= 0:
        return (0.0, 0.0, 0.0, 0.0)
    return tuple([c / ao for c in co] + [ao])


def to_u8(px):
    return [int(round(min(max(v, 0.0), 1.0) * 255)) for v in px]


# --------------------------------------------------------------------- tests


def random_rgba(rng, h, w):
    arr = rng.integers(0, 256, size=(h, w, 4), dtype=np.uint8)
    # Make sure the edge cases of the formulas are exercised.
    arr[0, :, 3] = 0
    arr[1, :, 3] = 255
    arr[2, :4, :3] = 255
    arr[3, :4, :3] = 0
    arr[4, :8, :3] = 128
    arr[arr[..., 3] == 0] = 0
    return arr


@pytest.mark.parametrize("mode", [m.value for m in BlendMode])
def test_blend_mode_matches_w3c_reference(mode):
    rng = np.random.default_rng(zlib.crc32(mode.encode()))  # stable across processes
    h = w = 16
    back = random_rgba(rng, h, w)
    src = random_rgba(rng, h, w)
    # Source colours at the case boundaries of dodge/burn/hard-light/soft-light.
    src[5, :6, :3] = np.array([0, 255, 128, 127, 64, 191], dtype=np.uint8)[:, None]
    src[5, :6, 3] = 255
    opacity = 0.8
    doc = Document(w, h)
    doc.add_layer_from_image(back, name="backdrop")
    top = doc.add_layer_from_image(src, name="source")
    doc.set_opacity(top, opacity)
    doc.set_blend_mode(top, mode)
    out = doc.render()
    assert np.array_equal(out, doc.render_uncached())
    worst = 0
    for y in range(h):
        for x in range(w):
            b = tuple(back[y, x] / 255.0)
            s = list(src[y, x] / 255.0)
            s[3] *= opacity
            expected = to_u8(ref_pixel(mode, b, s))
            got = out[y, x].astype(int)
            if expected[3] == 0:
                assert got[3] == 0
                continue
            worst = max(worst, int(np.abs(got - np.array(expected)).max()))
    assert worst <= 1, f"{mode}: max channel error {worst}/255"


def test_mask_scales_source_alpha():
    rng = np.random.default_rng(3)
    back = random_rgba(rng, 8, 8)
    src = random_rgba(rng, 8, 8)
    mask = rng.integers(0, 256, size=(8, 8), dtype=np.uint8)
    doc = Document(8, 8)
    doc.add_layer_from_image(back)
    top = doc.add_layer_from_image(src)
    doc.set_selection(mask)
    doc.add_mask(top, from_selection=True)
    doc.select_none()
    doc.set_blend_mode(top, "screen")
    out = doc.render()
    for y in range(8):
        for x in range(8):
            s = list(src[y, x] / 255.0)
            s[3] *= mask[y, x] / 255.0
            exp = to_u8(ref_pixel("screen", tuple(back[y, x] / 255.0), s))
            if exp[3]:
                assert np.abs(out[y, x].astype(int) - exp).max() <= 1


def _group_doc(isolated: bool, group_opacity: float = 1.0):
    doc = Document(4, 1)
    base = np.array([[[200, 100, 50, 255], [10, 20, 30, 255], [255, 255, 255, 128], [0, 0, 0, 0]]], np.uint8)
    doc.add_layer_from_image(base)
    g = doc.add_group("g", isolated=isolated)
    lay = np.array([[[128, 128, 255, 255]] * 4], np.uint8)
    inner = doc.add_layer_from_image(lay, parent=g)
    doc.set_blend_mode(inner, "multiply")
    if group_opacity != 1.0:
        doc.set_opacity(g, group_opacity)
    return doc, base, lay


def test_isolated_group_hides_blend_mode_from_backdrop():
    doc, base, lay = _group_doc(isolated=True)
    out = doc.render()
    for x in range(4):
        # Inside an isolated group the multiply layer has nothing to multiply
        # with, so the group is the plain layer, then composited normally.
        inner = ref_pixel("multiply", (0, 0, 0, 0), tuple(lay[0, x] / 255.0))
        exp = to_u8(ref_pixel("normal", tuple(base[0, x] / 255.0), inner))
        assert np.abs(out[0, x].astype(int) - exp).max() <= 1


def test_pass_through_group_blends_with_backdrop():
    doc, base, lay = _group_doc(isolated=False)
    out = doc.render()
    for x in range(4):
        exp = to_u8(ref_pixel("multiply", tuple(base[0, x] / 255.0), tuple(lay[0, x] / 255.0)))
        assert np.abs(out[0, x].astype(int) - exp).max() <= 1


def test_pass_through_group_with_opacity_is_isolated_per_openraster():
    a, _, _ = _group_doc(isolated=False, group_opacity=0.5)
    b, _, _ = _group_doc(isolated=True, group_opacity=0.5)
    assert np.array_equal(a.render(), b.render())


def test_hidden_layer_and_zero_opacity_contribute_nothing():
    rng = np.random.default_rng(9)
    doc = Document(8, 8)
    doc.add_layer_from_image(random_rgba(rng, 8, 8))
    before = doc.render().copy()
    top = doc.add_layer_from_image(random_rgba(rng, 8, 8))
    doc.set_visible(top, False)
    assert np.array_equal(doc.render(), before)
    doc.set_visible(top, True)
    doc.set_opacity(top, 0.0)
    assert np.array_equal(doc.render(), before)


def test_dst_in_clears_backdrop_outside_the_layer():
    doc = Document(130, 10)
    doc.add_layer_from_image(np.full((10, 130, 4), 200, np.uint8))
    small = doc.add_layer_from_image(np.full((4, 4, 4), 255, np.uint8), x=2, y=2)
    doc.render()  # warm the cache, then change the op: the whole canvas must update
    doc.set_blend_mode(small, "dst-in")
    out = doc.render()
    assert out[..., 3].sum() == 16 * 200
    assert out[0, 129, 3] == 0
    assert np.array_equal(out, doc.render_uncached())


def test_render_rect_outside_canvas_is_transparent():
    doc = Document(10, 10)
    doc.add_layer_from_image(np.full((10, 10, 4), 255, np.uint8))
    out = doc.render(Rect(-5, -5, 10, 10))
    assert out[:5].max() == 0 and out[:, :5].max() == 0
    assert (out[5:, 5:] == 255).all()
    pm = doc.render(Rect(0, 0, 2, 2), premultiplied=True)
    assert (pm == 255).all()
