"""Undo stack in the style of QUndoStack / Orange canvas, without Qt.

A command's ``redo`` applies it and ``undo`` reverts it; both call the model.
Commands report their memory so the stack can drop the oldest steps above a
byte cap, always keeping ``min_steps`` (GIMP's "minimal number of undo
levels" plus "maximum undo memory").
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from contextlib import contextmanager
from typing import Iterator, Optional

from .signals import Signal


class Command(ABC):
    """Base class for undoable edits."""

    text: str = ""

    @abstractmethod
    def redo(self) -> None:
        """Apply the edit (again)."""

    @abstractmethod
    def undo(self) -> None:
        """Revert the edit exactly."""

    def byte_size(self) -> int:
        """Memory held only for undo/redo (tile data, removed layers...)."""
        return 0

    def merge_key(self) -> Optional[object]:
        """Commands with equal non-None keys pushed in a row may merge."""
        return None

    def merge_with(self, newer: "Command") -> bool:
        """Absorb ``newer`` (already applied) into self; return True if done."""
        return False


class MacroCommand(Command):
    """Several commands that undo and redo as one step (a stroke, merge down...)."""

    def __init__(self, text: str, children: Optional[list[Command]] = None) -> None:
        self.text = text
        self.children: list[Command] = list(children or [])

    def redo(self) -> None:
        for c in self.children:
            c.redo()

    def undo(self) -> None:
        for c in reversed(self.children):
            c.undo()

    def byte_size(self) -> int:
        return sum(c.byte_size() for c in self.children)


class UndoStack:
    def __init__(self, memory_limit: int = 1024 * 1024 * 1024, min_steps: int = 10) -> None:
        self.memory_limit = int(memory_limit)
        self.min_steps = int(min_steps)
        self._commands: list[Command] = []
        self._index = 0  # number of applied commands; redo starts at _commands[_index]
        self._clean_index: Optional[int] = 0
        self._macros: list[MacroCommand] = []
        self._can_merge = False
        self.changed = Signal("history_changed")

    # -- queries -----------------------------------------------------------
    @property
    def index(self) -> int:
        return self._index

    def __len__(self) -> int:
        return len(self._commands)

    def can_undo(self) -> bool:
        return self._index > 0 and not self._macros

    def can_redo(self) -> bool:
        return self._index < len(self._commands) and not self._macros

    def undo_text(self) -> str:
        return self._commands[self._index - 1].text if self.can_undo() else ""

    def redo_text(self) -> str:
        return self._commands[self._index].text if self.can_redo() else ""

    def command(self, i: int) -> Command:
        return self._commands[i]

    def byte_size(self) -> int:
        return sum(c.byte_size() for c in self._commands)

    def is_clean(self) -> bool:
        return self._clean_index == self._index

    def set_clean(self) -> None:
        """Mark the current state as saved."""
        self._clean_index = self._index
        self.changed.emit()

    def in_macro(self) -> bool:
        return bool(self._macros)

    # -- editing -----------------------------------------------------------
    def push(self, cmd: Command, *, applied: bool = False) -> None:
        """Apply ``cmd`` (unless ``applied``) and record it.

        Strokes are applied live while the user paints, so they are pushed
        with ``applied=True`` once finished.
        """
        if not applied:
            cmd.redo()
        if self._macros:
            self._macros[-1].children.append(cmd)
            return
        self._record(cmd)

    def _record(self, cmd: Command) -> None:
        if self._index < len(self._commands):
            del self._commands[self._index :]  # the redo branch is gone
            if self._clean_index is not None and self._clean_index > self._index:
                self._clean_index = None
        key = cmd.merge_key()
        prev = self._commands[-1] if self._commands else None
        if (
            key is not None
            and prev is not None
            and self._can_merge
            and self._clean_index != self._index
            and prev.merge_key() == key
            and prev.merge_with(cmd)
        ):
            self.changed.emit()
            return
        self._commands.append(cmd)
        self._index += 1
        self._can_merge = True
        self._enforce_limit()
        self.changed.emit()

    def _enforce_limit(self) -> None:
        total = self.byte_size()
        while len(self._commands) > self.min_steps and total > self.memory_limit and self._index > 0:
            dropped = self._commands.pop(0)
            total -= dropped.byte_size()
            self._index -= 1
            if self._clean_index is not None:
                self._clean_index = self._clean_index - 1 if self._clean_index > 0 else None

    def set_limits(self, memory_limit: Optional[int] = None, min_steps: Optional[int] = None) -> None:
        if memory_limit is not None:
            self.memory_limit = int(memory_limit)
        if min_steps is not None:
            self.min_steps = int(min_steps)
        self._enforce_limit()
        self.changed.emit()

    def begin_macro(self, text: str) -> None:
        self._macros.append(MacroCommand(text))

    def end_macro(self) -> None:
        if not self._macros:
            raise RuntimeError("end_macro without begin_macro")
        macro = self._macros.pop()
        if not macro.children:
            return
        if self._macros:
            self._macros[-1].children.append(macro)
        else:
            self._record(macro)

    def abort_macro(self) -> None:
        """Undo what the open macro applied and discard it (e.g. on an error)."""
        if not self._macros:
            raise RuntimeError("abort_macro without begin_macro")
        self._macros.pop().undo()

    @contextmanager
    def macro(self, text: str) -> Iterator[None]:
        """``with stack.macro("Merge down"): ...`` - one undo step; rolled back on error."""
        self.begin_macro(text)
        try:
            yield
        except BaseException:
            self.abort_macro()
            raise
        self.end_macro()

    def undo(self) -> bool:
        if self._macros:
            raise RuntimeError("cannot undo while a macro is open")
        if self._index == 0:
            return False
        self._index -= 1
        self._can_merge = False
        self._commands[self._index].undo()
        self.changed.emit()
        return True

    def redo(self) -> bool:
        if self._macros:
            raise RuntimeError("cannot redo while a macro is open")
        if self._index >= len(self._commands):
            return False
        self._commands[self._index].redo()
        self._index += 1
        self._can_merge = False
        self.changed.emit()
        return True

    def clear(self) -> None:
        self._commands.clear()
        self._index = 0
        self._clean_index = 0
        self._macros.clear()
        self._can_merge = False
        self.changed.emit()

    def break_merge(self) -> None:
        """Stop the next push merging with the previous one (e.g. slider released)."""
        self._can_merge = False
