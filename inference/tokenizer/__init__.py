"""CLIP tokenization for the diffusion engine.

* `bpe.CLIPTokenizer` — our byte-level BPE, id-for-id equal to transformers' CLIPTokenizer.
* `weighting.parse_prompt_weights` — A1111 emphasis syntax: (word), [word], (word:1.3), BREAK.
* `chunks.tokenize` — diffusers' single 77-token row; `chunks.tokenize_weighted` — A1111's
  75-token chunks with per-token weights; `chunks.apply_weights` — emphasis on embeddings.
"""
from inference.tokenizer.bpe import CLIPTokenizer, default_vocab_path
from inference.tokenizer.chunks import (
    CHUNK_LENGTH,
    COMMA_BACKTRACK,
    TOKENS_PER_CHUNK,
    TokenChunks,
    apply_weights,
    tokenize,
    tokenize_weighted,
)
from inference.tokenizer.vocab_files import EOT_TOKEN, SOT_TOKEN
from inference.tokenizer.weighting import BREAK_MARKER, is_break, parse_prompt_weights

__all__ = [
    "BREAK_MARKER",
    "CHUNK_LENGTH",
    "COMMA_BACKTRACK",
    "CLIPTokenizer",
    "EOT_TOKEN",
    "SOT_TOKEN",
    "TOKENS_PER_CHUNK",
    "TokenChunks",
    "apply_weights",
    "default_vocab_path",
    "is_break",
    "parse_prompt_weights",
    "tokenize",
    "tokenize_weighted",
]
