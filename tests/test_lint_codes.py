"""One table of checker codes, one list of rule modules.

- Every NN0xx code written anywhere in nnspec/ (raised by the parser, expander, train
  section or a backend) is a row of `nnspec.errors.CODES`, and every row is raised somewhere:
  a new code without its documentation fails here.
- Every row is documented, and its examples are tests: `bad` raises exactly that code
  where the row says it is found, `good` passes.
- The lint catalogue imports no rule module; nnspec/lint/registry.py lists every module that
  registers rules, and a module missing from that list fails here.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys

import pytest
from conftest import ROOT

import nnspec
from nnspec.errors import CODES, SpecError
from nnspec.lint import RULES, registry

PACKAGE = ROOT / "nnspec"
LINT = PACKAGE / "lint"
CODE_RE = re.compile(r"\bNN0\d\d\b")


def codes_in_source() -> dict[str, list[str]]:
    """Every NN0xx written in nnspec/**.py -> the files that write it."""
    found: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for code in set(CODE_RE.findall(path.read_text("utf-8"))):
            found.setdefault(code, []).append(str(path.relative_to(ROOT)))
    return found


def test_every_code_in_the_source_is_in_the_table():
    missing = {c: where for c, where in codes_in_source().items() if c not in CODES}
    assert not missing, f"add a row to nnspec.errors.CODES for {missing}"


def test_every_code_in_the_table_is_raised_somewhere():
    errors_py = (PACKAGE / "errors.py").read_text("utf-8")
    table = errors_py[errors_py.index("CODES: dict"):]
    elsewhere = {c for c, where in codes_in_source().items() if where != ["nnspec/errors.py"]}
    # the table itself names each code once; it must be raised outside it too
    assert set(CODE_RE.findall(table)) == set(CODES)
    assert set(CODES) <= elsewhere, f"rows nothing raises: {sorted(set(CODES) - elsewhere)}"


@pytest.mark.parametrize("c", CODES.values(), ids=lambda c: c.code)
def test_row_is_documented(c):
    assert re.fullmatch(r"NN0\d\d", c.code)
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)+", c.name), "kebab-case, at least two words"
    assert c.severity == "error" and c.found_by in ("checker", "torch backend")
    for field in ("summary", "why", "bad", "good", "fix"):
        assert getattr(c, field).strip(), field
    assert c.bad != c.good
    assert sum(1 for x in CODES.values() if x.name == c.name) == 1
    r = RULES[c.code]  # the catalogue's record is this row
    assert (r.name, r.summary, r.fix) == (c.name, " ".join(c.summary.split()), " ".join(c.fix.split()))


def _raised(text: str, found_by: str) -> list[str]:
    try:
        spec = nnspec.loads(text)
        if found_by == "torch backend":
            pytest.importorskip("torch")
            nnspec.compile(spec)
    except SpecError as e:
        return sorted({d.code for d in e.diagnostics})
    return []


@pytest.mark.parametrize("c", CODES.values(), ids=lambda c: c.code)
def test_row_examples_where_the_code_is_raised(c):
    assert _raised(RULES[c.code].bad, c.found_by) == [c.code]
    assert _raised(RULES[c.code].good, c.found_by) == []


# ---- the catalogue and the list of rule modules ----------------------------------------------

def _registers_rules(path) -> bool:
    tree = ast.parse(path.read_text("utf-8"))
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
               and n.func.id in ("rule", "document") for n in ast.walk(tree))


def test_every_rule_module_is_on_the_list():
    on_disk = {p.stem for p in LINT.glob("rules_*.py")}
    on_disk |= {p.stem for p in LINT.glob("*.py") if p.stem != "catalogue" and _registers_rules(p)}
    # outside nnspec/lint: modules that register records through `catalogue.document`
    package = LINT.parent
    on_disk |= {".".join(("nnspec",) + p.relative_to(package).with_suffix("").parts)
                for p in package.rglob("*.py") if LINT not in p.parents
                and "catalogue.document(" in p.read_text("utf-8")}
    assert on_disk == set(registry.RULE_MODULES), \
        "nnspec/lint/registry.py RULE_MODULES must list exactly the modules that register rules"


def test_every_registered_rule_comes_from_a_listed_module_or_the_code_table():
    listed = {f"nnspec.lint.{m}" for m in registry.RULE_MODULES}
    for r in RULES.values():
        if r.check is not None:
            assert r.check.__module__ in listed, r.code
        else:
            assert r.code in CODES or r.code.startswith("NN9"), r.code


def test_catalogue_imports_no_rule_module():
    tree = ast.parse((LINT / "catalogue.py").read_text("utf-8"))
    imported = []
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom):
            imported.append("." * n.level + (n.module or ""))
            imported += ["." * n.level + a.name for a in n.names if n.level == 1 and not n.module]
        elif isinstance(n, ast.Import):
            imported += [a.name for a in n.names]
    lint_modules = [m for m in imported if m.startswith(".") and not m.startswith("..")
                    or m.startswith("nnspec.lint")]
    assert lint_modules == [], f"catalogue.py imports {lint_modules}"


def test_any_lint_module_imported_first_gives_the_whole_catalogue():
    # a fresh interpreter per entry point: no import order leaves a rule out or loops
    script = ("import importlib, sys; m = importlib.import_module(sys.argv[1]); "
              "from nnspec.lint.catalogue import RULES; print(len(RULES))")
    counts = set()
    for module in ("nnspec.lint.catalogue", "nnspec.lint.rules_spatial", "nnspec.lint.suppress"):
        out = subprocess.run([sys.executable, "-c", script, module], capture_output=True,
                             text=True, cwd=ROOT, check=True).stdout
        counts.add(int(out))
    assert counts == {len(RULES)}
