"""Rendered errors: every malformed spec in tests/golden/errors/*.nn raises a SpecError whose
diagnostics have the expected codes, and whose rendering (file:line:col, the numbered source
line, a caret under the culprit, the message, help) matches tests/golden/errors/<name>.out.

Regenerate the golden files with `NNSPEC_UPDATE_GOLDEN=1 python -m pytest tests/test_errors.py`
and read the diff: these files are what a user sees.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from conftest import ROOT

import nnspec
from nnspec.errors import Diagnostic, Frame, Span, render

ERRORS = ROOT / "tests" / "golden" / "errors"

# name -> the codes of the diagnostics the file must produce, in order
CASES = {
    # syntax: parsing stops at the first syntax error
    "syntax_missing_paren": ["NN001"],
    "syntax_equals_for_label": ["NN001"],
    "syntax_spaces_in_shape": ["NN001"],
    "syntax_unclosed_brace": ["NN001"],
    "syntax_stray_character": ["NN001"],
    "syntax_stray_closing_brace": ["NN001"],
    "syntax_positional_after_keyword": ["NN001"],
    "syntax_colon_in_train": ["NN001"],
    "syntax_square_brackets": ["NN001"],
    # ops and their arguments
    "unknown_op": ["NN010"],
    "unknown_argument": ["NN011"],
    "missing_argument": ["NN012"],
    "duplicate_argument": ["NN012", "NN012"],
    "too_many_arguments": ["NN012"],
    "wrong_argument_types": ["NN013"] * 5,
    "undefined_name": ["NN014"],
    "unknown_shape_field": ["NN014"],
    "number_out_of_range": ["NN003", "NN015"],
    "same_padding_needs_stride_1": ["NN013"],
    # shapes
    "kernel_does_not_fit": ["NN020"],
    "dilated_kernel_does_not_fit": ["NN020"],
    "linear_on_feature_map": ["NN021"],
    "add_shape_mismatch": ["NN022"],
    "concat_shape_mismatch": ["NN023"],
    "shape_assertion": ["NN024"],
    "groups_do_not_divide": ["NN025"],
    # blocks, repeats, names, structure
    "error_in_block_instance": ["NN022"],
    "error_in_nested_blocks": ["NN020"],
    "block_arguments": ["NN011", "NN012", "NN012"],
    "recursive_block": ["NN016"],
    "repeat_too_large": ["NN017"],
    "repeat_expands_too_far": ["NN017"],
    "duplicate_names": ["NN018", "NN018"],
    "missing_input": ["NN019"],
    "duplicate_sections": ["NN019", "NN019"],
    "no_layers": ["NN019"],
    "empty_merge": ["NN010"],
    # tuples, built-in functions, labels built from expressions, `use`
    "index_errors": ["NN015"] * 3,
    "builtin_errors": ["NN015"] * 4,
    "label_expression_errors": ["NN013", "NN013", "NN014"],
    "label_not_at_start": ["NN001"],
    "use_errors": ["NN002", "NN002"],
    # work limits: what adds no layers is counted too
    "work_limit": ["NN017"],
    "tuple_too_long": ["NN017"],
    # the train section
    "train_errors": ["NN030"] * 6,
    # independent errors are all reported
    "three_independent_errors": ["NN011", "NN010", "NN014"],
}


def load_case(name: str) -> nnspec.SpecError:
    path = ERRORS / f"{name}.nn"
    rel = path.relative_to(ROOT).as_posix()
    with pytest.raises(nnspec.SpecError) as info:
        nnspec.loads(path.read_text("utf-8"), file=rel)
    return info.value


def assert_well_rendered(d: Diagnostic, source: str) -> None:
    """The ruff-style shape: head, arrow with file:line:col, numbered line, caret, help."""
    text = render(d, source)
    lines = text.splitlines()
    assert lines[0] == f"error[{d.code}]: {d.message}"
    assert d.span is not None, f"{d.code} {d.message!r} has no span"
    assert lines[1] == f" --> {d.span.file}:{d.span.line}:{d.span.column}"
    src_line = source.split("\n")[d.span.line - 1].rstrip("\r")  # only \n ends a line
    numbered = f"{d.span.line} | "
    source_row = next(i for i, l in enumerate(lines) if l.startswith(numbered))
    assert lines[source_row] == numbered + src_line.expandtabs(1)
    caret = lines[source_row + 1]
    gutter = " " * len(str(d.span.line)) + " | "
    assert caret.startswith(gutter)
    marks = caret[len(gutter):]
    assert set(marks.strip()) == {"^"}
    start = len(marks) - len(marks.lstrip())
    assert start == d.span.column - 1, "the caret starts under the culprit"
    if d.span.end_line == d.span.line and d.span.end_column - 1 <= len(src_line):
        assert len(marks.strip()) == max(1, d.span.end_column - d.span.column)
    if d.help:
        assert lines[-1] == f"   = help: {d.help}"


def test_every_error_file_is_a_case():
    files = {p.stem for p in ERRORS.glob("*.nn")}
    assert files == set(CASES), "add new error specs to CASES (or delete stale ones)"
    assert len(CASES) >= 24


@pytest.mark.parametrize("name", sorted(CASES))
def test_rendered_error(name, golden):
    err = load_case(name)
    assert [d.code for d in err.diagnostics] == CASES[name]
    source = (ERRORS / f"{name}.nn").read_text("utf-8")
    for d in err.diagnostics:
        assert_well_rendered(d, source)
    golden(f"errors/{name}", err.render())


# ---- specific promises -------------------------------------------------------------------------

def messages(name: str) -> list[str]:
    return [d.message for d in load_case(name).diagnostics]


def helps(name: str) -> list[str | None]:
    return [d.help for d in load_case(name).diagnostics]


def test_did_you_mean_for_ops_arguments_names_and_train_keys():
    assert helps("unknown_op") == ["did you mean 'maxpool'?"]
    assert helps("unknown_argument") == ["did you mean 'stride'?"]
    assert helps("undefined_name") == ["did you mean 'channels'?"]
    train = load_case("train_errors").diagnostics
    assert train[0].message == "unknown train setting 'los'" and train[0].help == "did you mean 'loss'?"
    assert train[3].help == "did you mean 'step'?"


def test_kernel_that_does_not_fit_names_the_layer_and_its_input():
    [msg] = messages("kernel_does_not_fit")
    assert msg == "input to conv6 is 256x6x6; a 7x7 kernel does not fit"


def test_merge_mismatch_names_every_path_and_its_shape():
    d = load_case("add_shape_mismatch").diagnostics[0]
    assert d.notes == ("path 1 (line 4, ends at conv_1): 64x56x56",
                       "path 2 (line 5, ends at conv_2): 128x28x28",
                       "path 3 (line 6, ends at identity): 64x56x56")
    d = load_case("concat_shape_mismatch").diagnostics[0]
    assert [n.split(": ")[-1] for n in d.notes] == ["64x28x28", "128x28x28", "32x24x24", "32x28x28"]


def test_errors_in_blocks_name_the_instance_chain():
    d = load_case("error_in_block_instance").diagnostics[0]
    assert [f.describe() for f in d.chain] == ["in layer3.1 (block basic defined at 4:1)"]
    assert "   = in layer3.1 (block basic defined at 4:1)" in render(d, None) + render(d, "")
    d = load_case("error_in_nested_blocks").diagnostics[0]
    assert [f.instance for f in d.chain] == ["stage2", "stage2.first"]
    text = load_case("error_in_nested_blocks").render()
    # innermost instance first, as a traceback read from the error outwards
    assert text.index("in stage2.first (block unit") < text.index("in stage2 (block stage")


def test_three_independent_errors_give_three_diagnostics():
    err = load_case("three_independent_errors")
    assert len(err.diagnostics) == 3
    assert [d.span.line for d in err.diagnostics] == [3, 4, 5]
    assert err.render().count("error[") == 3


def test_shape_assertion_points_explain_at_the_layer_that_changed_the_shape():
    d = load_case("shape_assertion").diagnostics[0]
    assert d.message == "conv1_relu outputs 16x30x30, the spec expects 16x32x32"
    assert "nnspec explain tests/golden/errors/shape_assertion.nn conv1`" in d.help


def test_error_value_carries_sources_and_str():
    err = load_case("unknown_op")
    assert set(err.sources) == {"tests/golden/errors/unknown_op.nn"}
    assert str(err) == "tests/golden/errors/unknown_op.nn:4:8: unknown op or block 'maxpol'"


def test_render_without_source_or_span():
    d = Diagnostic("NN019", "the spec has no `input` declaration", help="declare it")
    assert render(d) == "error[NN019]: the spec has no `input` declaration\n   = help: declare it\n"
    d = Diagnostic("NN010", "unknown op 'x'", Span("a.nn", 3, 1, 3, 2))
    assert render(d, None) == "error[NN010]: unknown op 'x'\n --> a.nn:3:1\n"
    # a span past the end of the source renders without a source line
    assert render(d, "one line\n") == "error[NN010]: unknown op 'x'\n --> a.nn:3:1\n"


def test_render_multiline_span_underlines_to_end_of_line():
    d = Diagnostic("NN022", "add mismatch", Span("a.nn", 2, 1, 5, 2))
    text = render(d, "input 3x8x8\nadd {\n  relu\n  conv(3, 3)\n}\n")
    assert text.splitlines()[3:5] == ["2 | add {", "  | ^^^^^"]


def test_render_crops_a_huge_line_around_the_culprit():
    line = "relu " * 100_000 + "maxpol(2)"
    col = line.index("maxpol") + 1
    d = Diagnostic("NN010", "unknown op or block 'maxpol'", Span("a.nn", 1, col, 1, col + 6))
    rows = render(d, line).splitlines()
    assert len(rows[3]) < 300 and "maxpol(2)" in rows[3]
    assert rows[4].index("^") == rows[3].index("maxpol"), "the caret stays under the culprit"


def test_frame_describes_the_top_level_as_network():
    f = Frame("", "basic", Span("a.nn", 4, 1, 9, 2), Span("a.nn", 12, 1, 12, 9))
    assert f.describe() == "in <network> (block basic defined at 4:1)"


# ---- through the command line ------------------------------------------------------------------

def test_cli_check_prints_the_rendered_errors_and_exits_1():
    rel = "tests/golden/errors/three_independent_errors.nn"
    r = subprocess.run([sys.executable, "-m", "nnspec", "check", rel], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr == load_case("three_independent_errors").render() + f"{rel}: 3 errors\n"
    assert "Traceback" not in r.stderr


def test_cli_check_reports_every_file_and_fails_if_any_fails(capsys):
    from nnspec.cli import main
    good = str(ROOT / "specs" / "alexnet.nn")
    bad = str(ERRORS / "unknown_op.nn")
    assert main(["check", good, bad, good]) == 1
    out, err = capsys.readouterr()
    assert out.count(": ok — alexnet") == 2
    assert re.search(r"unknown_op\.nn: 1 error$", err.strip())


# ---- one line model: only \n ends a line -------------------------------------------------------

# Characters that str.splitlines() (and many editors) take as line breaks, but the parser does not
ODD_BREAKS = ["\f", "\v", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


@pytest.mark.parametrize("ch", ODD_BREAKS, ids=lambda c: f"U+{ord(c):04X}")
def test_carets_stay_on_the_right_line_whatever_the_file_holds(ch):
    source = (f"network n\ninput 3x8x8\n# a comment{ch}with an odd character\n"
              f"conv(8, 3) # another{ch}one\nconv(8, 3, strde=2)\ntrain {{\n  data \"a{ch}b\"\n"
              f"  los cross_entropy\n}}\n")
    with pytest.raises(nnspec.SpecError) as info:
        nnspec.loads(source, file="odd.nn")
    diags = info.value.diagnostics
    assert [(d.code, d.span.line, d.span.column) for d in diags] == [
        ("NN011", 5, 12), ("NN030", 7, 8), ("NN030", 8, 3)][:len(diags)]
    assert len(diags) >= 2
    text = info.value.render()
    rows = text.split("\n")
    # the numbered source row is the line the span names, the odd character shown as a space
    assert "5 | conv(8, 3, strde=2)" in rows
    caret = rows[rows.index("5 | conv(8, 3, strde=2)") + 1]
    assert caret == "  |            ^^^^^^^"
    for d in diags:
        assert_rendered_line(d, source)


def assert_rendered_line(d: Diagnostic, source: str) -> None:
    """The row under ` --> ` shows line d.span.line of `source`, as the parser counts lines."""
    want = source.split("\n")[d.span.line - 1].rstrip("\r")
    for ch in ODD_BREAKS + ["\t", "\r"]:
        want = want.replace(ch, " ")
    assert f"{d.span.line} | {want}" in render(d, source).split("\n")


@pytest.mark.parametrize("ch", ODD_BREAKS, ids=lambda c: f"U+{ord(c):04X}")
def test_syntax_errors_after_odd_characters_are_located_by_newlines(ch):
    source = f"network n\n# x{ch}y{ch}z\ninput 3x8x8\nconv(8, 3 relu\n"
    with pytest.raises(nnspec.SpecError) as info:
        nnspec.loads(source, file="odd.nn")
    [d] = info.value.diagnostics
    assert (d.code, d.span.line, d.span.column) == ("NN001", 4, 11)
    assert_rendered_line(d, source)


def test_an_odd_character_in_code_is_a_clean_syntax_error():
    for ch in ODD_BREAKS[1:]:  # a form feed is whitespace, like a tab
        with pytest.raises(nnspec.SpecError) as info:
            nnspec.loads(f"network n\ninput 3x8x8\nconv(8,{ch} 3)\n")
        [d] = info.value.diagnostics
        assert (d.code, d.span.line, d.span.column) == ("NN001", 3, 8)
    assert nnspec.loads("network n\ninput 3x8x8\nconv(8,\f 3)\n").graph.nodes[1].shape == (8, 6, 6)


@pytest.mark.parametrize("ch", ODD_BREAKS, ids=lambda c: f"U+{ord(c):04X}")
def test_suppressions_apply_to_the_line_they_are_written_on(ch):
    from nnspec.lint.engine import lint_source
    base = f"input 64\n# a{ch}b\nlinear(32)\nlinear(10)"
    [d] = lint_source(base + "\n").findings
    assert (d.code, d.span.line) == ("NN301", 4)
    r = lint_source(base + f"  # nnspec: allow NN301 -- kept{ch}on purpose\n")
    assert r.findings == [] and r.suppressed == 1
    # a comment on its own line applies to the next line of code, counted the same way
    r = lint_source(f"input 64\n# a{ch}b\nlinear(32)\n# nnspec: allow NN301 -- kept\n# {ch}\nlinear(10)\n")
    assert r.findings == [] and r.suppressed == 1
    # and not to another line
    r = lint_source(f"input 64\n# nnspec: allow NN301 -- kept{ch}\nlinear(32)\n\nlinear(10)\n")
    assert [(d.code, d.span.line) for d in r.findings] == [("NN903", 2), ("NN301", 5)]


def test_a_diagnostic_in_a_file_with_crlf_line_endings():
    source = "network n\r\ninput 3x8x8\r\nconv(8, 3, strde=2)\r\n"
    with pytest.raises(nnspec.SpecError) as info:
        nnspec.loads(source, file="crlf.nn")
    [d] = info.value.diagnostics
    assert (d.span.line, d.span.column) == (3, 12)
    assert "3 | conv(8, 3, strde=2)\n" in info.value.render()
