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

import numpy as np

from ..ops import ACTIVATIONS, NUMPY

# A fixed quadrature for E[g(z)], z ~ N(0, 1): the trapezoid rule on [-8, 8] is accurate to
# about 1e-6 for the smooth functions used here and costs 161 evaluations (one array).
_Z = np.arange(-80, 81) / 10
_W = np.exp(-_Z * _Z / 2)
_W /= _W.sum()


def relu_gain() -> float:
    return 0.5


def expect(op: str, attrs: dict, var: float, what: str = "square") -> float:
    """E[f(z)²] ("square") or E[f'(z)] ("slope") for z ~ N(0, var), f the activation table's
    row for `op` (`nnspec.ops.ACTIVATIONS`): its f, and its f′ evaluated from the value its
    backward keeps."""
    key = tuple(sorted((k, v) for k, v in attrs.items() if isinstance(v, (int, float))))
    try:  # an estimate past the float range saturates: E[x²] = inf, never an exception
        return _expect(op, key, float(f"{min(var, _MAX_VAR):.6g}"), what)
    except OverflowError:
        return math.inf


_MAX_VAR = 1e300  # larger (or inf) second moments are evaluated here: sqrt(var)·z stays finite


@lru_cache(maxsize=4096)
def _expect(op: str, key: tuple, var: float, what: str) -> float:
    row = ACTIVATIONS[op]
    a = {**{arg.name: arg.default for arg in row.args}, **dict(key)}
    if row.leak is not None:  # piecewise linear through 0: closed form
        leak = row.leak(a)
        return var * (1 + leak * leak) / 2 if what == "square" else (1 + leak) / 2
    z = math.sqrt(max(var, 0.0)) * _Z
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        y = row.f(z, a, NUMPY)
        if what == "square":
            return float(np.sum(_W * y * y))
        return float(np.sum(_W * row.df(y if row.keeps == "output" else z, a, NUMPY)))


# ---- weights --------------------------------------------------------------------------------

def weight_variance(init, fan_in: int, fan_out: int) -> float | None:
    """E[w²] of one weight under an init scheme; None for constant schemes (no spread).
    Saturates to inf (`init normal(std=1e200)`) rather than raising."""
    name, o = init.name, init.options
    if name == "default":   # PyTorch's kaiming_uniform_(a=√5): U(±1/√fan_in)
        return 1 / (3 * fan_in)
    if name == "xavier":
        return 2 / (fan_in + fan_out)
    if name == "he":
        return 2 / (fan_out if o.get("mode") == "fan_out" else fan_in)
    if name == "normal":
        return o["std"] * o["std"] + o.get("mean", 0.0) * o.get("mean", 0.0)
    if name == "uniform":
        return o["a"] * o["a"] / 3
    return None  # zeros, constant


def weight_gain(init, fan_in: int, fan_out: int) -> float | None:
    """fan_in · E[w²]: how much a weighted layer scales E[x²] (1 keeps it). Fan-ins are exact
    integers of any size (a concat doubled 1,100 times has 2^1100 channels): the ratios are
    taken in integers, the products saturate to inf, and a gain is never rounded to zero.

    >>> from nnspec.config import Choice
    >>> weight_gain(Choice("he", {}, None), 2 ** 1100, 10), weight_gain(Choice("default", {}, None), 9, 9)
    (2.0, 0.3333333333333333)
    >>> weight_gain(Choice("normal", {"std": 1e200}, None), 64, 10)
    inf
    """
    name, o = init.name, init.options
    if name == "default":
        g = 1 / 3
    elif name == "xavier":
        g = 2 * fan_in / (fan_in + fan_out)
    elif name == "he":
        g = 2 * fan_in / fan_out if o.get("mode") == "fan_out" else 2.0
    else:
        wv = weight_variance(init, fan_in, fan_out)
        if wv is None:
            return None
        g = wv * (fan_in if fan_in < 2 ** 1023 else math.inf)
    return max(g, _TINY)


_TINY = 5e-324  # the smallest positive float: a positive gain times an infinite E[x²] stays inf


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
        op = nd.opdef
        if "weighted" in op.traits:
            fi, fo = fan(nd, g)
            gain = weight_gain(cx.init_of(nd), fi, fo)
            q.append(None if gain is None else gain * x)
        elif "normalizes" in op.traits:
            q.append(1.0)
        elif "train_only" in op.traits and "p" in nd.attrs:  # inverted dropout's 1/(1 − p)
            p = nd.attrs["p"]
            q.append(x / (1 - p) if p < 1 else None)
        elif nd.op == "add":
            q.append(sum(ins))
        elif nd.op == "concat":
            chans = _shares([g.nodes[i].shape[0] for i in nd.inputs])
            q.append(sum(c * v for c, v in zip(chans, ins)) / sum(chans))
        elif "merge" in op.traits:  # another merge: no estimate
            q.append(None)
        elif nd.op in ACTIVATIONS:
            q.append(expect(nd.op, dict(nd.attrs), x, "square"))
        elif op.category == "activation":  # softmax and the like: not a scale
            q.append(None)
        else:  # pooling, lrn, flatten, identity
            q.append(x)
    return q


def _shares(channels: list[int]) -> list[float]:
    """Each path's share c/Σc of a concat's channels, taken in integers (channel counts may be
    2^1100, past a float); a share too small for a float is the smallest positive one, so an
    infinite (saturated) E[x²] on that path still saturates the mean instead of giving NaN."""
    total = sum(channels)
    return [max(c / total, _TINY) for c in channels]
