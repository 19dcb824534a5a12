"""The one exception the file layer raises for unreadable or unwritable files."""

from __future__ import annotations

import os


class DocumentFileError(Exception):
    """A file could not be read or written; the message names file and problem.

    The UI shows ``str(err)``; ``path`` and ``problem`` are kept separately
    for logs and tests.
    """

    def __init__(self, path: "str | os.PathLike[str]", problem: str) -> None:
        self.path = os.fspath(path)
        if "\n" in problem or "\r" in problem:  # one line, whatever a library put in its message
            problem = " ".join(part.strip() for part in problem.splitlines() if part.strip())
        self.problem = problem
        shown = self.path.replace("\n", "\\n").replace("\r", "\\r")  # a file name may hold a newline
        super().__init__(f"{shown}: {problem}")
