"""NumPy normalisation layers: batch norm (statistics of the mini-batch), layer, group and
instance norm (statistics of each sample), local response normalisation; the (forward,
backward) convention is `layers`'. Running statistics follow PyTorch: in training the batch's
mean and the *unbiased* variance are blended in with `momentum`; evaluation uses them.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


# ---- batch norm -------------------------------------------------------------------------------

def channel_sums(a, axes):
    """a's sums over every axis but the channels (1), as BLAS matrix-vector products: a
    channels-last array (a convolution's output, and what elementwise layers make of it) is a
    (positions, C) matrix, a channels-first one a (N·C, positions) matrix, one whose memory is
    (C, N, positions) a (C, N·positions) matrix. Other layouts: NumPy's sum."""
    if a.ndim == 2:
        return np.ones(a.shape[0], a.dtype) @ a
    last = a.transpose((0,) + tuple(range(2, a.ndim)) + (1,))
    if last.flags.c_contiguous:
        rows = last.reshape(-1, a.shape[1])
        return np.ones(rows.shape[0], a.dtype) @ rows
    if a.flags.c_contiguous:
        n, c = a.shape[:2]
        return (a.reshape(n * c, -1) @ np.ones(a[0, 0].size, a.dtype)).reshape(n, c).sum(axis=0)
    first = a.swapaxes(0, 1)  # (C, N, *spatial) memory: a convolution's channels-first path
    if first.flags.c_contiguous:
        rows = first.reshape(a.shape[1], -1)
        return rows @ np.ones(rows.shape[1], a.dtype)
    return a.sum(axis=axes)


def batchnorm_forward(x, params, attrs, mode, ctx):
    """x (N, C, *spatial) or (N, C). Training: the batch's mean and biased variance normalise;
    the running mean and the *unbiased* variance (·n/(n−1)) are blended in with `momentum`
    (PyTorch's convention). Evaluation: the running statistics. Sums are BLAS products
    (`channel_sums`); the normalised input is made in place (it is what backward keeps)."""
    axes = (0,) + tuple(range(2, x.ndim))
    bshape = (1, -1) + (1,) * (x.ndim - 2)
    eps = attrs["eps"]
    if mode == "train":
        m = x.size // x.shape[1]
        mean = channel_sums(x, axes) / m
        xc = x - mean.reshape(bshape)
        var = channel_sums(np.square(xc), axes) / m
        mom = attrs["momentum"]
        rm, rv = params["running_mean"], params["running_var"]
        rm *= 1 - mom
        rm += mom * mean
        rv *= 1 - mom
        rv += mom * var * (m / max(m - 1, 1))
        params["num_batches_tracked"] += 1
    else:
        xc = x - params["running_mean"].reshape(bshape)
        var = params["running_var"]
    inv = (1.0 / np.sqrt(var + eps)).astype(x.dtype)
    xc *= inv.reshape(bshape)
    xhat = xc
    out = xhat
    gamma = params["weight"] if attrs["affine"] else None
    if gamma is not None:
        out = xhat * gamma.reshape(bshape)
        out += params["bias"].reshape(bshape)
    return out, (xhat, inv, gamma, axes, bshape, mode)


def batchnorm_backward(dout, cache):
    """With g = Σ dout and gx = Σ dout·x̂ over the batch and positions, per channel:
    dx = γ·inv·(dout − g/m − x̂·gx/m) in training; γ·inv·dout with running statistics."""
    xhat, inv, gamma, axes, bshape, mode = cache
    gb = channel_sums(dout, axes)
    prod = dout * xhat
    gw = channel_sums(prod, axes)
    grads = {"weight": gw, "bias": gb} if gamma is not None else {}
    scale = inv if gamma is None else gamma * inv
    dx = dout * scale.reshape(bshape)
    if mode != "train":  # running statistics are constants
        return dx, grads
    m = xhat.size // xhat.shape[1]
    np.multiply(xhat, (scale * gw / m).reshape(bshape), out=prod)
    dx -= prod
    dx -= (scale * gb / m).reshape(bshape)
    return dx, grads


# ---- normalisation by statistics of each sample -------------------------------------------------

def _normalize(x, axes, eps):
    """(x − mean)/√(var + eps) over `axes` (biased variance); inv keeps the reduced axes."""
    mean = x.mean(axis=axes, keepdims=True)
    xc = x - mean
    inv = 1.0 / np.sqrt((xc * xc).mean(axis=axes, keepdims=True) + eps)
    return xc * inv, inv


def _normalize_backward(dxhat, xhat, inv, axes):
    """The gradient through `_normalize`: inv·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)) over `axes`."""
    return inv * (dxhat - dxhat.mean(axis=axes, keepdims=True)
                  - xhat * (dxhat * xhat).mean(axis=axes, keepdims=True))


def _affine(xhat, params, shape):
    if "weight" not in params:
        return xhat
    return xhat * params["weight"].reshape(shape) + params["bias"].reshape(shape)


def _affine_backward(dout, xhat, params, shape, param_axes):
    """(dx̂, grads) for out = x̂·γ + β, γ and β reshaped to `shape`, summed over `param_axes`."""
    if "weight" not in params:
        return dout, {}
    p_shape = params["weight"].shape
    grads = {"weight": (dout * xhat).sum(axis=param_axes).reshape(p_shape),
             "bias": dout.sum(axis=param_axes).reshape(p_shape)}
    return dout * params["weight"].reshape(shape), grads


def _channel_shape(x):
    return (1, -1) + (1,) * (x.ndim - 2)


def layernorm_forward(x, params, attrs, mode, ctx):
    """over="sample": each sample over all its values, γ/β of the sample's shape;
    over="channels" (or a vector): the C values at each position, γ/β of C values."""
    if attrs["over"] == "sample" or x.ndim == 2:
        axes, shape, p_axes = tuple(range(1, x.ndim)), (1,) + x.shape[1:], (0,)
    else:
        axes, shape = (1,), _channel_shape(x)
        p_axes = (0,) + tuple(range(2, x.ndim))
    xhat, inv = _normalize(x, axes, attrs["eps"])
    return _affine(xhat, params, shape), (xhat, inv, axes, shape, p_axes, params)


def layernorm_backward(dout, cache):
    xhat, inv, axes, shape, p_axes, params = cache
    dxhat, grads = _affine_backward(dout, xhat, params, shape, p_axes)
    return _normalize_backward(dxhat, xhat, inv, axes), grads


def groupnorm_forward(x, params, attrs, mode, ctx):
    """Each sample's channels in G groups, each over its C/G·H·W values; γ/β per channel."""
    n, g = x.shape[0], attrs["groups"]
    xhat, inv = _normalize(x.reshape(n, g, -1), (2,), attrs["eps"])
    xhat = xhat.reshape(x.shape)
    shape = _channel_shape(x)
    p_axes = (0,) + tuple(range(2, x.ndim))
    return _affine(xhat, params, shape), (xhat, inv, g, shape, p_axes, params)


def groupnorm_backward(dout, cache):
    xhat, inv, g, shape, p_axes, params = cache
    dxhat, grads = _affine_backward(dout, xhat, params, shape, p_axes)
    n = dout.shape[0]
    dx = _normalize_backward(dxhat.reshape(n, g, -1), xhat.reshape(n, g, -1), inv, (2,))
    return dx.reshape(dout.shape), grads


def instancenorm_forward(x, params, attrs, mode, ctx):
    """Each channel of each sample over its positions. With track_running_stats: in training
    the running mean and the unbiased variance (averaged over the batch) are blended in with
    `momentum`, and evaluation uses them (PyTorch's InstanceNorm)."""
    axes = tuple(range(2, x.ndim))
    shape = _channel_shape(x)
    p_axes = (0,) + axes
    eps = attrs["eps"]
    tracked = attrs["track_running_stats"]
    if tracked and mode != "train":
        inv = (1.0 / np.sqrt(params["running_var"] + eps)).reshape(shape)
        xhat = (x - params["running_mean"].reshape(shape)) * inv
        return _affine(xhat, params, shape), (xhat, inv, None, shape, p_axes, params)
    xhat, inv = _normalize(x, axes, eps)
    if tracked and mode == "train":
        m = int(np.prod(x.shape[2:]))
        mean = x.mean(axis=axes).mean(axis=0)
        var = x.var(axis=axes).mean(axis=0) * (m / max(m - 1, 1))
        mom = attrs["momentum"]
        for key, v in (("running_mean", mean), ("running_var", var)):
            params[key] *= 1 - mom
            params[key] += mom * v
        # (PyTorch's instance norm leaves num_batches_tracked at 0)
    return _affine(xhat, params, shape), (xhat, inv, axes, shape, p_axes, params)


def instancenorm_backward(dout, cache):
    xhat, inv, axes, shape, p_axes, params = cache
    dxhat, grads = _affine_backward(dout, xhat, params, shape, p_axes)
    if axes is None:  # running statistics are constants
        return dxhat * inv, grads
    return _normalize_backward(dxhat, xhat, inv, axes), grads


# ---- local response normalisation ----------------------------------------------------------------

def _channel_windows(v, before: int, after: int):
    """Σ of v over channels c − before .. c + after (zero beyond the ends), for every c."""
    pad = [(0, 0)] * v.ndim
    pad[1] = (before, after)
    return sliding_window_view(np.pad(v, pad), before + after + 1, axis=1).sum(axis=-1)


def lrn_forward(x, params, attrs, mode, ctx):
    """y = x / (k + α/size · Σ x² over `size` neighbouring channels)^β (PyTorch's
    LocalResponseNorm: size//2 channels before, (size−1)//2 after)."""
    size, alpha, beta, kk = attrs["size"], attrs["alpha"], attrs["beta"], attrs["k"]
    s = kk + alpha / size * _channel_windows(x * x, size // 2, (size - 1) // 2)
    return x * s ** -beta, (x, s, attrs)


def lrn_backward(dout, cache):
    x, s, a = cache
    size, alpha, beta = a["size"], a["alpha"], a["beta"]
    # the adjoint of a window (before, after) is the window (after, before)
    back = _channel_windows(dout * x * s ** (-beta - 1), (size - 1) // 2, size // 2)
    return dout * s ** -beta - 2 * beta * alpha / size * x * back, {}
