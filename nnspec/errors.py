"""Source spans, diagnostics, the error family and the table of checker codes (`CODES`).

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


# ---- the checker's codes ------------------------------------------------------------------------
#
# Every NN0xx code raised anywhere in nnspec/ is one row of CODES, with its documentation; the
# lint catalogue (`nnspec lint --explain`, `nnspec rules`, docs/lint-rules.md) reads the rows.
# Adding a code is adding a row here (tests/test_lint_codes.py fails for a code that is raised
# but has no row, and runs every row's examples). Lint's own rules (NN1xx-NN9xx) live in
# nnspec/lint/.

@dataclass(frozen=True, slots=True)
class Code:
    """One checker code, documented: `bad` is a spec that raises exactly this code, `good` the
    same spec fixed (both run as tests); `found_by` says which stage raises it."""

    code: str
    name: str                   # kebab-case, says what is wrong
    summary: str                # what it reports, one sentence
    why: str                    # why that is a problem
    bad: str
    good: str
    fix: str                    # the usual remedy
    found_by: str = "checker"   # "checker" (parser, expander, train section) | "torch backend"
    severity: str = "error"


_NESTED = "{ " * 101 + "relu" + " }" * 101

CODES: dict[str, Code] = {c.code: c for c in (
    Code(
        "NN001", "syntax-error",
        summary="The file is not valid .nn syntax; parsing stops at the first error.",
        why="Nothing after a syntax error can be checked. `nnspec lint` exits with status 2.",
        bad="""
            input 3x32x32
            conv(16 3)
        """,
        good="""
            input 3x32x32
            conv(16, 3)
        """,
        fix="Follow the `expected …` list in the message; arguments are separated by commas, "
            "shapes are written `3x224x224`, layers are named `name: op(…)`.",
    ),

    Code(
        "NN002", "unreadable-source",
        summary="The file cannot be read as a spec: missing, binary, not UTF-8, larger than 2 MB, "
                "or brackets nested more than 100 deep.",
        why="The parser refuses hostile or accidental input before it spends time on it.",
        bad=f"""
            input 8
            {_NESTED}
        """,
        good="""
            input 8
            relu
        """,
        fix="Check the path and the encoding (UTF-8); flatten deep nesting with block definitions.",
    ),

    Code(
        "NN003", "number-out-of-range",
        summary="A literal or computed number is too large (integers must stay below 10^18, "
                "results must be finite).",
        why="Layer sizes that large are always a typo or a runaway expression.",
        bad="""
            input 3x32x32
            conv(2 ** 100, 3)
        """,
        good="""
            input 3x32x32
            conv(2 ** 6, 3)
        """,
        fix="Check the expression; values in a spec must be below 10^18.",
    ),

    Code(
        "NN010", "unknown-op",
        summary="An op or block name that is neither a built-in op nor a block of this file.",
        why="The layer cannot be built; the message suggests the closest known name.",
        bad="""
            input 3x32x32
            cnov(16, 3)
        """,
        good="""
            input 3x32x32
            conv(16, 3)
        """,
        fix="Use a built-in op (`nnspec ops` lists them) or define the block.",
    ),

    Code(
        "NN011", "unknown-argument",
        summary="A keyword argument that the op, block or network does not take.",
        why="A misspelt argument would otherwise be silently ignored (`strides=2` leaves stride 1).",
        bad="""
            input 3x32x32
            conv(16, 3, strides=2)
        """,
        good="""
            input 3x32x32
            conv(16, 3, stride=2, pad=1)
        """,
        fix="Use the argument name the help line suggests; `nnspec ops` shows every signature.",
    ),

    Code(
        "NN012", "wrong-argument-count",
        summary="A required argument is missing, an argument is given twice, or there are too "
                "many positional arguments.",
        why="The layer's size is undefined.",
        bad="""
            input 3x32x32
            conv(16)
        """,
        good="""
            input 3x32x32
            conv(16, 3)
        """,
        fix="Give every required argument once: `conv(out, kernel, stride=1, pad=0, …)`.",
    ),

    Code(
        "NN013", "invalid-argument-value",
        summary="An argument of the wrong type or outside its domain (a kernel of 0, a "
                "probability above 1, an unknown enum value).",
        why="The layer cannot exist with that value.",
        bad="""
            input 64
            linear(32) relu dropout(1.5)
            linear(10)
        """,
        good="""
            input 64
            linear(32) relu dropout(0.5)
            linear(10)
        """,
        fix="Use a value in the domain the message names.",
    ),

    Code(
        "NN014", "undefined-name",
        summary="An expression reads a name that is not a network parameter, block parameter or "
                "repeat index in scope (or a field `in.x` the incoming shape lacks).",
        why="The value is unknown; blocks see only their own parameters and the network's.",
        bad="""
            input 3x32x32
            conv(width, 3)
        """,
        good="""
            network net(width = 16)
            input 3x32x32
            conv(width, 3)
        """,
        fix="Declare the name as a network or block parameter, or fix its spelling.",
    ),

    Code(
        "NN015", "invalid-expression",
        summary="An expression that cannot be evaluated: division by zero, arithmetic on a "
                "string, a call where a value is needed.",
        why="The value is undefined.",
        bad="""
            input 3x32x32
            conv(16 / 0, 3)
        """,
        good="""
            input 3x32x32
            conv(16 / 2, 3)
        """,
        fix="Rewrite the expression; `//` is integer division.",
    ),

    Code(
        "NN016", "recursive-block",
        summary="A block that instantiates itself, directly or through other blocks "
                "(the language's only way to write a cycle).",
        why="The expansion would never end; networks are acyclic graphs.",
        bad="""
            input 64
            block mlp(n) {
              linear(n) relu
              mlp(n)
            }
            mlp(32)
        """,
        good="""
            input 64
            block mlp(n) {
              linear(n) relu
            }
            repeat 2 { mlp(32) }
        """,
        fix="Use `repeat N { … }` to stack a block.",
    ),

    Code(
        "NN017", "network-too-large",
        summary="The network expands to more than 200,000 layers.",
        why="Almost always a wrong repeat count; the limit keeps the tools responsive.",
        bad="""
            input 64
            repeat 300000 { relu }
        """,
        good="""
            input 64
            repeat 3 { linear(64) relu }
        """,
        fix="Check the repeat counts.",
    ),

    Code(
        "NN018", "duplicate-name",
        summary="Two layers, groups or block instances with the same name in the same scope.",
        why="Names are the PyTorch module paths of the layers; a state_dict needs them unique.",
        bad="""
            input 64
            fc: linear(32) relu
            fc: linear(10)
        """,
        good="""
            input 64
            fc1: linear(32) relu
            fc2: linear(10)
        """,
        fix="Rename one of them.",
    ),

    Code(
        "NN019", "invalid-structure",
        summary="The file's structure is wrong: no `input`, two `network` headers, two `train` "
                "sections, a block defined twice or named like an op, or no layers.",
        why="One file describes one network with one input.",
        bad="""
            conv(16, 3)
        """,
        good="""
            input 3x32x32
            conv(16, 3)
        """,
        fix="Declare the input shape first (`input 3x224x224`); one header, one train section.",
    ),

    Code(
        "NN020", "window-does-not-fit",
        summary="A conv or pooling window larger than its padded input, so the output would have "
                "size ≤ 0 (a too-large kernel, or too many downsamplings before it).",
        why="O = ⌊(N − F + 2P)/S⌋ + 1 must be at least 1; PyTorch raises at run time.",
        bad="""
            input 3x4x4
            conv(16, 7)
        """,
        good="""
            input 3x4x4
            conv(16, 3)
        """,
        fix="Use a smaller kernel, add padding, or remove a downsampling layer earlier.",
    ),

    Code(
        "NN021", "rank-mismatch",
        summary="An op applied to a tensor of the wrong rank: `linear` on a CxHxW map without "
                "`flatten`, `conv` or pooling on a feature vector.",
        why="The op is undefined on that input.",
        bad="""
            input 3x32x32
            conv(16, 3) relu
            linear(10)
        """,
        good="""
            input 3x32x32
            conv(16, 3) relu
            flatten
            linear(10)
        """,
        fix="Add `flatten` (or `global_avgpool`) before `linear`; spatial layers go before it.",
    ),

    Code(
        "NN022", "add-shape-mismatch",
        summary="`add { … }` paths that end in different shapes; the message names each path.",
        why="An element-wise sum needs equal shapes.",
        bad="""
            input 64x16x16
            add {
              conv(128, 3, pad=1)
              identity
            }
        """,
        good="""
            input 64x16x16
            add {
              conv(128, 3, pad=1)
              conv(128, 1, bias=false)
            }
        """,
        fix="Project the shortcut: `conv(C, 1, stride=S, bias=false) batchnorm`.",
    ),

    Code(
        "NN023", "concat-shape-mismatch",
        summary="`concat { … }` paths with different spatial sizes; the message names each path.",
        why="Concatenation along channels needs equal height and width.",
        bad="""
            input 64x16x16
            concat {
              conv(32, 3, pad=1)
              conv(32, 3, stride=2, pad=1)
            }
        """,
        good="""
            input 64x16x16
            concat {
              conv(32, 3, pad=1)
              conv(32, 1)
            }
        """,
        fix="Give every branch the same stride and 'same' padding.",
    ),

    Code(
        "NN024", "shape-assertion-failed",
        summary="A `-> shape` assertion that does not match the inferred shape.",
        why="The spec and the paper's table disagree; one of them is wrong.",
        bad="""
            input 3x32x32
            conv(16, 3) -> 16x32x32
        """,
        good="""
            input 3x32x32
            conv(16, 3, pad=1) -> 16x32x32
        """,
        fix="Run `nnspec explain FILE LAYER` to see the arithmetic.",
    ),

    Code(
        "NN025", "groups-do-not-divide-channels",
        summary="A grouped conv whose `groups` does not divide its input and output channels.",
        why="Each group must get the same number of channels.",
        bad="""
            input 6x32x32
            conv(16, 3, groups=4)
        """,
        good="""
            input 6x32x32
            conv(16, 3, groups=2)
        """,
        fix="Choose groups among the common divisors of the two channel counts.",
    ),

    Code(
        "NN030", "invalid-train-setting",
        summary="A train-section entry with an unknown key, loss, optimizer, schedule, init or "
                "data source, an unknown option, or a value of the wrong type.",
        why="The training configuration cannot be built.",
        bad="""
            input 64
            linear(10)
            train {
              optimizer sgdd(lr=0.1)
            }
        """,
        good="""
            input 64
            linear(10)
            train {
              optimizer sgd(lr=0.1)
            }
        """,
        fix="Use the suggested name; docs/language.md lists every train setting.",
    ),

    Code(
        "NN040", "backend-cannot-build", found_by="torch backend",
        summary="The torch backend cannot build a layer: an op it does not support with these "
                "arguments, or a layer or group name that is an attribute of `torch.nn.Module` "
                "(`training`, `forward`, `to`, …).",
        why="The model is refused when it is built, never halfway through training; the spec "
            "itself is valid, so `nnspec check` and `nnspec lint` accept it.",
        bad="""
            input 64
            training: linear(10)
        """,
        good="""
            input 64
            fc: linear(10)
        """,
        fix="Rename the layer or group; for an unsupported op, change its arguments or use "
            "another backend.",
    ),
)}


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
