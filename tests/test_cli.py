"""The command line: `nnspec table` in every format, `explain`, `check` exit codes (0 clean,
1 errors, 2 usage), `--set`, `--dtype`, `--batch`, `--depth`, `ops`, `python -m nnspec`.

Most tests call `nnspec.cli.main` in-process (fast); a few run the real process.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import nnspec
from conftest import ROOT, SPECS

from nnspec import report
from nnspec.cli import main
from nnspec.ops import OPS, USER_OPS

ALEXNET = str(SPECS / "alexnet.nn")
RESNET18 = str(SPECS / "resnet18.nn")


def run(capsys, *argv) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse reports usage errors this way
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def relative(text: str) -> str:
    """Golden files hold repository-relative paths."""
    return text.replace(str(ROOT) + "/", "")


# ---- table ---------------------------------------------------------------------------------------

def test_table_text_golden(capsys, golden):
    code, out, err = run(capsys, "table", ALEXNET, "--format", "text")
    assert (code, err) == (0, "")
    golden("tables/alexnet_text", out)  # the same file test_report.py checks report.to_text against


def test_table_markdown_golden(capsys, golden):
    code, out, _ = run(capsys, "table", ALEXNET, "--format", "markdown")
    assert code == 0
    golden("tables/alexnet_markdown", out)


def test_table_json(capsys):
    code, out, _ = run(capsys, "table", ALEXNET, "--format", "json")
    assert code == 0
    doc = json.loads(out)
    assert doc["network"] == "alexnet" and doc["batch"] == 128  # the train section's batch
    assert doc["totals"]["params"] == 62_378_344
    assert [l["name"] for l in doc["layers"]][:3] == ["conv1", "conv1_relu", "pool1"]


def test_table_csv(capsys):
    code, out, _ = run(capsys, "table", ALEXNET, "--format", "csv")
    lines = out.splitlines()
    assert code == 0 and lines[0] == "name,op,shape,params,trainable,buffers,macs,activations,rf"
    assert lines[1] == "conv1,conv 11x11/4,96x55x55,34944,34944,0,105415200,290400,11"
    assert len(lines) == 1 + 23


def test_table_rich_is_the_default(capsys):
    code, out, _ = run(capsys, "table", ALEXNET)
    assert code == 0
    assert "conv1" in out and "96x55x55" in out and "62,378,344" in out


@pytest.mark.parametrize("fmt", ["text", "markdown", "csv"])
def test_depth_folds_every_format(capsys, fmt):
    code, out, _ = run(capsys, "table", RESNET18, "--depth", "1", "--format", fmt)
    assert code == 0
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        assert stage in out
    assert "layer1.0" not in out and "downsample" not in out


def test_depth_does_not_fold_json(capsys):
    _, out, _ = run(capsys, "table", RESNET18, "--depth", "1", "--format", "json")
    assert "layer1.0.conv1" in [l["name"] for l in json.loads(out)["layers"]]


def test_set_overrides_a_network_parameter(capsys, tmp_path):
    path = tmp_path / "head.nn"
    path.write_text("network head(classes = 1000, width = 64)\ninput 512\n"
                    "fc1: linear(width) relu\nfc2: linear(classes) -> classes\n")
    _, out, _ = run(capsys, "table", str(path), "--set", "classes=10", "--format", "json")
    doc = json.loads(out)
    assert doc["layers"][-1]["shape"] == [10]
    assert doc["totals"]["params"] == (512 + 1) * 64 + (64 + 1) * 10
    _, out, _ = run(capsys, "table", str(path), "--set", "classes=10", "--set", "width=8", "--format", "json")
    assert json.loads(out)["totals"]["params"] == (512 + 1) * 8 + (8 + 1) * 10


def test_set_errors(capsys):
    code, _, err = run(capsys, "table", ALEXNET, "--set", "clases=10")
    assert code == 1 and "error[NN011]: the network has no parameter 'clases'" in err
    assert "did you mean 'classes'?" in err
    code, _, err = run(capsys, "table", ALEXNET, "--set", "classes")
    assert code == 2 and "--set expects NAME=VALUE" in err
    code, _, err = run(capsys, "table", ALEXNET, "--set", "classes=ten")
    assert code == 1 and "error[NN013]" in err


@pytest.mark.parametrize("dtype, size", [("float32", 4), ("float16", 2), ("bfloat16", 2), ("float64", 8)])
def test_dtype_and_batch_scale_the_bytes(capsys, dtype, size):
    _, out, _ = run(capsys, "table", ALEXNET, "--format", "json", "--dtype", dtype, "--batch", "3")
    t = json.loads(out)["totals"]
    assert t["param_bytes"] == 62_378_344 * size
    assert t["forward_bytes"] == t["activations"] * 3 * size


def test_float16_halves_the_bytes(capsys):
    _, a, _ = run(capsys, "table", ALEXNET, "--format", "json", "--batch", "1")
    _, b, _ = run(capsys, "table", ALEXNET, "--format", "json", "--batch", "1", "--dtype", "float16")
    ta, tb = json.loads(a)["totals"], json.loads(b)["totals"]
    for key in ("param_bytes", "forward_bytes"):
        assert tb[key] * 2 == ta[key]
    # max pooling's int64 indices do not shrink with the dtype
    indices = nnspec.load(ALEXNET).analyze(batch=1).totals.kept_extra_bytes
    assert tb["saved_bytes"] * 2 - ta["saved_bytes"] == indices > 0


@pytest.mark.parametrize("argv", [
    ["table", ALEXNET, "--batch", "0"], ["table", ALEXNET, "--depth", "x"],
    ["table", ALEXNET, "--format", "xml"], ["table", ALEXNET, "--dtype", "int8"], ["table"],
    ["explain", ALEXNET], ["frobnicate"], [], ["check"]])
def test_usage_errors_exit_2(capsys, argv):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert "Traceback" not in out + err


def test_table_of_a_broken_spec_exits_1(capsys):
    code, out, err = run(capsys, "table", str(ROOT / "tests" / "golden" / "errors" / "unknown_op.nn"))
    assert code == 1 and out == "" and "error[NN010]" in err


# ---- explain -------------------------------------------------------------------------------------

def test_explain_alexnet_conv1_golden(capsys, golden):
    code, out, _ = run(capsys, "explain", "specs/alexnet.nn", "conv1")
    assert code == 0
    assert "floor((227 − 11 + 2·0) / 4) + 1 = 55" in out
    assert "(11·11·3 + 1)·96 = 34,944" in out
    golden("explain/alexnet_conv1", out)


def test_explain_notes_a_window_that_does_not_tile(tmp_path, capsys, golden):
    path = tmp_path / "cs231n.nn"
    path.write_text("network cs231n\ninput 1x7x7\nconv1: conv(1, 3, stride=3)\n")
    code, out, _ = run(capsys, "explain", str(path), "conv1")
    assert code == 0
    assert "H: floor((7 − 3 + 2·0) / 3) + 1 = 2" in out
    assert "the window does not tile the input; the last row of the padded input is never seen" in out
    assert "the last column of the padded input is never seen" in out
    golden("explain/cs231n_does_not_tile", out.replace(str(path), "cs231n.nn"))


def test_explain_tiles_without_a_note(capsys):
    _, out, _ = run(capsys, "explain", ALEXNET, "conv2")
    assert "note:" not in out and "(5·5·96 + 1)·256 = 614,656" in out


def test_explain_a_group_and_a_merge(capsys):
    code, out, _ = run(capsys, "explain", RESNET18, "layer1.0")
    assert code == 0 and out.startswith("layer1.0: a group of 7 layers")
    assert "parameters 73,984 = 36,864 + 128 + 36,864 + 128" in out


def test_explain_frozen_and_batchnorm(tmp_path, capsys):
    path = tmp_path / "bn.nn"
    path.write_text('input 3x8x8\nc: conv(4, 3, bias=false)\nbn: batchnorm\ntrain {\n  freeze "c"\n}\n')
    _, out, _ = run(capsys, "explain", str(path), "c")
    assert "frozen by the train section" in out and "3·3·3·4 = 108   (no bias)" in out
    _, out, _ = run(capsys, "explain", str(path), "bn")
    assert "gamma and beta: 2·4 = 8 trained" in out and "buffers (not trained)" in out


def test_explain_unknown_layer(capsys):
    code, _, err = run(capsys, "explain", ALEXNET, "conv9")
    assert code == 1
    assert "error[NN014]: no layer named 'conv9' in alexnet" in err and "did you mean" in err


@pytest.mark.parametrize("layer", ["conv1", "conv1_relu", "pool1", "norm1", "flatten", "fc6",
                                   "fc6_dropout", "fc8"])
def test_explain_every_kind_of_alexnet_layer(capsys, layer):
    code, out, _ = run(capsys, "explain", ALEXNET, layer)
    assert code == 0 and out.startswith(f"{layer}: ")
    for section in ("output shape", "parameters", "MACs", "activations"):
        assert f"\n{section} " in out


# ---- check ---------------------------------------------------------------------------------------

def test_check_exit_codes(capsys, tmp_path):
    code, out, _ = run(capsys, "check", ALEXNET, RESNET18)
    assert code == 0
    assert out.splitlines()[0].endswith("alexnet.nn: ok — alexnet, 23 layers, 62,378,344 parameters, output 1000")
    bad = tmp_path / "bad.nn"
    bad.write_text("input 3x8x8\nconv(4, 9)\n")
    code, out, err = run(capsys, "check", ALEXNET, str(bad))
    assert code == 1
    assert "ok — alexnet" in out and "error[NN020]" in err and err.endswith("bad.nn: 1 error\n")
    code, _, _ = run(capsys, "check")
    assert code == 2


# ---- ops, help, version, python -m ---------------------------------------------------------------

def test_ops_lists_every_user_op(capsys):
    code, out, _ = run(capsys, "ops")
    assert code == 0
    listed = [l.split("(")[0] for l in out.splitlines() if not l.startswith(" ")]
    assert listed == list(USER_OPS)
    assert "conv(out, kernel, stride=1, pad=0, dilation=1, groups=1, bias=true)" in out
    assert set(USER_OPS) == {k for k, op in OPS.items() if op.category not in ("merge", "input")}


def test_help_and_version(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "table" in out and "explain" in out and "check" in out
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith("nnspec ")


def test_python_dash_m_nnspec():
    r = subprocess.run([sys.executable, "-m", "nnspec", "table", "specs/alexnet.nn", "--format", "text"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout == report.to_text(__import__("nnspec").load(ALEXNET).analyze())
    r = subprocess.run([sys.executable, "-m", "nnspec", "check", "tests/golden/errors/unknown_op.nn"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "error[NN010]" in r.stderr and "Traceback" not in r.stderr


def test_table_does_not_import_torch():
    code = ("import sys\nfrom nnspec.cli import main\nmain(['table', 'specs/vgg16.nn', '--format', 'text'])\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
