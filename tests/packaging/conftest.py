"""The desktop bundle's spec, launcher, desktop files and first run.

Shared helpers (tiny_models, layouts, lora_helpers, flux_models) live in tests/ and are importable
from here; the root conftest marks every test with its package (`-m inference`, `-m editor`…)."""
