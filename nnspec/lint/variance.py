"""A static, layer-by-layer estimate of the activation scale at initialisation.

Model (the one behind Glorot & Bengio 2010 and He et al. 2015): inputs are standardised
(E[x²] = 1), weights are independent, zero-mean, with the variance their init scheme gives
(nnspec/backends/init.py draws them). Biases are left out: they are zero under every scheme
but `default`, and even there they are constant for every input, so the estimate follows
the part of each activation that carries the input. A weighted layer gives pre-activations z with
`E[z²] = fan_in · Var(W) · E[x²]`, and an activation f gives `E[f(z)²]` for
z ~ N(0, E[z²]) (closed form for the ReLU family, numerical for the rest). Batch norm resets
E[x²] to 1 (gamma = 1, beta = 0); inverted dropout multiplies it by 1/(1 − p) in training;
pooling, LRN and reshapes are taken as scale-preserving; `add` sums independent paths;
`concat` averages them by channels.

>>> round(relu_gain(), 3)   # E[relu(z)²] / E[z²]
0.5
>>> round(expect("tanh", {}, 1.0, "slope"), 3)   # E[tanh'(z)], z ~ N(0, 1)
0.606
"""

from __future__ import annotations

import math
from functools import lru_cache

# A fixed quadrature for E[g(z)], z ~ N(0, 1): the trapezoid rule on [-8, 8] is accurate to
# about 1e-6 for the smooth functions used here and costs 161 evaluations.
_Z = [i / 10 for i in range(-80, 81)]
_W0 = [math.exp(-z * z / 2) for z in _Z]
_W = [w / sum(_W0) for w in _W0]


def relu_gain() -> float:
    return 0.5


def _leak(op: str, a: dict) -> float | None:
    if op == "relu":
        return 0.0
    if op == "leaky_relu":
        return a.get("a", 0.01)
    if op == "rrelu":
        return (a.get("lower", 1 / 8) + a.get("upper", 1 / 3)) / 2
    if op == "prelu":
        return a.get("init", 0.25)
    return None


def _f(op: str, a: dict):
    if op == "sigmoid":
        return lambda z: 1 / (1 + math.exp(-z)) if z > -700 else 0.0
    if op == "tanh":
        return math.tanh
    if op == "elu":
        alpha = a.get("a", 1.0)
        return lambda z: z if z > 0 else alpha * math.expm1(z)
    if op == "gelu":
        return lambda z: z * 0.5 * (1 + math.erf(z / math.sqrt(2)))
    row = _row(op)  # any other activation: its formula in the registry's table
    return lambda z: float(row.f(z, a, _numpy()))


def _slope(op: str, a: dict):
    if op == "sigmoid":
        def d(z):
            s = 1 / (1 + math.exp(-z)) if z > -700 else 0.0
            return s * (1 - s)
        return d
    if op == "tanh":
        return lambda z: 1 - math.tanh(z) ** 2
    if op == "elu":
        alpha = a.get("a", 1.0)
        return lambda z: 1.0 if z > 0 else alpha * math.exp(z)
    if op == "gelu":
        return lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2))) + z * math.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    row = _row(op)
    xp = _numpy()
    return lambda z: float(row.df(row.f(z, a, xp) if row.keeps == "output" else z, a, xp))


def _row(op: str):
    from ..ops import ACTIVATIONS
    if op not in ACTIVATIONS:
        raise KeyError(op)
    return ACTIVATIONS[op]


def _numpy():
    from ..ops import NUMPY
    return NUMPY


def expect(op: str, attrs: dict, var: float, what: str = "square") -> float:
    """E[f(z)²] ("square") or E[f'(z)] ("slope") for z ~ N(0, var)."""
    key = tuple(sorted((k, v) for k, v in attrs.items() if isinstance(v, (int, float))))
    return _expect(op, key, float(f"{var:.6g}"), what)


@lru_cache(maxsize=4096)
def _expect(op: str, key: tuple, var: float, what: str) -> float:
    a = dict(key)
    leak = _leak(op, a)
    if leak is not None:  # piecewise linear: closed form
        return var * (1 + leak * leak) / 2 if what == "square" else (1 + leak) / 2
    s = math.sqrt(max(var, 0.0))
    g = _f(op, a) if what == "square" else _slope(op, a)
    if what == "square":
        return sum(w * g(s * z) ** 2 for z, w in zip(_Z, _W))
    return sum(w * g(s * z) for z, w in zip(_Z, _W))


# ---- weights --------------------------------------------------------------------------------

def weight_variance(init, fan_in: int, fan_out: int) -> float | None:
    """E[w²] of one weight under an init scheme; None for constant schemes (no spread)."""
    name, o = init.name, init.options
    if name == "default":   # PyTorch's kaiming_uniform_(a=√5): U(±1/√fan_in)
        return 1 / (3 * fan_in)
    if name == "xavier":
        return 2 / (fan_in + fan_out)
    if name == "he":
        return 2 / (fan_out if o.get("mode") == "fan_out" else fan_in)
    if name == "normal":
        return o["std"] ** 2 + o.get("mean", 0.0) ** 2
    if name == "uniform":
        return o["a"] ** 2 / 3
    return None  # zeros, constant


# ---- the pass -------------------------------------------------------------------------------

def second_moments(cx) -> list[float | None]:
    """E[x²] of every node's output at initialisation (None once it cannot be estimated)."""
    from .context import fan
    g = cx.graph
    q: list[float | None] = [1.0]
    for nd in g.nodes[1:]:
        ins = [q[i] for i in nd.inputs]
        if any(v is None for v in ins):
            q.append(None)
            continue
        x = ins[0]
        cat = nd.opdef.category
        if cat in ("conv", "linear"):
            fi, fo = fan(nd, g)
            wv = weight_variance(cx.init_of(nd), fi, fo)
            q.append(None if wv is None else fi * wv * x)
        elif nd.op == "batchnorm":
            q.append(1.0)
        elif nd.op == "dropout":
            p = nd.attrs["p"]
            q.append(x / (1 - p) if p < 1 else None)
        elif nd.op == "add":
            q.append(sum(ins))
        elif nd.op == "concat":
            chans = [g.nodes[i].shape[0] for i in nd.inputs]
            q.append(sum(c * v for c, v in zip(chans, ins)) / sum(chans))
        elif cat == "activation" and nd.op not in ("softmax", "log_softmax"):
            q.append(expect(nd.op, dict(nd.attrs), x, "square"))
        elif nd.op in ("softmax", "log_softmax"):
            q.append(None)
        else:  # pooling, lrn, flatten, identity
            q.append(x)
    return q
