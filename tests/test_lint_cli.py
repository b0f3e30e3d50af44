"""`nnspec lint` and `nnspec rules`: rendered output (golden files), JSON, SARIF, exit codes,
selection, suppression comments, and the shipped specs.

Golden files live in tests/golden/lint/; regenerate them with
    NNSPEC_UPDATE_GOLDEN=1 python -m pytest tests/test_lint_cli.py
and review the diff.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from nnspec.cli import main
from nnspec.lint import RULES, Selection, lint_file, lint_source, ordered
from nnspec.lint import formats

ROOT = pathlib.Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden" / "lint"
SPECS = sorted((ROOT / "specs").glob("*.nn"))
UPDATE = os.environ.get("NNSPEC_UPDATE_GOLDEN") == "1"


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_text(text, "utf-8")
    assert path.exists(), f"{path} is missing: run with NNSPEC_UPDATE_GOLDEN=1"
    assert text == path.read_text("utf-8"), f"{name} changed: review, then NNSPEC_UPDATE_GOLDEN=1"


def lint_fixture(name: str, **kw):
    rel = f"tests/golden/lint/{name}"
    return lint_source((ROOT / rel).read_text("utf-8"), rel, **kw)


# ---- golden files: what a person reads --------------------------------------------------------

@pytest.mark.parametrize("name", ["showcase", "broken", "syntax"])
def test_text_output_golden(name):
    check_golden(f"{name}.txt", formats.to_text([lint_fixture(f"{name}.nn")]))


def test_explain_golden():
    check_golden("explain-NN201.txt", formats.rule_text(RULES["NN201"]))


def test_rules_listing_golden():
    check_golden("rules.txt", formats.rules_text())


# ---- JSON and SARIF -----------------------------------------------------------------------------

def test_json_structure():
    res = [lint_fixture("showcase.nn"), lint_fixture("syntax.nn")]
    doc = json.loads(formats.to_json(res))
    assert doc["version"] == 1
    assert [f["file"] for f in doc["files"]] == ["tests/golden/lint/showcase.nn",
                                                 "tests/golden/lint/syntax.nn"]
    assert [f["parse_error"] for f in doc["files"]] == [False, True]
    f = doc["files"][0]
    assert f["suppressed"] == 1
    for item in f["findings"]:
        assert set(item) == {"code", "name", "severity", "message", "location", "help", "notes", "chain"}
        assert RULES[item["code"]].name == item["name"]
        assert set(item["location"]) == {"file", "line", "column", "end_line", "end_column"}
    chained = [i for i in f["findings"] if i["chain"]]
    assert chained and set(chained[0]["chain"][0]) == {"instance", "block", "defined", "call"}
    s = doc["summary"]
    assert s["files"] == 2 and s["suppressed"] == 1
    assert s["error"] + s["warning"] + s["info"] == sum(len(x["findings"]) for x in doc["files"])


def test_sarif_is_what_github_code_scanning_reads():
    res = [lint_fixture("showcase.nn"), lint_fixture("broken.nn")]
    doc = json.loads(formats.to_sarif(res, "0.1.0"))
    assert doc["version"] == "2.1.0" and doc["$schema"].endswith("sarif-2.1.0.json")
    (run,) = doc["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "nnspec"
    rules = driver["rules"]
    assert [r["id"] for r in rules] == [r.code for r in ordered()]
    for r in rules:
        assert r["name"] == RULES[r["id"]].name
        assert r["shortDescription"]["text"] and r["fullDescription"]["text"]
        assert r["help"]["text"] and r["help"]["markdown"]
        assert r["defaultConfiguration"]["level"] in ("error", "warning", "note")
    assert run["results"]
    for item in run["results"]:
        assert item["level"] in ("error", "warning", "note")
        assert rules[item["ruleIndex"]]["id"] == item["ruleId"]
        assert item["message"]["text"]
        (loc,) = item["locations"]
        phys = loc["physicalLocation"]
        assert phys["artifactLocation"]["uri"].startswith("tests/golden/lint/")
        region = phys["region"]
        assert region["startLine"] >= 1 and region["startColumn"] >= 1
        assert (region["endLine"], region["endColumn"]) >= (region["startLine"], region["startColumn"])
    levels = {i["ruleId"]: i["level"] for i in run["results"]}
    assert levels["NN507"] == "note" and levels["NN303"] == "error" and levels["NN022"] == "error"
    related = [i for i in run["results"] if "relatedLocations" in i]
    assert related and related[0]["relatedLocations"][0]["message"]["text"].startswith("in ")


def test_sarif_validates_against_its_required_fields():
    jsonschema = pytest.importorskip("jsonschema")
    # The parts of the SARIF 2.1.0 schema that GitHub code scanning requires.
    schema = {
        "type": "object", "required": ["version", "runs"],
        "properties": {"version": {"const": "2.1.0"}, "runs": {"type": "array", "items": {
            "type": "object", "required": ["tool", "results"],
            "properties": {
                "tool": {"type": "object", "required": ["driver"], "properties": {"driver": {
                    "type": "object", "required": ["name"], "properties": {"rules": {
                        "type": "array", "items": {"type": "object", "required": ["id"]}}}}}},
                "results": {"type": "array", "items": {
                    "type": "object", "required": ["message", "ruleId", "locations"],
                    "properties": {
                        "level": {"enum": ["none", "note", "warning", "error"]},
                        "message": {"type": "object", "required": ["text"]},
                        "locations": {"type": "array", "minItems": 1, "items": {
                            "type": "object", "required": ["physicalLocation"],
                            "properties": {"physicalLocation": {
                                "type": "object", "required": ["artifactLocation"],
                                "properties": {"region": {
                                    "type": "object", "required": ["startLine"],
                                    "properties": {"startLine": {"type": "integer", "minimum": 1},
                                                   "startColumn": {"type": "integer", "minimum": 1}}}}}}}}}}}}}}},
    }
    doc = json.loads(formats.to_sarif([lint_fixture("showcase.nn")], "0.1.0"))
    jsonschema.validate(doc, schema)


# ---- the command line ---------------------------------------------------------------------------

def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def write(tmp_path, text: str, name: str = "net.nn") -> str:
    p = tmp_path / name
    p.write_text(text, "utf-8")
    return str(p)


CLEAN = "input 64\nlinear(32) relu\nlinear(10)\n"
WARN = "input 3x7x7\nconv(8, 3, stride=3)\n"          # NN201 (warning)
INFO = "input 16x8x8\nconv(32, 1, stride=2)\n"         # NN204 (info)


def test_exit_codes(tmp_path, capsys):
    assert run_cli(capsys, "lint", write(tmp_path, CLEAN))[0] == 0
    assert run_cli(capsys, "lint", write(tmp_path, WARN))[0] == 1
    assert run_cli(capsys, "lint", write(tmp_path, WARN), "--fail-level", "error")[0] == 0
    assert run_cli(capsys, "lint", write(tmp_path, INFO))[0] == 0
    assert run_cli(capsys, "lint", write(tmp_path, INFO), "--fail-level", "info")[0] == 1
    broken = write(tmp_path, (GOLDEN / "broken.nn").read_text(), "broken.nn")
    assert run_cli(capsys, "lint", broken)[0] == 1            # checker errors are findings


def test_parse_error_is_rendered_and_exits_2(tmp_path, capsys):
    code, out, _ = run_cli(capsys, "lint", write(tmp_path, "input 3x8x8\nconv(8 3)\n"))
    assert code == 2
    assert "error[NN001] syntax-error" in out and "^" in out


def test_usage_errors_exit_2(tmp_path, capsys):
    assert run_cli(capsys, "lint")[0] == 2
    assert run_cli(capsys, "lint", str(tmp_path / "missing.nn"))[0] == 2
    assert run_cli(capsys, "lint", write(tmp_path, CLEAN), "--select", "NN999")[0] == 2
    assert run_cli(capsys, "lint", write(tmp_path, CLEAN), "--memory-budget", "lots")[0] == 2
    code, _, err = run_cli(capsys, "lint", "--explain", "window-does-not-fitt")
    assert code == 2 and "did you mean" in err


def test_explain_by_code_or_name(capsys):
    code, out, _ = run_cli(capsys, "lint", "--explain", "NN022")
    assert code == 0 and out.startswith("NN022 add-shape-mismatch (error, checker)")
    code, out2, _ = run_cli(capsys, "lint", "--explain", "add-shape-mismatch")
    assert out2 == out


def test_select_and_ignore(tmp_path, capsys):
    text = "input 3x7x7\nconv(8, 3, stride=3, pad=2)\nrelu relu\n"   # NN201? no: NN203, NN302
    path = write(tmp_path, text)
    found = lambda *a: {d["code"] for f in json.loads(run_cli(capsys, "lint", path, "--format",
                                                               "json", *a)[1])["files"]
                        for d in f["findings"]}
    everything = found()
    assert {"NN203", "NN302"} <= everything
    assert found("--select", "NN2") == {c for c in everything if c.startswith("NN2")}
    assert found("--select", "NN2", "--ignore", "NN203") == {c for c in everything
                                                             if c.startswith("NN2") and c != "NN203"}
    assert found("--ignore", "consecutive-activations,NN203") == everything - {"NN302", "NN203"}
    # the most specific selector wins: ignore a family, keep one of its rules
    assert found("--ignore", "NN3", "--select", "NN302") == {"NN302"}


def test_selection_never_hides_checker_errors():
    r = lint_fixture("broken.nn", selection=Selection(select=["NN5"]))
    assert {d.code for d in r.findings} == {"NN022", "NN010"}


def test_memory_budget_option(tmp_path, capsys):
    path = write(tmp_path, RULES["NN801"].bad)
    assert run_cli(capsys, "lint", path)[0] == 0
    code, out, _ = run_cli(capsys, "lint", path, "--memory-budget", "1GB")
    assert code == 1 and "NN801" in out


def test_rules_command(capsys):
    code, out, _ = run_cli(capsys, "rules", "--format", "json")
    doc = json.loads(out)
    assert code == 0 and [r["code"] for r in doc["rules"]] == [r.code for r in ordered()]
    code, out, _ = run_cli(capsys, "rules", "--format", "markdown")
    assert out == formats.rules_markdown()


def test_folder_argument(tmp_path, capsys):
    write(tmp_path, CLEAN, "a.nn")
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub", WARN, "b.nn")
    code, out, _ = run_cli(capsys, "lint", str(tmp_path))
    assert code == 1 and "b.nn" in out and "2 files" in out


# ---- suppression comments -----------------------------------------------------------------------

def found(text: str, **kw) -> list[str]:
    return [d.code for d in lint_source(text, "s.nn", **kw).findings]


def test_trailing_comment_silences_its_line_only():
    text = ("input 3x7x7\nconv(8, 3, stride=3) relu  # nnspec: allow NN201 -- as in the paper\n"
            "conv(8, 1, stride=2)\n")
    r = lint_source(text)
    assert [d.code for d in r.findings] == ["NN204"] and r.suppressed == 1


def test_comment_line_silences_the_next_line_of_code():
    text = ("input 3x7x7\n# nnspec: allow window-does-not-tile -- as in the paper\n\n"
            "# another comment\nconv(8, 3, stride=3)\n")
    assert found(text) == []


def test_suppression_at_the_block_instance_silences_that_instance():
    text = ("input 16x8x8\nblock down(c) {\n  conv(c, 1, stride=2) relu\n}\n"
            "down(32)  # nnspec: allow NN204 -- projection\ndown(64)\n")
    (d,) = lint_source(text).findings
    assert d.code == "NN204" and d.chain[-1].instance == "down_1"


def test_suppression_without_reason_is_a_finding():
    text = "input 3x7x7\nconv(8, 3, stride=3)  # nnspec: allow NN201\n"
    assert found(text) == ["NN901"]


def test_unknown_and_unused_suppressions():
    text = "input 64\nlinear(32) relu  # nnspec: allow NN3O2, NN302 -- typo\nlinear(10)\n"
    assert sorted(found(text)) == ["NN902", "NN903"]
    # an unused suppression of a rule that is not selected is not reported
    assert found(text, selection=Selection(ignore=["NN302"])) == ["NN902"]


def test_several_codes_in_one_comment():
    text = "input 3x7x7\nconv(8, 3, stride=3) relu relu  # nnspec: allow NN201, NN302 -- demo\n"
    assert found(text) == []


def test_comment_inside_a_string_is_not_a_suppression():
    text = ('input 64\nfc: linear(10)\ntrain {\n  freeze "# nnspec: allow NN712 -- x"\n}\n')
    assert "NN712" in found(text)


# ---- the shipped specs --------------------------------------------------------------------------

@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_shipped_spec_lints_clean_of_errors_and_warnings(path):
    r = lint_file(path)
    bad = [f"{d.code} {d.name} {d.span}: {d.message}" for d in r.findings if d.severity != "info"]
    assert not bad and not r.fatal


def test_whole_process_is_light_and_exits_1_only_on_warnings():
    code = ("import sys, nnspec.cli; rc = nnspec.cli.main(['lint', 'specs', '--fail-level', "
            "'error']); assert 'torch' not in sys.modules, 'lint imported torch'; sys.exit(rc)")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]


def test_processes_divides_the_batch_for_batch_norm(capsys, tmp_path):
    spec = tmp_path / "net.nn"
    spec.write_text("input 3x8x8\nconv(16, 3, pad=1, bias=false) batchnorm relu\nmaxpool(2)\n"
                    "conv(16, 3, pad=1, bias=false) batchnorm relu\nglobal_avgpool\nlinear(10)\n"
                    "train {\n  batch 16\n}\n")
    assert run_cli(capsys, "lint", str(spec))[0] == 0
    code, out, _ = run_cli(capsys, "lint", str(spec), "--processes", "4")
    assert code == 1 and "batch 16 over 4 processes gives each 4 samples" in out
    code, _, err = run_cli(capsys, "lint", str(spec), "--processes", "0")
    assert code == 2 and "--processes must be from 1" in err
