"""docs/experiments.md's L-BFGS and regulariser sections, and the README's L-BFGS table, are
the scripts' own output: each block after `<!-- output of: python SCRIPT … -->` must appear
verbatim in what that script prints."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from conftest import ROOT

pytest.importorskip("torch")

DOCS = (ROOT / "README.md", ROOT / "docs" / "experiments.md")
BLOCK = re.compile(r"<!-- output of: python ([^>]*?) -->\n```text\n(.*?)```", re.S)


def _blocks(script: str):
    found = [(path.name, body) for path in DOCS for cmd, body in BLOCK.findall(path.read_text("utf-8"))
             if cmd.split()[0] == script]
    assert found, script
    return found


def test_the_lbfgs_tables_are_what_the_benchmark_prints():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import lbfgs_vs_adam
    printed = lbfgs_vs_adam.table(lbfgs_vs_adam.compare("numpy", "fp64")) + "\n"
    blocks = _blocks("benchmarks/lbfgs_vs_adam.py")
    assert len(blocks) == 2   # README and docs/experiments.md
    for name, body in blocks:
        assert body == printed, name


@pytest.mark.slow  # five 40-epoch runs of a small CNN: about a minute on a quiet machine
def test_the_regulariser_table_is_what_make_regops_prints():
    p = subprocess.run([sys.executable, "docs/figures/make_regops.py", "--no-figures"], cwd=ROOT,
                       capture_output=True, text=True, timeout=1200)
    assert p.returncode == 0, p.stderr
    for name, body in _blocks("docs/figures/make_regops.py"):
        assert body in p.stdout, name


def test_the_pictures_of_the_sections_are_committed():
    text = (ROOT / "docs" / "experiments.md").read_text("utf-8")
    for png in ("regops_lbfgs.png", "regops_regularizers.png"):
        assert f"figures/{png}" in text and (ROOT / "docs" / "figures" / png).stat().st_size > 10_000
