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

Limits and cost. A prompt may hold at most `MAX_PROMPT_CHARS` (20 000) characters; a longer one is
an InvalidRequestError naming the limit. Real prompts are far shorter: CLIP reads 75 tokens per
chunk, A1111 users rarely go past 4 chunks (~1 200 characters), and 20 000 characters is about 60
chunks, more than any model conditions on usefully. Parsing is linear in the prompt's length,
whatever its brackets: A1111 rescales every fragment after an opening bracket when the bracket
closes, which is quadratic on nested or unbalanced brackets ("(a(a(a…" of 120 KB took 35 s); here
each run of text between two bracket events records which brackets are open, and the weights are
multiplied once at the end. Up to `EXACT_DEPTH` (32) open brackets the factors multiply in A1111's
order (the order the brackets close), so weights are bit-identical to A1111's; deeper nesting (no
real prompt has it) multiplies the round and the square brackets' factors outermost first, which
can differ from A1111 in the last bit of a float64 weight (weights end up float32), and so merge
or split adjacent fragments differently where two weights differ in that last bit.
"""
from __future__ import annotations

import re

from inference.errors import InvalidRequestError

BREAK_MARKER: tuple[str, float] = ("BREAK", -1.0)

ROUND_MULTIPLIER = 1.1
SQUARE_MULTIPLIER = 1 / 1.1

MAX_PROMPT_CHARS = 20_000
EXACT_DEPTH = 32

# One token of the emphasis grammar per match; the order of alternatives matters (escapes
# before brackets, the ":weight)" closer before a bare ")"). Every alternative is linear: the
# weight closer backtracks only within the digits and spaces right after its colon.
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

# BREAK as a whole word. The whitespace around it is stripped by hand: a leading `\s*` in the
# pattern made re retry the whole whitespace run at each of its characters (quadratic).
_BREAK = re.compile(r"\bBREAK\b")


def is_break(fragment: tuple[str, float]) -> bool:
    """Whether a parsed fragment is the BREAK marker."""
    return fragment == BREAK_MARKER


def _parse_weight(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise InvalidRequestError(f"prompt weight {raw!r} is not a number") from None


def _split_break(text: str) -> list[str]:
    """`re.split(r"\\s*\\bBREAK\\b\\s*", text)`, in linear time."""
    if "BREAK" not in text:
        return [text]
    parts, begin = [], 0
    for m in _BREAK.finditer(text):
        parts.append(text[begin:m.start()])
        begin = m.end()
    if not parts:
        return [text]
    parts.append(text[begin:])
    # Whitespace next to a BREAK belongs to the separator (str.strip and re's \s agree on it).
    last = len(parts) - 1
    return [p.lstrip() if i == last else (p.rstrip() if i == 0 else p.strip()) for i, p in enumerate(parts)]


def check_prompt_length(text: str, what: str = "prompt") -> None:
    """InvalidRequestError when `text` is longer than MAX_PROMPT_CHARS."""
    if len(text) > MAX_PROMPT_CHARS:
        raise InvalidRequestError(f"{what} is {len(text)} characters long; the limit is {MAX_PROMPT_CHARS} characters")


def parse_prompt_weights(text: str) -> list[tuple[str, float]]:
    """Split an A1111-style prompt into (text, weight) fragments.

    >>> parse_prompt_weights("an (important) word")
    [('an ', 1.0), ('important', 1.1), (' word', 1.0)]
    """
    check_prompt_length(text)
    return _parse(text)


def _parse(text: str) -> list[tuple[str, float]]:
    """The parser itself, with no length limit (linear time)."""
    # Brackets: factor (None while open) and the rank at which it closed (A1111 multiplies in
    # that order); `below` is the bracket under it on its own stack (round or square), -1 if none.
    factor: list[float | None] = []
    rank: list[int] = []
    below: list[int] = []
    round_open: list[int] = []
    square_open: list[int] = []
    closed = 0

    # Groups: runs of fragments that saw the same open brackets. An exact group keeps the tuple
    # of its brackets (<= EXACT_DEPTH); a deep one only the tops of the two stacks.
    groups: list[tuple] = []
    group = -1  # the group new fragments join; -1: the open brackets changed since the last one
    entries: list[tuple[str, int]] = []  # (text, group) or (BREAK, -1)

    for m in _TOKEN.finditer(text):
        tok = m.group(0)
        first = tok[0]
        if first == "(" or first == "[":
            stack = round_open if first == "(" else square_open
            below.append(stack[-1] if stack else -1)
            stack.append(len(factor))
            factor.append(None)
            rank.append(-1)
            group = -1
            continue
        value = None
        if first == ")":
            if round_open:
                stack, value = round_open, ROUND_MULTIPLIER
        elif first == "]":
            if square_open:
                stack, value = square_open, SQUARE_MULTIPLIER
        elif first == ":" and round_open:
            weight = m.group("weight")
            if weight is not None:
                stack, value = round_open, _parse_weight(weight)
        if value is not None:
            b = stack.pop()
            factor[b] = value
            rank[b] = closed
            closed += 1
            group = -1
            continue
        # "\(" -> "(", "\\" -> "\", a lone "\" -> "" (dropped, as A1111 does); text may hold BREAKs.
        parts = (tok[1:],) if first == "\\" else _split_break(tok)
        for i, part in enumerate(parts):
            if i > 0:
                entries.append((BREAK_MARKER[0], -1))
            if group < 0:
                if len(round_open) + len(square_open) <= EXACT_DEPTH:
                    groups.append((True, (*round_open, *square_open)))
                else:
                    groups.append((False, (round_open[-1] if round_open else -1,
                                           square_open[-1] if square_open else -1)))
                group = len(groups) - 1
            entries.append((part, group))

    # Unclosed brackets extend to the end of the prompt: round ones first, outermost first.
    for stack, value in ((round_open, ROUND_MULTIPLIER), (square_open, SQUARE_MULTIPLIER)):
        for b in stack:
            factor[b] = value
            rank[b] = closed
            closed += 1

    if not entries:
        return [("", 1.0)]

    # Products along each stack, outermost first, for the deep groups (each bracket once).
    product: list[float] = []
    for b, f in enumerate(factor):
        product.append((1.0 if below[b] < 0 else product[below[b]]) * f)

    weights: list[float] = []
    for exact, members in groups:
        w = 1.0
        if exact:
            for b in sorted(members, key=rank.__getitem__):
                w *= factor[b]
        else:
            top_round, top_square = members
            if top_round >= 0:
                w *= product[top_round]
            if top_square >= 0:
                w *= product[top_square]
        weights.append(w)

    out: list[tuple[str, float]] = []
    pieces: list[str] = []
    current: float | None = None  # weight of the fragment being merged; None after a BREAK
    for piece, g in entries:
        if g < 0:
            if current is not None:
                out.append(("".join(pieces), current))
            out.append(BREAK_MARKER)
            pieces, current = [], None
            continue
        w = weights[g]
        if current is not None and w != current:
            out.append(("".join(pieces), current))
            pieces = []
        pieces.append(piece)
        current = w
    if current is not None:
        out.append(("".join(pieces), current))
    return out
