"""NumPy layers: one (forward, backward) pair per op, cs231n style.

    forward(x, params, attrs, mode, ctx) -> (out, cache)
    backward(dout, cache) -> (dx, grads)

`x` is one array (N, *shape) for a one-input op, the tuple of input arrays for a merge (whose
backward returns a tuple of dx); `params` maps the layer's local tensor names ("weight",
"bias", "running_mean", …, as the registry's `tensors` names them) to arrays (buffers are
updated in place in training); `attrs` are the op's bound arguments; `mode` is "train" or
"eval"; `ctx` is a `Context` (the layer's name, the run seed and the training step, which key
the random streams). `grads` maps local parameter names to their gradients.

Everything is vectorised: convolution and pooling unfold the padded input into windows with
`sliding_window_view` (a view, then one copy into a matrix) and multiply one large matrix
per group; their backward accumulates the window gradients back over the kernel offsets
(KH·KW slice additions), never over batch items or pixels. 1-D inputs (N, C, L) run as 2-D
with H = 1.

>>> import numpy as np
>>> out, cache = linear_forward(np.ones((2, 3)), {"weight": np.ones((4, 3)), "bias": np.zeros(4)},
...                             {"out": 4, "bias": True}, "train", None)
>>> out.tolist()[0], linear_backward(np.ones((2, 4)), cache)[0].tolist()[0]
([3.0, 3.0, 3.0, 3.0], [4.0, 4.0, 4.0])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ... import rng
from ...ops import ACTIVATIONS, NUMPY, window_axes
from ...ops.windows import _window_out


@dataclass(frozen=True)
class Context:
    """What a layer may need beyond its input: its state-dict name, the run seed and the
    global training step (the key of its random stream, `nnspec.rng`)."""
    name: str = ""
    seed: int = 0
    step: int = 0


class Unsupported(Exception):
    """Arguments this backend cannot run (reported at build time as NN040)."""


# ---- helpers ----------------------------------------------------------------------------------

def _as_2d(x):
    """(N, C, L) -> (N, C, 1, L); (N, C, H, W) unchanged."""
    if x.ndim == 3:
        return x[:, :, None, :]
    if x.ndim != 4:
        raise Unsupported(f"{x.ndim - 2}-D spatial inputs are not implemented (1-D and 2-D are)")
    return x


def _geometry2d(shape, a, pool: bool):
    """(kernel, stride, pad, dilation) per axis for a (N, C, H, W) view of the input."""
    k, s, p, d = window_axes(a, len(shape) - 2)
    if len(shape) == 3:
        k, s, p, d = (1,) + k, (1,) + s, (0,) + p, (1,) + d
    return k, s, p, d


def _windows(xp, k, s, d, out_hw):
    """The (N, C, OH, OW, KH, KW) windows of a padded input: a strided view, no copy."""
    eff = [di * (ki - 1) + 1 for ki, di in zip(k, d)]
    v = sliding_window_view(xp, eff, axis=(2, 3))
    v = v[:, :, ::s[0], ::s[1], ::d[0], ::d[1]]
    return v[:, :, :out_hw[0], :out_hw[1]]


def _col2im(dcols, shape_padded, k, s, d, out_hw):
    """The adjoint of `_windows`: (N, C, OH, OW, KH, KW) -> (N, C, Hp, Wp), summing the
    contributions of overlapping windows, one strided slice addition per kernel offset."""
    dx = np.zeros(shape_padded, dcols.dtype)
    oh, ow = out_hw
    for i in range(k[0]):
        hi = i * d[0]
        for j in range(k[1]):
            wj = j * d[1]
            dx[:, :, hi:hi + s[0] * (oh - 1) + 1:s[0], wj:wj + s[1] * (ow - 1) + 1:s[1]] += dcols[..., i, j]
    return dx


# ---- linear -----------------------------------------------------------------------------------

def linear_forward(x, params, attrs, mode, ctx):
    """x (N, F_in), weight (F_out, F_in), bias (F_out,) -> (N, F_out)"""
    out = x @ params["weight"].T
    if attrs["bias"]:
        out = out + params["bias"]
    return out, (x, params["weight"], attrs["bias"])


def linear_backward(dout, cache):
    x, w, bias = cache
    grads = {"weight": dout.T @ x}
    if bias:
        grads["bias"] = dout.sum(axis=0)
    return dout @ w, grads


# ---- convolution ------------------------------------------------------------------------------

def conv_forward(x, params, attrs, mode, ctx):
    """x (N, C, H, W) or (N, C, L); weight (O, C/G, KH, KW) -> (N, O, OH, OW): im2col (one copy
    of the windows into a (G, N·OH·OW, C/G·KH·KW) matrix), then one batched matmul."""
    x4 = _as_2d(x)
    k, s, p, d = _geometry2d(x.shape, attrs, pool=False)
    n, c, h, w = x4.shape
    g = attrs["groups"]
    weight = params["weight"]
    o = weight.shape[0]
    w4 = weight.reshape(o, c // g, k[0], k[1])
    oh = _window_out(h, k[0], s[0], p[0], d[0], False)
    ow = _window_out(w, k[1], s[1], p[1], d[1], False)
    xp = np.pad(x4, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])))
    win = _windows(xp, k, s, d, (oh, ow))                      # (N, C, OH, OW, KH, KW)
    win = win.reshape(n, g, c // g, oh, ow, k[0], k[1])
    cols = win.transpose(1, 0, 3, 4, 2, 5, 6).reshape(g, n * oh * ow, (c // g) * k[0] * k[1])
    wm = w4.reshape(g, o // g, -1)                              # (G, O/G, C/G·KH·KW)
    out = cols @ wm.transpose(0, 2, 1)                          # (G, N·OH·OW, O/G)
    out = out.reshape(g, n, oh, ow, o // g).transpose(1, 0, 4, 2, 3).reshape(n, o, oh, ow)
    if attrs["bias"]:
        out = out + params["bias"][:, None, None]
    if x.ndim == 3:
        out = out[:, :, 0, :]
    return out, (x.shape, xp.shape, cols, wm, weight.shape, (k, s, p, d), g, attrs["bias"])


def conv_backward(dout, cache):
    x_shape, xp_shape, cols, wm, w_shape, (k, s, p, d), g, bias = cache
    d4 = _as_2d(dout)
    n, o, oh, ow = d4.shape
    c = xp_shape[1]
    dm = d4.reshape(n, g, o // g, oh, ow).transpose(1, 0, 3, 4, 2).reshape(g, n * oh * ow, o // g)
    grads = {"weight": (dm.transpose(0, 2, 1) @ cols).reshape(w_shape)}
    if bias:
        grads["bias"] = d4.sum(axis=(0, 2, 3))
    dcols = (dm @ wm).reshape(g, n, oh, ow, c // g, k[0], k[1])
    dcols = dcols.transpose(1, 0, 4, 2, 3, 5, 6).reshape(n, c, oh, ow, k[0], k[1])
    dxp = _col2im(dcols, xp_shape, k, s, d, (oh, ow))
    dx = dxp[:, :, p[0]:xp_shape[2] - p[0], p[1]:xp_shape[3] - p[1]]
    return dx.reshape(x_shape), grads


# ---- pooling ----------------------------------------------------------------------------------

def _pool_setup(x, attrs, fill):
    """The padded input, with the ceil-mode overhang at the end of each axis, and geometry."""
    x4 = _as_2d(x)
    k, s, p, d = _geometry2d(x.shape, attrs, pool=True)
    n, c, h, w = x4.shape
    ceil = attrs["ceil_mode"]
    oh = _window_out(h, k[0], s[0], p[0], d[0], ceil)
    ow = _window_out(w, k[1], s[1], p[1], d[1], ceil)
    # the last window may hang over the right padding (ceil_mode): pad that far too
    extra = [max(0, (o - 1) * si + di * (ki - 1) + 1 - (size + 2 * pi))
             for o, si, di, ki, size, pi in zip((oh, ow), s, d, k, (h, w), p)]
    xp = np.pad(x4, ((0, 0), (0, 0), (p[0], p[0] + extra[0]), (p[1], p[1] + extra[1])),
                constant_values=fill)
    return x4, xp, (k, s, p, d), (oh, ow), extra


def maxpool_forward(x, params, attrs, mode, ctx):
    """x (N, C, H, W) -> (N, C, OH, OW); padding never wins (it is −∞); ties go to the first
    maximum in scan order, as PyTorch's kernel picks."""
    x4, xp, (k, s, p, d), (oh, ow), _ = _pool_setup(x, attrs, -np.inf)
    win = _windows(xp, k, s, d, (oh, ow))
    flat = win.reshape(win.shape[:4] + (-1,))
    arg = flat.argmax(axis=-1)
    out = np.take_along_axis(flat, arg[..., None], axis=-1)[..., 0]
    if x.ndim == 3:
        out = out[:, :, 0, :]
    return out, (x.shape, xp.shape, arg, (k, s, p, d), (oh, ow))


def maxpool_backward(dout, cache):
    x_shape, xp_shape, arg, (k, s, p, d), (oh, ow) = cache
    d4 = _as_2d(dout)
    onehot = arg[..., None] == np.arange(k[0] * k[1])
    dcols = (onehot * d4[..., None]).reshape(d4.shape + (k[0], k[1]))
    dxp = _col2im(dcols, xp_shape, k, s, d, (oh, ow))
    h, w = (x_shape[2], x_shape[3]) if len(x_shape) == 4 else (1, x_shape[2])
    return dxp[:, :, p[0]:p[0] + h, p[1]:p[1] + w].reshape(x_shape), {}


def avgpool_forward(x, params, attrs, mode, ctx):
    """x (N, C, H, W) -> (N, C, OH, OW). The divisor is PyTorch's: the window clipped to the
    padded input (count_include_pad) or to the input itself, never the ceil-mode overhang."""
    x4, xp, (k, s, p, d), (oh, ow), extra = _pool_setup(x, attrs, 0.0)
    h, w = x4.shape[2:]
    counted = np.zeros(xp.shape[2:], x.dtype)
    if attrs["count_include_pad"]:
        counted[:h + 2 * p[0], :w + 2 * p[1]] = 1
    else:
        counted[p[0]:p[0] + h, p[1]:p[1] + w] = 1
    div = _windows(counted[None, None], k, s, d, (oh, ow)).sum(axis=(-2, -1))[0, 0]
    out = _windows(xp, k, s, d, (oh, ow)).sum(axis=(-2, -1)) / div
    if x.ndim == 3:
        out = out[:, :, 0, :]
    return out, (x.shape, xp.shape, div, (k, s, p, d), (oh, ow))


def avgpool_backward(dout, cache):
    x_shape, xp_shape, div, (k, s, p, d), (oh, ow) = cache
    d4 = _as_2d(dout) / div
    dcols = np.broadcast_to(d4[..., None, None], d4.shape + (k[0], k[1]))
    dxp = _col2im(dcols, xp_shape, k, s, d, (oh, ow))
    h, w = (x_shape[2], x_shape[3]) if len(x_shape) == 4 else (1, x_shape[2])
    return dxp[:, :, p[0]:p[0] + h, p[1]:p[1] + w].reshape(x_shape), {}


def _adaptive_matrix(n_in: int, n_out: int, dtype):
    """(n_out, n_in): row i averages inputs floor(i·N/O) .. ceil((i+1)·N/O) − 1 (PyTorch)."""
    m = np.zeros((n_out, n_in), dtype)
    for i in range(n_out):  # a loop over output cells of one axis, not over pixels
        lo, hi = (i * n_in) // n_out, -(-((i + 1) * n_in) // n_out)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


def adaptive_avgpool_forward(x, params, attrs, mode, ctx):
    """x (N, C, H, W) -> (N, C, OH, OW): one averaging matrix per axis."""
    x4 = _as_2d(x)
    size = attrs["size"]
    size = size if isinstance(size, tuple) else (size,) * (x.ndim - 2)
    size = (1,) + size if x.ndim == 3 else size
    mh = _adaptive_matrix(x4.shape[2], size[0], x.dtype)
    mw = _adaptive_matrix(x4.shape[3], size[1], x.dtype)
    out = np.einsum("ph,nchw,qw->ncpq", mh, x4, mw, optimize=True)
    if x.ndim == 3:
        out = out[:, :, 0, :]
    return out, (x.shape, mh, mw)


def adaptive_avgpool_backward(dout, cache):
    x_shape, mh, mw = cache
    dx = np.einsum("ph,ncpq,qw->nchw", mh, _as_2d(dout), mw, optimize=True)
    return dx.reshape(x_shape), {}


def global_avgpool_forward(x, params, attrs, mode, ctx):
    """x (N, C, *spatial) -> (N, C)"""
    return x.mean(axis=tuple(range(2, x.ndim))), x.shape


def global_avgpool_backward(dout, cache):
    shape = cache
    size = int(np.prod(shape[2:]))
    dx = np.broadcast_to((dout / size).reshape(dout.shape + (1,) * (len(shape) - 2)), shape)
    return np.array(dx), {}


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


# ---- batch norm -------------------------------------------------------------------------------

def batchnorm_forward(x, params, attrs, mode, ctx):
    """x (N, C, *spatial) or (N, C). Training: the batch's mean and biased variance normalise;
    the running mean and the *unbiased* variance (·n/(n−1)) are blended in with `momentum`
    (PyTorch's convention). Evaluation: the running statistics."""
    axes = (0,) + tuple(range(2, x.ndim))
    bshape = (1, -1) + (1,) * (x.ndim - 2)
    eps = attrs["eps"]
    if mode == "train":
        mean = x.mean(axis=axes)
        xc = x - mean.reshape(bshape)
        var = (xc * xc).mean(axis=axes)
        m = x.size // x.shape[1]
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
    inv = 1.0 / np.sqrt(var + eps)
    xhat = xc * inv.reshape(bshape)
    out = xhat
    gamma = params["weight"] if attrs["affine"] else None
    if gamma is not None:
        out = xhat * gamma.reshape(bshape) + params["bias"].reshape(bshape)
    return out, (xhat, inv, gamma, axes, bshape, mode)


def batchnorm_backward(dout, cache):
    xhat, inv, gamma, axes, bshape, mode = cache
    grads = {}
    dxhat = dout
    if gamma is not None:
        grads = {"weight": (dout * xhat).sum(axis=axes), "bias": dout.sum(axis=axes)}
        dxhat = dout * gamma.reshape(bshape)
    if mode != "train":  # running statistics are constants
        return dxhat * inv.reshape(bshape), grads
    mean_d = dxhat.mean(axis=axes).reshape(bshape)
    mean_dx = (dxhat * xhat).mean(axis=axes).reshape(bshape)
    return (dxhat - mean_d - xhat * mean_dx) * inv.reshape(bshape), grads


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


# ---- activations: the registry's table rows, f and f′ ----------------------------------------

def activation_forward(x, params, attrs, mode, ctx, *, op):
    """y = f(x) of the op's row of `nnspec.ops.ACTIVATIONS`; backward keeps what the row keeps."""
    row = ACTIVATIONS[op]
    y = row.f(x, attrs, NUMPY)
    return y, (row, y if row.keeps == "output" else x, attrs)


def activation_backward(dout, cache):
    row, kept, attrs = cache
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


# ---- up-sampling: transposed convolution, interpolation ------------------------------------------

def conv_transpose_forward(x, params, attrs, mode, ctx):
    """x (N, C_in, H, W), weight (C_in, C_out/G, KH, KW) -> (N, C_out, OH, OW) with
    O = (N − 1)·S − 2P + D·(K − 1) + output_pad + 1: the adjoint of convolution, one batched
    matmul to the windows' values, then `_col2im` onto the output, cropped by P."""
    x4 = _as_2d(x)
    k, s, p, d = _geometry2d(x.shape, attrs, pool=False)
    op = attrs["output_pad"]
    op = op if isinstance(op, tuple) else (op,) * (x.ndim - 2)
    op = (0,) + op if x.ndim == 3 else op
    n, c, h, w = x4.shape
    g = attrs["groups"]
    weight = params["weight"]
    co = weight.shape[1] * g
    oh, ow = ((size - 1) * si - 2 * pi + di * (ki - 1) + opi + 1
              for size, si, pi, di, ki, opi in zip((h, w), s, p, d, k, op))
    xm = x4.reshape(n, g, c // g, h, w).transpose(1, 0, 3, 4, 2).reshape(g, n * h * w, c // g)
    wm = weight.reshape(g, c // g, -1)                           # (G, C_in/G, C_out/G·KH·KW)
    cols = (xm @ wm).reshape(g, n, h, w, co // g, k[0], k[1])
    cols = cols.transpose(1, 0, 4, 2, 3, 5, 6).reshape(n, co, h, w, k[0], k[1])
    full_shape = (n, co, oh + 2 * p[0], ow + 2 * p[1])
    out = _col2im(cols, full_shape, k, s, d, (h, w))[:, :, p[0]:p[0] + oh, p[1]:p[1] + ow]
    if attrs["bias"]:
        out = out + params["bias"][:, None, None]
    if x.ndim == 3:
        out = out[:, :, 0, :]
    return out, (x.shape, xm, wm, weight.shape, full_shape, (k, s, p, d), g, attrs["bias"])


def conv_transpose_backward(dout, cache):
    x_shape, xm, wm, w_shape, full_shape, (k, s, p, d), g, bias = cache
    d4 = _as_2d(dout)
    n, co, oh, ow = d4.shape
    h, w = (x_shape[2], x_shape[3]) if len(x_shape) == 4 else (1, x_shape[2])
    c = x_shape[1]
    dfull = np.zeros(full_shape, dout.dtype)
    dfull[:, :, p[0]:p[0] + oh, p[1]:p[1] + ow] = d4
    win = _windows(dfull, k, s, d, (h, w)).reshape(n, g, co // g, h, w, k[0], k[1])
    dcols = win.transpose(1, 0, 3, 4, 2, 5, 6).reshape(g, n * h * w, -1)
    dx = (dcols @ wm.transpose(0, 2, 1)).reshape(g, n, h, w, c // g).transpose(1, 0, 4, 2, 3)
    grads = {"weight": (xm.transpose(0, 2, 1) @ dcols).reshape(w_shape)}
    if bias:
        grads["bias"] = d4.sum(axis=(0, 2, 3))
    return dx.reshape(x_shape), grads


def _linear_matrix(n_in: int, scale: int, dtype):
    """(n_in·scale, n_in): linear interpolation with align_corners=False (PyTorch): output i
    reads input (i + 0.5)/scale − 0.5, clamped at 0, between its two neighbours."""
    n_out = n_in * scale
    src = np.maximum((np.arange(n_out) + 0.5) / scale - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    lam = src - i0
    m = np.zeros((n_out, n_in), dtype)
    rows = np.arange(n_out)
    m[rows, i0] += 1 - lam
    m[rows, i1] += lam   # i0 == i1 at the last input: the weights add up to 1 there
    return m


def _nearest_matrix(n_in: int, scale: int, dtype):
    """(n_in·scale, n_in): output i copies input floor(i / scale)."""
    m = np.zeros((n_in * scale, n_in), dtype)
    m[np.arange(n_in * scale), np.arange(n_in * scale) // scale] = 1
    return m


def upsample_forward(x, params, attrs, mode, ctx):
    """x (N, C, H, W) -> (N, C, H·s_h, W·s_w), nearest or (bi)linear, one interpolation
    matrix per axis (PyTorch's nn.Upsample, align_corners=False)."""
    x4 = _as_2d(x)
    scale = attrs["scale"]
    scale = scale if isinstance(scale, tuple) else (scale,) * (x.ndim - 2)
    scale = (1,) + scale if x.ndim == 3 else scale
    make = _nearest_matrix if attrs["mode"] == "nearest" else _linear_matrix
    mh = make(x4.shape[2], scale[0], x.dtype)
    mw = make(x4.shape[3], scale[1], x.dtype)
    out = np.einsum("ph,nchw,qw->ncpq", mh, x4, mw, optimize=True)
    if x.ndim == 3:
        out = out[:, :, 0, :]
    return out, (x.shape, mh, mw)


upsample_backward = adaptive_avgpool_backward


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


rrelu_backward = activation_backward
