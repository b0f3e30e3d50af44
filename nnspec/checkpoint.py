"""Checkpoints as .safetensors files, read and written with NumPy alone.

The format (https://github.com/huggingface/safetensors), which every nnspec backend shares:

    8 bytes        N, the header's length: an unsigned little-endian 64-bit integer
    N bytes        a UTF-8 JSON object: {"__metadata__": {str: str}, name: {"dtype": "F32",
                   "shape": [3, 4], "data_offsets": [begin, end]}, ...}, padded with spaces
                   so that the data starts 8-byte aligned
    the rest       the tensors' bytes, C order, little-endian; offsets count from here

`save` writes what the reference implementation writes, byte for byte: tensors ordered by
dtype (widest first) then name, the header compact, `__metadata__` first. It writes
atomically: a temporary file in the same folder, flushed and fsync'd, renamed over `path`.

`open` reads only the header, checks it in full (every dtype, shape and offset; the tensors
must tile the data section exactly, as the reference requires) and reads each tensor when
asked, with one seek and one read: a 6 GB file costs its header to open. The header is
limited to 100 MB and 3 levels of nesting, its integers to 20 digits; anything else is a
`CheckpointError` that names the file and the field.

Dtypes: F64 F32 F16 I64 I32 I16 I8 U64 U32 U16 U8 BOOL map to NumPy's. NumPy has no
bfloat16 or float8: BF16 tensors come back as their raw bits, uint16 arrays (pass
`bf16_as_float32=True`, or call `bf16_to_float32`, for float32 values), F8_E4M3 and
F8_E5M2 as uint8. To write raw bits, name the dtype: `save(path, {"w": bits},
dtypes={"w": "BF16"})`; `float32_to_bf16` rounds float32 to bfloat16 bits (to nearest even).

>>> import numpy as np, os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "w.safetensors")
>>> save(path, {"fc.weight": np.ones((2, 3), np.float32), "step": np.array(7)}, {"epoch": "3"})
>>> with open(path) as f:
...     print(sorted(f.keys()), f.info("fc.weight"), f.metadata)
...     print(f["step"], f.read("fc.weight").sum())
['fc.weight', 'step'] TensorInfo(name='fc.weight', dtype='F32', shape=(2, 3), begin=8, end=32) {'epoch': '3'}
7 6.0
>>> load(path)["fc.weight"].dtype
dtype('float32')
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import json
import os
import re
import secrets
import stat
from typing import Iterator, Mapping, NamedTuple

import numpy as np

MAX_HEADER_BYTES = 100_000_000  # as the reference implementation
MAX_DEPTH = 3                   # {name: {"shape": [...]}}: an object, an object, a list
MAX_DIGITS = 20                 # 2**64 has 20 digits

# code -> stored NumPy dtype (little-endian), in the reference's order of dtypes (narrowest
# first; it writes the widest first).
DTYPES: dict[str, np.dtype] = {code: np.dtype(t) for code, t in (
    ("BOOL", "|b1"), ("U8", "|u1"), ("I8", "|i1"), ("F8_E5M2", "|u1"), ("F8_E4M3", "|u1"),
    ("I16", "<i2"), ("U16", "<u2"), ("F16", "<f2"), ("BF16", "<u2"), ("I32", "<i4"),
    ("U32", "<u4"), ("F32", "<f4"), ("F64", "<f8"), ("I64", "<i8"), ("U64", "<u8"))}
RAW = frozenset({"BF16", "F8_E5M2", "F8_E4M3"})  # stored as their bits (NumPy lacks the type)
_ORDER = {code: i for i, code in enumerate(DTYPES)}
_CODE_OF = {t: code for code, t in DTYPES.items() if code not in RAW}


def _code_of(dtype: np.dtype) -> str | None:
    """The safetensors code of a NumPy dtype, in either byte order (None: not storable)."""
    return _CODE_OF.get(dtype.newbyteorder("<") if dtype.itemsize > 1 else dtype)


class CheckpointError(Exception):
    """A checkpoint that cannot be read or written. `path` is the file, `field` the part of
    it at fault ("header", "tensor 'fc.weight' dtype", ...; None for the file as a whole)."""

    def __init__(self, path: str, field: str | None, message: str):
        self.path, self.field, self.message = path, field, message
        super().__init__(f"{path}: {field}: {message}" if field else f"{path}: {message}")


class TensorInfo(NamedTuple):
    """One header entry; `begin`/`end` count from the start of the data section."""
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


# ---- reading --------------------------------------------------------------------------------

def open(path) -> "SafetensorsFile":  # noqa: A001 (the module's reader, as builtins.open)
    """Read and check the header of a .safetensors file; tensors are read on demand."""
    return SafetensorsFile(path)


def load(path, *, bf16_as_float32: bool = False) -> dict[str, np.ndarray]:
    """Every tensor of the file, name -> array, in the file's order."""
    with open(path) as f:
        return {name: f.read(name, bf16_as_float32=bf16_as_float32) for name in f}


class SafetensorsFile(Mapping):
    """An open .safetensors file: a read-only mapping name -> array (read when looked up).

    `.metadata` (str -> str), `.info(name)` -> TensorInfo, `.shape(name)`, `.dtype(name)`
    (the safetensors code) cost nothing; `read(name)` does one seek and one read. Use it as a
    context manager, or call `close()`."""

    def __init__(self, path):
        self.path = os.fspath(path)
        try:  # O_NONBLOCK: a FIFO must not hang the open (it is refused below)
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
            self._file = builtins.open(fd, "rb")
        except FileNotFoundError:
            raise CheckpointError(self.path, None, "no such file") from None
        except IsADirectoryError:
            raise CheckpointError(self.path, None, "is a directory, not a file") from None
        except OSError as e:
            raise CheckpointError(self.path, None, f"cannot open: {e.strerror or e}") from None
        try:
            self._read_header()
        except BaseException:
            self._file.close()
            raise

    def _read_header(self) -> None:
        st = os.fstat(self._file.fileno())
        if stat.S_ISDIR(st.st_mode):
            raise CheckpointError(self.path, None, "is a directory, not a file")
        if not stat.S_ISREG(st.st_mode):
            raise CheckpointError(self.path, None, "not a regular file")
        size = st.st_size
        head = self._file.read(8)
        if len(head) != 8:
            raise CheckpointError(self.path, None, f"not a safetensors file ({size} bytes, "
                                                   f"shorter than the 8-byte header length)")
        n = int.from_bytes(head, "little")
        if n > MAX_HEADER_BYTES or n > size - 8:
            raise CheckpointError(self.path, "header length", f"{n:,} bytes, in a {size:,}-byte "
                                  f"file (at most {min(MAX_HEADER_BYTES, size - 8):,}): not a "
                                  f"safetensors file")
        raw = self._file.read(n)
        if len(raw) != n:
            raise CheckpointError(self.path, "header", "the file ends inside the header")
        self._data_start = 8 + n
        self._data_size = size - 8 - n
        header = _parse_header(self.path, raw)
        self.metadata: dict[str, str] = {}
        infos: dict[str, TensorInfo] = {}
        for name, entry in header.items():
            if name == "__metadata__":
                self.metadata = _metadata(self.path, entry)
            else:
                infos[name] = _info(self.path, name, entry, self._data_size)
        _check_tiling(self.path, infos, self._data_size)
        self._infos = infos

    # Mapping
    def __getitem__(self, name: str) -> np.ndarray:
        return self.read(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._infos)

    def __len__(self) -> int:
        return len(self._infos)

    def __contains__(self, name) -> bool:
        return name in self._infos

    def info(self, name: str) -> TensorInfo:
        return self._infos[name]

    def shape(self, name: str) -> tuple[int, ...]:
        return self._infos[name].shape

    def dtype(self, name: str) -> str:
        return self._infos[name].dtype

    def read(self, name: str, *, bf16_as_float32: bool = False) -> np.ndarray:
        """The tensor `name` as a new array (BF16 as uint16 bits unless `bf16_as_float32`)."""
        info = self._infos[name]
        dtype = DTYPES[info.dtype]
        out = np.empty(info.shape, dtype)
        if info.nbytes:
            self._file.seek(self._data_start + info.begin)
            got = self._file.readinto(memoryview(out.reshape(-1).view(np.uint8)))
            if got != info.nbytes:
                raise CheckpointError(self.path, f"tensor {_short(name)}", "the file ended early "
                                      "(it changed after it was opened)")
        if info.dtype == "BOOL" and (out.view(np.uint8) > 1).any():
            raise CheckpointError(self.path, f"tensor {_short(name)}", "a BOOL byte other than 0 or 1")
        if bf16_as_float32 and info.dtype == "BF16":
            return bf16_to_float32(out)
        return out

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "SafetensorsFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<safetensors {self.path}: {len(self)} tensors>"


_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_LONG_NUMBER = re.compile(rb"[0-9]{%d,}" % (MAX_DIGITS + 1))


def _parse_header(path: str, raw: bytes) -> dict:
    """The header as a dict, parsed with bounded recursion and bounded integers."""
    # Before json (which recurses once per level, and gives up on integers of 4,300 digits
    # with a ValueError): strip the strings, then look at what is left. Long numbers:
    stripped = _STRING.sub(b"", raw)
    if m := _LONG_NUMBER.search(stripped):
        raise CheckpointError(path, "header", f"a number of {len(m.group()):,} digits "
                                              f"(at most {MAX_DIGITS})")
    # Nesting depth: a running count of openers minus closers.
    skeleton = np.frombuffer(stripped, np.uint8)
    depth = level = 0
    for at in range(0, skeleton.size, 1 << 20):  # in 1 MB pieces: bounded memory
        c = skeleton[at:at + (1 << 20)]
        run = np.cumsum((c == ord("{")).astype(np.int64) + (c == ord("[")) - (c == ord("}"))
                        - (c == ord("]"))) + level
        depth, level = max(depth, int(run.max())), int(run[-1])
    if depth > MAX_DEPTH:
        raise CheckpointError(path, "header", f"JSON nested {depth:,} levels deep (a safetensors "
                                              f"header has at most {MAX_DEPTH})")

    def constant(text: str):
        raise _Refused(f"{text} is not JSON")

    def pairs(items):
        out = dict(items)
        if len(out) != len(items):
            seen: set = set()
            dup = next(k for k, _ in items if k in seen or seen.add(k))
            raise _Refused(f"the key {_short(dup)} appears twice")
        return out

    try:
        text = raw.decode("utf-8")
        header = json.loads(text, parse_constant=constant, object_pairs_hook=pairs)
    except UnicodeDecodeError as e:
        raise CheckpointError(path, "header", f"not UTF-8 text (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(path, "header", f"not valid JSON ({e.msg} at character {e.pos})") from None
    except _Refused as e:
        raise CheckpointError(path, "header", str(e)) from None
    except RecursionError:  # the depth check above makes this unreachable; kept as a guard
        raise CheckpointError(path, "header", "JSON nested too deeply") from None
    if not isinstance(header, dict):
        raise CheckpointError(path, "header", f"a JSON {_kind(header)}, not an object")
    return header


class _Refused(Exception):
    pass


def _metadata(path: str, entry) -> dict[str, str]:
    if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
        raise CheckpointError(path, "__metadata__", "must be an object of strings")
    return dict(entry)


def _info(path: str, name: str, entry, data_size: int) -> TensorInfo:
    # The usual case first, in few steps (headers can hold 100,000 tensors) ...
    if type(entry) is dict:
        code, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if (type(code) is str and code in DTYPES and type(shape) is list and type(offsets) is list
                and len(offsets) == 2 and all(type(d) is int and d >= 0 for d in shape)
                and type(offsets[0]) is int and type(offsets[1]) is int
                and 0 <= offsets[0] <= offsets[1] <= data_size
                and offsets[1] - offsets[0] == _nbytes(shape, DTYPES[code].itemsize, 2 ** 64)):
            return TensorInfo(name, code, tuple(shape), offsets[0], offsets[1])
    # ... then, for a bad entry, which part is at fault.
    where = f"tensor {_short(name)}"
    if not isinstance(entry, dict):
        raise CheckpointError(path, where, f"a JSON {_kind(entry)}, not an object")
    for key in ("dtype", "shape", "data_offsets"):
        if key not in entry:
            raise CheckpointError(path, where, f"no {key!r}")
    code, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(code, str):
        raise CheckpointError(path, f"{where} dtype", f"a JSON {_kind(code)}, not a string")
    if code not in DTYPES:
        raise CheckpointError(path, f"{where} dtype", f"unknown dtype {code[:40]!r} "
                                                      f"(one of {', '.join(DTYPES)})")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise CheckpointError(path, f"{where} shape", f"{_short(shape)}: not a list of "
                                                      f"non-negative integers")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(type(o) is int and o >= 0 for o in offsets) or offsets[0] > offsets[1]):
        raise CheckpointError(path, f"{where} data_offsets", f"{_short(offsets)}: not "
                                                             f"[begin, end] with 0 <= begin <= end")
    begin, end = offsets
    if end > data_size:
        raise CheckpointError(path, f"{where} data_offsets", f"[{begin}, {end}] reaches past the "
                                                             f"{data_size:,}-byte data section")
    need = _nbytes(shape, DTYPES[code].itemsize, 2 ** 64)
    if end - begin != need:
        needs = f"{need:,}" if need is not None else "more than 2**64"
        raise CheckpointError(path, f"{where} data_offsets",
                              f"{end - begin:,} bytes for shape {_short(shape)} of {code} "
                              f"(needs {needs})")
    raise AssertionError(f"{path}: {where}: refused by the fast check alone")  # pragma: no cover


def _nbytes(shape: list[int], itemsize: int, limit: int) -> int | None:
    """prod(shape) * itemsize, or None once it exceeds `limit` (no huge products)."""
    if 0 in shape:
        return 0
    n = itemsize
    for d in shape:
        n *= d
        if n > limit:
            return None
    return n


def _check_tiling(path: str, infos: dict[str, TensorInfo], data_size: int) -> None:
    """The tensors must cover the data section exactly, in some order, without overlap."""
    at, prev = 0, None
    for info in sorted(infos.values(), key=lambda i: (i.begin, i.end)):
        if info.begin < at:
            raise CheckpointError(path, f"tensor {_short(info.name)} data_offsets",
                                  f"[{info.begin}, {info.end}] overlaps tensor {_short(prev)}")
        if info.begin > at:
            raise CheckpointError(path, f"tensor {_short(info.name)} data_offsets",
                                  f"starts at {info.begin:,}: {info.begin - at:,} bytes after the "
                                  f"previous tensor's end are no tensor's")
        at, prev = info.end, info.name
    if at != data_size:
        raise CheckpointError(path, "data", f"{data_size - at:,} bytes after the last tensor "
                                            f"(the data section has {data_size:,}, the header "
                                            f"accounts for {at:,})")


def _kind(value) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null",
            int: "number", float: "number"}.get(type(value), type(value).__name__)


def _short(value) -> str:
    """A JSON value for a message, at most 60 characters (headers can hold 100 MB)."""
    if isinstance(value, dict):
        return f"an object of {len(value):,} keys"
    if isinstance(value, list) and len(value) > 8:
        return _short(value[:8])[:-1] + f", ... ({len(value):,} items)]"
    if isinstance(value, str) and len(value) > 60:
        return json.dumps(value[:57] + "...", ensure_ascii=False)
    text = json.dumps(value, ensure_ascii=False) if isinstance(value, (list, str)) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ---- writing --------------------------------------------------------------------------------

def save(path, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None,
         *, dtypes: Mapping[str, str] | None = None) -> None:
    """Write `tensors` (name -> array) to a .safetensors file, atomically.

    `dtypes` names the code of raw-bit tensors ({"w": "BF16"} for a uint16 array of
    bfloat16 bits); other arrays are stored in their own dtype."""
    path = os.fspath(path)
    dtypes = dict(dtypes or {})
    entries = []
    for name, value in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise CheckpointError(path, f"tensor {_short(name)}", "a tensor name must be a string "
                                                            "other than '__metadata__'")
        arr = np.asarray(value)
        own = _code_of(arr.dtype)
        code = dtypes.pop(name, None) or own
        if code not in DTYPES:
            raise CheckpointError(path, f"tensor {_short(name)}", f"cannot store a {arr.dtype} array"
                                  if code is None else f"unknown dtype {code!r}")
        want = DTYPES[code]
        if code in RAW:  # raw bits: any integer array of the width
            if arr.dtype.kind not in "iu" or arr.dtype.itemsize != want.itemsize:
                raise CheckpointError(path, f"tensor {_short(name)}", f"{code} is stored from its raw "
                                      f"bits, a {want} array (got {arr.dtype})")
            arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False).view(want)
        elif code != own:
            raise CheckpointError(path, f"tensor {_short(name)}", f"a {arr.dtype} array stored as {code}")
        entries.append((name, code, np.asarray(arr, want, order="C")))
    if dtypes:
        raise CheckpointError(path, "dtypes", f"names no tensor: {', '.join(sorted(dtypes))}")
    if metadata is not None and not all(isinstance(k, str) and isinstance(v, str)
                                        for k, v in metadata.items()):
        raise CheckpointError(path, "__metadata__", "keys and values must be strings")

    entries.sort(key=lambda e: (-_ORDER[e[1]], e[0]))  # widest dtype first, then by name
    header: dict = {}
    if metadata is not None:
        header["__metadata__"] = dict(sorted(metadata.items()))
    offset = 0
    for name, code, arr in entries:
        header[name] = {"dtype": code, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    try:
        with atomic_write(path) as f:
            f.write(len(text).to_bytes(8, "little"))
            f.write(text)
            for _, _, arr in entries:
                if arr.nbytes:
                    f.write(memoryview(arr.reshape(-1).view(np.uint8)))
    except OSError as e:
        raise CheckpointError(path, None, f"cannot write: {e.strerror or e}") from None


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb"):
    """A file object for writing `path` all at once: the data goes to a temporary file in
    the same folder, is flushed and fsync'd, then renamed over `path` (readers see the old
    file or the new one, never half of one). Nothing changes on an exception.
    Raises OSError for a path that is a folder or cannot be written."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


# ---- bfloat16 ---------------------------------------------------------------------------------

def bf16_to_float32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bits (uint16) -> float32 values (exact: bfloat16 is float32's top half)."""
    bits = np.asarray(bits)
    if bits.dtype.itemsize != 2 or bits.dtype.kind not in "iu":
        raise ValueError(f"expected 16-bit integers holding bfloat16 bits, got {bits.dtype}")
    return (bits.astype(np.uint16).astype(np.uint32) << 16).view(np.float32)


def float32_to_bf16(values: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits (uint16), rounded to nearest, ties to even; NaN stays NaN."""
    f = np.asarray(values, np.float32, order="C")
    x = f.view(np.uint32)
    rounded = (x + (np.uint32(0x7FFF) + ((x >> 16) & 1))) >> 16
    out = rounded.astype(np.uint16)
    nan = np.isnan(f)
    if nan.any():
        out[nan] = ((x[nan] >> 16) | 0x0040).astype(np.uint16)  # keep sign, set a quiet bit
    return out
