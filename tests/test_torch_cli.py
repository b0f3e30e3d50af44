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
