import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: no busy-waiting on 2 cores
# Before any test imports Ray: without it Ray swaps 127.0.0.1 for the machine's network address,
# and the farm tests must only ever talk to loopback.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


PACKAGES = ("inference", "editor", "training", "packaging")


def pytest_collection_modifyitems(config, items):
    # Tests are grouped in folders by package; mark each with its package so one group runs alone.
    tests_root = Path(__file__).resolve().parent
    for item in items:
        parts = Path(str(item.fspath)).resolve().relative_to(tests_root).parts
        if len(parts) > 1 and parts[0] in PACKAGES:
            item.add_marker(getattr(pytest.mark, parts[0]))
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # torch missing or broken: GPU tests cannot run
        has_cuda = False
    if has_cuda:
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
