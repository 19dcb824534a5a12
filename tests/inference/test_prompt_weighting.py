"""A1111 emphasis parsing, 75-token chunking and embedding weighting."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.errors import InvalidRequestError
from inference.tokenizer import (
    BREAK_MARKER,
    CLIPTokenizer,
    apply_weights,
    is_break,
    parse_prompt_weights,
    tokenize,
    tokenize_weighted,
)

SOT, EOT = 49406, 49407
COMMA = 267
CAT, DOG = 2368, 1929  # "cat</w>", "dog</w>"
B = BREAK_MARKER


@pytest.fixture(scope="module")
def tok() -> CLIPTokenizer:
    return CLIPTokenizer.default()


# ---- parser -------------------------------------------------------------------------------

PARSE_CASES = [
    # A1111's own doc examples.
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", 1.1)]),
    ("\\(literal\\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
    (
        "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
        [
            ("a ", 1.0),
            ("house", 1.1 * 1.1 * 1.3),
            (" ", 1.1),
            ("on", 1.0),
            (" a ", 1.1),
            ("hill", 0.55),
            (", sun, ", 1.1),
            ("sky", 1.1**4),
            (".", 1.1),
        ],
    ),
    # Nesting and explicit weights.
    ("((word))", [("word", 1.1 * 1.1)]),
    ("[word]", [("word", 1 / 1.1)]),
    ("[[word]]", [("word", 1 / 1.1 / 1.1)]),
    ("(word:1.3)", [("word", 1.3)]),
    ("(word: 1.3 )", [("word", 1.3)]),
    ("(word:-1)", [("word", -1.0)]),
    ("(word:+.5)", [("word", 0.5)]),
    ("((a:1.5) b)", [("a", 1.5 * 1.1), (" b", 1.1)]),
    ("[(a) b]", [("a", 1.1 / 1.1), (" b", 1 / 1.1)]),
    ("(a [b] c)", [("a ", 1.1), ("b", 1.0), (" c", 1.1)]),
    # Unbalanced brackets.
    ("[unclosed square", [("unclosed square", 1 / 1.1)]),
    ("((a) b", [("a", 1.21), (" b", 1.1)]),
    ("a) b] c", [("a) b] c", 1.0)]),
    ("x :1.2) y", [("x :1.2) y", 1.0)]),
    ("a (b] c)", [("a ", 1.0), ("b] c", 1.1)]),
    # Escapes and colons.
    ("\\(a\\) \\[b\\]", [("(a) [b]", 1.0)]),
    ("(\\(a\\))", [("(a)", 1.1)]),
    ("a\\\\b", [("a\\b", 1.0)]),
    ("a\\b", [("ab", 1.0)]),  # a lone backslash is dropped, as in A1111
    ("time: 12:30", [("time: 12:30", 1.0)]),
    ("(a:b)", [("a:b", 1.1)]),
    # BREAK.
    ("a BREAK b", [("a", 1.0), B, ("b", 1.0)]),
    ("a\nBREAK\nb", [("a", 1.0), B, ("b", 1.0)]),
    ("a BREAK, b", [("a", 1.0), B, (", b", 1.0)]),
    ("BREAK", [("", 1.0), B, ("", 1.0)]),
    ("a BREAK BREAK b", [("a", 1.0), B, ("", 1.0), B, ("b", 1.0)]),
    ("(a BREAK b)", [("a", 1.1), B, ("b", 1.1)]),  # deliberate: A1111 would weight "BREAK"
    ("BREAKfast xBREAK break Break", [("BREAKfast xBREAK break Break", 1.0)]),
    # Empty input.
    ("", [("", 1.0)]),
    ("()", [("", 1.0)]),
]


@pytest.mark.parametrize("text, expected", PARSE_CASES)
def test_parse_prompt_weights_table(text: str, expected: list[tuple[str, float]]) -> None:
    got = parse_prompt_weights(text)
    assert [t for t, _ in got] == [t for t, _ in expected]
    for (_, w_got), (_, w_exp) in zip(got, expected):
        assert math.isclose(w_got, w_exp, rel_tol=1e-12), (text, got)


def test_a1111_float_products_are_kept_exactly() -> None:
    # Same multiplication order as A1111, so the printed values match its doc example bit for bit.
    got = dict(parse_prompt_weights("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky)))."))
    assert got["house"] == 1.5730000000000004
    assert got["sky"] == 1.4641000000000006


def test_break_marker_is_explicit() -> None:
    parts = parse_prompt_weights("x BREAK y")
    assert [is_break(p) for p in parts] == [False, True, False]
    assert BREAK_MARKER == ("BREAK", -1.0)


def test_bad_weight_is_an_invalid_request() -> None:
    with pytest.raises(InvalidRequestError, match="1.2.3"):
        parse_prompt_weights("(a:1.2.3)")


# A random bracket tree, rendered as prompt text, with the weight each word should get.
_WORDS = st.sampled_from(["cat", "dog", "red", "a b", "x,y", "sky "])


def _tree(depth: int = 3) -> st.SearchStrategy:
    leaf = _WORDS.map(lambda w: ("word", w))
    if depth == 0:
        return leaf
    sub = st.lists(_tree(depth - 1), min_size=1, max_size=3)
    return st.one_of(
        leaf,
        sub.map(lambda items: ("round", items)),
        sub.map(lambda items: ("square", items)),
        st.tuples(sub, st.sampled_from(["0.5", "1.25", "2", "0"])).map(lambda p: ("weight", p)),
    )


def _render(node, weight: float, out: list[tuple[str, float]]) -> str:
    """Prompt text for `node`; appends each visible character and its expected weight."""
    kind, payload = node
    if kind == "word":
        out.extend((c, weight) for c in payload)
        return payload
    if kind == "round":
        return "(" + "".join(_render(n, weight * 1.1, out) for n in payload) + ")"
    if kind == "square":
        return "[" + "".join(_render(n, weight / 1.1, out) for n in payload) + "]"
    items, w = payload
    return "(" + "".join(_render(n, weight * float(w), out) for n in items) + ":" + w + ")"


@settings(max_examples=150, deadline=None)
@given(st.lists(_tree(), min_size=1, max_size=4))
def test_parser_weights_match_bracket_nesting(nodes) -> None:
    expected: list[tuple[str, float]] = []
    parts = []
    for i, node in enumerate(nodes):
        if i:
            parts.append(" ")
            expected.append((" ", 1.0))
        parts.append(_render(node, 1.0, expected))
    text = "".join(parts)
    got = [(c, w) for t, w in parse_prompt_weights(text) for c in t]
    assert "".join(c for c, _ in got) == "".join(c for c, _ in expected), text
    for (c, w_got), (_, w_exp) in zip(got, expected):
        assert math.isclose(w_got, w_exp, rel_tol=1e-9, abs_tol=1e-12), (text, c, w_got, w_exp)


# ---- chunking -----------------------------------------------------------------------------


def _row(tokens: list[int], pad: int) -> list[int]:
    return [SOT, *tokens, EOT] + [pad] * (75 - len(tokens))


def test_empty_prompt_gives_one_chunk(tok: CLIPTokenizer) -> None:
    for pad in (EOT, 0):
        chunks = tokenize_weighted(tok, "", pad)
        assert chunks.ids.tolist() == [_row([], pad)]
        assert chunks.weights.tolist() == [[1.0] * 77]
        assert chunks.token_count == 0
        assert chunks.ids.dtype == torch.long and chunks.weights.dtype == torch.float32


def test_short_prompt_matches_plain_tokenize(tok: CLIPTokenizer) -> None:
    for pad in (EOT, 0):
        chunks = tokenize_weighted(tok, "a photo of a cat", pad)
        assert chunks.ids.tolist() == tokenize(tok, "a photo of a cat", pad).tolist()
        assert chunks.ids[0, :7].tolist() == [SOT, 320, 1125, 539, 320, CAT, EOT]
        assert chunks.is_unweighted


def test_pad_defaults_to_the_tokenizer_pad(tok: CLIPTokenizer) -> None:
    assert tokenize_weighted(tok.with_pad_token_id(0), "cat").ids[0, 3:].tolist() == [0] * 74
    assert tokenize(tok.with_pad_token_id(0), "cat")[0, 3:].tolist() == [0] * 74
    assert tokenize(tok, "cat")[0, 3:].tolist() == [EOT] * 74
    with pytest.raises(InvalidRequestError):
        tokenize_weighted(tok, "cat", 10**6)


def test_weights_are_aligned_with_tokens(tok: CLIPTokenizer) -> None:
    chunks = tokenize_weighted(tok, "a (cat:1.5) and [dog] BREAK ((red))", EOT)
    assert chunks.n_chunks == 2
    ids, w = chunks.ids.tolist(), chunks.weights.tolist()
    assert ids[0][:6] == [SOT, 320, CAT, 537, DOG, EOT]
    assert w[0][:6] == pytest.approx([1.0, 1.0, 1.5, 1.0, 1 / 1.1, 1.0])
    assert w[0][6:] == [1.0] * 71
    assert ids[1][:3] == [SOT, 736, EOT]
    assert w[1][:3] == pytest.approx([1.0, 1.21, 1.0])
    assert chunks.token_count == 5


def test_each_fragment_is_tokenized_on_its_own(tok: CLIPTokenizer) -> None:
    # "cat(dog)" splits into "cat" + "dog" pieces, as in A1111; the plain path keeps "cat(dog)".
    chunks = tokenize_weighted(tok, "cat(dog)", EOT)
    assert chunks.ids[0, :4].tolist() == [SOT, CAT, DOG, EOT]
    assert chunks.weights[0, :4].tolist() == pytest.approx([1.0, 1.0, 1.1, 1.0])


@pytest.mark.parametrize("n_words, n_chunks", [(1, 1), (75, 1), (76, 2), (150, 2), (151, 3), (300, 4)])
def test_long_prompts_continue_in_new_chunks(tok: CLIPTokenizer, n_words: int, n_chunks: int) -> None:
    chunks = tokenize_weighted(tok, " ".join(["cat"] * n_words), EOT)
    assert chunks.n_chunks == n_chunks
    assert chunks.token_count == n_words
    body = []
    for row in chunks.ids.tolist():
        assert row[0] == SOT
        n = 75 if len(body) + 75 <= n_words else n_words - len(body)
        assert row[1 : n + 1] == [CAT] * n
        assert row[n + 1] == EOT
        body += row[1 : n + 1]
    assert len(body) == n_words


def test_break_starts_new_chunks(tok: CLIPTokenizer) -> None:
    assert tokenize_weighted(tok, "cat BREAK dog", EOT).ids.tolist() == [_row([CAT], EOT), _row([DOG], EOT)]
    assert tokenize_weighted(tok, "BREAK dog", 0).ids.tolist() == [_row([], 0), _row([DOG], 0)]
    assert tokenize_weighted(tok, "cat BREAK", EOT).ids.tolist() == [_row([CAT], EOT)]
    assert tokenize_weighted(tok, "cat BREAK BREAK dog", EOT).ids.tolist() == [
        _row([CAT], EOT),
        _row([], EOT),
        _row([DOG], EOT),
    ]
    # BREAK inside brackets still breaks, and the brackets keep weighting around it.
    chunks = tokenize_weighted(tok, "(cat BREAK dog)", EOT)
    assert chunks.ids.tolist() == [_row([CAT], EOT), _row([DOG], EOT)]
    assert chunks.weights[:, 1].tolist() == pytest.approx([1.1, 1.1])


def test_comma_backtracking_moves_the_last_phrase(tok: CLIPTokenizer) -> None:
    # 65 x cat, a comma at index 65, then 15 x dog: the chunk fills with 9 dogs; since the comma
    # is 10 tokens from the end (<= 20), those dogs move to the next chunk.
    text = " ".join(["cat"] * 65) + ", " + " ".join(["dog"] * 15)
    chunks = tokenize_weighted(tok, text, EOT)
    assert chunks.ids.tolist() == [_row([CAT] * 65 + [COMMA], EOT), _row([DOG] * 15, EOT)]
    assert chunks.token_count == 81
    # Turned off, the split is a plain 75 / 6.
    plain = tokenize_weighted(tok, text, EOT, comma_backtrack=0)
    assert plain.ids.tolist() == [_row([CAT] * 65 + [COMMA] + [DOG] * 9, EOT), _row([DOG] * 6, EOT)]


def test_comma_too_far_back_is_ignored(tok: CLIPTokenizer) -> None:
    # Comma at index 50: 25 tokens from the end of the chunk (> 20), so no back-tracking.
    text = " ".join(["cat"] * 50) + ", " + " ".join(["dog"] * 30)
    chunks = tokenize_weighted(tok, text, EOT)
    assert chunks.ids.tolist() == [_row([CAT] * 50 + [COMMA] + [DOG] * 24, EOT), _row([DOG] * 6, EOT)]


def test_comma_backtracking_keeps_weights_with_their_tokens(tok: CLIPTokenizer) -> None:
    text = " ".join(["cat"] * 70) + ", (dog:1.4) " + " ".join(["red"] * 10)
    chunks = tokenize_weighted(tok, text, EOT)
    assert chunks.n_chunks == 2
    assert chunks.ids[0, 70:73].tolist() == [CAT, COMMA, EOT]
    assert chunks.ids[1, :3].tolist() == [SOT, DOG, 736]
    assert chunks.weights[1, :3].tolist() == pytest.approx([1.0, 1.4, 1.0])
    assert chunks.weights[0].tolist() == [1.0] * 77


def test_comma_as_the_76th_token(tok: CLIPTokenizer) -> None:
    # A comma arriving at a full chunk simply opens the next chunk (A1111 behaviour).
    text = " ".join(["cat"] * 75) + ", dog"
    chunks = tokenize_weighted(tok, text, EOT)
    assert chunks.ids.tolist() == [_row([CAT] * 75, EOT), _row([COMMA, DOG], EOT)]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from(["cat", "dog", ",", "(red)", "[sky:0.5]", "BREAK", "a b c", "x,"]), max_size=120),
    st.sampled_from([EOT, 0]),
)
def test_chunk_layout_invariants(tok: CLIPTokenizer, words: list[str], pad: int) -> None:
    chunks = tokenize_weighted(tok, " ".join(words), pad)
    ids, weights = chunks.ids.tolist(), chunks.weights.tolist()
    assert chunks.ids.shape == chunks.weights.shape == (len(ids), 77)
    n_body = 0
    for row, w in zip(ids, weights):
        end = row.index(EOT, 1)
        assert row[0] == SOT and 1 <= end <= 76
        assert all(t != SOT and t != EOT for t in row[1:end])
        assert row[end + 1 :] == [pad] * (76 - end)
        assert w[0] == 1.0 and all(x == 1.0 for x in w[end:])
        n_body += end - 1
    assert n_body == chunks.token_count
    if "BREAK" not in words:
        # Without BREAK the chunks hold exactly the prompt's tokens, in order.
        flat = [t for row in ids for t in row[1 : row.index(EOT, 1)]]
        expected = []
        for text, _ in parse_prompt_weights(" ".join(words)):
            expected += tok.encode(text)
        assert flat == expected


def test_plain_tokenize_truncates_at_75(tok: CLIPTokenizer) -> None:
    ids = tokenize(tok, " ".join(["cat"] * 100), 0)
    assert ids.shape == (1, 77) and ids.dtype == torch.long
    assert ids[0].tolist() == [SOT] + [CAT] * 75 + [EOT]
    # Plain path ignores emphasis syntax: brackets are ordinary characters.
    assert tokenize(tok, "(cat)", EOT)[0, :5].tolist() == [SOT, 263, CAT, 264, EOT]


# ---- apply_weights ------------------------------------------------------------------------


def test_apply_weights_identity_is_bit_exact() -> None:
    z = torch.randn(2, 77, 16, generator=torch.Generator().manual_seed(0))
    out = apply_weights(z, torch.ones(2, 77))
    assert out is z
    z16 = z.half()
    assert torch.equal(apply_weights(z16, torch.ones(2, 77)), z16)


def test_apply_weights_restores_each_chunk_mean() -> None:
    g = torch.Generator().manual_seed(1)
    z = torch.randn(3, 77, 32, generator=g, dtype=torch.float64) + 0.3
    w = torch.ones(3, 77, dtype=torch.float64)
    w[0, 5] = 1.5
    w[1, 10:20] = 0.7
    # chunk 2 stays all ones
    out = apply_weights(z, w)
    assert out.shape == z.shape
    for c in range(3):
        assert torch.allclose(out[c].mean(), z[c].mean(), rtol=1e-12, atol=1e-12)
    # A1111's formula, one chunk at a time.
    for c in range(3):
        scaled = z[c] * w[c].unsqueeze(-1)
        ref = scaled * (z[c].mean() / scaled.mean())
        assert torch.allclose(out[c], ref, rtol=1e-12, atol=1e-12)
    assert torch.equal(out[2], z[2])
    # The weighted token really changed relative to its neighbours.
    ratio = out[0] / z[0]
    assert torch.allclose(ratio[5] / ratio[4], torch.full((32,), 1.5, dtype=torch.float64))


def test_apply_weights_zero_mean_chunk_is_not_divided_by_zero() -> None:
    z = torch.ones(1, 77, 4)
    out = apply_weights(z, torch.zeros(1, 77))
    assert torch.isfinite(out).all()
    assert torch.equal(out, torch.zeros(1, 77, 4))


def test_apply_weights_rejects_mismatched_shapes() -> None:
    with pytest.raises(InvalidRequestError, match="do not match"):
        apply_weights(torch.zeros(2, 77, 8), torch.ones(1, 77))
    with pytest.raises(InvalidRequestError):
        apply_weights(torch.zeros(77, 8), torch.ones(77))


def test_weighted_chunks_feed_apply_weights(tok: CLIPTokenizer) -> None:
    chunks = tokenize_weighted(tok, "a (cat:2) BREAK dog", EOT)
    z = torch.rand(chunks.n_chunks, 77, 8, generator=torch.Generator().manual_seed(2)) + 0.5
    out = apply_weights(z, chunks.weights)
    assert torch.equal(out[1], z[1])  # second chunk unweighted: untouched
    assert not torch.equal(out[0], z[0])
    assert torch.allclose(out[0].mean(), z[0].mean())
