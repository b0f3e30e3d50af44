"""docs/lint-rules.md is generated from the catalogue; this keeps it in sync.

Regenerate with:  nnspec rules --format markdown > docs/lint-rules.md
"""

import pathlib

from nnspec.lint import formats, ordered

DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "lint-rules.md"


def test_lint_rules_doc_is_in_sync():
    assert DOC.read_text("utf-8") == formats.rules_markdown(), \
        "docs/lint-rules.md is stale: run `nnspec rules --format markdown > docs/lint-rules.md`"


def test_every_rule_has_a_section():
    text = DOC.read_text("utf-8")
    for r in ordered():
        assert f"### {r.code} `{r.name}`" in text
