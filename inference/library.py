"""The model library: the checkpoints, LoRAs and VAEs in the folders users already have (torch-free).

`ModelLibrary.scan(folders)` accepts a ComfyUI root, an A1111 root, or plain folders. Every file is
described from its header only (`read_model_info`, plus `inspect_lora` for a LoRA's trigger words),
and the descriptions are cached by (path, size, mtime) in one JSON file, so a folder of hundreds of
models opens without reading a header the second time. Nothing here raises for a bad file: it is
listed with its one-line reason.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import InferenceError

MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".sft", ".gguf")
# Sub-folders of a ComfyUI `models/` and an A1111 `models/` that hold what the engine can use.
COMFY_FOLDERS = ("checkpoints", "loras", "vae", "unet", "diffusion_models")
A1111_FOLDERS = ("Stable-diffusion", "Lora", "VAE")
CACHE_VERSION = 1
_HASH_BLOCK = 1 << 20


@dataclass
class LibraryEntry:
    path: str
    name: str  # file stem: what `<lora:NAME>` and searches match
    kind: str  # read_model_info's kind, or "error"
    family: str | None = None
    size: int = 0
    mtime_ns: int = 0
    trigger_words: list[str] = field(default_factory=list)
    preview: str | None = None
    error: str | None = None  # the one-line reason a file could not be read
    sha256: str | None = None  # filled lazily by ModelLibrary.short_hash
    lora_sha256: str | None = None  # A1111's LoRA hash: sha256 of the tensor data after the header

    @property
    def short_hash(self) -> str | None:
        """A1111's AutoV2: the first 10 hex digits of the whole file's SHA-256 (once computed)."""
        return self.sha256[:10] if self.sha256 else None


def default_cache_path() -> Path:
    """Where the CLI keeps its scan cache: CANVASAI_DATA_DIR when set (as the editor's data),
    else the platform's user cache folder."""
    override = os.environ.get("CANVASAI_DATA_DIR")
    if override:
        return Path(override) / "model-library.json"
    try:
        import platformdirs

        return Path(platformdirs.user_cache_dir("canvasai", appauthor=False)) / "model-library.json"
    except ImportError:  # platformdirs comes with the editor; the engine alone falls back to ~/.cache
        return Path.home() / ".cache" / "canvasai" / "model-library.json"


def model_folders(root: str | Path) -> list[Path]:
    """The model folders under a ComfyUI or A1111 root (or `root/models`), else [root] itself."""
    root = Path(root)
    for base in (root / "models", root):
        found = [base / name for name in COMFY_FOLDERS + A1111_FOLDERS if (base / name).is_dir()]
        if found:
            return found
    return [root]


def _preview(path: Path) -> str | None:
    # ComfyUI managers write NAME.preview.png; A1111 reads NAME.png (and .preview.png).
    stem = path.with_suffix("")
    for candidate in (f"{stem}.preview.png", f"{stem}.png", f"{stem}.preview.jpg", f"{stem}.jpg"):
        if os.path.isfile(candidate):
            return candidate
    return None


def _describe(path: Path, stat: os.stat_result) -> LibraryEntry:
    from .model_info import read_model_info

    entry = LibraryEntry(path=str(path), name=path.stem, kind="error", size=stat.st_size, mtime_ns=stat.st_mtime_ns)
    try:
        info = read_model_info(path)
        entry.kind, entry.family = info.kind, info.family
        if info.kind == "lora" and path.suffix.lower() == ".safetensors":
            from .lora.formats import inspect_lora

            lora = inspect_lora(path)
            entry.family = entry.family or lora.get("family")
            entry.trigger_words = [str(word) for word in lora.get("trigger_words") or []][:20]
    except InferenceError as exc:
        entry.kind, entry.error = "error", str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    except (OSError, ValueError, RecursionError, MemoryError) as exc:  # a file that defeats the reader
        entry.kind, entry.error = "error", f"{path.name}: {type(exc).__name__}: {str(exc)[:120]}"
    return entry


def _hash_file(path: Path) -> tuple[str, str | None]:
    """(sha256 of the whole file, sha256 of what follows the safetensors header or None)."""
    whole, data = hashlib.sha256(), None
    with open(path, "rb") as handle:
        if path.suffix.lower() == ".safetensors":
            head = handle.read(8)
            whole.update(head)
            if len(head) == 8:
                header = handle.read(int.from_bytes(head, "little"))
                whole.update(header)
                data = hashlib.sha256()
        while chunk := handle.read(_HASH_BLOCK):
            whole.update(chunk)
            if data is not None:
                data.update(chunk)
    return whole.hexdigest(), data.hexdigest() if data is not None else None


class ModelLibrary:
    """Scanned entries plus the cache they came from; `inspections` counts header reads."""

    def __init__(self, entries: list[LibraryEntry], cache_path: Path | None = None, inspections: int = 0):
        self.entries = entries
        self.cache_path = cache_path
        self.inspections = inspections

    @classmethod
    def scan(cls, roots: Iterable[str | Path], cache_path: str | Path | None = None) -> ModelLibrary:
        cache_path = Path(cache_path) if cache_path else None
        cached = _load_cache(cache_path)
        entries, inspections, seen = [], 0, set()
        for root in roots:
            folders = model_folders(root)
            # A folder with a `vae/` or `loras/` inside may also hold models of its own at the top.
            loose = [] if folders == [Path(root)] else _model_files(Path(root), recursive=False)
            for path in loose + [p for folder in folders for p in _model_files(folder)]:
                key = str(path.resolve())
                if key in seen:  # a folder given twice, nested in another, or linked
                    continue
                seen.add(key)
                try:
                    stat = path.stat()
                except OSError as exc:
                    entries.append(LibraryEntry(str(path), path.stem, "error", error=f"{path.name}: {exc.strerror}"))
                    continue
                old = cached.get(key)
                if old is not None and old.size == stat.st_size and old.mtime_ns == stat.st_mtime_ns:
                    entry = old
                else:
                    entry, inspections = _describe(path, stat), inspections + 1
                entry.path, entry.preview = str(path), _preview(path)  # previews come and go freely
                entries.append(entry)
        library = cls(entries, cache_path, inspections)
        if inspections or len(cached) != len(entries):
            library.save()
        return library

    # ------------------------------------------------------------------ queries
    def filter(self, kind: str | None = None, family: str | None = None, search: str | None = None
               ) -> list[LibraryEntry]:
        """Entries of a kind and/or family whose name contains every word of `search` (any case)."""
        words = search.lower().split() if search else []
        return [e for e in self.entries
                if (kind is None or e.kind == kind) and (family is None or e.family == family)
                and all(word in e.name.lower() for word in words)]

    @property
    def errors(self) -> list[LibraryEntry]:
        return [e for e in self.entries if e.kind == "error"]

    def short_hash(self, entry: LibraryEntry) -> str | None:
        """A1111's AutoV2 hash (sha256 of the whole file, 10 hex digits), computed on first request
        and kept in the cache; None when the file cannot be read."""
        self._hash(entry)
        return entry.short_hash

    def lora_hash(self, entry: LibraryEntry) -> str | None:
        """The 12-digit hash A1111 writes for a LoRA in infotexts ('Lora hashes'): sha256 of the
        tensor data after the safetensors header."""
        self._hash(entry)
        return entry.lora_sha256[:12] if entry.lora_sha256 else None

    def _hash(self, entry: LibraryEntry) -> None:
        if entry.sha256 is None:
            try:
                entry.sha256, entry.lora_sha256 = _hash_file(Path(entry.path))
            except OSError:
                return
            self.save()

    def to_json(self) -> list[dict]:
        return [asdict(e) | {"short_hash": e.short_hash} for e in self.entries]

    def save(self) -> None:
        if self.cache_path is None:
            return
        data = {"version": CACHE_VERSION,
                "entries": {str(Path(e.path).resolve()): asdict(e) for e in self.entries if e.mtime_ns}}
        _write_atomically(self.cache_path, json.dumps(data))


def _model_files(folder: Path, recursive: bool = True) -> list[Path]:
    found, visited = [], set()
    # followlinks: model folders are often symlinked between UIs; `visited` stops a link loop.
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in visited:
            dirnames[:] = []
            continue
        visited.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recursive else []
        found += [Path(dirpath, n) for n in sorted(filenames) if n.lower().endswith(MODEL_SUFFIXES)]
    return found


def _load_cache(path: Path | None) -> dict[str, LibraryEntry]:
    """The cached entries; {} for a missing, corrupt or older-version cache (it is rebuilt)."""
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != CACHE_VERSION:
            return {}
        return {key: LibraryEntry(**value) for key, value in data["entries"].items()}
    except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return {}


def _write_atomically(path: Path, text: str) -> None:
    # A crash mid-write leaves the old cache (or none), never half a file.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except OSError:
        Path(tmp).unlink(missing_ok=True)  # a read-only cache folder only costs speed
