"""Work around a reference-counting bug in PySide6 6.12 on Python < 3.12.

``SignalInstance.emit()`` (and a failing ``SignalInstance.disconnect()``)
return ``True``/``False`` without taking a reference. Each call therefore
steals one reference from the bool singleton; after a few thousand emits
(one per brush dab or mouse move) CPython aborts with "Fatal Python error:
bool_dealloc: deallocating True or False". Python 3.12+ made the bools
immortal, so it only bites older interpreters (this project's 3.11).

``install()`` measures whether the running PySide leaks, and only then wraps
the two methods to add the missing reference. On a fixed PySide, or on an
interpreter with immortal bools, it changes nothing.
"""

from __future__ import annotations

import ctypes
import sys
import warnings
from typing import Callable

_PROBES = 16
_installed = False


def _bool_delta(call: Callable[[], object], value: bool) -> int:
    before = sys.getrefcount(value)
    for _ in range(_PROBES):
        call()
    return sys.getrefcount(value) - before


def immortalize_singletons() -> None:
    """PySide 6.12 on CPython 3.11 also drops one reference to None for every Qt call returning
    void (`update()`, `QTimer.start()`, `processEvents()`…), so a long session runs None's count
    down to zero and CPython aborts ("none_dealloc"). Give None/True/False a count no leak can
    exhaust — what Python 3.12's immortal objects do; from 3.12 on this is not needed."""
    if sys.version_info >= (3, 12):
        return
    for obj in (None, True, False):
        count = ctypes.c_ssize_t.from_address(id(obj))
        if count.value < 1 << 40:
            count.value += 1 << 48


def install() -> bool:
    """Patch PySide's SignalInstance if (and only if) it leaks; returns True if patched."""
    global _installed
    immortalize_singletons()
    if _installed:
        return True
    from PySide6.QtCore import QObject, Signal, SignalInstance

    class _Probe(QObject):
        ping = Signal()

    probe = _Probe()
    incref = ctypes.pythonapi.Py_IncRef
    incref.argtypes = [ctypes.py_object]
    incref.restype = None

    def not_connected() -> None:
        pass

    emit_leak = _bool_delta(probe.ping.emit, True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        disconnect_leak = _bool_delta(lambda: probe.ping.disconnect(not_connected), False)
    # Give back what the probes themselves took.
    for _ in range(-emit_leak):
        incref(True)
    for _ in range(-disconnect_leak):
        incref(False)

    def give_back_bool(name: str) -> None:
        """Wrap SignalInstance.<name> so a True/False result gets back the reference PySide drops."""
        original = getattr(SignalInstance, name)

        def wrapper(self, *args):
            result = original(self, *args)
            if result is True or result is False:
                incref(result)
            return result

        setattr(SignalInstance, name, wrapper)

    patched = False
    for name, leak in (("emit", emit_leak), ("disconnect", disconnect_leak)):
        if leak <= -_PROBES:
            give_back_bool(name)
            patched = True
    _installed = patched
    return patched
