"""Weights kept small in memory and widened per layer at run time: GGUF blocks and fp8.

A 12B FLUX transformer is 24 GB in bf16, 12 GB in fp8 and ~7 GB in GGUF Q4_K. Upcasting once at
load would give all of that back, so the compressed tensor stays resident and each `nn.Linear`
is replaced by a `CompressedLinear` that rebuilds its weight in the compute dtype when called
(one layer's weight at a time is transient; the GPU's memory bandwidth, not the dequantising
arithmetic, is what the big matmuls are bound by).

The GGML block formats are decoded here in torch (bit-identical to `gguf.quants.dequantize`'s
numpy reference, which the tests compare against), so dequantising runs on the GPU next to the
matmul. Layouts (ggml-common.h):
  Q8_0  32 values: f16 d, 32 × int8                       → d·q
  Q4_0  32 values: f16 d, 16 bytes of nibbles              → d·(q − 8)
  Q4_1  32 values: f16 d, f16 m, 16 bytes of nibbles       → d·q + m
  Q5_0  32 values: f16 d, 4 bytes high bits, 16 bytes nibbles → d·(q − 16)
  Q5_1  32 values: f16 d, f16 m, 4 bytes high bits, 16 bytes  → d·q + m
  Q4_K 256 values: f16 d, f16 dmin, 12 bytes of 6-bit (scale, min) × 8, 128 bytes nibbles
  Q5_K 256 values: as Q4_K plus 32 bytes of high bits
  Q6_K 256 values: 128 bytes low nibbles, 64 bytes 2-bit highs, 16 int8 scales, f16 d
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelFormatError

QK_K = 256
# GGML type name → (values per block, bytes per block).
BLOCKS: dict[str, tuple[int, int]] = {
    "Q8_0": (32, 34), "Q4_0": (32, 18), "Q4_1": (32, 20), "Q5_0": (32, 22), "Q5_1": (32, 24),
    "Q4_K": (QK_K, 144), "Q5_K": (QK_K, 176), "Q6_K": (QK_K, 210),
}


def _half(blocks: torch.Tensor, byte: int) -> torch.Tensor:
    """The little-endian half float at `byte` of each block → (n, 1) float32. Viewing the whole
    (contiguous, even-sized) block array as halves avoids a strided copy of a 2-byte column."""
    index = byte // 2
    return blocks.view(torch.float16)[:, index:index + 1].float()


def _nibbles(qs: torch.Tensor) -> torch.Tensor:
    """(n, k) bytes → (n, 2k): all low nibbles first, then all high ones (GGML's order)."""
    return torch.cat((qs & 0x0F, qs >> 4), dim=-1)


def _high_bits(qh: torch.Tensor, count: int) -> torch.Tensor:
    """(n, count/8) bytes → (n, count) bits, bit j of the little-endian word at position j."""
    shifts = torch.arange(8, device=qh.device, dtype=torch.uint8)
    return ((qh[:, :, None] >> shifts) & 1).reshape(qh.shape[0], count)


def _q8_0(b: torch.Tensor) -> torch.Tensor:
    return _half(b, 0) * b.view(torch.int8)[:, 2:].float()


def _q4_0(b: torch.Tensor) -> torch.Tensor:
    return _half(b, 0) * (_nibbles(b[:, 2:]).float() - 8)


def _q4_1(b: torch.Tensor) -> torch.Tensor:
    return _half(b, 0) * _nibbles(b[:, 4:]).float() + _half(b, 2)


def _q5_0(b: torch.Tensor) -> torch.Tensor:
    q = _nibbles(b[:, 6:]) | (_high_bits(b[:, 2:6], 32) << 4)
    return _half(b, 0) * (q.float() - 16)


def _q5_1(b: torch.Tensor) -> torch.Tensor:
    q = _nibbles(b[:, 8:]) | (_high_bits(b[:, 4:8], 32) << 4)
    return _half(b, 0) * q.float() + _half(b, 2)


def _k_scales(scales: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """12 bytes → 8 six-bit scales and 8 six-bit mins (Q4_K/Q5_K's packing): sub-blocks 0–3 sit
    in the low 6 bits of bytes 0–3 (scales) and 4–7 (mins); 4–7 take their low 4 bits from
    bytes 8–11 and their top 2 bits from the spare top bits of bytes 0–7."""
    d, m, md = scales[:, 0:4], scales[:, 4:8], scales[:, 8:12]
    sc = torch.cat((d & 0x3F, (md & 0x0F) | ((d >> 2) & 0x30)), dim=-1)
    mn = torch.cat((m & 0x3F, (md >> 4) | ((m >> 2) & 0x30)), dim=-1)
    return sc.float(), mn.float()


def _k_nibbles(qs: torch.Tensor) -> torch.Tensor:
    """128 bytes → 8 sub-blocks of 32: each 32-byte chunk gives its low nibbles, then its high."""
    n = qs.shape[0]
    chunks = qs.reshape(n, 4, 1, 32)
    return torch.cat((chunks & 0x0F, chunks >> 4), dim=2).reshape(n, 8, 32)


def _q4_k(b: torch.Tensor) -> torch.Tensor:
    d, dmin = _half(b, 0), _half(b, 2)
    sc, mn = _k_scales(b[:, 4:16])
    q = _k_nibbles(b[:, 16:]).float()
    return ((d * sc)[:, :, None] * q - (dmin * mn)[:, :, None]).reshape(b.shape[0], QK_K)


def _q5_k(b: torch.Tensor) -> torch.Tensor:
    n = b.shape[0]
    d, dmin = _half(b, 0), _half(b, 2)
    sc, mn = _k_scales(b[:, 4:16])
    qh = b[:, 16:48]  # bit j of byte i: the fifth bit of value i of sub-block j
    shifts = torch.arange(8, device=b.device, dtype=torch.uint8)
    high = ((qh[:, None, :] >> shifts[None, :, None]) & 1)  # (n, 8, 32)
    q = (_k_nibbles(b[:, 48:]) | (high << 4)).float()
    return ((d * sc)[:, :, None] * q - (dmin * mn)[:, :, None]).reshape(n, QK_K)


def _q6_k(b: torch.Tensor) -> torch.Tensor:
    n = b.shape[0]
    ql, qh = b[:, :128], b[:, 128:192]
    scales = b.view(torch.int8)[:, 192:208].float()  # (n, 16): one per 16 values
    d = _half(b, 208)
    low = torch.cat((ql.reshape(n, 2, 1, 64) & 0x0F, ql.reshape(n, 2, 1, 64) >> 4), dim=2).reshape(n, 2, 4, 32)
    shifts = torch.tensor([0, 2, 4, 6], device=b.device, dtype=torch.uint8)
    high = ((qh.reshape(n, 2, 1, 32) >> shifts[None, None, :, None]) & 3)  # (n, 2, 4, 32)
    q = ((low | (high << 4)).reshape(n, 16, 16).to(torch.int8) - 32).float()
    return (d[:, :, None] * scales[:, :, None] * q).reshape(n, QK_K)


_DECODERS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "Q8_0": _q8_0, "Q4_0": _q4_0, "Q4_1": _q4_1, "Q5_0": _q5_0, "Q5_1": _q5_1,
    "Q4_K": _q4_k, "Q5_K": _q5_k, "Q6_K": _q6_k,
}


def dequantize(raw: torch.Tensor, qtype: str, shape: tuple[int, ...],
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """GGML blocks (uint8, any shape, row-major) → a `shape` tensor in `dtype`, on raw's device."""
    _, size = BLOCKS[qtype]
    blocks = raw.reshape(-1, size).contiguous()  # every block size is even: viewable as halves
    values = _DECODERS[qtype](blocks)
    return values.reshape(shape).to(dtype)


@dataclass(frozen=True)
class Compressed:
    """A weight as stored: GGML blocks (`qtype` one of BLOCKS) or an fp8 tensor (`qtype` "F8_E4M3"
    / "F8_E5M2", with an optional per-tensor `scale`, as ComfyUI's "scaled fp8" files store it)."""

    data: torch.Tensor
    qtype: str
    shape: tuple[int, ...]
    scale: torch.Tensor | None = None

    def materialise(self, dtype: torch.dtype) -> torch.Tensor:
        if self.qtype in BLOCKS:
            return dequantize(self.data, self.qtype, self.shape, dtype)
        weight = self.data.to(dtype)
        return weight * self.scale.to(dtype) if self.scale is not None else weight

    @property
    def nbytes(self) -> int:
        return self.data.numel() * self.data.element_size()


class CompressedLinear(nn.Module):
    """`nn.Linear` whose weight stays compressed (buffer `qweight`) and is rebuilt in the compute
    dtype at each call. The bias is small and stored plainly."""

    def __init__(self, weight: Compressed, bias: torch.Tensor | None, compute_dtype: torch.dtype):
        super().__init__()
        self.qtype, self.shape, self.compute_dtype = weight.qtype, weight.shape, compute_dtype
        self.out_features, self.in_features = weight.shape
        self.register_buffer("qweight", weight.data)
        self.register_buffer("qscale", weight.scale)
        self.bias = None if bias is None else nn.Parameter(bias.to(compute_dtype), requires_grad=False)

    @property
    def weight(self) -> torch.Tensor:
        """The full-precision weight (for code that reads `.weight`: a transient copy)."""
        return Compressed(self.qweight, self.qtype, self.shape, self.qscale).materialise(self.compute_dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = Compressed(self.qweight, self.qtype, self.shape, self.qscale).materialise(x.dtype)
        return F.linear(x, weight, None if self.bias is None else self.bias.to(x.dtype))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, qtype={self.qtype}"


def _shape_of(value: torch.Tensor | Compressed) -> tuple[int, ...]:
    return tuple(value.shape)


def materialise_compressed(factory: Callable[[], nn.Module], state: Mapping[str, torch.Tensor | Compressed],
                           what: str, source: str, dtype: torch.dtype, report: dict,
                           inspect_only: bool = False) -> nn.Module:
    """Build on meta and fill from `state`, where a value may be `Compressed`: the weight of an
    `nn.Linear` then makes that layer a `CompressedLinear`; any other compressed tensor (a norm
    scale or embedding, small) is widened to `dtype` now. Keys and shapes are checked as strictly
    as the plain loader does (one line naming the file and the first offending keys).
    `inspect_only` (meta tensors, nothing read): mismatches are reported, not raised."""
    with torch.device("meta"):
        module = factory()
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != _shape_of(state[k]))
    report.setdefault("missing_keys", []).extend(f"{what}:{k}" for k in missing)
    report.setdefault("unexpected_keys", []).extend(f"{what}:{k}" for k in unexpected)
    report.setdefault("shape_mismatches", []).extend(
        f"{what}:{k} {_shape_of(state[k])} != {tuple(expected[k].shape)}" for k in wrong)
    if inspect_only:
        return module
    if missing or unexpected or wrong:
        problems = ([f"missing {k}" for k in missing[:3]] + [f"unexpected {k}" for k in unexpected[:3]]
                    + [f"shape of {k}" for k in wrong[:3]])
        raise ModelFormatError(f"{source}: {what} weights do not fit the detected architecture "
                               f"({'; '.join(problems)})")
    plain: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    for name, sub in list(module.named_modules()):
        key = f"{name}.weight" if name else "weight"
        if isinstance(sub, nn.Linear) and isinstance(state.get(key), Compressed):
            compressed = state[key]
            bias = state.get(f"{name}.bias")
            bias = bias.materialise(dtype) if isinstance(bias, Compressed) else bias
            parent_name, _, child = name.rpartition(".")
            parent = module.get_submodule(parent_name) if parent_name else module
            setattr(parent, child, CompressedLinear(compressed, bias, dtype))
            counts[compressed.qtype] = counts.get(compressed.qtype, 0) + 1
    for key, value in state.items():
        owner = key.rpartition(".")[0]
        if isinstance(module.get_submodule(owner) if owner else module, CompressedLinear):
            continue
        plain[key] = value.materialise(dtype) if isinstance(value, Compressed) else value.to(dtype)
    module.load_state_dict(plain, strict=False, assign=True)
    left = [k for k, v in module.state_dict().items() if v is not None and v.device.type == "meta"]
    if left:  # a key the checks above passed but nothing filled: a bug here, not a bad file
        raise ModelFormatError(f"{source}: {what} has unfilled weights ({', '.join(left[:3])})")
    report.setdefault("compressed_layers", {})[what] = counts
    return module.eval().requires_grad_(False)
