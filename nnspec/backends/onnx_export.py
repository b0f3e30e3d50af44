"""`nnspec export --onnx`: a compiled model to an ONNX file, checked with onnx.checker.

Uses torch.onnx's exporter (torch.export based; it needs the `onnxscript` package, from
`pip install "nnspec[onnx]"`), with a dynamic batch axis. Where onnxruntime is installed,
`run_onnx` runs the file for comparisons.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings


class ExportError(Exception):
    """The model could not be exported or the exported file does not check."""


def export_onnx(model, path, input_shape, *, batch: int = 1, opset: int | None = None,
                check: bool = True) -> str:
    """Write `model` (evaluation mode) to `path`; input "input" of shape (batch, *input_shape)
    with a dynamic batch axis, output "output". Returns the path."""
    import torch
    try:
        import onnxscript  # noqa: F401  (torch.onnx's exporter needs it)
    except ImportError:
        raise ExportError("ONNX export needs the onnx and onnxscript packages: "
                          "pip install \"nnspec[onnx]\"") from None
    path = os.fspath(path)
    was_training = model.training
    model.eval()
    x = torch.randn(batch, *input_shape)
    dims = ({0: torch.export.Dim("batch", min=1, max=65536)},)
    noise = io.StringIO()
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._export",
                                               "torch.onnx._internal.exporter._registration")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(noise), _inference_forms(model):
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (x,), path, dynamo=True, verbose=False, external_data=False,
                              input_names=["input"], output_names=["output"], opset_version=opset,
                              dynamic_shapes=dims)
    except Exception as e:
        raise ExportError(f"torch.onnx could not export the model: {type(e).__name__}: "
                          f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}") from e
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
        model.train(was_training)
    if check:
        check_onnx(path)
    return path


@contextlib.contextmanager
def _inference_forms(model):
    """Swap in, for the export, modules whose inference form ONNX can express: RReLU (a
    random slope in training) is a leaky ReLU with the mean slope in evaluation."""
    from torch import nn
    swapped = []
    for parent in model.modules():
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.RReLU):
                swapped.append((parent, name, child))
                parent._modules[name] = nn.LeakyReLU((child.lower + child.upper) / 2)
    try:
        yield
    finally:
        for parent, name, child in swapped:
            parent._modules[name] = child


def check_onnx(path) -> None:
    import onnx
    try:
        onnx.checker.check_model(os.fspath(path), full_check=True)
    except Exception as e:
        raise ExportError(f"{path}: onnx.checker rejects the file: {e}") from e


def run_onnx(path, x):
    """Outputs of the ONNX file on `x` (a NumPy array) with onnxruntime on the CPU."""
    import onnxruntime
    session = onnxruntime.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]
