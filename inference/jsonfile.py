"""Reading the JSON files of model folders (torch-free): one object, one line on any failure."""
from __future__ import annotations

import json
from pathlib import Path

from .errors import ModelFormatError


def read_json_object(path: Path) -> dict:
    """The JSON object in `path`; ModelFormatError naming the file when it is missing, unreadable,
    not JSON (or nested deep enough to exhaust the parser), or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFormatError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelFormatError(f"{path}: unreadable JSON ({str(exc).splitlines()[0][:120]})") from None
    if not isinstance(data, dict):
        raise ModelFormatError(f"{path}: expected a JSON object")
    return data
