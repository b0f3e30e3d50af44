"""nnspec: declarative network specs — parse, check, analyze, lint and compile them.

>>> import nnspec
>>> spec = nnspec.loads("input 784\\nlinear(100) relu\\nlinear(10)")
>>> spec.analyze().totals.params
79510
"""

from .analysis import Analysis
from .errors import Diagnostic, Span, SpecError
from .spec import Spec, load, loads

__all__ = ["Analysis", "Diagnostic", "Span", "Spec", "SpecError", "load", "loads", "compile"]
__version__ = "0.1.0"


def compile(spec, backend: str = "torch", **network_args):
    """Build a trainable model from a spec (a Spec, or a path to a .nn file)."""
    if backend == "torch":
        from .backends.torch import compile_torch
        return compile_torch(spec, **network_args)
    raise ValueError(f"unknown backend {backend!r}; available: 'torch'")
