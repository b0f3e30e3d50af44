"""Hostile paths, pipes, flags and numbers at the command line (issue "Hostile specs, files and
flags…"): every case ends in a clean, one-line error naming the file, with the documented
exit code (0 clean, 1 a problem with a spec, 2 usage), never a traceback; `-` is standard
input; folders are read where one table or check per spec makes sense; a closed pipe exits 0;
no colour codes off a terminal; report numbers of any size are exact.

The real process runs (subprocess) where pipes, terminals and standard input matter; the
rest call nnspec.cli.main in-process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, SPECS

from nnspec.cli import main

LENET = SPECS / "lenet5.nn"
NO_TRACEBACK = "Traceback"


def nnspec(*argv, stdin: str | None = None, env: dict | None = None, timeout: float = 60):
    """Run `python -m nnspec ARGV` with pipes; (exit code, stdout, stderr)."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    full_env.update(env or {})
    r = subprocess.run([sys.executable, "-m", "nnspec", *map(str, argv)], cwd=ROOT,
                       input=stdin if stdin is not None else "", capture_output=True, text=True,
                       timeout=timeout, env=full_env)
    assert NO_TRACEBACK not in r.stderr, r.stderr
    return r.returncode, r.stdout, r.stderr


def run(capsys, *argv) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    assert NO_TRACEBACK not in err
    return code, out, err


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith(("error", "nnspec"))]


# ---- spec paths: missing, a folder, a named pipe, standard input ----------------------------

# (command line with {} for the spec path, exit code for an unreadable spec)
READERS = [
    (["table", "{}"], 1),
    (["table", "{}", "--format", "json"], 1),
    (["explain", "{}", "c1"], 1),
    (["check", "{}"], 1),
    (["lint", "{}"], 2),   # lint: 2 for specs it cannot parse or read (README's Lint section)
    (["compile", "{}", "--emit", "torch"], 1),
]


def _argv(template, path):
    return [str(path) if a == "{}" else a for a in template]


@pytest.mark.parametrize("template,code", READERS, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_a_missing_spec_is_one_line_naming_it(capsys, tmp_path, template, code):
    missing = tmp_path / "missing.nn"
    got, out, err = run(capsys, *_argv(template, missing))
    assert got == code
    errors = error_lines(err + out)  # lint reports findings on standard output
    assert errors and errors[0].endswith(f"cannot read '{missing}': No such file or directory")
    assert len([e for e in errors if "cannot read" in e]) == 1


def test_check_prints_the_error_itself_then_the_count(capsys, tmp_path):
    code, out, err = run(capsys, "check", tmp_path / "missing.nn")
    assert code == 1 and out == ""
    assert err.splitlines() == [
        f"error[NN002]: cannot read '{tmp_path / 'missing.nn'}': No such file or directory",
        f"{tmp_path / 'missing.nn'}: 1 error"]


@pytest.mark.parametrize("template", [["explain", "{}", "c1"], ["compile", "{}", "--emit", "torch"],
                                      ["compile", "{}"], ["export", "{}", "--onnx", "x.onnx"]],
                         ids=lambda v: v[0] + (" --emit" if "--emit" in v else ""))
def test_commands_of_one_spec_say_so_for_a_folder(capsys, tmp_path, template):
    code, out, err = run(capsys, *_argv(template, tmp_path))
    assert code == 1 and out == ""
    assert err == f"error[NN002]: cannot read '{tmp_path}': Is a directory; this command reads one .nn file\n"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
@pytest.mark.parametrize("template,code", READERS, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_a_named_pipe_without_writer_is_refused_not_waited_on(tmp_path, template, code):
    fifo = tmp_path / "spec.fifo"
    os.mkfifo(fifo)
    got, out, err = nnspec(*_argv(template, fifo), timeout=30)  # a hang fails by timeout
    assert got == code
    assert f"cannot read '{fifo}': a named pipe with no writer; pipe the spec to standard input" \
        in err + out  # lint reports on standard output


@pytest.mark.skipif(not os.path.isdir("/dev/fd"), reason="/dev/fd: Linux, macOS")
def test_a_pipe_with_a_writer_is_read(tmp_path):
    """Process substitution (`nnspec table <(…)`) hands over a pipe that has a writer."""
    r, w = os.pipe()
    os.write(w, LENET.read_bytes())
    os.close(w)
    try:
        proc = subprocess.run([sys.executable, "-m", "nnspec", "check", f"/dev/fd/{r}"], cwd=ROOT,
                              pass_fds=(r,), capture_output=True, text=True, timeout=60)
    finally:
        os.close(r)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"/dev/fd/{r}: ok — lenet5, 12 layers, 61,706 parameters")


def test_stdin_is_a_spec_path_for_every_reader():
    text = LENET.read_text()
    code, out, _ = nnspec("table", "-", "--format", "csv", stdin=text)
    assert code == 0 and out.splitlines()[1] == "c1,conv 5x5/1,6x28x28,156,156,0,117600,4704,5"
    code, out, _ = nnspec("check", "-", stdin=text)
    assert (code, out) == (0, "<stdin>: ok — lenet5, 12 layers, 61,706 parameters, output 10\n")
    code, out, _ = nnspec("explain", "-", "c1", stdin=text)
    assert code == 0 and "parameters 156" in out
    code, out, _ = nnspec("lint", "-", "--format", "json", stdin=text)
    assert code == 0 and json.loads(out)["files"][0]["file"] == "<stdin>"
    code, out, _ = nnspec("compile", "-", "--emit", "torch", stdin=text)
    assert code == 0 and "class Lenet5(nn.Module):" in out


def test_diagnostics_of_stdin_name_it():
    code, out, err = nnspec("check", "-", stdin="input 3x8x8\nconv(4, 9)\n")
    assert code == 1
    assert " --> <stdin>:2:1" in err and err.rstrip().endswith("<stdin>: 1 error")


def test_stdin_is_read_once(capsys):
    code, _, err = run(capsys, "check", "-", "-")
    assert code == 2 and err == "nnspec: error: standard input (-) can be read only once\n"


# ---- folders -----------------------------------------------------------------------------------

@pytest.fixture
def folder(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.nn").write_text(LENET.read_text())
    (tmp_path / "sub" / "a.nn").write_text((SPECS / "mlp_digits.nn").read_text())
    (tmp_path / "notes.txt").write_text("not a spec")
    return tmp_path


def test_table_of_a_folder_prints_one_titled_table_per_spec(capsys, folder):
    code, out, err = run(capsys, "table", folder, "--format", "text")
    assert (code, err) == (0, "")
    titles = [line for line in out.splitlines() if line.startswith("== ")]
    assert titles == [f"== {folder / 'b.nn'}", f"== {folder / 'sub' / 'a.nn'}"]
    assert "lenet5 — input 1x32x32" in out and "mlp_digits — input 64" in out


def test_table_of_a_folder_in_json_and_csv(capsys, folder):
    code, out, _ = run(capsys, "table", folder, "--format", "json")
    docs = json.loads(out)
    assert code == 0 and [(d["file"], d["network"]) for d in docs] == [
        (str(folder / "b.nn"), "lenet5"), (str(folder / "sub" / "a.nn"), "mlp_digits")]
    assert docs[0]["totals"]["params"] == 61_706 and docs[1]["totals"]["params"] == 17_226
    code, out, _ = run(capsys, "table", folder, "--format", "csv")
    lines = out.splitlines()
    assert lines[0] == "file,name,op,shape,params,trainable,buffers,macs,activations,rf"
    assert sum(line.startswith("file,") for line in lines) == 1
    assert lines[1] == f"{folder / 'b.nn'},c1,conv 5x5/1,6x28x28,156,156,0,117600,4704,5"
    assert len(lines) == 1 + 12 + 5


def test_one_json_document_for_one_spec(capsys):
    code, out, _ = run(capsys, "table", LENET, "--format", "json")
    assert code == 0 and json.loads(out)["network"] == "lenet5" and "file" not in json.loads(out)


def test_check_of_a_folder_checks_every_spec(capsys, folder):
    (folder / "sub" / "bad.nn").write_text("input 3x8x8\nconv(4, 9)\n")
    code, out, err = run(capsys, "check", folder)
    assert code == 1
    assert out.splitlines() == [
        f"{folder / 'b.nn'}: ok — lenet5, 12 layers, 61,706 parameters, output 10",
        f"{folder / 'sub' / 'a.nn'}: ok — mlp_digits, 5 layers, 17,226 parameters, output 10"]
    assert err.rstrip().endswith(f"{folder / 'sub' / 'bad.nn'}: 1 error")


def test_a_folder_without_specs_is_a_usage_error(capsys, tmp_path):
    for command in ("table", "check", "lint"):
        code, _, err = run(capsys, command, tmp_path)
        assert code == 2 and err == f"nnspec: error: no .nn files in the folder '{tmp_path}'\n"


def test_table_goes_on_after_a_bad_spec_and_exits_1(capsys, tmp_path):
    (tmp_path / "bad.nn").write_text("input 3x8x8\nconv(4, 9)\n")
    code, out, err = run(capsys, "table", tmp_path / "bad.nn", LENET, "--format", "text")
    assert code == 1 and "kernel" in err and out.startswith(f"== {LENET}\nlenet5 — input")
    code, out, err = run(capsys, "table", tmp_path / "bad.nn", LENET, "--format", "json")
    assert code == 1 and [d["file"] for d in json.loads(out)] == [str(LENET)]


# ---- closed pipes ------------------------------------------------------------------------------

def _close_after_first_line(argv) -> tuple[int, str]:
    proc = subprocess.Popen([sys.executable, "-m", "nnspec", *map(str, argv)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()  # as `| head -1` does
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert first
    return proc.wait(timeout=60), err


@pytest.fixture(scope="module")
def long_spec(tmp_path_factory):
    """900 rows with long names: more than a pipe's 64 KB buffer in every format (70 KB and
    up), below RICH_MAX_ROWS."""
    path = tmp_path_factory.mktemp("pipe") / "long.nn"
    path.write_text("input 8x16x16\na_stage_with_a_long_name_for_wide_rows: "
                    "repeat 300 { conv(8, 3, pad=1) batchnorm relu }\n")
    return path


@pytest.mark.parametrize("fmt", ["rich", "text", "markdown", "csv", "json"])
def test_a_closed_pipe_exits_0_quietly(long_spec, fmt):
    code, err = _close_after_first_line(["table", long_spec, "--format", fmt])
    assert (code, err) == (0, "")


@pytest.mark.parametrize("argv", [["lint", "{}", "--format", "json", "--fail-level", "error"],
                                  ["compile", "{}", "--emit", "torch"], ["rules", "--format", "json"]],
                         ids=lambda v: v[0])
def test_a_closed_pipe_exits_0_for_other_commands(long_spec, argv):
    code, err = _close_after_first_line(_argv(argv, long_spec))
    assert (code, err) == (0, "")


# ---- colour ------------------------------------------------------------------------------------

COLOURLESS_RUNS = [
    ["table", LENET], ["table", "missing.nn"], ["check", "missing.nn"], ["table", LENET, "--batch", "0"],
    ["lint", SPECS], ["explain", LENET, "nope"], ["lint", "--explain", "NN201"],
]


@pytest.mark.parametrize("argv", COLOURLESS_RUNS, ids=lambda v: " ".join(map(str, v[:2])))
def test_no_colour_codes_in_pipes(argv):
    code, out, err = nnspec(*argv, env={"TERM": "xterm-256color"})
    assert "\x1b[" not in out and "\x1b[" not in err
    assert out or err


def test_force_color_and_no_color():
    """The check above can fail: FORCE_COLOR puts codes into a pipe; NO_COLOR wins over it."""
    _, out, _ = nnspec("table", LENET, env={"FORCE_COLOR": "1", "TERM": "xterm-256color"})
    assert "\x1b[" in out
    _, out, _ = nnspec("table", LENET, env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
    assert "\x1b[" not in out and "61,706" in out


# ---- flag values -------------------------------------------------------------------------------

HUGE = "9" * 300


@pytest.mark.parametrize("argv,message", [
    (["table", LENET, "--batch", HUGE], "argument --batch: batch must be from 1 to 2,147,483,647, got '99999999999999999999'…(300 characters)"),
    (["table", LENET, "--batch", "-1"], "argument --batch: batch must be from 1 to 2,147,483,647, got '-1'"),
    (["table", LENET, "--batch", "0"], "argument --batch: batch must be from 1 to 2,147,483,647, got '0'"),
    (["table", LENET, "--batch", "2147483648"], "batch must be from 1 to 2,147,483,647, got '2147483648'"),
    (["table", LENET, "--batch", "1e3"], "argument --batch: expected an integer from 1 to 2,147,483,647, got '1e3'"),
    (["explain", LENET, "c1", "--batch", HUGE], "batch must be from 1 to 2,147,483,647"),
    (["table", LENET, "--depth", HUGE], "argument --depth: depth must be from 1 to 1,000"),
    (["lint", LENET, "--memory-budget", HUGE], "--memory-budget must be a size from 1B to 1024TB, got '99999999999999999999'…(300 characters)"),
    (["lint", LENET, "--memory-budget", "9" * 30 + "TB"], "--memory-budget must be a size from 1B to 1024TB"),
    (["lint", LENET, "--memory-budget", "0.1B"], "--memory-budget must be a size from 1B to 1024TB, got '0.1B'"),
    (["export", LENET, "--onnx", "x.onnx", "--batch", "-1"], "argument --batch: batch must be from 1 to 65,536, got '-1'"),
    (["export", LENET, "--onnx", "x.onnx", "--batch", HUGE], "argument --batch: batch must be from 1 to 65,536"),
], ids=lambda v: " ".join(map(str, v[1:4]))[:40] if isinstance(v, list) else None)
def test_out_of_range_values_are_usage_errors(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert message in err.splitlines()[-1]


@pytest.mark.parametrize("value,message", [
    (HUGE, "--set classes: integers must be below 10^18, got '99999999999999999999'…(300 characters)"),
    ("1e400", "--set classes: expected a finite number, got '1e400'"),
    ("nan", "--set classes: expected a finite number, got 'nan'")])
def test_set_values_obey_the_spec_limits(capsys, value, message):
    code, out, err = run(capsys, "table", SPECS / "alexnet.nn", "--set", f"classes={value}")
    assert (code, out, err) == (2, "", f"nnspec: error: {message}\n")


def test_the_accepted_extremes_work(capsys):
    code, out, _ = run(capsys, "table", LENET, "--batch", "2147483647", "--format", "json")
    doc = json.loads(out)
    assert code == 0 and doc["batch"] == 2_147_483_647
    assert doc["totals"]["forward_bytes"] == doc["totals"]["activations"] * 2_147_483_647 * 4
    code, out, _ = run(capsys, "lint", LENET, "--memory-budget", "1024TB")
    assert code == 0
    code, out, _ = run(capsys, "check", SPECS / "alexnet.nn", "--set", "classes=999999999999999999")
    assert code == 0 and out.endswith("4.10e+21 parameters, output 999999999999999999\n")


# ---- outputs -----------------------------------------------------------------------------------

def test_emit_to_a_missing_folder_a_folder_or_under_a_file(capsys, tmp_path):
    (tmp_path / "file.txt").write_text("x")
    cases = [(tmp_path / "nope" / "x.py", f"the folder '{tmp_path / 'nope'}' does not exist"),
             (tmp_path, "Is a directory; give a file name"),
             (tmp_path / "file.txt" / "x.py", f"the folder '{tmp_path / 'file.txt'}' is not a folder")]
    for out_path, why in cases:
        code, out, err = run(capsys, "compile", LENET, "--emit", "torch", "-o", out_path)
        assert (code, out) == (2, "")
        assert err == f"nnspec: error: cannot write '{out_path}': {why}\n"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes anywhere")
def test_emit_to_an_unwritable_folder(capsys, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, _, err = run(capsys, "compile", LENET, "--emit", "torch", "-o", locked / "x.py")
    finally:
        locked.chmod(0o700)
    assert code == 2 and err == f"nnspec: error: cannot write '{locked / 'x.py'}': Permission denied\n"


def test_emit_writes_whole_or_not_at_all(capsys, tmp_path):
    out_path = tmp_path / "net.py"
    out_path.write_text("# the old file\n")
    bad = tmp_path / "bad.nn"
    bad.write_text("input 3x8x8\nconv(4, 9)\n")
    code, _, _ = run(capsys, "compile", bad, "--emit", "torch", "-o", out_path)
    assert code == 1 and out_path.read_text() == "# the old file\n"
    code, _, err = run(capsys, "compile", LENET, "--emit", "torch", "-o", out_path)
    assert code == 0 and "class Lenet5(nn.Module):" in out_path.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.nn", "net.py"]  # no temporary left


def test_output_without_emit_is_a_usage_error(capsys, tmp_path):
    code, _, err = run(capsys, "compile", LENET, "-o", tmp_path / "x.py")
    assert code == 2 and "-o/--output goes with --emit torch" in err


# ---- numbers of any size -----------------------------------------------------------------------

DOUBLING = "input 2x4x4\nrepeat 1100 {\n  concat {\n    identity\n    identity\n  }\n}\nconv(4, 3)\n"
CHANNELS = 2 ** 1101  # each concat doubles the 2 input channels


@pytest.fixture
def doubling(tmp_path):
    path = tmp_path / "doubling.nn"
    path.write_text(DOUBLING)
    return path


def test_json_keeps_every_digit_of_2_to_the_1101_channels(capsys, doubling):
    code, out, _ = run(capsys, "table", doubling, "--format", "json")
    doc = json.loads(out)
    conv = doc["layers"][-1]
    assert code == 0 and conv["op"] == "conv" and doc["layers"][-2]["shape"] == [CHANNELS, 4, 4]
    assert conv["params"] == 4 * CHANNELS * 3 * 3 + 4          # weights + bias
    assert conv["macs"] == 4 * 2 * 2 * CHANNELS * 3 * 3        # output positions x window
    assert doc["totals"]["param_bytes"] == (4 * CHANNELS * 9 + 4) * 4


@pytest.mark.parametrize("fmt", ["text", "markdown", "rich"])
def test_human_formats_write_huge_numbers_in_scientific_notation(capsys, doubling, fmt):
    code, out, err = run(capsys, "table", doubling, "--format", fmt)
    assert (code, err) == (0, "")
    params = 4 * CHANNELS * 9 + 4  # 9.78e+332
    assert "9.78e+332" in out and f"{params:,}" not in out
    assert "parameter size  3.91e+333 B (float32, 4 bytes per value)" in out
    assert max(map(len, out.splitlines())) < 400


def test_csv_and_check_of_huge_numbers(capsys, doubling):
    code, out, _ = run(capsys, "table", doubling, "--format", "csv")
    last = out.splitlines()[-1].split(",")
    assert code == 0 and int(last[3]) == 4 * CHANNELS * 9 + 4
    code, out, _ = run(capsys, "check", doubling)
    assert code == 0 and out == f"{doubling}: ok — doubling, 3301 layers, 9.78e+332 parameters, output 4x2x2\n"


def test_more_digits_than_pythons_int_to_str_guard(capsys, tmp_path):
    """2^14,501 channels has 4,366 digits, past Python's 4,300-digit default: JSON stays exact."""
    path = tmp_path / "wide.nn"
    path.write_text(DOUBLING.replace("1100", "14500"))
    code, out, _ = run(capsys, "table", path, "--format", "json")
    assert code == 0
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)  # json.loads is bound by the same guard
    try:
        assert json.loads(out)["layers"][-2]["shape"] == [2 ** 14501, 4, 4]
    finally:
        sys.set_int_max_str_digits(old)
    code, out, _ = run(capsys, "table", path, "--format", "text")
    assert code == 0 and "e+4365" in out


def test_features_near_the_spec_limit(capsys, tmp_path):
    path = tmp_path / "wide.nn"
    n = 999_999_999_999_999_999
    path.write_text(f"input {n}\nfc: linear({n})\nhead: linear(10)\n")
    code, out, _ = run(capsys, "table", path, "--format", "json")
    t = json.loads(out)["totals"]
    assert code == 0 and t["params"] == n * n + n + 10 * n + 10
    code, out, err = run(capsys, "table", path, "--format", "text")
    assert (code, err) == (0, "")
    assert "1.00e+36" in out  # fc's parameters
    assert "forward memory  7.63e+18 B" not in out and "forward memory  6.9 EB" in out


# ---- bounded tables ----------------------------------------------------------------------------

def test_long_names_are_clipped_in_tables_not_in_json(capsys, tmp_path):
    name = "n" * 900  # (the expander refuses full names over 1,000 characters: NN017)
    path = tmp_path / "long.nn"
    path.write_text(f"input 16\n{name}: linear(8)\n")
    code, out, _ = run(capsys, "table", path, "--format", "text")
    assert code == 0 and max(map(len, out.splitlines())) < 250
    assert out.splitlines()[3].startswith("n" * 40 + "…" + "n" * 39 + "  linear 8")
    code, out, _ = run(capsys, "table", path, "--format", "json")
    assert json.loads(out)["layers"][0]["name"] == name


def test_rich_falls_back_to_text_above_the_row_limit(capsys, tmp_path):
    from nnspec.report import RICH_MAX_ROWS
    path = tmp_path / "many.nn"
    path.write_text(f"input 16\nrepeat {RICH_MAX_ROWS + 1} {{ relu }}\n")
    code, out, _ = run(capsys, "table", path)
    assert code == 0
    assert out.splitlines()[0] == f"({RICH_MAX_ROWS + 1:,} rows: the plain text table; " \
                                  "--format text/csv/json say the same)"
    path.write_text(f"input 16\nrepeat {RICH_MAX_ROWS} {{ relu }}\n")
    code, out, _ = run(capsys, "table", path)
    assert code == 0 and not out.startswith("(")


def test_explain_writes_every_digit(capsys, tmp_path):
    path = tmp_path / "wide.nn"
    path.write_text(DOUBLING.replace("1100", "14500"))
    code, out, err = run(capsys, "explain", path, "conv")
    params = 4 * 2 ** 14501 * 9 + 4
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        assert (code, err) == (0, "") and f"parameters {params:,}" in out
    finally:
        sys.set_int_max_str_digits(old)


def test_argparse_colour_follows_our_decision(monkeypatch):
    """Python 3.14's argparse colours usage errors; every parser gets our decision instead."""
    from nnspec.cli import build_parser
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    parser = build_parser()
    subs = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"][0].choices
    assert parser.color is False and {p.color for p in subs.values()} == {False}
    assert {"table", "lint", "compile", "export"} <= set(subs)
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert build_parser().color is True
    monkeypatch.setenv("NO_COLOR", "1")
    assert build_parser().color is False
