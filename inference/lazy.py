"""Packages whose submodules load on first use (PEP 562), so importing a torch-free submodule (the
API's model facts, a header reader, the sampler registry) never drags torch in through `__init__`."""
from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], object]:
    """A module `__getattr__` that imports `package.<exports[name]>` when `name` is first asked for."""

    def __getattr__(name: str) -> object:
        if name in exports:
            return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
