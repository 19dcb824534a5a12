"""The render farm: final renders, variations and prompt batches on a Ray cluster.

One Ray actor per worker (`worker.FarmWorker`) holds loaded models keyed by model content hash
plus LoRA set; the client (`client.Farm`) places jobs (`scheduler`), ships models and LoRA files
once by content hash (`models`), streams progress back and retries a job whose worker died. Jobs travel
as plain dicts and numpy arrays (`jobs`), validated on arrival. The live preview stays local.

Importing this package imports neither Ray nor torch: `jobs`, `scheduler` and `models` are
usable (and tested) without either; `client` imports Ray when connecting, `worker` when run.
"""
from __future__ import annotations

from .errors import FarmError, FarmPayloadError, FarmUnavailableError, ModelTransferError
from .jobs import FarmJob, FarmResult, ModelSpec, Notice, Progress

__all__ = ["FarmError", "FarmJob", "FarmPayloadError", "FarmResult", "FarmUnavailableError", "ModelSpec",
           "ModelTransferError", "Notice", "Progress"]
