"""Prompt parser under hostile input: linear time, a length limit, and the same results as the
original (quadratic) A1111-style parser, which is kept below as the reference."""
from __future__ import annotations

import math
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.errors import InvalidRequestError
from inference.tokenizer import weighting
from inference.tokenizer.weighting import MAX_PROMPT_CHARS, parse_prompt_weights

# ---- the reference: the parser as it was before it was made linear (quadratic, do not use) ----
_REF_TOKEN = re.compile(
    r"""
    \\\( | \\\) | \\\[ | \\\] | \\\\ | \\
    | \( | \[
    | :\s*(?P<weight>[+-]?[.\d]+)\s*\)
    | \) | \]
    | [^\\()\[\]:]+
    | :
    """,
    re.VERBOSE,
)
_REF_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.DOTALL)


def reference_parse(text: str) -> list[tuple[str, float]]:
    res: list[list] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def scale_from(start: int, factor: float) -> None:
        for entry in res[start:]:
            if not entry[2]:
                entry[1] *= factor

    for m in _REF_TOKEN.finditer(text):
        tok = m.group(0)
        weight = m.group("weight")
        if tok.startswith("\\"):
            res.append([tok[1:], 1.0, False])
        elif tok == "(":
            round_open.append(len(res))
        elif tok == "[":
            square_open.append(len(res))
        elif weight is not None and round_open:
            scale_from(round_open.pop(), float(weight))
        elif tok == ")" and round_open:
            scale_from(round_open.pop(), 1.1)
        elif tok == "]" and square_open:
            scale_from(square_open.pop(), 1 / 1.1)
        else:
            for i, part in enumerate(_REF_BREAK.split(tok)):
                if i > 0:
                    res.append(["BREAK", -1.0, True])
                res.append([part, 1.0, False])
    for start in round_open:
        scale_from(start, 1.1)
    for start in square_open:
        scale_from(start, 1 / 1.1)
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


def _max_depth(text: str) -> int:
    # An upper bound on open brackets at any point (escapes and unmatched closers ignored).
    return text.count("(") + text.count("[")


# Bracket/weight soup: every character class the grammar reacts to, plus unicode whitespace.
_PIECES = st.sampled_from([
    "(", ")", "[", "]", ":", ":1.3)", ": 0.5 )", ":-1)", ":+.5)", ":2)", ":1.1.)", "\\", "\\(", "\\)",
    "\\[", "\\]", "\\\\", "a", "cat", " ", "  ", "\n", "\t", "\u00a0", "\u2003", "BREAK", " BREAK ",
    "xBREAK", "BREAKfast", ",", "1", ".", "é", "日本",
])


def _check_against_reference(text: str) -> None:
    try:
        expected = reference_parse(text)
    except ValueError:  # a weight such as "1.1." that float() refuses
        with pytest.raises(InvalidRequestError, match="is not a number"):
            parse_prompt_weights(text)
        return
    got = parse_prompt_weights(text)
    if _max_depth(text) <= weighting.EXACT_DEPTH:
        assert got == expected, text  # bit-identical, weights and merges
    else:
        _agree_within_rounding(got, expected, text)


def _agree_within_rounding(got, expected, text: str = "") -> None:
    """Same characters with weights equal to ~1e-12; fragment boundaries may differ where two
    weights differ in the last bit (one parser merges them, the other does not)."""
    def chars(parts):
        return [(c, w) for t, w in parts for c in (t if (t, w) != weighting.BREAK_MARKER else ["\0"])]

    a, b = chars(got), chars(expected)
    assert "".join(c for c, _ in a) == "".join(c for c, _ in b), text
    for (_, wa), (_, wb) in zip(a, b):
        assert math.isclose(wa, wb, rel_tol=1e-12) or (math.isinf(wa) and wa == wb), text


@settings(max_examples=400, deadline=None)
@given(st.lists(_PIECES, max_size=40).map("".join))
def test_linear_parser_equals_the_reference(text: str) -> None:
    _check_against_reference(text)


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.sampled_from("()[]:\\ .1-+aBREAK\u3000"), max_size=60))
def test_linear_parser_equals_the_reference_on_random_characters(text: str) -> None:
    _check_against_reference(text)


@settings(max_examples=60, deadline=None)
@given(st.integers(33, 80), st.lists(st.sampled_from(["(", "[", "a", ")", "]", ":0.7)", ":1.3)"]),
                                     min_size=0, max_size=80))
def test_deep_nesting_agrees_within_rounding(depth: int, tail: list[str]) -> None:
    text = "(a[b" * (depth // 2) + "".join(tail)
    _agree_within_rounding(parse_prompt_weights(text), reference_parse(text), text)


HOSTILE = {
    "unclosed rounds": "(a" * 60_000,
    "unclosed mixed": "[a" * 30_000 + "(b" * 30_000,
    "nested closed": "(a" * 40_000 + ")" * 40_000,
    "nested weights": "(a" * 15_000 + ":1.01)" * 15_000,
    "whitespace run": " " * 120_000,
    "colon then spaces": ":" + " " * 120_000,
    "colon then digits": "(:" + "1" * 120_000,
    "breaks": " BREAK " * 17_000,
    "escapes": "\\(" * 60_000,
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_120kb_prompt_parses_in_linear_time(name: str) -> None:
    text = HOSTILE[name]
    assert len(text) >= 100_000
    start = time.perf_counter()
    weighting._parse(text)  # the parser itself, without the length limit
    elapsed = time.perf_counter() - start
    # A complexity guard, not a benchmark: the quadratic parser took 10-35 s on these.
    assert elapsed < 2.0, f"{name}: {elapsed:.2f} s"


def test_prompt_over_the_limit_is_refused_by_name() -> None:
    text = "(a" * 60_000
    start = time.perf_counter()
    with pytest.raises(InvalidRequestError) as info:
        parse_prompt_weights(text)
    assert time.perf_counter() - start < 0.5
    message = str(info.value)
    assert "\n" not in message
    assert "120000 characters" in message and f"limit is {MAX_PROMPT_CHARS}" in message


def test_prompt_at_the_limit_is_parsed_quickly() -> None:
    assert MAX_PROMPT_CHARS == 20_000
    text = ("(a" * (MAX_PROMPT_CHARS // 2))[:MAX_PROMPT_CHARS]
    start = time.perf_counter()
    parts = parse_prompt_weights(text)
    assert time.perf_counter() - start < 1.0
    assert "".join(t for t, _ in parts) == "a" * (MAX_PROMPT_CHARS // 2)


# ---- BPE on very long "words" -------------------------------------------------------------------------


def _reference_merges(symbols: list[str], ranks: dict) -> list[str]:
    """The rescanning merge loop of CLIPTokenizer._bpe (quadratic on long pieces)."""
    while len(symbols) > 1:
        best, best_rank = None, len(ranks)
        for pair in zip(symbols, symbols[1:]):
            rank = ranks.get(pair)
            if rank is not None and rank < best_rank:
                best, best_rank = pair, rank
        if best is None:
            break
        merged, i = [], 0
        while i < len(symbols):
            if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                merged.append(symbols[i] + symbols[i + 1])
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = merged
    return symbols


@pytest.fixture(scope="module")
def clip_tokenizer():
    from inference.tokenizer import CLIPTokenizer

    return CLIPTokenizer.default()


@settings(max_examples=150, deadline=None)
@given(st.one_of(
    st.text(alphabet="aeinrstlo", min_size=2, max_size=300),
    st.lists(st.sampled_from(["photo", "graph", "ing", "sun", "set", "light", "house", "aa", "é", "日", "e"]),
             min_size=1, max_size=60).map("".join),
    st.text(min_size=2, max_size=120),
))
def test_heap_merges_equal_the_merge_loop(clip_tokenizer, word):
    from inference.tokenizer.bpe import _BYTE_TO_CHAR, END_OF_WORD, _merge_with_heap

    symbols = [_BYTE_TO_CHAR[b] for b in word.encode("utf-8")]
    symbols[-1] += END_OF_WORD
    ranks = clip_tokenizer._ranks
    assert _merge_with_heap(list(symbols), ranks) == _reference_merges(list(symbols), ranks)


def test_a_20000_letter_word_tokenizes_in_linear_time(clip_tokenizer):
    import random
    import string

    from inference.tokenizer import tokenize, tokenize_weighted

    rng = random.Random(0)
    word = "".join(rng.choice(string.ascii_lowercase) for _ in range(MAX_PROMPT_CHARS))
    start = time.perf_counter()
    tokenize(clip_tokenizer, word)
    tokenize_weighted(clip_tokenizer, word[::-1])
    assert time.perf_counter() - start < 2.0  # the rescanning loop took 8.5 s on one of them
