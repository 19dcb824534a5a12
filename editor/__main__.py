"""``python -m editor``: see :mod:`editor.app`."""

import sys

from editor.app import main

if __name__ == "__main__":
    sys.exit(main())
