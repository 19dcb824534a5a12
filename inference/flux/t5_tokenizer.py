"""The T5 (SentencePiece Unigram) tokenizer, run by the `tokenizers` library from the model
folder's `tokenizer.json`, framed as diffusers' FLUX/SD3 pipelines frame it.

`tokenizer(prompt, padding="max_length", max_length=N, truncation=True)` in transformers gives:
the pieces, truncated to N − 1, then `</s>`, then `<pad>` up to N. We do exactly that on the
library's raw encoding (its own padding, truncation and post-processor are switched off, so
what the file configures for them cannot change the framing).

transformers ≥ 5 (the version diffusers' FLUX pipelines run with here) does not use the file's
text pipeline as is: its `T5Tokenizer` keeps the Unigram vocabulary and the added (special)
tokens, keeps only the SentencePiece `Precompiled` normaliser (dropping e.g. the " {2,}" → " "
replacement), and splits on whitespace before the "▁" Metaspace step. That differs from the file
only on whitespace edge cases (a prompt of only spaces gives no piece instead of "▁"); we rebuild
it the same way so token ids match the reference pipeline.
"""
from __future__ import annotations

import base64
import json
from pathlib import Path

import torch

from ..errors import ModelFormatError

SCHNELL_MAX_LENGTH = 256  # FLUX.1 schnell was distilled with 256 T5 tokens
DEV_MAX_LENGTH = 512


def _special(config: dict, name: str, default: str) -> str:
    value = config.get(name, default)
    if isinstance(value, dict):  # {"content": "</s>", ...} in some tokenizer_config.json files
        value = value.get("content", default)
    return str(value)


def _as_transformers_builds_it(backend, data: dict) -> None:
    """Replace the normaliser and pre-tokeniser as transformers' T5Tokenizer does (module doc)."""
    from tokenizers import normalizers, pre_tokenizers

    if (data.get("model") or {}).get("type") != "Unigram":
        raise ValueError("not a Unigram (SentencePiece) vocabulary")
    config = data.get("normalizer") or []
    config = config.get("normalizers", []) if isinstance(config, dict) and config.get("type") == "Sequence" else config
    config = [config] if isinstance(config, dict) else config
    charsmap = next((n["precompiled_charsmap"] for n in config
                     if n.get("type") == "Precompiled" and "precompiled_charsmap" in n), None)
    backend.normalizer = normalizers.Precompiled(base64.b64decode(charsmap)) if charsmap else None
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)])


class T5Tokenizer:
    def __init__(self, backend, eos_token: str = "</s>", pad_token: str = "<pad>", source: str = ""):
        self._backend = backend
        self._backend.no_padding()
        self._backend.no_truncation()
        self.source = source
        eos, pad = backend.token_to_id(eos_token), backend.token_to_id(pad_token)
        if eos is None or pad is None:
            raise ModelFormatError(f"{source}: the T5 vocabulary lacks {eos_token!r} or {pad_token!r}")
        self.eos_token_id, self.pad_token_id = int(eos), int(pad)

    @classmethod
    def from_folder(cls, folder: str | Path) -> T5Tokenizer:
        """`tokenizer_2/` of a FLUX folder (`tokenizer.json`, optionally `tokenizer_config.json`)."""
        from tokenizers import Tokenizer

        folder = Path(folder)
        path = folder / "tokenizer.json"
        if not path.is_file():
            if (folder / "spiece.model").is_file():
                raise ModelFormatError(f"{folder}: only spiece.model is present; the engine reads the T5 "
                                       "vocabulary from tokenizer.json (published with every FLUX folder)")
            raise ModelFormatError(f"{folder}: no tokenizer.json")
        try:
            backend = Tokenizer.from_file(str(path))
            _as_transformers_builds_it(backend, json.loads(path.read_text(encoding="utf-8")))
        except Exception as exc:  # noqa: BLE001 - the library raises its own exception types
            raise ModelFormatError(f"{path}: unreadable tokenizer ({exc})") from None
        config: dict = {}
        for name in ("special_tokens_map.json", "tokenizer_config.json"):
            file = folder / name
            if file.is_file():
                try:
                    config.update(json.loads(file.read_text(encoding="utf-8")))
                except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                    raise ModelFormatError(f"{file}: unreadable JSON ({exc})") from None
        return cls(backend, _special(config, "eos_token", "</s>"), _special(config, "pad_token", "<pad>"),
                   source=str(folder))

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` without `</s>` or padding."""
        return list(self._backend.encode(text, add_special_tokens=False).ids)

    def __call__(self, text: str, max_length: int) -> torch.Tensor:
        """int64 (1, max_length): ids truncated to max_length − 1, `</s>`, `<pad>` padding."""
        if max_length < 1:
            raise ValueError(f"max_length {max_length} leaves no room for </s>")
        ids = self.encode(text)[: max_length - 1] + [self.eos_token_id]
        ids += [self.pad_token_id] * (max_length - len(ids))
        return torch.tensor([ids], dtype=torch.long)
