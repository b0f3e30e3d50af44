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
    return _expect(op, key, float(f"{var:.6g}"), what)


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
        op = nd.opdef
        if "weighted" in op.traits:
            fi, fo = fan(nd, g)
            wv = weight_variance(cx.init_of(nd), fi, fo)
            q.append(None if wv is None else fi * wv * x)
        elif "normalizes" in op.traits:
            q.append(1.0)
        elif "train_only" in op.traits and "p" in nd.attrs:  # inverted dropout's 1/(1 − p)
            p = nd.attrs["p"]
            q.append(x / (1 - p) if p < 1 else None)
        elif nd.op == "add":
            q.append(sum(ins))
        elif nd.op == "concat":
            chans = [g.nodes[i].shape[0] for i in nd.inputs]
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
