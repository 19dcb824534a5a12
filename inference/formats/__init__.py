"""Safe reading and writing of model files.

`safetensors_file` validates a `.safetensors` header completely before any tensor is read;
`pickle_checkpoint` refuses pickle checkpoints and offers the one explicit, weights-only way to
convert them. Model loaders should call `check_not_pickle` and then `load_tensors`/`iter_tensors`.
"""
from inference.formats.pickle_checkpoint import (
    ConversionReport,
    check_not_pickle,
    convert_pickle_to_safetensors,
    sniff_pickle,
)
from inference.formats.safetensors_file import (
    SafetensorsHeader,
    TensorInfo,
    iter_tensors,
    load_tensors,
    read_header,
    save_tensors,
    tensor_shapes,
)

__all__ = [
    "ConversionReport",
    "SafetensorsHeader",
    "TensorInfo",
    "check_not_pickle",
    "convert_pickle_to_safetensors",
    "iter_tensors",
    "load_tensors",
    "read_header",
    "save_tensors",
    "sniff_pickle",
    "tensor_shapes",
]
