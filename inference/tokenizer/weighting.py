"""A1111 ("AUTOMATIC1111 web UI") prompt-emphasis syntax.

    (word)        weight x 1.1          ((word))  x 1.21
    [word]        weight / 1.1          (word:1.3) weight x 1.3
    \\( \\) \\[ \\]   literal brackets       \\\\ a literal backslash; a lone backslash is dropped
    BREAK         (uppercase, a whole word) ends the current 75-token chunk

Unbalanced brackets behave as in A1111: a `(` or `[` never closed applies to the rest of the
prompt; a `)` or `]` with nothing open is literal text; `:1.3)` with no open `(` is literal.

`parse_prompt_weights` returns (text, weight) fragments with adjacent equal weights merged, and
`BREAK_MARKER` == ("BREAK", -1.0) where the prompt says BREAK. Fragments may have empty text (for
example around a BREAK); they produce no tokens.

Deliberate difference from A1111: brackets do not scale a BREAK marker. A1111 multiplies it too,
so "(BREAK)" there becomes the literal word "BREAK" with weight -1.1; here it still breaks.
"""
from __future__ import annotations

import re

from inference.errors import InvalidRequestError

BREAK_MARKER: tuple[str, float] = ("BREAK", -1.0)

ROUND_MULTIPLIER = 1.1
SQUARE_MULTIPLIER = 1 / 1.1

# One token of the emphasis grammar per match; the order of alternatives matters (escapes
# before brackets, the ":weight)" closer before a bare ")").
_TOKEN = re.compile(
    r"""
    \\\( | \\\) | \\\[ | \\\] | \\\\ | \\      # escapes, then a lone backslash
    | \( | \[                                  # openers
    | :\s*(?P<weight>[+-]?[.\d]+)\s*\)         # ":1.3)" closes a round bracket with a weight
    | \) | \]                                  # plain closers
    | [^\\()\[\]:]+                            # ordinary text
    | :                                        # a colon that is not a weight
    """,
    re.VERBOSE,
)

_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.DOTALL)


def is_break(fragment: tuple[str, float]) -> bool:
    """Whether a parsed fragment is the BREAK marker."""
    return fragment == BREAK_MARKER


def _parse_weight(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise InvalidRequestError(f"prompt weight {raw!r} is not a number") from None


def parse_prompt_weights(text: str) -> list[tuple[str, float]]:
    """Split an A1111-style prompt into (text, weight) fragments.

    >>> parse_prompt_weights("an (important) word")
    [('an ', 1.0), ('important', 1.1), (' word', 1.0)]
    """
    # Mutable [text, weight, is_break] entries so open brackets can rescale what follows them.
    res: list[list] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def scale_from(start: int, factor: float) -> None:
        for entry in res[start:]:
            if not entry[2]:
                entry[1] *= factor

    for m in _TOKEN.finditer(text):
        tok = m.group(0)
        weight = m.group("weight")
        if tok.startswith("\\"):
            # "\(" -> "(", "\\" -> "\", a lone "\" -> "" (dropped, as A1111 does).
            res.append([tok[1:], 1.0, False])
        elif tok == "(":
            round_open.append(len(res))
        elif tok == "[":
            square_open.append(len(res))
        elif weight is not None and round_open:
            scale_from(round_open.pop(), _parse_weight(weight))
        elif tok == ")" and round_open:
            scale_from(round_open.pop(), ROUND_MULTIPLIER)
        elif tok == "]" and square_open:
            scale_from(square_open.pop(), SQUARE_MULTIPLIER)
        else:
            for i, part in enumerate(_BREAK.split(tok)):
                if i > 0:
                    res.append([BREAK_MARKER[0], BREAK_MARKER[1], True])
                res.append([part, 1.0, False])

    # Unclosed brackets extend to the end of the prompt.
    for start in round_open:
        scale_from(start, ROUND_MULTIPLIER)
    for start in square_open:
        scale_from(start, SQUARE_MULTIPLIER)

    if not res:
        return [("", 1.0)]

    merged: list[list] = [res[0]]
    for entry in res[1:]:
        last = merged[-1]
        if not entry[2] and not last[2] and entry[1] == last[1]:
            last[0] += entry[0]
        else:
            merged.append(entry)
    return [(t, w) for t, w, _ in merged]
