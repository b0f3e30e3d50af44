"""docs/experiments.md is real output: every `<!-- output from "START": CMD -->` marker is
followed by a ```text block that is exactly what CMD prints (from its first line starting with
START, without the per-epoch progress lines), and every `<!-- run: CMD -->` is a command the
later ones need. The commands run in a fresh folder (their runs/ go there);
NNSPEC_UPDATE_GOLDEN=1 rewrites the blocks."""

from __future__ import annotations

import re
import shlex

import pytest
from conftest import ROOT, UPDATE

pytest.importorskip("torch")

DOC = ROOT / "docs" / "experiments.md"
MARK = re.compile(r'<!-- (?:run|output from "(?P<start>[^"]*)"): (?P<cmd>nnspec [^\n]*?) -->\n'
                  r'(?:```text\n(?P<body>.*?)```\n)?', re.DOTALL)
PROGRESS = re.compile(r"^(.*: )?done in |epoch \d+/\d+ |^training on |^resuming ")


def sections():
    text = DOC.read_text("utf-8")
    found = {}
    for m in MARK.finditer(text):
        title = text[:m.start()].rsplit("\n## ", 1)[-1].split("\n", 1)[0]
        found.setdefault(title, []).append(m)
    return found


def shown(out: str, start: str) -> str:
    lines = out.splitlines(keepends=True)
    first = next((i for i, line in enumerate(lines) if line.startswith(start)), None)
    assert first is not None, f"no line starts with {start!r} in:\n{out}"
    return "".join(line for line in lines[first:] if not PROGRESS.search(line))


@pytest.mark.slow  # about a minute: 14 training runs and evaluations
@pytest.mark.parametrize("title", sorted(sections()))
def test_the_experiment_prints_what_the_doc_shows(title, tmp_path, monkeypatch, capsys):
    from nnspec.cli import main
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    for m in sections()[title]:
        argv = shlex.split(m["cmd"])[1:]
        capsys.readouterr()
        assert main(argv) == 0, capsys.readouterr().err
        if m["start"] is None:
            continue
        got = shown(capsys.readouterr().out, m["start"])
        if UPDATE and got != m["body"]:
            text = DOC.read_text("utf-8")
            DOC.write_text(text.replace(m.group(0), m.group(0)[:m.group(0).index("-->") + 4]
                                        + f"```text\n{got}```\n", 1), "utf-8")
            continue
        assert got == m["body"], f"{m['cmd']}: the output differs from docs/experiments.md"


def test_every_figure_of_the_doc_exists_and_has_its_script():
    text = DOC.read_text("utf-8")
    figures = re.findall(r"\]\((figures/folds[^)]*\.png)\)", text)
    assert len(figures) == 4
    script = (ROOT / "docs" / "figures" / "make_folds.py").read_text("utf-8")
    for f in figures:
        assert (ROOT / "docs" / f).is_file() and f.rsplit("/", 1)[1] in script
