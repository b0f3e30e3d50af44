"""The false-positive budget: clean, well-designed specs (every shipped spec and the realistic
set in tests/data/lint_clean/, written independently of the catalogue's examples) lint with no
warning or error, and with at most one info finding per spec on average."""

from __future__ import annotations

from pathlib import Path

import pytest

from nnspec.lint import lint_file

ROOT = Path(__file__).resolve().parent.parent
CLEAN = sorted((ROOT / "tests" / "data" / "lint_clean").glob("*.nn"))
SHIPPED = sorted((ROOT / "specs").glob("*.nn"))
ALL = SHIPPED + CLEAN


def test_the_budget_covers_enough_specs():
    assert len(CLEAN) >= 20
    assert len(SHIPPED) >= 10


@pytest.mark.parametrize("path", ALL, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_clean_spec_has_no_warning_or_error(path):
    r = lint_file(path)
    loud = [f"{d.code} {d.message}" for d in r.findings if d.severity != "info"]
    assert loud == []


def test_at_most_one_info_per_spec_on_average():
    infos = {p.name: [d.code for d in lint_file(p).findings if d.severity == "info"] for p in ALL}
    total = sum(len(v) for v in infos.values())
    assert total <= len(ALL), infos


# ---- the planted-mistake set: one mistake each, written as users write them ----------------------

PLANTED = sorted((ROOT / "tests" / "data" / "lint_planted").glob("*.nn"))


def test_the_planted_set_is_large_enough():
    assert len(PLANTED) >= 40


@pytest.mark.parametrize("path", PLANTED, ids=lambda p: p.name)
def test_planted_mistake_is_caught_at_warning_or_above(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# planted: ")
    want = first.split()[-1]
    loud = {d.code for d in lint_file(path).findings if d.severity in ("warning", "error")}
    assert want in loud, sorted(loud)
