"""Moved to :mod:`inference.tiled_decode` (the engine facade owns the out-of-memory fallback)."""
from inference.tiled_decode import (  # noqa: F401 - re-exported for existing imports
    DEFAULT_TILES,
    OutOfMemoryError,
    decode_with_fallback,
    free_memory,
    guard_decode,
    is_out_of_memory,
    tiled_decode,
)
