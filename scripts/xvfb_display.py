"""What the screenshot and bundle-smoke scripts share: a virtual X display and throw-away folders."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start_xvfb(display: str, screen: tuple[int, int]) -> subprocess.Popen:
    """Xvfb on `display`, once its socket exists; a taken display or a failed start ends the script."""
    sock = Path(f"/tmp/.X11-unix/X{display[1:]}")
    if sock.exists():
        raise SystemExit(f"display {display} is taken ({sock} exists)")
    proc = subprocess.Popen(["Xvfb", display, "-screen", "0", f"{screen[0]}x{screen[1]}x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        if sock.exists():
            return proc
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("Xvfb did not start")


@contextmanager
def screenshot_session(prefix: str, display: str, screen: tuple[int, int]) -> Iterator[Path]:
    """An in-process Qt session on X: Xvfb unless a DISPLAY is already set, fresh config and data
    folders (yielded: their parent), the repository importable; all removed afterwards."""
    xvfb = None
    if not os.environ.get("DISPLAY"):
        xvfb = start_xvfb(display, screen)
        os.environ["DISPLAY"] = display
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ.update(CANVASAI_CONFIG_DIR=str(tmp / "config"), CANVASAI_DATA_DIR=str(tmp / "data"),
                      QT_QPA_PLATFORM="xcb")
    sys.path.insert(0, str(ROOT))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if xvfb is not None:
            xvfb.terminate()
            xvfb.wait(timeout=10)
