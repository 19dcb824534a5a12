"""Turning a prompt into CLIP-sized token chunks, and applying emphasis weights to embeddings.

Two paths:

* `tokenize` — what diffusers pipelines do (`padding="max_length", max_length=77,
  truncation=True`): one row, SOT + the first 75 tokens + EOT + pad. Used for unweighted,
  diffusers-exact conditioning.
* `tokenize_weighted` — A1111's long-prompt scheme: the prompt (with emphasis syntax, see
  `weighting`) is cut into as many 77-token chunks as needed, each SOT + up to 75 tokens + EOT +
  pad, with a per-token weight (1.0 on SOT/EOT/pad). The encoder runs once per chunk and the
  results are concatenated along the sequence axis.

Chunk rules, as in A1111's `tokenize_line`:

* a chunk holds at most 75 prompt tokens; the next token starts a new chunk;
* comma back-tracking: when a chunk is full and the next token is not a comma, and the chunk's
  last comma token (",</w>") sits within the last `comma_backtrack` (default 20) tokens, the
  tokens after that comma move to the next chunk, so a phrase is not cut in half;
* BREAK closes the current chunk, even an empty one ("BREAK a" gives an all-padding chunk and
  then "a"); a trailing BREAK adds nothing; an empty prompt gives exactly one chunk;
* each emphasis fragment is tokenized on its own, so a bracket also splits a word.

The padding layout is diffusers' (EOT right after the last token, then pad ids); A1111 ends up
with the same layout because it overwrites everything after the first EOT with its pad id.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from inference.errors import InvalidRequestError
from inference.tokenizer.bpe import CLIPTokenizer
from inference.tokenizer.weighting import is_break, parse_prompt_weights

CHUNK_LENGTH = 77
TOKENS_PER_CHUNK = CHUNK_LENGTH - 2
COMMA_BACKTRACK = 20


@dataclass(frozen=True)
class TokenChunks:
    """`ids`: int64 [n_chunks, 77]; `weights`: float32 [n_chunks, 77]; `token_count`: prompt
    tokens in all chunks (SOT/EOT/pad and BREAK padding not counted)."""

    ids: torch.Tensor
    weights: torch.Tensor
    token_count: int

    @property
    def n_chunks(self) -> int:
        return int(self.ids.shape[0])

    @property
    def is_unweighted(self) -> bool:
        return bool((self.weights == 1.0).all())


def _resolve_pad(tokenizer: CLIPTokenizer, pad_token_id: int | None) -> int:
    if pad_token_id is None:
        return tokenizer.pad_token_id
    if tokenizer.id_to_token(pad_token_id) is None:
        raise InvalidRequestError(f"pad token id {pad_token_id!r} is not in the tokenizer vocabulary")
    return pad_token_id


def _frame(tokenizer: CLIPTokenizer, tokens: list[int], pad: int, length: int) -> list[int]:
    return [tokenizer.sot_token_id, *tokens, tokenizer.eot_token_id] + [pad] * (length - 2 - len(tokens))


def tokenize(
    tokenizer: CLIPTokenizer, text: str, pad_token_id: int | None = None, max_length: int = CHUNK_LENGTH
) -> torch.Tensor:
    """int64 [1, max_length]: SOT + tokens truncated to max_length-2 + EOT + padding.

    Equals transformers' `tokenizer(text, padding="max_length", max_length=77,
    truncation=True).input_ids` when `tokenizer` has the same pad token. `pad_token_id`
    (default: the tokenizer's) only changes the padding ids, not which strings are special.
    """
    if max_length < 2:
        raise InvalidRequestError(f"max_length {max_length} leaves no room for SOT and EOT")
    pad = _resolve_pad(tokenizer, pad_token_id)
    tokens = tokenizer.encode(text)[: max_length - 2]
    return torch.tensor([_frame(tokenizer, tokens, pad, max_length)], dtype=torch.long)


def tokenize_weighted(
    tokenizer: CLIPTokenizer,
    text: str,
    pad_token_id: int | None = None,
    *,
    comma_backtrack: int = COMMA_BACKTRACK,
) -> TokenChunks:
    """Chunk an A1111-syntax prompt into 77-token rows with per-token weights (see module doc).

    `comma_backtrack` = 0 turns comma back-tracking off.
    """
    pad = _resolve_pad(tokenizer, pad_token_id)
    comma = tokenizer.comma_token_id
    chunks: list[tuple[list[int], list[float]]] = []
    tokens: list[int] = []
    weights: list[float] = []
    last_comma = -1
    token_count = 0

    def close_chunk() -> None:
        nonlocal tokens, weights, last_comma, token_count
        token_count += len(tokens)
        chunks.append((tokens, weights))
        tokens, weights, last_comma = [], [], -1

    for fragment in parse_prompt_weights(text):
        if is_break(fragment):
            close_chunk()
            continue
        fragment_text, weight = fragment
        for token in tokenizer.encode(fragment_text):
            if token == comma:
                last_comma = len(tokens)
            elif (
                comma_backtrack > 0
                and len(tokens) == TOKENS_PER_CHUNK
                and last_comma != -1
                and len(tokens) - last_comma <= comma_backtrack
            ):
                # Move what follows the comma into the next chunk, keeping the comma here.
                cut = last_comma + 1
                moved_tokens, moved_weights = tokens[cut:], weights[cut:]
                tokens, weights = tokens[:cut], weights[:cut]
                close_chunk()
                tokens, weights = moved_tokens, moved_weights
            if len(tokens) == TOKENS_PER_CHUNK:
                # A1111 quirk kept: a comma arriving here was recorded at index 75 and is
                # forgotten by the reset, so it cannot anchor back-tracking in the new chunk.
                close_chunk()
            tokens.append(token)
            weights.append(weight)

    if tokens or not chunks:
        close_chunk()

    ids = [_frame(tokenizer, t, pad, CHUNK_LENGTH) for t, _ in chunks]
    mults = [[1.0, *w, 1.0] + [1.0] * (TOKENS_PER_CHUNK - len(w)) for _, w in chunks]
    return TokenChunks(
        ids=torch.tensor(ids, dtype=torch.long),
        weights=torch.tensor(mults, dtype=torch.float32),
        token_count=token_count,
    )


def apply_weights(z: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """A1111 emphasis: scale each token's embedding by its weight, then rescale each chunk so
    its overall mean is what it was before (z * mean_before / mean_after).

    `z`: [n_chunks, 77, dim] encoder output; `weights`: [n_chunks, 77]. Returns `z` itself when
    every weight is 1.0, so unweighted prompts stay bit-identical to diffusers. The mean is taken
    per chunk because A1111 encodes and rescales one chunk at a time. A chunk whose weighted
    mean is exactly 0 is left scaled but not rescaled (A1111 would divide by zero).
    """
    if z.dim() != 3 or tuple(weights.shape) != tuple(z.shape[:2]):
        raise InvalidRequestError(
            f"weights of shape {tuple(weights.shape)} do not match embeddings of shape {tuple(z.shape)}"
        )
    if bool((weights == 1.0).all()):
        return z
    w = weights.to(device=z.device, dtype=z.dtype)
    mean_before = z.mean(dim=(1, 2), keepdim=True)
    scaled = z * w.unsqueeze(-1)
    mean_after = scaled.mean(dim=(1, 2), keepdim=True)
    safe_after = torch.where(mean_after == 0, torch.ones_like(mean_after), mean_after)
    ratio = torch.where(mean_after == 0, torch.ones_like(mean_after), mean_before / safe_after)
    return scaled * ratio
