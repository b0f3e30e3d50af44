"""Inline suppression comments and the NN9xx rules about them.

    conv(8, 1, stride=2)   # nnspec: allow NN204 -- subsampling on purpose, as in the paper
    # nnspec: allow NN201, NN204 -- one comment line applies to the next line of code

A trailing comment silences the findings of its own line; a comment on a line of its own
silences the next line of code. A finding inside a block instance can also be silenced at
the line that instantiates the block (every instance: at the line inside the block). The
reason after `--` is required: a suppression without one is itself a finding (NN901).

>>> [s.codes for s in scan("relu  # nnspec: allow NN302, NN301 -- why")]
[('NN302', 'NN301')]
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from ..errors import Diagnostic, Span
from .catalogue import document, find_rule

_ALLOW = re.compile(r"nnspec\s*:\s*allow\b(?P<body>.*)$")


@dataclass
class Suppression:
    span: Span                   # the comment
    codes: tuple[str, ...]       # as written
    reason: str
    targets: frozenset[int]      # source lines it applies to
    used: set[str] = field(default_factory=set)


def _comment_start(line: str) -> int | None:
    """Column (0-based) of a `#` that starts a comment (not inside a string)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            return i
    return None


def scan(source: str, file: str = "<string>") -> list[Suppression]:
    """The suppression comments of a spec. Lines are what the parser counts: only `\n` ends
    one (a form feed or U+2028 in a comment does not), so a comment applies to the line its
    diagnostics name."""
    if "nnspec" not in source:
        return []
    lines = [ln[:-1] if ln.endswith("\r") else ln for ln in source.split("\n")]
    out = []
    next_code = None  # line number -> the next line of code after it (computed once, backwards)
    for no, text in enumerate(lines, 1):
        if "nnspec" not in text:
            continue
        col = _comment_start(text)
        if col is None:
            continue
        m = _ALLOW.search(text[col + 1:].strip())
        if not m:
            continue
        body = m.group("body")
        codes_text, _, reason = body.partition("--")
        codes = tuple(c for c in re.split(r"[,\s]+", codes_text.strip()) if c)
        own_line = not text[:col].strip()
        targets = {no}
        if own_line:  # the next line of code
            if next_code is None:
                next_code = _next_code_lines(lines)
            targets.add(next_code[no])
        span = Span(file, no, col + 1, no, len(text) + 1)
        out.append(Suppression(span, codes, reason.strip(), frozenset(targets)))
    return out


def _next_code_lines(lines: list[str]) -> list[int]:
    """For each line number k (1-based), the first line after k that holds code."""
    out = [0] * (len(lines) + 2)
    nxt = len(lines) + 1
    for k in range(len(lines), 0, -1):
        out[k] = nxt
        text = lines[k - 1].strip()
        if text and not text.startswith("#"):
            nxt = k
    return out


def apply(findings: list[Diagnostic], sups: list[Suppression]) -> tuple[list[Diagnostic], int]:
    """Drop suppressed findings; returns (kept, number suppressed) and marks what was used."""
    kept, dropped = [], 0
    by_line: dict[int, list[Suppression]] = {}
    for s in sups:
        for t in s.targets:
            by_line.setdefault(t, []).append(s)
    order = {id(s): i for i, s in enumerate(sups)}
    for d in findings:
        lines = set()
        if d.span is not None:
            lines.add(d.span.line)
        lines |= {f.call.line for f in d.chain}
        candidates = sorted({id(s): s for ln in lines for s in by_line.get(ln, ())}.values(),
                            key=lambda s: order[id(s)])  # in source order, as before
        hit = None
        for s in candidates:
            for c in s.codes:
                r = find_rule(c)
                if r is not None and r.code == d.code:
                    hit = (s, c)
                    break
            if hit:
                break
        if hit:
            hit[0].used.add(hit[1])
            dropped += 1
        else:
            kept.append(d)
    return kept, dropped


def meta_findings(sups: list[Suppression], enabled) -> list[Diagnostic]:
    """NN901–NN903 for the suppression comments; `enabled(code)` says if a rule is selected."""
    out, unknown = [], set()
    for s in sups:
        if s.codes and not s.reason and enabled("NN901"):
            out.append(_diag("NN901", f"suppression of {', '.join(s.codes)} without a reason", s.span,
                             help="say why after `--`: `# nnspec: allow NN204 -- as in the paper`"))
        if not s.codes and enabled("NN902"):
            out.append(_diag("NN902", "`nnspec: allow` names no rule", s.span,
                             help="name the codes: `# nnspec: allow NN204 -- reason`"))
        for c in s.codes:
            r = find_rule(c)
            if r is None:
                if enabled("NN902"):
                    unknown.add(c)
                    hint = _suggest(c) if len(unknown) <= _MAX_SUGGESTED else None
                    out.append(_diag("NN902", f"'{c}' is not a rule code or name", s.span,
                                     help=hint or "`nnspec rules` lists them"))
            elif c not in s.used and enabled(r.code) and enabled("NN903") and r.check is not None:
                out.append(_diag("NN903", f"nothing to suppress: {r.code} ({r.name}) does not "
                                          f"fire here", s.span, help="remove the suppression"))
    return out


_MAX_SUGGESTED = 100  # distinct unknown names per file that get a did-you-mean (a few ms each)


@functools.lru_cache(maxsize=256)
def _suggest(word: str) -> str | None:
    """The closest rule code or name (difflib: milliseconds, so a word repeated in 20,000
    comments is matched once)."""
    from ..errors import did_you_mean
    from .catalogue import RULES
    return did_you_mean(word, list(RULES) + [x.name for x in RULES.values()])


def _diag(code: str, message: str, span: Span, help: str | None = None) -> Diagnostic:
    r = find_rule(code)
    return Diagnostic(code, message, span, r.severity, help, (), (), r.name)


document(
    "NN901", "suppression-without-reason", "warning",
    summary="A `# nnspec: allow CODE` comment without a reason after `--`.",
    why="A silenced finding without its reason cannot be reviewed: the next reader cannot "
        "tell a deliberate choice from a swept-away bug.",
    bad="""
        input 64
        linear(32) relu relu  # nnspec: allow NN302
        linear(10)
    """,
    good="""
        input 64
        linear(32) relu relu  # nnspec: allow NN302 -- kept to match the reference weights
        linear(10)
    """,
    fix="Add the reason: `# nnspec: allow NN302 -- why this is intended`.",
)

document(
    "NN902", "suppression-of-unknown-rule", "warning",
    summary="A suppression comment that names no rule, or a code or name that is not in the "
            "catalogue.",
    why="It silences nothing — usually a typo in the code, so the finding it was meant for "
        "is still there (or the comment is stale).",
    bad="""
        input 64
        linear(32) relu  # nnspec: allow NN3O2 -- typo: letter O
        linear(10)
    """,
    good="""
        input 64
        linear(32) relu
        linear(10)
    """,
    fix="Use a code from `nnspec rules`, or remove the comment.",
)

document(
    "NN903", "unused-suppression", "info",
    summary="A suppression for a rule that does not fire on that line.",
    why="The problem was fixed (or moved) and the comment stayed: it would silently hide the "
        "next, unrelated finding of that rule on the line.",
    bad="""
        input 64
        linear(32) relu  # nnspec: allow NN302 -- relu twice on purpose
        linear(10)
    """,
    good="""
        input 64
        linear(32) relu
        linear(10)
    """,
    fix="Remove the comment.",
    false_positives="Findings that depend on options (`--memory-budget`) or on `--set` values "
                    "may fire in another run; this is info for that reason.",
)
