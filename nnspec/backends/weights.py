"""Weights in and out: state dicts from .safetensors and .pt/.pth files, matched by name.

`load_weights(model, path, map=...)` reads a file, renames its keys by prefix, loads every
tensor whose name and shape match the model, and returns a `WeightsReport`: what was
loaded, what the model has that the file lacks (missing), what the file has that the model
lacks (unexpected), and the shape mismatches, as data and as a table. Nothing is unpickled
but tensors: .pt files go through `torch.load(weights_only=True)`, and .safetensors files are
parsed here (a JSON header and raw little-endian data: no code, no package needed).

Transfer learning, a pretrained trunk and a new 10-class head:

    model = nnspec.compile("specs/resnet18.nn", classes=10)
    report = nnspec.load_weights(model, "resnet18-imagenet.pth", map={"fc.": None})
    print(report.table())   # fc.weight and fc.bias: missing (the new head keeps its init)
"""

from __future__ import annotations

import json
import os
import pickle
import sys
from dataclasses import dataclass, field
from typing import Callable, Mapping

MAX_HEADER_BYTES = 100_000_000  # as the safetensors reference implementation

# safetensors dtype codes -> torch dtype names
_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
           "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
           "BOOL": "bool", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}
_CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "weights")


class WeightsError(Exception):
    """A weights file that cannot be read or refused, or (strict) a file that does not fit;
    `report` is set in the second case. str() is the message or the rendered table."""

    def __init__(self, message: str, report: "WeightsReport | None" = None):
        super().__init__(message)
        self.report = report


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

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self) -> str:
        total = len(self.loaded) + len(self.missing) + len(self.mismatched)
        parts = [f"{len(self.loaded)} of {total} model tensors loaded from {self.source}"]
        for word, items in (("missing", self.missing), ("unexpected", self.unexpected),
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
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise WeightsError(f"{path}: no such file")
    if path.endswith(".safetensors"):
        return read_safetensors(path)
    return _read_torch(path)


def _read_torch(path: str) -> dict:
    import torch
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        text = str(e)
        paragraphs = [p.strip().removeprefix("WeightsUnpickler error:").strip()
                      for p in text.split("\n\n") if p.strip()]
        details = [p for p in paragraphs if not p.startswith(("Weights only load failed", "Please file",
                                                               "Check the documentation"))]
        detail = " ".join(details) or paragraphs[0] if paragraphs else type(e).__name__
        if "global" not in text.lower():
            raise WeightsError(f"{path}: not a readable PyTorch file ({detail[:200]})") from None
        raise WeightsError(
            f"{path}: refused: the file holds Python objects other than tensors, and "
            f"unpickling them could run code. Only state dicts of tensors are read "
            f"(torch.load(weights_only=True)). ({detail[:200]})") from None
    except Exception as e:  # a damaged zip, not a torch file at all, ...
        raise WeightsError(f"{path}: not a readable PyTorch file ({type(e).__name__}: "
                           f"{str(e).strip()[:200]})") from None
    return _state_dict(obj, path)


def _state_dict(obj, where: str) -> dict:
    import torch
    if isinstance(obj, Mapping):
        tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
        for key in _CHECKPOINT_KEYS:  # a training checkpoint: {"model": state_dict, "epoch": 3}
            if isinstance(obj.get(key), Mapping):
                return _state_dict(obj[key], where)
        keys = ", ".join(map(str, list(obj)[:8]))
        raise WeightsError(f"{where}: no tensors found (keys: {keys or 'none'})")
    raise WeightsError(f"{where}: expected a state dict, found a {type(obj).__name__}")


def read_safetensors(path) -> dict:
    """Parse a .safetensors file: 8-byte little-endian header size, a JSON header
    {name: {dtype, shape, data_offsets: [begin, end]}}, then the raw data. Every offset and
    size is checked before a tensor is made."""
    import torch
    path = os.fspath(path)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise WeightsError(f"{path}: not a safetensors file (shorter than 8 bytes)")
        n = int.from_bytes(head, "little")
        if n > MAX_HEADER_BYTES or n > size - 8:
            raise WeightsError(f"{path}: not a safetensors file (header of {n:,} bytes in a "
                               f"{size:,}-byte file)")
        try:
            header = json.loads(f.read(n).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise WeightsError(f"{path}: the safetensors header is not valid JSON ({e})") from None
        data = bytearray(f.read())
    if not isinstance(header, dict):
        raise WeightsError(f"{path}: the safetensors header is not a JSON object")
    if sys.byteorder != "little":
        raise WeightsError(f"{path}: reading safetensors needs a little-endian machine")
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        out[name] = _tensor_at(path, name, info, data, torch)
    return out


def _tensor_at(path, name, info, data: bytearray, torch):
    bad = lambda why: WeightsError(f"{path}: tensor '{name}': {why}")  # noqa: E731
    if not isinstance(info, dict):
        raise bad("entry is not an object")
    code, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if code not in _DTYPES or not hasattr(torch, _DTYPES[code]):
        raise bad(f"unknown dtype {code!r}")
    if not isinstance(shape, list) or any(type(d) is not int or d < 0 for d in shape):
        raise bad(f"bad shape {shape!r}")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or any(type(o) is not int for o in offsets) or not 0 <= offsets[0] <= offsets[1] <= len(data)):
        raise bad(f"data offsets {offsets!r} outside the {len(data):,}-byte data section")
    dtype = getattr(torch, _DTYPES[code])
    count = 1
    for d in shape:
        count *= d
    itemsize = torch.empty((), dtype=dtype).element_size()
    begin, end = offsets
    if end - begin != count * itemsize:
        raise bad(f"{end - begin} bytes for {count} values of {code}")
    if count == 0:
        return torch.empty(shape, dtype=dtype)
    if begin % itemsize:  # unaligned: copy out (torch.frombuffer wants aligned offsets)
        return torch.frombuffer(bytearray(data[begin:end]), dtype=dtype).reshape(shape)
    return torch.frombuffer(data, dtype=dtype, count=count, offset=begin).reshape(shape)


# ---- writing --------------------------------------------------------------------------------

def save_weights(model_or_state, path) -> None:
    """Write a state dict (or a model's) to .safetensors, or with torch.save otherwise."""
    import torch
    state = model_or_state.state_dict() if hasattr(model_or_state, "state_dict") else dict(model_or_state)
    path = os.fspath(path)
    if not path.endswith(".safetensors"):
        torch.save(state, path)
        return
    codes = {v: k for k, v in _DTYPES.items()}
    header, blobs, offset = {}, [], 0
    for name in sorted(state):
        t = state[name].detach().to("cpu").contiguous()
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": codes[str(t.dtype).removeprefix("torch.")], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for raw in blobs:
            f.write(raw)


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
    """(report, {model name: tensor to load})"""
    names = rename(list(file_state), map)
    renamed, dropped, incoming = [], [], {}
    for old, new in names.items():
        if new is None:
            dropped.append(old)
            continue
        if new != old:
            renamed.append((old, new))
        incoming[new] = file_state[old]
    loaded, mismatched, to_load = [], [], {}
    for name in model_state:  # in the model's order
        if name not in incoming:
            continue
        tensor = incoming[name]
        want = tuple(model_state[name].shape)
        if tuple(tensor.shape) != want:
            mismatched.append((name, want, tuple(tensor.shape)))
        else:
            loaded.append(name)
            to_load[name] = tensor
    # A missing batch-norm counter is harmless (older checkpoints have none): it stays 0.
    missing = [n for n in model_state if n not in incoming and not n.endswith("num_batches_tracked")]
    unexpected = [n for n in incoming if n not in model_state]
    shapes = {n: tuple(model_state[n].shape) for n in missing}
    shapes.update({n: tuple(incoming[n].shape) for n in unexpected})
    report = WeightsReport(source, tuple(loaded), tuple(missing), tuple(unexpected), tuple(mismatched),
                           tuple(renamed), tuple(dropped), shapes)
    return report, to_load


def load_weights(model, source, map=None, strict: bool = False) -> WeightsReport:
    """Load the tensors of `source` (a .safetensors / .pt / .pth path, or a state dict) whose
    names (after `map`) and shapes match `model`; return the report. With strict=True
    nothing is loaded unless everything matches (WeightsError carries the report)."""
    if isinstance(source, Mapping):
        file_state, where = source, "<state dict>"
    else:
        file_state, where = read_weights(source), os.fspath(source)
    report, to_load = match(model.state_dict(), file_state, where, map)
    if strict and not report.ok:
        raise WeightsError(report.table(), report)
    model.load_state_dict(to_load, strict=False)
    return report
