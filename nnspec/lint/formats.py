"""Lint results and the rule catalogue as text, JSON, SARIF 2.1.0 and Markdown.

Pure functions from data to strings; nnspec/lint/commands.py prints them.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

from ..errors import Diagnostic, render
from .catalogue import CATEGORY_TITLES, RULES, Rule, ordered

JSON_VERSION = 1
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_SARIF_LEVEL = {"error": "error", "warning": "warning", "info": "note"}


# ---- findings ---------------------------------------------------------------------------------

def summary(results) -> dict:
    out = {"files": len(results), "error": 0, "warning": 0, "info": 0,
           "suppressed": sum(r.suppressed for r in results)}
    for r in results:
        for d in r.findings:
            out[d.severity] += 1
    return out


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def to_text(results) -> str:
    """Every finding rendered like a compiler diagnostic, then one summary line."""
    parts = []
    for r in results:
        for d in r.findings:
            # a finding in a file the spec `use`s names that file: no wrong source line under it
            parts.append(render(d, r.source if d.span is None or d.span.file == r.file else None))
    s = summary(results)
    counts = [_plural(s["error"], "error"), _plural(s["warning"], "warning"), f"{s['info']} info"]
    found = sum(s[k] for k in ("error", "warning", "info"))
    tail = f" ({s['suppressed']} suppressed)" if s["suppressed"] else ""
    if found:
        line = f"Found {_plural(found, 'finding')} in {_plural(s['files'], 'file')}: {', '.join(counts)}{tail}."
    else:
        line = f"All clean: {_plural(s['files'], 'file')} checked{tail}."
    return "\n".join(parts) + line + "\n"


def _span(d: Diagnostic) -> dict | None:
    s = d.span
    if s is None:
        return None
    return {"file": s.file, "line": s.line, "column": s.column, "end_line": s.end_line,
            "end_column": s.end_column}


def finding_dict(d: Diagnostic) -> dict:
    return {
        "code": d.code, "name": d.name, "severity": d.severity, "message": d.message,
        "location": _span(d), "help": d.help, "notes": list(d.notes),
        "chain": [{"instance": f.instance, "block": f.block,
                   "defined": {"line": f.defined.line, "column": f.defined.column},
                   "call": {"line": f.call.line, "column": f.call.column}} for f in d.chain],
    }


def to_json(results) -> str:
    """{"version", "files": [{"file", "parse_error", "suppressed", "findings": [...]}], "summary"}"""
    doc = {"version": JSON_VERSION,
           "files": [{"file": r.file, "parse_error": r.fatal, "suppressed": r.suppressed,
                      "findings": [finding_dict(d) for d in r.findings]} for r in results],
           "summary": summary(results)}
    return json.dumps(doc, indent=2, ensure_ascii=False)


def _uri(path: str) -> str:
    """A repository-relative, forward-slash path when the file is under the working directory."""
    p = Path(path)
    try:
        rel = p.resolve().relative_to(Path(os.getcwd()).resolve())
        return rel.as_posix()
    except (ValueError, OSError):
        return p.resolve().as_uri() if p.is_absolute() else p.as_posix()


def sarif_rule(r: Rule) -> dict:
    return {
        "id": r.code,
        "name": r.name,
        "shortDescription": {"text": r.summary},
        "fullDescription": {"text": f"{r.summary} {r.why}"},
        "help": {"text": f"{r.fix}\n\nBad:\n{r.bad}\nGood:\n{r.good}", "markdown": rule_markdown(r)},
        "defaultConfiguration": {"level": _SARIF_LEVEL[r.severity]},
        "properties": {"tags": [r.category] + (["heuristic"] if r.heuristic else [])},
    }


def to_sarif(results, version: str = "") -> str:
    """SARIF 2.1.0 as GitHub code scanning reads it: the rules in tool.driver.rules, one
    result per finding with ruleId, ruleIndex, level, message and a physical location."""
    rules = ordered()
    index = {r.code: i for i, r in enumerate(rules)}
    out = []
    for res in results:
        for d in res.findings:
            item = {"ruleId": d.code, "ruleIndex": index[d.code] if d.code in index else None,
                    "level": _SARIF_LEVEL[d.severity],
                    "message": {"text": d.message + (f"\nhelp: {d.help}" if d.help else "")}}
            if item["ruleIndex"] is None:
                del item["ruleIndex"]
            loc_file = d.span.file if d.span else res.file
            region = None
            if d.span is not None:
                region = {"startLine": d.span.line, "startColumn": d.span.column,
                          "endLine": d.span.end_line, "endColumn": d.span.end_column}
            phys = {"artifactLocation": {"uri": _uri(loc_file)}}
            if region:
                phys["region"] = region
            item["locations"] = [{"physicalLocation": phys}]
            related = []
            for k, f in enumerate(d.chain[::-1]):
                related.append({"id": k, "message": {"text": f.describe()},
                                "physicalLocation": {"artifactLocation": {"uri": _uri(loc_file)},
                                                     "region": {"startLine": f.call.line,
                                                                "startColumn": f.call.column}}})
            if related:
                item["relatedLocations"] = related
            out.append(item)
    doc = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "nnspec", "semanticVersion": version or None,
                                "rules": [sarif_rule(r) for r in rules]}},
            "columnKind": "unicodeCodePoints",
            "results": out,
        }],
    }
    if not version:
        del doc["runs"][0]["tool"]["driver"]["semanticVersion"]
    return json.dumps(doc, indent=2, ensure_ascii=False)


# ---- the catalogue -----------------------------------------------------------------------------

def _wrap(text: str) -> str:
    return textwrap.fill(text, width=88, break_long_words=False, break_on_hyphens=False)


def rule_text(r: Rule) -> str:
    """`nnspec lint --explain CODE`: the rule's record, wrapped to 88 columns."""
    out = [f"{r.code} {r.name} ({r.severity}, {r.category})", "", _wrap(r.summary), "",
           _wrap(f"Why: {r.why}")]
    if r.false_positives:
        out += ["", _wrap(f"False positives: {r.false_positives}")]
    if r.options:
        opts = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in r.options.items())
        out += ["", f"The examples are linted with {opts}."]
    out += ["", "Bad:", _indent(r.bad), "Good:", _indent(r.good), _wrap(f"Fix: {r.fix}")]
    if r.found_by == "checker":
        out += ["", "Found by the checker (parser and expander): `nnspec check` reports it too."]
    elif r.found_by != "lint":
        out += ["", _wrap(f"Found by the {r.found_by} when it builds the model, not by "
                          "`nnspec check` or `nnspec lint`.")]
    return "\n".join(out) + "\n"


def _indent(text: str) -> str:
    return "".join(f"    {line}\n" if line else "\n" for line in text.splitlines())


def rules_text() -> str:
    """`nnspec rules`: one line per rule."""
    return "".join(f"{r.code}  {r.severity:<7}  {r.category:<32}  {r.name}\n" for r in ordered())


def rules_json() -> str:
    return json.dumps({"version": JSON_VERSION, "rules": [
        {"code": r.code, "name": r.name, "severity": r.severity, "category": r.category,
         "summary": r.summary, "why": r.why, "bad": r.bad, "good": r.good, "fix": r.fix,
         "false_positives": r.false_positives or None, "options": dict(r.options) or None}
        for r in ordered()]}, indent=2, ensure_ascii=False)


def rule_markdown(r: Rule, level: str = "###") -> str:
    out = [f"{level} {r.code} `{r.name}`", "", f"*{r.severity}*. {r.summary}", "",
           f"**Why is this bad?** {r.why}", ""]
    if r.false_positives:
        out += [f"**False positives.** {r.false_positives}", ""]
    if r.options:
        opts = " ".join(f"`--{k.replace('_', '-')} {v}`" for k, v in r.options.items())
        out += [f"The examples are linted with {opts}.", ""]
    if r.found_by not in ("lint", "checker"):
        out += [f"Found by the {r.found_by} when it builds the model, not by lint.", ""]
    out += ["Example:", "", "```nn", r.bad.rstrip("\n"), "```", "", "Use instead:", "", "```nn",
            r.good.rstrip("\n"), "```", "", f"**Fix.** {r.fix}", ""]
    return "\n".join(out)


def rules_markdown() -> str:
    """docs/lint-rules.md (generated: `nnspec rules --format markdown > docs/lint-rules.md`)."""
    rules = ordered()
    counts = {s: sum(1 for r in rules if r.severity == s) for s in ("error", "warning", "info")}
    out = ["# nnspec lint rules", "",
           "<!-- Generated from nnspec/lint by `nnspec rules --format markdown`; do not edit. "
           "tests/test_lint_docs.py keeps it in sync. -->", "",
           f"{len(rules)} rules: {counts['error']} errors, {counts['warning']} warnings, "
           f"{counts['info']} info. `nnspec lint --explain CODE` prints one of them; "
           "silence a finding on its line with `# nnspec: allow CODE -- reason`.", "",
           "| code | name | severity | what |", "|---|---|---|---|"]
    for r in rules:
        what = r.summary.replace("|", "\\|")
        out.append(f"| [{r.code}](#{r.code.lower()}-{r.name}) | `{r.name}` | {r.severity} | {what} |")
    out.append("")
    category = None
    for r in rules:
        if r.category != category:
            category = r.category
            out += [f"## {CATEGORY_TITLES[category]}", ""]
        out.append(rule_markdown(r))
    return "\n".join(out).rstrip("\n") + "\n"


__all__ = ["RULES", "to_text", "to_json", "to_sarif", "rules_text", "rules_json",
           "rules_markdown", "rule_text", "summary"]
