"""The engine's default settings, in one place (torch-free; re-exported by `inference.api`).

The CLI and the editor used to each choose these (and disagreed). A model's own recommendation
(`ModelInfo.preset`) wins over them whenever the user gives none.
"""
DEFAULT_STEPS = 20
DEFAULT_GUIDANCE = 7.0  # A1111's and InvokeAI's default CFG scale
DEFAULT_SAMPLER = "euler"
DEFAULT_IMG2IMG_STRENGTH = 0.75  # A1111's default denoising strength
MAX_SIDE = 4096
MAX_STEPS = 1000
MAX_GUIDANCE = 100.0
# Seeds are A1111-compatible 32-bit values; the torch generator would take 64 bits, but a seed
# shown in the UI, stored in a PNG or an .ora and typed back in must mean the same everywhere.
SEED_MAX = 2**32 - 1
