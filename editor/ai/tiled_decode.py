"""Moved into the engine (:mod:`inference.tiled_decode`, reached through the :mod:`inference.engine`
facade, which owns the out-of-memory fallback); these names stay importable from here."""
from inference.engine import DEFAULT_TILES, OutOfMemoryError, is_out_of_memory  # noqa: F401 - re-exported
