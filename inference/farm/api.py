"""The render farm's public surface for the editor (torch-free, Ray-free to import).

The editor reaches the engine only through facades (`inference.api`, `inference.engine`,
`inference.errors`); this module is the farm's. It re-exports what a farm *client* needs — job
and event types, connecting with a local fall-back, the address parser — and nothing of the
worker, the scheduler or model shipping, so those stay free to change (import-linter forbids the
editor every other `inference.farm` module). Ray is imported only when a farm is connected.
"""
from __future__ import annotations

from .client import DefaultLocalRunner, Farm, FarmJobHandle, LocalRunner, connect_or_local, local_threads, render
from .connection import parse_address
from .errors import FarmError, FarmUnavailableError
from .jobs import FarmJob, FarmResult, ModelSpec, Notice, Progress

__all__ = [
    "DefaultLocalRunner",
    "Farm",
    "FarmError",
    "FarmJob",
    "FarmJobHandle",
    "FarmResult",
    "FarmUnavailableError",
    "LocalRunner",
    "ModelSpec",
    "Notice",
    "Progress",
    "check_address",
    "connect_or_local",
    "local_threads",
    "parse_address",
    "render",
]


def check_address(address: str) -> str:
    """The address normalised as HOST:PORT (or ray://HOST:PORT), or FarmUnavailableError with
    one line naming the value; the same parser `Farm.connect` uses, so a setting that passes
    here is never refused later for its form."""
    scheme, host, port = parse_address(address)
    host = f"[{host}]" if ":" in host else host
    return f"{scheme + '://' if scheme else ''}{host}:{port}"
