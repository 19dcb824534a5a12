"""Blend modes and Porter-Duff operators of W3C Compositing and Blending
Level 1, vectorised over float32 arrays.

Colours are sRGB-encoded values in [0, 1] (no linearisation), as the spec
and OpenRaster prescribe. The backdrop is kept premultiplied (cheap
source-over); the source arrives straight (what layers store).
"""

from __future__ import annotations

from enum import Enum

import numpy as np

# Values this close to 0 or 1 count as exactly 0 or 1 in the case splits of
# color-dodge/burn: un-premultiplying a float backdrop can give 0.99999994
# for a white pixel, and the spec's "if Cb == 1" must still fire.
_EPS = 1e-5


class BlendMode(str, Enum):
    NORMAL = "normal"
    MULTIPLY = "multiply"
    SCREEN = "screen"
    OVERLAY = "overlay"
    DARKEN = "darken"
    LIGHTEN = "lighten"
    COLOR_DODGE = "color-dodge"
    COLOR_BURN = "color-burn"
    HARD_LIGHT = "hard-light"
    SOFT_LIGHT = "soft-light"
    DIFFERENCE = "difference"
    EXCLUSION = "exclusion"
    HUE = "hue"
    SATURATION = "saturation"
    COLOR = "color"
    LUMINOSITY = "luminosity"
    # Porter-Duff operators that OpenRaster also names (no blend function).
    PLUS = "plus"
    DST_IN = "dst-in"
    DST_OUT = "dst-out"
    SRC_ATOP = "src-atop"
    DST_ATOP = "dst-atop"

    @property
    def ora_name(self) -> str:
        return "svg:src-over" if self is BlendMode.NORMAL else "svg:" + self.value

    @property
    def is_local(self) -> bool:
        """False when a transparent source still changes the backdrop.

        dst-in and dst-atop clear the backdrop wherever the source is empty,
        so their effect reaches beyond the layer's pixels.
        """
        return self not in (BlendMode.DST_IN, BlendMode.DST_ATOP)


ORA_TO_MODE: dict[str, BlendMode] = {m.ora_name: m for m in BlendMode}

SEPARABLE = frozenset(
    {
        BlendMode.MULTIPLY,
        BlendMode.SCREEN,
        BlendMode.OVERLAY,
        BlendMode.DARKEN,
        BlendMode.LIGHTEN,
        BlendMode.COLOR_DODGE,
        BlendMode.COLOR_BURN,
        BlendMode.HARD_LIGHT,
        BlendMode.SOFT_LIGHT,
        BlendMode.DIFFERENCE,
        BlendMode.EXCLUSION,
    }
)
NON_SEPARABLE = frozenset({BlendMode.HUE, BlendMode.SATURATION, BlendMode.COLOR, BlendMode.LUMINOSITY})


# -- separable blend functions B(Cb, Cs) -----------------------------------
def _hard_light(cb: np.ndarray, cs: np.ndarray) -> np.ndarray:
    cs2 = 2.0 * cs
    multiply = cb * cs2
    s = cs2 - 1.0
    screen = cb + s - cb * s
    return np.where(cs <= 0.5, multiply, screen)


def _soft_light(cb: np.ndarray, cs: np.ndarray) -> np.ndarray:
    # Spec: cs <= 0.5: cb - (1 - 2cs) cb (1 - cb); else cb + (2cs - 1)(D(cb) - cb),
    # D(cb) = ((16cb - 12)cb + 4)cb for cb <= 0.25, sqrt(cb) otherwise.
    # Both branches share the factor (2cs - 1), which saves several passes.
    d = np.sqrt(cb)
    small = cb <= 0.25
    if small.any():
        d = np.where(small, ((16.0 * cb - 12.0) * cb + 4.0) * cb, d)
    term = np.where(cs <= 0.5, cb * (1.0 - cb), d - cb)
    term *= 2.0 * cs - 1.0
    term += cb
    return term


def _color_dodge(cb: np.ndarray, cs: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.minimum(1.0, cb / np.maximum(1.0 - cs, _EPS))
    out = np.where(cs >= 1.0 - _EPS, 1.0, q)
    return np.where(cb <= _EPS, 0.0, out).astype(np.float32)


def _color_burn(cb: np.ndarray, cs: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        q = 1.0 - np.minimum(1.0, (1.0 - cb) / np.maximum(cs, _EPS))
    out = np.where(cs <= _EPS, 0.0, q)
    return np.where(cb >= 1.0 - _EPS, 1.0, out).astype(np.float32)


def blend_separable(mode: BlendMode, cb: np.ndarray, cs: np.ndarray) -> np.ndarray:
    if mode is BlendMode.MULTIPLY:
        return cb * cs
    if mode is BlendMode.SCREEN:
        return cb + cs - cb * cs
    if mode is BlendMode.OVERLAY:
        return _hard_light(cs, cb)  # overlay is hard-light with the roles swapped
    if mode is BlendMode.DARKEN:
        return np.minimum(cb, cs)
    if mode is BlendMode.LIGHTEN:
        return np.maximum(cb, cs)
    if mode is BlendMode.COLOR_DODGE:
        return _color_dodge(cb, cs)
    if mode is BlendMode.COLOR_BURN:
        return _color_burn(cb, cs)
    if mode is BlendMode.HARD_LIGHT:
        return _hard_light(cb, cs)
    if mode is BlendMode.SOFT_LIGHT:
        return _soft_light(cb, cs)
    if mode is BlendMode.DIFFERENCE:
        return np.abs(cb - cs)
    if mode is BlendMode.EXCLUSION:
        return cb + cs - 2.0 * cb * cs
    raise ValueError(f"{mode} is not a separable blend mode")


# -- non-separable helpers (spec section 5.8) -------------------------------
# Colours here are planar: shape (3, h, w), channel first, so every channel
# operation runs over contiguous memory.


def _lum(c: np.ndarray) -> np.ndarray:
    return (0.3 * c[0] + 0.59 * c[1] + 0.11 * c[2])[None]


def _clip_color(c: np.ndarray) -> np.ndarray:
    lum = _lum(c)
    n = c.min(axis=0, keepdims=True)
    x = c.max(axis=0, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        low = lum + (c - lum) * lum / np.where(lum - n > 0, lum - n, 1.0)
        c = np.where(n < 0.0, low, c)
        high = lum + (c - lum) * (1.0 - lum) / np.where(x - lum > 0, x - lum, 1.0)
        c = np.where(x > 1.0, high, c)
    return c


def _set_lum(c: np.ndarray, lum: np.ndarray) -> np.ndarray:
    return _clip_color(c + (lum - _lum(c)))


def _sat(c: np.ndarray) -> np.ndarray:
    return c.max(axis=0, keepdims=True) - c.min(axis=0, keepdims=True)


def _set_sat(c: np.ndarray, s: np.ndarray) -> np.ndarray:
    # Equivalent to the spec's max/mid/min case analysis: the max channel maps
    # to s, the min to 0, the middle one linearly in between.
    cmin = c.min(axis=0, keepdims=True)
    rng = c.max(axis=0, keepdims=True) - cmin
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = (c - cmin) * s / np.where(rng > 0, rng, 1.0)
    return np.where(rng > 0, scaled, 0.0).astype(np.float32)


def blend_non_separable(mode: BlendMode, cb: np.ndarray, cs: np.ndarray) -> np.ndarray:
    if mode is BlendMode.HUE:
        return _set_lum(_set_sat(cs, _sat(cb)), _lum(cb))
    if mode is BlendMode.SATURATION:
        return _set_lum(_set_sat(cb, _sat(cs)), _lum(cb))
    if mode is BlendMode.COLOR:
        return _set_lum(cs, _lum(cb))
    if mode is BlendMode.LUMINOSITY:
        return _set_lum(cb, _lum(cs))
    raise ValueError(f"{mode} is not a non-separable blend mode")


# -- compositing -------------------------------------------------------------
# Buffers are planar float32: a premultiplied backdrop is (4, h, w) with
# alpha in plane 3; source colours are (3, h, w) straight, alpha (h, w).


def unpremultiply(dst: np.ndarray) -> np.ndarray:
    """Straight RGB (3, h, w) in [0, 1] of a premultiplied (4, h, w) buffer."""
    a = dst[3]
    out = np.zeros((3,) + a.shape, dtype=np.float32)
    np.divide(dst[:3], a, out=out, where=a > 0)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def composite(dst: np.ndarray, cs: np.ndarray, a_s: np.ndarray, mode: BlendMode) -> None:
    """Composite a straight source onto a premultiplied backdrop, in place.

    dst: (4, h, w) float32 premultiplied; cs: (3, h, w) straight colour;
    a_s: (h, w) source alpha with opacity and mask already applied.
    """
    rgb = dst[:3]
    if mode is BlendMode.NORMAL or mode in SEPARABLE or mode in NON_SEPARABLE:
        if mode is not BlendMode.NORMAL:
            cb = unpremultiply(dst)
            b = blend_separable(mode, cb, cs) if mode in SEPARABLE else blend_non_separable(mode, cb, cs)
            # Cs' = (1 - ab) Cs + ab B, then ordinary source-over with Cs'.
            cs = cs + dst[3] * (b - cs)
        # co = cs' as + cb (1 - as); ao = as + ab (1 - as)
        dst *= 1.0 - a_s
        rgb += cs * a_s
        dst[3] += a_s
        return
    if mode is BlendMode.PLUS:
        rgb += cs * a_s
        dst[3] += a_s
        np.minimum(dst, 1.0, out=dst)
        return
    if mode is BlendMode.DST_IN:
        dst *= a_s
        return
    if mode is BlendMode.DST_OUT:
        dst *= 1.0 - a_s
        return
    if mode is BlendMode.SRC_ATOP:
        rgb *= 1.0 - a_s
        rgb += cs * (a_s * dst[3])
        return
    if mode is BlendMode.DST_ATOP:
        rgb *= a_s
        rgb += cs * (a_s * (1.0 - dst[3]))
        dst[3] = a_s
        return
    raise ValueError(f"unknown blend mode {mode!r}")


def premultiplied_to_straight_u8(buf: np.ndarray) -> np.ndarray:
    """Convert a planar premultiplied float buffer to canonical straight RGBA uint8 (h, w, 4)."""
    h, w = buf.shape[1:]
    out = np.empty((h, w, 4), dtype=np.uint8)
    alpha = np.clip(buf[3], 0.0, 1.0)
    out[..., 3] = np.rint(alpha * 255.0)
    rgb = unpremultiply(buf)
    rgb *= 255.0
    np.rint(rgb, out=rgb)
    out[..., :3] = rgb.transpose(1, 2, 0)
    clear = out[..., 3] == 0
    if clear.any():
        out[clear] = 0
    return out


def straight_u8_to_planar(px: np.ndarray, opacity: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Straight RGBA uint8 (h, w, 4) -> planar colour (3, h, w) and alpha (h, w), floats in [0, 1]."""
    f = px.transpose(2, 0, 1).astype(np.float32)
    f *= np.float32(1.0 / 255.0)
    alpha = f[3]
    if opacity != 1.0:
        alpha *= np.float32(opacity)
    return f[:3], alpha
