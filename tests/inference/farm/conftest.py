"""The Ray render farm: jobs, placement, model shipping, and a local 127.0.0.1 cluster.

Shared helpers (tiny_models, layouts, lora_helpers, flux_models) live in tests/ and are importable
from here; the root conftest marks every test with its package (`-m inference`, `-m editor`…)."""
