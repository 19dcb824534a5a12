"""Packaging files, checked fast (the real PyInstaller build takes minutes and is not part of
the test run: ``python packaging/build.py`` / ``python scripts/package_smoke.py``).

- the spec is executed with stand-ins for PyInstaller's Analysis/EXE/COLLECT, so its inputs
  (entry script, assets, excludes) and its pruning rules are checked without analysing torch;
- the launcher picks editor or engine from its executable name;
- the pyproject entry points resolve; the icon set, .desktop and AppStream files are valid.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tomllib
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
APP_ID = "io.github.canvasai.CanvasAI"


class _Target:
    """Records how a spec builder (Analysis, PYZ, EXE, COLLECT, BUNDLE) was called."""

    calls: list = []

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs
        _Target.calls.append(self)


def _analysis_factory():
    class Analysis(_Target):
        def __init__(self, scripts, **kwargs):
            super().__init__(scripts, **kwargs)
            self.scripts = [("launcher", scripts[0], "PYSOURCE")]
            self.pure = []
            self.datas = list(kwargs["datas"]) + [
                ("torch/include/ATen/core.h", "/x/core.h", "DATA"),
                ("torch/testing/_internal/logging_tensor.py", "/x/lt.py", "DATA"),
                ("torch/nn/functional.py", "/x/functional.py", "DATA"),
                ("PySide6/Qt/translations/qtbase_de.qm", "/x/qtbase_de.qm", "DATA"),
            ]
            self.binaries = [
                ("torch/lib/libtorch_cpu.so", "/x/libtorch_cpu.so", "BINARY"),
                ("torch/lib/libtorchbind_test.so", "/x/libtorchbind_test.so", "BINARY"),
                ("torch/bin/test_api", "/x/test_api", "BINARY"),
                ("torch/bin/TCPStoreTest", "/x/TCPStoreTest", "BINARY"),
                ("torch/bin/torch_shm_manager", "/x/torch_shm_manager", "BINARY"),
                ("PySide6/Qt/plugins/platforms/libqxcb.so", "/x/libqxcb.so", "BINARY"),
                ("PySide6/Qt/plugins/platforms/libqwayland.so", "/x/libqwayland.so", "BINARY"),
                ("PySide6/Qt/plugins/platforms/libqeglfs.so", "/x/libqeglfs.so", "BINARY"),
                ("PySide6/Qt/plugins/platformthemes/libqgtk3.so", "/x/libqgtk3.so", "BINARY"),
                ("PySide6/Qt/plugins/imageformats/libqjpeg.so", "/x/libqjpeg.so", "BINARY"),
            ]

    return Analysis


@pytest.fixture
def spec_run(tmp_path, monkeypatch):
    """Execute packaging/canvasai.spec with stand-ins; returns (globals, recorded calls)."""
    hooks = types.ModuleType("PyInstaller.utils.hooks")
    hooks.collect_submodules = lambda package, **_kw: [package, f"{package}.fake_submodule"]
    for name, module in (("PyInstaller", types.ModuleType("PyInstaller")),
                         ("PyInstaller.utils", types.ModuleType("PyInstaller.utils")),
                         ("PyInstaller.utils.hooks", hooks)):
        monkeypatch.setitem(sys.modules, name, module)
    _Target.calls = []
    (tmp_path / "canvasai").mkdir()
    names = {n: type(n, (_Target,), {}) for n in ("PYZ", "EXE", "COLLECT", "BUNDLE")}
    spec_globals = {"__name__": "__main__", "SPECPATH": str(PACKAGING), "DISTPATH": str(tmp_path),
                    "Analysis": _analysis_factory(), **names}
    code = compile((PACKAGING / "canvasai.spec").read_text(encoding="utf-8"), "canvasai.spec", "exec")
    exec(code, spec_globals)  # noqa: S102 - our own spec file
    return spec_globals, list(_Target.calls), tmp_path


def test_spec_inputs(spec_run):
    g, calls, _dist = spec_run
    analysis = next(c for c in calls if type(c).__name__ == "Analysis")
    assert analysis.args[0] == [str(PACKAGING / "launcher.py")]
    assert str(ROOT) in analysis.kwargs["pathex"]
    datas = {dest: src for src, dest in analysis.kwargs["datas"]}
    assert datas["assets/clip"] == str(ROOT / "assets" / "clip")
    house_present = any(p.is_file() for p in (ROOT / "assets" / "house").rglob("*"))
    assert ("assets/house" in datas) == house_present
    assert datas["packaging/icons"].endswith(".png")
    hidden = analysis.kwargs["hiddenimports"]
    assert "editor" in hidden and "inference" in hidden
    excludes = set(analysis.kwargs["excludes"])
    assert {"tkinter", "diffusers", "transformers", "PySide6.QtWebEngineCore"} <= excludes
    # Imported by torch itself or by our engine at run time (found the hard way: keep them).
    assert not excludes & {"torch", "torch._dynamo", "torch._inductor", "torch.testing._internal", "sympy",
                           "setuptools", "jinja2", "networkx", "PySide6.QtWidgets", "cv2"}


def test_spec_prunes_tests_headers_and_unused_qt_plugins(spec_run):
    g, _calls, _dist = spec_run
    a = g["a"]
    kept = {e[0] for e in a.binaries} | {e[0] for e in a.datas}
    assert "torch/bin/torch_shm_manager" in kept  # torch refuses to import without it
    assert "torch/lib/libtorch_cpu.so" in kept and "torch/nn/functional.py" in kept
    assert "torch/testing/_internal/logging_tensor.py" in kept
    assert "PySide6/Qt/plugins/platforms/libqxcb.so" in kept
    assert "PySide6/Qt/plugins/platforms/libqwayland.so" in kept
    assert "PySide6/Qt/plugins/imageformats/libqjpeg.so" in kept
    for dropped in ("torch/lib/libtorchbind_test.so", "torch/bin/test_api", "torch/bin/TCPStoreTest", "torch/include/ATen/core.h",
                    "PySide6/Qt/plugins/platforms/libqeglfs.so",
                    "PySide6/Qt/plugins/platformthemes/libqgtk3.so", "PySide6/Qt/translations/qtbase_de.qm"):
        assert dropped not in kept, dropped


def test_spec_outputs_two_commands_in_one_folder(spec_run):
    g, calls, dist = spec_run
    exes = [c for c in calls if type(c).__name__ == "EXE"]
    collect = next(c for c in calls if type(c).__name__ == "COLLECT")
    assert collect.kwargs["name"] == "canvasai"
    names = {e.kwargs["name"]: e.kwargs["console"] for e in exes}
    if sys.platform == "win32":
        assert names == {"canvasai": False, "canvasai-engine": True}
    else:
        assert names == {"canvasai": False}
        link = dist / "canvasai" / "canvasai-engine"
        assert link.is_symlink() and str(link.readlink()) == "canvasai"
    assert all(e.kwargs["upx"] is False and e.kwargs["exclude_binaries"] for e in exes)


def _launcher():
    spec = importlib.util.spec_from_file_location("canvasai_launcher", PACKAGING / "launcher.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("executable, argv0, role", [
    ("/opt/canvasai/canvasai", "/opt/canvasai/canvasai", "editor"),
    ("/opt/canvasai/canvasai", "canvasai-engine", "engine"),  # symlink: argv[0] keeps the name
    ("C:\\CanvasAI\\canvasai-engine.exe", "canvasai-engine", "engine"),
    ("/Applications/CanvasAI.app/Contents/MacOS/canvasai", "", "editor"),
])
def test_launcher_dispatch(monkeypatch, executable, argv0, role):
    launcher = _launcher()
    monkeypatch.setattr(sys, "executable", executable.replace("\\", "/"))
    monkeypatch.setattr(sys, "argv", [argv0])
    assert launcher._invoked_as() == role


def test_launcher_runs_the_engine_cli(monkeypatch, capsys):
    launcher = _launcher()
    monkeypatch.setattr(sys, "argv", ["canvasai-engine", "inspect", str(ROOT / "no-such-model.safetensors")])
    assert launcher.main() == 2  # the engine's own one-line error
    assert capsys.readouterr().err.startswith("error:")


def test_pyproject_entry_points_resolve():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    targets = {**project["scripts"], **project["gui-scripts"]}
    assert targets == {"canvasai-engine": "inference.cli:main", "canvasai": "editor.__main__:main"}
    for target in targets.values():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func))


def test_icon_set():
    icons = PACKAGING / "icons"
    for size in (16, 24, 32, 48, 64, 128, 256, 512):
        with Image.open(icons / f"canvasai-{size}.png") as im:
            assert im.size == (size, size) and im.mode == "RGBA"
            assert im.getpixel((0, 0))[3] == 0 and im.getpixel((size // 2, size // 2))[3] == 255
    root = ET.parse(icons / "canvasai.svg").getroot()
    assert root.tag.endswith("svg") and root.get("viewBox") == "0 0 256 256"
    spec = importlib.util.spec_from_file_location("make_icons", icons / "make_icons.py")
    make_icons = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_icons)
    assert make_icons.svg() == (icons / "canvasai.svg").read_text(encoding="utf-8")  # committed = generated
    with Image.open(icons / "canvasai.ico") as ico:
        assert (256, 256) in ico.info["sizes"] and (16, 16) in ico.info["sizes"]


def test_desktop_entry():
    path = PACKAGING / "linux" / f"{APP_ID}.desktop"
    lines = path.read_text(encoding="utf-8").splitlines()
    entry = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    assert lines[0] == "[Desktop Entry]"
    assert entry["Exec"].startswith("canvasai ") and entry["Icon"] == APP_ID and entry["Type"] == "Application"
    assert "Graphics;" in entry["Categories"] and "image/openraster" in entry["MimeType"]
    assert entry["StartupWMClass"] == "CanvasAI"  # X11 WM_CLASS class = QApplication.applicationName()
    if shutil.which("desktop-file-validate"):
        proc = subprocess.run(["desktop-file-validate", str(path)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_appstream_metainfo():
    path = PACKAGING / "linux" / f"{APP_ID}.metainfo.xml"
    root = ET.parse(path).getroot()
    assert root.tag == "component" and root.get("type") == "desktop-application"
    assert root.findtext("id") == APP_ID
    assert root.find("launchable").text == f"{APP_ID}.desktop"
    assert {b.text for b in root.iter("binary")} == {"canvasai", "canvasai-engine"}
    if shutil.which("appstreamcli"):
        proc = subprocess.run(["appstreamcli", "validate", "--no-net", str(path)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.skipif(not shutil.which("sh"), reason="needs a POSIX shell")
def test_install_desktop_script(tmp_path):
    script = PACKAGING / "linux" / "install-desktop.sh"
    assert subprocess.run(["sh", "-n", str(script)]).returncode == 0
    # Installed from a fake bundle laid out as packaging/build.py lays it out.
    bundle = tmp_path / "my apps" / "canvasai"
    share = bundle / "share"
    (share / "applications").mkdir(parents=True)
    shutil.copy2(PACKAGING / "linux" / f"{APP_ID}.desktop", share / "applications")
    (share / "metainfo").mkdir()
    shutil.copy2(PACKAGING / "linux" / f"{APP_ID}.metainfo.xml", share / "metainfo")
    (share / "icons/hicolor/scalable/apps").mkdir(parents=True)
    shutil.copy2(PACKAGING / "icons/canvasai.svg", share / f"icons/hicolor/scalable/apps/{APP_ID}.svg")
    for s in (16, 24, 32, 48, 64, 128, 256, 512):
        d = share / f"icons/hicolor/{s}x{s}/apps"
        d.mkdir(parents=True)
        shutil.copy2(PACKAGING / f"icons/canvasai-{s}.png", d / f"{APP_ID}.png")
    shutil.copy2(script, bundle / "install-desktop.sh")
    (bundle / "canvasai").write_text("#!/bin/sh\n")
    (bundle / "canvasai").chmod(0o755)
    prefix = tmp_path / "prefix"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PREFIX": str(prefix), "BIN_DIR": str(tmp_path / "bin")}
    subprocess.run(["sh", str(bundle / "install-desktop.sh")], env=env, check=True, capture_output=True)
    installed = (prefix / "applications" / f"{APP_ID}.desktop").read_text()
    assert f'Exec="{bundle}/canvasai" %f' in installed
    assert (prefix / f"icons/hicolor/48x48/apps/{APP_ID}.png").is_file()
    subprocess.run(["sh", str(bundle / "install-desktop.sh"), "--uninstall"], env=env, check=True,
                   capture_output=True)
    assert not (prefix / "applications" / f"{APP_ID}.desktop").exists()
