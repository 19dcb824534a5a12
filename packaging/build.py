#!/usr/bin/env python3
"""Build the CanvasAI desktop application: one folder, ready to run or to archive.

    pip install pyinstaller            # once, in the environment whose torch you want bundled
    python packaging/build.py          # -> dist/canvasai/ (canvasai, canvasai-engine, _internal/)
    python packaging/build.py --archive   # also dist/canvasai-<version>-<platform>.tar.gz (.zip on Windows)

Steps: run ``packaging/canvasai.spec`` with PyInstaller (log in build/pyinstaller.log), add
the desktop-integration files (Linux: ``share/`` with the .desktop file, icons and AppStream
metadata, plus ``install-desktop.sh``), self-test the result (``canvasai --bundle-selftest``
and ``canvasai-engine --help``), then measure it and write ``BUILD-INFO.json`` into the
bundle. Exit code 0 only if everything passed.

The PyTorch of the running interpreter is the one bundled: build in an environment with a CUDA
build of torch to get a CUDA bundle (README, "Install as an application").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SPEC = HERE / "canvasai.spec"
APP_ID = "io.github.canvasai.CanvasAI"
BUNDLE_NAME = "canvasai"
ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def log(msg: str) -> None:
    print(f"[build] {msg}", flush=True)


def project_version() -> str:
    try:
        import tomllib

        return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    except Exception:  # noqa: BLE001 - a version string is nice to have, not essential
        return "0"


def torch_info() -> dict:
    import torch

    return {"torch": torch.__version__, "cuda": torch.version.cuda,
            "mps_built": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_built())}


def tree_size(path: Path) -> tuple[int, int]:
    """(bytes, files) under ``path``, symlinks counted as links (not followed)."""
    total = files = 0
    for dirpath, _dirs, names in os.walk(path):
        for name in names:
            p = Path(dirpath) / name
            total += p.lstat().st_size
            files += 1
    return total, files


def mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


def run_pyinstaller(dist: Path, work: Path, clean: bool, log_path: Path) -> float:
    cmd = [sys.executable, "-m", "PyInstaller", "--noconfirm", "--distpath", str(dist), "--workpath", str(work)]
    if clean:
        cmd.append("--clean")
    cmd.append(str(SPEC))
    log(f"running PyInstaller (log: {log_path}); this takes minutes")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as out:
        rc = subprocess.call(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    seconds = time.monotonic() - start
    if rc != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-30:]
        print("\n".join(tail), file=sys.stderr)
        raise SystemExit(f"PyInstaller failed (exit {rc}); full log in {log_path}")
    return seconds


def add_desktop_files(bundle: Path) -> None:
    """share/{applications,metainfo,icons/hicolor} + install-desktop.sh (Linux layout; harmless elsewhere)."""
    share = bundle / "share"
    if share.exists():
        shutil.rmtree(share)
    (share / "applications").mkdir(parents=True)
    (share / "metainfo").mkdir()
    shutil.copy2(HERE / "linux" / f"{APP_ID}.desktop", share / "applications" / f"{APP_ID}.desktop")
    shutil.copy2(HERE / "linux" / f"{APP_ID}.metainfo.xml", share / "metainfo" / f"{APP_ID}.metainfo.xml")
    scalable = share / "icons" / "hicolor" / "scalable" / "apps"
    scalable.mkdir(parents=True)
    shutil.copy2(HERE / "icons" / "canvasai.svg", scalable / f"{APP_ID}.svg")
    for size in ICON_SIZES:
        d = share / "icons" / "hicolor" / f"{size}x{size}" / "apps"
        d.mkdir(parents=True)
        shutil.copy2(HERE / "icons" / f"canvasai-{size}.png", d / f"{APP_ID}.png")
    if not sys.platform.startswith("win"):
        target = bundle / "install-desktop.sh"
        shutil.copy2(HERE / "linux" / "install-desktop.sh", target)
        target.chmod(0o755)


def executable(bundle: Path, name: str) -> Path:
    return bundle / (name + ".exe" if sys.platform == "win32" else name)


def self_test(bundle: Path) -> dict:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    env.pop("CANVASAI_DEVICE", None)
    proc = subprocess.run([str(executable(bundle, "canvasai")), "--bundle-selftest"], capture_output=True,
                          text=True, env=env, timeout=300)
    if proc.returncode != 0:
        raise SystemExit(f"bundle self-test failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    report = json.loads(proc.stdout)
    proc = subprocess.run([str(executable(bundle, "canvasai-engine")), "--help"], capture_output=True, text=True,
                          env=env, timeout=300)
    if proc.returncode != 0 or "inspect" not in proc.stdout:
        raise SystemExit(f"canvasai-engine --help failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return report


def make_archive(bundle: Path, dist: Path, version: str) -> Path:
    tag = f"{sys.platform.replace('32', '')}-{platform.machine().lower()}"
    if sys.platform == "win32":
        out = dist / f"{BUNDLE_NAME}-{version}-{tag}.zip"
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
            for p in sorted(bundle.rglob("*")):
                zf.write(p, Path(BUNDLE_NAME) / p.relative_to(bundle))
    else:
        out = dist / f"{BUNDLE_NAME}-{version}-{tag}.tar.gz"
        with tarfile.open(out, "w:gz", compresslevel=6) as tf:
            tf.add(bundle, arcname=BUNDLE_NAME)  # symlinks stay symlinks
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="output folder (default: dist/)")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "pyinstaller", help="PyInstaller work folder")
    parser.add_argument("--clean", action="store_true", help="empty PyInstaller's cache first")
    parser.add_argument("--archive", action="store_true", help="also write a .tar.gz (.zip on Windows)")
    parser.add_argument("--no-check", action="store_true", help="skip the self-test of the built bundle")
    args = parser.parse_args(argv)

    try:
        import PyInstaller  # noqa: F401
    except ImportError:
        log("PyInstaller is not installed: pip install pyinstaller")
        return 2
    version = project_version()
    info = torch_info()
    house = ROOT / "assets" / "house"
    has_house = house.is_dir() and any(p.is_file() for p in house.rglob("*"))
    variant = f"CUDA {info['cuda']}" if info["cuda"] else ("CPU + MPS" if info["mps_built"] else "CPU")
    log(f"CanvasAI {version}; torch {info['torch']} ({variant}); house model "
        f"{'included' if has_house else 'absent (assets/house is empty)'}")

    args.dist = args.dist.resolve()
    seconds = run_pyinstaller(args.dist, args.work.resolve(), args.clean, ROOT / "build" / "pyinstaller.log")
    bundle = args.dist / BUNDLE_NAME
    if sys.platform == "darwin" and (args.dist / "CanvasAI.app").exists():
        log(f"macOS application: {args.dist / 'CanvasAI.app'}")
    add_desktop_files(bundle)
    report = {} if args.no_check else self_test(bundle)
    size, files = tree_size(bundle)
    build_info = {
        "version": version, "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "platform": sys.platform,
        "machine": platform.machine(), "python": platform.python_version(), **info,
        "house_model": has_house, "build_seconds": round(seconds, 1), "bundle_bytes": size, "bundle_files": files,
        "selftest": report,
    }
    (bundle / "BUILD-INFO.json").write_text(json.dumps(build_info, indent=2) + "\n", encoding="utf-8")
    log(f"bundle: {bundle}")
    log(f"size: {mib(size)} in {files} files; PyInstaller took {seconds / 60:.1f} min")
    if report:
        log(f"self-test: Qt {report.get('qt')}, torch {report.get('torch')}, device {report.get('device')!r}, "
            f"qt_compat patched={report.get('qt_compat_patched')}, clip vocab={report.get('clip_vocab')}, "
            f"house model={report.get('house_model')}")
    if args.archive:
        start = time.monotonic()
        out = make_archive(bundle, args.dist, version)
        log(f"archive: {out} ({mib(out.stat().st_size)}, {time.monotonic() - start:.0f} s)")
    log(f"run it: {executable(bundle, 'canvasai')}   engine: {executable(bundle, 'canvasai-engine')} --help")
    if sys.platform.startswith("linux"):
        log(f"application menu entry: {bundle / 'install-desktop.sh'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
