"""Numeric guards for what the models produce (torch-free at import).

`check_finite(values, what, hint)` raises InferenceError("the model produced NaN/Inf in the
<what>: <hint>") when a tensor or array holds a NaN or an infinity — e.g. a float16 VAE that
overflows, or a broken checkpoint — instead of writing a black or noise PNG.
"""
from __future__ import annotations

import math
from typing import Any

from inference.errors import InferenceError

DEFAULT_HINT = "try float32 / another VAE"


def _all_finite(values: Any) -> bool:
    module = type(values).__module__
    if module.startswith("torch"):
        import torch

        if not values.is_floating_point() and not values.is_complex():
            return True
        return bool(torch.isfinite(values).all())
    if module.startswith("numpy"):
        import numpy as np

        array = np.asarray(values)
        if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.complexfloating)):
            return True
        return bool(np.isfinite(array).all())
    if isinstance(values, (int, float)):
        return math.isfinite(values)
    if isinstance(values, (list, tuple)):
        return all(_all_finite(v) for v in values)
    import numpy as np

    return bool(np.isfinite(np.asarray(values, dtype=np.float64)).all())


def check_finite(values: Any, what: str, hint: str = DEFAULT_HINT) -> None:
    """InferenceError when `values` (torch tensor, numpy array, number or list) has a NaN or an Inf."""
    if not _all_finite(values):
        raise InferenceError(f"the model produced NaN/Inf in the {what}: {hint}")


__all__ = ["DEFAULT_HINT", "check_finite"]
