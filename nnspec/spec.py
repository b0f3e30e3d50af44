"""The public entry point: load a spec, analyze it."""

from __future__ import annotations

import contextlib
import gc
import os
import stat
import sys

from . import parser
from .analysis import Analysis, analyze
from .errors import Diagnostic, SpecError
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


STDIN = "-"            # the path that means standard input
STDIN_NAME = "<stdin>"  # how diagnostics name it


def display_name(path: str | os.PathLike) -> str:
    """The name diagnostics give a spec path: `<stdin>` for `-`."""
    return STDIN_NAME if os.fspath(path) == STDIN else str(path)


def read_source(path: str | os.PathLike) -> tuple[str, str]:
    """(text, name) of a spec: `-` reads standard input (named `<stdin>`). Anything that is
    not a readable file — missing, a directory, a named pipe nobody writes to, a device, too
    large, binary, not UTF-8 — is a SpecError (NN002) naming it; reading never blocks on a
    named pipe without a writer."""
    name = display_name(path)
    if os.fspath(path) == STDIN:
        stream = getattr(sys.stdin, "buffer", None)
        if stream is None:
            raise _unreadable(name, "standard input is closed")
        try:
            raw = stream.read(parser.MAX_SOURCE_BYTES + 1)
        except OSError as e:
            raise _unreadable(name, e.strerror or str(e)) from None
        return parser.decode_source(raw, name), name
    try:
        # O_NONBLOCK: opening a named pipe must not wait for a writer that may never come.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise _unreadable(name, e.strerror or str(e)) from None
    except (ValueError, TypeError) as e:  # a NUL in the path, a path of the wrong type
        raise _unreadable(name, str(e)) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise _unreadable(name, "Is a directory; this command reads one .nn file")
        if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)):
            raise _unreadable(name, "not a regular file")
        if (stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)) and os.name == "posix":
            os.set_blocking(fd, True)  # a pipe with a writer, a terminal: wait for the text
        with os.fdopen(fd, "rb", closefd=True) as f:
            fd = -1
            raw = f.read(parser.MAX_SOURCE_BYTES + 1)
    except OSError as e:
        raise _unreadable(name, e.strerror or str(e)) from None
    finally:
        if fd >= 0:
            os.close(fd)
    if not raw and stat.S_ISFIFO(mode):
        raise _unreadable(name, "a named pipe with no writer; pipe the spec to standard input "
                                "(`-`) instead")
    return parser.decode_source(raw, name), name


def _unreadable(name: str, why: str) -> SpecError:
    return SpecError([Diagnostic("NN002", f"cannot read '{name}': {why}")])


def load(path: str | os.PathLike, **network_args) -> Spec:
    """Read, parse and check a .nn file (`-`: standard input); raises nnspec.SpecError
    listing every problem."""
    text, name = read_source(path)
    with _gc_paused():
        return Spec(expand(parser.parse(text, name), network_args))


def loads(text: str, file: str = "<string>", **network_args) -> Spec:
    """Parse and check spec text; raises nnspec.SpecError listing every problem."""
    with _gc_paused():
        return Spec(expand(parser.parse(text, file), network_args))
