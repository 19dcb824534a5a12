"""The model library: scanning ComfyUI/A1111/plain folders header-only, the (path, size, mtime)
cache, broken files, previews, A1111 short hashes, filters and `<lora:…>` resolution."""
from __future__ import annotations

import hashlib
import json
import os
import struct
import time
from pathlib import Path

import pytest

from inference import library as library_module
from inference.api import LoraSpec
from inference.errors import InvalidRequestError
from inference.library import ModelLibrary, model_folders
from inference.lora.prompt import extract_loras, resolve_loras

_ITEM = {"F16": 2, "F32": 4}


def write_header_only(path: Path, shapes: dict[str, tuple[str, tuple[int, ...]]], metadata: dict | None = None) -> Path:
    """A valid .safetensors file whose data region is a sparse hole: a model for the price of its header."""
    header: dict = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for name, (dtype, shape) in shapes.items():
        size = _ITEM[dtype]
        for dim in shape:
            size *= dim
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(raw)) + raw)
        handle.truncate(8 + len(raw) + offset)
    return path


@pytest.fixture(scope="module")
def templates() -> dict[str, dict]:
    """Key/shape sets of each kind, taken once from the tiny SD1 checkpoint of tests/layouts."""
    import layouts

    tensors, metadata = layouts.tiny_checkpoint(0)  # metadata: the family its tiny shapes cannot show
    code = {"torch.float16": "F16", "torch.float32": "F32"}
    shapes = {k: (code[str(v.dtype)], tuple(v.shape)) for k, v in tensors.items()}
    unet = {k[len("model.diffusion_model."):]: v for k, v in shapes.items() if k.startswith("model.diffusion_model.")}
    vae = {k[len("first_stage_model."):]: v for k, v in shapes.items() if k.startswith("first_stage_model.")}
    lora = {}
    for block in range(2):
        module = f"lora_unet_down_blocks_0_attentions_{block}_transformer_blocks_0_attn1_to_q"
        lora[f"{module}.lora_down.weight"] = ("F16", (4, 320))
        lora[f"{module}.lora_up.weight"] = ("F16", (320, 4))
        lora[f"{module}.alpha"] = ("F16", ())
    return {"checkpoint": shapes, "unet": unet, "vae": vae, "lora": lora, "checkpoint_metadata": metadata}


def _lora_metadata(i: int) -> dict:
    # Odd LoRAs say they are SDXL (kohya's ss_base_model_version) so the family filter has two answers.
    return {"ss_tag_frequency": json.dumps({f"10_style{i} person": {"hat": 3, "red": 1}}),
            "ss_base_model_version": "sdxl_base_v1-0" if i % 2 else "sd_v1"}


def _metadata(templates: dict, kind: str, i: int = 0) -> dict | None:
    return _lora_metadata(i) if kind == "lora" else templates["checkpoint_metadata"] if kind != "vae" else None


def build_tree(root: Path, templates: dict, per_kind: int = 60) -> dict[str, int]:
    """A ComfyUI root with every kind in its usual folder, plus broken and non-model files."""
    models = root / "models"
    expected = {"checkpoint": 0, "unet": 0, "vae": 0, "lora": 0, "error": 0}
    folders = {"checkpoint": "checkpoints", "unet": "unet", "vae": "vae", "lora": "loras"}
    for kind, folder in folders.items():
        for i in range(per_kind):
            sub = models / folder / (f"set{i % 3}" if i % 2 else "")
            write_header_only(sub / f"{kind}_{i:03d}.safetensors", templates[kind],
                              _metadata(templates, kind, i))
            expected[kind] += 1
    for i in range(10):  # broken: truncated header, garbage, a pickle, empty
        (models / "checkpoints" / f"truncated_{i}.safetensors").write_bytes(struct.pack("<Q", 4000) + b'{"a":')
        (models / "loras" / f"garbage_{i}.safetensors").write_bytes(os.urandom(64))
        (models / "checkpoints" / f"old_{i}.ckpt").write_bytes(b"\x80\x02}q\x00.")
        (models / "vae" / f"empty_{i}.safetensors").write_bytes(b"")
        expected["error"] += 4
    for i in range(20):  # not models: ignored
        (models / "loras" / f"notes_{i}.txt").write_text("hello")
        (models / "loras" / f"lora_{i:03d}.preview.png").write_bytes(b"\x89PNG")
    return expected


def test_scan_of_a_comfy_tree_and_the_cache(tmp_path, templates, monkeypatch):
    expected = build_tree(tmp_path / "ComfyUI", templates)
    total = sum(expected.values())
    assert total == 280
    write_header_only(tmp_path / "plain" / "extra_lora.safetensors", templates["lora"], _lora_metadata(99))
    for i in range(29):
        write_header_only(tmp_path / "plain" / f"plain_vae_{i}.safetensors", templates["vae"])
    total += 30
    assert total >= 300
    cache = tmp_path / "cache" / "library.json"

    started = time.perf_counter()
    first = ModelLibrary.scan([tmp_path / "ComfyUI", tmp_path / "plain"], cache)
    first_s = time.perf_counter() - started
    assert first.inspections == total == len(first.entries)
    counts = {kind: len(first.filter(kind=kind)) for kind in expected}
    assert counts == {**expected, "lora": 61, "vae": 89}
    assert {e.family for e in first.filter(kind="checkpoint")} == {"sd1"}
    # Every broken file is listed with a one-line reason naming it; none stopped the scan.
    for entry in first.errors:
        assert entry.error and "\n" not in entry.error and Path(entry.path).name in entry.error, entry

    # Second scan: nothing is inspected (read_model_info would raise if called).
    def refuse(*args, **kwargs):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr("inference.model_info.read_model_info", refuse)
    started = time.perf_counter()
    second = ModelLibrary.scan([tmp_path / "ComfyUI", tmp_path / "plain"], cache)
    second_s = time.perf_counter() - started
    assert second.inspections == 0
    assert [e.path for e in second.entries] == [e.path for e in first.entries]
    assert second.to_json() == first.to_json()
    # 310 stat calls and one JSON read: well under a second here, and far under the header scan.
    assert second_s < 1.0 and second_s < first_s / 2, (first_s, second_s)
    print(f"first scan {first_s:.3f} s, cached {second_s:.3f} s for {total} files")


def test_entry_facts_preview_triggers_and_filters(tmp_path, templates):
    build_tree(tmp_path / "ComfyUI", templates, per_kind=4)
    lib = ModelLibrary.scan([tmp_path / "ComfyUI"])
    lora = next(e for e in lib.entries if e.name == "lora_001")
    assert lora.kind == "lora" and lora.family == "sdxl"
    assert [e.name for e in lib.filter(kind="lora", family="sd1")] == ["lora_000", "lora_002"]
    assert lora.trigger_words == ["style1 person"]
    assert lora.preview is None  # its .preview.png lies in loras/, not next to the file in loras/set1/
    lora0 = next(e for e in lib.entries if e.name == "lora_000")
    assert lora0.preview == str(tmp_path / "ComfyUI/models/loras/lora_000.preview.png")
    assert lora0.size == os.path.getsize(lora0.path)
    # Walk order: a folder's files, then its sub-folders (set0 holds lora_003, set1 lora_001).
    assert [e.name for e in lib.filter(kind="lora", search="LORA 00")] == ["lora_000", "lora_002", "lora_003",
                                                                          "lora_001"]
    assert [e.name for e in lib.filter(family="sd1", search="checkpoint_002")] == ["checkpoint_002"]
    assert lib.filter(kind="vae", family="sdxl") == []
    reasons = {e.name: e.error for e in lib.errors}
    assert "empty_0" in reasons and "old_0" in reasons and "truncated_0" in reasons and "garbage_0" in reasons


def test_a1111_root_and_a1111_preview(tmp_path, templates):
    root = tmp_path / "stable-diffusion-webui"
    write_header_only(root / "models/Stable-diffusion/dream.safetensors", templates["checkpoint"],
                      templates["checkpoint_metadata"])
    write_header_only(root / "models/Lora/ink.safetensors", templates["lora"], _lora_metadata(1))
    (root / "models/Lora/ink.png").write_bytes(b"\x89PNG")
    write_header_only(root / "models/VAE/vae-ft.safetensors", templates["vae"])
    assert [p.name for p in model_folders(root)] == ["Stable-diffusion", "Lora", "VAE"]
    lib = ModelLibrary.scan([root])
    assert {e.name: e.kind for e in lib.entries} == {"dream": "checkpoint", "ink": "lora", "vae-ft": "vae"}
    assert next(e for e in lib.entries if e.name == "ink").preview == str(root / "models/Lora/ink.png")


def test_plain_folder_with_kind_subfolders_and_a_link_loop(tmp_path, templates):
    mixed = tmp_path / "mixed"
    write_header_only(mixed / "top.safetensors", templates["lora"])
    write_header_only(mixed / "vae" / "v.safetensors", templates["vae"])
    write_header_only(mixed / "elsewhere" / "skipped.safetensors", templates["lora"])  # not a model folder name
    (mixed / "vae" / "loop").symlink_to(mixed / "vae")  # a link loop must not hang the walk
    lib = ModelLibrary.scan([mixed, mixed / "vae"])  # given twice: listed once
    assert sorted((e.name, e.kind) for e in lib.entries) == [("top", "lora"), ("v", "vae")]


def test_cache_invalidation_on_change_and_corrupt_cache(tmp_path, templates):
    folder = tmp_path / "loras"
    for i in range(5):
        write_header_only(folder / f"l{i}.safetensors", templates["lora"], _lora_metadata(i))
    cache = tmp_path / "cache.json"
    assert ModelLibrary.scan([folder], cache).inspections == 5
    assert ModelLibrary.scan([folder], cache).inspections == 0
    # Same size, new mtime: re-read. New content (another kind, another size): re-read and re-kinded.
    os.utime(folder / "l0.safetensors", ns=(1_000_000_000, 1_000_000_000))
    write_header_only(folder / "l1.safetensors", templates["vae"])
    lib = ModelLibrary.scan([folder], cache)
    assert lib.inspections == 2
    assert next(e for e in lib.entries if e.name == "l1").kind == "vae"
    assert ModelLibrary.scan([folder], cache).inspections == 0
    # A corrupt cache (garbage, wrong shapes, wrong version) is ignored and rewritten.
    for junk in (b"\x00garbage{", b'{"version": 1, "entries": {"x": {"nope": 1}}}', b"[1, 2]",
                 b'{"version": 0, "entries": {}}', b"[" * 100_000):
        cache.write_bytes(junk)
        assert ModelLibrary.scan([folder], cache).inspections == 5
        assert json.loads(cache.read_text())["version"] == library_module.CACHE_VERSION
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_short_hash_is_a1111_autov2_and_lazy(tmp_path, templates):
    folder = tmp_path / "loras"
    path = write_header_only(folder / "ink.safetensors", templates["lora"], _lora_metadata(1))
    cache = tmp_path / "cache.json"
    lib = ModelLibrary.scan([folder], cache)
    entry = lib.entries[0]
    assert entry.sha256 is None  # not computed by a scan
    raw = path.read_bytes()
    autov2 = hashlib.sha256(raw).hexdigest()[:10]
    header_end = 8 + struct.unpack("<Q", raw[:8])[0]
    assert lib.short_hash(entry) == autov2 and len(autov2) == 10
    assert lib.lora_hash(entry) == hashlib.sha256(raw[header_end:]).hexdigest()[:12]
    # Kept in the cache for the next scan.
    assert ModelLibrary.scan([folder], cache).entries[0].short_hash == autov2


def test_resolve_by_stem_case_hash_and_ambiguity(tmp_path, templates):
    for rel in ("ink.safetensors", "Detail.safetensors", "a/twin.safetensors", "b/twin.safetensors",
                "a/Inkwash.safetensors", "b/INKWASH.safetensors"):
        # ink alone has metadata, so its bytes (and hash) are unique; the others are identical files.
        write_header_only(tmp_path / rel, templates["lora"], _lora_metadata(7) if rel == "ink.safetensors" else None)
    write_header_only(tmp_path / "vae_ink.safetensors", templates["vae"])
    lib = ModelLibrary.scan([tmp_path])
    prompt, tags = extract_loras("a fox, <lora:ink:0.8>, <lora:detail:0.5:1.5>")
    assert prompt == "a fox"
    specs = resolve_loras(tags, lib)
    assert [(Path(s.path).name, s.unet, s.text) for s in specs] == [("ink.safetensors", 0.8, None),
                                                                    ("Detail.safetensors", 1.5, 0.5)]
    # Exact stem wins over case-insensitive matches.
    assert Path(resolve_loras([("Inkwash", 1.0, None)], lib)[0].path).parent.name == "a"
    with pytest.raises(InvalidRequestError, match=r"'inkwash' is ambiguous: 2 files"):
        resolve_loras([("inkwash", 1.0, None)], lib)
    with pytest.raises(InvalidRequestError, match=r"'twin' is ambiguous"):
        resolve_loras([("twin", 1.0, None)], lib)
    with pytest.raises(InvalidRequestError, match=r"LoRA 'inc': not in the library \(close: ink"):
        resolve_loras([("inc", 1.0, None)], lib)
    ink = next(e for e in lib.entries if e.name == "ink")
    short = hashlib.sha256(Path(ink.path).read_bytes()).hexdigest()[:10]
    assert resolve_loras([(short.upper(), 0.7, None)], lib) == (LoraSpec(ink.path, 0.7, None),)
    lora_hash = lib.lora_hash(ink)
    # A1111's LoRA hash skips the header (metadata), and all six files hold the same (zero) tensor data.
    assert len(lora_hash) == 12 and lora_hash != short
    with pytest.raises(InvalidRequestError, match="ambiguous: 6 files"):
        resolve_loras([(lora_hash, 1.0, None)], lib)
    # Files of the same content share a hash: the twins' hash is ambiguous.
    twin = next(e for e in lib.entries if e.name == "twin")
    with pytest.raises(InvalidRequestError, match="ambiguous: 5 files"):
        resolve_loras([(lib.short_hash(twin), 0.7, None)], lib)
    with pytest.raises(InvalidRequestError, match="not in the library"):
        resolve_loras([("0123456789", 1.0, None)], lib)
    assert resolve_loras([], lib) == ()
