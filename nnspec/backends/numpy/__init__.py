"""The NumPy backend: a readable reference implementation of every op it supports.

`NUMPY_OPS` maps an op of the registry (`nnspec.ops.OPS`) to its (forward, backward) pair of
`layers`, `windows`, `norms` or `regularizers` (cs231n style; the activation rows run generically from the registry's table, f and
f′, never a second copy of a formula). `UNSUPPORTED` names the ops this backend cannot run
and why (none today); a layer may also raise `Unsupported` for arguments it lacks (3-D
convolution and pooling). Both
are reported when the model is built, as NN040 with the spec location, never mid-training.

`compile_numpy(spec)` (what `nnspec.compile(spec, backend="numpy")` calls) returns a
`NumpyModel` (see `model`).

>>> import nnspec, numpy as np
>>> m = nnspec.compile(nnspec.loads("input 3x8x8\\nconv(4, 3, pad=1) relu\\nflatten\\nlinear(10)"),
...                    backend="numpy")
>>> m.forward(np.zeros((2, 3, 8, 8), np.float32)).shape, sum(p.size for p in m.parameters().values())
((2, 10), 2682)
"""

from __future__ import annotations

import functools
from typing import Callable

from ...ops import is_formula
from . import layers as L
from . import norms as N
from . import regularizers as R
from . import windows as W
from .layers import Context, Unsupported

Pair = tuple[Callable, Callable]

NUMPY_OPS: dict[str, Pair] = {
    "linear": (L.linear_forward, L.linear_backward),
    "conv": (W.conv_forward, W.conv_backward),
    "maxpool": (W.maxpool_forward, W.maxpool_backward),
    "avgpool": (W.avgpool_forward, W.avgpool_backward),
    "adaptive_avgpool": (W.adaptive_avgpool_forward, W.adaptive_avgpool_backward),
    "global_avgpool": (W.global_avgpool_forward, W.global_avgpool_backward),
    "flatten": (L.flatten_forward, L.flatten_backward),
    "identity": (L.identity_forward, L.identity_backward),
    "batchnorm": (N.batchnorm_forward, N.batchnorm_backward),
    "dropout": (L.dropout_forward, L.dropout_backward),
    "prelu": (L.prelu_forward, L.prelu_backward),
    "softmax": (L.softmax_forward, L.softmax_backward),
    "log_softmax": (L.log_softmax_forward, L.log_softmax_backward),
    "add": (L.add_forward, L.add_backward),
    "concat": (L.concat_forward, L.concat_backward),
    "mul": (L.mul_forward, L.mul_backward),
    "layernorm": (N.layernorm_forward, N.layernorm_backward),
    "groupnorm": (N.groupnorm_forward, N.groupnorm_backward),
    "instancenorm": (N.instancenorm_forward, N.instancenorm_backward),
    "stochastic_depth": (L.stochastic_depth_forward, L.stochastic_depth_backward),
    "maxout": (L.maxout_forward, L.maxout_backward),
    "conv_transpose": (W.conv_transpose_forward, W.conv_transpose_backward),
    "upsample": (W.upsample_forward, W.upsample_backward),
    "lrn": (N.lrn_forward, N.lrn_backward),
    "rrelu": (L.rrelu_forward, L.rrelu_backward),
    "dropconnect": (R.dropconnect_forward, R.dropconnect_backward),
    "fractional_maxpool": (R.fractional_maxpool_forward, R.fractional_maxpool_backward),
}

# op -> why this backend cannot run it. An op added to the registry must be added to
# NUMPY_OPS, be an activation row, or be listed here (tests/test_registry.py checks).
UNSUPPORTED: dict[str, str] = {}



def pair_for(op: str) -> Pair | None:
    """The op's (forward, backward): the table's, else the generic pair of an activation row."""
    if op in UNSUPPORTED:
        return None
    found = NUMPY_OPS.get(op)
    if found is None and is_formula(op):
        return functools.partial(L.activation_forward, op=op), L.activation_backward
    return found


def implemented(op: str) -> bool:
    """Whether this backend can run an op (its arguments may still be refused). The input is
    the argument of `forward`, not a layer: it counts as implemented."""
    return op == "input" or pair_for(op) is not None


def compile_numpy(spec, dtype="float32", seed: int | None = None, **network_args):
    """A NumpyModel from a spec (a Spec or a path); see `model.NumpyModel`."""
    from .model import NumpyModel
    from ..torch import as_spec  # no torch import: as_spec only reads the spec
    return NumpyModel(as_spec(spec, network_args).graph, dtype=dtype, seed=seed)


__all__ = ["Context", "NUMPY_OPS", "UNSUPPORTED", "Unsupported", "compile_numpy", "implemented",
           "pair_for"]
