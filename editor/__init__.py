
import os as _os

# OpenMP's default busy-wait makes torch ~10x slower when another process holds one of a
# laptop's few cores (measured: 1-step preview 3–4 s → 75 ms). It must be set before torch loads,
# and this package is imported first by the app; a user's own setting still wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
