"""`nnspec export --onnx`: a compiled model to an ONNX file, checked with onnx.checker.

Uses torch.onnx's exporter (torch.export based; it needs the `onnxscript` package, from
`pip install "nnspec[onnx]"`), with a dynamic batch axis. Where onnxruntime is installed,
`run_onnx` runs the file for comparisons.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings


MAX_BATCH = 65536  # the dynamic batch axis' upper bound; the example batch must lie within it


MIN_OPSET = 18  # torch.onnx's exporter (dynamo) writes opset 18 up; asked for less, it may
                # fail to convert and silently keep 18 (torch 2.13 does so for cnn_digits at 13, 17)


def opset_range() -> tuple[int, int]:
    """The ONNX opsets `export_onnx` writes: 18 to torch's newest (23 in torch 2.13)."""
    try:
        from torch.onnx import _constants
        return max(MIN_OPSET, _constants.ONNX_MIN_OPSET), _constants.ONNX_MAX_OPSET
    except (ImportError, AttributeError):
        return MIN_OPSET, 23


class ExportError(Exception):
    """The model could not be exported or the exported file does not check."""


def export_onnx(model, path, input_shape, *, batch: int = 1, opset: int | None = None,
                check: bool = True) -> str:
    """Write `model` (evaluation mode) to `path`; input "input" of shape (batch, *input_shape)
    with a dynamic batch axis, output "output". Returns the path. The file is written whole
    or not at all: exported and checked under a temporary name in the same folder, then
    renamed over `path`."""
    import torch
    if not isinstance(batch, int) or not 1 <= batch <= MAX_BATCH:
        raise ExportError(f"the example batch must be from 1 to {MAX_BATCH:,}, got {batch!r}")
    try:
        import onnxscript  # noqa: F401  (torch.onnx's exporter needs it)
    except ImportError:
        raise ExportError("ONNX export needs the onnx and onnxscript packages: "
                          "pip install \"nnspec[onnx]\"") from None
    final = os.fspath(path)
    path = os.path.join(os.path.dirname(final), f".{os.path.basename(final)}.{os.getpid()}.tmp.onnx")
    try:
        _export(torch, model, path, input_shape, batch, opset)
        if check:
            check_onnx(path, name=final)
        with open(path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(path, final)
    except OSError as e:
        raise ExportError(f"cannot write '{final}': {e.strerror or e}") from None
    finally:
        if os.path.exists(path):
            os.unlink(path)
    return final


def _export(torch, model, path, input_shape, batch, opset) -> None:
    import logging
    was_training = model.training
    model.eval()
    x = torch.randn(batch, *input_shape)
    dims = ({0: torch.export.Dim("batch", min=1, max=MAX_BATCH)},)
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
    if opset is not None:
        written = _opset_of(path)
        if written != opset:
            raise ExportError(f"torch.onnx wrote opset {written}, not the {opset} asked for")


def _opset_of(path) -> int | None:
    import onnx
    model = onnx.load(os.fspath(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


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


def check_onnx(path, name: str | None = None) -> None:
    """ExportError unless onnx.checker accepts the file (`name`: how to call it in the error)."""
    import onnx
    try:
        onnx.checker.check_model(os.fspath(path), full_check=True)
    except Exception as e:
        raise ExportError(f"{name or path}: onnx.checker rejects the file: {e}") from e


def run_onnx(path, x):
    """Outputs of the ONNX file on `x` (a NumPy array) with onnxruntime on the CPU."""
    import onnxruntime
    session = onnxruntime.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]
