"""A1111's `<lora:NAME:WEIGHT>` prompt tags: extraction (A1111's argument order), malformed and
escaped tags, weight limits, and linear time on hostile input."""
from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.errors import InvalidRequestError
from inference.lora.prompt import extract_loras
from inference.requests import MAX_LORA_WEIGHT


@pytest.mark.parametrize("prompt, text, tags", [
    # A1111's own examples: the tag anywhere, the weight optional (1.0).
    ("masterpiece, 1girl, <lora:koreanDollLikeness_v15:0.66>, best quality",
     "masterpiece, 1girl, best quality", [("koreanDollLikeness_v15", 0.66, None)]),
    ("<lora:ink> a fox", "a fox", [("ink", 1.0, None)]),
    ("a fox <lora:ink:1>", "a fox", [("ink", 1.0, None)]),
    # Two positions are A1111's TE then UNet weight; named te=/unet= override them.
    ("a <lora:ink:0.5:0.8> fox", "a fox", [("ink", 0.8, 0.5)]),
    ("a <lora:ink:te=0.25:unet=0.75>", "a", [("ink", 0.75, 0.25)]),
    ("a <lora:ink:0.4:0.4>", "a", [("ink", 0.4, None)]),
    ("x <lora:ink:0.5:0.8:16>", "x", [("ink", 0.8, 0.5)]),  # A1111's dyn dim: ignored
    ("<lyco:loha_style:0.7>, cat", "cat", [("loha_style", 0.7, None)]),
    ("neg <lora:slider:-1.5>", "neg", [("slider", -1.5, None)]),
    ("x <lora:a:.5> <lora:b:+2> <lora:c:1e-1>", "x", [("a", 0.5, None), ("b", 2.0, None), ("c", 0.1, None)]),
    ("a, <lora:one:1>, <lora:two:0.5>, b", "a, b", [("one", 1.0, None), ("two", 0.5, None)]),
    ("line one <lora:x>\nline two", "line one\nline two", [("x", 1.0, None)]),
    (" <lora: spaced name :0.3> ", "", [("spaced name", 0.3, None)]),
])
def test_extraction(prompt, text, tags):
    assert extract_loras(prompt) == (text, tags)


@pytest.mark.parametrize("prompt", [
    "a fox", "", "\\<lora:ink:1> escaped", "<lora:>", "<lora::1>", "<lora:ink", "lora:ink:1>",
    "<hypernet:h:1>", "<LORA:ink:1>", "<<lora:ink:1", "(a:1.2) [b] {c}", "<embedding:x>",
])
def test_malformed_or_foreign_tags_stay_text(prompt):
    assert extract_loras(prompt) == (prompt, [])


def test_nested_brackets_take_the_innermost_tag():
    assert extract_loras("<<lora:ink:0.5>>") == ("<>", [("ink", 0.5, None)])
    assert extract_loras("<lora:<lora:ink:1>") == ("<lora:", [("ink", 1.0, None)])


@pytest.mark.parametrize("prompt, message", [
    ("<lora:ink:abc>", "weight 'abc' is not a number"),
    ("<lora:ink:nan>", "weight 'nan' is not a number"),
    ("<lora:ink:inf>", "weight 'inf' is not a number"),
    ("<lora:ink:1_0>", "weight '1_0' is not a number"),
    ("<lora:ink:1e400>", "weight 1e400 is outside -8…8"),
    ("<lora:ink:8.01>", "weight 8.01 is outside -8…8"),
    ("<lora:ink:0.5:-9>", "weight -9 is outside"),
    ("<lora:ink:te=x>", "weight 'x' is not a number"),
    ("<lora:" + "n" * 300 + ":1>", "name is longer than 255"),
])
def test_bad_weights_raise_one_line(prompt, message):
    with pytest.raises(InvalidRequestError, match=message) as caught:
        extract_loras(prompt)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 200


def test_limits_are_the_request_limits():
    assert MAX_LORA_WEIGHT == 8.0
    assert extract_loras("<lora:a:8>")[1] == [("a", 8.0, None)]
    assert extract_loras("<lora:a:-8>")[1] == [("a", -8.0, None)]


def test_not_text_is_refused():
    with pytest.raises(InvalidRequestError, match="prompt must be text"):
        extract_loras(None)  # type: ignore[arg-type]


_ALPHABET = st.sampled_from(["<", ">", ":", "lora", "lyco", ",", " ", "\\", "\n", "0.5", "-", "e", "x", "=", "te",
                             "nan", "1", "("])


@settings(max_examples=300, deadline=None)
@given(st.lists(_ALPHABET, max_size=80).map("".join))
def test_extraction_only_raises_invalid_request(prompt):
    try:
        text, tags = extract_loras(prompt)
    except InvalidRequestError:
        return
    assert isinstance(text, str) and len(text) <= len(prompt)
    for name, unet, te in tags:
        assert name and abs(unet) <= MAX_LORA_WEIGHT and (te is None or abs(te) <= MAX_LORA_WEIGHT)


@pytest.mark.parametrize("hostile", [
    "<" * 100_000,
    "<lora:" * 16_000,
    "<lora:x" + ":" * 100_000,
    "<lora:x:0.1>" * 8_000,  # 8,000 tags
    "," * 50_000 + " " * 50_000,
    ", \n" * 33_000,
    "\\<lora:x:1>" * 9_000,
    "<lora:" + "a" * 100_000,
    "(" * 50_000 + "<lora:x:1>" + ")" * 50_000,
])
def test_hostile_input_is_linear(hostile):
    assert len(hostile) >= 96_000
    started = time.perf_counter()
    text, _tags = extract_loras(hostile)
    assert time.perf_counter() - started < 1.0
    assert len(text) <= len(hostile)
