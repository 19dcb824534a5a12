"""Entry script of the bundled application (PyInstaller runs this file).

One script serves both executables of the bundle; the executable's own name
picks what runs, like busybox:

- ``canvasai`` (``canvasai.exe``, ``CanvasAI.app``): the editor, same
  arguments as ``python -m editor``;
- ``canvasai-engine``: the engine command line, same as ``python -m inference``.

``canvasai --bundle-selftest`` prints a JSON report of the bundle (modules,
assets, Qt plugins, compute device) and exits: the smoke script uses it.
"""

from __future__ import annotations

import multiprocessing
import sys
from pathlib import Path

ENGINE_NAME = "canvasai-engine"


def _invoked_as() -> str:
    names = [Path(sys.executable).stem, Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else ""]
    return "engine" if any(n.lower().startswith(ENGINE_NAME) for n in names) else "editor"


def _bundle_root() -> Path:
    return Path(getattr(sys, "_MEIPASS", Path(__file__).resolve().parents[1]))


def selftest() -> int:
    import json

    report: dict = {"frozen": bool(getattr(sys, "frozen", False)), "root": str(_bundle_root())}
    import editor.ui.qt_compat as qt_compat  # noqa: F401  (import editor.ui runs install())
    import editor.ui  # noqa: F401
    from PySide6.QtCore import QLibraryInfo, __version__ as qt_version

    report["qt"] = qt_version
    report["qt_compat_patched"] = qt_compat._installed  # noqa: SLF001
    plugins = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath))
    report["qt_plugins"] = sorted(p.name for p in (plugins / "platforms").glob("*")) if plugins.exists() else []
    report["qt_imageformats"] = sorted(p.name for p in (plugins / "imageformats").glob("*")) if plugins.exists() else []
    import torch

    report["torch"] = torch.__version__
    report["torch_cuda"] = torch.version.cuda
    from editor.device import choose_device

    report["device"], report["device_message"] = choose_device("auto")
    from inference.cli import house_model_path
    from inference.tokenizer.bpe import default_vocab_path

    report["clip_vocab"] = default_vocab_path().is_file()
    report["house_model"] = house_model_path().exists()
    # Every module of our own packages must be importable from the bundle (the AI core is
    # imported lazily, in a thread: a missing dependency would only show when it is first used).
    import importlib
    import pkgutil

    import editor
    import inference

    failures: dict[str, str] = {}
    count = 0
    for package in (editor, inference):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.endswith("__main__"):
                continue  # importing it would run that command line
            count += 1
            try:
                importlib.import_module(info.name)
            except Exception as exc:  # noqa: BLE001 - reported, and fails the self-test
                failures[info.name] = f"{type(exc).__name__}: {exc}"
    report["modules_imported"] = count
    report["import_failures"] = failures
    print(json.dumps(report, indent=2))
    ok = report["clip_vocab"] and not failures and (
        not sys.platform.startswith("linux") or "libqxcb.so" in report["qt_plugins"])
    return 0 if ok else 1


def main() -> int:
    multiprocessing.freeze_support()
    if _invoked_as() == "engine":
        from inference.cli import main as engine_main

        return engine_main(sys.argv[1:])
    if sys.argv[1:2] == ["--bundle-selftest"]:
        return selftest()
    from editor.app import main as editor_main

    return editor_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
