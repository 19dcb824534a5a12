"""Safe reading and writing of model files.

`safetensors_header` validates a `.safetensors` header completely (no torch needed);
`safetensors_file` then reads tensors from the validated bytes; `pickle_sniff` recognises pickle
checkpoints and `pickle_checkpoint` offers the one explicit, weights-only way to convert them.
Model loaders call `check_not_pickle` and then `load_tensors`/`iter_tensors`.

Submodules are imported on first use, so importing this package (or its torch-free submodules)
never imports torch.
"""
from __future__ import annotations

from inference.lazy import lazy_exports

_EXPORTS = {
    "ConversionReport": "pickle_checkpoint", "convert_pickle_to_safetensors": "pickle_checkpoint",
    "check_not_pickle": "pickle_sniff", "sniff_pickle": "pickle_sniff",
    "SafetensorsHeader": "safetensors_header", "TensorInfo": "safetensors_header",
    "read_header": "safetensors_header", "tensor_shapes": "safetensors_header",
    "iter_tensors": "safetensors_file", "load_tensors": "safetensors_file", "save_tensors": "safetensors_file",
}

__getattr__ = lazy_exports(__name__, _EXPORTS)


__all__ = sorted(_EXPORTS)
