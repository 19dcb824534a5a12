"""Model identity by SHA-256 and the worker's content-addressed cache (no Ray needed)."""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
from safetensors.numpy import save_file

from inference.farm import models
from inference.farm.errors import FarmPayloadError, ModelTransferError
from inference.farm.models import ModelCache, content_hash, iter_chunks, manifest_from_dict, model_manifest


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "lib" / "tiny"
    (root / "unet").mkdir(parents=True)
    (root / "tokenizer").mkdir()
    save_file({"w": np.arange(3000, dtype=np.float32)}, str(root / "unet" / "diffusion_pytorch_model.safetensors"))
    (root / "unet" / "config.json").write_text('{"in_channels": 4}')
    (root / "tokenizer" / "merges.txt").write_text("#version: 0.2\na b\n")
    (root / "model_index.json").write_text("{}")
    (root / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"\x80\x02pickle")  # never hashed or shipped
    (root / ".cache").mkdir()
    (root / ".cache" / "junk.json").write_text("{}")
    return root


def _ship(cache: ModelCache, path, manifest, *, chunk=1000, tamper=None):
    """Ship a model into a cache as the client does: begin, chunks (out of order), finish."""
    upload = cache.begin(manifest.content_hash, manifest)
    for entry in manifest.entries:
        file = path if manifest.kind == "file" else path / entry.path
        for offset, block in reversed(list(iter_chunks(file, chunk))):
            if tamper is not None and entry.path.endswith(tamper) and offset == 0:
                block = bytes([block[0] ^ 1]) + block[1:]
            cache.write(upload, entry.path, offset, block)
    return cache.finish(upload)


def test_file_hash_is_the_plain_sha256_and_is_cached(tmp_path, monkeypatch):
    file = tmp_path / "m.safetensors"
    save_file({"w": np.ones(10, np.float32)}, str(file))
    assert content_hash(file) == hashlib.sha256(file.read_bytes()).hexdigest()
    reads = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda *a, **k: (reads.append(a[0]), real_open(*a, **k))[1])
    content_hash(file)
    assert reads == []  # same path, size and mtime: no second read
    os.utime(file, ns=(1, 1))
    content_hash(file)
    assert len(reads) == 1


def test_folder_manifest_skips_pickles_and_hidden_files(folder):
    manifest = model_manifest(folder)
    assert [e.path for e in manifest.entries] == ["model_index.json", "tokenizer/merges.txt", "unet/config.json",
                                                  "unet/diffusion_pytorch_model.safetensors"]
    assert manifest.total_bytes == sum((folder / e.path).stat().st_size for e in manifest.entries)
    before = manifest.content_hash
    (folder / "unet" / "config.json").write_text('{"in_channels": 9}')
    assert content_hash(folder) != before  # any byte of any shipped file changes the identity
    with pytest.raises(ModelTransferError, match="only .safetensors files"):
        model_manifest(folder / "unet" / "diffusion_pytorch_model.bin")


def test_shipping_verifies_and_publishes_atomically(folder, tmp_path):
    cache = ModelCache(tmp_path / "cache")
    manifest = model_manifest(folder)
    path = _ship(cache, folder, manifest)
    assert path == cache.store_dir / manifest.content_hash
    assert sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()) == \
        [e.path for e in manifest.entries]
    assert cache.lookup(manifest.content_hash) == path
    assert cache.cached() == [manifest.content_hash]
    assert list(cache.incoming.iterdir()) == []
    # A fresh cache object (a restarted worker) re-verifies once, then trusts the entry.
    assert ModelCache(tmp_path / "cache").lookup(manifest.content_hash) == path


def test_tampered_bytes_never_enter_the_cache(folder, tmp_path):
    cache = ModelCache(tmp_path / "cache")
    manifest = model_manifest(folder)
    with pytest.raises(ModelTransferError, match="diffusion_pytorch_model.safetensors: SHA-256 differs"):
        _ship(cache, folder, manifest, tamper=".safetensors")
    assert cache.cached() == [] and list(cache.incoming.iterdir()) == []
    assert cache.lookup(manifest.content_hash) is None


def test_a_damaged_cache_entry_is_dropped_not_used(folder, tmp_path):
    cache = ModelCache(tmp_path / "cache")
    manifest = model_manifest(folder)
    path = _ship(cache, folder, manifest)
    (path / "unet" / "config.json").write_text('{"in_channels": 8}')
    assert ModelCache(tmp_path / "cache").lookup(manifest.content_hash) is None
    assert not path.exists()


def test_bytes_matching_their_hash_must_still_be_safe_safetensors(tmp_path):
    evil = tmp_path / "evil.safetensors"
    header = b'{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "w": {"dtype": "F32", "shape": [1], ' \
             b'"data_offsets": [0, 4]}}'
    evil.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 8)  # duplicate key: refused
    cache = ModelCache(tmp_path / "cache")
    manifest = model_manifest(evil)
    with pytest.raises(ModelTransferError, match="evil.safetensors"):
        _ship(cache, evil, manifest)
    assert cache.cached() == []


def test_hostile_manifests_and_chunks(folder, tmp_path):
    cache = ModelCache(tmp_path / "cache")
    good = model_manifest(folder).to_dict()
    sha = "ab" * 32
    for entries, words in [
        ([["../../etc/passwd.json", 4, sha]], "is not a plain relative path"),
        ([["/abs.json", 4, sha]], "is not a plain relative path"),
        ([["unet\\x.json", 4, sha]], "without backslashes"),
        ([["unet/model.bin", 4, sha]], "is not a shippable model file"),
        ([["a.json", 4, sha], ["a.json", 4, sha]], "lists 'a.json' twice"),
        ([["a.json", 1 << 30, sha]], "size of 'a.json' is not acceptable"),
        ([["a.json", 4, "nothex"]], "hash of 'a.json' is not a SHA-256"),
    ]:
        with pytest.raises(FarmPayloadError, match=words):
            manifest_from_dict({"kind": "folder", "entries": entries})
    with pytest.raises(FarmPayloadError, match="kind or entry count"):
        manifest_from_dict({"kind": "file", "entries": good["entries"]})
    manifest = manifest_from_dict(json.loads(json.dumps(good)))
    with pytest.raises(ModelTransferError, match="does not hash to the job's model hash"):
        cache.begin("cd" * 32, manifest)
    upload = cache.begin(manifest.content_hash, manifest)
    size = manifest.entries[0].size
    with pytest.raises(ModelTransferError, match="does not fit the manifest"):
        cache.write(upload, manifest.entries[0].path, size - 1, b"xx")
    with pytest.raises(ModelTransferError, match="does not fit the manifest"):
        cache.write(upload, "unet/other.json", 0, b"x")
    cache.abort(upload)
    assert list(cache.incoming.iterdir()) == []


def test_shared_library_is_used_only_inside_its_roots_and_when_hashes_match(folder, tmp_path):
    digest = content_hash(folder)
    assert models.resolve_shared(str(folder), digest, (str(tmp_path / "lib"),)) == folder
    assert models.resolve_shared(str(folder), digest, ()) is None  # no shared roots configured
    assert models.resolve_shared(str(folder), digest, (str(tmp_path / "elsewhere"),)) is None
    assert models.resolve_shared(str(folder), "ab" * 32, (str(tmp_path / "lib"),)) is None
