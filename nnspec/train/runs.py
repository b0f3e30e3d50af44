"""A run directory: where a training run keeps what it must never lose.

    runs/<spec>-<YYYYmmdd-HHMMSS>/
      manifest.json        what the run is and where it stands (written last, atomically)
      last.safetensors     the latest checkpoint: weights, optimizer state, random state
      best.safetensors     the weights of the best epoch (by the early-stopping monitor)
      step-<N>.safetensors the K most recent checkpoints
      log.jsonl            one JSON event per line, continued across resumes

A checkpoint is a safetensors file (nnspec.checkpoint: NumPy only, written to a temporary
file, flushed, renamed) whose metadata holds the trainer's state as JSON. Nothing is
unpickled when a run is resumed.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .. import checkpoint

MANIFEST = "manifest.json"
LAST = "last.safetensors"
BEST = "best.safetensors"
LOG = "log.jsonl"
STATE_KEY = "nnspec.trainer"


class RunError(Exception):
    """A run directory that cannot be used: one line, naming the path."""


def new_run_dir(spec_file: str, root: str | os.PathLike = "runs") -> Path:
    stem = Path(spec_file).stem if spec_file and not spec_file.startswith("<") else "spec"
    base = Path(root) / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, k = base, 1
    while path.exists():
        k += 1
        path = base.with_name(f"{base.name}-{k}")
    return path


def prepare(path: Path) -> None:
    """Create the run directory and prove it is writable before step 1."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".probe-{os.getpid()}"
        with checkpoint.atomic_write(probe, "w") as f:
            f.write("ok")
        probe.unlink()
    except OSError as e:
        raise RunError(f"{path}: the run directory cannot be written ({e.strerror or e})") from None


def architecture(graph) -> list[list]:
    """What must not change between a run and its resume: every node's name, op, arguments,
    inputs and shape (the line it was written on is reported, not compared)."""
    return [[nd.name, nd.op, {k: _jsonable(v) for k, v in sorted(nd.attrs.items())}, list(nd.inputs),
             list(nd.shape)] for nd in graph.nodes]


def fingerprint(graph) -> str:
    return hashlib.sha256(json.dumps(architecture(graph), sort_keys=True).encode()).hexdigest()[:16]


def _jsonable(v):
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    return str(v)


def first_difference(old: list, graph) -> str | None:
    """A sentence naming the first layer (and its spec line) that differs from `old`."""
    new = architecture(graph)
    for k, (a, b) in enumerate(zip(old, new)):
        if a != b:
            nd = graph.nodes[k]
            what = ("op" if a[1] != b[1] else "arguments" if a[2] != b[2] else
                    "inputs" if a[3] != b[3] else "shape" if a[4] != b[4] else "name")
            line = f"{graph.file}:{nd.span.line}" if nd.span is not None else graph.file
            return (f"{line}: layer {b[0]} ({b[1]}) changed its {what} since the run started "
                    f"(it was {a[0]} ({a[1]}) {json.dumps(a[2])} -> {'x'.join(map(str, a[4]))})")
    if len(old) != len(new):
        extra = graph.nodes[len(old)] if len(new) > len(old) else None
        where = f"{graph.file}:{extra.span.line}: " if extra is not None and extra.span else ""
        return f"{where}the network has {len(new) - 1} layers, the run had {len(old) - 1}"
    return None


@dataclass
class Checkpoint:
    arrays: dict[str, np.ndarray]
    state: dict[str, Any]


def save_checkpoint(path: Path, arrays: Mapping[str, np.ndarray], state: Mapping[str, Any]) -> None:
    checkpoint.save(path, dict(arrays), {STATE_KEY: json.dumps(state, allow_nan=True)})


def keep_copy(src: Path, dst: Path) -> None:
    """Keep the checkpoint just written under another name: a hard link (the next atomic
    rewrite of `src` replaces its name, not the linked data), else a copy."""
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        import shutil
        with checkpoint.atomic_write(dst) as out, open(src, "rb") as f:
            shutil.copyfileobj(f, out)


def load_checkpoint(path: Path) -> Checkpoint:
    try:
        with checkpoint.open(path) as f:
            meta = dict(f.metadata)
            arrays = {k: f.read(k) for k in f}
    except checkpoint.CheckpointError as e:
        raise RunError(str(e)) from None
    except OSError as e:
        raise RunError(f"{path}: cannot read ({e.strerror or e})") from None
    raw = meta.get(STATE_KEY)
    if raw is None:
        raise RunError(f"{path}: not a training checkpoint of nnspec (no '{STATE_KEY}' metadata)")
    try:
        state = json.loads(raw)
    except ValueError as e:
        raise RunError(f"{path}: the trainer state in the metadata is not JSON ({e})") from None
    if not isinstance(state, dict):
        raise RunError(f"{path}: the trainer state in the metadata is not an object")
    return Checkpoint(arrays, state)


def write_manifest(path: Path, manifest: Mapping[str, Any]) -> None:
    with checkpoint.atomic_write(path / MANIFEST, "w") as f:
        json.dump(manifest, f, indent=2, allow_nan=True)
        f.write("\n")


def read_manifest(path: Path) -> dict:
    file = path / MANIFEST
    if not file.is_file():
        raise RunError(f"{path}: no {MANIFEST} here: not a run directory, or the run never started "
                       f"(drop --resume to start one)")
    try:
        m = json.loads(file.read_text("utf-8"))
    except (OSError, ValueError) as e:
        raise RunError(f"{file}: unreadable ({e})") from None
    if not isinstance(m, dict):
        raise RunError(f"{file}: not a JSON object")
    return m


class EventLog:
    """log.jsonl: one JSON object per line, appended and flushed as it happens."""

    def __init__(self, path: Path):
        self.path = path
        self.f = open(path, "a", encoding="utf-8")

    def write(self, event: Mapping[str, Any]) -> None:
        self.f.write(json.dumps({"time": round(time.time(), 3), **event}, allow_nan=True) + "\n")
        self.f.flush()

    def close(self) -> None:
        self.f.close()
