"""`nnspec export --onnx`: the exported file passes onnx.checker and, with onnxruntime, computes
what the PyTorch model computes, at another batch size than the one exported with."""

import pathlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxscript")

import nnspec  # noqa: E402
from nnspec.backends.onnx_export import ExportError, check_onnx, export_onnx  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
CASES = [ROOT / "specs" / "cnn_digits.nn", ROOT / "tests" / "data" / "torch" / "kitchen.nn",
         ROOT / "tests" / "data" / "torch" / "seq1d.nn",
         ROOT / "tests" / "data" / "torch" / "decoder.nn"]  # up-sampling, norms, mul


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_export_checks_and_matches_pytorch(path, tmp_path):
    spec = nnspec.load(path)
    torch.manual_seed(0)
    model = nnspec.compile(spec)
    out = export_onnx(model, tmp_path / "m.onnx", spec.graph.input.shape, batch=2)
    check_onnx(out)
    assert model.training  # export leaves the model as it found it
    ort = pytest.importorskip("onnxruntime")
    del ort
    from nnspec.backends.onnx_export import run_onnx
    x = torch.randn(5, *spec.graph.input.shape)
    model.eval()
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(run_onnx(out, x.numpy()), want, rtol=1e-4, atol=1e-5)


def test_a_file_that_is_not_onnx_fails_the_check(tmp_path):
    (tmp_path / "bad.onnx").write_bytes(b"\x08\x07garbage")
    with pytest.raises(ExportError, match="onnx.checker"):
        check_onnx(tmp_path / "bad.onnx")
