"""Errors of the render farm: each carries one line for the status bar or the CLI's stderr."""
from __future__ import annotations

from ..errors import InferenceError


class FarmError(InferenceError):
    """A render-farm problem the user should see (as one line), not a bug."""


class FarmUnavailableError(FarmError):
    """The configured cluster cannot be reached, or has no worker left to take the job."""


class FarmPayloadError(FarmError):
    """A job, result, progress report or model shipment that arrived malformed or hostile."""


class ModelTransferError(FarmError):
    """Model bytes that did not match their announced SHA-256, size or format."""
