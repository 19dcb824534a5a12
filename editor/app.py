"""Command line of the editor: ``python -m editor [FILE]`` opens the window,
``python -m editor --export OUT INPUT`` flattens a document without one
(like ``krita --export``). Qt is imported only when a window is needed.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from editor.headless import EXIT_BAD_INPUT, run_export

RECOVERY_ENV = "CANVASAI_RECOVERY"
RECOVERY_CHOICES = ("ask", "restore", "discard", "keep")


class _ArgumentError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line and exit 2, not argparse's usage block
        raise _ArgumentError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m editor", description="CanvasAI image editor")
    parser.add_argument("file", nargs="?", help="document or image to open (.ora, .png, .jpg, .webp, .tif)")
    parser.add_argument(
        "--export", metavar="OUT",
        help="flatten FILE into OUT (.png, .jpg or .webp) without opening a window, then exit",
    )
    parser.add_argument(
        "--recover", choices=RECOVERY_CHOICES, default=None,
        help=f"what to do with autosaves of crashed sessions (default: ask; env {RECOVERY_ENV})",
    )
    return parser


def recovery_mode(arg: Optional[str]) -> str:
    mode = arg or os.environ.get(RECOVERY_ENV, "ask")
    return mode if mode in RECOVERY_CHOICES else "ask"


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except _ArgumentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.export is not None:
        if not args.file:
            print("error: --export needs an input file: python -m editor --export OUT INPUT", file=sys.stderr)
            return EXIT_BAD_INPUT
        return run_export(args.export, args.file)

    from editor.ui.application import run_gui  # Qt only from here on

    return run_gui(args.file, recovery_mode(args.recover))
