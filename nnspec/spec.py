"""The public entry point: load a spec, analyze it."""

from __future__ import annotations

import contextlib
import gc
import os

from . import parser
from .analysis import Analysis, analyze
from .expand import expand
from .ir import Graph


class Spec:
    """A parsed, expanded and shape-checked network spec.

    >>> spec = loads("input 3x32x32\\nconv(6, 5) relu\\nmaxpool(2)")
    >>> spec.analyze().totals.params
    456
    """

    def __init__(self, graph: Graph):
        self.graph = graph

    @property
    def name(self) -> str:
        return self.graph.name

    @property
    def train(self):
        return self.graph.train

    def analyze(self, batch: int | None = None, dtype: str = "float32") -> Analysis:
        """Shapes, parameters, MACs, memory and receptive fields; `batch` defaults to the
        train section's batch size, else 1."""
        if batch is None:
            batch = (self.graph.train.batch if self.graph.train and self.graph.train.batch else 1)
        with _gc_paused():
            return analyze(self.graph, batch, dtype)

    def __repr__(self) -> str:
        return f"<Spec {self.name}: {len(self.graph.nodes) - 1} layers from {self.graph.file}>"


@contextlib.contextmanager
def _gc_paused():
    """Parsing and expanding allocate many small objects and free few: the cyclic garbage
    collector's passes over the growing heap made a 10,000-layer spec 40% slower (and the
    cost superlinear). Reference counting still frees everything; collection resumes after."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def load(path: str | os.PathLike, **network_args) -> Spec:
    """Read, parse and check a .nn file; raises nnspec.SpecError listing every problem."""
    with _gc_paused():
        return Spec(expand(parser.parse_file(path), network_args))


def loads(text: str, file: str = "<string>", **network_args) -> Spec:
    """Parse and check spec text; raises nnspec.SpecError listing every problem."""
    with _gc_paused():
        return Spec(expand(parser.parse(text, file), network_args))
