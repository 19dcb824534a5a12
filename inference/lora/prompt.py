"""A1111's extra-network prompt syntax: `<lora:NAME:WEIGHT>` and friends (torch-free).

`extract_loras` takes the tags out of a prompt; `resolve_loras` turns their names into LoraSpecs
against a `ModelLibrary`. A1111 reads `<lora:NAME:TE:UNET>` (the first weight is the text-encoder
weight and the default for the UNet; the second, when present, is the UNet weight) and named
`te=` / `unet=` arguments; the LyCORIS extension's `<lyco:…>` takes the same positions. We keep
its order so prompts copied from A1111 infotexts mean the same thing here.
"""
from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..errors import InvalidRequestError
from ..requests import MAX_LORA_WEIGHT, LoraSpec

if TYPE_CHECKING:  # the library is only needed by resolve_loras' caller
    from ..library import ModelLibrary

LoraTag = tuple[str, float, "float | None"]  # (name, unet weight, text weight or None = same as unet)

# `[^<>]*` stops at the next bracket, so each '<' is scanned at most up to the next '<' or '>':
# linear in the prompt length however the brackets nest. A preceding backslash escapes the tag.
_TAG = re.compile(r"(?<!\\)<(lora|lyco):([^<>]*)>")
MAX_NAME = 255  # a file stem; also bounds difflib's quadratic close-match search
_WEIGHT_CHARS = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _weight(tag: str, text: str) -> float:
    text = text.strip()
    # A plain decimal only: float() would also take 'nan', 'inf' and '1_0'.
    if len(text) > 32 or not _WEIGHT_CHARS.fullmatch(text):
        raise InvalidRequestError(f"prompt tag <{tag[:60]}>: weight {text[:32]!r} is not a number")
    value = float(text)
    if not math.isfinite(value) or abs(value) > MAX_LORA_WEIGHT:
        raise InvalidRequestError(f"prompt tag <{tag[:60]}>: weight {text} is outside "
                                  f"-{MAX_LORA_WEIGHT:g}…{MAX_LORA_WEIGHT:g}")
    return value


def _parse(kind: str, body: str) -> LoraTag | None:
    tag = f"{kind}:{body}"
    parts = body.split(":")
    name = parts[0].strip()
    if not name:
        return None  # `<lora:>` / `<lora::1>`: not a tag, left as text
    if len(name) > MAX_NAME:
        raise InvalidRequestError(f"prompt tag <{tag[:60]}…>: name is longer than {MAX_NAME} characters")
    positional, named = [], {}
    for part in parts[1:]:
        key, eq, value = part.partition("=")
        if eq:
            named[key.strip()] = value
        else:
            positional.append(part)
    te = _weight(tag, positional[0]) if positional else 1.0
    unet = _weight(tag, positional[1]) if len(positional) > 1 else te
    # Later positions (A1111's dyn dim) and unknown named arguments are ignored, as A1111 does.
    if "te" in named:
        te = _weight(tag, named["te"])
    if "unet" in named:
        unet = _weight(tag, named["unet"])
    return name, unet, (None if te == unet else te)


def _tidy(text: str) -> str:
    """Join what a removed tag leaves: one space for a run of spaces, no empty comma items."""
    text = re.sub(r"[ \t]+", " ", text)
    # Each pattern starts at a comma or a single space and its classes are disjoint: linear time.
    text = re.sub(r",(?:\s*,)+", ",", text)  # "a, , b" -> "a, b"
    text = re.sub(r" ([,\n])", r"\1", text)
    return text.strip(" \t,")


def extract_loras(prompt: str) -> tuple[str, list[LoraTag]]:
    """The prompt without its `<lora:…>`/`<lyco:…>` tags, and the tags in order as
    (name, unet weight, text weight or None). Escaped (`\\<lora:…>`) and malformed tags stay text;
    a bad weight raises InvalidRequestError naming the tag."""
    if not isinstance(prompt, str):
        raise InvalidRequestError("prompt must be text")
    tags: list[LoraTag] = []
    pieces: list[str] = []
    last = 0
    for match in _TAG.finditer(prompt):
        parsed = _parse(match.group(1), match.group(2))
        if parsed is None:
            continue
        tags.append(parsed)
        pieces.append(prompt[last:match.start()])
        last = match.end()
    if not tags:
        return prompt, []
    pieces.append(prompt[last:])
    return _tidy("".join(pieces)), tags


def _hint(name: str, names: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(set(names)), n=3, cutoff=0.5)
    return f" (close: {', '.join(close)})" if close else ""


def resolve_loras(tags: Iterable[LoraTag], library: ModelLibrary) -> tuple[LoraSpec, ...]:
    """LoraSpecs for prompt tags: a name matches a LoRA's file stem exactly, then ignoring case,
    then its A1111 short hash (AutoV2, 10 hex digits, or the 12-digit LoRA hash A1111 writes in
    infotexts). Unknown or ambiguous names raise one-line InvalidRequestError."""
    loras = [entry for entry in library.entries if entry.kind == "lora"]
    specs = []
    for name, unet, text in tags:
        found = [e for e in loras if e.name == name] or [e for e in loras if e.name.lower() == name.lower()]
        if not found and re.fullmatch(r"[0-9a-fA-F]{10}|[0-9a-fA-F]{12}", name):
            # Hashing reads whole files, so only names that look like a hash pay for it.
            key = name.lower()
            found = [e for e in loras if library.short_hash(e) == key or library.lora_hash(e) == key]
        if not found:
            raise InvalidRequestError(f"LoRA {name!r}: not in the library{_hint(name, (e.name for e in loras))}")
        if len(found) > 1:
            where = ", ".join(str(e.path) for e in found[:3])
            raise InvalidRequestError(f"LoRA {name!r} is ambiguous: {len(found)} files match ({where})")
        specs.append(LoraSpec(str(found[0].path), unet, text))
    return tuple(specs)
