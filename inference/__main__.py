import os
import sys

# Before torch loads: passive OpenMP waits keep the CLI fast on a busy machine (see editor/__init__.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .cli import main  # noqa: E402

sys.exit(main())
