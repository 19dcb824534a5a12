"""CLIP byte-level BPE tokenizer, our own implementation.

Behaviour target: `transformers.CLIPTokenizer` 5.x, which is what diffusers pipelines call. In
transformers 5 that class is backed by the Rust `tokenizers` library (the old pure-Python "slow"
CLIP tokenizer, with its ftfy/BasicTokenizer clean-up, no longer exists). Its pipeline is:

1. special tokens written in the text are cut out first and map straight to their ids. These are
   SOT, EOT *and the pad token*: with SD2's pad "!" every "!" becomes id 0. Tokens flagged
   `normalized` are matched after step 2 instead (so case-insensitively);
2. normaliser (`normalize.py`): NFC, whitespace runs -> one space, per-character lowercasing;
   no accent stripping, control-character removal or CJK spacing;
3. pre-tokeniser: pieces are contractions (`'s 't 're 've 'm 'll 'd`), runs of letters (\\p{L}),
   single digits (\\p{N}) and runs of anything else that is not whitespace; whitespace is dropped;
4. each piece is turned into UTF-8 bytes mapped to printable characters, `</w>` is appended to its
   last character, and BPE merges are applied lowest rank first.

Letter/number classes come from Python's `unicodedata` (Unicode 14 on Python 3.11) while
`tokenizers`' regex engine knows newer Unicode: code points unassigned in Python's tables but
assigned since (category Cn here) may split differently. Prompts do not use them.
"""
from __future__ import annotations

import heapq

import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path

from inference.errors import InvalidRequestError, ModelFormatError
from inference.tokenizer import vocab_files
from inference.tokenizer.normalize import WHITESPACE, normalize
from inference.tokenizer.vocab_files import END_OF_WORD, EOT_TOKEN, SOT_TOKEN

_CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")

# Past this many distinct pieces the BPE cache is dropped; prompts reuse a small vocabulary, so
# this only bounds memory for pathological input.
_CACHE_LIMIT = 50_000

_BYTE_TO_CHAR = vocab_files.bytes_to_unicode()
_CHAR_TO_BYTE = {c: b for b, c in _BYTE_TO_CHAR.items()}


def _char_class(ch: str) -> str:
    if ch in WHITESPACE:
        return " "
    cat = unicodedata.category(ch)[0]
    if cat == "L" or cat == "N":
        return cat
    return "P"


def _contraction_at(text: str, i: int) -> str | None:
    for c in _CONTRACTIONS:
        if text.startswith(c, i):
            return c
    return None


def split_pieces(text: str) -> Iterator[str]:
    """Split normalised text into the pieces BPE runs on (the CLIP pre-tokeniser pattern)."""
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "<" and (text.startswith(SOT_TOKEN, i) or text.startswith(EOT_TOKEN, i)):
            # The CLIP pattern keeps a (non-special, e.g. lowercased) "<|endoftext|>" whole,
            # then the byte-level step splits it again, so only its edges differ from the
            # generic rules: "<|endoftext|>'s" gives "|>" and "'s", not "|>'" and "s".
            word = SOT_TOKEN if text.startswith(SOT_TOKEN, i) else EOT_TOKEN
            yield "<|"
            yield word[2:-2]
            yield "|>"
            i += len(word)
            continue
        # Contractions are tried first, and only where a piece starts: "'s" after a letter
        # becomes its own piece, but inside a punctuation run ("!'s") the quote stays put.
        contraction = _contraction_at(text, i) if ch == "'" else None
        if contraction is not None:
            yield contraction
            i += len(contraction)
            continue
        kind = _char_class(ch)
        if kind == " ":
            i += 1
            continue
        if kind == "N":
            # Digits are always single pieces, so "1024" is four tokens.
            yield ch
            i += 1
            continue
        j = i + 1
        while j < n and _char_class(text[j]) == kind:
            j += 1
        yield text[i:j]
        i = j


def _split_special(text: str, specials: tuple[str, ...]) -> Iterator[tuple[str, bool]]:
    """Cut the given special tokens out of `text` (leftmost match, longest on a tie)."""
    start = 0
    n = len(text)
    while start < n and specials:
        hits = [(text.find(t, start), -len(t), t) for t in specials]
        hits = [h for h in hits if h[0] >= 0]
        if not hits:
            break
        pos, _, token = min(hits)
        if pos > start:
            yield text[start:pos], False
        yield token, True
        start = pos + len(token)
    if start < n:
        yield text[start:], False


def default_vocab_path() -> Path:
    """Where the shipped OpenAI CLIP merges file lives (`assets/clip/` at the repo root)."""
    return Path(__file__).resolve().parents[2] / "assets" / "clip" / "bpe_simple_vocab_16e6.txt.gz"


class CLIPTokenizer:
    """Byte-level BPE tokenizer for CLIP text encoders.

    `encode` returns ids without start/end tokens; `sot_token_id`, `eot_token_id` and
    `pad_token_id` give the ids a caller frames them with. SD1 and SDXL's first encoder pad with
    EOT (49407); SD2 and SDXL's second (OpenCLIP) encoder pad with 0 ("!"). Choose with the
    `pad_token_id` argument of `default`/`from_folder`, with `with_pad_token_id`, or let
    `from_folder` read it from the folder's config. The pad token is also a special token (see
    the module docstring), so set it on the tokenizer rather than only when padding.
    """

    def __init__(
        self,
        vocab: dict[str, int],
        merges: list[tuple[str, str]],
        *,
        pad_token_id: int | None = None,
        special_tokens: dict[str, bool] | None = None,
        source: str = "<memory>",
    ) -> None:
        """`special_tokens` maps extra special tokens' text to their `normalized` flag; SOT
        and EOT are always special (raw unless given here)."""
        self._source = source
        self._vocab = vocab
        self._merges = merges
        self._validate()
        self._decoder = {i: t for t, i in vocab.items()}
        self._ranks = {pair: rank for rank, pair in enumerate(merges)}
        self._cache: dict[str, tuple[int, ...]] = {}
        self.sot_token_id: int = vocab[SOT_TOKEN]
        self.eot_token_id: int = vocab[EOT_TOKEN]
        base = {SOT_TOKEN: False, EOT_TOKEN: False}
        base.update(special_tokens or {})
        for token in base:
            if token not in vocab:
                raise ModelFormatError(f"special token {token!r} in {source} is not in the vocabulary")
        self._base_specials = base
        self._pad_token_id = self.eot_token_id
        self._pad_normalized = base[EOT_TOKEN]
        self._refresh_specials()
        if pad_token_id is not None:
            self.pad_token_id = pad_token_id

    def _validate(self) -> None:
        src = self._source
        if not isinstance(self._vocab, dict) or not self._vocab:
            raise ModelFormatError(f"tokenizer vocabulary in {src} is empty or not a mapping")
        for token, idx in self._vocab.items():
            if not isinstance(token, str) or not isinstance(idx, int) or isinstance(idx, bool) or idx < 0:
                raise ModelFormatError(f"bad vocabulary entry {token!r}: {idx!r} in {src}")
        for token in (SOT_TOKEN, EOT_TOKEN):
            if token not in self._vocab:
                raise ModelFormatError(f"tokenizer vocabulary in {src} lacks {token}")
        # Byte-level BPE must be able to spell any byte, inside a word and at its end.
        for ch in _BYTE_TO_CHAR.values():
            if ch not in self._vocab or ch + END_OF_WORD not in self._vocab:
                raise ModelFormatError(
                    f"tokenizer vocabulary in {src} is not a CLIP byte-level vocabulary (missing {ch!r})"
                )
        for a, b in self._merges:
            # `tokenizers` refuses a merge whose parts or result are not in the vocabulary.
            if a not in self._vocab or b not in self._vocab or a + b not in self._vocab:
                raise ModelFormatError(f"merge {a!r} {b!r} in {src} is not in the vocabulary")

    def _refresh_specials(self) -> None:
        # transformers registers the pad token as a special token too, after the others.
        specials = dict(self._base_specials)
        specials[self._decoder[self._pad_token_id]] = self._pad_normalized
        self._raw_specials = tuple(t for t, norm in specials.items() if not norm)
        self._normalized_specials = tuple(t for t, norm in specials.items() if norm)

    # ---- construction -------------------------------------------------------------------

    @classmethod
    def _from_files(cls, files: vocab_files.TokenizerFiles, source: str, pad_token_id: int | None) -> "CLIPTokenizer":
        tok = cls(files.vocab, files.merges, special_tokens=files.special_tokens, source=source)
        if files.pad_token is not None:
            tok._pad_token_id = files.vocab[files.pad_token[0]]
            tok._pad_normalized = files.pad_token[1]
            tok._refresh_specials()
        if pad_token_id is not None:
            tok.pad_token_id = pad_token_id
        return tok

    @classmethod
    def from_folder(cls, path: str | Path, pad_token_id: int | None = None) -> "CLIPTokenizer":
        """Load a diffusers/transformers tokenizer folder (`vocab.json` + `merges.txt`).

        Special tokens, the pad token included, come from `special_tokens_map.json` and
        `tokenizer_config.json` the way transformers resolves them; without either, EOT pads.
        `pad_token_id`, when given, overrides the folder's pad token.
        """
        folder = Path(path)
        return cls._from_files(vocab_files.read_folder(folder), str(folder), pad_token_id)

    @classmethod
    def from_openai_bpe(cls, path: str | Path, pad_token_id: int | None = None) -> "CLIPTokenizer":
        """Load OpenAI's `bpe_simple_vocab_16e6.txt(.gz)` (49408 entries, SOT 49406, EOT 49407)."""
        p = Path(path)
        return cls._from_files(vocab_files.read_openai_bpe(p), str(p), pad_token_id)

    @classmethod
    def default(cls, pad_token_id: int | None = None) -> "CLIPTokenizer":
        """The CLIP vocabulary shipped in `assets/clip/` (shared by SD1, SD2 and SDXL)."""
        return cls.from_openai_bpe(default_vocab_path(), pad_token_id=pad_token_id)

    def with_pad_token_id(self, pad_token_id: int) -> "CLIPTokenizer":
        """A tokenizer sharing this one's tables and cache but padding with `pad_token_id`."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.pad_token_id = pad_token_id
        return clone

    def write_folder(self, path: str | Path) -> Path:
        """Write vocab.json, merges.txt, tokenizer_config.json and special_tokens_map.json so
        that `transformers.CLIPTokenizer.from_pretrained(path)` loads an equivalent tokenizer
        offline (same ids, same pad token)."""
        return vocab_files.write_folder(
            Path(path),
            self._vocab,
            self._merges,
            sot=(SOT_TOKEN, self._base_specials[SOT_TOKEN]),
            eot=(EOT_TOKEN, self._base_specials[EOT_TOKEN]),
            pad=(self._decoder[self._pad_token_id], self._pad_normalized),
        )

    # ---- properties ---------------------------------------------------------------------

    @property
    def pad_token_id(self) -> int:
        return self._pad_token_id

    @pad_token_id.setter
    def pad_token_id(self, value: int) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value not in self._decoder:
            raise InvalidRequestError(f"pad token id {value!r} is not in the tokenizer vocabulary")
        self._pad_token_id = value
        # Like passing `pad_token="..."` to transformers: a plain string, so a raw special token.
        self._pad_normalized = False
        self._refresh_specials()

    @property
    def vocab_size(self) -> int:
        return len(self._vocab)

    @property
    def source(self) -> str:
        """The file or folder this tokenizer was read from."""
        return self._source

    @property
    def comma_token_id(self) -> int | None:
        """Id of a lone comma ending a word — what A1111's comma back-tracking looks for."""
        return self._vocab.get("," + END_OF_WORD)

    def token_to_id(self, token: str) -> int | None:
        return self._vocab.get(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self._decoder.get(token_id)

    # ---- encoding -----------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Token ids for `text`, without SOT/EOT, matching transformers' CLIPTokenizer."""
        ids: list[int] = []
        # Like `tokenizers`' added vocabulary: raw special tokens are cut out of the raw text,
        # the rest is normalised, then "normalized" special tokens are cut out of that.
        for raw, is_special in _split_special(text, self._raw_specials):
            if is_special:
                ids.append(self._vocab[raw])
                continue
            for part, is_special2 in _split_special(normalize(raw), self._normalized_specials):
                if is_special2:
                    ids.append(self._vocab[part])
                    continue
                for piece in split_pieces(part):
                    ids.extend(self._bpe(piece))
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Approximate inverse of `encode` (words separated by single spaces), for display."""
        chars = "".join(self._decoder.get(i, "") for i in ids).replace(END_OF_WORD, " ")
        out = bytearray()
        for ch in chars:
            b = _CHAR_TO_BYTE.get(ch)
            out.extend(ch.encode("utf-8") if b is None else bytes([b]))
        return out.decode("utf-8", errors="replace").strip()

    def _bpe(self, piece: str) -> tuple[int, ...]:
        cached = self._cache.get(piece)
        if cached is not None:
            return cached
        symbols = [_BYTE_TO_CHAR[b] for b in piece.encode("utf-8")]
        symbols[-1] += END_OF_WORD
        ranks = self._ranks
        if len(symbols) > _HEAP_FROM:
            symbols = _merge_with_heap(symbols, ranks)
        while len(symbols) > 1:
            # The lowest-ranked adjacent pair is merged everywhere, left to right; with a
            # well-formed merge list this equals `tokenizers`' priority-queue order.
            best: tuple[str, str] | None = None
            best_rank = len(ranks)
            for pair in zip(symbols, symbols[1:]):
                rank = ranks.get(pair)
                if rank is not None and rank < best_rank:
                    best, best_rank = pair, rank
            if best is None:
                break
            first, second = best
            merged: list[str] = []
            i = 0
            while i < len(symbols):
                if i + 1 < len(symbols) and symbols[i] == first and symbols[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        result = tuple(self._vocab[s] for s in symbols)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[piece] = result
        return result


# Pieces longer than this (no real word is) are merged with a priority queue: the loop above
# rescans the whole piece once per merge, which is quadratic — a 20 000-letter "word" took 8 s.
_HEAP_FROM = 64


def _merge_with_heap(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """The same merges as the loop in `_bpe`, in O(n log n): pairs pop in (rank, position) order,
    which is "lowest rank first, everywhere, left to right" (a merged symbol only takes part in
    later-ranked merges, so no pair of a lower rank can appear after a merge)."""
    n = len(symbols)
    sym = list(symbols)
    nxt = list(range(1, n + 1))
    nxt[-1] = -1
    prev = list(range(-1, n - 1))
    alive = [True] * n
    heap = []
    for i in range(n - 1):
        rank = ranks.get((sym[i], sym[i + 1]))
        if rank is not None:
            heap.append((rank, i, sym[i], sym[i + 1]))
    heapq.heapify(heap)
    while heap:
        _, i, first, second = heapq.heappop(heap)
        if not alive[i] or sym[i] != first:
            continue
        j = nxt[i]
        if j < 0 or sym[j] != second:
            continue
        sym[i] = first + second
        alive[j] = False
        nxt[i] = nxt[j]
        if nxt[j] >= 0:
            prev[nxt[j]] = i
        p, q = prev[i], nxt[i]
        if p >= 0:
            rank = ranks.get((sym[p], sym[i]))
            if rank is not None:
                heapq.heappush(heap, (rank, p, sym[p], sym[i]))
        if q >= 0:
            rank = ranks.get((sym[i], sym[q]))
            if rank is not None:
                heapq.heappush(heap, (rank, i, sym[i], sym[q]))
    return [sym[i] for i in range(n) if alive[i]]
