"""Real-world checkpoint variants (sharded, fp8, v-pred/ztsnr, LCM, UNet-only, pruned SDXL,
Playground v2.5, refusals), each against diffusers.

Shared helpers (tiny_models, layouts, lora_helpers, flux_models) live in tests/ and are importable
from here; the root conftest marks every test with its package (`-m inference`, `-m editor`…)."""
