"""Hostile weights files: `load_weights` raises a WeightsError naming the file and the field,
and `nnspec weights SPEC FILE` prints one line and exits 1, never a traceback, a hang, a
recursion overflow or a read of gigabytes.

The time guard is a generous hang detector (10 s), not a performance assertion; that big
files are not read is checked by counting the bytes read.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import struct
import subprocess
import sys

import pytest
from conftest import ROOT

torch = pytest.importorskip("torch")

import nnspec  # noqa: E402
from nnspec import checkpoint  # noqa: E402
from nnspec.backends.weights import WeightsError, load_weights, read_weights  # noqa: E402
from nnspec.cli import main  # noqa: E402

SPEC_TEXT = "input 4\nfc: linear(3)\n"
GB6 = 6 * 10 ** 9


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "net.nn"
    path.write_text(SPEC_TEXT)
    return str(path)


@contextlib.contextmanager
def hang_guard(seconds: int = 10):
    def on_alarm(signum, frame):
        raise TimeoutError(f"took more than {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def safetensors(path, header, data: bytes = b"", length: int | None = None):
    """A .safetensors file by hand: u64 header length, the header bytes, the data."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text) if length is None else length) + text + data)
    return path


F32_X = {"fc.weight": {"dtype": "F32", "shape": [3, 4], "data_offsets": [0, 48]},
         "fc.bias": {"dtype": "F32", "shape": [3], "data_offsets": [48, 60]}}


def _nested_dicts(path, depth: int, key: str):
    obj: dict = {}
    cur = obj
    for _ in range(depth):
        cur[key] = {}
        cur = cur[key]
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 20 * depth))  # pickling it recurses; loading must not
    try:
        torch.save(obj, path)
    finally:
        sys.setrecursionlimit(old)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _with_pickle(path, pickle: bytes):
    """A torch zip (as torch.save writes it) whose data.pkl is `pickle`, opcodes by hand."""
    import zipfile
    torch.save({"fc.weight": torch.zeros(3, 4)}, path.with_suffix(".tmp"))
    with zipfile.ZipFile(path.with_suffix(".tmp")) as zin, zipfile.ZipFile(path, "w") as zout:
        for info in zin.infolist():
            data = pickle if info.filename.endswith("/data.pkl") else zin.read(info.filename)
            zout.writestr(info.filename.replace("w.tmp/", "w/", 1), data)
    path.with_suffix(".tmp").unlink()
    return path


def _tuple_dag(levels: int) -> bytes:
    """{T1: T2, T3: T4, ...} with T0 = () and T(k+1) = (Tk, Tk) through the memo: a few
    hundred bytes, but hashing key T(k) visits 2**k tuples (torch.load never returns)."""
    ops = b"\x80\x02}q\x00(" + b")q\x01"
    for k in range(levels - 1):
        m = bytes([1 if k == 0 else 1 + k])
        ops += b"h" + m + b"h" + m + b"\x86" + b"q" + bytes([2 + k])
    return ops + b"u."


def _legacy(pickle: bytes) -> bytes:
    """torch's pre-zip format: pickles of its magic number, protocol 1001 and system info,
    then the object's pickle."""
    import pickle as p
    info = {"protocol_version": 1001, "little_endian": True,
            "type_sizes": {"short": 2, "int": 4, "long": 4}}
    return p.dumps(0x1950A86A20F9469CFC6C, 2) + p.dumps(1001, 2) + p.dumps(info, 2) + pickle


def _deep_tuples(depth: int) -> bytes:
    """{"x": ((((...),),),)} nested `depth` times with TUPLE1."""
    return b"\x80\x02}q\x00X\x01\x00\x00\x00x)" + b"\x85" * depth + b"s."


def _zip_bytes(d) -> bytes:
    torch.save({"fc.weight": torch.zeros(3, 4)}, d / "plain.pt")
    data = (d / "plain.pt").read_bytes()
    (d / "plain.pt").unlink()
    return data


def _deflated(path, n: int):
    """A torch zip whose tensor record is deflated: n zero bytes packed into a few KB."""
    import zipfile
    torch.save({"fc.weight": torch.zeros(n // 4)}, path.with_suffix(".tmp"))
    with zipfile.ZipFile(path.with_suffix(".tmp")) as zin, \
            zipfile.ZipFile(path, "w") as zout:
        for info in zin.infolist():
            packed = zipfile.ZIP_DEFLATED if "/data/" in info.filename else zipfile.ZIP_STORED
            zout.writestr(info.filename.replace("w.tmp/", "w/", 1), zin.read(info.filename), packed)
    path.with_suffix(".tmp").unlink()
    assert path.stat().st_size < n // 100
    return path


def _sparse(path, header: dict, size: int):
    """A small header, then zeros up to `size` bytes: a sparse file, no disk space used."""
    safetensors(path, header)
    os.truncate(path, size)
    return path


# name -> (build(tmp_path) -> path, field, message regex)
CASES = {
    "json_nested_100k": (lambda d: safetensors(d / "w.safetensors", b'{"a":' + b"[" * 100_000
                                               + b"]" * 100_000 + b"}"),
                         "header", "nested 100,001 levels deep"),
    "json_nested_objects": (lambda d: safetensors(d / "w.safetensors", b'{"a":' * 50_000 + b"1"
                                                  + b"}" * 50_000), "header", "nested 50,000 levels"),
    "integer_5000_digits": (lambda d: safetensors(d / "w.safetensors", b'{"x":{"dtype":"F32","shape":['
                                                  + b"9" * 5000 + b'],"data_offsets":[0,4]}}'),
                            "header", "a number of 5,000 digits"),
    "float_5000_digits": (lambda d: safetensors(d / "w.safetensors", b'{"x":{"dtype":"F32","shape":[0.'
                                                + b"9" * 5000 + b'],"data_offsets":[0,4]}}'),
                          "header", "a number of 5,000 digits"),
    "negative_25_digits": (lambda d: safetensors(d / "w.safetensors", b'{"x":{"dtype":"F32","shape":[-'
                                                 + b"1" * 25 + b'],"data_offsets":[0,4]}}'),
                           "header", "a number of 25 digits"),
    "long_digits_inside_a_name_are_fine": (
        lambda d: safetensors(d / "w.safetensors", {"9" * 5000: {"dtype": "F32", "shape": [1],
                                                                 "data_offsets": [0, 4]}}, b"\0" * 8),
        "data", "4 bytes after the last tensor"),
    "nan_constant": (lambda d: safetensors(d / "w.safetensors", b'{"x":{"dtype":"F32","shape":[NaN],'
                                           b'"data_offsets":[0,4]}}', b"\0" * 4), "header", "NaN is not JSON"),
    "duplicate_key": (lambda d: safetensors(d / "w.safetensors", b'{"x":{"dtype":"F32","shape":[1],'
                                            b'"data_offsets":[0,4]},"x":{"dtype":"F32","shape":[1],'
                                            b'"data_offsets":[0,4]}}', b"\0" * 4),
                      "header", "the key \"x\" appears twice"),
    "not_utf8": (lambda d: safetensors(d / "w.safetensors", b'{"\xff":1}'), "header", "not UTF-8"),
    "not_json": (lambda d: safetensors(d / "w.safetensors", b'{"x": '), "header", "not valid JSON"),
    "dtype_as_list": (lambda d: safetensors(d / "w.safetensors", {"x": {"dtype": ["F32"], "shape": [1],
                                                                        "data_offsets": [0, 4]}}, b"\0" * 4),
                      'tensor "x" dtype', "a JSON array, not a string"),
    "entry_not_object": (lambda d: safetensors(d / "w.safetensors", {"x": 5}), 'tensor "x"',
                         "a JSON number, not an object"),
    "metadata_not_strings": (lambda d: safetensors(d / "w.safetensors", {"__metadata__": {"a": 1}}),
                             "__metadata__", "object of strings"),
    "negative_shape": (lambda d: safetensors(d / "w.safetensors", {"x": {"dtype": "F32", "shape": [-1, -4],
                                                                         "data_offsets": [0, 16]}}, b"\0" * 16),
                       'tensor "x" shape', "non-negative integers"),
    "bool_in_shape": (lambda d: safetensors(d / "w.safetensors", {"x": {"dtype": "F32", "shape": [True],
                                                                        "data_offsets": [0, 4]}}, b"\0" * 4),
                      'tensor "x" shape', "non-negative integers"),
    "offsets_reversed": (lambda d: safetensors(d / "w.safetensors", {"x": {"dtype": "F32", "shape": [0],
                                                                           "data_offsets": [4, 0]}}, b"\0" * 4),
                         'tensor "x" data_offsets', "begin <= end"),
    "offsets_not_shape_times_dtype": (
        lambda d: safetensors(d / "w.safetensors", {"x": {"dtype": "F32", "shape": [3],
                                                          "data_offsets": [0, 16]}}, b"\0" * 16),
        'tensor "x" data_offsets', r"16 bytes for shape \[3\] of F32 \(needs 12\)"),
    "shape_product_huge": (
        lambda d: safetensors(d / "w.safetensors", {"x": {"dtype": "F64", "shape": [10 ** 19] * 100_000,
                                                          "data_offsets": [0, 8]}}, b"\0" * 8),
        'tensor "x" data_offsets', r"needs more than 2\*\*64"),
    "offsets_past_eof": (lambda d: safetensors(d / "w.safetensors", {"x": {"dtype": "U8", "shape": [GB6],
                                                                           "data_offsets": [0, GB6]}}, b"\0" * 8),
                         'tensor "x" data_offsets', "reaches past the 8-byte data section"),
    "overlapping_offsets": (lambda d: safetensors(d / "w.safetensors", {
        "fc.weight": {"dtype": "F32", "shape": [3, 4], "data_offsets": [0, 48]},
        "fc.bias": {"dtype": "F32", "shape": [3], "data_offsets": [40, 52]}}, b"\0" * 52),
        'tensor "fc.bias" data_offsets', 'overlaps tensor "fc.weight"'),
    "same_offsets_twice": (lambda d: safetensors(d / "w.safetensors", {
        "a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]},
        "b": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]}}, b"\0" * 12),
        'tensor "b" data_offsets', 'overlaps tensor "a"'),
    "gap_between_tensors": (lambda d: safetensors(d / "w.safetensors", {
        "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
        "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}}, b"\0" * 12),
        'tensor "b" data_offsets', "4 bytes after the previous tensor"),
    "small_header_then_6GB": (lambda d: _sparse(d / "w.safetensors", F32_X, GB6), "data",
                              "bytes after the last tensor"),
    "header_length_past_eof": (lambda d: safetensors(d / "w.safetensors", {}, length=2 ** 40),
                               "header length", "1,099,511,627,776 bytes, in a 10-byte file"),
    "header_length_2_64": (lambda d: safetensors(d / "w.safetensors", b"{}", length=2 ** 64 - 1),
                           "header length", "not a safetensors file"),
    "shorter_than_8_bytes": (lambda d: _write(d / "w.safetensors", b"\1\2"),
                             None, "shorter than the 8-byte header length"),
    "empty_file": (lambda d: _write(d / "w.safetensors", b""),
                   None, "0 bytes"),
    "directory": (lambda d: (d / "w.safetensors").mkdir() or d / "w.safetensors", None, "is a directory"),
    "directory_pth": (lambda d: (d / "w.pth").mkdir() or d / "w.pth", None, "is a directory"),
    "missing": (lambda d: d / "nothing.pth", None, "no such file"),
    "fifo": (lambda d: os.mkfifo(d / "w.safetensors") or d / "w.safetensors", None, "not a regular file"),
    "pth_3000_nested_dicts": (lambda d: _nested_dicts(d / "w.pth", 3000, "model") or d / "w.pth",
                              "pickle", "nests objects more than 100 deep"),
    "pth_3000_nested_other_key": (lambda d: _nested_dicts(d / "w.pth", 3000, "a") or d / "w.pth",
                                  "pickle", "nests objects more than 100 deep"),
    "pth_50_nested_model_dicts": (lambda d: _nested_dicts(d / "w.pth", 50, "model") or d / "w.pth",
                                  None, "no tensors found within 8 levels"),
    "pth_nested_other_key": (lambda d: _nested_dicts(d / "w.pth", 50, "a") or d / "w.pth",
                             None, r"no tensors found \(keys: a\)"),
    "pth_pickled_code": (lambda d: torch.save({"fc.weight": torch.zeros(3, 4), "p": _Exploit(d / "pwned")},
                                              d / "w.pth") or d / "w.pth",
                         "pickle", r"refused: the file contains pickled code \(global posix.system\), "
                                   r"not only tensors"),
    "pth_pickled_builtin": (lambda d: torch.save({"x": print}, d / "w.pth") or d / "w.pth",
                            "pickle", r"pickled code \(global print\)"),
    "pth_zip_bomb": (lambda d: _deflated(d / "w.pth", 20_000_000), "zip record 'w/data/0'",
                     r"refused: record 'w/data/0' is compressed"),
    "pth_damaged_zip": (lambda d: _write(d / "w.pth", _zip_bytes(d)[:-30]), None, "not a readable PyTorch file"),
    "pth_tuple_dag_hash_bomb": (lambda d: _with_pickle(d / "w.pth", _tuple_dag(40)), "pickle",
                                "spans more than 1,000,000 objects through shared references"),
    "pth_tuples_200_deep": (lambda d: _with_pickle(d / "w.pth", _deep_tuples(200)), "pickle",
                            "nests objects more than 100 deep"),
    "pth_200k_nested_lists": (lambda d: _with_pickle(d / "w.pth", b"\x80\x02}q\x00X\x01\x00\x00\x00x"
                                                     + b"]" * 200_000 + b"a" * 199_999 + b"s."),
                              "pickle", "more than 100,000 objects at once on its stack"),
    "pth_legacy_tuple_dag": (lambda d: _write(d / "w.pth", _legacy(_tuple_dag(40))), "pickle",
                             "spans more than 1,000,000 objects"),
    "pth_junk": (lambda d: _write(d / "w.pth", b"\x80\x02junk"), None, "not a readable PyTorch file"),
    "pth_not_pickle": (lambda d: _write(d / "w.pth", b"hello"),
                       None, "not a readable PyTorch file"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_load_weights_gives_a_clean_error(tmp_path, case):
    build, field, message = CASES[case]
    path = build(tmp_path)
    model = nnspec.compile(nnspec.loads(SPEC_TEXT))
    with hang_guard(), pytest.raises(WeightsError, match=message) as e:
        load_weights(model, path)
    assert e.value.path == str(path) and e.value.field == field
    text = str(e.value)
    assert text.startswith(f"{path}: ") and "\n" not in text and len(text) < 400
    assert "Traceback" not in text and "Please file an issue" not in text
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("case", list(CASES))
def test_the_cli_prints_one_line_and_exits_1(tmp_path, capsys, spec, case):
    path = CASES[case][0](tmp_path)
    with hang_guard():
        assert main(["weights", spec, str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"nnspec: error: {path}: ") and err.count("\n") == 1


def test_the_cli_through_a_real_process(tmp_path, spec):
    """No traceback from the installed entry point either (stderr is exactly one line)."""
    for case in ("pth_pickled_code",):  # each run imports torch: one case; the rest in-process
        path = CASES[case][0](tmp_path)
        r = subprocess.run([sys.executable, "-m", "nnspec", "weights", spec, str(path)],
                           capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert r.returncode == 1 and r.stdout == "", (case, r.stderr)
        assert r.stderr.startswith("nnspec: error: ") and r.stderr.count("\n") == 1, (case, r.stderr)
        path.unlink()


def test_a_6GB_file_is_not_read_to_load_what_fits(tmp_path, spec, monkeypatch, capsys):
    """Header: fc.weight and fc.bias (fit the model), then a 6 GB tensor the model lacks; the
    data is a sparse file. Only the two small tensors are read."""
    header = dict(F32_X, junk={"dtype": "U8", "shape": [GB6], "data_offsets": [60, 60 + GB6]})
    path = safetensors(tmp_path / "big.safetensors", header)
    n = len(json.dumps(header).encode())
    os.truncate(path, 8 + n + 60 + GB6)
    with open(path, "r+b") as f:  # fc.bias = 1, 2, 3
        f.seek(8 + n + 48)
        f.write(struct.pack("<3f", 1, 2, 3))
    read = []
    real = checkpoint.SafetensorsFile.read
    monkeypatch.setattr(checkpoint.SafetensorsFile, "read",
                        lambda self, name, **kw: read.append(name) or real(self, name, **kw))
    model = nnspec.compile(nnspec.loads(SPEC_TEXT))
    with hang_guard():
        report = load_weights(model, path)
    assert sorted(read) == ["fc.bias", "fc.weight"]
    assert report.loaded == ("fc.weight", "fc.bias") and report.unexpected == ("junk",)
    assert report.shapes["junk"] == (GB6,) and model.fc.bias.tolist() == [1, 2, 3]
    with hang_guard():
        assert main(["weights", spec, str(path)]) == 1  # 'junk' is unexpected
    assert "unexpected  junk  -      6000000000" in capsys.readouterr().out


def test_a_bool_tensor_with_other_bytes_is_refused_when_read(tmp_path):
    path = safetensors(tmp_path / "b.safetensors", {"m": {"dtype": "BOOL", "shape": [2],
                                                          "data_offsets": [0, 2]}}, b"\x01\x07")
    with pytest.raises(WeightsError, match="a BOOL byte other than 0 or 1") as e:
        read_weights(path)
    assert e.value.field == 'tensor "m"'


def test_weights_output_that_cannot_be_written(tmp_path, spec, capsys):
    model = nnspec.compile(nnspec.loads(SPEC_TEXT))
    good = tmp_path / "w.pt"
    torch.save(model.state_dict(), good)
    for out in (tmp_path, tmp_path / "no" / "such" / "dir" / "w.safetensors", tmp_path / "sub.pt"):
        if out.name == "sub.pt":
            out.mkdir()
        assert main(["weights", spec, str(good), "-o", str(out)]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"nnspec: error: {out}: cannot write: ") and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.nn", "sub.pt", "w.pt"]  # no temp files left
    readonly = tmp_path / "ro"
    readonly.mkdir()
    readonly.chmod(0o500)
    try:
        if os.access(readonly, os.W_OK):  # root ignores the mode
            pytest.skip("running as root: a read-only folder is writable")
        assert main(["weights", spec, str(good), "-o", str(readonly / "w.pt")]) == 1
        assert "Permission denied" in capsys.readouterr().err
    finally:
        readonly.chmod(0o700)
