"""Reading and writing CLIP tokenizer files.

Two layouts: OpenAI's `bpe_simple_vocab_16e6.txt.gz` (merges only; the vocabulary is implied)
and the diffusers/transformers folder (`vocab.json`, `merges.txt`, `tokenizer_config.json`,
`special_tokens_map.json`). Special-token resolution follows transformers 5's
`from_pretrained`, because which strings are special changes the ids (SD2's pad token "!").
"""
from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from inference.errors import ModelFormatError

SOT_TOKEN = "<|startoftext|>"
EOT_TOKEN = "<|endoftext|>"
END_OF_WORD = "</w>"
MERGES_HEADER = "#version: 0.2"

# The OpenAI merge file holds more merges than the released model uses; CLIP keeps the first
# 49152 - 256 - 2 of them so that the vocabulary is exactly 49408 entries.
OPENAI_MERGE_COUNT = 49152 - 256 - 2

# transformers' order of special-token roles; a later role's flags win for a shared token.
SPECIAL_ROLES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


def bytes_to_unicode() -> dict[int, str]:
    """The GPT-2/CLIP table mapping every byte to a printable character.

    Bytes that are already printable and not whitespace keep their own code point; the other 68
    are given code points from 256 upwards, in byte order, so BPE never sees control characters.
    The dict keeps the printable-first order: the OpenAI vocabulary is built by iterating it.
    """
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("\xa1"), ord("\xac") + 1))
        + list(range(ord("\xae"), ord("\xff") + 1))
    )
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


@dataclass
class TokenizerFiles:
    """What a tokenizer is built from. `special_tokens` maps text -> `normalized` flag (a
    normalized special token is matched after lowercasing); `pad_token` is (text, normalized)
    or None for the default (EOT)."""

    vocab: dict[str, int]
    merges: list[tuple[str, str]]
    special_tokens: dict[str, bool] = field(default_factory=dict)
    pad_token: tuple[str, bool] | None = None


def read_text(path: Path) -> str:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding="utf-8") as f:
                return f.read()
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelFormatError(f"tokenizer file not found: {path}") from None
    except (OSError, UnicodeDecodeError, EOFError) as e:
        raise ModelFormatError(f"cannot read tokenizer file {path}: {e}") from None


def read_json(path: Path) -> object:
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ModelFormatError(f"tokenizer file {path} is not valid JSON: {e}") from None


def _read_json_object(path: Path) -> dict:
    loaded = read_json(path)
    if not isinstance(loaded, dict):
        raise ModelFormatError(f"tokenizer file {path} is not a JSON object")
    return loaded


def parse_merges(lines: Iterable[str], path: Path) -> list[tuple[str, str]]:
    merges: list[tuple[str, str]] = []
    for lineno, line in enumerate(lines, start=1):
        line = line.rstrip("\r")
        if not line or line.startswith("#version"):
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise ModelFormatError(f"bad merge on line {lineno} of {path}: {line!r}")
        merges.append((parts[0], parts[1]))
    return merges


def read_openai_bpe(path: Path) -> TokenizerFiles:
    """OpenAI's merges file: a header line, then merges. The vocabulary is 256 byte characters,
    the same with `</w>`, one entry per merge, then SOT and EOT."""
    lines = read_text(path).split("\n")
    merges = parse_merges(lines[1 : 1 + OPENAI_MERGE_COUNT], path)
    if not merges:
        raise ModelFormatError(f"OpenAI BPE file {path} holds no merges")
    tokens = list(bytes_to_unicode().values())
    tokens += [t + END_OF_WORD for t in tokens]
    tokens += [a + b for a, b in merges]
    tokens += [SOT_TOKEN, EOT_TOKEN]
    vocab = {t: i for i, t in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise ModelFormatError(f"OpenAI BPE file {path} repeats a merge")
    return TokenizerFiles(vocab, merges)


def _token_content(value: object) -> str | None:
    """A special token as written in the JSON files: a string or an AddedToken dict."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def read_folder(folder: Path) -> TokenizerFiles:
    """A diffusers/transformers tokenizer folder."""
    if not folder.is_dir():
        raise ModelFormatError(f"tokenizer folder not found: {folder}")
    vocab_path = folder / "vocab.json"
    if not vocab_path.is_file() and (folder / "tokenizer.json").is_file():
        # transformers 5 saves only the `tokenizers` JSON: same vocabulary and merges inside.
        vocab, merges = _read_tokenizer_json(folder / "tokenizer.json")
    else:
        vocab = read_json(vocab_path)
        if not isinstance(vocab, dict):
            raise ModelFormatError(f"tokenizer file {vocab_path} does not hold a token->id mapping")
        merges_path = folder / "merges.txt"
        merges = parse_merges(read_text(merges_path).split("\n"), merges_path)
    roles, specials = _read_special_tokens(folder)
    pad = None
    # Later roles win a shared token's `normalized` flag, as in transformers' _post_init, which
    # registers every role's token as a special token in this order.
    for role in SPECIAL_ROLES:
        if role in roles:
            content, normalized = roles[role]
            specials[content] = normalized
            if role == "pad_token":
                pad = (content, normalized)
    for content in specials:
        if content not in vocab:
            raise ModelFormatError(f"special token {content!r} named in {folder} is not in vocab.json")
    return TokenizerFiles(vocab, merges, specials, pad)


def _read_tokenizer_json(path: Path) -> tuple[dict, list[tuple[str, str]]]:
    """Vocabulary and merges from a `tokenizers` tokenizer.json holding a BPE model."""
    data = read_json(path)
    model = data.get("model") if isinstance(data, dict) else None
    if not isinstance(model, dict) or model.get("type") != "BPE" or not isinstance(model.get("vocab"), dict):
        raise ModelFormatError(f"tokenizer file {path} does not hold a BPE model")
    raw_merges = model.get("merges")
    if not isinstance(raw_merges, list):
        raise ModelFormatError(f"tokenizer file {path} has no merges list")
    # Older files write merges as "a b" strings, newer ones as ["a", "b"] pairs.
    lines = ["#version: 0.2"] + [m if isinstance(m, str) else " ".join(m) for m in raw_merges]
    return model["vocab"], parse_merges(lines, path)


def _read_special_tokens(folder: Path) -> tuple[dict[str, tuple[str, bool]], dict[str, bool]]:
    """Role -> (text, normalized), plus other tokens listed in `added_tokens_decoder`."""
    config_path = folder / "tokenizer_config.json"
    config = _read_json_object(config_path) if config_path.is_file() else {}
    values = {role: config[role] for role in SPECIAL_ROLES if config.get(role) is not None}
    extra: dict[str, bool] = {}
    decoder = config.get("added_tokens_decoder")
    if isinstance(decoder, dict):
        # Newer saves: flags live in added_tokens_decoder and special_tokens_map.json is ignored.
        for entry in decoder.values():
            content = _token_content(entry)
            if content is None or not isinstance(entry, dict):
                raise ModelFormatError(f"bad added_tokens_decoder entry in {config_path}: {entry!r}")
            extra[content] = bool(entry.get("normalized", not entry.get("special", False)))
        for role, value in list(values.items()):
            content = _token_content(value)
            if content in extra:
                values[role] = {"content": content, "normalized": extra[content]}
    else:
        map_path = folder / "special_tokens_map.json"
        if map_path.is_file():
            special = _read_json_object(map_path)
            for role in SPECIAL_ROLES:
                if special.get(role) is not None:
                    values[role] = special[role]
    roles: dict[str, tuple[str, bool]] = {}
    for role, value in values.items():
        content = _token_content(value)
        if content is None:
            raise ModelFormatError(f"bad {role} in {folder}: {value!r}")
        # A bare string is a raw special token; so is a dict without "normalized", because
        # transformers builds it with special=True and `normalized` defaults to `not special`.
        normalized = bool(value.get("normalized", False)) if isinstance(value, dict) else False
        roles[role] = (content, normalized)
    return roles, extra


def write_folder(
    folder: Path,
    vocab: dict[str, int],
    merges: list[tuple[str, str]],
    sot: tuple[str, bool],
    eot: tuple[str, bool],
    pad: tuple[str, bool],
) -> Path:
    """Write the four files transformers' `CLIPTokenizer.from_pretrained` reads."""
    folder.mkdir(parents=True, exist_ok=True)

    def added(token: tuple[str, bool]) -> dict[str, object]:
        return {"content": token[0], "lstrip": False, "normalized": token[1], "rstrip": False,
                "single_word": False}

    ordered = dict(sorted(vocab.items(), key=lambda kv: kv[1]))
    (folder / "vocab.json").write_text(json.dumps(ordered, ensure_ascii=False), encoding="utf-8")
    merges_text = "\n".join([MERGES_HEADER] + [f"{a} {b}" for a, b in merges]) + "\n"
    (folder / "merges.txt").write_text(merges_text, encoding="utf-8")
    special = {"bos_token": added(sot), "eos_token": added(eot), "unk_token": added(eot), "pad_token": added(pad)}
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": 77,
        "do_lower_case": True,
        "add_prefix_space": False,
        "errors": "replace",
        **special,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2), encoding="utf-8")
    return folder
