"""Weights in and out: state dicts from .safetensors and .pt/.pth files, matched by name.

`load_weights(model, path, map=...)` reads a file, renames its keys by prefix, loads every
tensor whose name and shape match the model, and returns a `WeightsReport`: what was
loaded, what the model has that the file lacks (missing), what the file has that the model
lacks (unexpected), and the shape mismatches, as data and as a table. Nothing is unpickled
but tensors: .pt files go through `torch.load(weights_only=True)`, and .safetensors files are
read by `nnspec.checkpoint` (a JSON header and raw little-endian data: no code, no package
needed), lazily: only the tensors that fit the model are read.

A file that cannot be read or is refused raises `WeightsError`, whose `path` and `field`
say where ('tensor "fc.weight" data_offsets', "header", "pickle", ...): damaged or hostile
files (nested JSON, huge numbers, overlapping offsets, pickled code, ...) give one line,
never a traceback. Before torch.load sees a .pt zip, its records must be uncompressed (no
zip bombs) and its pickle is followed opcode by opcode, building nothing (`_check_pickle`):
nesting, stack size and the objects reachable through shared references are bounded (a
300-byte pickle of tuples that share tuples makes torch.load hash 2**40 of them). The
tensors are then memory-mapped, not read up front.

Transfer learning, a pretrained trunk and a new 10-class head:

    model = nnspec.compile("specs/resnet18.nn", classes=10)
    report = nnspec.load_weights(model, "resnet18-imagenet.pth", map={"fc.": None})
    print(report.table())   # fc.weight and fc.bias: missing (the new head keeps its init)
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import stat
import zipfile
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping

from .. import checkpoint
from ..checkpoint import CheckpointError

# safetensors codes stored as raw bits -> the torch dtype they hold
_RAW_TORCH = {"BF16": "bfloat16", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}
_CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "weights")
_MAX_NESTING = 8  # checkpoint dicts unwrapped to find the state dict
_COUNTER = "num_batches_tracked"


class WeightsError(Exception):
    """A weights file that cannot be read, written or is refused, or (strict) a file that
    does not fit; `report` is set in the last case. `path` is the file (None for a state
    dict), `field` the part of it at fault (None: the file as a whole). str() is the
    message or the rendered table."""

    def __init__(self, message: str, report: "WeightsReport | None" = None, *,
                 path: str | None = None, field: str | None = None):
        super().__init__(message)
        self.report, self.path, self.field = report, path, field

    @classmethod
    def of(cls, e: CheckpointError) -> "WeightsError":
        return cls(str(e), path=e.path, field=e.field)


@dataclass(frozen=True)
class WeightsReport:
    source: str
    loaded: tuple[str, ...]                          # model names that received a tensor
    missing: tuple[str, ...]                         # in the model, not in the file
    unexpected: tuple[str, ...]                      # in the file (after renaming), not in the model
    mismatched: tuple[tuple[str, tuple, tuple], ...]  # (name, model shape, file shape): not loaded
    renamed: tuple[tuple[str, str], ...] = ()        # (file name, model name) changed by the map
    dropped: tuple[str, ...] = ()                    # file names the map dropped (mapped to None)
    shapes: Mapping[str, tuple] = field(default_factory=dict, repr=False)  # of missing / unexpected
    # Batch-norm counters (num_batches_tracked) the file lacks: harmless (older checkpoints
    # have none), they keep the model's value; not `missing`, but counted in the total.
    counters: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        """The model's tensors: each is loaded, missing, mismatched or a kept counter."""
        return len(self.loaded) + len(self.missing) + len(self.mismatched) + len(self.counters)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self) -> str:
        parts = [f"{len(self.loaded)} of {self.total} model tensors loaded from {self.source}"]
        for word, items in (("missing", self.missing),
                            ("batch-norm counters not in the file (kept)", self.counters),
                            ("unexpected", self.unexpected),
                            ("shape mismatches", self.mismatched), ("renamed by the map", self.renamed),
                            ("dropped by the map", self.dropped)):
            if items:
                parts.append(f"{len(items)} {word}")
        return ", ".join(parts)

    def rows(self) -> list[tuple[str, str, str, str]]:
        """(status, name, model shape, file shape) for every tensor that did not load; the
        renamed and dropped names are counted in the summary (see `.renamed`, `.dropped`)."""
        out = [("mismatch", n, _shape(m), _shape(f)) for n, m, f in self.mismatched]
        out += [("missing", n, _shape(self.shapes.get(n, ())), "-") for n in self.missing]
        out += [("unexpected", n, "-", _shape(self.shapes.get(n, ()))) for n in self.unexpected]
        return out

    def table(self) -> str:
        lines = [self.summary()]
        rows = self.rows()
        if rows:
            head = ("status", "name", "model", "file")
            widths = [max(len(r[i]) for r in rows + [head]) for i in range(4)]
            fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
            lines += [fmt(head), fmt(tuple("-" * w for w in widths))] + [fmt(r) for r in rows]
        return "\n".join(lines) + "\n"

    def __str__(self) -> str:
        return self.table()


def _shape(s) -> str:
    return "x".join(map(str, s)) if len(s) else "scalar"


# ---- reading --------------------------------------------------------------------------------

def read_weights(path) -> dict:
    """name -> tensor (CPU) from a .safetensors or .pt/.pth file; raises WeightsError."""
    with _open(path) as state:
        return {name: state[name] for name in state}


def read_safetensors(path) -> dict:
    """Every tensor of a .safetensors file as torch tensors (see nnspec.checkpoint)."""
    with _SafetensorsState(os.fspath(path)) as state:
        return {name: state[name] for name in state}


def _open(path) -> "_FileState":
    """The tensors of a weights file, looked up by name; shapes are known without reading
    (safetensors: nothing but the header is read until a tensor is asked for)."""
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise WeightsError(f"{path}: no such file", path=path) from None
    except OSError as e:
        raise WeightsError(f"{path}: cannot read: {e.strerror or e}", path=path) from None
    if stat.S_ISDIR(st.st_mode):
        raise WeightsError(f"{path}: is a directory, not a weights file", path=path)
    if not stat.S_ISREG(st.st_mode):
        raise WeightsError(f"{path}: not a regular file", path=path)
    if path.endswith(".safetensors"):
        return _SafetensorsState(path)
    return _FileState(_read_torch(path))


class _FileState(Mapping):
    """name -> tensor; `shape(name)` without reading. Also a context manager."""

    def __init__(self, tensors: Mapping):
        self._tensors = tensors

    def __getitem__(self, name):
        return self._tensors[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)

    def shape(self, name) -> tuple:
        return tuple(self._tensors[name].shape)

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _SafetensorsState(_FileState):
    def __init__(self, path: str):
        try:
            self._file = checkpoint.open(path)
        except CheckpointError as e:
            raise WeightsError.of(e) from None
        super().__init__(self._file)

    def __getitem__(self, name):
        import torch
        try:
            arr = self._file.read(name)
        except CheckpointError as e:
            raise WeightsError.of(e) from None
        code = self._file.dtype(name)
        if code in _RAW_TORCH:
            if not hasattr(torch, _RAW_TORCH[code]):
                where = f"tensor {json.dumps(name)} dtype"
                raise WeightsError(f"{self._file.path}: {where}: this PyTorch has no "
                                   f"{_RAW_TORCH[code]} for {code}", path=self._file.path, field=where)
            signed = arr.view(f"<i{arr.dtype.itemsize}")  # torch has no unsigned 16-bit views
            return torch.from_numpy(signed).view(getattr(torch, _RAW_TORCH[code]))
        return torch.from_numpy(arr)

    def shape(self, name) -> tuple:
        return self._file.shape(name)

    def close(self) -> None:
        self._file.close()


_GLOBAL = re.compile(r"\bGLOBAL ([\w.]+)")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _read_torch(path: str) -> dict:
    import torch
    _check_torch_file(path)
    try:
        try:  # mmap: tensors are paged in when used, not all read up front
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)  # the legacy format
    except pickle.UnpicklingError as e:
        raise WeightsError(_refusal(path, str(e)), path=path, field="pickle") from None
    except RecursionError:
        raise WeightsError(f"{path}: refused: objects nested too deeply to be a state dict",
                           path=path, field="pickle") from None
    except MemoryError:
        raise WeightsError(f"{path}: refused: reading it ran out of memory", path=path) from None
    except Exception as e:  # a damaged zip, not a torch file at all, ...
        raise WeightsError(f"{path}: not a readable PyTorch file ({type(e).__name__}: "
                           f"{_one_line(str(e))[:200]})", path=path) from None
    return _state_dict(obj, path)


def _check_torch_file(path: str) -> None:
    """Before torch.load: torch.save writes an uncompressed zip; a compressed record (a "zip
    bomb": 6 MB that inflate to 6 GB) is refused before torch would inflate it in memory.
    The pickles (of the zip, or of the legacy format) are checked by `_check_pickle`."""
    try:
        if not zipfile.is_zipfile(path):
            # The legacy format: pickles of a magic number, the protocol, system info, then
            # the object (the tensors' bytes follow). Not a torch file: torch.load says so.
            with open(path, "rb") as f:
                for _ in range(4):
                    _check_pickle(f, path)
            return
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            packed = next((i for i in infos if i.compress_type != zipfile.ZIP_STORED), None)
            if packed is not None:
                raise WeightsError(f"{path}: refused: record {packed.filename[:80]!r} is compressed "
                                   f"(torch.save writes none; inflating it could take any amount of "
                                   f"memory)", path=path, field=f"zip record {packed.filename[:80]!r}")
            pkl = next((i for i in infos if i.filename.endswith("data.pkl")), None)
            if pkl is not None:
                with z.open(pkl) as f:  # in memory when small (many small reads otherwise)
                    _check_pickle(io.BytesIO(f.read()) if pkl.file_size < 1 << 28 else f, path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise WeightsError(f"{path}: not a readable PyTorch file (damaged zip: "
                           f"{_one_line(str(e))[:200]})", path=path) from None


MAX_PICKLE_DEPTH = 100        # a state dict nests < 10 deep; an optimizer checkpoint < 20
MAX_PICKLE_OBJECTS = 1_000_000
MAX_PICKLE_STACK = 100_000    # pickle batches items by 1,000


class _Node:
    """An object the pickle builds: how deep it nests, how many objects it spans when shared
    references are counted each time (what hashing or printing it would visit)."""
    __slots__ = ("depth", "size")

    def __init__(self, depth: int = 0, size: int = 1):
        self.depth, self.size = depth, size


def _pickle_table() -> dict:
    """opcode -> (action, items popped below a mark or in all, whether it pops to a mark,
    items pushed), from pickletools' description of each opcode's stack effect."""
    import pickletools
    special = {"PUT": "put", "BINPUT": "put", "LONG_BINPUT": "put", "MEMOIZE": "memoize",
               "GET": "get", "BINGET": "get", "LONG_BINGET": "get", "MARK": "mark", "STOP": "stop",
               "DUP": "dup", "APPEND": "fill", "APPENDS": "fill", "SETITEM": "fill",
               "SETITEMS": "fill", "ADDITEMS": "fill", "BUILD": "fill"}
    table = {}
    for op in pickletools.opcodes:
        before = op.stack_before
        to_mark = pickletools.markobject in before
        k = before.index(pickletools.markobject) if to_mark else len(before)
        table[op.code] = (special.get(op.name, "make"), k, to_mark, len(op.stack_after))
    return table


def _check_pickle(f, path: str) -> None:
    """Follow the pickle's opcodes (no object is built) and refuse nesting deeper than
    MAX_PICKLE_DEPTH, or objects that span more than MAX_PICKLE_OBJECTS through shared
    references: a 300-byte file of tuples of tuples (each level twice the one below) makes
    torch.load hash 2**40 tuples, forever. Malformed opcodes are left to torch.load."""
    import pickletools
    global _PICKLE_TABLE
    table = _PICKLE_TABLE = _PICKLE_TABLE or _pickle_table()
    stack: list = []
    marks: list[int] = []
    memo: dict = {}
    count = 0
    limit = MAX_PICKLE_OBJECTS

    def refuse(why: str):
        raise WeightsError(f"{path}: refused: the pickle {why}; a state dict of tensors does not",
                           path=path, field="pickle")

    try:
        for op, arg, _ in pickletools.genops(f):
            count += 1
            action, k, to_mark, pushed = table[op.code]
            if action == "put":
                memo[arg] = stack[-1]
                continue
            if action == "memoize":
                memo[len(memo)] = stack[-1]
                continue
            if action == "get":
                stack.append(memo[arg])
                continue
            if action == "mark":
                marks.append(len(stack))
                continue
            if action == "stop":
                break
            if to_mark:
                at = marks.pop() - k
            else:
                at = len(stack) - k
            if at < 0:
                return  # malformed: torch.load reports it
            popped = stack[at:]
            del stack[at:]
            if not pushed:
                continue
            if action == "fill":  # filled in place: the memo sees it
                node, children = popped[0], popped[1:]
            elif action == "dup":
                stack += [popped[0], popped[0]]
                continue
            else:
                node, children = _Node(), popped
            for c in children:
                if c.depth >= node.depth:
                    node.depth = c.depth + 1
                node.size = min(node.size + c.size, 2 * limit)
            if node.depth > MAX_PICKLE_DEPTH:
                refuse(f"nests objects more than {MAX_PICKLE_DEPTH} deep")
            if node.size > limit + 16 * count:
                refuse(f"builds an object that spans more than {limit:,} objects through "
                       f"shared references")
            stack += [node] * pushed
            if len(stack) > MAX_PICKLE_STACK:
                refuse(f"holds more than {MAX_PICKLE_STACK:,} objects at once on its stack")
    except (ValueError, KeyError, IndexError, EOFError):
        return  # not a pickle we can follow: torch.load reports it


_PICKLE_TABLE: dict | None = None


def _one_line(text: str) -> str:
    return " ".join(_ANSI.sub("", text).split())


def _refusal(path: str, text: str) -> str:
    """One line of ours for torch's many-paragraph weights_only message."""
    text = _ANSI.sub("", text)
    if m := _GLOBAL.search(text):
        return (f"{path}: refused: the file contains pickled code (global {m.group(1)[:100]}), "
                f"not only tensors; nnspec reads tensors only (torch.load weights_only=True)")
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    paragraphs = [p for p in (q.strip() for q in text.split("\n\n"))
                  if p and not p.startswith(("Weights only load failed", "Check the documentation"))]
    detail = _one_line(paragraphs[0] if paragraphs else "")[:200] or "unpickling failed"
    return f"{path}: not a readable PyTorch file of tensors ({detail})"


def _state_dict(obj, where: str) -> dict:
    """The tensors of a state dict, unwrapping training checkpoints ({"model": state_dict,
    "epoch": 3}) a bounded number of levels deep."""
    import torch
    for _ in range(_MAX_NESTING):
        if not isinstance(obj, Mapping):
            raise WeightsError(f"{where}: expected a state dict, found a {type(obj).__name__}",
                               path=where)
        # A checkpoint key holding a dict first: a state dict's values are all tensors, and a
        # checkpoint may hold a tensor of its own beside the model (the RNG state).
        inner = next((obj[k] for k in _CHECKPOINT_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is not None:
            obj = inner
            continue
        tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
        keys = ", ".join(k[:40] if isinstance(k, str) else type(k).__name__ for k in list(obj)[:8])
        raise WeightsError(f"{where}: no tensors found (keys: {keys or 'none'})", path=where)
    raise WeightsError(f"{where}: no tensors found within {_MAX_NESTING} levels of "
                       f"checkpoint keys ({', '.join(_CHECKPOINT_KEYS)})", path=where)


# ---- writing --------------------------------------------------------------------------------

def save_weights(model_or_state, path) -> None:
    """Write a state dict (or a model's) to .safetensors (nnspec.checkpoint), or with
    torch.save otherwise; atomically either way. Raises WeightsError."""
    import torch
    state = model_or_state.state_dict() if hasattr(model_or_state, "state_dict") else dict(model_or_state)
    path = os.fspath(path)
    try:
        if path.endswith(".safetensors"):
            raw = {getattr(torch, t): code for code, t in _RAW_TORCH.items() if hasattr(torch, t)}
            arrays, dtypes = {}, {}
            for name, t in state.items():
                t = t.detach().to("cpu").contiguous()
                if t.dtype in raw:
                    dtypes[name] = raw[t.dtype]
                    t = t.view(torch.int16 if t.element_size() == 2 else torch.uint8)
                arrays[name] = t.numpy()
            checkpoint.save(path, arrays, {"format": "pt"}, dtypes=dtypes)
        else:
            with checkpoint.atomic_write(path) as f:
                torch.save(state, f)
    except CheckpointError as e:
        raise WeightsError.of(e) from None
    except OSError as e:
        raise WeightsError(f"{path}: cannot write: {e.strerror or e}", path=path) from None


# ---- matching -------------------------------------------------------------------------------

def rename(names, map: Mapping[str, str | None] | Callable[[str], str | None] | None):
    """file name -> model name (None: drop). A mapping renames by prefix, longest first:
    {"module.": ""} strips DataParallel's prefix, {"fc.": None} drops the head."""
    if map is None:
        return {n: n for n in names}
    if callable(map):
        return {n: map(n) for n in names}
    prefixes = sorted(map, key=len, reverse=True)
    out = {}
    for n in names:
        for p in prefixes:
            if n.startswith(p):
                new = map[p]
                out[n] = None if new is None else new + n[len(p):]
                break
        else:
            out[n] = n
    return out


def match(model_state: Mapping, file_state: Mapping, source: str = "<dict>", map=None):
    """(report, {model name: tensor to load}). Only the tensors that load are looked up in
    `file_state`; shapes come from its `shape(name)` where it has one (a lazy file)."""
    shape_of = getattr(file_state, "shape", None)
    if not callable(shape_of):
        shape_of = lambda n: tuple(file_state[n].shape)  # noqa: E731
    names = rename(list(file_state), map)
    renamed, dropped, incoming = [], [], {}  # incoming: model name -> file name
    for old, new in names.items():
        if new is None:
            dropped.append(old)
            continue
        if new != old:
            renamed.append((old, new))
        incoming[new] = old
    loaded, mismatched, to_load = [], [], {}
    for name in model_state:  # in the model's order
        if name not in incoming:
            continue
        have = tuple(shape_of(incoming[name]))
        want = tuple(model_state[name].shape)
        if have != want:
            mismatched.append((name, want, have))
        else:
            loaded.append(name)
            to_load[name] = file_state[incoming[name]]
    absent = [n for n in model_state if n not in incoming]
    counters = [n for n in absent if n.rsplit(".", 1)[-1] == _COUNTER]
    missing = [n for n in absent if n.rsplit(".", 1)[-1] != _COUNTER]
    unexpected = [n for n in incoming if n not in model_state]
    shapes = {n: tuple(model_state[n].shape) for n in missing}
    shapes.update({n: tuple(shape_of(incoming[n])) for n in unexpected})
    report = WeightsReport(source, tuple(loaded), tuple(missing), tuple(unexpected), tuple(mismatched),
                           tuple(renamed), tuple(dropped), shapes, tuple(counters))
    return report, to_load


def load_weights(model, source, map=None, strict: bool = False) -> WeightsReport:
    """Load the tensors of `source` (a .safetensors / .pt / .pth path, or a state dict) whose
    names (after `map`) and shapes match `model`; return the report. With strict=True
    nothing is loaded unless everything matches (WeightsError carries the report)."""
    if isinstance(source, Mapping):
        file_state, where = _FileState(source), "<state dict>"
    else:
        file_state, where = _open(source), os.fspath(source)
    with file_state:
        report, to_load = match(model.state_dict(), file_state, where, map)
        if strict and not report.ok:
            raise WeightsError(report.table(), report, path=None if where == "<state dict>" else where)
        model.load_state_dict(to_load, strict=False)
    return report
