"""nnspec.checkpoint: safetensors with NumPy alone.

References, independent of our code: the byte-exact files of the reference implementation's
own tests (huggingface/safetensors, safetensors/src/tensor.rs: test_serialization,
test_empty, test_serialization_forced_alignement); files laid out by hand from the format's
description; PyTorch's bfloat16 conversions. The `safetensors` package itself is checked
when it is installed."""

from __future__ import annotations

import doctest
import json
import os
import struct

import numpy as np
import pytest

from nnspec import checkpoint
from nnspec.checkpoint import CheckpointError

ATTN = np.arange(6, dtype=np.float32)  # 0, 1, ..., 5


def _bytes(*numbers) -> bytes:
    return bytes(numbers)


# huggingface/safetensors, tensor.rs, test_serialization: {"attn.0": F32 [1, 2, 3]}
REF_SERIALIZATION = _bytes(
    64, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 46, 48, 34, 58, 123, 34, 100,
    116, 121, 112, 101, 34, 58, 34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34,
    58, 91, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116, 97, 95, 111, 102, 102, 115,
    101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 0, 0, 0, 0, 0, 0, 128, 63,
    0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64)
# test_serialization_forced_alignement: {"attn0": F32 [1, 1, 2, 3]}, 7 spaces of padding
REF_ALIGNED = _bytes(
    72, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 48, 34, 58, 123, 34, 100, 116,
    121, 112, 101, 34, 58, 34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34, 58,
    91, 49, 44, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116, 97, 95, 111, 102, 102,
    115, 101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 32, 32, 32, 32, 32,
    32, 32, 0, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0,
    160, 64)
# test_empty, without and with metadata {"framework": "pt"}
REF_EMPTY = _bytes(8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32)
REF_EMPTY_META = _bytes(
    40, 0, 0, 0, 0, 0, 0, 0, 123, 34, 95, 95, 109, 101, 116, 97, 100, 97, 116, 97, 95,
    95, 34, 58, 123, 34, 102, 114, 97, 109, 101, 119, 111, 114, 107, 34, 58, 34, 112,
    116, 34, 125, 125, 32, 32, 32, 32, 32)


def test_module_examples():
    assert doctest.testmod(checkpoint).failed == 0


@pytest.mark.parametrize("tensors, metadata, expected", [
    ({"attn.0": ATTN.reshape(1, 2, 3)}, None, REF_SERIALIZATION),
    ({"attn0": ATTN.reshape(1, 1, 2, 3)}, None, REF_ALIGNED),
    ({}, None, REF_EMPTY),
    ({}, {"framework": "pt"}, REF_EMPTY_META),
], ids=["serialization", "forced_alignment", "empty", "empty_metadata"])
def test_save_writes_the_reference_bytes(tmp_path, tensors, metadata, expected):
    path = tmp_path / "x.safetensors"
    checkpoint.save(path, tensors, metadata)
    assert path.read_bytes() == expected
    back = checkpoint.load(path)
    assert back.keys() == tensors.keys()
    assert all(np.array_equal(back[k], tensors[k]) and back[k].dtype == tensors[k].dtype for k in tensors)
    with checkpoint.open(path) as f:
        assert f.metadata == (metadata or {})


def _hand_file(path, entries, metadata=None, pad=True):
    """The layout by hand: entries are (name, code, shape, raw bytes), stored in the given
    order, the header padded with spaces to 8 bytes."""
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, code, shape, raw in entries:
        header[name] = {"dtype": code, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


def test_every_dtype_from_a_hand_written_file(tmp_path):
    entries = [
        ("f64", "F64", [2], struct.pack("<2d", 1.5, -2.25)),
        ("f32", "F32", [2, 1], struct.pack("<2f", 3.0, -0.5)),
        ("f16", "F16", [3], struct.pack("<3e", 1.0, 65504.0, -0.125)),
        ("bf16", "BF16", [2], struct.pack("<2H", 0x3FC0, 0xC040)),  # 1.5, -3.0
        ("i64", "I64", [2], struct.pack("<2q", -(2 ** 62), 7)),
        ("i32", "I32", [1], struct.pack("<i", -5)),
        ("i16", "I16", [2], struct.pack("<2h", -300, 300)),
        ("i8", "I8", [2], struct.pack("<2b", -128, 127)),
        ("u8", "U8", [2], bytes([0, 255])),
        ("bool", "BOOL", [3], bytes([1, 0, 1])),
        ("scalar", "F32", [], struct.pack("<f", 42.0)),
        ("empty", "F32", [0, 3], b""),
    ]
    path = _hand_file(tmp_path / "all.safetensors", entries, {"format": "pt", "note": "hand"}, pad=False)
    t = checkpoint.load(path)
    assert list(t) == [e[0] for e in entries]
    assert t["f64"].tolist() == [1.5, -2.25] and t["f32"].tolist() == [[3.0], [-0.5]]
    assert t["f16"].tolist() == [1.0, 65504.0, -0.125] and t["f16"].dtype == np.float16
    assert t["bf16"].dtype == np.uint16 and t["bf16"].tolist() == [0x3FC0, 0xC040]
    assert checkpoint.load(path, bf16_as_float32=True)["bf16"].tolist() == [1.5, -3.0]
    assert t["i64"].tolist() == [-(2 ** 62), 7] and t["i32"].tolist() == [-5]
    assert t["i16"].tolist() == [-300, 300] and t["i8"].tolist() == [-128, 127]
    assert t["u8"].tolist() == [0, 255] and t["bool"].tolist() == [True, False, True]
    assert t["scalar"].shape == () and t["scalar"] == 42.0 and t["empty"].shape == (0, 3)
    with checkpoint.open(path) as f:
        assert f.metadata == {"format": "pt", "note": "hand"}
        assert f.shape("f32") == (2, 1) and f.dtype("bf16") == "BF16" and len(f) == len(entries)
        info = f.info("i64")
        assert (info.begin, info.end, info.nbytes) == (34, 50, 16)


def test_round_trip_of_every_numpy_dtype_and_layout(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {
        "f64": rng.standard_normal((3, 2)), "f32": rng.standard_normal(5).astype(np.float32),
        "f16": rng.standard_normal(4).astype(np.float16), "i64": rng.integers(-9, 9, (2, 2)),
        "i32": np.array([1, -2], np.int32), "i16": np.array([3], np.int16), "i8": np.array([-4], np.int8),
        "u8": np.array([200], np.uint8), "u16": np.array([65535], np.uint16),
        "u32": np.array([2 ** 32 - 1], np.uint32), "u64": np.array([2 ** 64 - 1], np.uint64),
        "bool": np.array([[True, False]]), "transposed": np.arange(6.0).reshape(2, 3).T,
        "big_endian": np.array([1.0, 2.0], ">f4"), "scalar": np.float64(3.5),
    }
    path = tmp_path / "rt.safetensors"
    checkpoint.save(path, tensors)
    back = checkpoint.load(path)
    for k, v in tensors.items():
        v = np.asarray(v)
        assert back[k].shape == v.shape and np.array_equal(back[k], v), k
        assert back[k].dtype == v.dtype.newbyteorder("<") or back[k].dtype == v.dtype, k
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    assert (8 + n) % 8 == 0 and raw[8 + n - 1:8 + n] in (b" ", b"}")
    order = [k for k in json.loads(raw[8:8 + n]) if k != "__metadata__"]
    widths = [back[k].dtype.itemsize for k in order]
    assert widths == sorted(widths, reverse=True)  # the reference's order: widest dtype first
    with checkpoint.open(path) as f:  # and every tensor starts aligned to its own width
        assert all(f.info(k).begin % back[k].dtype.itemsize == 0 for k in f)
    assert struct.unpack("<2f", raw[8 + n + checkpoint.open(path).info("big_endian").begin:][:8]) == (1.0, 2.0)


def test_bfloat16_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.standard_normal(10_000).astype(np.float32) * 10.0 ** rng.integers(-30, 30, 10_000),
                        np.array([0.0, -0.0, np.inf, -np.inf, 3.4e38, 1e-45, 1.00390625, 1.01171875],
                                 np.float32)])  # the last two are ties: to even
    ours = checkpoint.float32_to_bf16(x)
    theirs = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    assert np.array_equal(ours, theirs)
    back = torch.from_numpy(theirs.view(np.int16)).view(torch.bfloat16).float().numpy()
    assert np.array_equal(checkpoint.bf16_to_float32(ours), back)
    nan = checkpoint.float32_to_bf16(np.array([np.nan], np.float32))
    assert np.isnan(checkpoint.bf16_to_float32(nan)).all()


def test_raw_dtypes_are_written_from_their_bits(tmp_path):
    bits = checkpoint.float32_to_bf16(np.array([1.5, -3.0], np.float32))
    path = tmp_path / "bf.safetensors"
    checkpoint.save(path, {"w": bits, "q": np.array([0x38], np.uint8)}, dtypes={"w": "BF16", "q": "F8_E4M3"})
    with checkpoint.open(path) as f:
        assert f.dtype("w") == "BF16" and f.dtype("q") == "F8_E4M3"
        assert f.read("w", bf16_as_float32=True).tolist() == [1.5, -3.0]
        assert f.read("q").tolist() == [0x38]
    torch = pytest.importorskip("torch")
    from nnspec.backends.weights import read_safetensors
    t = read_safetensors(path)
    assert t["w"].dtype == torch.bfloat16 and t["w"].tolist() == [1.5, -3.0]
    assert t["q"].dtype == torch.float8_e4m3fn and t["q"].float().tolist() == [1.0]  # 0x38 = 2**0


def test_the_reference_package_reads_ours_and_we_read_its(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    tensors = {"w": np.ones((4, 3), np.float32), "n": np.array(3, np.int64), "b": np.array([True])}
    checkpoint.save(tmp_path / "ours.safetensors", tensors, {"k": "v"})
    theirs = st.load_file(str(tmp_path / "ours.safetensors"))
    assert all(np.array_equal(theirs[k], tensors[k]) for k in tensors)
    st.save_file(tensors, str(tmp_path / "theirs.safetensors"), metadata={"k": "v"})
    assert (tmp_path / "theirs.safetensors").read_bytes() == (tmp_path / "ours.safetensors").read_bytes()


def test_open_reads_the_header_only(tmp_path):
    """A 6 GB sparse file: opening it and reading a small tensor reads a few bytes."""
    big = 6 * 10 ** 9
    header = {"small": {"dtype": "I32", "shape": [2], "data_offsets": [0, 8]},
              "huge": {"dtype": "U8", "shape": [big], "data_offsets": [8, 8 + big]}}
    path = _hand_file(tmp_path / "big.safetensors", [("small", "I32", [2], struct.pack("<2i", 5, 6))])
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + struct.pack("<2i", 5, 6))
    os.truncate(path, 8 + len(text) + 8 + big)
    with checkpoint.open(path) as f:
        assert f.shape("huge") == (big,) and f.read("small").tolist() == [5, 6]
        assert f._file.tell() == 8 + len(text) + 8  # nothing past the small tensor was read


def test_atomic_write_leaves_the_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "w.safetensors"
    checkpoint.save(path, {"a": np.zeros(2, np.float32)})
    before = path.read_bytes()

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.os, "replace", boom)
    with pytest.raises(CheckpointError, match="cannot write: No space left on device") as e:
        checkpoint.save(path, {"a": np.ones(1000, np.float32)})
    assert e.value.path == str(path) and e.value.field is None
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["w.safetensors"]
    monkeypatch.undo()
    with pytest.raises(RuntimeError), checkpoint.atomic_write(path) as f:
        f.write(b"half")
        raise RuntimeError("interrupted")
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["w.safetensors"]


def test_atomic_write_syncs_and_respects_the_umask(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(checkpoint.os, "fsync", lambda fd: synced.append(fd) or real(fd))
    old = os.umask(0o027)
    try:
        checkpoint.save(tmp_path / "m.safetensors", {"a": np.zeros(1)})
    finally:
        os.umask(old)
    assert len(synced) >= 1  # the file (and, where possible, its folder)
    assert (tmp_path / "m.safetensors").stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("tensors, kwargs, field, message", [
    ({"o": np.array([object()])}, {}, 'tensor "o"', "cannot store a object array"),
    ({"c": np.array([1j])}, {}, 'tensor "c"', "cannot store a complex128 array"),
    ({"w": np.ones(2, np.float32)}, {"dtypes": {"w": "BF16"}}, 'tensor "w"', "raw bits"),
    ({"w": np.ones(2, np.float32)}, {"dtypes": {"w": "F16"}}, 'tensor "w"', "a float32 array stored as F16"),
    ({"w": np.ones(2, np.uint16)}, {"dtypes": {"w": "X9"}}, 'tensor "w"', "unknown dtype 'X9'"),
    ({"w": np.ones(2)}, {"dtypes": {"v": "BF16"}}, "dtypes", "names no tensor: v"),
    ({"__metadata__": np.ones(2)}, {}, 'tensor "__metadata__"', "other than '__metadata__'"),
    ({"w": np.ones(2)}, {"metadata": {"epoch": 3}}, "__metadata__", "must be strings"),
])
def test_save_refuses_what_the_format_cannot_hold(tmp_path, tensors, kwargs, field, message):
    path = tmp_path / "bad.safetensors"
    with pytest.raises(CheckpointError, match=message) as e:
        checkpoint.save(path, tensors, **kwargs)
    assert e.value.field == field and e.value.path == str(path) and not path.exists()
