"""Recognise a LoRA file from its key names and header, without torch.

A LoRA file is a flat list of tensors, each `<module key>.<role suffix>`. The suffix says which
algorithm the module uses (kohya/LyCORIS `lora_down`, `hada_*`, `lokr_*`; PEFT `lora_A`; old
diffusers `lora.down`) and the module key's prefix says which network it patches
(`lora_unet_`, `lora_te1_`, `unet.`, `text_encoder_2.` …). `parse_key` splits one key;
`inspect_lora` describes a whole file (format, family guess, ranks, alphas, targets, trigger
words) from the header alone, reading only the few bytes of the scalar `alpha` tensors.
"""
from __future__ import annotations

import json
import re
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from inference.errors import ModelFormatError, UnsupportedModelError
from inference.formats.safetensors_header import (
    SafetensorsHeader,
    TensorInfo,
    read_header,
)

# Role suffix (after the module key and a dot) → canonical role. Longest match wins.
ROLE_SUFFIXES: dict[str, str] = {
    # kohya / A1111 / LyCORIS LoCon
    "lora_down.weight": "down", "lora_up.weight": "up", "lora_mid.weight": "mid",
    "alpha": "alpha", "dora_scale": "dora",
    # LyCORIS LoHa
    "hada_w1_a": "hada_w1_a", "hada_w1_b": "hada_w1_b", "hada_w2_a": "hada_w2_a", "hada_w2_b": "hada_w2_b",
    "hada_t1": "hada_t1", "hada_t2": "hada_t2",
    # LyCORIS LoKr
    "lokr_w1": "lokr_w1", "lokr_w1_a": "lokr_w1_a", "lokr_w1_b": "lokr_w1_b",
    "lokr_w2": "lokr_w2", "lokr_w2_a": "lokr_w2_a", "lokr_w2_b": "lokr_w2_b", "lokr_t2": "lokr_t2",
    # PEFT (diffusers' current format)
    "lora_A.weight": "down", "lora_B.weight": "up",
    "lora_magnitude_vector": "dora", "lora_magnitude_vector.weight": "dora",
    # diffusers before PEFT
    "lora.down.weight": "down", "lora.up.weight": "up",
    "lora_linear_layer.down.weight": "down", "lora_linear_layer.up.weight": "up",
}
_SUFFIXES_LONGEST_FIRST = sorted(ROLE_SUFFIXES, key=len, reverse=True)

# LyCORIS algorithms we recognise but do not apply: named in the error instead of "unknown key".
UNSUPPORTED_SUFFIXES: dict[str, str] = {
    "diff": "full weight difference (LyCORIS 'full')", "diff_b": "full bias difference (LyCORIS 'full')",
    "on_input": "IA3", "oft_blocks": "OFT", "oft_diag": "OFT", "oft_R": "OFT",
    "a1.weight": "GLoRA", "a2.weight": "GLoRA", "b1.weight": "GLoRA", "b2.weight": "GLoRA",
    "bias_indices": "LyCORIS bias", "bias_values": "LyCORIS bias",
}

# diffusers' pre-PEFT attention processors: `…attn1.processor.to_q_lora.down.weight` and the text
# encoders' `…self_attn.to_q_lora.down.weight` name the projection inside the role suffix.
_OLD_PROCESSOR = re.compile(r"^(?P<module>.*?)(?:\.processor)?\.(?P<proj>to_q|to_k|to_v|to_out)_lora\."
                            r"(?P<role>down|up)\.weight$")

# Module-key prefixes: (prefix, component, naming). "kohya" names join module paths with "_".
COMPONENT_PREFIXES: tuple[tuple[str, str, str], ...] = (
    ("lora_unet_", "unet", "kohya"), ("lora_te1_", "te1", "kohya"), ("lora_te2_", "te2", "kohya"),
    ("lora_te_", "te1", "kohya"),
    ("unet.", "unet", "dotted"), ("text_encoder_2.", "te2", "dotted"), ("text_encoder.", "te1", "dotted"),
)
# Bare diffusers UNet paths (some trainers save the UNet state without the `unet.` prefix).
_BARE_UNET = ("down_blocks.", "mid_block.", "up_blocks.", "conv_in.", "conv_out.", "time_embedding.",
              "add_embedding.")

_CONTEXT_WIDTHS = {768: "sd1", 1024: "sd2", 2048: "sdxl"}
_TEXT_WIDTHS = {768: "sd1", 1024: "sd2"}


@dataclass(frozen=True)
class ParsedKey:
    """One tensor key split into where it goes and what it is."""

    component: str  # "unet", "te1", "te2"
    naming: str  # "kohya" (underscore-joined path) or "dotted"
    module: str  # the module path after the component prefix, as written in the file
    role: str  # canonical role: down, up, mid, alpha, dora, hada_*, lokr_*
    style: str  # "kohya", "peft", "diffusers_old"

    @property
    def lookup(self) -> str:
        """Component-qualified path with dots as underscores: one spelling for every format."""
        return f"{self.component}:{self.module.replace('.', '_')}"


def _split_component(module_key: str) -> tuple[str, str, str] | None:
    # PEFT's own save_pretrained of a wrapped UNet prefixes its paths with `base_model.model.`
    module_key = module_key.removeprefix("base_model.model.")
    for prefix, component, naming in COMPONENT_PREFIXES:
        if module_key.startswith(prefix):
            return component, naming, module_key[len(prefix):]
    if module_key.startswith(_BARE_UNET):
        return "unet", "dotted", module_key
    return None


def parse_key(key: str) -> ParsedKey | str:
    """A ParsedKey, or a short reason why the key is not one we can apply."""
    old = _OLD_PROCESSOR.match(key)
    if old:
        module_key, proj = old["module"], old["proj"]
        split = _split_component(module_key)
        if split is None:
            return "unknown prefix"
        component, naming, path = split
        if component == "unet":
            path = f"{path}.{'to_out.0' if proj == 'to_out' else proj}"
        else:  # CLIP names the projections q_proj … out_proj
            path = f"{path}.{proj[3:]}_proj" if proj != "to_out" else f"{path}.out_proj"
        return ParsedKey(component, naming, path, old["role"], "diffusers_old")
    for suffix in _SUFFIXES_LONGEST_FIRST:
        if key.endswith("." + suffix):
            module_key = key[: -len(suffix) - 1]
            split = _split_component(module_key)
            if split is None:
                return "unknown prefix"
            component, naming, path = split
            if suffix.startswith(("lora_A", "lora_B", "lora_magnitude")):
                style = "peft"
            elif suffix.startswith(("lora.", "lora_linear_layer.")):
                style = "diffusers_old"
            elif naming == "dotted":
                # `.alpha` next to PEFT keys (diffusers' network_alphas) is PEFT style
                style = "peft"
            else:
                style = "kohya"
            return ParsedKey(component, naming, path, ROLE_SUFFIXES[suffix], style)
    for suffix, algorithm in UNSUPPORTED_SUFFIXES.items():
        if key.endswith("." + suffix):
            return f"unsupported algorithm: {algorithm}"
    return "unknown key"


def algorithm_of(roles: set[str], kernel: tuple[int, ...] = ()) -> str:
    """lora / locon (LoRA on a convolution) / loha / lokr for one module's set of roles."""
    if any(r.startswith("hada_") for r in roles):
        return "loha"
    if any(r.startswith("lokr_") for r in roles):
        return "lokr"
    return "locon" if "mid" in roles or any(k > 1 for k in kernel) else "lora"


def rank_of(shapes: dict[str, tuple[int, ...]]) -> int | None:
    """The rank `alpha` is divided by (None: a LoKr module with both factors full, never scaled)."""
    if "down" in shapes:
        return shapes["down"][0]
    if "hada_w1_b" in shapes:
        return shapes["hada_w1_b"][0]
    if "lokr_w1_b" in shapes:
        return shapes["lokr_w1_b"][0]
    if "lokr_w2_b" in shapes:
        return shapes["lokr_w2_b"][0]
    return None


def in_features(shapes: dict[str, tuple[int, ...]]) -> int | None:
    """Input width of the patched layer (per kernel tap for convolutions) when the shapes show it."""
    if "down" in shapes:
        return shapes["down"][1]
    if "hada_w1_b" in shapes:
        return shapes["hada_w1_b"][1] if "hada_t1" in shapes or len(shapes["hada_w1_b"]) > 1 else None
    if "lokr_w1" in shapes or "lokr_w1_b" in shapes:
        first = shapes["lokr_w1"][1] if "lokr_w1" in shapes else shapes["lokr_w1_b"][1]
        second = (shapes["lokr_w2"][1] if "lokr_w2" in shapes else
                  shapes["lokr_w2_b"][1] if "lokr_w2_b" in shapes else None)
        return first * second if second is not None else None
    return None


# ----------------------------------------------------------------------------- alpha scalars
_SCALAR_FORMATS = {"F32": "<f", "F64": "<d", "F16": "<e", "I64": "<q", "I32": "<i"}


def _read_scalar(header: SafetensorsHeader, info: TensorInfo) -> float | None:
    """Decode a one-element tensor straight from the file (alphas are scalars; no torch needed)."""
    count = 1
    for dim in info.shape:
        count *= dim
    if count != 1:
        return None
    with open(header.path, "rb") as handle:
        handle.seek(header.data_start + info.begin)
        raw = handle.read(info.nbytes)
    if info.dtype == "BF16":
        return struct.unpack("<f", b"\x00\x00" + raw)[0]
    fmt = _SCALAR_FORMATS.get(info.dtype)
    return float(struct.unpack(fmt, raw)[0]) if fmt else None


# ----------------------------------------------------------------------------- metadata
def peft_metadata(metadata: dict[str, str]) -> dict:
    """diffusers' `lora_adapter_metadata` (PEFT LoraConfig per component: r, lora_alpha, patterns)."""
    raw = metadata.get("lora_adapter_metadata")
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def _json_field(metadata: dict[str, str], key: str) -> object:
    try:
        return json.loads(metadata[key])
    except (KeyError, json.JSONDecodeError):
        return None


def trigger_words(metadata: dict[str, str], top: int = 20) -> dict:
    """Trigger phrases and the training tags, most frequent first.

    Explicit phrases (ModelSpec `modelspec.trigger_phrase`, a plain `trigger_words`/`trigger_phrase`
    entry) come first; kohya's `ss_tag_frequency` ({dataset dir: {tag: count}}) gives the tags,
    and its dataset folders are named `<repeats>_<instance phrase>` by kohya's convention."""
    explicit: list[str] = []
    for key in ("modelspec.trigger_phrase", "trigger_phrase", "trigger_words", "ss_trigger_words"):
        value = metadata.get(key)
        if value:
            parsed = _json_field(metadata, key)
            items = parsed if isinstance(parsed, list) else str(value).split(",")
            explicit.extend(str(v).strip() for v in items if str(v).strip())
    counts: Counter[str] = Counter()
    folders: list[str] = []
    frequency = _json_field(metadata, "ss_tag_frequency")
    if isinstance(frequency, dict):
        for folder, tags in frequency.items():
            match = re.match(r"^\d+_(.+)$", str(folder))
            if match:
                folders.append(match.group(1).strip())
            if isinstance(tags, dict):
                for tag, count in tags.items():
                    if isinstance(count, (int, float)) and str(tag).strip():
                        counts[str(tag).strip()] += int(count)
    tags = counts.most_common(top)
    words = list(dict.fromkeys(explicit or folders or [t for t, _ in tags[:3]]))
    return {"trigger_words": words, "tags": tags}


def family_from_metadata(metadata: dict[str, str]) -> str | None:
    version = metadata.get("ss_base_model_version", "")
    arch = metadata.get("modelspec.architecture", "")
    if version.startswith("sdxl") or arch.startswith("stable-diffusion-xl"):
        return "sdxl_refiner" if "refiner" in version + arch else "sdxl"
    if version.startswith("sd_v2") or arch.startswith("stable-diffusion-v2") or metadata.get("ss_v2") == "True":
        return "sd2"
    if version.startswith("sd_v1") or arch.startswith("stable-diffusion-v1"):
        return "sd1"
    return None


# ----------------------------------------------------------------------------- whole file
@dataclass
class ModuleEntry:
    """The tensors of one patched module, as keys and shapes (no data)."""

    parsed: ParsedKey
    keys: dict[str, str]  # role → tensor key in the file
    shapes: dict[str, tuple[int, ...]]


def group_modules(keys_and_shapes: dict[str, tuple[int, ...]]
                  ) -> tuple[dict[str, ModuleEntry], list[tuple[str, str]]]:
    """Group tensor keys by module (lookup spelling). Returns (modules, [(key, reason)] refused)."""
    modules: dict[str, ModuleEntry] = {}
    refused: list[tuple[str, str]] = []
    for key, shape in keys_and_shapes.items():
        parsed = parse_key(key)
        if isinstance(parsed, str):
            refused.append((key, parsed))
            continue
        entry = modules.setdefault(parsed.lookup, ModuleEntry(parsed, {}, {}))
        if parsed.role in entry.keys:
            refused.append((key, f"duplicate {parsed.role} for {parsed.lookup}"))
            continue
        entry.keys[parsed.role] = key
        entry.shapes[parsed.role] = tuple(shape)
        if entry.parsed.role in ("alpha", "dora") and parsed.role not in ("alpha", "dora"):
            entry.parsed = parsed  # the weights, not the scalars, say which naming style this is
    for lookup, entry in list(modules.items()):
        problem = incomplete(entry.shapes)
        if problem:  # one entry per module, named by its first key
            refused.append((next(iter(entry.keys.values())), problem))
            del modules[lookup]
    return modules, refused


def incomplete(shapes: dict[str, tuple[int, ...]]) -> str | None:
    roles = set(shapes)
    if roles <= {"alpha", "dora"}:
        return "alpha/dora without weights"
    if "down" in roles or "up" in roles:
        return None if {"down", "up"} <= roles else "LoRA without both up and down"
    if any(r.startswith("hada_") for r in roles):
        need = {"hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"}
        if ("hada_t1" in roles) != ("hada_t2" in roles):
            return "LoHa with only one Tucker core"
        return None if need <= roles else "LoHa without all four hada_w* factors"
    if any(r.startswith("lokr_") for r in roles):
        has_w1 = "lokr_w1" in roles or {"lokr_w1_a", "lokr_w1_b"} <= roles
        has_w2 = "lokr_w2" in roles or {"lokr_w2_a", "lokr_w2_b"} <= roles
        return None if has_w1 and has_w2 else "LoKr without both Kronecker factors"
    return "no weights"


def _family_guess(modules: dict[str, ModuleEntry], metadata: dict[str, str]) -> tuple[str | None, str]:
    from_meta = family_from_metadata(metadata)
    if from_meta:
        return from_meta, "metadata"
    if any(e.parsed.component == "te2" for e in modules.values()):
        return "sdxl", "second text encoder targeted"
    for entry in modules.values():
        if entry.parsed.component == "unet" and entry.parsed.lookup.endswith(("attn2_to_k", "attn2_to_v")):
            width = in_features(entry.shapes)
            if width in _CONTEXT_WIDTHS:
                return _CONTEXT_WIDTHS[width], f"cross-attention width {width}"
    for entry in modules.values():
        if entry.parsed.component == "te1" and entry.parsed.lookup.endswith(("q_proj", "fc1")):
            width = in_features(entry.shapes)
            if width in _TEXT_WIDTHS:
                return _TEXT_WIDTHS[width], f"text encoder width {width}"
    return None, "not recognisable from shapes"


def describe(header: SafetensorsHeader, name: str | None = None) -> dict:
    """The description `inspect_lora` returns, from a validated header."""
    name = name or header.path.name
    shapes = {k: tuple(t.shape) for k, t in header.tensors.items()}
    modules, refused = group_modules(shapes)
    if not modules:
        algorithms = sorted({why.split(": ", 1)[1] for _, why in refused if why.startswith("unsupported algorithm")})
        if algorithms:
            raise UnsupportedModelError(f"{name}: a {', '.join(algorithms)} network, which is not supported "
                                        "(LoRA, LoCon, LoHa, LoKr and DoRA are)")
        first = ", ".join(k for k, _ in refused[:3]) or "none"
        raise UnsupportedModelError(f"{name}: not a LoRA file we recognise (keys such as {first})")
    algorithms: Counter[str] = Counter()
    styles: Counter[str] = Counter()
    targets: Counter[str] = Counter()
    ranks: Counter[int] = Counter()
    alphas: Counter[float] = Counter()
    dora = False
    for entry in modules.values():
        kernel = tuple(entry.shapes.get("down", ())[2:]) or tuple(entry.shapes.get("hada_t1", ())[2:])
        algorithms[algorithm_of(set(entry.shapes), kernel)] += 1
        styles[entry.parsed.style] += 1
        targets[entry.parsed.component] += 1
        dora = dora or "dora" in entry.shapes
        rank = rank_of(entry.shapes)
        if rank is not None:
            ranks[rank] += 1
        if "alpha" in entry.keys:
            value = _read_scalar(header, header.tensors[entry.keys["alpha"]])
            if value is not None:
                alphas[round(value, 6)] += 1
    style = styles.most_common(1)[0][0]
    kinds = sorted(algorithms)
    label = {"lora": "LoRA", "locon": "LyCORIS LoCon", "loha": "LyCORIS LoHa", "lokr": "LyCORIS LoKr"}
    main = "lokr" if "lokr" in algorithms else "loha" if "loha" in algorithms else (
        "locon" if "locon" in algorithms else "lora")
    family, family_reason = _family_guess(modules, header.metadata)
    adapter = peft_metadata(header.metadata)
    if adapter and not alphas:
        for component in ("unet", "text_encoder", "text_encoder_2"):
            if f"{component}.lora_alpha" in adapter:
                alphas[float(adapter[f"{component}.lora_alpha"])] += 1
    words = trigger_words(header.metadata)
    return {
        "path": str(header.path), "name": name.removesuffix(".safetensors"),
        "format": {"kohya": "kohya", "peft": "peft", "diffusers_old": "diffusers"}[style],
        "algorithm": main, "algorithms": kinds, "dora": dora,
        "kind": f"{label[main]}{' + DoRA' if dora else ''} ({style.replace('_old', ' (pre-PEFT)')} names)",
        "family": family, "family_reason": family_reason,
        "modules": len(modules), "targets": dict(sorted(targets.items())),
        "ranks": dict(sorted(ranks.items())), "alphas": sorted(alphas)[:8],
        "alpha_range": [min(alphas), max(alphas)] if alphas else None,
        "unrecognised_keys": [f"{k} ({why})" for k, why in refused[:10]], "unrecognised_count": len(refused),
        "trigger_words": words["trigger_words"], "tags": words["tags"],
        "title": header.metadata.get("modelspec.title") or header.metadata.get("ss_output_name"),
    }


def inspect_lora(path: str | Path) -> dict:
    """Describe a LoRA file from its header: format, algorithm(s), family guess, ranks, alphas,
    target counts per network and trigger words. Raises ModelFormatError for a bad file and
    UnsupportedModelError when nothing in it is a LoRA module we know."""
    path = Path(path)
    if not path.is_file():
        raise ModelFormatError(f"{path}: no such file")
    if path.suffix.lower() != ".safetensors":
        raise ModelFormatError(f"{path.name}: LoRAs are read from .safetensors files only")
    return describe(read_header(path), path.name)
