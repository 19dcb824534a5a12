#!/usr/bin/env python3
"""Smoke test of the desktop bundle on this machine (Linux, X server via Xvfb).

    python scripts/package_smoke.py                 # build, then test dist/canvasai
    python scripts/package_smoke.py --no-build      # test the bundle that is already there

1. builds the bundle with ``python packaging/build.py`` (timed);
2. starts the built ``canvasai`` under ``Xvfb :98`` with a fresh, temporary config folder (so it
   is a first run), waits for its window, and screenshots the screen with ImageMagick's
   ``import -window root`` into ``docs/screenshots/bundle.png``;
3. runs the bundled engine once headlessly: ``canvasai-engine generate`` with the house model
   when the bundle has it, else on a tiny random-weight SD model built with the test fixtures
   (needs diffusers, the test extra), else ``inspect`` of nothing / ``--help``;
4. installs the desktop entry into a temporary prefix and validates it.

Prints a summary (build time, bundle size, what ran) and exits non-zero on any failure.
Never touches the real config folder or the real application menu.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from xvfb_display import start_xvfb

ROOT = Path(__file__).resolve().parents[1]
DISPLAY = ":98"
SCREEN = (1400, 900)  # the editor opens at 1400 × 900; no window manager runs, so it sits at 0,0
APP_ID = "io.github.canvasai.CanvasAI"


def log(msg: str) -> None:
    print(f"[smoke] {msg}", flush=True)


def build() -> float:
    start = time.monotonic()
    rc = subprocess.call([sys.executable, str(ROOT / "packaging" / "build.py")], cwd=ROOT)
    if rc != 0:
        raise SystemExit(f"build failed (exit {rc})")
    return time.monotonic() - start


def window_ids(env: dict, title: str) -> list[str]:
    out = subprocess.run(["xwininfo", "-root", "-tree"], capture_output=True, text=True, env=env).stdout
    return [line.split()[0] for line in out.splitlines() if title in line and "0x" in line]


def screenshot_app(bundle: Path, out: Path, tmp: Path) -> dict:
    env = dict(os.environ, DISPLAY=DISPLAY, QT_QPA_PLATFORM="xcb",
               CANVASAI_CONFIG_DIR=str(tmp / "config"), CANVASAI_DATA_DIR=str(tmp / "data"))
    env.pop("CANVASAI_DEVICE", None)
    xvfb = start_xvfb(DISPLAY, SCREEN)
    app = None
    try:
        start = time.monotonic()
        app = subprocess.Popen([str(bundle / "canvasai")], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
        while not window_ids(env, "— CanvasAI"):  # the main window's title ("Untitled — CanvasAI")
            if app.poll() is not None:
                raise SystemExit(f"canvasai exited with {app.returncode}:\n{app.stdout.read()}")
            if time.monotonic() - start > 180:
                raise SystemExit("no CanvasAI window after 180 s")
            time.sleep(0.25)
        shown = time.monotonic() - start
        log(f"window up {shown:.1f} s after the start")
        time.sleep(12)  # the device probe imports torch in the background; let the status bar settle
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["import", "-window", "root", str(out)], env=env, check=True, timeout=60)
        alive = app.poll() is None
        settings = tmp / "config" / "settings.json"
        return {"window_seconds": round(shown, 1), "alive_after_screenshot": alive, "screenshot": str(out),
                "settings_written": settings.exists()}
    finally:
        if app is not None and app.poll() is None:
            app.terminate()
            try:
                app.wait(timeout=20)
            except subprocess.TimeoutExpired:
                app.kill()
        xvfb.terminate()
        xvfb.wait(timeout=20)


def tiny_model(tmp: Path) -> Path | None:
    """A tiny random-weight SD 1.x diffusers folder (the tests' oracle fixture), or None."""
    code = ("import sys; from pathlib import Path; sys.path.insert(0, 'tests'); from tiny_models import build_sd; "
            f"print(build_sd(Path({str(tmp / 'tiny')!r})))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        log("no tiny model (diffusers missing?): " + (proc.stderr.strip().splitlines() or ["?"])[-1])
        return None
    return Path(proc.stdout.strip().splitlines()[-1])


def run_engine(bundle: Path, tmp: Path, has_house: bool) -> dict:
    engine = bundle / "canvasai-engine"
    env = dict(os.environ, CANVASAI_CONFIG_DIR=str(tmp / "config"))
    out_png = tmp / "engine.png"
    if has_house:
        cmd = [str(engine), "generate", "--prompt", "a small red house with a blue door", "--seed", "1",
               "--steps", "8", "--out", str(out_png)]
        what = "generate with the bundled house model"
    else:
        model = tiny_model(tmp)
        if model is None:
            cmd, what = [str(engine), "--help"], "--help"
        else:
            inspect = subprocess.run([str(engine), "inspect", str(model)], capture_output=True, text=True, env=env,
                                     timeout=300)
            if inspect.returncode != 0:
                raise SystemExit(f"bundled inspect failed:\n{inspect.stdout}\n{inspect.stderr}")
            family = json.loads(inspect.stdout).get("family")
            log(f"bundled engine: inspect {model.name} -> family {family!r}")
            cmd = [str(engine), "generate", "--model", str(model), "--prompt", "a red house", "--seed", "3",
                   "--steps", "4", "--width", "64", "--height", "64", "--out", str(out_png)]
            what = "inspect + generate on a tiny random-weight SD 1.x model (no house model in the bundle)"
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"bundled engine failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}")
    result = {"what": what, "seconds": round(seconds, 1), "command": " ".join(Path(c).name if i == 0 else c
                                                                            for i, c in enumerate(cmd))}
    if out_png.exists():
        from PIL import Image

        with Image.open(out_png) as im:
            result["image"] = f"{im.width}x{im.height} {im.mode}, parameters chunk: {'parameters' in im.info}"
    return result


def install_desktop(bundle: Path, tmp: Path) -> str:
    prefix = tmp / "share"
    env = dict(os.environ, PREFIX=str(prefix), BIN_DIR=str(tmp / "bin"), HOME=str(tmp))
    subprocess.run([str(bundle / "install-desktop.sh"), "--bin"], env=env, check=True, capture_output=True)
    desktop = prefix / "applications" / f"{APP_ID}.desktop"
    exec_line = next(line for line in desktop.read_text().splitlines() if line.startswith("Exec="))
    if str(bundle / "canvasai") not in exec_line:
        raise SystemExit(f"installed .desktop has {exec_line!r}")
    if shutil.which("desktop-file-validate"):
        proc = subprocess.run(["desktop-file-validate", str(desktop)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"desktop-file-validate: {proc.stdout}{proc.stderr}")
    # The ~/.local/bin link must run the engine (the launcher looks at the name it was started as).
    proc = subprocess.run([str(tmp / "bin" / "canvasai-engine"), "--help"], capture_output=True, text=True,
                          timeout=300)
    if proc.returncode != 0 or "inspect" not in proc.stdout:
        raise SystemExit(f"linked canvasai-engine --help failed:\n{proc.stdout}\n{proc.stderr}")
    subprocess.run([str(bundle / "install-desktop.sh"), "--uninstall"], env=env, check=True, capture_output=True)
    return exec_line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-build", action="store_true", help="test the existing dist/canvasai")
    parser.add_argument("--bundle", type=Path, default=ROOT / "dist" / "canvasai")
    parser.add_argument("--screenshot", type=Path, default=ROOT / "docs" / "screenshots" / "bundle.png")
    args = parser.parse_args()
    if not sys.platform.startswith("linux"):
        log("this smoke test drives Xvfb: Linux only")
        return 2
    for tool in ("Xvfb", "import", "xwininfo"):
        if not shutil.which(tool):
            log(f"missing {tool} (apt-get install xvfb imagemagick x11-utils)")
            return 2
    build_seconds = None if args.no_build else build()
    bundle = args.bundle.resolve()
    info = json.loads((bundle / "BUILD-INFO.json").read_text())
    summary: dict = {"bundle": str(bundle), "bundle_mib": round(info["bundle_bytes"] / 2**20),
                     "bundle_files": info["bundle_files"], "pyinstaller_seconds": info["build_seconds"],
                     "torch": info["torch"], "cuda": info["cuda"]}
    if build_seconds is not None:
        summary["build_script_seconds"] = round(build_seconds, 1)
    with tempfile.TemporaryDirectory(prefix="canvasai-smoke-") as tmp_name:
        tmp = Path(tmp_name)
        summary["gui"] = screenshot_app(bundle, args.screenshot.resolve(), tmp)
        summary["engine"] = run_engine(bundle, tmp, bool(info.get("house_model")))
        summary["desktop_entry"] = install_desktop(bundle, tmp)
    print(json.dumps(summary, indent=2))
    ok = summary["gui"]["alive_after_screenshot"]
    log("OK" if ok else "the editor died before the screenshot")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
