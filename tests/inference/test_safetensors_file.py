"""Strict safetensors reading: round trips against the library, one crafted file per defect,
proof that rejection happens before tensor memory is allocated, and property tests."""
from __future__ import annotations

import json
import os
import struct
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from inference.errors import ModelFormatError
from inference.formats import safetensors_file as sf
from inference.formats.safetensors_file import (
    iter_tensors,
    load_tensors,
    read_header,
    save_tensors,
    tensor_shapes,
)

# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def write_raw(path: Path, header: bytes | dict, data: bytes = b"", *,
              length: int | None = None) -> Path:
    """Write a safetensors-shaped file by hand: u64 length, header bytes, data."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)
    return path


def entry(dtype: str, shape: list, begin: int, end: int) -> dict:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def as_bytes(tensor: torch.Tensor) -> bytes:
    # Byte comparison: random float bit patterns include NaNs, which never compare equal.
    flat = tensor.contiguous().reshape(-1)
    return bytes(flat.view(torch.uint8).numpy().tobytes()) if flat.numel() else b""


@pytest.fixture
def no_tensor_allocation(monkeypatch):
    """Make every way of materialising tensor data fail loudly."""

    def boom(*args, **kwargs):
        raise AssertionError("tensor memory was allocated before validation finished")

    monkeypatch.setattr(sf, "_read_tensor", boom)
    monkeypatch.setattr(torch, "empty", boom)
    monkeypatch.setattr(torch, "frombuffer", boom)
    import safetensors

    monkeypatch.setattr(safetensors, "safe_open", boom)


@pytest.fixture
def sample(tmp_path) -> tuple[Path, dict[str, torch.Tensor]]:
    tensors = {
        "f32": torch.randn(3, 4),
        "f16": torch.randn(5).half(),
        "bf16": torch.randn(2, 2).to(torch.bfloat16),
        "i64": torch.arange(7, dtype=torch.int64),
        "u8": torch.tensor([0, 1, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "f8": torch.tensor([0.5, -2.0]).to(torch.float8_e4m3fn),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 4),
    }
    path = tmp_path / "sample.safetensors"
    save_file(tensors, str(path), metadata={"format": "pt", "title": "héllo"})
    return path, tensors


# --------------------------------------------------------------------------------------------
# valid files
# --------------------------------------------------------------------------------------------


def test_library_file_round_trips(sample):
    path, expected = sample
    loaded = load_tensors(path)
    assert set(loaded) == set(expected)
    for name, tensor in expected.items():
        assert loaded[name].dtype == tensor.dtype, name
        assert loaded[name].shape == tensor.shape, name
        assert as_bytes(loaded[name]) == as_bytes(tensor), name
    header = read_header(path)
    assert header.metadata == {"format": "pt", "title": "héllo"}
    assert header.data_start + sum(i.nbytes for i in header.tensors.values()) == path.stat().st_size


def test_subset_of_keys_reads_only_those(sample, monkeypatch):
    path, expected = sample
    read: list[str] = []
    original = sf._read_tensor
    monkeypatch.setattr(sf, "_read_tensor",
                        lambda h, p, name, *a: read.append(name) or original(h, p, name, *a))
    loaded = load_tensors(path, keys=["bf16", "i64"])
    assert set(loaded) == {"bf16", "i64"} == set(read)
    assert torch.equal(loaded["bf16"], expected["bf16"])


def test_missing_key_is_an_error(sample):
    path, _ = sample
    with pytest.raises(ModelFormatError, match=r"sample\.safetensors: missing tensor\(s\) 'nope'"):
        load_tensors(path, keys=["f32", "nope"])


def test_dtype_cast_touches_only_floating_tensors(sample):
    path, expected = sample
    loaded = load_tensors(path, dtype=torch.float16)
    assert loaded["f32"].dtype == torch.float16
    assert loaded["bf16"].dtype == torch.float16
    assert torch.equal(loaded["f32"], expected["f32"].half())
    assert torch.equal(loaded["bf16"], expected["bf16"].half())
    assert loaded["i64"].dtype == torch.int64 and torch.equal(loaded["i64"], expected["i64"])
    assert loaded["bool"].dtype == torch.bool
    assert loaded["u8"].dtype == torch.uint8
    widened = load_tensors(path, dtype=torch.float32, keys=["f16"])["f16"]
    assert widened.dtype == torch.float32 and torch.equal(widened, expected["f16"].float())


def test_cast_results_do_not_share_the_staging_buffer(tmp_path):
    # Casts read through one reused host buffer; each result must still own its values.
    tensors = {f"w{i}": torch.full((64,), float(i)).half() for i in range(4)}
    tensors["big"] = torch.arange(256).half()
    path = tmp_path / "staged.safetensors"
    save_file(tensors, str(path))
    loaded = load_tensors(path, dtype=torch.float32)
    for name, tensor in tensors.items():
        assert loaded[name].dtype == torch.float32
        assert torch.equal(loaded[name], tensor.float()), name


def test_other_device_goes_through_staging(sample):
    path, expected = sample
    loaded = load_tensors(path, device="meta", dtype=torch.float16)
    assert all(t.device.type == "meta" for t in loaded.values())
    assert loaded["f32"].dtype == torch.float16 and loaded["i64"].dtype == torch.int64
    assert {n: t.shape for n, t in loaded.items()} == {n: t.shape for n, t in expected.items()}


@pytest.mark.gpu
def test_loads_to_cuda_with_cast(sample):
    path, expected = sample
    loaded = load_tensors(path, device="cuda", dtype=torch.float16)
    for name, tensor in expected.items():
        assert loaded[name].device.type == "cuda", name
        want = tensor.to(torch.float16) if tensor.is_floating_point() else tensor
        assert loaded[name].dtype == want.dtype, name
        assert torch.equal(loaded[name].cpu(), want), name


def test_rename_callback_renames_and_skips(sample, monkeypatch):
    path, expected = sample
    read: list[str] = []
    original = sf._read_tensor
    monkeypatch.setattr(sf, "_read_tensor",
                        lambda h, p, name, *a: read.append(name) or original(h, p, name, *a))
    skip = {"f32", "f16", "bf16", "f8"}
    loaded = load_tensors(path, rename=lambda n: None if n in skip else "model." + n)
    assert set(loaded) == {"model.i64", "model.u8", "model.bool", "model.scalar", "model.empty"}
    assert not skip & set(read)  # skipped tensors are never read
    assert torch.equal(loaded["model.i64"], expected["i64"])


def test_rename_collision_is_an_error(sample):
    path, _ = sample
    with pytest.raises(ModelFormatError, match="both map to 'same'"):
        load_tensors(path, rename=lambda n: "same")


def test_iter_tensors_yields_in_file_order_one_at_a_time(sample):
    path, expected = sample
    header = read_header(path)
    order = [n for n, _ in sorted(header.tensors.items(), key=lambda kv: kv[1].begin)]
    gen = iter_tensors(path)
    first_name, first = next(gen)
    assert first_name == order[0] and as_bytes(first) == as_bytes(expected[first_name])
    assert [first_name] + [n for n, _ in gen] == order


def test_tensor_shapes_never_reads_data(sample, no_tensor_allocation):
    path, expected = sample
    assert tensor_shapes(path) == {n: tuple(t.shape) for n, t in expected.items()}


def test_allocation_guard_is_effective(sample, no_tensor_allocation):
    # Guards the guard: on a valid file the patched allocator must trip, so the rejection tests
    # below that use it really prove "nothing was allocated".
    path, _ = sample
    with pytest.raises(AssertionError, match="allocated"):
        load_tensors(path)


def test_padded_header_and_empty_file_of_tensors_are_valid(tmp_path):
    path = write_raw(tmp_path / "pad.safetensors", b'{"__metadata__":{"a":"b"}}   \n ')
    header = read_header(path)
    assert header.tensors == {} and header.metadata == {"a": "b"}
    assert load_tensors(path) == {}


def test_header_length_that_looks_like_pickle_magic_is_still_safetensors(tmp_path):
    # A header of exactly 0x280 bytes makes the file start with 0x80 0x02, the pickle protocol-2
    # opcode; it must still be read as the safetensors file it is.
    head = json.dumps({"w": entry("F32", [1], 0, 4)}).encode()
    head += b" " * (0x280 - len(head))
    path = write_raw(tmp_path / "magic.safetensors", head, struct.pack("<f", 1.5))
    assert path.read_bytes()[:2] == b"\x80\x02"
    assert load_tensors(path)["w"].item() == 1.5


# --------------------------------------------------------------------------------------------
# malformed files: one crafted file per defect
# --------------------------------------------------------------------------------------------

F32_1 = entry("F32", [1], 0, 4)
FOUR = b"\x00\x00\x80\x3f"

MALFORMED = {
    # name: (file bytes after the 8-byte length, data, forced length, expected phrase)
    "empty": (None, b"", None, "file is empty"),
    "short": (None, b"\x01\x02\x03", None, "file is too short to be safetensors (3 bytes)"),
    "absurd_length": (b"{}", b"", 2**63, f"header length {2**63} bytes exceeds the 100 MB limit"),
    "over_100mb": (b"{}", b"", 100_000_001, "exceeds the 100 MB limit"),
    "past_eof": (b"{}", b"", 1000, "header length 1000 bytes runs past the end of the file"),
    "tiny_length": (b"{}", b"", 1, "too short for a JSON object"),
    "not_utf8": (b'{"\xff\xfe":1}', b"", None, "header is not valid UTF-8 (byte 2)"),
    "not_json": (b'{"a": ', b"", None, "header is not valid JSON"),
    "nan_constant": (b'{"a": NaN}', b"", None, "header is not valid JSON"),
    "deep_nesting": (b'{"a":' + b"[" * 100_000, b"", None, "header is not valid JSON"),
    "not_object": (b"[1, 2]", b"", None, "header is a JSON list, not an object"),
    "leading_space": (b' {}', b"", None, "header starts with whitespace"),
    "leading_newline": (b'\n{}', b"", None, "header starts with whitespace"),
    "junk_after_json": (b'{} x', b"", None, "unexpected bytes after the JSON object"),
    "duplicate_tensor": (b'{"w":' + json.dumps(F32_1).encode() + b',"w":'
                         + json.dumps(F32_1).encode() + b"}", FOUR, None,
                         "header has duplicate key 'w'"),
    "duplicate_field": (b'{"w":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
                        FOUR, None, "header has duplicate key 'dtype'"),
    "entry_not_object": ({"w": [1, 2]}, b"", None, "tensor 'w' entry is not a JSON object"),
    "missing_field": ({"w": {"dtype": "F32", "shape": [1]}}, FOUR, None,
                      "tensor 'w' is missing field(s) data_offsets"),
    "extra_field": ({"w": {**F32_1, "stride": [1]}}, FOUR, None,
                    "tensor 'w' has unexpected field(s) ['stride']"),
    "unknown_dtype": ({"w": entry("F99", [1], 0, 4)}, FOUR, None,
                      "tensor 'w' has unknown dtype 'F99'"),
    "subbyte_dtype": ({"w": entry("F4", [2], 0, 1)}, b"\0", None,
                      "tensor 'w' has unknown dtype 'F4'"),
    "shape_not_list": ({"w": entry("F32", 1, 0, 4)}, FOUR, None, "tensor 'w' has invalid shape 1"),
    "negative_dim": ({"w": entry("F32", [-1], 0, 4)}, FOUR, None,
                     "tensor 'w' has invalid shape [-1]"),
    "float_dim": ({"w": entry("F32", [1.0], 0, 4)}, FOUR, None,
                  "tensor 'w' has invalid shape [1.0]"),
    "bool_dim": ({"w": entry("F32", [True], 0, 4)}, FOUR, None,
                 "tensor 'w' has invalid shape [True]"),
    "bad_offsets": ({"w": {**F32_1, "data_offsets": [0]}}, FOUR, None,
                    "tensor 'w' has invalid data_offsets [0]"),
    "end_before_begin": ({"w": entry("F32", [1], 4, 0)}, FOUR, None,
                         "tensor 'w' data_offsets end 0 is before begin 4"),
    "size_mismatch": ({"w": entry("F32", [2], 0, 4)}, FOUR, None,
                      "tensor 'w' byte size mismatch: data_offsets give 4 bytes but shape [2] "
                      "of F32 needs 8 bytes"),
    "overflowing_shape": ({"w": entry("F32", [2**62, 2**62, 2**62], 0, 4)}, FOUR, None,
                          "needs more than 2**64 bytes"),
    "not_from_zero": ({"w": entry("F32", [1], 4, 8)}, FOUR * 2, None,
                      "data of tensor 'w' starts at byte 4, not 0"),
    "overlap": ({"a": entry("F32", [2], 0, 8), "b": entry("F32", [1], 4, 8)}, FOUR * 2, None,
                "tensors 'a' and 'b' overlap"),
    "gap": ({"a": entry("F32", [1], 0, 4), "b": entry("F32", [1], 8, 12)}, FOUR * 3, None,
            "gap of 4 bytes between tensors 'a' and 'b'"),
    "trailing_bytes": ({"w": F32_1}, FOUR + b"xyz", None, "3 trailing bytes after the last tensor"),
    "truncated": ({"w": entry("F32", [4], 0, 16)}, FOUR, None,
                  "file is truncated: tensor data needs 16 bytes but only 4 are present"),
    "metadata_not_mapping": ({"__metadata__": ["a"]}, b"", None,
                             "__metadata__ is not a mapping of strings to strings"),
    "metadata_not_str": ({"__metadata__": {"steps": 5}}, b"", None,
                         "__metadata__ value for 'steps' is not a string (int)"),
    "lone_surrogate": (b'{"\\ud800":' + json.dumps(F32_1).encode() + b"}", FOUR, None,
                       "contains an invalid unicode escape"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
@pytest.mark.parametrize("reader", ["read_header", "load_tensors"])
def test_malformed_file_is_rejected_before_allocation(tmp_path, case, reader,
                                                      no_tensor_allocation):
    header, data, length, phrase = MALFORMED[case]
    path = tmp_path / f"{case}.safetensors"
    if header is None:
        path.write_bytes(data)
    else:
        write_raw(path, header, data, length=length)
    func = read_header if reader == "read_header" else load_tensors
    with pytest.raises(ModelFormatError) as info:
        func(path)
    message = str(info.value)
    assert message.startswith(f"{case}.safetensors: ")
    assert phrase in message
    assert "\n" not in message


def test_one_terabyte_claim_is_rejected_instantly(tmp_path, no_tensor_allocation):
    # The header claims a 1 TiB float tensor; the file holds 16 bytes of data.
    tib = 2**40
    path = write_raw(tmp_path / "huge.safetensors",
                     {"w": entry("F32", [tib // 4], 0, tib)}, b"\0" * 16)
    start = time.perf_counter()
    with pytest.raises(ModelFormatError, match="huge.safetensors: file is truncated"):
        load_tensors(path)
    assert time.perf_counter() - start < 0.5


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(ModelFormatError, match="gone.safetensors: cannot open file"):
        read_header(tmp_path / "gone.safetensors")


# --------------------------------------------------------------------------------------------
# saving
# --------------------------------------------------------------------------------------------


def test_save_tensors_round_trips_and_leaves_no_temp_files(tmp_path):
    base = torch.arange(12, dtype=torch.float32)
    tensors = {"a": base, "tied": base, "view": base[2:5], "t": base.reshape(3, 4).t()}
    path = tmp_path / "out.safetensors"
    save_tensors(tensors, path, metadata={"k": "v"})
    assert os.listdir(tmp_path) == ["out.safetensors"]
    loaded = load_tensors(path)
    for name, tensor in tensors.items():
        assert torch.equal(loaded[name], tensor), name
    assert read_header(path).metadata == {"k": "v"}
    assert load_file(str(path)).keys() == tensors.keys()


def test_failed_save_keeps_old_file_and_no_temp(tmp_path):
    path = tmp_path / "out.safetensors"
    save_tensors({"a": torch.ones(2)}, path)
    before = path.read_bytes()
    with pytest.raises(ModelFormatError, match="out.safetensors: cannot save tensor 'c'"):
        save_tensors({"b": torch.ones(2), "c": torch.ones(2, dtype=torch.complex128)}, path)
    with pytest.raises(ModelFormatError, match="metadata must map strings to strings"):
        save_tensors({"b": torch.ones(2)}, path, metadata={"k": 1})  # type: ignore[dict-item]
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["out.safetensors"]


# --------------------------------------------------------------------------------------------
# property tests
# --------------------------------------------------------------------------------------------

# Library-supported codes with the torch dtype used to generate their bytes.
GEN_DTYPES = ["F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL",
              "F8_E4M3", "F8_E5M2", "U16", "U32", "U64", "C64"]


@st.composite
def valid_files(draw):
    names = draw(st.lists(st.text(min_size=1, max_size=8).filter(lambda s: s != "__metadata__"),
                          unique=True, max_size=6))
    specs = []
    for name in names:
        dtype = draw(st.sampled_from(GEN_DTYPES))
        shape = draw(st.lists(st.integers(0, 4), max_size=3))
        count = 1
        for d in shape:
            count *= d
        nbytes = count * sf.DTYPES[dtype].itemsize
        if dtype == "BOOL":
            data = bytes(draw(st.lists(st.integers(0, 1), min_size=nbytes, max_size=nbytes)))
        else:
            data = draw(st.binary(min_size=nbytes, max_size=nbytes))
        specs.append((name, dtype, shape, data))
    # Data packed in one order, header keys listed in another.
    packed = draw(st.permutations(specs))
    header: dict[str, object] = {}
    offsets, pos, blob = {}, 0, b""
    for name, dtype, shape, data in packed:
        offsets[name] = (dtype, shape, pos, pos + len(data))
        pos += len(data)
        blob += data
    for name, *_ in draw(st.permutations(specs)):
        dtype, shape, begin, end = offsets[name]
        header[name] = entry(dtype, shape, begin, end)
    if draw(st.booleans()):
        header["__metadata__"] = draw(st.dictionaries(st.text(max_size=5), st.text(max_size=5),
                                                      max_size=3))
    raw = json.dumps(header, ensure_ascii=draw(st.booleans())).encode()
    raw += b" " * draw(st.integers(0, 7))
    return raw, blob


SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


@SETTINGS
@given(valid_files())
def test_random_valid_files_match_the_library(tmp_path, file):
    raw, blob = file
    path = write_raw(tmp_path / "random.safetensors", raw, blob)
    ours = load_tensors(path)
    theirs = load_file(str(path))
    assert ours.keys() == theirs.keys()
    for name in theirs:
        assert ours[name].dtype == theirs[name].dtype
        assert ours[name].shape == theirs[name].shape
        assert as_bytes(ours[name]) == as_bytes(theirs[name])
    assert tensor_shapes(path) == {n: tuple(t.shape) for n, t in theirs.items()}


CORRUPTION_BASE = (
    json.dumps({"__metadata__": {"k": "v"}, "a": entry("F32", [2, 2], 0, 16),
                "b": entry("I16", [3], 16, 22), "c": entry("BOOL", [2], 22, 24)}).encode()
    + b"   "
)
CORRUPTION_DATA = bytes(range(22)) + b"\x01\x00"


@SETTINGS
@given(index=st.integers(0, 8 + len(CORRUPTION_BASE) - 1), value=st.integers(0, 255))
def test_single_byte_header_corruption_is_rejected_or_consistent(tmp_path, index, value):
    path = write_raw(tmp_path / "corrupt.safetensors", CORRUPTION_BASE, CORRUPTION_DATA)
    raw = bytearray(path.read_bytes())
    raw[index] = value
    path.write_bytes(bytes(raw))
    try:
        header = read_header(path)
    except ModelFormatError as exc:
        assert str(exc).startswith("corrupt.safetensors: ")
        return
    # Accepted: it must describe the file exactly, load, and agree with the reference library.
    covered = sum(info.nbytes for info in header.tensors.values())
    assert header.data_start + covered == len(raw)
    loaded = load_tensors(path)
    theirs = load_file(str(path))
    assert loaded.keys() == theirs.keys() == header.tensors.keys()
    for name, info in header.tensors.items():
        assert tuple(loaded[name].shape) == info.shape
        assert loaded[name].dtype == info.torch_dtype == theirs[name].dtype
        assert as_bytes(loaded[name]) == as_bytes(theirs[name])
