"""The model catalog now lives in :mod:`editor.ai.catalog` (Qt-free, torch-free);
this name stays for the code and tests that import it from the UI package."""

from editor.ai.catalog import *  # noqa: F401,F403
from editor.ai.catalog import (  # noqa: F401 - explicit re-exports
    CHECKPOINT_SUFFIXES, DEFAULT_PREVIEW_STEPS, HOUSE_DIR_ENV, HOUSE_FOLDERS, HOUSE_FULL, HOUSE_LABELS, HOUSE_NATIVE,
    HOUSE_NOTES, HOUSE_PREVIEW, ModelEntry, ModelFacts, ModelRefused, catalog, check_runnable, discover,
    engine_specs, house_dir, inspect_model_file, inspected_entry, is_model_path, resolve,
)
