"""NumPy pairs of the regularising layers of `nnspec/ops/regularizers.py`: DropConnect and
fractional max pooling (cs231n style, see `layers`). Their random numbers come from the
stream ("dropout", layer name, step) of the run seed, as the torch backend's trainer draws
them (`nnspec.backends.torch_layers.StreamDropConnect`, `StreamFractionalMaxPool`).

>>> import numpy as np
>>> from nnspec.backends.numpy.layers import Context
>>> x = np.arange(16.0).reshape(1, 1, 4, 4)
>>> out, _ = fractional_maxpool_forward(x, {}, {"ratio": 0.5, "kernel": 2}, "eval", Context("p"))
>>> out[0, 0].tolist()
[[5.0, 7.0], [13.0, 15.0]]
"""

from __future__ import annotations

import numpy as np

from ... import rng
from .layers import linear_backward, linear_forward

EVAL_SAMPLE = 0.5  # fractional max pooling's fixed sample at evaluation (ops/regularizers.py)


# ---- DropConnect --------------------------------------------------------------------------------

def dropconnect_keep_scale(seed: int, name: str, step: int, shape, p: float, dtype) -> np.ndarray:
    """The weight's factors in training: keep-mask (`rng.keep_mask` of the stream ("dropout",
    name, step)) · 1/(1 − p), in `dtype`."""
    keep = rng.keep_mask(rng.stream(seed, "dropout", name, step), shape, p)
    return keep.astype(dtype) * dtype.type(1.0 / (1.0 - p))


def dropconnect_forward(x, params, attrs, mode, ctx):
    """x (N, F_in), weight (F_out, F_in), bias (F_out,) -> (N, F_out). In training the weight
    is W·mask/(1 − p) (one mask per layer and step, shared by the batch); at evaluation W."""
    p = attrs["p"]
    if mode != "train" or p == 0.0:
        out, cache = linear_forward(x, params, attrs, mode, ctx)
        return out, (cache, None)
    w = params["weight"]
    scale = dropconnect_keep_scale(ctx.seed, ctx.name, ctx.step, w.shape, p, w.dtype)
    out, cache = linear_forward(x, {**params, "weight": w * scale}, attrs, mode, ctx)
    return out, (cache, scale)


def dropconnect_backward(dout, cache):
    inner, scale = cache
    dx, grads = linear_backward(dout, inner)
    if scale is not None:  # d/dW of (W·scale)x: the dropped weights get no gradient
        grads["weight"] = grads["weight"] * scale
    return dx, grads


# ---- fractional max pooling ---------------------------------------------------------------------

def fractional_samples(ctx, n: int, c: int, mode: str, dtype) -> np.ndarray:
    """(N, C, 2) samples in [0, 1) (index 0 for the width, 1 for the height, as PyTorch reads
    `_random_samples`): in training `rng.uniform` of the stream ("dropout", layer, step), at
    evaluation all EVAL_SAMPLE."""
    if mode != "train":
        return np.full((n, c, 2), EVAL_SAMPLE, dtype)
    return rng.uniform(rng.stream(ctx.seed, "dropout", ctx.name, ctx.step), (n, c, 2)).astype(dtype)


def intervals(sample: np.ndarray, size: int, out: int, k: int) -> np.ndarray:
    """PyTorch's `generate_intervals` (aten FractionalMaxPooling.h) for an array of samples:
    window starts (…, out) with alpha = (size − k)/(out − 1) in the samples' dtype,
    start_i = int((i + u)·alpha) − int(u·alpha), the last window at size − k."""
    dt = sample.dtype.type
    starts = np.empty(sample.shape + (out,), np.int64)
    if out > 1:
        alpha = dt(size - k) / dt(out - 1)
        i = np.arange(out - 1, dtype=sample.dtype)
        u = sample[..., None]
        starts[..., :-1] = ((i + u) * alpha).astype(np.int64) - (u * alpha).astype(np.int64)
    starts[..., -1] = size - k
    return starts


def fractional_maxpool_forward(x, params, attrs, mode, ctx):
    """x (N, C, H, W) -> (N, C, floor(H·ratio), floor(W·ratio)): the max of a k x k window
    starting at each pair of interval starts; ties go to the first position in row-major
    order, as PyTorch's kernel (a strict `>` scan)."""
    n, c, h, w = x.shape
    k, ratio = attrs["kernel"], attrs["ratio"]
    oh, ow = int(h * ratio), int(w * ratio)
    u = fractional_samples(ctx, n, c, mode, x.dtype)
    rows = intervals(u[..., 1], h, oh, k)            # (N, C, oh)
    cols = intervals(u[..., 0], w, ow, k)            # (N, C, ow)
    offsets = np.arange(k)
    r = (rows[..., :, None, None, None] + offsets[:, None])      # (N, C, oh, 1, k, 1)
    q = (cols[..., None, :, None, None] + offsets[None, :])      # (N, C, 1, ow, 1, k)
    flat = (r * w + q).reshape(n, c, oh, ow, k * k)             # plane indices of each window
    planes = x.reshape(n, c, h * w)
    vals = np.take_along_axis(planes, flat.reshape(n, c, -1), axis=2).reshape(flat.shape)
    arg = vals.argmax(axis=-1)
    idx = np.take_along_axis(flat, arg[..., None], axis=-1)[..., 0]   # (N, C, oh, ow)
    out = np.take_along_axis(vals, arg[..., None], axis=-1)[..., 0]
    return out, (idx, x.shape)


def fractional_maxpool_backward(dout, cache):
    """Each output's gradient to its argmax (windows overlap: summed where they share one)."""
    idx, shape = cache
    n, c, h, w = shape
    base = (np.arange(n * c) * (h * w)).reshape(n, c, 1, 1)
    dx = np.bincount((idx + base).ravel(), weights=dout.ravel(), minlength=n * c * h * w)
    return dx.astype(dout.dtype, copy=False).reshape(shape), {}
