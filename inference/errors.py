"""Errors the engine raises for bad input.

Every one of them carries a message that names the file or value at fault, so the CLI can print
it as one line and the editor can show it in a status message without a traceback.
"""
from __future__ import annotations


class InferenceError(Exception):
    """Base class: a user-facing problem with the input, not a bug."""


class ModelFormatError(InferenceError):
    """A model file or folder is malformed, truncated, unsafe or of an unsupported layout."""


class UnsupportedModelError(InferenceError):
    """The file is well-formed but its architecture is not one the engine can run."""


class InvalidRequestError(InferenceError):
    """A generation request has a bad value (size, strength, mask size, sampler name…)."""


class CancelledError(InferenceError):
    """The caller asked the engine to stop; nothing was produced."""
