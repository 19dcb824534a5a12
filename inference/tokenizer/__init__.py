"""CLIP tokenization for the diffusion engine.

* `bpe.CLIPTokenizer` — our byte-level BPE, id-for-id equal to transformers' CLIPTokenizer.
* `weighting.parse_prompt_weights` — A1111 emphasis syntax: (word), [word], (word:1.3), BREAK.
* `chunks.tokenize` — diffusers' single 77-token row; `chunks.tokenize_weighted` — A1111's
  75-token chunks with per-token weights; `chunks.apply_weights` — emphasis on embeddings.
"""
from inference.lazy import lazy_exports

# Submodules load on first use: request validation (torch-free `inference.api`) uses the prompt
# length check in `weighting` without pulling in torch through `chunks`.
_EXPORTS = {
    "CLIPTokenizer": "bpe", "default_vocab_path": "bpe",
    "CHUNK_LENGTH": "chunks", "COMMA_BACKTRACK": "chunks", "TOKENS_PER_CHUNK": "chunks", "TokenChunks": "chunks",
    "apply_weights": "chunks", "tokenize": "chunks", "tokenize_weighted": "chunks",
    "EOT_TOKEN": "vocab_files", "SOT_TOKEN": "vocab_files",
    "BREAK_MARKER": "weighting", "is_break": "weighting", "parse_prompt_weights": "weighting",
}

__getattr__ = lazy_exports(__name__, _EXPORTS)


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
