"""A minimal observer mechanism, so the Qt UI can watch the model without the
model importing Qt (the UI bridges these to Qt signals on its side)."""

from __future__ import annotations

from typing import Any, Callable


class Signal:
    """Connect callables; ``emit`` calls them in connection order.

    Every slot runs even if an earlier one raises, so one faulty observer
    cannot leave the others with a stale view; the first error is re-raised
    afterwards so bugs are not silently swallowed.
    """

    __slots__ = ("_name", "_slots")

    def __init__(self, name: str = "") -> None:
        self._name = name
        self._slots: list[Callable[..., Any]] = []

    def connect(self, slot: Callable[..., Any]) -> None:
        if slot not in self._slots:
            self._slots.append(slot)

    def disconnect(self, slot: Callable[..., Any]) -> None:
        try:
            self._slots.remove(slot)
        except ValueError:
            raise ValueError(f"slot not connected to signal {self._name!r}") from None

    def emit(self, *args: Any) -> None:
        error: BaseException | None = None
        # Iterate over a copy: a slot may disconnect itself while running.
        for slot in list(self._slots):
            try:
                slot(*args)
            except Exception as exc:  # noqa: BLE001 - re-raised below
                if error is None:
                    error = exc
        if error is not None:
            raise error

    def __len__(self) -> int:
        return len(self._slots)

    def __repr__(self) -> str:
        return f"Signal({self._name!r}, {len(self._slots)} slots)"
