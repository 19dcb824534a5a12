"""File input/output for documents: OpenRaster, flat images, autosave."""

from .errors import DocumentFileError
from .images import document_from_image, export_flattened, import_image_as_layer, load_image
from .ora_read import OraLoadResult, load_ora, read_merged_image
from .ora_write import save_ora, write_ora
from .recovery import RecoveryFile, discard_recovery, find_recovery, save_recovery

__all__ = [
    "DocumentFileError",
    "OraLoadResult",
    "RecoveryFile",
    "discard_recovery",
    "document_from_image",
    "export_flattened",
    "find_recovery",
    "import_image_as_layer",
    "load_image",
    "load_ora",
    "read_merged_image",
    "save_ora",
    "save_recovery",
    "write_ora",
]
