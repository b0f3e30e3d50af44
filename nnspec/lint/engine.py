"""Lint one spec: read it, run the checker, then every selected rule, then the suppressions.

The result is data (`LintResult`: diagnostics with spans and block-instance chains); the
CLI renders it. A spec that fails the checker (NN0xx) is reported with the checker's
errors only: the rules need the typed graph.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from .. import parser
from ..report import all_digits
from ..errors import Diagnostic, SpecError
from ..expand import expand
from . import registry, suppress  # noqa: F401  (registry: every rule is registered)
from .catalogue import RANK, RULES, matches, ordered
from .context import Context

FATAL = ("NN001", "NN002")  # the file could not even be parsed: exit status 2


@dataclass
class LintResult:
    file: str
    source: str | None
    findings: list[Diagnostic] = field(default_factory=list)
    suppressed: int = 0
    fatal: bool = False  # a parse error (or unreadable file): nothing else could be checked

    def count(self, severity: str) -> int:
        return sum(1 for d in self.findings if d.severity == severity)

    def worst(self) -> int:
        """The rank of the most severe finding (-1 if none)."""
        return max((RANK[d.severity] for d in self.findings), default=-1)


class Selection:
    """`--select` / `--ignore`: code prefixes or rule names (ruff's convention: the most
    specific match wins, so `--select NN2 --ignore NN203` keeps NN201)."""

    def __init__(self, select: Iterable[str] | None = None, ignore: Iterable[str] | None = None):
        self.select = [s for s in (select or ()) if s]
        self.ignore = [s for s in (ignore or ()) if s]

    def __call__(self, code: str) -> bool:
        r = RULES.get(code)
        if r is None:
            return True
        best_sel = max((_specificity(s, r) for s in self.select if matches(s, r)), default=-1)
        best_ign = max((_specificity(s, r) for s in self.ignore if matches(s, r)), default=-1)
        if self.select and best_sel < 0:
            return False
        return best_ign < 0 or best_sel > best_ign


def _specificity(selector: str, r) -> int:
    s = selector.strip()
    if s.upper() == "ALL":
        return 0
    return 10 if s.lower() == r.name else len(s)


def _named(d: Diagnostic) -> Diagnostic:
    r = RULES.get(d.code)
    return dataclasses.replace(d, name=r.name) if r is not None and not d.name else d


def lint_source(source: str, file: str = "<string>", *, options: Mapping | None = None,
                selection: Selection | None = None, network_args: Mapping | None = None,
                fold: bool = True) -> LintResult:
    """Lint spec text. `options`: {"memory_budget": "8GB"}. `fold=False` keeps one finding
    per layer instead of one per rule and source position (a diagram marks every instance).

    >>> r = lint_source("input 64\\nlinear(32)\\nlinear(10)\\n")
    >>> [(d.code, d.name) for d in r.findings]
    [('NN301', 'linear-layers-collapse')]
    """
    sel = selection or Selection()
    try:
        module = parser.parse(source, file)
    except SpecError as e:
        return LintResult(file, source, [_named(d) for d in e.diagnostics], 0, True)
    try:
        graph = expand(module, dict(network_args or {}))
    except SpecError as e:
        return LintResult(file, source, [_named(d) for d in e.diagnostics])
    return lint_graph(source, file, graph, options=options, selection=sel, fold=fold)


def lint_graph(source: str, file: str, graph, *, options: Mapping | None = None,
               selection: Selection | None = None, fold: bool = True, analysis=None) -> LintResult:
    """Lint a spec already parsed and expanded (`graph.module` is its syntax tree): what
    `nnspec serve` runs after its own analysis, so the text is parsed once. `analysis`, if
    given, is the graph's at the batch rules read (the train section's, else 1; float32)."""
    sel = selection or Selection()
    module = graph.module
    cx = Context(graph, module, options)
    if analysis is not None:
        cx.analysis = analysis  # the cached property, already computed
    raw: list[Diagnostic] = []
    # A spec's sizes can pass Python's 4,300-digit guard on int -> str (2^14,500 channels):
    # messages write their measured values exactly, as the table does.
    with all_digits():
        for r in ordered():
            if r.check is None or not sel(r.code):
                continue
            for h in r.check(cx):
                raw.append(Diagnostic(r.code, h.message, h.span, r.severity, h.help or r.fix,
                                      h.notes, h.chain, r.name))
    sups = suppress.scan(source, file)
    kept, dropped = suppress.apply(raw, sups)
    kept = (_fold_instances(kept) if fold else kept) + suppress.meta_findings(sups, sel)
    kept.sort(key=_order)
    return LintResult(file, source, kept, dropped)


def _fold_instances(findings: list[Diagnostic]) -> list[Diagnostic]:
    """One finding per rule and source position: a block instantiated 36 times reports a
    problem inside it once, naming the other instances in a note."""
    groups: dict[tuple, list[Diagnostic]] = {}
    for d in findings:
        # the same call in a block or a `repeat` is one source position: one finding
        key = (d.code, d.span) if d.span is not None else (d.code, d.span, d.message)
        groups.setdefault(key, []).append(d)
    out = []
    for same in groups.values():
        first = same[0]
        if len(same) > 1:
            others = [d.chain[-1].instance for d in same[1:] if d.chain]
            if others:
                shown = ", ".join(others[:4]) + (f", … ({len(others)} more in all)" if len(others) > 4 else "")
                note = f"also in {shown}"
            else:
                note = f"the same for {len(same) - 1:,} more layer{'s' * (len(same) > 2)} made by this line"
            first = dataclasses.replace(first, notes=first.notes + (note,))
        out.append(first)
    return out


def lint_file(path, **kw) -> LintResult:
    name = str(path)
    try:
        source = parser.read_source(path)
    except SpecError as e:
        return LintResult(name, None, [_named(d) for d in e.diagnostics], 0, True)
    return lint_source(source, name, **kw)


def _order(d: Diagnostic):
    s = d.span
    return (s.line if s else 0, s.column if s else 0, d.code)
