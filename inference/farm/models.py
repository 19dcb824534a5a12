"""Model identity by content, and the worker's content-addressed model cache.

A model is known on the farm by SHA-256: of the file for a single `.safetensors` checkpoint (the
hash model sites publish), or of a manifest (sorted `sha256  size  relative/path` lines) for a
diffusers folder. Only what the engine reads without executing code is part of a model and
ever shipped: `.safetensors` weights, `.json` configs, `.txt` tokenizer merges. Pickle files
(`.bin`, `.ckpt`, …) in a folder are neither hashed nor sent.

Hashing reads the whole file once; the digest is cached by (path, size, mtime), so a library is
hashed once per process. On a worker, shipped bytes are written to a staging folder, each file's
SHA-256 and size are checked against the manifest, the manifest hash against the job's model hash,
every `.safetensors` header goes through our strict parser, configs through a strict JSON parse;
only then is the folder renamed into `sha256/<hash>` (atomic), so a cache entry is complete and
verified or absent. An entry is re-hashed once per worker process before first use.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .errors import FarmPayloadError, ModelTransferError

SHIPPABLE = (".safetensors", ".json", ".txt")
MAX_CONFIG_BYTES = 32 << 20  # configs and tokenizer files; weights are unbounded
MAX_ENTRIES = 512
CHUNK_BYTES = 16 << 20  # shipping unit: bounded memory on both sides, several chunks in flight
_READ = 1 << 20
_HASH_RE = re.compile(r"^[0-9a-f]{64}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9._+-]{1,128}$")
FOLDER_TAG = b"canvasai-farm-folder-v1\n"


@dataclass(frozen=True)
class ManifestEntry:
    path: str  # relative POSIX path inside the model (a single file: its name)
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    kind: str  # "file" or "folder"
    entries: tuple[ManifestEntry, ...]

    @property
    def content_hash(self) -> str:
        if self.kind == "file":
            return self.entries[0].sha256
        digest = hashlib.sha256(FOLDER_TAG)
        for entry in sorted(self.entries, key=lambda e: e.path):
            digest.update(f"{entry.sha256}  {entry.size}  {entry.path}\n".encode())
        return digest.hexdigest()

    @property
    def total_bytes(self) -> int:
        return sum(entry.size for entry in self.entries)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "entries": [[e.path, e.size, e.sha256] for e in self.entries]}


# ----------------------------------------------------------------------------- hashing (both sides)
_hash_cache: dict[tuple[str, int, int], str] = {}
_hash_lock = threading.Lock()


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, cached by (real path, size, mtime)."""
    path = Path(path)
    stat = path.stat()
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
    with _hash_lock:
        cached = _hash_cache.get(key)
    if cached is not None:
        return cached
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_READ), b""):
            digest.update(block)
    value = digest.hexdigest()
    with _hash_lock:
        _hash_cache[key] = value
    return value


def _shippable(name: str) -> bool:
    return name.endswith(SHIPPABLE)


def model_manifest(path: str | Path) -> Manifest:
    """The manifest of a local model file or folder (what the farm hashes and ships)."""
    path = Path(path)
    if path.is_file():
        if not path.name.endswith(".safetensors"):
            raise ModelTransferError(f"{path.name}: only .safetensors files can be sent to the farm "
                                     "(convert pickle checkpoints first: python -m inference convert)")
        return Manifest("file", (ManifestEntry(path.name, path.stat().st_size, file_sha256(path)),))
    if not path.is_dir():
        raise ModelTransferError(f"{path}: no such model file or folder")
    entries = []
    for file in sorted(path.rglob("*")):
        rel = file.relative_to(path).as_posix()
        if file.is_file() and _shippable(file.name) and not any(part.startswith(".") for part in rel.split("/")):
            entries.append(ManifestEntry(rel, file.stat().st_size, file_sha256(file)))
    if not any(entry.path.endswith(".safetensors") for entry in entries):
        raise ModelTransferError(f"{path.name}: the folder has no .safetensors weights to send")
    return Manifest("folder", tuple(entries))


def content_hash(path: str | Path) -> str:
    return model_manifest(path).content_hash


def iter_chunks(path: Path, size: int = CHUNK_BYTES) -> Iterator[tuple[int, bytes]]:
    with open(path, "rb") as handle:
        offset = 0
        while block := handle.read(size):
            yield offset, block
            offset += len(block)


# ----------------------------------------------------------------------------- manifests from the wire
def _check_rel_path(text: object, kind: str) -> str:
    if not isinstance(text, str) or len(text) > 512 or "\\" in text or "\x00" in text:
        raise FarmPayloadError("farm payload: manifest path must be short text without backslashes")
    parts = PurePosixPath(text).parts
    if text.startswith("/") or not parts or len(parts) > 4 or (kind == "file" and len(parts) != 1) \
            or any(part in (".", "..") or part.startswith(".") or not _NAME_RE.match(part) for part in parts):
        raise FarmPayloadError(f"farm payload: manifest path {text[:80]!r} is not a plain relative path")
    if not _shippable(text) or (kind == "file" and not text.endswith(".safetensors")):
        raise FarmPayloadError(f"farm payload: manifest file {text[:80]!r} is not a shippable model file")
    return text


def manifest_from_dict(obj: object) -> Manifest:
    if not isinstance(obj, dict) or set(obj) != {"kind", "entries"}:
        raise FarmPayloadError("farm payload: manifest must have exactly 'kind' and 'entries'")
    kind, raw = obj["kind"], obj["entries"]
    if kind not in ("file", "folder") or not isinstance(raw, list) or not 1 <= len(raw) <= MAX_ENTRIES \
            or (kind == "file" and len(raw) != 1):
        raise FarmPayloadError("farm payload: manifest kind or entry count is wrong")
    entries, seen = [], set()
    for item in raw:
        if not isinstance(item, (list, tuple)) or len(item) != 3:
            raise FarmPayloadError("farm payload: manifest entries are [path, size, sha256]")
        rel, size, digest = item
        rel = _check_rel_path(rel, kind)
        if rel in seen:
            raise FarmPayloadError(f"farm payload: manifest lists {rel!r} twice")
        seen.add(rel)
        if not isinstance(size, int) or isinstance(size, bool) or size < 0 or size > 1 << 40 \
                or (not rel.endswith(".safetensors") and size > MAX_CONFIG_BYTES):
            raise FarmPayloadError(f"farm payload: manifest size of {rel!r} is not acceptable")
        if not isinstance(digest, str) or not _HASH_RE.match(digest):
            raise FarmPayloadError(f"farm payload: manifest hash of {rel!r} is not a SHA-256")
        entries.append(ManifestEntry(rel, size, digest))
    return Manifest(kind, tuple(entries))


# ----------------------------------------------------------------------------- worker-side checks
def check_model_files(root: Path, manifest: Manifest) -> None:
    """Refuse files whose bytes, size or format do not match: every byte is re-read and hashed,
    `.safetensors` headers go through the engine's strict parser, configs through strict JSON."""
    from ..errors import InferenceError
    from ..formats.safetensors_header import read_header

    for entry in manifest.entries:
        file = root / entry.path
        if not file.is_file() or file.stat().st_size != entry.size:
            raise ModelTransferError(f"model file {entry.path}: size differs from the manifest")
        if file_sha256(file) != entry.sha256:
            raise ModelTransferError(f"model file {entry.path}: SHA-256 differs from the manifest")
        if entry.path.endswith(".safetensors"):
            try:
                read_header(file)
            except InferenceError as exc:
                raise ModelTransferError(f"model file {entry.path}: {exc}") from None
        elif entry.path.endswith(".json"):
            try:
                json.loads(file.read_text("utf-8"))
            except (UnicodeDecodeError, ValueError) as exc:
                raise ModelTransferError(f"model file {entry.path}: not valid JSON ({exc})") from None
        else:
            try:
                file.read_text("utf-8")
            except UnicodeDecodeError:
                raise ModelTransferError(f"model file {entry.path}: not UTF-8 text") from None


def model_path(entry_dir: Path, manifest: Manifest) -> Path:
    return entry_dir / manifest.entries[0].path if manifest.kind == "file" else entry_dir


class ModelCache:
    """`root/sha256/<hash>/` holds one verified model, plus `manifest.json` beside it as
    `root/sha256/<hash>.manifest.json`; `root/incoming/` holds uploads in progress."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser()
        self.store_dir = self.root / "sha256"
        self.incoming = self.root / "incoming"
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.incoming.mkdir(parents=True, exist_ok=True)
        self._verified: set[str] = set()
        self._lock = threading.Lock()
        self._uploads: dict[str, tuple[str, Manifest, Path]] = {}

    def lookup(self, digest: str) -> Path | None:
        """The model path of a cached, verified entry, or None (a damaged entry is removed)."""
        if not _HASH_RE.match(digest):
            return None
        entry, manifest_file = self.store_dir / digest, self.store_dir / f"{digest}.manifest.json"
        if not entry.is_dir() or not manifest_file.is_file():
            return None
        try:
            manifest = manifest_from_dict(json.loads(manifest_file.read_text("utf-8")))
            if digest not in self._verified:
                if manifest.content_hash != digest:
                    raise ModelTransferError("manifest hash differs")
                check_model_files(entry, manifest)
                with self._lock:
                    self._verified.add(digest)
        except (OSError, ValueError, FarmPayloadError, ModelTransferError):
            self._discard(entry, manifest_file)
            return None
        return model_path(entry, manifest)

    def cached(self) -> list[str]:
        return sorted(p.name for p in self.store_dir.iterdir() if p.is_dir() and _HASH_RE.match(p.name))

    # Uploads: begin → write chunks (any order, at offsets) → finish (verify, then publish).
    def begin(self, digest: str, manifest: Manifest) -> str:
        if not _HASH_RE.match(digest) or manifest.content_hash != digest:
            raise ModelTransferError("model manifest does not hash to the job's model hash")
        upload_id = uuid.uuid4().hex
        staging = self.incoming / upload_id
        staging.mkdir()
        for entry in manifest.entries:
            file = staging / entry.path
            file.parent.mkdir(parents=True, exist_ok=True)
            with open(file, "wb") as handle:
                handle.truncate(entry.size)  # sparse until written; the size is fixed up front
        with self._lock:
            self._uploads[upload_id] = (digest, manifest, staging)
        return upload_id

    def write(self, upload_id: str, rel: str, offset: int, data: bytes) -> int:
        with self._lock:
            upload = self._uploads.get(upload_id)
        if upload is None:
            raise ModelTransferError("unknown or finished model upload")
        _, manifest, staging = upload
        entry = next((e for e in manifest.entries if e.path == rel), None)
        if entry is None or not isinstance(offset, int) or not isinstance(data, (bytes, bytearray, memoryview)) \
                or offset < 0 or offset + len(data) > entry.size:
            raise ModelTransferError(f"model chunk for {str(rel)[:80]!r} does not fit the manifest")
        with open(staging / rel, "r+b") as handle:
            handle.seek(offset)
            handle.write(data)
        return len(data)

    def finish(self, upload_id: str) -> Path:
        with self._lock:
            upload = self._uploads.pop(upload_id, None)
        if upload is None:
            raise ModelTransferError("unknown or finished model upload")
        digest, manifest, staging = upload
        try:
            check_model_files(staging, manifest)
            manifest_file = self.store_dir / f"{digest}.manifest.json"
            tmp = self.incoming / f"{upload_id}.manifest.json"
            tmp.write_text(json.dumps(manifest.to_dict()), "utf-8")
            entry = self.store_dir / digest
            if entry.exists():  # another upload of the same model won the race: keep that one
                shutil.rmtree(staging, ignore_errors=True)
                tmp.unlink(missing_ok=True)
            else:
                os.replace(tmp, manifest_file)
                os.rename(staging, entry)
        except Exception:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        with self._lock:
            self._verified.add(digest)
        return model_path(self.store_dir / digest, manifest)

    def abort(self, upload_id: str) -> None:
        with self._lock:
            upload = self._uploads.pop(upload_id, None)
        if upload is not None:
            shutil.rmtree(upload[2], ignore_errors=True)

    def _discard(self, entry: Path, manifest_file: Path) -> None:
        shutil.rmtree(entry, ignore_errors=True)
        manifest_file.unlink(missing_ok=True)


def resolve_shared(path: str, digest: str, roots: tuple[str, ...]) -> Path | None:
    """The client's model path, if this worker sees it inside a configured shared library and its
    content hashes to `digest` (the hash is cached, so a shared model is read in full once)."""
    if not path or not roots:
        return None
    try:
        real = Path(os.path.realpath(path))
        if not any(real.is_relative_to(Path(os.path.realpath(root))) for root in roots) or not real.exists():
            return None
        return real if content_hash(real) == digest else None
    except (OSError, ModelTransferError):
        return None
