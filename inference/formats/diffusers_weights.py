"""Which `.safetensors` files hold a diffusers component's weights (torch-free).

A component folder (`unet/`, `vae/`, `text_encoder/`…) holds its weights in one of these forms,
as `save_pretrained` writes them:

* one file: `diffusion_pytorch_model.safetensors` (transformers: `model.safetensors`);
* shards listed by an index: `diffusion_pytorch_model.safetensors.index.json`, whose
  `weight_map` names the shard file of every tensor (large UNets, bigG text encoders);
* either of those with a variant tag: `diffusion_pytorch_model.fp16.safetensors`,
  `diffusion_pytorch_model.safetensors.index.fp16.json` + `…fp16-00001-of-00002.safetensors`.

The full-precision files win over variants when both are present. An index is validated before
any tensor is read: shard names must be plain file names inside the folder (no path escapes;
symlinks are allowed, the Hugging Face cache is made of them), every listed shard must exist, and
every tensor must be in exactly the one shard the index names for it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelFormatError
from .pickle_sniff import check_not_pickle
from .safetensors_header import SafetensorsHeader, read_header

# Variant tags tried after the untagged files, in order of preference (full precision first).
VARIANTS = ("", "fp32", "fp16", "bf16")


@dataclass(frozen=True)
class WeightFile:
    """One file of a component's weights and its validated header."""

    path: Path
    header: SafetensorsHeader


def _tagged(name: str, variant: str) -> str:
    """diffusers' `_add_variant`: the tag goes before the last extension ("a.safetensors" → "a.fp16.safetensors")."""
    if not variant:
        return name
    stem, _, extension = name.rpartition(".")
    return f"{stem}.{variant}.{extension}"


def _load_index(path: Path) -> dict[str, str]:
    """The index's weight map, refusing duplicate tensor names (json would keep only the last)."""

    def no_duplicates(pairs):
        seen: dict = {}
        for key, value in pairs:
            if key in seen:
                raise ModelFormatError(f"{path.name}: tensor {key!r} is listed twice")
            seen[key] = value
        return seen

    try:
        data = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=no_duplicates)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelFormatError(f"{path}: unreadable index ({str(exc).splitlines()[0][:120]})") from None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise ModelFormatError(f"{path}: the index has no weight_map")
    for key, shard in weight_map.items():
        if not isinstance(shard, str):
            raise ModelFormatError(f"{path.name}: the shard of {key!r} is not a file name")
    return weight_map


def _shard_path(folder: Path, index: Path, name: str) -> Path:
    if (not name or name in (".", "..") or "/" in name or "\\" in name or ":" in name
            or not name.endswith(".safetensors")):
        raise ModelFormatError(f"{index.name}: shard {name!r} is not a .safetensors file name inside {folder}")
    path = folder / name
    if not path.is_file():
        raise ModelFormatError(f"{index.name}: shard {name} is missing from {folder}")
    return path


def sharded_files(folder: Path, index: Path) -> list[WeightFile]:
    """Validate an index and its shards; the shards in the order the index first names them."""
    weight_map = _load_index(index)
    by_shard: dict[str, set[str]] = {}
    for key, shard in weight_map.items():
        by_shard.setdefault(shard, set()).add(key)
    files = []
    for name, keys in by_shard.items():
        path = _shard_path(folder, index, name)
        check_not_pickle(path)
        header = read_header(path)
        missing = sorted(keys - set(header.tensors))
        if missing:
            raise ModelFormatError(f"{index.name}: tensor {missing[0]!r} is not in its shard {name}")
        extra = sorted(set(header.tensors) - keys)
        if extra:
            owner = weight_map.get(extra[0])
            where = f"the index puts it in {owner}" if owner else "the index does not list it"
            raise ModelFormatError(f"{name}: holds tensor {extra[0]!r} but {where}")
        files.append(WeightFile(path, header))
    return files


def component_weights(folder: Path, stem: str) -> list[WeightFile]:
    """The weight files of one component folder: one file or validated shards (see the module doc)."""
    folder = Path(folder)
    for variant in VARIANTS:
        single = folder / _tagged(f"{stem}.safetensors", variant)
        if single.is_file():
            check_not_pickle(single)
            return [WeightFile(single, read_header(single))]
        index = folder / _tagged(f"{stem}.safetensors.index.json", variant)
        if index.is_file():
            return sharded_files(folder, index)
    pickles = sorted(p for p in folder.glob("*") if p.suffix in (".bin", ".ckpt", ".pt", ".pth"))
    if pickles:
        check_not_pickle(pickles[0])
    found = sorted(p.name for p in folder.glob("*.safetensors*"))
    hint = f" (found {', '.join(found[:3])})" if found else ""
    raise ModelFormatError(f"{folder}: no {stem}.safetensors, {stem}.safetensors.index.json or "
                           f"their fp16/bf16 variants{hint}")


def component_shapes(files: list[WeightFile]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(t.shape) for f in files for k, t in f.header.tensors.items()}
