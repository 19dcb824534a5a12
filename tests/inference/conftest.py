"""Tests of the engine (`inference/`): API, loading, detection, samplers, pipelines, CLI, outputs.

Shared helpers (tiny_models, layouts, lora_helpers, flux_models) live in tests/ and are importable
from here; the root conftest marks every test with its package (`-m inference`, `-m editor`…)."""
