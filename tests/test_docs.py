"""The documentation is executable.

- Every ```nn block of docs/language.md and docs/json.md is a complete spec that loads; a
  block marked ```nn error must fail, and when a ```text block follows it, that is exactly
  the rendered error.
- The generated tables of docs/language.md (every op of the registry, every train key and
  choice) match nnspec/ops.py and nnspec/config.py; NNSPEC_UPDATE_GOLDEN=1 rewrites them.
- The JSON example of docs/json.md is what `nnspec table --format json` prints for its spec.
"""

from __future__ import annotations

import json
import re

import pytest
from conftest import ROOT, UPDATE

import nnspec
from nnspec import config, report
from nnspec.ops import OPS, REQUIRED, USER_OPS, _lit, user_ops

LANGUAGE = ROOT / "docs" / "language.md"
JSON_DOC = ROOT / "docs" / "json.md"
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)


def blocks(path):
    """(info string, body, line number) of every fenced block, in order."""
    text = path.read_text("utf-8")
    return [(m.group(1).strip(), m.group(2), text.count("\n", 0, m.start()) + 1)
            for m in FENCE.finditer(text)]


def examples(path):
    out = []
    found = blocks(path)
    for i, (info, body, line) in enumerate(found):
        if info.split()[:1] != ["nn"]:
            continue
        expected = None
        if "error" in info.split() and i + 1 < len(found) and found[i + 1][0] == "text":
            expected = found[i + 1][1]
        out.append(pytest.param(info, body, expected, id=f"{path.name}:{line}"))
    return out


@pytest.mark.parametrize("info, body, expected", examples(LANGUAGE) + examples(JSON_DOC))
def test_doc_example(info, body, expected):
    if "error" in info.split():
        with pytest.raises(nnspec.SpecError) as err:
            nnspec.loads(body)
        rendered = err.value.render()
        if expected is not None and rendered != expected and UPDATE:
            for path in (LANGUAGE, JSON_DOC):
                text = path.read_text("utf-8")
                old = f"```{info}\n{body}```\n\n```text\n{expected}```"
                if old in text:
                    path.write_text(text.replace(old, old.replace(f"```text\n{expected}", f"```text\n{rendered}")))
            return
        if expected is not None:
            assert rendered == expected
        return
    spec = nnspec.loads(body)
    spec.analyze()


def test_language_doc_has_examples_for_every_construct():
    bodies = "\n".join(body for info, body, _ in blocks(LANGUAGE) if info.startswith("nn"))
    for construct in ("network ", "input ", "block ", "repeat ", " as i", "if ", "else", "add {",
                      "concat {", "mul {", "identity", "in.c", "in.h", "-> ", "train {", "# ", "\\\n"):
        assert construct in bodies, construct
    used = set(re.findall(r"\b([a-z_][a-z0-9_]*)\b(?=\(|\s|$)", bodies))
    missing = [op for op in USER_OPS if op not in used]
    assert not missing, f"ops without an example in docs/language.md: {missing}"


# ---- generated tables ---------------------------------------------------------------------------

def signature(name: str, args) -> str:
    parts = [a.name if a.default is REQUIRED else f"{a.name}={_lit(a.default)}" for a in args]
    return f"{name}({', '.join(parts)})" if parts else name


def ops_table() -> str:
    lines = ["| op | arguments | kind | what it does |", "|---|---|---|---|"]
    for name in user_ops():  # read at call time: an op registered later is documented too
        op = OPS[name]
        lines.append(f"| `{name}` | `{signature(name, op.args)}` | {op.category} | {op.doc} |")
    return "\n".join(lines)


def train_table() -> str:
    kinds = {"float": "a number", "count": "a positive integer", "prob": "a number in [0, 1]",
             "nonneg": "an integer ≥ 0"}
    lines = ["| key | value | choices and their options (defaults) |", "|---|---|---|"]
    for key in config.KEYS:
        if key in config._SCALARS:
            lines.append(f"| `{key}` | {kinds[config._SCALARS[key]]} | |")
        elif key in config._CHOICE or key in config._LISTS:
            table = config._CHOICE.get(key) or config._LISTS[key]
            value = "one choice" if key in config._CHOICE else "a comma-separated list of choices"
            lines.append(f"| `{key}` | {value} | "
                         + ", ".join(f"`{signature(n, a)}`" for n, a in table.items()) + " |")
        elif key in config._KWARGS:
            args = config._KWARGS[key]
            lines.append(f"| `{key}` | named values | `" + ", ".join(
                a.name if a.default is REQUIRED else f"{a.name}={_lit(a.default)}" for a in args) + "` |")
        elif key == "init":
            lines.append("| `init` | a scheme, or a quoted layer pattern and a scheme | "
                         + ", ".join(f"`{signature(n, a)}`" for n, a in config.INITS.items()) + " |")
        elif key == "class_weights":
            lines.append("| `class_weights` | a choice, or one positive weight per class in parentheses | "
                         + ", ".join(f"`{n}`" for n in config.CLASS_WEIGHTS) + ", `(1, 10)` |")
        elif key == "freeze":
            lines.append('| `freeze` | quoted layer-name patterns, comma-separated | `"features"`, `"layer1.*"`, `"fc?"` |')
        else:  # a key added to config.KEYS without documentation
            lines.append(f"| `{key}` | ? | |")
    return "\n".join(lines)


GENERATED = {"ops": ops_table, "train": train_table}


@pytest.mark.parametrize("section", sorted(GENERATED))
def test_generated_tables_are_in_sync(section):
    text = LANGUAGE.read_text("utf-8")
    pattern = re.compile(rf"(<!-- BEGIN generated: {section} [^\n]*-->\n)(.*?)(<!-- END generated: {section} -->)", re.DOTALL)
    m = pattern.search(text)
    assert m, f"docs/language.md lost its generated '{section}' section markers"
    want = GENERATED[section]() + "\n"
    if UPDATE and m.group(2) != want:
        LANGUAGE.write_text(text[:m.start(2)] + want + text[m.end(2):], "utf-8")
        return
    assert m.group(2) == want, (f"the {section} table of docs/language.md is out of date: "
                                "run NNSPEC_UPDATE_GOLDEN=1 python -m pytest tests/test_docs.py")
    assert "| ? |" not in want, "document the new train key in tests/test_docs.py:train_table"


# ---- docs/json.md --------------------------------------------------------------------------------

def test_json_doc_example_is_real_output():
    found = blocks(JSON_DOC)
    spec_body = next(body for info, body, _ in found if info == "nn")
    json_body = next(body for info, body, _ in found if info == "json")
    an = nnspec.loads(spec_body, file="tiny.nn").analyze()
    assert json.loads(json_body) == json.loads(report.to_json(an))
    assert json_body == report.to_json(an) + "\n"


def test_json_doc_lists_every_key():
    text = JSON_DOC.read_text("utf-8")
    doc = report.to_dict(nnspec.load(ROOT / "specs" / "resnet18.nn").analyze())
    keys = set(doc) | set(doc["layers"][0]) | set(doc["totals"])
    for key in keys:
        assert f"`{key}`" in text, key
