"""Activations: one table of rows, each with f and its derivative written over an array module.

A row is everything nnspec knows about an activation: its arguments, its formula `f(x, a, xp)`,
the derivative `df(v, a, xp)` of f with respect to its input evaluated from the one value its
backward pass keeps (`keeps`: the input x, or the output y when f′ is a function of y), its
traits, and for the rectifier family the slope below zero (`leak`, which gives the closed
forms of the variance estimate). The linter's variance estimate, the docs, the PyTorch backend's
fallback module and the NumPy backend all evaluate these same functions; `xp` is `NUMPY`,
`TORCH` (see `torch_xp`) or any namespace with the few functions of `ArrayOps`.

Adding an activation is one row here (plus, where a framework ships a native module, one line
in that backend's table).

>>> import numpy as np
>>> row = ACTIVATIONS["relu6"]
>>> row.f(np.array([-1.0, 3.0, 9.0]), {}, NUMPY).tolist()
[0.0, 3.0, 6.0]
>>> row.df(np.array([-1.0, 3.0, 9.0]), {}, NUMPY).tolist()
[0.0, 1.0, 0.0]
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Callable, ClassVar

from .base import Arg, Example, Op, Tensor, register

# ---- array modules ----------------------------------------------------------------------------


class ArrayOps:
    """The array functions activation formulas may use, over NumPy. A framework's namespace
    provides the same names (see `torch_xp`). Python scalars mixed with arrays keep the array's
    dtype (NumPy ≥ 2 weak scalars; NumPy 1.x value-based casting).

    NumPy is imported on first use: `import nnspec` and `nnspec table` do not pay for it."""

    _NAMES = ("exp", "expm1", "log1p", "tanh", "abs", "where", "clip")

    def __getattr__(self, name):
        if name not in self._NAMES:
            raise AttributeError(name)
        import numpy as np
        fn = getattr(np, name)
        setattr(self, name, fn)  # looked up once
        return fn

    @staticmethod
    def erf(x):
        # NumPy has no erf; math.erf per element is exact but slow (only GELU uses it).
        import numpy as np
        x = np.asarray(x)
        return np.frompyfunc(math.erf, 1, 1)(x).astype(x.dtype if x.dtype.kind == "f" else float)

    @staticmethod
    def as_float(cond, like):
        """A boolean array as 0/1 values of `like`'s dtype."""
        import numpy as np
        kind = np.asarray(like).dtype
        return np.asarray(cond).astype(kind if kind.kind == "f" else float)


NUMPY = ArrayOps()


def torch_xp():
    """The same namespace over torch (imported on first use only)."""
    import torch

    class TorchOps:
        exp, expm1, log1p, tanh, abs, where, clip, erf = (
            torch.exp, torch.expm1, torch.log1p, torch.tanh, torch.abs, torch.where, torch.clip,
            torch.erf)

        @staticmethod
        def as_float(cond, like):
            return cond.to(like.dtype)

    return TorchOps()


# ---- the table --------------------------------------------------------------------------------

INF = math.inf


def _sigmoid(x, xp):
    return 0.5 * (1 + xp.tanh(0.5 * x))  # = 1/(1 + e^−x), with no overflow for large |x|


def _softplus(x, a, xp):
    # PyTorch's Softplus: x itself above the threshold, log(1 + e^x) below
    t = a.get("threshold", 20.0)
    return xp.where(x > t, x, xp.log1p(xp.exp(xp.clip(x, -INF, t))))


@dataclass(frozen=True)
class Activation:
    name: str
    doc: str
    f: Callable                     # f(x, attrs, xp) -> y
    df: Callable                    # df(kept, attrs, xp) -> dy/dx, kept = x or y (`keeps`)
    keeps: str = "input"            # "input" | "output"
    traits: frozenset = frozenset()
    args: tuple = ()
    leak: Callable | None = None    # rectifiers: the slope below zero, from the attributes
    label: Callable | None = None   # a table label from the attributes


def _phi(x, xp):
    return 0.5 * (1 + xp.erf(x / math.sqrt(2)))


def _gelu_df(x, a, xp):
    return _phi(x, xp) + x * xp.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _silu_df(x, a, xp):
    s = _sigmoid(x, xp)
    return s * (1 + x * (1 - s))


def _mish_df(x, a, xp):
    t = xp.tanh(_softplus(x, {}, xp))
    return t + x * (1 - t * t) * _sigmoid(x, xp)


def _between(x, lo, hi, xp):
    return xp.as_float((x > lo) & (x < hi), x)


_SIXTH = struct.unpack("f", struct.pack("f", 1 / 6))[0]  # float32(1/6), as a Python float
_RECT = frozenset({"elementwise", "relu_like"})
_SAT = frozenset({"elementwise", "saturating"})

ROWS: tuple[Activation, ...] = (
    Activation("relu", "max(0, x)",
               lambda x, a, xp: xp.clip(x, 0, None),  # one pass, NaN kept (as torch.relu)
               lambda y, a, xp: xp.as_float(y > 0, y), "output", _RECT, leak=lambda a: 0.0),
    Activation("leaky_relu", "max(a·x, x), a = 0.01 by default",
               lambda x, a, xp: xp.where(x > 0, x, a["a"] * x),
               lambda x, a, xp: xp.where(x > 0, 1 + 0 * x, a["a"] + 0 * x), "input", _RECT,
               (Arg("a", "float", 0.01),), leak=lambda a: a["a"],
               label=lambda a: f"leaky_relu {a['a']:g}"),
    Activation("rrelu", "leaky ReLU with a slope sampled in [lower, upper] during training "
                        "(the mean slope at evaluation)",
               lambda x, a, xp: xp.where(x > 0, x, (a["lower"] + a["upper"]) / 2 * x),
               lambda x, a, xp: xp.where(x > 0, 1 + 0 * x, (a["lower"] + a["upper"]) / 2 + 0 * x),
               "input", _RECT | {"random"},
               (Arg("lower", "float", 1 / 8), Arg("upper", "float", 1 / 3)),
               leak=lambda a: (a["lower"] + a["upper"]) / 2),
    Activation("elu", "x if x > 0 else a·(e^x − 1)",
               lambda x, a, xp: xp.where(x > 0, x, a["a"] * xp.expm1(xp.clip(x, -INF, 0))),
               lambda x, a, xp: xp.where(x > 0, 1 + 0 * x, a["a"] * xp.exp(xp.clip(x, -INF, 0))),
               "input", _RECT, (Arg("a", "float", 1.0),), label=lambda a: f"elu {a['a']:g}"),
    Activation("gelu", "x·Φ(x), Φ the standard normal CDF",
               lambda x, a, xp: x * _phi(x, xp), _gelu_df, "input", _RECT),
    Activation("silu", "x·sigmoid(x) (swish)",
               lambda x, a, xp: x * _sigmoid(x, xp), _silu_df, "input", _RECT),
    Activation("mish", "x·tanh(softplus(x))",
               lambda x, a, xp: x * xp.tanh(_softplus(x, {}, xp)), _mish_df, "input", _RECT),
    Activation("softplus", "log(1 + e^x) (x itself above `threshold`)",
               _softplus,
               lambda x, a, xp: xp.where(x > a["threshold"], 1 + 0 * x, _sigmoid(x, xp)),
               "input", _RECT, (Arg("threshold", "float", 20.0),)),
    Activation("relu6", "min(max(0, x), 6) (MobileNet)",
               lambda x, a, xp: xp.clip(x, 0, 6),
               lambda x, a, xp: _between(x, 0, 6, xp), "input", _RECT),
    Activation("hardswish", "x·relu6(x + 3)/6 (MobileNetV3)",
               lambda x, a, xp: x * xp.clip(x / 6 + 0.5, 0, 1),
               lambda x, a, xp: xp.where(x <= -3, 0 * x, xp.where(x < 3, x / 3 + 0.5, 1 + 0 * x)),
               "input", _RECT),
    Activation("sigmoid", "1 / (1 + e^−x)",
               lambda x, a, xp: _sigmoid(x, xp),
               lambda y, a, xp: y * (1 - y), "output", _SAT),
    Activation("tanh", "tanh(x)",
               lambda x, a, xp: xp.tanh(x),
               lambda y, a, xp: 1 - y * y, "output", _SAT),
    Activation("hardsigmoid", "relu6(x + 3)/6: a piecewise-linear sigmoid",
               lambda x, a, xp: xp.clip(x / 6 + 0.5, 0, 1),
               # PyTorch's slope is float32(1/6) at every precision: a parity trap in float64
               lambda x, a, xp: _between(x, -3, 3, xp) * _SIXTH, "input", _SAT),
    Activation("hardtanh", "x clipped to [min, max]",
               lambda x, a, xp: xp.clip(x, a["min"], a["max"]),
               lambda x, a, xp: _between(x, a["min"], a["max"], xp), "input", _SAT,
               (Arg("min", "float", -1.0), Arg("max", "float", 1.0)),
               label=lambda a: f"hardtanh {a['min']:g}..{a['max']:g}"),
)

ACTIVATIONS: dict[str, Activation] = {}


class _Activation(Op):
    """An op whose facts come from a row of the table."""
    category = "activation"
    stores = "inplace"
    row: ClassVar[Activation | None] = None
    example = Example(((6,),))

    def label(self, a):
        return self.row.label(a) if self.row is not None and self.row.label else self.name


_TABLE_ROWS: set[str] = set()  # the ops registered from a row (prelu's row only describes it)


def _register_row(row: Activation) -> None:
    ACTIVATIONS[row.name] = row
    _TABLE_ROWS.add(row.name)
    cls = type(row.name.title().replace("_", ""), (_Activation,),
               {"name": row.name, "doc": row.doc, "args": row.args, "row": row,
                "traits": frozenset(row.traits), "keeps": frozenset({row.keeps})})
    register(cls)


def is_formula(op: str) -> bool:
    """Whether an op is its table row and nothing more: a backend may run it from f and f′
    alone. Not so for prelu (a learned slope) or a row that draws random numbers in training
    (rrelu), which need their own implementation in each backend."""
    row = ACTIVATIONS.get(op)
    return row is not None and op in _TABLE_ROWS and "random" not in row.traits


def add_row(row: Activation) -> None:
    """Register one more activation (what a new row of ROWS does; tests use it to prove that
    one row is all an activation needs)."""
    _register_row(row)


for _row in ROWS:
    _register_row(_row)


# ---- activations with more than a formula ------------------------------------------------------

def _prelu_f(x, a, xp):
    return xp.where(x > 0, x, a["init"] * x)


_PRELU_ROW = Activation("prelu", "max(a·x, x) with a learned slope a (one, or one per channel)",
                        _prelu_f, lambda x, a, xp: xp.where(x > 0, 1 + 0 * x, a["init"] + 0 * x),
                        "input", _RECT, leak=lambda a: a["init"])
ACTIVATIONS["prelu"] = _PRELU_ROW  # f and f′ at the initial slope (the variance estimate's view)


@register
class PReLU(_Activation):
    name = "prelu"
    doc = _PRELU_ROW.doc
    args = (Arg("per_channel", "bool", False), Arg("init", "float", 0.25))
    row = _PRELU_ROW
    traits = _RECT
    example = Example(((3, 4, 4),), (), {"per_channel": True})

    def tensors(self, ins, a):
        return (Tensor("weight", (ins[0][0] if a["per_channel"] else 1,), "param"),)


@register
class Softmax(_Activation):
    name = "softmax"
    stores = "new"
    doc = "exp(x_i) / Σ exp(x_j) over the channel (feature) axis"
    traits = frozenset({"probabilities"})
    keeps = frozenset({"output"})


@register
class LogSoftmax(_Activation):
    name = "log_softmax"
    stores = "new"
    doc = "log of softmax, over the channel (feature) axis"
    traits = frozenset({"log_probabilities"})
    keeps = frozenset({"output"})
