"""CLIP text normalisation, character-for-character what transformers 5's CLIPTokenizer does.

Its `tokenizers` normaliser is: NFC, every run of `\\s` -> one space, per-character lowercase.
Three details decide the ids and are easy to get wrong:

* `\\s` is Unicode White_Space. Python's `str.isspace` also accepts U+001C..U+001F; those are
  not whitespace for CLIP (they become byte tokens).
* Lowercasing is per character, so no Greek final-sigma rule ("ΟΔΟΣ" -> "οδοσ", not "οδος").
* `tokenizers`' NFC uses Unicode 9.0 data. Combining marks added to Unicode since then have
  canonical combining class 0 there: they are starters that nothing is reordered across, and
  they compose with nothing; likewise the one newer canonical composition (U+11935 U+11930 ->
  U+11938) is unknown to it. `_nfc` reproduces that by normalising the text in segments split
  at those characters. The table below was obtained by probing `tokenizers` 0.23 against
  Unicode 17 combining classes; code points a given Python does not know are harmless in it.
"""
from __future__ import annotations

import unicodedata

WHITESPACE = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)

# Marks with a nonzero combining class in current Unicode that `tokenizers`' NFC treats as
# class-0 starters (inclusive code point ranges).
_POST_UNICODE9_MARKS = (
    (0x07FD, 0x07FD), (0x0897, 0x089F), (0x08CA, 0x08D3), (0x09FE, 0x09FE), (0x0C3C, 0x0C3C),
    (0x0D3B, 0x0D3C), (0x0EBA, 0x0EBA), (0x1715, 0x1715), (0x1ABF, 0x1ADD), (0x1AE0, 0x1AEB),
    (0x1DF6, 0x1DFA), (0xA82C, 0xA82C), (0x10D24, 0x10D27), (0x10D69, 0x10D6D), (0x10EAB, 0x10EAC),
    (0x10EFA, 0x10EFB), (0x10EFD, 0x10EFF), (0x10F46, 0x10F50), (0x10F82, 0x10F85),
    (0x11070, 0x11070), (0x1133B, 0x1133B), (0x113CE, 0x113D0), (0x1145E, 0x1145E),
    (0x11839, 0x1183A), (0x1193D, 0x1193E), (0x11943, 0x11943), (0x119E0, 0x119E0),
    (0x11A34, 0x11A34), (0x11A47, 0x11A47), (0x11A99, 0x11A99), (0x11D42, 0x11D42),
    (0x11D44, 0x11D45), (0x11D97, 0x11D97), (0x11F41, 0x11F42), (0x1612F, 0x1612F),
    (0x16FF0, 0x16FF1), (0x1E08F, 0x1E08F), (0x1E130, 0x1E136), (0x1E2AE, 0x1E2AE),
    (0x1E2EC, 0x1E2EF), (0x1E4EC, 0x1E4EF), (0x1E5EE, 0x1E5EF), (0x1E6E3, 0x1E6E3),
    (0x1E6E6, 0x1E6E6), (0x1E6EE, 0x1E6EF), (0x1E6F5, 0x1E6F5),
)
# Second half of the only canonical composition newer than Unicode 9 that Python 3.11 knows.
_POST_UNICODE9_COMPOSING = ("\U00011930",)

_SEGMENT_BREAKS = frozenset(
    [chr(cp) for lo, hi in _POST_UNICODE9_MARKS for cp in range(lo, hi + 1)] + list(_POST_UNICODE9_COMPOSING)
)


def _nfc(text: str) -> str:
    """NFC as `tokenizers` computes it (Unicode 9.0 combining data, see module docstring)."""
    if _SEGMENT_BREAKS.isdisjoint(text):
        return unicodedata.normalize("NFC", text)
    out: list[str] = []
    start = 0
    for i, ch in enumerate(text):
        if ch in _SEGMENT_BREAKS:
            # A starter that composes with nothing: NFC on either side is independent of it.
            out.append(unicodedata.normalize("NFC", text[start:i]))
            out.append(ch)
            start = i + 1
    out.append(unicodedata.normalize("NFC", text[start:]))
    return "".join(out)


def normalize(text: str) -> str:
    """NFC, collapse whitespace runs to one space, lowercase one character at a time."""
    out: list[str] = []
    in_space = False
    for ch in _nfc(text):
        if ch in WHITESPACE:
            if not in_space:
                out.append(" ")
            in_space = True
            continue
        in_space = False
        # Per character on purpose: `str.lower()` on a whole string applies the Greek
        # final-sigma rule, which `tokenizers`' Lowercase normaliser does not.
        out.append(ch.lower())
    return "".join(out)
