"""Shared test helpers.

Golden files: `golden(name, text)` compares `text` with tests/golden/<name>.out (a name may
contain folders, e.g. "errors/missing_paren"; a name that already has a suffix, such as
"tables/alexnet.md", is used as is). Regenerate every golden file a run touches with

    NNSPEC_UPDATE_GOLDEN=1 python -m pytest tests/

and review the diff before committing it: a golden file is what a person reads.
"""

from __future__ import annotations

import difflib
import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
SPECS = ROOT / "specs"
UPDATE = os.environ.get("NNSPEC_UPDATE_GOLDEN") == "1"


def golden_path(name: str) -> pathlib.Path:
    path = GOLDEN / name
    return path if path.suffix else path.with_name(path.name + ".out")


def check_golden(name: str, text: str) -> None:
    """Assert that `text` equals the golden file `name` (or rewrite it under NNSPEC_UPDATE_GOLDEN=1)."""
    path = golden_path(name)
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text("utf-8") != text:
            path.write_text(text, "utf-8")
        return
    if not path.exists():
        pytest.fail(f"golden file {path.relative_to(ROOT)} is missing: run with NNSPEC_UPDATE_GOLDEN=1")
    want = path.read_text("utf-8")
    if text != want:
        diff = "".join(difflib.unified_diff(want.splitlines(True), text.splitlines(True),
                                            f"{path.relative_to(ROOT)} (golden)", "actual"))
        pytest.fail(f"output differs from {path.relative_to(ROOT)}; review, then regenerate with "
                    f"NNSPEC_UPDATE_GOLDEN=1\n{diff}", pytrace=False)


@pytest.fixture
def golden():
    """The golden-file comparison as a fixture: `golden("errors/x", text)`."""
    return check_golden
