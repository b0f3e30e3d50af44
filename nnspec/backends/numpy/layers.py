"""NumPy layers: one (forward, backward) pair per op, cs231n style.

    forward(x, params, attrs, mode, ctx) -> (out, cache)
    backward(dout, cache) -> (dx, grads)

`x` is one array (N, *shape) for a one-input op, the tuple of input arrays for a merge (whose
backward returns a tuple of dx); `params` maps the layer's local tensor names ("weight",
"bias", "running_mean", …, as the registry's `tensors` names them) to arrays (buffers are
updated in place in training); `attrs` are the op's bound arguments; `mode` is "train" or
"eval"; `ctx` is a `Context` (the layer's name, the run seed and the training step, which key
the random streams). `grads` maps local parameter names to their gradients.

This module has the layers without a sliding window or statistics: linear and maxout,
reshapes, dropout and stochastic depth, the activations, the merges. `windows` has
convolution, pooling and up-sampling; `norms` the normalisations. Everything is vectorised: no Python loop over batch items or pixels.

>>> import numpy as np
>>> out, cache = linear_forward(np.ones((2, 3)), {"weight": np.ones((4, 3)), "bias": np.zeros(4)},
...                             {"out": 4, "bias": True}, "train", None)
>>> out.tolist()[0], linear_backward(np.ones((2, 4)), cache)[0].tolist()[0]
([3.0, 3.0, 3.0, 3.0], [4.0, 4.0, 4.0])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ... import rng
from ...ops import ACTIVATIONS, NUMPY


@dataclass(frozen=True)
class Context:
    """What a layer may need beyond its input: its state-dict name, the run seed and the
    global training step (the key of its random stream, `nnspec.rng`). `input_grad` False:
    the layer reads only the network's input and no one asks for its gradient, so a backward
    that honours it (linear, conv) returns dx None and skips that product, as autograd does."""
    name: str = ""
    seed: int = 0
    step: int = 0
    input_grad: bool = True


class Unsupported(Exception):
    """Arguments this backend cannot run (reported at build time as NN040)."""


# ---- linear -----------------------------------------------------------------------------------

def linear_forward(x, params, attrs, mode, ctx):
    """x (N, F_in), weight (F_out, F_in), bias (F_out,) -> (N, F_out), computed as
    (W·xᵀ)ᵀ: the same product, the output a transposed view; OpenBLAS is faster this way
    round (784->256 at batch 64: 375 -> 298 µs; 4096->256: 2264 -> 1552 µs)."""
    out = (params["weight"] @ x.T).T
    if attrs["bias"]:
        out += params["bias"]
    return out, (x, params["weight"], attrs["bias"], ctx is None or ctx.input_grad)


def linear_backward(dout, cache):
    x, w, bias, input_grad = cache
    grads = {"weight": dout.T @ x}
    if bias:
        grads["bias"] = dout.sum(axis=0)
    return (dout @ w if input_grad else None), grads


# ---- reshapes ---------------------------------------------------------------------------------

def flatten_forward(x, params, attrs, mode, ctx):
    """x (N, *shape) -> (N, prod(shape))"""
    return x.reshape(x.shape[0], -1), x.shape


def flatten_backward(dout, cache):
    return dout.reshape(cache), {}


def identity_forward(x, params, attrs, mode, ctx):
    return x, None


def identity_backward(dout, cache):
    return dout, {}


# ---- dropout ----------------------------------------------------------------------------------

def dropout_forward(x, params, attrs, mode, ctx):
    """Inverted dropout; the mask is the stream ("dropout", layer name, step) of the run seed
    (`nnspec.rng.keep_mask`): the same numbers on any backend that asks for that key."""
    p = attrs["p"]
    if mode != "train" or p == 0.0:
        return x, None
    keep = rng.keep_mask(rng.stream(ctx.seed, "dropout", ctx.name, ctx.step), x.shape, p)
    scale = keep.astype(x.dtype) * (0.0 if p == 1.0 else 1.0 / (1.0 - p))
    return x * scale, scale


def dropout_backward(dout, cache):
    return (dout if cache is None else dout * cache), {}


# ---- stochastic depth, maxout -------------------------------------------------------------------

def stochastic_depth_forward(x, params, attrs, mode, ctx):
    """In training, zero the whole input per sample ("row") or for the batch ("batch") with
    probability p, survivors ·1/(1−p). The mask is drawn from the stream ("dropout", layer
    name, step): the dropout convention, one mask per layer and step."""
    p = attrs["p"]
    if mode != "train" or p == 0.0:
        return x, None
    shape = (x.shape[0],) + (1,) * (x.ndim - 1) if attrs["mode"] == "row" else (1,) * x.ndim
    keep = rng.keep_mask(rng.stream(ctx.seed, "dropout", ctx.name, ctx.step), shape, p)
    scale = keep.astype(x.dtype) * (0.0 if p == 1.0 else 1.0 / (1.0 - p))
    return x * scale, scale


stochastic_depth_backward = dropout_backward


def maxout_forward(x, params, attrs, mode, ctx):
    """x (N, F) -> (N, units): the max over `pieces` linear maps; weight rows u·pieces ..
    u·pieces + pieces − 1 are the pieces of unit u."""
    z = (x @ params["weight"].T + params["bias"]).reshape(x.shape[0], attrs["units"], attrs["pieces"])
    arg = z.argmax(axis=-1)
    return np.take_along_axis(z, arg[..., None], axis=-1)[..., 0], (x, params["weight"], arg, attrs["pieces"])


def maxout_backward(dout, cache):
    x, w, arg, pieces = cache
    dz = ((arg[..., None] == np.arange(pieces)) * dout[..., None]).reshape(x.shape[0], -1)
    return dz @ w, {"weight": dz.T @ x, "bias": dz.sum(axis=0)}


# ---- activations: the registry's table rows, f and f′ ----------------------------------------

def activation_forward(x, params, attrs, mode, ctx, *, op):
    """y = f(x) of the op's row of `nnspec.ops.ACTIVATIONS`; backward keeps what the row keeps."""
    row = ACTIVATIONS[op]
    y = row.f(x, attrs, NUMPY)
    return y, (row, y if row.keeps == "output" else x, attrs)


BLOCK = 1 << 14  # values per block of an activation's backward


def activation_backward(dout, cache):
    """dout·f′, f′ evaluated a block of samples at a time: its temporaries (`1 − y·y` makes
    two) are blocks, not copies of the whole activation — torch's fused kernels make none,
    and on LeNet-5 at batch 16 one such copy was a sixth of the step's peak."""
    row, kept, attrs = cache
    n = kept.shape[0] if kept.ndim else 1
    b = max(1, BLOCK // max(kept.size // max(n, 1), 1))
    if b >= n:
        return dout * row.df(kept, attrs, NUMPY), {}
    dx = np.empty_like(dout)
    for i in range(0, n, b):
        np.multiply(dout[i:i + b], row.df(kept[i:i + b], attrs, NUMPY), out=dx[i:i + b])
    return dx, {}


def rrelu_backward(dout, cache):
    row, kept, attrs = cache   # attrs hold the per-value slopes: not blocked
    return dout * row.df(kept, attrs, NUMPY), {}


def prelu_forward(x, params, attrs, mode, ctx):
    """The prelu row's f with its learned slope (one, or one per channel) for `init`."""
    row = ACTIVATIONS["prelu"]
    slope = params["weight"].reshape((1, -1) + (1,) * (x.ndim - 2))
    return row.f(x, {"init": slope}, NUMPY), (x, slope, params["weight"].shape)


def prelu_backward(dout, cache):
    x, slope, w_shape = cache
    row = ACTIVATIONS["prelu"]
    dw_full = np.where(x > 0, 0, dout * x)
    axes = tuple(i for i in range(x.ndim) if i != 1 or w_shape[0] == 1)
    return dout * row.df(x, {"init": slope}, NUMPY), {"weight": dw_full.sum(axis=axes).reshape(w_shape)}


def softmax_forward(x, params, attrs, mode, ctx):
    """Softmax over the channel axis (1), shifted by the maximum for stability."""
    e = np.exp(x - x.max(axis=1, keepdims=True))
    y = e / e.sum(axis=1, keepdims=True)
    return y, y


def softmax_backward(dout, cache):
    y = cache
    return y * (dout - (dout * y).sum(axis=1, keepdims=True)), {}


def log_softmax_forward(x, params, attrs, mode, ctx):
    z = x - x.max(axis=1, keepdims=True)
    y = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return y, y


def log_softmax_backward(dout, cache):
    y = cache
    return dout - np.exp(y) * dout.sum(axis=1, keepdims=True), {}


def rrelu_forward(x, params, attrs, mode, ctx):
    """The rrelu row's f: at evaluation with the mean slope (lower + upper)/2; in training
    with a slope per element drawn uniformly from [lower, upper) from the stream ("dropout",
    layer name, step) (the dropout convention: one draw per layer and step). The row takes
    the slope as lower = upper = slope, so f and f′ stay the table's."""
    row = ACTIVATIONS["rrelu"]
    a = attrs
    if mode == "train":
        slope = rng.uniform(rng.stream(ctx.seed, "dropout", ctx.name, ctx.step), x.shape,
                            attrs["lower"], attrs["upper"]).astype(x.dtype)
        a = {"lower": slope, "upper": slope}
    return row.f(x, a, NUMPY), (row, x, a)



# ---- merges -----------------------------------------------------------------------------------

def add_forward(xs, params, attrs, mode, ctx):
    out = xs[0]
    for x in xs[1:]:
        out = out + x
    return out, len(xs)


def add_backward(dout, cache):
    return (dout,) * cache, {}


def concat_forward(xs, params, attrs, mode, ctx):
    return np.concatenate(xs, axis=1), np.cumsum([x.shape[1] for x in xs])[:-1]


def concat_backward(dout, cache):
    return tuple(np.split(dout, cache, axis=1)), {}


def mul_forward(xs, params, attrs, mode, ctx):
    """Product of the paths, axes of size 1 broadcast."""
    out = xs[0]
    for x in xs[1:]:
        out = out * x
    return out, xs


def _reduce_to(g, shape):
    axes = tuple(i for i, (a, b) in enumerate(zip(g.shape, shape)) if b == 1 and a != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g


def mul_backward(dout, cache):
    xs = cache
    dxs = []
    for i, x in enumerate(xs):
        others = dout
        for j, y in enumerate(xs):
            if j != i:
                others = others * y
        dxs.append(_reduce_to(others, x.shape).reshape(x.shape))
    return tuple(dxs), {}
