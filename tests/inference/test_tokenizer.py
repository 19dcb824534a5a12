"""Our CLIP BPE tokenizer against transformers' CLIPTokenizer, id for id.

transformers 5 has no pure-Python ("slow") CLIP tokenizer any more: `transformers.CLIPTokenizer`
is the `tokenizers`-backed class, and `CLIPTokenizerFast` is an alias of it. That class is what
diffusers pipelines use, so it is the oracle here; both names are still loaded and compared.
"""
from __future__ import annotations

import gzip
import json
import os
import random
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.errors import InvalidRequestError, ModelFormatError
from inference.tokenizer import CLIPTokenizer, default_vocab_path, tokenize

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

SOT, EOT = 49406, 49407


# ---- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ours() -> CLIPTokenizer:
    return CLIPTokenizer.default()


@pytest.fixture(scope="module")
def ours_pad0(ours: CLIPTokenizer) -> CLIPTokenizer:
    return ours.with_pad_token_id(0)


@pytest.fixture(scope="module")
def folders(ours: CLIPTokenizer, ours_pad0: CLIPTokenizer, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("clip_tokenizers")
    return {"eot": ours.write_folder(root / "eot"), "zero": ours_pad0.write_folder(root / "zero")}


@pytest.fixture(scope="module")
def hf(folders: dict[str, Path]):
    return transformers.CLIPTokenizer.from_pretrained(folders["eot"], local_files_only=True)


@pytest.fixture(scope="module")
def hf_pad0(folders: dict[str, Path]):
    return transformers.CLIPTokenizer.from_pretrained(folders["zero"], local_files_only=True)


def hf_ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def hf_padded(tokenizer, text: str) -> list[int]:
    return tokenizer(text, padding="max_length", max_length=77, truncation=True)["input_ids"]


# ---- the corpus ---------------------------------------------------------------------------

HAND_WRITTEN = [
    "",
    " ",
    "\n\t  \r\n",
    "a photo of a cat",
    "A Photo Of A CAT",
    "masterpiece, best quality, 1girl, solo, looking at viewer",
    "(masterpiece:1.2), [blurry], ((detailed eyes))",
    "a   photo\tof\na\r\ncat",
    "  leading and trailing spaces  ",
    "It's a dog's life; they're here, we've gone, I'm sure you'll see, he'd know, can't won't",
    "IT'S LOUD 'S 'T 'RE",
    "'quoted' \"double\" `back` ‘curly’ “curly”",
    "rock'n'roll o'clock y'all",
    "numbers 0 1 42 1024x768 3.14159 -7 +8 1e10 2,000,000",
    "½ ² ³ ¼ Ⅻ ٣٤٥ ۶ ४५ 三 〇",
    "café naïve résumé façade jalapeño Ångström",
    "cafe\u0301 nai\u0308ve",  # decomposed accents: NFC composes them
    "Straße ß ẞ ﬁne ﬂower",
    "ΟΔΟΣ οδος Σίσυφος",
    "İstanbul ıi I",
    "日本語のテキスト 東京タワー",
    "中文提示词，高质量，杰作",
    "한국어 프롬프트",
    "العربية مرحبا بالعالم",
    "עברית שלום",
    "Русский текст, ЁЖИК",
    "ελληνικά κείμενα",
    "हिन्दी पाठ",
    "ภาษาไทย",
    "emoji 🐱 🐶🐶 👍🏽 👩‍👩‍👧 🇯🇵 ❤️ ✨🌸",
    "!!! ??? ... ,,, ;;; ::: --- ___ *** ### @@@ $$$ %%% ^^^ &&& ~~~",
    "a!b?c.d,e;f:g-h_i*j#k@l$m%n^o&p~q",
    "<|startoftext|>a cat<|endoftext|>",
    "<|ENDOFTEXT|>'s <|EndOfText|>x",
    "x<|endoftext|>'s",
    "\x00\x01\x1b\x1c\x1f\x7f control",
    "zero\u200bwidth\u200djoiner\ufeffbom",
    "nbsp\xa0ideographic\u3000space\u2028line\u2029para\x85nel",
    "\ufffd replacement",
    "url https://example.com/a_b?c=d&e=f#g",
    "email someone@example.org",
    "C:\\path\\to\\file.png",
    "snake_case camelCase kebab-case SCREAMING_CASE",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "BREAK a BREAK b break",
    "math ∑ ∫ √ ∞ ≠ ≤ ≥ ± × ÷",
    "arrows → ← ↑ ↓ ⇒",
    "currency € £ ¥ ₹ ₿ ¢",
    "box ┌─┐ │ └─┘ ■□▲△",
    "private \ue000\uf8ff plane1 \U00010348 \U0001d4d0",
    "combining a\u0301\u0316\u0334 x\u0308\u0323 \u1df6a\u0300",
    "Dives Akuru \U00011935\U00011930 \U00011938",
    "!",
    "wow!! hello! !x",
    "'",
    "''s",
    "!'s",
]

_WORDS = [
    "cat", "dog", "portrait", "woman", "landscape", "sunset", "cyberpunk", "city", "night",
    "oil", "painting", "by", "greg", "rutkowski", "trending", "artstation", "4k", "8k", "hdr",
    "ultra", "detailed", "octane", "render", "bokeh", "café", "Zürich", "naïve", "東京", "猫",
    "한국", "مرحبا", "שלום", "Москва", "🐱", "🌸", "✨", "it's", "don't", "they're", "we've",
    "I'm", "you'll", "he'd", "(red:1.3)", "[blue]", "((gold))", "1girl", "1024", "x2", "3.5",
    "-", "—", "…", "!", "?", "#hashtag", "@user", "ΣΟΦΙΑ", "İzmir", "ﬁ", "e\u0301",
]
_SEPARATORS = [" ", " ", " ", ", ", ",", "  ", "\n", "\t", " | ", "\u3000", ". ", "; ", ""]


def _generated_corpus(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        length = rng.choice([1, 2, 3, 5, 8, 13, 21, 40, 90])  # the longer ones exceed 75 tokens
        words = [rng.choice(_WORDS) for _ in range(length)]
        if i % 3 == 0:
            words = [w.upper() if rng.random() < 0.3 else w.capitalize() for w in words]
        text = words[0]
        for w in words[1:]:
            text += rng.choice(_SEPARATORS) + w
        out.append(text)
    return out


def _random_unicode(n: int, seed: int) -> list[str]:
    """Strings of arbitrary assigned code points (no surrogates, no Cn: see bpe.py's docstring)."""
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        chars = []
        for _ in range(rng.randint(1, 25)):
            cp = rng.choice([rng.randint(0, 0x7F), rng.randint(0x80, 0x2FFF), rng.randint(0x3000, 0xFFFF),
                             rng.randint(0x10000, 0x2FFFF)])
            ch = chr(cp)
            if unicodedata.category(ch) not in ("Cs", "Cn"):
                chars.append(ch)
        out.append("".join(chars))
    return out


CORPUS = HAND_WRITTEN + _generated_corpus(160, seed=1234) + _random_unicode(60, seed=99)


def test_corpus_is_big_and_has_long_prompts(ours: CLIPTokenizer) -> None:
    assert len(CORPUS) >= 200
    assert sum(len(ours.encode(t)) > 75 for t in CORPUS) >= 20


# ---- vocabulary ---------------------------------------------------------------------------


def test_default_vocabulary_layout(ours: CLIPTokenizer) -> None:
    assert ours.vocab_size == 49408
    assert (ours.sot_token_id, ours.eot_token_id, ours.pad_token_id) == (SOT, EOT, EOT)
    assert ours.id_to_token(0) == "!" and ours.id_to_token(256) == "!</w>"
    assert ours.token_to_id("a</w>") == 320 and ours.comma_token_id == 267
    assert ours.encode("a photo of a cat") == [320, 1125, 539, 320, 2368]
    assert default_vocab_path().is_file()


def test_written_folder_matches_the_transformers_vocabulary(ours: CLIPTokenizer, hf, hf_pad0) -> None:
    vocab = hf.get_vocab()
    assert len(vocab) == 49408
    assert all(vocab[ours.id_to_token(i)] == i for i in range(0, 49408, 97))
    assert (hf.bos_token_id, hf.eos_token_id, hf.pad_token_id) == (SOT, EOT, EOT)
    assert hf_pad0.pad_token_id == 0


# ---- ids against transformers ---------------------------------------------------------------


def test_ids_equal_transformers_over_corpus(ours, ours_pad0, hf, hf_pad0) -> None:
    mismatches = []
    for text in CORPUS:
        for mine, theirs in ((ours, hf), (ours_pad0, hf_pad0)):
            if mine.encode(text) != hf_ids(theirs, text):
                mismatches.append((text, mine.pad_token_id))
    assert not mismatches, mismatches[:5]


def test_padded_ids_equal_transformers_over_corpus(ours, ours_pad0, hf, hf_pad0) -> None:
    # The diffusers call: padding="max_length", max_length=77, truncation=True.
    for text in CORPUS:
        assert tokenize(ours, text).tolist() == [hf_padded(hf, text)], text
        assert tokenize(ours_pad0, text).tolist() == [hf_padded(hf_pad0, text)], text


def test_long_prompt_is_truncated_to_75_like_transformers(ours, ours_pad0, hf, hf_pad0) -> None:
    text = ", ".join(["a very detailed portrait of a cat"] * 20)
    row = tokenize(ours, text)[0].tolist()
    assert len(ours.encode(text)) > 75
    assert row == hf_padded(hf, text)
    assert row[0] == SOT and row[-1] == EOT and EOT not in row[1:-1]
    short = tokenize(ours_pad0, "a cat")[0].tolist()
    assert short == hf_padded(hf_pad0, "a cat") == [SOT, 320, 2368, EOT] + [0] * 73


def test_fast_alias_agrees(folders, ours) -> None:
    fast = transformers.CLIPTokenizerFast.from_pretrained(folders["eot"], local_files_only=True)
    for text in CORPUS[::5]:
        assert ours.encode(text) == hf_ids(fast, text), text


def test_pad_token_is_special_like_in_transformers(ours, ours_pad0, hf, hf_pad0) -> None:
    # With SD2's pad "!", transformers cuts every "!" out as id 0 instead of BPE-ing it.
    text = "wow!! hello!"
    assert ours_pad0.encode(text) == hf_ids(hf_pad0, text) == [2781, 0, 0, 3306, 0]
    assert ours.encode(text) == hf_ids(hf, text) == [2781, 748, 3306, 256]  # "!!</w>", "!</w>"


_ALPHABET = st.characters(exclude_categories=("Cs", "Cn"))
_ATOMS = st.sampled_from(
    ["'s", "'T", "'re", "'", "!", "<|endoftext|>", "<|ENDOFTEXT|>", "<|startoftext|>", " ", "\n", "\u3000",
     "\x1c", "ΟΔΟΣ", "İ", "e\u0301", "\u0301", "\u0316", "\u1df6", "\U00011930", "1", "٣", "🐱", "a", "cat"]
)
_TEXT = st.lists(st.one_of(_ATOMS, st.text(_ALPHABET, max_size=8)), max_size=12).map("".join)


@settings(max_examples=200, deadline=None)
@given(text=_TEXT)
def test_property_ids_equal_transformers(ours, ours_pad0, hf, hf_pad0, text: str) -> None:
    assert ours.encode(text) == hf_ids(hf, text)
    assert ours_pad0.encode(text) == hf_ids(hf_pad0, text)


@settings(max_examples=100, deadline=None)
@given(text=st.text(_ALPHABET, max_size=120))
def test_property_padded_rows_equal_transformers(ours, hf, text: str) -> None:
    assert tokenize(ours, text).tolist() == [hf_padded(hf, text)]


# ---- folders: round trip, real-world configs, errors ------------------------------------------


def test_from_folder_round_trip(folders, ours) -> None:
    loaded = CLIPTokenizer.from_folder(folders["eot"])
    assert loaded.pad_token_id == EOT
    assert CLIPTokenizer.from_folder(folders["zero"]).pad_token_id == 0
    assert CLIPTokenizer.from_folder(folders["zero"], pad_token_id=EOT).pad_token_id == EOT
    for text in CORPUS[::7]:
        assert loaded.encode(text) == ours.encode(text)


def _added(content: str, normalized: bool = True) -> dict:
    return {"__type": "AddedToken", "content": content, "lstrip": False, "normalized": normalized,
            "rstrip": False, "single_word": False}


@pytest.mark.parametrize(
    "config, special_map",
    [
        # The shape of SD1.x's tokenizer folder.
        (
            {"bos_token": _added("<|startoftext|>"), "eos_token": _added("<|endoftext|>"),
             "unk_token": _added("<|endoftext|>"), "pad_token": "<|endoftext|>", "model_max_length": 77,
             "tokenizer_class": "CLIPTokenizer"},
            {"bos_token": _added("<|startoftext|>"), "eos_token": _added("<|endoftext|>"),
             "unk_token": _added("<|endoftext|>"), "pad_token": "<|endoftext|>"},
        ),
        # The shape of SD2.x's / SDXL tokenizer_2's folder: pad "!".
        (
            {"bos_token": _added("<|startoftext|>"), "eos_token": _added("<|endoftext|>"),
             "unk_token": _added("<|endoftext|>"), "pad_token": "!", "tokenizer_class": "CLIPTokenizer"},
            {"bos_token": _added("<|startoftext|>"), "eos_token": _added("<|endoftext|>"),
             "unk_token": _added("<|endoftext|>"), "pad_token": "!"},
        ),
        # special_tokens_map.json overrides the config.
        ({"pad_token": "<|endoftext|>"}, {"pad_token": "!"}),
        # A newer save: added_tokens_decoder wins and special_tokens_map.json is ignored.
        (
            {"pad_token": "!", "added_tokens_decoder": {
                "0": {"content": "!", "normalized": True, "special": True},
                "49406": {"content": "<|startoftext|>", "normalized": True, "special": True},
                "49407": {"content": "<|endoftext|>", "normalized": False, "special": True}}},
            {"pad_token": "<|endoftext|>"},
        ),
        (None, None),
    ],
    ids=["sd1", "sd2", "map-overrides", "added-tokens-decoder", "no-config"],
)
def test_real_world_folder_configs(folders, tmp_path, config, special_map) -> None:
    folder = tmp_path / "tokenizer"
    folder.mkdir()
    for name in ("vocab.json", "merges.txt"):
        (folder / name).write_bytes((folders["eot"] / name).read_bytes())
    if config is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps(config))
    if special_map is not None:
        (folder / "special_tokens_map.json").write_text(json.dumps(special_map))
    theirs = transformers.CLIPTokenizer.from_pretrained(folder, local_files_only=True)
    mine = CLIPTokenizer.from_folder(folder)
    assert mine.pad_token_id == theirs.pad_token_id
    texts = ["It's <|endoftext|> <|ENDOFTEXT|> x<|startoftext|>y <|StartOfText|>", "wow!! a!b!", "a cat"]
    for text in texts:
        assert mine.encode(text) == hf_ids(theirs, text), text
        assert tokenize(mine, text).tolist() == [hf_padded(theirs, text)], text
    # Writing it back out keeps the behaviour.
    again = transformers.CLIPTokenizer.from_pretrained(mine.write_folder(tmp_path / "again"), local_files_only=True)
    for text in texts:
        assert hf_ids(again, text) == hf_ids(theirs, text)


def _copy_folder(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


@pytest.mark.parametrize(
    "breakage",
    [
        "no-folder", "no-vocab", "no-merges", "vocab-not-json", "vocab-a-list", "vocab-bad-id",
        "merge-bad-line", "merge-not-in-vocab", "missing-byte-token", "missing-eot", "pad-not-in-vocab",
        "config-not-object",
    ],
)
def test_bad_folder_raises_model_format_error(folders, tmp_path, breakage: str) -> None:
    folder = _copy_folder(folders["eot"], tmp_path / "tok")
    vocab_path, merges_path = folder / "vocab.json", folder / "merges.txt"
    culprit = folder
    if breakage == "no-folder":
        culprit = folder = tmp_path / "missing"
    elif breakage == "no-vocab":
        vocab_path.unlink()
        culprit = vocab_path
    elif breakage == "no-merges":
        merges_path.unlink()
        culprit = merges_path
    elif breakage == "vocab-not-json":
        vocab_path.write_text("{not json")
        culprit = vocab_path
    elif breakage == "vocab-a-list":
        vocab_path.write_text("[1, 2]")
        culprit = vocab_path
    elif breakage in ("vocab-bad-id", "missing-byte-token", "missing-eot"):
        vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
        if breakage == "vocab-bad-id":
            vocab["cat</w>"] = "x"
        elif breakage == "missing-byte-token":
            del vocab["\u0100"]
        else:
            del vocab["<|endoftext|>"]
        vocab_path.write_text(json.dumps(vocab), encoding="utf-8")
    elif breakage == "merge-bad-line":
        merges_path.write_text("#version: 0.2\ni n\nthree parts here\n", encoding="utf-8")
        culprit = merges_path
    elif breakage == "merge-not-in-vocab":
        merges_path.write_text("#version: 0.2\ni n\nq zzzz\n", encoding="utf-8")
    elif breakage == "pad-not-in-vocab":
        (folder / "special_tokens_map.json").write_text(json.dumps({"pad_token": "<pad>"}))
    elif breakage == "config-not-object":
        (folder / "tokenizer_config.json").write_text("[]")
        culprit = folder / "tokenizer_config.json"
    with pytest.raises(ModelFormatError) as info:
        CLIPTokenizer.from_folder(folder)
    assert str(culprit) in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_openai_file_raises_model_format_error(tmp_path) -> None:
    truncated = tmp_path / "bpe.txt.gz"
    truncated.write_bytes(default_vocab_path().read_bytes()[:5000])
    with pytest.raises(ModelFormatError, match=str(truncated).replace("\\", "\\\\")):
        CLIPTokenizer.from_openai_bpe(truncated)
    empty = tmp_path / "empty.txt.gz"
    with gzip.open(empty, "wt", encoding="utf-8") as f:
        f.write("header only\n")
    with pytest.raises(ModelFormatError, match="empty.txt.gz"):
        CLIPTokenizer.from_openai_bpe(empty)
    with pytest.raises(ModelFormatError, match="nothing.txt"):
        CLIPTokenizer.from_openai_bpe(tmp_path / "nothing.txt")


def test_bad_pad_id_is_rejected(ours) -> None:
    with pytest.raises(InvalidRequestError):
        ours.with_pad_token_id(49408)
    with pytest.raises(InvalidRequestError):
        CLIPTokenizer.default(pad_token_id=-1)


def test_decode_is_readable(ours) -> None:
    assert ours.decode(ours.encode("A photo of a café, 🐱!")) == "a photo of a café , 🐱!"


def test_folder_with_only_tokenizer_json_as_transformers_5_saves_it(tmp_path):
    """transformers 5 writes tokenizer.json without vocab.json/merges.txt; ids must not change."""
    import transformers

    source = CLIPTokenizer.default(pad_token_id=0).write_folder(tmp_path / "src")
    saved = tmp_path / "saved"
    transformers.CLIPTokenizer.from_pretrained(source).save_pretrained(saved)
    for name in ("vocab.json", "merges.txt"):
        (saved / name).unlink(missing_ok=True)
    assert (saved / "tokenizer.json").is_file()
    ours = CLIPTokenizer.from_folder(saved)
    reference = transformers.CLIPTokenizer.from_pretrained(saved)
    for text in ("a photo of a cat!", "Hello, WORLD 123 — ünïcode 🙂", ""):
        assert ours.encode(text) == reference(text, add_special_tokens=False).input_ids
    assert ours.pad_token_id == 0
