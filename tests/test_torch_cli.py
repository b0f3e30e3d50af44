"""`nnspec compile`, `nnspec export` and `nnspec weights` from the command line."""

import pathlib
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

import nnspec  # noqa: E402
from nnspec.backends.weights import save_weights  # noqa: E402
from nnspec.cli import main  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
MLP = str(ROOT / "specs" / "mlp_digits.nn")


@pytest.fixture
def mlp(tmp_path):
    """The digits MLP without its `-> 10` shape assertion, so that --set classes=N works."""
    path = tmp_path / "mlp.nn"
    path.write_text(pathlib.Path(MLP).read_text().replace("-> 10 ", "      "))
    return str(path)


def test_compile_builds_and_summarises(capsys):
    assert main(["compile", MLP]) == 0
    out = capsys.readouterr().out
    assert "(fc1): Linear(in_features=64, out_features=128, bias=True)" in out
    assert out.rstrip().endswith("mlp_digits: 17,226 parameters, 0 buffer values")


def test_compile_emit_writes_source(tmp_path, capsys, mlp):
    assert main(["compile", MLP, "--emit", "torch"]) == 0
    assert "class MlpDigits(nn.Module):" in capsys.readouterr().out
    out = tmp_path / "mlp.py"
    assert main(["compile", mlp, "--emit", "torch", "-o", str(out), "--set", "classes=3"]) == 0
    assert "def __init__(self, classes=3):" in out.read_text()


def test_build_errors_are_rendered_like_every_spec_error(tmp_path, capsys):
    bad = tmp_path / "bad.nn"
    bad.write_text("input 3x16x16\npool: maxpool(3, dilation=2, pad=2)\n")
    assert main(["compile", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "error[NN040]: pool: the torch backend cannot build `maxpool`" in err
    assert f" --> {bad}:2:7" in err and "^^^" in err


def test_weights_reports_and_exits_1_on_problems(tmp_path, capsys, mlp):
    MLP = mlp
    donor = nnspec.compile(MLP, classes=5)
    save_weights(donor, tmp_path / "w.safetensors")
    assert main(["weights", MLP, str(tmp_path / "w.safetensors")]) == 1
    out = capsys.readouterr().out
    assert "4 of 6 model tensors loaded" in out and "mismatch  fc3.weight  10x64  5x64" in out
    assert main(["weights", MLP, str(tmp_path / "w.safetensors"), "--drop", "fc3."]) == 1  # fc3 missing
    assert "missing" in capsys.readouterr().out
    assert main(["weights", MLP, str(tmp_path / "w.safetensors"), "--set", "classes=5",
                 "-o", str(tmp_path / "out.pt")]) == 0
    assert set(torch.load(tmp_path / "out.pt", weights_only=True)) == set(donor.state_dict())


def test_weights_with_a_prefix_map(tmp_path, capsys):
    donor = nnspec.compile(MLP)
    torch.save({f"module.{k}": v for k, v in donor.state_dict().items()}, tmp_path / "dp.pt")
    assert main(["weights", MLP, str(tmp_path / "dp.pt"), "--map", "module.="]) == 0
    assert "6 of 6 model tensors loaded" in capsys.readouterr().out


def test_weights_refuses_pickled_code(tmp_path, capsys):
    torch.save({"x": print}, tmp_path / "code.pt")
    assert main(["weights", MLP, str(tmp_path / "code.pt")]) == 1
    assert "refused" in capsys.readouterr().err


def test_export_onnx(tmp_path, capsys):
    pytest.importorskip("onnxscript")
    out = tmp_path / "mlp.onnx"
    assert main(["export", MLP, "--onnx", str(out), "--batch", "4"]) == 0
    assert out.stat().st_size > 17_226 * 4
    assert "checked with onnx.checker" in capsys.readouterr().err


def test_table_does_not_import_torch():
    code = ("import sys, nnspec.cli as c; c.main(['table', %r, '--format', 'text']); "
            "assert 'torch' not in sys.modules, 'torch imported'" % MLP)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


# ---- hostile flags and outputs (issue "Hostile specs, files and flags…") ---------------------

@pytest.mark.parametrize("opset", ["-5", "13", "24", "x", "9" * 300])
def test_export_opset_outside_the_exporters_range_is_a_usage_error(tmp_path, capsys, opset):
    from nnspec.backends.onnx_export import opset_range
    low, high = opset_range()
    assert (low, high) == (18, torch.onnx._constants.ONNX_MAX_OPSET)
    assert main(["export", MLP, "--onnx", str(tmp_path / "m.onnx"), "--opset", opset]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"nnspec: error: --opset must be an integer from 18 to {high} ")
    assert len(err.splitlines()) == 1 and not (tmp_path / "m.onnx").exists()


def test_export_writes_the_opset_asked_for_and_no_temporary(tmp_path, capsys):
    pytest.importorskip("onnxscript")
    onnx = pytest.importorskip("onnx")
    out = tmp_path / "m.onnx"
    assert main(["export", MLP, "--onnx", str(out), "--opset", "18"]) == 0
    assert [o.version for o in onnx.load(str(out)).opset_import if o.domain in ("", "ai.onnx")] == [18]
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


@pytest.mark.parametrize("where,why", [("nope/m.onnx", "the folder '{}/nope' does not exist"),
                                       (".", "Is a directory; give a file name")])
def test_export_to_a_path_that_cannot_be_written(tmp_path, capsys, where, why):
    target = str(tmp_path / where) if where != "." else str(tmp_path)
    assert main(["export", MLP, "--onnx", target]) == 2
    assert capsys.readouterr().err == f"nnspec: error: cannot write '{target}': {why.format(tmp_path)}\n"


def test_export_batch_is_checked_by_the_library_too(tmp_path):
    from nnspec.backends.onnx_export import ExportError, export_onnx
    with pytest.raises(ExportError, match="the example batch must be from 1 to 65,536, got -1"):
        export_onnx(nnspec.compile(MLP), tmp_path / "m.onnx", (64,), batch=-1)


@pytest.mark.parametrize("command", [["compile"], ["export", "--onnx", "{}/m.onnx"]])
def test_a_model_too_large_to_allocate_is_refused_before_building(tmp_path, capsys, command):
    """10^17 x 10^17 weights: the analyzer knows the size, PyTorch never tries to allocate it."""
    big = tmp_path / "big.nn"
    big.write_text("input 100000000000000000\nfc: linear(100000000000000000)\n")
    argv = [command[0], str(big)] + [a.format(tmp_path) for a in command[1:]]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"nnspec: error: {'building' if command[0] == 'compile' else 'exporting'} "
                          "big needs ") and "of memory available; `nnspec table` gives every figure" in err
    # (10^17 · 10^17 + 10^17) · 4 bytes = 4.00e+34 B; the export adds the forward pass
    assert "needs 4.00e+34 B for its parameters and buffers (float32)" in err \
        or "needs 4.00e+34 B for its parameters, buffers and one forward pass (float32)" in err
    assert len(err.splitlines()) == 1
