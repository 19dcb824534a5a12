"""The Qt user interface. Everything that imports PySide6 lives here; the
document model (``editor.document``) only reaches Qt through
:mod:`editor.ui.bridge`."""

from .qt_compat import install as _install_pyside_workarounds

# Before any of our signals is emitted (see qt_compat: PySide 6.12 leaks a
# reference to True on every emit, which crashes Python 3.11 eventually).
_install_pyside_workarounds()
