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

    _NAMES = ("exp", "expm1", "log1p", "tanh", "abs", "where", "clip", "floor")

    def __getattr__(self, name):
        if name not in self._NAMES:
            raise AttributeError(name)
        import numpy as np
        fn = getattr(np, name)
        setattr(self, name, fn)  # looked up once
        return fn

    @staticmethod
    def erf(x):
        """NumPy has no erf: W. J. Cody's rational approximations (`cody_erf`), in blocks of
        65536 values whose temporaries stay in cache (1M values: 275 -> 110 ms; math.erf per
        element 330 ms)."""
        import numpy as np
        x = np.asarray(x)
        if x.size <= _ERF_BLOCK:
            return cody_erf(x, NUMPY)
        out = np.empty(x.shape, x.dtype if x.dtype.kind == "f" else float)
        flat, dest = x.reshape(-1), out.reshape(-1)
        for i in range(0, flat.size, _ERF_BLOCK):
            dest[i:i + _ERF_BLOCK] = cody_erf(flat[i:i + _ERF_BLOCK], NUMPY)
        return out

    @staticmethod
    def as_float(cond, like):
        """A boolean array as 0/1 values of `like`'s dtype."""
        import numpy as np
        kind = np.asarray(like).dtype
        return np.asarray(cond).astype(kind if kind.kind == "f" else float)


NUMPY = ArrayOps()

# W. J. Cody, "Rational Chebyshev approximations for the error function", Math. Comp. 23
# (1969), as in his CALERF (netlib specfun): erf on |x| <= 0.46875, erfc·e^{x²} on
# 0.46875 < |x| <= 4 and beyond; relative error below 1e-16 in float64 (tests/test_registry.py
# against math.erf).
_ERF_A = (3.16112374387056560e00, 1.13864154151050156e02, 3.77485237685302021e02,
          3.20937758913846947e03, 1.85777706184603153e-1)
_ERF_B = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03,
          2.84423683343917062e03)
_ERF_C = (5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01,
          2.98635138197400131e02, 8.81952221241769090e02, 1.71204761263407058e03,
          2.05107837782607147e03, 1.23033935479799725e03, 2.15311535474403846e-8)
_ERF_D = (1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02,
          1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03,
          3.43936767414372164e03, 1.23033935480374942e03)
_ERF_P = (3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1,
          1.60837851487422766e-2, 6.58749161529837803e-4, 1.63153871373020978e-2)
_ERF_Q = (2.56852019228982242e00, 1.87295284992346725e00, 5.27905102951428412e-1,
          6.05183413124413191e-2, 2.33520497626869185e-3)
_ERF_SMALL, _ERF_MID, _ERF_BIG = 0.46875, 4.0, 26.543  # erfc(26.543) underflows
_ERF_BLOCK = 1 << 16


def cody_erf(x, xp):
    """erf(x) elementwise over the array module `xp` (every branch on the whole array, each
    fed a clipped copy of x so that none overflows; the branch's own range picked by where)."""
    x = xp.where(x == x, x, x)  # an array (a scalar becomes one), NaN kept
    y = xp.abs(x)
    # |x| <= 0.46875: x·A(x²)/B(x²)
    xs = xp.clip(x, -_ERF_SMALL, _ERF_SMALL)
    ysq = xs * xs
    num, den = _ERF_A[4] * ysq, ysq
    for a, b in zip(_ERF_A[:3], _ERF_B[:3]):
        num, den = (num + a) * ysq, (den + b) * ysq
    small = xs * (num + _ERF_A[3]) / (den + _ERF_B[3])
    # 0.46875 < |x| <= 4: erfc = e^{−x²}·C(|x|)/D(|x|)
    ym = xp.clip(y, _ERF_SMALL, _ERF_MID)
    num, den = _ERF_C[8] * ym, ym
    for c, d in zip(_ERF_C[:7], _ERF_D[:7]):
        num, den = (num + c) * ym, (den + d) * ym
    mid = (num + _ERF_C[7]) / (den + _ERF_D[7])
    # |x| > 4: erfc = e^{−x²}/|x|·(1/√π − P(1/x²)/(x²·Q(1/x²)))
    yb = xp.clip(y, _ERF_MID, _ERF_BIG)
    z = 1 / (yb * yb)
    num, den = _ERF_P[5] * z, z
    for pc, qc in zip(_ERF_P[:4], _ERF_Q[:4]):
        num, den = (num + pc) * z, (den + qc) * z
    big = (0.56418958354775628695 - z * (num + _ERF_P[4]) / (den + _ERF_Q[4])) / yb
    # e^{−y²} as e^{−r²}·e^{−(y−r)(y+r)}, r = y rounded down to 1/16: no cancellation in y²
    yt = xp.where(y <= _ERF_MID, ym, yb)
    r = xp.floor(yt * 16) / 16
    erfc = xp.exp(-r * r) * xp.exp(-(yt - r) * (yt + r)) * xp.where(y <= _ERF_MID, mid, big)
    large = (0.5 - erfc) + 0.5
    return xp.where(y <= _ERF_SMALL, small, xp.where(x < 0, -large, large))


def torch_xp():
    """The same namespace over torch (imported on first use only)."""
    import torch

    class TorchOps:
        exp, expm1, log1p, tanh, abs, where, clip, floor, erf = (
            torch.exp, torch.expm1, torch.log1p, torch.tanh, torch.abs, torch.where, torch.clip,
            torch.floor, torch.erf)

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
