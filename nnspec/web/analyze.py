"""What the playground shows for one spec text, as plain JSON-able data.

`analyze(text, options)` parses and expands the text once and returns the layer table
(report.py's JSON, plus the formatted cells of `nnspec table`), the totals lines, the
checker's errors or lint's findings (lint's JSON form, with line/column spans), the diagram
(nnspec/diagram.py's SVG) and the network's parameters (for the page's controls).
Nothing is re-derived here: every number comes from report.py, explain.py and lint.

Runs in a worker process of `nnspec serve` (nnspec/web/pool.py) and inside `nnspec html`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from ..analysis import DTYPE_BYTES
from ..errors import Diagnostic, SpecError
from ..spec import Spec

JSON_VERSION = 1
MAX_DEPTH = 1000
MAX_BATCH = 2 ** 31 - 1  # as `--batch` (cli.MAX_BATCH)
MAX_ARGS = 64            # network parameters set from the page
MAX_ARG_CHARS = 200      # characters of one parameter's value


class OptionError(ValueError):
    """A bad batch, dtype, depth or network argument: the API answers 400 with it."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Options:
    """The page's controls: `--batch`, `--dtype`, `--depth` and `--set NAME=VALUE`."""
    batch: int | None = None
    dtype: str = "float32"
    depth: int | None = None
    args: tuple[tuple[str, str], ...] = ()  # as typed: converted like `--set` values

    @classmethod
    def from_json(cls, doc: dict) -> "Options":
        """Options from a request's fields; OptionError names the bad one."""
        batch = _int_or_none(doc.get("batch"), "batch", MAX_BATCH)
        depth = _int_or_none(doc.get("depth"), "depth", MAX_DEPTH)
        dtype = doc.get("dtype") or "float32"
        if dtype not in DTYPE_BYTES:
            raise OptionError("dtype", f"dtype must be one of {', '.join(DTYPE_BYTES)}")
        raw = doc.get("args") or {}
        if not isinstance(raw, dict) or len(raw) > MAX_ARGS:
            raise OptionError("args", f"args must be an object of at most {MAX_ARGS} "
                                      f"NAME: VALUE strings")
        args = []
        for k, v in sorted(raw.items()):
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                v = str(v)
            if not isinstance(v, str) or len(v) > MAX_ARG_CHARS or len(k) > MAX_ARG_CHARS:
                raise OptionError(f"args.{k[:40]}", f"the value of {k[:40]!r} must be text of at "
                                                    f"most {MAX_ARG_CHARS} characters")
            if v.strip():
                args.append((k, v.strip()))
        return cls(batch, dtype, depth, tuple(args))

    def network_args(self) -> dict:
        """The values as `--set` reads them (cli._literal); OptionError if one is refused."""
        from ..cli import UsageError, _literal
        out = {}
        for k, v in self.args:
            try:
                out[k] = _literal(k, v)
            except UsageError as e:
                raise OptionError(f"args.{k}", str(e).replace("--set ", "", 1)) from None
        return out

    def key(self) -> tuple:
        return (self.batch, self.dtype, self.depth, self.args)


def _int_or_none(v, field: str, most: int) -> int | None:
    if v is None or v == "":
        return None
    if isinstance(v, str) and v.strip().isascii() and v.strip().isdigit() and len(v.strip()) < 12:
        v = int(v.strip())
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= most:
        raise OptionError(field, f"{field} must be an integer from 1 to {most:,}")
    return v


def _diag(d: Diagnostic) -> dict:
    from ..lint.formats import finding_dict
    return finding_dict(d)


class _Analysed(Spec):
    """A Spec whose analyses are computed once each: the table, lint and the diagram all ask
    for the default one (the train section's batch, else 1; float32)."""

    def __init__(self, graph):
        super().__init__(graph)
        self._memo: dict = {}

    def analyze(self, batch=None, dtype="float32"):
        key = (batch, dtype)
        if key not in self._memo:
            self._memo[key] = super().analyze(batch, dtype)
        return self._memo[key]


def parse_and_expand(text: str, file: str, options: Options):
    """(module, graph, diagnostics): the syntax tree (None when the text does not parse),
    the graph (None when the checker fails) and the checker's errors."""
    from .. import parser
    from ..expand import expand
    from ..spec import _gc_paused
    args = options.network_args()
    with _gc_paused():
        try:
            module = parser.parse(text, file)
        except SpecError as e:
            return None, None, list(e.diagnostics)
        try:
            return module, expand(module, args), []
        except SpecError as e:
            return module, None, list(e.diagnostics)


def analyze(text: str, file: str = "<editor>", options: Options = Options()) -> dict:
    """The page's data for `text`: {"version", "ok", "file", "network", "params" (None
    when the text does not parse), "diagnostics", "lint", "table" (report.to_dict), "rows"
    (the cells of `nnspec table`, with each row's line), "title", "totals", "svg",
    "svg_error"}."""
    from ..lint.engine import lint_graph
    from ..report import all_digits, rows, title, to_dict, totals_lines, _cells
    out = {"version": JSON_VERSION, "ok": False, "file": file, "network": None, "params": None,
           "diagnostics": [], "lint": [], "table": None, "rows": [], "title": None,
           "totals": [], "svg": None, "svg_error": None}
    module, graph, errors = parse_and_expand(text, file, options)
    if module is not None:
        out["params"] = network_params(module, text)
    with all_digits():
        out["diagnostics"] = [_diag(d) for d in errors]
        if graph is None:
            return out
        spec = _Analysed(graph)
        an = spec.analyze(options.batch, options.dtype)
        # one finding per layer for the diagram's marks; folded to one per source position
        # for the list, as `nnspec lint` reports them
        per_layer = lint_graph(text, file, graph, fold=False, analysis=spec.analyze()).findings
        out["lint"] = [_diag(d) for d in fold_findings(per_layer)]
        out["ok"] = True
        out["network"] = graph.name
        out["title"] = title(an)
        out["table"] = to_dict(an)
        lines = {nd.name: nd.span for nd in graph.nodes[1:]}
        for r in rows(an, options.depth):
            span = lines.get(r.name)
            if span is None:  # a folded group: where its first layer is written
                span = next((nd.span for nd in graph.nodes[1:]
                             if nd.name.startswith(r.name + ".")), None)
            here = span is not None and span.file == file
            out["rows"].append({"name": r.name, "cells": list(_cells(r, an)),
                                "weighted": bool(r.params or r.macs),
                                "line": span.line if here else None,
                                "column": span.column if here else None})
        out["totals"] = totals_lines(an)
        out["svg"], out["svg_error"] = diagram(spec, options.depth, per_layer)
    return out


def diagram(spec, depth, findings) -> tuple[str | None, str | None]:
    """(svg, None), or (None, why) when nnspec.diagram is not installed."""
    try:
        from ..diagram import render_svg
    except ImportError:
        return None, "the diagram module (nnspec.diagram) is not part of this installation"
    try:
        return render_svg(spec, depth=depth, findings=tuple(findings)), None
    except (RecursionError, MemoryError):
        return None, "the network is too large or too deeply nested to draw"
    except Exception as e:  # a bug in the drawing must not cost the page its table
        return None, f"the diagram failed: {type(e).__name__}: {e}"[:300]


def explain(text: str, name: str, file: str = "<editor>", options: Options = Options()) -> dict:
    """{"name", "text"}: what `nnspec explain FILE NAME` prints for this text, or
    {"name", "error"} (a spec that does not check, a name with no row)."""
    from ..explain import explain as explain_row
    _, graph, errors = parse_and_expand(text, file, options)
    if graph is None:
        return {"name": name, "error": errors[0].message if errors else "the spec has errors"}
    an = Spec(graph).analyze(options.batch, options.dtype)
    try:
        return {"name": name, "text": explain_row(an, name)}
    except SpecError as e:
        d = e.diagnostics[0]
        return {"name": name, "error": d.message + (f" ({d.help})" if d.help else "")}


def explain_all(text: str, file: str, options: Options) -> dict[str, str]:
    """Every row's explanation (`nnspec html` embeds them): name -> text."""
    from ..explain import explain as explain_row
    from ..report import rows
    _, graph, _ = parse_and_expand(text, file, options)
    if graph is None:
        return {}
    an = Spec(graph).analyze(options.batch, options.dtype)
    return {r.name: explain_row(an, r.name) for r in rows(an, options.depth)}


def export(text: str, fmt: str, file: str = "<editor>", options: Options = Options()) -> dict:
    """{"format", "content"}: the table JSON exactly as `nnspec table --format json` prints
    it, or the diagram SVG; {"error"} when the spec does not check."""
    from ..report import to_json
    _, graph, errors = parse_and_expand(text, file, options)
    if graph is None:
        return {"format": fmt, "error": errors[0].message if errors else "the spec has errors"}
    spec = Spec(graph)
    if fmt == "json":
        return {"format": fmt, "content": to_json(spec.analyze(options.batch, options.dtype)) + "\n"}
    svg, why = diagram(spec, options.depth, _lint(text, file, graph))
    return {"format": fmt, "content": svg} if svg is not None else {"format": fmt, "error": why}


def _lint(text, file, graph):
    from ..lint.engine import lint_graph
    return lint_graph(text, file, graph, fold=False).findings


def fold_findings(per_layer):
    """Per-layer findings folded as `nnspec lint` folds them (one per rule and position)."""
    from ..lint.engine import _fold_instances, _order
    return sorted(_fold_instances(list(per_layer)), key=_order)


def network_params(module, text: str) -> list[dict]:
    """The `network name(p = default, …)` parameters: name and default as written."""
    if not module.headers:
        return []
    lines = text.split("\n")  # only \n ends a line (docs/architecture.md)
    out = []
    for p in module.headers[0].params:
        default = None
        if p.default is not None and getattr(p.default, "span", None) is not None:
            default = _slice(lines, p.default.span)
        out.append({"name": p.name, "default": default})
    return out


def _slice(lines: list[str], span) -> str | None:
    if span.line != span.end_line or span.line > len(lines):
        return None
    return lines[span.line - 1][span.column - 1:span.end_column - 1]


@lru_cache(maxsize=1)
def language() -> dict:
    """What the page's highlighter colours: the grammar's keywords (every quoted word of
    grammar/nnspec.lark), its token patterns and the registry's op names. Read here so the
    JavaScript holds no copy of either."""
    from ..ops import USER_OPS
    from ..parser import grammar_text
    text = grammar_text()
    words = sorted(set(re.findall(r'"([a-z]+)"', text)))
    # the lexer's regular expressions, which JavaScript reads as they are written
    patterns = dict(re.findall(r"^(LABEL|NAME|SHAPE|FLOAT|INT|STRING|COMMENT)(?:\.\d+)?:\s*/(.*)/\s*$",
                               text, re.M))
    return {"keywords": words, "ops": list(USER_OPS), "patterns": patterns}
