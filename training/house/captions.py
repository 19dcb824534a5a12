"""Natural-language captions for scene attributes, with synonyms and varied templates, and the
held-out attribute combinations that training never sees (evaluation prompts)."""
from __future__ import annotations

import zlib

import numpy as np

from .scene import GROUPS, sample_attributes

TIME = {"day": ["day", "daytime", "midday", "a bright day"], "dawn": ["dawn", "sunrise", "early morning"],
        "sunset": ["sunset", "dusk", "evening"], "night": ["night", "nighttime", "midnight"]}
SKY = {"clear": ["a clear sky", "a cloudless sky"], "clouds": ["clouds", "a cloudy sky", "white clouds"],
       "stars": ["stars", "a starry sky"], "sun": ["the sun", "a bright sun"], "moon": ["the moon", "a full moon"]}
TERRAIN = {"mountains": ["mountains", "rocky mountains"], "hills": ["green hills", "rolling hills"],
           "dunes": ["sand dunes", "desert dunes"], "snowy": ["snowy peaks", "snow-capped mountains"]}
WATER = {"lake": ["a lake", "a calm lake", "a pond"], "sea": ["the sea", "the ocean"],
         "river": ["a river", "a winding river", "a stream"]}
VEG = {"pines": ["pine trees", "pines", "fir trees"], "palms": ["palm trees", "palms"],
       "forest": ["a forest", "dense woods"]}
OBJECT = {"house": ["house", "cottage", "cabin"], "boat": ["boat", "sailboat"], "tower": ["tower", "watchtower"]}
COLOUR = {c: [c] for c in GROUPS["colour"]}

TEMPLATES = [
    "a landscape at {time} with {parts}",
    "{parts} at {time}",
    "a {time} scene: {parts}",
    "painting of {parts}, {time}",
    "{time}, {parts}",
]


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def caption(attrs: dict[str, str], rng: np.random.Generator | None = None) -> str:
    """A caption naming every attribute; `rng=None` gives the canonical (first-synonym) wording."""
    r = rng if rng is not None else None

    def pick(table, key):
        return table[key][0] if r is None else _pick(r, table[key])

    time = pick(TIME, attrs["time"])
    if time.startswith("a ") and r is not None and int(r.integers(2)):
        time = time[2:]
    parts = [pick(TERRAIN, attrs["terrain"]), pick(SKY, attrs["sky"])]
    if attrs["water"] != "none":
        parts.append(pick(WATER, attrs["water"]))
    if attrs["vegetation"] != "none":
        parts.append(pick(VEG, attrs["vegetation"]))
    if attrs["object"] != "none":
        word = pick(OBJECT, attrs["object"])
        colour = attrs["colour"]
        parts.append(f"{_article(colour)} {colour} {word}")
    if r is not None:
        order = r.permutation(len(parts))
        parts = [parts[i] for i in order]
    text = ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]
    template = TEMPLATES[0] if r is None else _pick(r, TEMPLATES)
    return template.format(time=time, parts=text)


def vocabulary() -> set[str]:
    words: set[str] = set()
    for table in (TIME, SKY, TERRAIN, WATER, VEG, OBJECT, COLOUR):
        for options in table.values():
            for phrase in options:
                words.update(w for w in phrase.replace("-", " ").split() if w not in ("a", "an", "the"))
    return words


def is_held_out(attrs: dict[str, str]) -> bool:
    """About 1 in 8 combinations of (time, terrain, water, object) is reserved for evaluation."""
    key = "|".join(attrs[g] for g in ("time", "terrain", "water", "object"))
    return zlib.crc32(key.encode()) % 8 == 0


def training_attributes(attrs: dict[str, str]) -> bool:
    return not is_held_out(attrs)


def held_out_prompts(count: int, seed: int = 1234) -> list[tuple[dict[str, str], str]]:
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        attrs = sample_attributes(rng)
        if is_held_out(attrs):
            out.append((attrs, caption(attrs)))
    return out
