"""nnspec: declarative network specs — parse, check, analyze, lint and compile them.

>>> import nnspec
>>> spec = nnspec.loads("input 784\\nlinear(100) relu\\nlinear(10)")
>>> spec.analyze().totals.params
79510
"""

from .analysis import Analysis
from .errors import Diagnostic, Span, SpecError
from .spec import Spec, load, loads

__all__ = ["Analysis", "Diagnostic", "Span", "Spec", "SpecError", "load", "loads", "compile", "load_weights",
           "train"]
__version__ = "0.1.0"


def compile(spec, backend: str = "torch", **network_args):
    """Build a trainable model from a spec (a Spec, or a path to a .nn file): an nn.Module
    (backend "torch"), or a `NumpyModel` (backend "numpy"; `dtype="float64"`, `seed=` too)."""
    if backend == "torch":
        from .backends.torch import compile_torch
        return compile_torch(spec, **network_args)
    if backend == "numpy":
        from .backends.numpy import compile_numpy
        return compile_numpy(spec, **network_args)
    raise ValueError(f"unknown backend {backend!r}; available: 'torch', 'numpy'")


def load_weights(model, source, map=None, strict: bool = False):
    """Load a .safetensors / .pt / .pth state dict (or a dict of tensors) into a compiled
    model by name; `map` renames prefixes ({"module.": ""}, {"fc.": None} drops). Returns a
    report of loaded, missing, unexpected and mismatched tensors (`.table()` renders it)."""
    from .backends.weights import load_weights as _load_weights
    return _load_weights(model, source, map=map, strict=strict)


def __getattr__(name):
    # `nnspec.train(spec, …)`: the training package, imported on first use (it is callable)
    if name == "train":
        import importlib
        return importlib.import_module(".train", __name__)
    raise AttributeError(f"module 'nnspec' has no attribute {name!r}")
