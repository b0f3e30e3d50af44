"""Source spans, diagnostics and the error family.

The library never prints: problems are `Diagnostic` values, collected and raised together
as one `SpecError`. `render` turns a diagnostic into the ruff-style text the CLI shows:

    error[NN020] conv6: a 7x7 window does not fit a 6x6 input
     --> specs/net.nn:14:8
       |
    14 | conv6: conv(4096, 7)
       |        ^^^^^^^^^^^^^
       = in layer3.1 (block basic defined at 12:1)
       = help: ...
"""

from __future__ import annotations

import bisect
import difflib
import functools
import re
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Span:
    """A region of a source file; lines and columns are 1-based, `end_column` exclusive."""

    file: str
    line: int
    column: int
    end_line: int
    end_column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class Frame:
    """One block instance on the way to a node: `layer3.1` is block `basic` called at `call`."""

    instance: str
    block: str
    defined: Span
    call: Span
    args: tuple[tuple[str, object], ...] = ()

    def describe(self) -> str:
        where = f"{self.defined.line}:{self.defined.column}"
        return f"in {self.instance or '<network>'} (block {self.block} defined at {where})"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    code: str
    message: str
    span: Span | None = None
    severity: str = "error"  # "error" | "warning" | "info"
    help: str | None = None
    notes: tuple[str, ...] = ()
    chain: tuple[Frame, ...] = ()
    name: str = ""  # kebab-case rule name, filled in by the lint catalogue


class SpecError(Exception):
    """One or more problems in a spec; `diagnostics` holds every one of them."""

    def __init__(self, diagnostics: list[Diagnostic], sources: dict[str, str] | None = None):
        self.diagnostics = list(diagnostics)
        self.sources = dict(sources or {})
        super().__init__("; ".join(f"{d.span}: {d.message}" if d.span else d.message
                                   for d in self.diagnostics))

    def render(self) -> str:
        return "\n".join(render(d, self.sources.get(d.span.file) if d.span else None)
                         for d in self.diagnostics)


@dataclass
class Collector:
    """Gathers diagnostics while a pass goes on, so every independent problem is reported."""

    diagnostics: list[Diagnostic] = field(default_factory=list)

    def add(self, code: str, message: str, span: Span | None, *, help: str | None = None,
            notes: tuple[str, ...] = (), chain: tuple[Frame, ...] = ()) -> None:
        self.diagnostics.append(Diagnostic(code, message, span, "error", help, notes, chain))

    def __bool__(self) -> bool:
        return bool(self.diagnostics)


_NEAR = 12  # candidates compared in full when there are many: neighbours in sorted order
_LAST_SORTED: list = [None, (), ()]  # an immutable candidate set, sorted forwards and backwards


def did_you_mean(word: str, candidates) -> str | None:
    """`help:` text suggesting the closest candidate, if any is close. Among thousands of
    candidates (layer names) only the neighbours of `word` in sorted order, forwards and
    backwards, are compared (a close name shares its start or its end), and a frozenset or
    tuple asked about again is not sorted again: hundreds of suggestions over 5,000 layers
    take a fraction of a second, not minutes."""
    cands, backwards = _sorted(candidates)
    if backwards:
        i = bisect.bisect_left(cands, word)
        near = set(cands[max(0, i - _NEAR):i + _NEAR])
        j = bisect.bisect_left(backwards, word[::-1])
        near.update(c[::-1] for c in backwards[max(0, j - _NEAR):j + _NEAR])
        cands = sorted(near)
    close = difflib.get_close_matches(word, cands, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


def _sorted(candidates) -> tuple[list, list]:
    if _LAST_SORTED[0] is candidates:
        return _LAST_SORTED[1], _LAST_SORTED[2]
    forwards = sorted(candidates)
    backwards = sorted(c[::-1] for c in forwards) if len(forwards) > 4 * _NEAR else []
    if isinstance(candidates, (frozenset, tuple)):  # cannot change: keep it for the next question
        _LAST_SORTED[:] = [candidates, forwards, backwards]
    return forwards, backwards


_MAX_SHOWN_LINE = 200


def render(d: Diagnostic, source: str | None = None) -> str:
    """Plain text (no colour) of one diagnostic, with the source line and a caret."""
    head = f"{d.severity}[{d.code}]" + (f" {d.name}" if d.name else "") + f": {d.message}"
    out = [head]
    if d.span is not None:
        out.append(f" --> {d.span}")
        line_text = _source_line(source, d.span.line)
        if line_text is not None:
            start = d.span.column - 1
            if len(line_text) > _MAX_SHOWN_LINE:  # a 10 MB line is cut around the culprit
                left = max(0, start - 40)
                line_text = ("…" if left else "") + line_text[left:left + _MAX_SHOWN_LINE] + "…"
                start = start - left + (1 if left else 0)
            end = d.span.end_column - 1 if d.span.end_line == d.span.line else len(line_text)
            width = max(1, min(end, len(line_text)) - start)
            gutter = " " * len(str(d.span.line))
            out.append(f"{gutter} |")
            out.append(f"{d.span.line} | {line_text.translate(_SHOWN_AS_SPACE)}")
            out.append(f"{gutter} | {' ' * start}{'^' * width}")
    for frame in d.chain[::-1]:
        out.append(f"   = {frame.describe()}")
    for note in d.notes:
        out.append(f"   = note: {note}")
    if d.help:
        out.append(f"   = help: {d.help}")
    return "\n".join(out) + "\n"


# One line model everywhere (parser, renderer, suppressions): only "\n" ends a line, and a
# "\r" before it belongs to the line ending. A form feed, vertical tab, \x1c-\x1e, \x85 or
# U+2028/2029 inside a comment or string is an ordinary character; shown, it (and a tab)
# becomes one space, so the caret below stays under the column the parser counted.
_SHOWN_AS_SPACE = str.maketrans({c: " " for c in "\t\v\f\r\x1c\x1d\x1e\x85\u2028\u2029"})


def _source_line(source: str | None, line: int) -> str | None:
    if source is None or line < 1:
        return None
    starts = line_starts(source)
    if line > len(starts) or (line == len(starts) and starts[-1] == len(source) and line > 1):
        return None  # past the end (the empty "line" after a final newline included)
    start = starts[line - 1]
    end = source.find("\n", start)
    text = source[start:end if end >= 0 else len(source)]
    return text[:-1] if text.endswith("\r") else text


@functools.lru_cache(maxsize=8)
def line_starts(source: str) -> list[int]:
    """Offsets where each line of `source` starts (only "\n" ends a line)."""
    return [0] + [m.end() for m in re.finditer("\n", source)]
