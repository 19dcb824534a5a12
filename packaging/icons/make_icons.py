#!/usr/bin/env python3
"""Draw the CanvasAI application icon: ``canvasai.svg`` plus PNGs (16–512 px),
``canvasai.ico`` (Windows) and ``canvasai.icns`` (macOS), all from the same
geometry below. Original artwork, Apache-2.0 like the code.

    python packaging/icons/make_icons.py        # rewrites the files next to this script

The motif: a sheet of canvas on a blue-violet tile, one coral brush stroke
across it and a yellow four-point spark (the AI) at its corner. The PNGs are
rendered with Pillow at 4× and downsampled; at 16/24 px the stroke is thicker
and the spark simpler so they stay legible.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
UNIT = 256.0  # the geometry is written on a 256 × 256 grid

TILE = (16, 16, 240, 240, 56)  # x0, y0, x1, y1, corner radius
TILE_TOP, TILE_BOTTOM = (0x2F, 0x4B, 0x8C), (0x6A, 0x3F, 0xA8)
SHEET = (50, 70, 196, 206, 14)
SHEET_FILL, SHEET_SHADOW = (0xF6, 0xF2, 0xE9), (0x1B, 0x1E, 0x3A)
STROKE = ((72, 176), (104, 108), (150, 196), (178, 118))  # cubic Bézier
STROKE_WIDTH, STROKE_FILL = 24, (0xF2, 0x6B, 0x4B)
SPARK_CENTRE, SPARK_OUTER, SPARK_INNER, SPARK_FILL = (190, 66), 40, 9, (0xFF, 0xD6, 0x4A)


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#%02x%02x%02x" % rgb


def spark_points(cx: float, cy: float, outer: float, inner: float) -> list[tuple[float, float]]:
    pts = []
    for i in range(8):
        r = outer if i % 2 == 0 else inner
        a = -math.pi / 2 + i * math.pi / 4
        pts.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return pts


def bezier(p0, p1, p2, p3, n: int = 200) -> list[tuple[float, float]]:
    out = []
    for i in range(n + 1):
        t = i / n
        u = 1 - t
        out.append((u ** 3 * p0[0] + 3 * u * u * t * p1[0] + 3 * u * t * t * p2[0] + t ** 3 * p3[0],
                    u ** 3 * p0[1] + 3 * u * u * t * p1[1] + 3 * u * t * t * p2[1] + t ** 3 * p3[1]))
    return out


def svg() -> str:
    x0, y0, x1, y1, r = TILE
    sx0, sy0, sx1, sy1, sr = SHEET
    (a, b, c, d) = STROKE
    spark = " ".join(f"{x:.1f},{y:.1f}" for x, y in spark_points(*SPARK_CENTRE, SPARK_OUTER, SPARK_INNER))
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- CanvasAI application icon. Drawn by packaging/icons/make_icons.py; Apache-2.0. -->
<svg xmlns="http://www.w3.org/2000/svg" width="256" height="256" viewBox="0 0 256 256">
  <defs>
    <linearGradient id="tile" x1="0" y1="0" x2="0.35" y2="1">
      <stop offset="0" stop-color="{_hex(TILE_TOP)}"/>
      <stop offset="1" stop-color="{_hex(TILE_BOTTOM)}"/>
    </linearGradient>
  </defs>
  <rect x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}" rx="{r}" fill="url(#tile)"/>
  <rect x="{sx0 + 4}" y="{sy0 + 6}" width="{sx1 - sx0}" height="{sy1 - sy0}" rx="{sr}" fill="{_hex(SHEET_SHADOW)}" opacity="0.35"/>
  <rect x="{sx0}" y="{sy0}" width="{sx1 - sx0}" height="{sy1 - sy0}" rx="{sr}" fill="{_hex(SHEET_FILL)}"/>
  <path d="M{a[0]},{a[1]} C{b[0]},{b[1]} {c[0]},{c[1]} {d[0]},{d[1]}" fill="none" stroke="{_hex(STROKE_FILL)}"
        stroke-width="{STROKE_WIDTH}" stroke-linecap="round"/>
  <polygon points="{spark}" fill="{_hex(SPARK_FILL)}" stroke="{_hex(TILE_TOP)}" stroke-width="4" stroke-linejoin="round"/>
</svg>
"""


def _mask(size: int, draw_fn) -> Image.Image:
    m = Image.new("L", (size, size), 0)
    draw_fn(ImageDraw.Draw(m))
    return m


def render(size: int) -> Image.Image:
    ss = 4  # supersampling
    big = size * ss
    k = big / UNIT
    small = size <= 24
    img = Image.new("RGBA", (big, big), (0, 0, 0, 0))

    x0, y0, x1, y1, r = TILE
    t = np.linspace(0.0, 1.0, big)[:, None] * np.ones((1, big))
    t = np.clip(t * 0.9 + np.linspace(0.0, 0.35, big)[None, :] * 0.3, 0, 1)
    grad = (np.array(TILE_TOP)[None, None, :] * (1 - t[..., None]) + np.array(TILE_BOTTOM)[None, None, :] * t[..., None])
    tile = Image.fromarray(grad.astype(np.uint8), "RGB")
    tile_mask = _mask(big, lambda d: d.rounded_rectangle([x0 * k, y0 * k, x1 * k, y1 * k], radius=r * k, fill=255))
    img.paste(tile, (0, 0), tile_mask)

    sx0, sy0, sx1, sy1, sr = SHEET
    if small:  # a bigger sheet and no shadow: at 16 px every pixel counts
        sx0, sy0, sx1, sy1 = 44, 60, 204, 212
    draw = ImageDraw.Draw(img)
    if not small:
        shadow = Image.new("RGBA", (big, big), SHEET_SHADOW + (0,))
        shadow.putalpha(_mask(big, lambda d: d.rounded_rectangle(
            [(sx0 + 4) * k, (sy0 + 6) * k, (sx1 + 4) * k, (sy1 + 6) * k], radius=sr * k, fill=90)))
        img = Image.alpha_composite(img, shadow)
        draw = ImageDraw.Draw(img)
    draw.rounded_rectangle([sx0 * k, sy0 * k, sx1 * k, sy1 * k], radius=sr * k, fill=SHEET_FILL + (255,))

    width = (STROKE_WIDTH * 1.5 if small else STROKE_WIDTH) * k
    for x, y in bezier(*STROKE):
        draw.ellipse([x * k - width / 2, y * k - width / 2, x * k + width / 2, y * k + width / 2],
                     fill=STROKE_FILL + (255,))

    cx, cy = SPARK_CENTRE
    outer, inner = (SPARK_OUTER * 1.1, SPARK_INNER * 1.8) if small else (SPARK_OUTER, SPARK_INNER)
    pts = [(x * k, y * k) for x, y in spark_points(cx, cy, outer, inner)]
    if not small:
        edge = [(x * k, y * k) for x, y in spark_points(cx, cy, outer + 4, inner + 3)]
        draw.polygon(edge, fill=TILE_TOP + (255,))
    draw.polygon(pts, fill=SPARK_FILL + (255,))
    return img.resize((size, size), Image.Resampling.LANCZOS)


def main(out_dir: Path = HERE) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "canvasai.svg").write_text(svg(), encoding="utf-8")
    images = {size: render(size) for size in SIZES}
    for size, im in images.items():
        im.save(out_dir / f"canvasai-{size}.png", optimize=True)
    images[256].save(out_dir / "canvasai.ico", sizes=[(s, s) for s in (16, 24, 32, 48, 64, 128, 256)])
    images[512].save(out_dir / "canvasai.icns")
    print(f"wrote canvasai.svg, {len(SIZES)} PNGs, .ico and .icns to {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE))
