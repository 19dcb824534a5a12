"""Procedural landscape scenes, deterministic by seed (NumPy + OpenCV only).

`render_scene(attrs, width, height, seed)` draws one scene and returns `(rgb uint8 (H, W, 3), truth)`,
where truth holds the attributes, the horizon row and boolean masks of every drawn part. Flat
colour codes per attribute keep the scenes easy for a tiny VAE and make the evaluation rules in
`training.house.rules` transparent: a rule is a colour test at a known place.

Attribute groups (value "none" means absent):
time (day, dawn, sunset, night), sky (clear, clouds, stars, sun, moon), terrain (mountains, hills,
dunes, snowy), water (none, lake, sea, river), vegetation (none, pines, palms, forest),
object (none, house, boat, tower), colour (red, blue, yellow, white, black; the object's colour).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

GROUPS: dict[str, tuple[str, ...]] = {
    "time": ("day", "dawn", "sunset", "night"),
    "sky": ("clear", "clouds", "stars", "sun", "moon"),
    "terrain": ("mountains", "hills", "dunes", "snowy"),
    "water": ("none", "lake", "sea", "river"),
    "vegetation": ("none", "pines", "palms", "forest"),
    "object": ("none", "house", "boat", "tower"),
    "colour": ("red", "blue", "yellow", "white", "black"),
}

# Sky gradient (top, bottom at the horizon) per time of day.
SKY = {
    "day": ((60, 120, 215), (165, 205, 245)),
    "dawn": ((85, 80, 150), (245, 175, 185)),
    "sunset": ((110, 45, 85), (250, 135, 45)),
    "night": ((5, 8, 28), (25, 32, 70)),
}
# Multiplier for lit (non-emissive) surfaces per time of day.
LIGHT = {"day": (1.0, 1.0, 1.0), "dawn": (0.85, 0.78, 0.85), "sunset": (0.9, 0.7, 0.6), "night": (0.28, 0.3, 0.42)}
# Terrain silhouette colour above the horizon, and ground colour below it.
TERRAIN = {
    "mountains": ((110, 95, 115), (105, 90, 70)),
    "hills": ((70, 140, 60), (95, 165, 70)),
    "dunes": ((215, 175, 105), (230, 200, 135)),
    "snowy": ((125, 125, 140), (235, 238, 245)),
}
SNOW_CAP = (248, 248, 252)
CLOUD = (245, 245, 248)  # × 0.55 at night: see cloud_colour
WATER = (35, 85, 160)
COLOURS = {"red": (205, 35, 35), "blue": (35, 65, 210), "yellow": (235, 205, 30), "white": (245, 245, 245),
           "black": (25, 25, 25)}
SUN = {"day": (255, 248, 200), "dawn": (255, 225, 185), "sunset": (255, 215, 120)}
MOON = (235, 235, 215)
STAR = (235, 235, 255)
PINE = (25, 80, 40)
PALM_LEAF = (50, 160, 60)
TRUNK = (110, 70, 35)
FOREST = (30, 95, 45)


def cloud_colour(time: str) -> np.ndarray:
    """Clouds are emissive-white by day and dimmed at night (not lit like surfaces)."""
    return np.asarray(CLOUD, np.float32) * (0.55 if time == "night" else 1.0)


def water_colour(time: str) -> np.ndarray:
    """Water reflects the sky's colour at the horizon, and is darkened at night."""
    return (0.7 * np.asarray(WATER) + 0.3 * np.asarray(SKY[time][1], np.float32)) * (0.45 if time == "night" else 1.0)


@dataclass
class SceneTruth:
    attrs: dict[str, str]
    horizon: int  # first row below the sky/terrain line (the water/ground line)
    masks: dict[str, np.ndarray] = field(default_factory=dict)  # bool (H, W)
    object_box: tuple[int, int, int, int] | None = None  # x0, y0, x1, y1


def valid(attrs: dict[str, str]) -> bool:
    """Physical constraints between groups."""
    if attrs["sky"] in ("stars", "moon") and attrs["time"] != "night":
        return False
    if attrs["sky"] == "sun" and attrs["time"] == "night":
        return False
    if attrs["object"] == "boat" and attrs["water"] == "none":
        return False
    if attrs["water"] == "sea" and attrs["vegetation"] == "forest":
        return False
    return True


def sample_attributes(rng: np.random.Generator) -> dict[str, str]:
    while True:
        attrs = {g: str(rng.choice(v)) for g, v in GROUPS.items()}
        if valid(attrs):
            return attrs


def _lit(colour, time: str, rng: np.random.Generator | None = None, jitter: float = 0.0) -> tuple[int, ...]:
    c = np.asarray(colour, np.float32) * np.asarray(LIGHT[time], np.float32)
    if rng is not None and jitter:
        c = c * (1.0 + rng.uniform(-jitter, jitter))
    return tuple(int(v) for v in np.clip(c, 0, 255))


def _fill_poly(img: np.ndarray, mask: np.ndarray, pts: np.ndarray, colour) -> None:
    pts = np.round(pts).astype(np.int32).reshape(-1, 1, 2)
    cv2.fillPoly(img, [pts], colour)
    cv2.fillPoly(mask.view(np.uint8), [pts], 1)


def render_scene(attrs: dict[str, str], width: int = 128, height: int = 128, seed: int = 0,
                 horizon: int | None = None) -> tuple[np.ndarray, SceneTruth]:
    rng = np.random.default_rng(seed)
    W, H = width, height
    t = attrs["time"]
    hz = int(horizon) if horizon is not None else int(rng.uniform(0.4, 0.66) * H)
    img = np.zeros((H, W, 3), np.uint8)
    masks = {k: np.zeros((H, W), bool) for k in ("sky", "sky_feature", "terrain", "ground", "water",
                                                  "vegetation", "object")}
    # Sky: vertical gradient down to the horizon.
    top, bottom = (np.asarray(c, np.float32) for c in SKY[t])
    a = np.clip(np.arange(H, dtype=np.float32) / max(hz, 1), 0, 1)[:, None]
    img[:] = np.round(top * (1 - a) + bottom * a).astype(np.uint8)[:, None, :]
    masks["sky"][:hz] = True
    scale = H / 128.0
    # Sky features, drawn behind the terrain.
    feat = np.zeros((H, W), np.uint8)
    sky = attrs["sky"]
    if sky in ("sun", "moon"):
        r = int(rng.uniform(7, 10) * scale)
        cx = int(rng.uniform(0.12, 0.88) * W)
        cy = int(rng.uniform(0.12 * H, max(0.12 * H + 1, hz - 0.22 * H)))
        colour = SUN[t] if sky == "sun" else MOON
        cv2.circle(img, (cx, cy), r, colour, -1, lineType=cv2.LINE_AA)
        cv2.circle(feat, (cx, cy), r, 1, -1)
    elif sky == "stars":
        for _ in range(int(rng.integers(18, 30) * W / 128)):
            x, y = int(rng.integers(0, W - 2)), int(rng.integers(0, max(2, hz - 0.25 * H)))
            img[y:y + 2, x:x + 2] = STAR
            feat[y:y + 2, x:x + 2] = 1
    elif sky == "clouds":
        cloud = cloud_colour(t).astype(int).tolist()
        for _ in range(int(rng.integers(2, 5) * W / 128)):
            cx, cy = int(rng.uniform(0, W)), int(rng.uniform(0.08 * H, max(0.1 * H, hz - 0.25 * H)))
            for _ in range(3):
                ax, ay = int(rng.uniform(9, 16) * scale), int(rng.uniform(4, 7) * scale)
                ox = int(rng.uniform(-8, 8) * scale)
                cv2.ellipse(img, (cx + ox, cy), (ax, ay), 0, 0, 360, cloud, -1, lineType=cv2.LINE_AA)
                cv2.ellipse(feat, (cx + ox, cy), (ax, ay), 0, 0, 360, 1, -1)
    masks["sky_feature"] = feat.astype(bool)
    # Terrain silhouette above the horizon.
    terrain = attrs["terrain"]
    xs = np.arange(W + 1, dtype=np.float32)
    if terrain in ("mountains", "snowy"):
        prof = np.zeros(W + 1, np.float32)
        for _ in range(int(rng.integers(3, 6) * W / 128)):
            px, ph, pw = rng.uniform(-10, W + 10), rng.uniform(0.14, 0.28) * H, rng.uniform(18, 34) * scale
            prof = np.maximum(prof, ph * np.clip(1 - np.abs(xs - px) / pw, 0, 1))
        prof = np.maximum(prof, 0.04 * H)
    elif terrain == "hills":
        p1, p2 = rng.uniform(0, 2 * np.pi, 2)
        prof = 0.07 * H + 0.035 * H * np.sin(xs / W * 2 * np.pi * 1.3 + p1) + 0.02 * H * np.sin(xs / W * 2 * np.pi * 2.7 + p2)
    else:  # dunes: smooth, asymmetric, low
        p1 = rng.uniform(0, 2 * np.pi)
        s = np.sin(xs / W * 2 * np.pi * 2.2 + p1)
        prof = 0.05 * H + 0.025 * H * (s + 0.35 * s ** 2)
    sil_col, ground_col = TERRAIN[terrain]
    pts = np.concatenate([np.stack([xs, hz - prof], 1), [[W, hz], [0, hz]]])
    _fill_poly(img, masks["terrain"], pts, _lit(sil_col, t))
    if terrain == "snowy":
        cap = np.zeros((H, W), np.uint8)
        tpts = np.concatenate([np.stack([xs, hz - prof], 1), [[W, hz], [0, hz]]])
        cv2.fillPoly(cap, [np.round(tpts).astype(np.int32)], 1)
        rows = np.arange(H)[:, None]
        limit = (hz - prof[:W] * 0.55)[None, :]
        capmask = (cap > 0) & (rows < limit)
        img[capmask] = _lit(SNOW_CAP, t)
    masks["sky"] &= ~masks["terrain"]
    # Ground below the horizon.
    img[hz:] = _lit(ground_col, t)
    masks["ground"][hz:] = True
    # Water.
    water = attrs["water"]
    wmask = np.zeros((H, W), np.uint8)
    water_col = tuple(int(v) for v in water_colour(t))
    if water == "sea":
        shore = int(hz + rng.uniform(0.45, 0.75) * (H - hz))
        wmask[hz:shore] = 1
    elif water == "lake":
        cx, cy = int(rng.uniform(0.3, 0.7) * W), int(hz + rng.uniform(0.12, 0.2) * H)
        ax, ay = int(rng.uniform(0.2, 0.32) * W), int(max(4, min(cy - hz - 2, 0.16 * H)))
        cv2.ellipse(wmask, (cx, cy), (ax, ay), 0, 0, 360, 1, -1)
    elif water == "river":
        ys = np.linspace(hz, H, 12)
        x0, amp, ph = rng.uniform(0.35, 0.65) * W, rng.uniform(0.05, 0.12) * W, rng.uniform(0, 6.28)
        centre = x0 + amp * np.sin((ys - hz) / max(H - hz, 1) * 4.0 + ph)
        half = 0.02 * W + (ys - hz) / max(H - hz, 1) * 0.1 * W
        pts = np.concatenate([np.stack([centre - half, ys], 1), np.stack([centre + half, ys], 1)[::-1]])
        cv2.fillPoly(wmask, [np.round(pts).astype(np.int32)], 1)
    if water != "none":
        img[wmask > 0] = water_col
        masks["water"] = wmask > 0
    # Vegetation, on the ground (not on water).
    veg = attrs["vegetation"]
    vmask = np.zeros((H, W), np.uint8)
    if veg == "forest":
        for x in range(-4, W + 8, int(6 * scale) or 1):
            r = int(rng.uniform(5, 8) * scale)
            cy = hz - int(rng.uniform(0, 3) * scale)
            cv2.circle(img, (x, cy), r, _lit(FOREST, t, rng, 0.1), -1, lineType=cv2.LINE_AA)
            cv2.circle(vmask, (x, cy), r, 1, -1)
    elif veg in ("pines", "palms"):
        count = int(rng.integers(3, 6) * W / 128)
        for _ in range(count):
            for _try in range(10):
                x = int(rng.uniform(0.04, 0.96) * W)
                base = int(hz + rng.uniform(0.05, 0.9) * (H - hz))
                if base >= H or not masks["water"][min(base, H - 1), x]:
                    break
            h = int(rng.uniform(16, 26) * scale * (0.7 + 0.3 * (base - hz) / max(H - hz, 1)))
            if veg == "pines":
                w = int(h * 0.32)
                cv2.rectangle(img, (x - 1, base - 3), (x + 1, base), _lit(TRUNK, t), -1)
                pts = np.array([[x - w, base - 2], [x + w, base - 2], [x, base - h]], np.int32)
                cv2.fillPoly(img, [pts], _lit(PINE, t, rng, 0.1), lineType=cv2.LINE_AA)
                cv2.fillPoly(vmask, [pts], 1)
            else:
                lean = int(rng.uniform(-4, 4) * scale)
                cv2.line(img, (x, base), (x + lean, base - h), _lit(TRUNK, t), max(2, int(2 * scale)))
                cv2.line(vmask, (x, base), (x + lean, base - h), 1, max(2, int(2 * scale)))
                top = (x + lean, base - h)
                for ang in np.linspace(-2.6, -0.5, 4).tolist() + [0.3, 2.8]:
                    end = (int(top[0] + np.cos(ang) * 9 * scale), int(top[1] - np.sin(-ang) * 4 * scale + 3))
                    cv2.line(img, top, end, _lit(PALM_LEAF, t), max(2, int(2 * scale)))
                    cv2.line(vmask, top, end, 1, max(2, int(2 * scale)))
    masks["vegetation"] = vmask > 0
    # Object, in the attribute colour.
    obj = attrs["object"]
    colour = _lit(COLOURS[attrs["colour"]], t)
    omask = np.zeros((H, W), np.uint8)
    box = None
    s = scale
    if obj == "boat":
        ys, xs_w = np.nonzero(masks["water"])
        if len(ys):
            k = int(rng.integers(len(ys)))
            cx, cy = int(xs_w[k]), int(ys[k])
            cx = int(np.clip(cx, 12 * s, W - 12 * s))
            hull = np.array([[cx - 11 * s, cy - 4 * s], [cx + 11 * s, cy - 4 * s], [cx + 7 * s, cy + 1 * s], [cx - 7 * s, cy + 1 * s]])
            sail = np.array([[cx, cy - 5 * s], [cx, cy - 20 * s], [cx + 9 * s, cy - 5 * s]])
            _fill_poly(img, masks["object"], hull, colour)
            _fill_poly(img, masks["object"], sail, _lit((235, 230, 220), t))
            box = (int(cx - 11 * s), int(cy - 20 * s), int(cx + 11 * s), int(cy + 1 * s))
    elif obj in ("house", "tower"):
        for _try in range(20):
            cx = int(rng.uniform(0.12, 0.88) * W)
            base = int(hz + rng.uniform(0.08, 0.6) * (H - hz))
            if base < H and not masks["water"][base, cx]:
                break
        if obj == "house":
            w, h = int(rng.uniform(11, 15) * s), int(rng.uniform(8, 11) * s)
            body = np.array([[cx - w, base - h], [cx + w, base - h], [cx + w, base], [cx - w, base]])
            roof = np.array([[cx - w - 2 * s, base - h], [cx + w + 2 * s, base - h], [cx, base - h - 9 * s]])
            _fill_poly(img, masks["object"], body, colour)
            _fill_poly(img, masks["object"], roof, _lit((120, 45, 35), t))
            cv2.rectangle(img, (cx - 2, base - int(6 * s)), (cx + 2, base), _lit((60, 40, 30), t), -1)
            box = (int(cx - w - 2 * s), int(base - h - 9 * s), int(cx + w + 2 * s), base)
        else:
            w, h = int(rng.uniform(4, 6) * s), int(rng.uniform(30, 42) * s)
            body = np.array([[cx - w, base - h], [cx + w, base - h], [cx + w, base], [cx - w, base]])
            top = np.array([[cx - w - 2 * s, base - h], [cx + w + 2 * s, base - h], [cx, base - h - 8 * s]])
            _fill_poly(img, masks["object"], body, colour)
            _fill_poly(img, masks["object"], top, _lit((70, 60, 70), t))
            box = (int(cx - w - 2 * s), int(base - h - 8 * s), int(cx + w + 2 * s), base)
    for k in ("sky", "sky_feature", "terrain", "ground", "water", "vegetation"):
        masks[k] &= ~masks["object"]
    for k in ("sky", "sky_feature", "terrain", "ground", "water"):
        masks[k] &= ~masks["vegetation"]
    return img, SceneTruth(dict(attrs), hz, masks, box)


def random_scene(seed: int, width: int = 128, height: int = 128,
                 accept=None) -> tuple[np.ndarray, SceneTruth]:
    """Sample attributes (rejecting those `accept` refuses) and render, all from one seed."""
    rng = np.random.default_rng([seed, 7])
    while True:
        attrs = sample_attributes(rng)
        if accept is None or accept(attrs):
            return render_scene(attrs, width, height, seed)
