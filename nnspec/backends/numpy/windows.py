"""NumPy layers with a sliding window: convolution, pooling, and up-sampling (transposed
convolution, interpolation); the (forward, backward) convention is `layers`'.

Convolution copies the windows of the padded input into a reused matrix, a chunk of about
`ROWS` output positions at a time, channels-last (channels-first where window rows are
short), and multiplies it by the weight: one GEMM per chunk; backward unfolds again from the
kept input, and takes dx as a correlation (stride 1) or adds one product per kernel offset.
Depthwise convolution and pooling run one pass per kernel offset over a strided slice of
the whole batch; avg pooling's and grouped convolution's backward accumulate the window
gradients over the kernel offsets (`_col2im`). Never a loop over batch items, pixels or
channels. Transposed convolution is the grouped pair of operations the other way round.
1-D inputs (N, C, L) run as 2-D with H = 1. 3-D inputs (N, C, D, H, W) take the same
arithmetic over any number of spatial axes (`_taps`, `_windows`, `_col2im`): ungrouped
convolution channels-last (`_conv_last`), grouped as above, pooling one pass per kernel
offset, interpolation one matrix per axis.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from numpy.lib.stride_tricks import as_strided, sliding_window_view

from ...ops import window_axes
from ...ops.windows import _window_out


# ---- helpers ----------------------------------------------------------------------------------

def _as_2d(x):
    """(N, C, L) -> (N, C, 1, L); (N, C, H, W) and (N, C, D, H, W) unchanged."""
    return x[:, :, None, :] if x.ndim == 3 else x


def _geometry2d(shape, a, pool: bool):
    """(kernel, stride, pad, dilation) per axis for the `_as_2d` view of the input: one value
    per spatial axis, 1-D as 2-D with a 1-wide first axis."""
    k, s, p, d = window_axes(a, len(shape) - 2)
    if len(shape) == 3:
        k, s, p, d = (1,) + k, (1,) + s, (0,) + p, (1,) + d
    return k, s, p, d


def _per_axis(v, x_ndim):
    """An attribute given once or per spatial axis, as one value per axis of `_as_2d`'s view."""
    v = v if isinstance(v, tuple) else (v,) * (x_ndim - 2)
    return (1,) + v if x_ndim == 3 else v  # (the 1-wide axis: a scale or size of 1)


def _out_sizes(sizes, k, s, p, d, ceil=False):
    return tuple(_window_out(n, ki, si, pi, di, ceil) for n, ki, si, pi, di in zip(sizes, k, s, p, d))


_ALL2 = (slice(None), slice(None))  # the batch and channel axes of an index


def _taps(k, s, d, out):
    """(offset, slices): per kernel offset, in scan order, the strided slice of the padded
    spatial axes that meets it in every window (any number of axes)."""
    axes = [[slice(o * di, o * di + si * (n - 1) + 1, si) for o in range(ki)]
            for ki, si, di, n in zip(k, s, d, out)]
    return zip(itertools.product(*map(range, k)), itertools.product(*axes))


def _windows(xp, k, s, d, out):
    """The (N, C, *out, *k) windows of a padded input: a strided view, no copy."""
    r = len(k)
    eff = [di * (ki - 1) + 1 for ki, di in zip(k, d)]
    v = sliding_window_view(xp, eff, axis=tuple(range(2, 2 + r)))
    v = v[_ALL2 + tuple(slice(None, None, si) for si in s) + tuple(slice(None, None, di) for di in d)]
    return v[_ALL2 + tuple(slice(0, o) for o in out)]


def _col2im(dcols, shape_padded, k, s, d, out):
    """The adjoint of `_windows`: (N, C, *out, *k) -> (N, C, *padded), summing the
    contributions of overlapping windows, one strided slice addition per kernel offset."""
    dx = np.zeros(shape_padded, dcols.dtype)
    for off, sl in _taps(k, s, d, out):
        dx[_ALL2 + sl] += dcols[(Ellipsis,) + off]
    return dx


def _crop(xp, p, sizes):
    """The unpadded part (N, C, *sizes) of a padded input (the ceil-mode overhang dropped too)."""
    return xp[_ALL2 + tuple(slice(pi, pi + n) for pi, n in zip(p, sizes))]


# ---- convolution ------------------------------------------------------------------------------

ROWS = 1024  # output positions per GEMM: the chunk's unfolded matrix stays in L2 (measured:
# OpenBLAS sgemm at (1024, 288) x (288, 32) 86 GFLOP/s, at (8192, 288) x (288, 32) 53)


PARTS = 16  # a chunk is at most this fraction of the batch: its unfolded matrix stays near the
# layer's own size (LeNet-5 at batch 16: 1 MiB of chunk buffers was 60% of the step's peak)


def _chunk(n, positions, target):
    """Images per GEMM: about `target` output positions, at most n / PARTS, at least one image."""
    return max(1, min(n // PARTS, target // max(positions, 1)))


def _offsets(k, s, d, out_hw):
    """(i, j, rows, cols): one strided slice of the padded input per kernel offset."""
    oh, ow = out_hw
    for i in range(k[0]):
        for j in range(k[1]):
            hi, wj = i * d[0], j * d[1]
            yield i, j, slice(hi, hi + s[0] * (oh - 1) + 1, s[0]), slice(wj, wj + s[1] * (ow - 1) + 1, s[1])


def _unfold_nhwc(xp, cols, k, s, d, out_hw):
    """Fill cols (B, OH, OW, KH, KW, C) from a padded channels-last chunk xp (B, Hp, Wp, C).
    Undilated along W, a window's row (KW·C values) is one contiguous run of xp: one copy per
    kernel row of runs KW times longer (measured 1.7x faster than one copy per offset)."""
    if d[1] == 1:
        b, oh, ow = cols.shape[:3]
        sb, sh, sw, sc = xp.strides
        rows = cols.reshape(b, oh, ow, k[0], -1)
        for i in range(k[0]):
            rows[:, :, :, i, :] = as_strided(xp[:, i * d[0]:], (b, oh, ow, k[1] * xp.shape[3]),
                                             (sb, s[0] * sh, s[1] * sw, sc), writeable=False)
        return cols
    for i, j, rs, cs in _offsets(k, s, d, out_hw):
        cols[:, :, :, i, j, :] = xp[:, rs, cs, :]
    return cols


def _pad_last(x, p):
    """(N, C, *S) -> padded channels-last (N, *(S + 2P), C), one copy."""
    n, c = x.shape[:2]
    xp = np.zeros((n, *(size + 2 * pi for size, pi in zip(x.shape[2:], p)), c), x.dtype)
    xp[(slice(None),) + tuple(slice(pi, pi + size) for pi, size in zip(p, x.shape[2:]))] = np.moveaxis(x, 1, -1)
    return xp


COLS = 4096  # output positions per GEMM of the channels-first path (measured on LeNet-5's
# 1->6 conv: 1024 0.79 ms, 4096 0.69 ms, whole batch 0.75 ms)


def _short_rows(c, k):
    """Whether a window row (KW·C values, contiguous channels-last) is too short to copy
    fast: then the channels-first path copies whole output rows per kernel offset instead
    (measured on LeNet-5's 1->6 5x5 conv: forward 3.4 -> 0.8 ms, backward 3.4 -> 1.4 ms)."""
    return k[1] * c < 16


def conv_forward(x, params, attrs, mode, ctx):
    """x (N, C, H, W) or (N, C, L); weight (O, C/G, KH, KW) -> (N, O, OH, OW): im2col (a copy of
    the windows into a matrix), then matrix multiplications. Ungrouped: one GEMM per chunk
    of output positions, the unfolded chunk in cache; channels-last (a window row is KW·C
    contiguous values), or channels-first where those rows are short (few input channels:
    one copy of whole output rows per kernel offset, `_short_rows`). Backward unfolds again
    from the kept input (PyTorch keeps the input, not the unfolded matrix). Grouped: one
    batched matmul over the groups (3-D too). Ungrouped 3-D: `_conv_last`."""
    if attrs["groups"] != 1:
        return _conv_grouped_forward(x, params, attrs)
    if x.ndim > 4:
        return _conv_last(x, params, attrs, ctx)
    x4 = _as_2d(x)
    k, s, p, d = _geometry2d(x.shape, attrs, pool=False)
    n, c, h, w = x4.shape
    weight = params["weight"]
    o = weight.shape[0]
    out_hw = _out_sizes((h, w), k, s, p, d)
    layout = "cf" if _short_rows(c, k) else "nhwc"
    out = (_conv_cf if layout == "cf" else _conv_nhwc)(x4, weight, k, s, p, d, out_hw)
    if attrs["bias"]:
        out += params["bias"].reshape(-1, 1, 1)
    if x.ndim == 3:
        out = out[:, :, 0, :]
    # keep the input and the weight itself (the live parameter, unchanged until the update),
    # not the unfolded matrix or the weight's reordered copy: PyTorch's saved tensors
    return out, (layout, x, weight, (k, s, p, d), attrs["bias"], ctx is None or ctx.input_grad)


def _conv_nhwc(x4, weight, k, s, p, d, out_hw):
    """Channels-last: (B·OH·OW, KH·KW·C) @ (KH·KW·C, O) per chunk; (N, O, OH, OW) a view of
    channels-last memory."""
    n, c = x4.shape[:2]
    o = weight.shape[0]
    oh, ow = out_hw
    wm = weight.reshape(o, c, k[0], k[1]).transpose(2, 3, 1, 0).reshape(-1, o)  # (KH·KW·C, O)
    xp = _pad_last(x4, p)
    out = np.empty((n, oh, ow, o), x4.dtype)
    b = _chunk(n, oh * ow, ROWS)
    cols = np.empty((b, oh, ow, k[0], k[1], c), x4.dtype)
    for b0 in range(0, n, b):
        m = min(b, n - b0)
        cm = _unfold_nhwc(xp[b0:b0 + m], cols[:m], k, s, d, out_hw).reshape(m * oh * ow, -1)
        np.matmul(cm, wm, out=out[b0:b0 + m].reshape(m * oh * ow, o))
    return out.transpose(0, 3, 1, 2)


def _pad_cnhw(x4, p):
    """(N, C, H, W) -> padded channels-first-of-the-batch (C, N, H + 2P, W + 2P), one copy."""
    n, c, h, w = x4.shape
    xp = np.zeros((c, n, h + 2 * p[0], w + 2 * p[1]), x4.dtype)
    xp[:, :, p[0]:p[0] + h, p[1]:p[1] + w] = x4.transpose(1, 0, 2, 3)
    return xp


def _unfold_cnhw(xp, cols, k, s, d, out_hw):
    """Fill cols (C, KH, KW, B, OH, OW) from a padded (C, B, Hp, Wp) chunk: one copy per
    kernel offset, each of contiguous output rows."""
    for i, j, rs, cs in _offsets(k, s, d, out_hw):
        cols[:, i, j] = xp[:, :, rs, cs]
    return cols


def _conv_cf(x4, weight, k, s, p, d, out_hw):
    """Channels-first: (O, C·KH·KW) @ (C·KH·KW, B·OH·OW) per chunk (the weight's own
    layout); (N, O, OH, OW) a view of (O, N, OH, OW) memory."""
    n, c = x4.shape[:2]
    o = weight.shape[0]
    oh, ow = out_hw
    wm = weight.reshape(o, -1)
    xp = _pad_cnhw(x4, p)
    out = np.empty((o, n, oh, ow), x4.dtype)
    b = _chunk(n, oh * ow, COLS)
    cols = np.empty((c, k[0], k[1], b, oh, ow), x4.dtype)
    for b0 in range(0, n, b):
        m = min(b, n - b0)
        cm = _unfold_cnhw(xp[:, b0:b0 + m], cols[:, :, :, :m], k, s, d, out_hw).reshape(-1, m * oh * ow)
        np.matmul(wm, cm, out=out[:, b0:b0 + m].reshape(o, m * oh * ow))  # a view: rows strided
    return out.transpose(1, 0, 2, 3)


def conv_backward(dout, cache):
    if cache[0] == "grouped":
        return _conv_grouped_backward(dout, cache)
    if cache[0] == "last":
        return _conv_last_backward(dout, cache)
    layout, x, weight, (k, s, p, d), bias, input_grad = cache
    x4, d4 = _as_2d(x), _as_2d(dout)
    grads = {}
    if bias:
        grads["bias"] = d4.sum(axis=(0, 2, 3))
    run = _conv_cf_backward if layout == "cf" else _conv_nhwc_backward
    dx, grads["weight"] = run(x4, d4, weight, k, s, p, d, input_grad)
    return (None if dx is None else dx.reshape(x.shape)), grads


def _conv_nhwc_backward(x4, d4, weight, k, s, p, d, input_grad):
    n, o, oh, ow = d4.shape
    c, h, w = x4.shape[1:]
    xp = _pad_last(x4, p)
    dnhwc = d4.transpose(0, 2, 3, 1)
    dwm = np.zeros((o, k[0] * k[1] * c), x4.dtype)
    b = _chunk(n, oh * ow, ROWS)
    cols = np.empty((b, oh, ow, k[0], k[1], c), x4.dtype)
    dm_buf = None if dnhwc.flags.c_contiguous else np.empty((b, oh, ow, o), x4.dtype)
    # stride 1: dx is the correlation of the gradient, padded by q = D·(K−1) − P, with the
    # flipped kernel: one more unfold and GEMM per chunk, written straight into dx (small
    # VGG's 3x3 "same" convs: backward 4-6% faster than per-offset products added onto dx).
    # Only where the output is as large as the input: else the padding's zeros cost more
    # (LeNet-5's unpadded 5x5 conv: 1.5x slower)
    q = [di * (ki - 1) - pi for ki, di, pi in zip(k, d, p)]
    correlate = input_grad and s == (1, 1) and min(q) >= 0 and oh * ow >= h * w
    if correlate:
        dx = np.empty((n, h, w, c), x4.dtype)
        wflip = np.ascontiguousarray(weight.reshape(o, c, k[0], k[1])[:, :, ::-1, ::-1]
                                     .transpose(2, 3, 0, 1)).reshape(-1, c)  # (KH·KW·O, C)
        dpad = np.zeros((b, oh + 2 * q[0], ow + 2 * q[1], o), x4.dtype)
        dcols = np.empty((b, h, w, k[0], k[1], o), x4.dtype)
    elif input_grad:
        dxp = np.zeros_like(xp)
        # the window gradients one kernel offset at a time, (KH·KW, B·OH·OW, C): each a
        # contiguous block that adds onto its strided slice of dx
        wk = np.ascontiguousarray(weight.reshape(o, c, k[0] * k[1]).transpose(2, 0, 1))  # (KH·KW, O, C)
        dk_buf = np.empty((k[0] * k[1], b * oh * ow, c), x4.dtype)
    for b0 in range(0, n, b):
        m = min(b, n - b0)
        dm = dnhwc[b0:b0 + m]
        if dm_buf is not None:
            dm = dm_buf[:m]
            dm[...] = dnhwc[b0:b0 + m]
        dm = dm.reshape(m * oh * ow, o)
        cm = _unfold_nhwc(xp[b0:b0 + m], cols[:m], k, s, d, (oh, ow)).reshape(m * oh * ow, -1)
        dwm += dm.T @ cm
        if correlate:
            dpad[:m, q[0]:q[0] + oh, q[1]:q[1] + ow] = dnhwc[b0:b0 + m]
            dc = _unfold_nhwc(dpad[:m], dcols[:m], k, (1, 1), d, (h, w)).reshape(m * h * w, -1)
            np.matmul(dc, wflip, out=dx[b0:b0 + m].reshape(m * h * w, c))
        elif input_grad:
            dk = np.matmul(dm[None], wk, out=dk_buf[:, :m * oh * ow])
            dxc = dxp[b0:b0 + m]
            for t, (_, _, rs, cs) in enumerate(_offsets(k, s, d, (oh, ow))):
                dxc[:, rs, cs, :] += dk[t].reshape(m, oh, ow, c)
    dw = dwm.reshape(o, k[0], k[1], c).transpose(0, 3, 1, 2).reshape(weight.shape)
    if not input_grad:
        return None, dw
    if not correlate:
        dx = dxp[:, p[0]:p[0] + h, p[1]:p[1] + w, :]
    # left channels-last (a view): the layers below take it in that layout, no copy
    return dx.transpose(0, 3, 1, 2), dw


def _conv_cf_backward(x4, d4, weight, k, s, p, d, input_grad):
    n, o, oh, ow = d4.shape
    c, h, w = x4.shape[1:]
    xp = _pad_cnhw(x4, p)
    dxp = np.zeros_like(xp) if input_grad else None
    dcf = d4.transpose(1, 0, 2, 3)                              # (O, N, OH, OW)
    wm = weight.reshape(o, -1)
    dwm = np.zeros(wm.shape, x4.dtype)
    b = _chunk(n, oh * ow, COLS)
    cols = np.empty((c, k[0], k[1], b, oh, ow), x4.dtype)
    dm_buf = np.empty((o, b, oh, ow), x4.dtype)
    dcols_buf = np.empty((c * k[0] * k[1], b * oh * ow), x4.dtype)
    for b0 in range(0, n, b):
        m = min(b, n - b0)
        dm = dm_buf[:, :m]
        dm[...] = dcf[:, b0:b0 + m]
        dm = dm.reshape(o, m * oh * ow)
        cm = _unfold_cnhw(xp[:, b0:b0 + m], cols[:, :, :, :m], k, s, d, (oh, ow)).reshape(-1, m * oh * ow)
        dwm += dm @ cm.T
        if not input_grad:
            continue
        dcols = np.matmul(wm.T, dm, out=dcols_buf[:, :m * oh * ow]).reshape(c, k[0], k[1], m, oh, ow)
        dxc = dxp[:, b0:b0 + m]
        for i, j, rs, cs in _offsets(k, s, d, (oh, ow)):
            dxc[:, :, rs, cs] += dcols[:, i, j]
    if not input_grad:
        return None, dwm.reshape(weight.shape)
    return dxp[:, :, p[0]:p[0] + h, p[1]:p[1] + w].transpose(1, 0, 2, 3), dwm.reshape(weight.shape)


def _unfold_last(xp, cols, k, s, d, out_sp):
    """Fill cols (B, *out, K, C) from a padded channels-last chunk (B, *padded, C): one copy
    per kernel offset, of runs of C contiguous values."""
    for t, (_, sl) in enumerate(_taps(k, s, d, out_sp)):
        cols[..., t, :] = xp[(slice(None),) + sl]
    return cols


def _conv_last(x, params, attrs, ctx):
    """Ungrouped convolution over any number of spatial axes (used for 3-D): channels-last,
    (B·P, K·C) @ (K·C, O) per chunk of about `ROWS` output positions (P positions per image,
    K kernel offsets), the unfolded chunk filled one kernel offset at a time; (N, O, *out) a
    view of channels-last memory. Keeps the input and the weight (backward unfolds again)."""
    k, s, p, d = window_axes(attrs, x.ndim - 2)
    n, c = x.shape[:2]
    weight = params["weight"]
    o, kk = weight.shape[0], math.prod(k)
    out_sp = _out_sizes(x.shape[2:], k, s, p, d)
    npos = math.prod(out_sp)
    wm = weight.reshape(o, c, kk).transpose(2, 1, 0).reshape(kk * c, o)  # (K·C, O)
    xp = _pad_last(x, p)
    out = np.empty((n, *out_sp, o), x.dtype)
    b = _chunk(n, npos, ROWS)
    cols = np.empty((b, *out_sp, kk, c), x.dtype)
    for b0 in range(0, n, b):
        m = min(b, n - b0)
        cm = _unfold_last(xp[b0:b0 + m], cols[:m], k, s, d, out_sp).reshape(m * npos, -1)
        np.matmul(cm, wm, out=out[b0:b0 + m].reshape(m * npos, o))
    out = np.moveaxis(out, -1, 1)
    if attrs["bias"]:
        out += params["bias"].reshape((-1,) + (1,) * len(k))
    return out, ("last", x, weight, (k, s, p, d), attrs["bias"], ctx is None or ctx.input_grad)


def _conv_last_backward(dout, cache):
    """dW = Σ over chunks of doutᵀ·cols; dx: one product per chunk, (B·P, O) @ (O, K·C),
    added onto the padded channels-last dx one kernel offset at a time."""
    _, x, weight, (k, s, p, d), bias, input_grad = cache
    n, o = dout.shape[:2]
    c, sizes, out_sp = x.shape[1], x.shape[2:], dout.shape[2:]
    kk, npos = math.prod(k), math.prod(out_sp)
    grads = {}
    if bias:
        grads["bias"] = dout.sum(axis=(0, *range(2, dout.ndim)))
    xp = _pad_last(x, p)
    dl = np.moveaxis(dout, 1, -1)                                      # (N, *out, O)
    wm = weight.reshape(o, c, kk).transpose(0, 2, 1).reshape(o, kk * c)  # (O, K·C)
    dwm = np.zeros((o, kk * c), x.dtype)
    b = _chunk(n, npos, ROWS)
    cols = np.empty((b, *out_sp, kk, c), x.dtype)
    dm_buf = np.empty((b, *out_sp, o), x.dtype)
    if input_grad:
        dxp = np.zeros_like(xp)
        dc_buf = np.empty((b * npos, kk * c), x.dtype)
    for b0 in range(0, n, b):
        m = min(b, n - b0)
        dm = dm_buf[:m]
        dm[...] = dl[b0:b0 + m]
        dm = dm.reshape(m * npos, o)
        cm = _unfold_last(xp[b0:b0 + m], cols[:m], k, s, d, out_sp).reshape(m * npos, -1)
        dwm += dm.T @ cm
        if input_grad:
            dc = np.matmul(dm, wm, out=dc_buf[:m * npos]).reshape(m, *out_sp, kk, c)
            dxc = dxp[b0:b0 + m]
            for t, (_, sl) in enumerate(_taps(k, s, d, out_sp)):
                dxc[(slice(None),) + sl] += dc[..., t, :]
    grads["weight"] = dwm.reshape(o, kk, c).transpose(0, 2, 1).reshape(weight.shape)
    if not input_grad:
        return None, grads
    dx = dxp[(slice(None),) + tuple(slice(pi, pi + size) for pi, size in zip(p, sizes))]
    return np.moveaxis(dx, -1, 1), grads  # a view of channels-last memory, as in 2-D


def _conv_grouped_forward(x, params, attrs):
    """Grouped convolution (any rank). Depthwise 1-D or 2-D (groups = C, O = C·M):
    channels-last, one multiply-accumulate per kernel offset over all channels at once.
    Otherwise one copy of the windows into a (G, N·P, C/G·K) matrix (P output positions, K
    kernel offsets), then one batched matmul. Either keeps the input, not the windows
    (PyTorch's saved tensors; backward unfolds again)."""
    x4 = _as_2d(x)
    k, s, p, d = _geometry2d(x.shape, attrs, pool=False)
    n, c = x4.shape[:2]
    g = attrs["groups"]
    weight = params["weight"]
    o = weight.shape[0]
    out_sp = _out_sizes(x4.shape[2:], k, s, p, d)
    if g == c and x4.ndim == 4:
        out = _depthwise(x4, weight, k, s, p, d, out_sp)
    else:
        r = len(k)
        cols = _grouped_cols(x4, k, s, p, d, g, out_sp)
        wm = weight.reshape(g, o // g, -1)                          # (G, O/G, C/G·K)
        out = cols @ wm.transpose(0, 2, 1)                          # (G, N·P, O/G)
        out = (out.reshape(g, n, *out_sp, o // g).transpose(1, 0, r + 2, *range(2, r + 2))
               .reshape(n, o, *out_sp))
    if attrs["bias"]:
        out = out + params["bias"].reshape((-1,) + (1,) * len(out_sp))
    if x.ndim == 3:
        out = out[:, :, 0, :]
    return out, ("grouped", x, weight, (k, s, p, d), g, attrs["bias"])


def _grouped_cols(x4, k, s, p, d, g, out_sp):
    """The windows of x4 as (G, N·P, C/G·K): one copy."""
    n, c = x4.shape[:2]
    r = len(k)
    xp = np.pad(x4, ((0, 0), (0, 0)) + tuple((pi, pi) for pi in p))
    win = _windows(xp, k, s, d, out_sp).reshape(n, g, c // g, *out_sp, *k)
    # (G, N, *out, C/G, *k)
    order = (1, 0, *range(3, 3 + r), 2, *range(3 + r, 3 + 2 * r))
    return win.transpose(order).reshape(g, n * math.prod(out_sp), -1)


def _depthwise(x4, weight, k, s, p, d, out_hw):
    """Depthwise: out[n, c·M + m] = Σ over offsets of the slice of channel c times its tap,
    channels-last (N, OH, OW, C, M) accumulated per kernel offset; (N, O, OH, OW) a view."""
    n, c = x4.shape[:2]
    mult = weight.shape[0] // c
    w5 = weight.reshape(c, mult, k[0], k[1])
    xp = _pad_last(x4, p)[..., None]                               # (N, Hp, Wp, C, 1)
    out = np.zeros((n, *out_hw, c, mult), x4.dtype)
    tmp = np.empty_like(out)
    for i, j, rs, cs in _offsets(k, s, d, out_hw):
        out += np.multiply(xp[:, rs, cs], w5[:, :, i, j], out=tmp)
    return out.reshape(n, *out_hw, c * mult).transpose(0, 3, 1, 2)


def _depthwise_backward(x4, d4, weight, k, s, p, d):
    n, c, h, w = x4.shape
    o, oh, ow = d4.shape[1:]
    mult = o // c
    w5 = weight.reshape(c, mult, k[0], k[1])
    xp = _pad_last(x4, p)
    d5 = d4.transpose(0, 2, 3, 1).reshape(n, oh, ow, c, mult)      # channels-last (a copy if need be)
    dw = np.empty((c, mult, k[0], k[1]), x4.dtype)
    dxp = np.zeros_like(xp)
    tmp = np.empty_like(d5)
    for i, j, rs, cs in _offsets(k, s, d, (oh, ow)):
        xs = xp[:, rs, cs, :, None]
        # the tap's gradient: Σ over batch and positions of dout·x, as a BLAS product
        rows = np.multiply(d5, xs, out=tmp).reshape(-1, c * mult)
        dw[:, :, i, j] = (np.ones(rows.shape[0], x4.dtype) @ rows).reshape(c, mult)
        np.multiply(d5, w5[:, :, i, j], out=tmp)
        dxp[:, rs, cs, :] += tmp[..., 0] if mult == 1 else tmp.sum(axis=-1)
    dx = dxp[:, p[0]:p[0] + h, p[1]:p[1] + w, :].transpose(0, 3, 1, 2)
    return dx, dw.reshape(weight.shape)


def _conv_grouped_backward(dout, cache):
    _, x, weight, (k, s, p, d), g, bias = cache
    x4, d4 = _as_2d(x), _as_2d(dout)
    n, o = d4.shape[:2]
    out_sp, sizes, r = d4.shape[2:], x4.shape[2:], len(k)
    c = x4.shape[1]
    grads = {}
    if bias:
        grads["bias"] = d4.sum(axis=(0, *range(2, 2 + r)))
    if g == c and x4.ndim == 4:
        dx, grads["weight"] = _depthwise_backward(x4, d4, weight, k, s, p, d)
        return dx.reshape(x.shape), grads
    cols = _grouped_cols(x4, k, s, p, d, g, out_sp)
    wm = weight.reshape(g, o // g, -1)
    dm = (d4.reshape(n, g, o // g, *out_sp).transpose(1, 0, *range(3, 3 + r), 2)
          .reshape(g, n * math.prod(out_sp), o // g))
    grads["weight"] = (dm.transpose(0, 2, 1) @ cols).reshape(weight.shape)
    del cols
    dcols = (dm @ wm).reshape(g, n, *out_sp, c // g, *k)            # -> (N, C, *out, *k)
    dcols = dcols.transpose(1, 0, r + 2, *range(2, r + 2), *range(r + 3, 2 * r + 3)).reshape(
        n, c, *out_sp, *k)
    xp_shape = (n, c) + tuple(size + 2 * pi for size, pi in zip(sizes, p))
    dxp = _col2im(dcols, xp_shape, k, s, d, out_sp)
    return _crop(dxp, p, sizes).reshape(x.shape), grads


# ---- pooling ----------------------------------------------------------------------------------

def _pool_setup(x, attrs, fill):
    """The padded input, with the ceil-mode overhang at the end of each axis, and geometry."""
    x4 = _as_2d(x)
    k, s, p, d = _geometry2d(x.shape, attrs, pool=True)
    sizes = x4.shape[2:]
    out = _out_sizes(sizes, k, s, p, d, attrs["ceil_mode"])
    # the last window may hang over the right padding (ceil_mode): pad that far too
    extra = [max(0, (o - 1) * si + di * (ki - 1) + 1 - (size + 2 * pi))
             for o, si, di, ki, size, pi in zip(out, s, d, k, sizes, p)]
    return x4, _pad_window(x4, p, extra, fill), (k, s, p, d), out, extra


def _pad_window(x4, p, extra, fill):
    """x4 padded by P (and the ceil-mode overhang at the end) with `fill`; x4 itself, in its
    own memory layout, when there is no padding."""
    if not any(p) and not any(extra):
        return x4
    return np.pad(x4, ((0, 0), (0, 0)) + tuple((pi, pi + e) for pi, e in zip(p, extra)),
                  constant_values=fill)


def maxpool_forward(x, params, attrs, mode, ctx):
    """x (N, C, H, W) -> (N, C, OH, OW); padding never wins (it is −∞); ties go to the first
    maximum in scan order and NaN wins (PyTorch's kernel: `val > max || isnan(val)`). One pass
    per kernel offset over a strided slice (no copy of the windows), every buffer in the
    input's memory layout (channels-last after a convolution). Without a NaN the forward is
    `np.maximum` alone and backward finds each window's first maximum by equality with the
    output (an index update per offset is a data-dependent branch, slow: small VGG's pools,
    interleaved A/B, forward 19 -> 2.2 and 6.2 -> 0.8 ms, backward 13.8 -> 15.0 and 6.5 -> 1.7
    ms); with one, the indices are kept."""
    x4, xp, (k, s, p, d), out_sp, extra = _pool_setup(x, attrs, -np.inf)
    offs = [_ALL2 + sl for _, sl in _taps(k, s, d, out_sp)]
    out = xp[offs[0]].copy(order="K")
    arg = None
    if np.isnan(x4).any():  # one reduction spares a NaN test per offset
        arg = np.zeros_like(out, np.int16 if len(offs) < 2 ** 15 else np.int64)
        better = np.empty_like(out, bool)
        for t, sl in enumerate(offs[1:], 1):
            v = xp[sl]
            np.greater(v, out, out=better)
            better |= np.isnan(v)
            np.copyto(out, v, where=better)
            np.copyto(arg, t, where=better)
    else:
        for sl in offs[1:]:
            np.maximum(out, xp[sl], out=out)
    # keep the input (the unpadded one: the layer before keeps it too) and the output (the
    # next layer's input), or the indices
    kept = (x4, out) if arg is None else arg
    return (out[:, :, 0, :] if x.ndim == 3 else out), (x.shape, kept, (k, s, p, d), out_sp, extra)


def _like(a, ref):
    """a in ref's memory layout: a itself if it has it, else one copy."""
    if a.strides == ref.strides and a.dtype == ref.dtype:
        return a
    b = np.empty_like(ref, a.dtype)
    b[...] = a
    return b


def maxpool_backward(dout, cache):
    x_shape, kept, (k, s, p, d), out_sp, extra = cache
    d4 = _as_2d(dout)
    n, c = d4.shape[:2]
    sizes = tuple(x_shape[2:]) if len(x_shape) > 3 else (1, x_shape[2])
    padded = tuple(size + 2 * pi + e for size, pi, e in zip(sizes, p, extra))
    r = len(sizes)
    # every pass in one memory layout, the input's (channels-last after a convolution): the
    # gradient copied into it once
    by_value = isinstance(kept, tuple)
    if by_value:
        x4, out = kept
        xp = _pad_window(x4, p, extra, -np.inf)
        taken = np.zeros_like(out, bool)
        d4 = _like(d4, out)
    last = d4.transpose(0, *range(2, 2 + r), 1).flags.c_contiguous
    dxp = (np.zeros((n, *padded, c), dout.dtype).transpose(0, r + 1, *range(1, r + 1)) if last
           else np.zeros((n, c, *padded), dout.dtype))
    disjoint = all(si >= di * (ki - 1) + 1 for si, di, ki in zip(s, d, k))
    finite = bool(np.isfinite(d4).all())
    mask = np.empty_like(d4, bool)  # (empty_like: d4's layout)
    for t, (_, sl) in enumerate(_taps(k, s, d, out_sp)):
        sl = _ALL2 + sl
        if by_value:  # the first maximum in scan order: equal to the output, none before it
            np.equal(xp[sl], out, out=mask)
            np.greater(mask, taken, out=mask)
            taken |= mask
        else:
            np.equal(kept, t, out=mask)
        if not finite:  # inf·0 would be NaN where PyTorch's scatter leaves 0
            np.copyto(dxp[sl], np.where(mask, d4, 0) + dxp[sl])
        elif disjoint:  # windows do not overlap: each input cell gets at most one gradient
            np.multiply(d4, mask, out=dxp[sl])  # (branch-free, unlike copyto where=)
        else:
            dxp[sl] += d4 * mask
    return _crop(dxp, p, sizes).reshape(x_shape), {}


def avgpool_forward(x, params, attrs, mode, ctx):
    """x (N, C, H, W) -> (N, C, OH, OW). The divisor is PyTorch's: the window clipped to the
    padded input (count_include_pad) or to the input itself, never the ceil-mode overhang.
    The window sums: one strided slice addition per kernel offset."""
    x4, xp, (k, s, p, d), out_sp, extra = _pool_setup(x, attrs, 0.0)
    sizes = x4.shape[2:]
    counted = np.zeros(xp.shape[2:], x.dtype)
    if attrs["count_include_pad"]:
        counted[tuple(slice(0, size + 2 * pi) for size, pi in zip(sizes, p))] = 1
    else:
        counted[tuple(slice(pi, pi + size) for size, pi in zip(sizes, p))] = 1
    div = _windows(counted[None, None], k, s, d, out_sp).sum(axis=tuple(range(-len(k), 0)))[0, 0]
    out = np.zeros(x4.shape[:2] + out_sp, x.dtype)
    for _, sl in _taps(k, s, d, out_sp):
        out += xp[_ALL2 + sl]
    out /= div
    if x.ndim == 3:
        out = out[:, :, 0, :]
    return out, (x.shape, xp.shape, div, (k, s, p, d), out_sp)


def avgpool_backward(dout, cache):
    x_shape, xp_shape, div, (k, s, p, d), out_sp = cache
    d4 = _as_2d(dout) / div
    dcols = np.broadcast_to(d4[(Ellipsis,) + (None,) * len(k)], d4.shape + tuple(k))
    dxp = _col2im(dcols, xp_shape, k, s, d, out_sp)
    sizes = tuple(x_shape[2:]) if len(x_shape) > 3 else (1, x_shape[2])
    return _crop(dxp, p, sizes).reshape(x_shape), {}


def _adaptive_matrix(n_in: int, n_out: int, dtype):
    """(n_out, n_in): row i averages inputs floor(i·N/O) .. ceil((i+1)·N/O) − 1 (PyTorch)."""
    m = np.zeros((n_out, n_in), dtype)
    for i in range(n_out):  # a loop over output cells of one axis, not over pixels
        lo, hi = (i * n_in) // n_out, -(-((i + 1) * n_in) // n_out)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


def _per_axis_maps(mats, x4, adjoint=False):
    """x4 (N, C, *spatial) with matrix mats[i] (out_i, in_i) applied along spatial axis i, in
    one einsum (2-D: "ph,nchw,qw->ncpq"); `adjoint`: the transposed maps, (N, C, *out) ->
    (N, C, *in)."""
    r = len(mats)
    ins, outs = "dhw"[-r:], "pqr"[:r]
    a, b = (outs, ins) if adjoint else (ins, outs)
    subs = [outs[i] + ins[i] for i in range(r)]
    spec = f"{subs[0]},nc{a},{','.join(subs[1:])}->nc{b}"
    return np.einsum(spec, mats[0], x4, *mats[1:], optimize=True)


def adaptive_avgpool_forward(x, params, attrs, mode, ctx):
    """x (N, C, *spatial) -> (N, C, *size): one averaging matrix per axis."""
    x4 = _as_2d(x)
    size = _per_axis(attrs["size"], x.ndim)
    mats = [_adaptive_matrix(n, o, x.dtype) for n, o in zip(x4.shape[2:], size)]
    out = _per_axis_maps(mats, x4)
    if x.ndim == 3:
        out = out[:, :, 0, :]
    return out, (x.shape, mats)


def adaptive_avgpool_backward(dout, cache):
    x_shape, mats = cache
    return _per_axis_maps(mats, _as_2d(dout), adjoint=True).reshape(x_shape), {}


def global_avgpool_forward(x, params, attrs, mode, ctx):
    """x (N, C, *spatial) -> (N, C)"""
    return x.mean(axis=tuple(range(2, x.ndim))), x.shape


def global_avgpool_backward(dout, cache):
    shape = cache
    size = int(np.prod(shape[2:]))
    dx = np.broadcast_to((dout / size).reshape(dout.shape + (1,) * (len(shape) - 2)), shape)
    return np.array(dx), {}


# ---- up-sampling: transposed convolution, interpolation ------------------------------------------

def conv_transpose_forward(x, params, attrs, mode, ctx):
    """x (N, C_in, H, W), weight (C_in, C_out/G, KH, KW) -> (N, C_out, OH, OW) with
    O = (N − 1)·S − 2P + D·(K − 1) + output_pad + 1: the adjoint of convolution, one batched
    matmul to the windows' values, then `_col2im` onto the output, cropped by P."""
    x4 = _as_2d(x)
    k, s, p, d = _geometry2d(x.shape, attrs, pool=False)
    op = _per_axis(attrs["output_pad"], x.ndim)
    op = (0,) + op[1:] if x.ndim == 3 else op  # (the 1-wide axis gets no output padding)
    n, c = x4.shape[:2]
    sizes, r = x4.shape[2:], len(k)
    g = attrs["groups"]
    weight = params["weight"]
    co = weight.shape[1] * g
    out_sp = tuple((size - 1) * si - 2 * pi + di * (ki - 1) + opi + 1
                   for size, si, pi, di, ki, opi in zip(sizes, s, p, d, k, op))
    xm = (x4.reshape(n, g, c // g, *sizes).transpose(1, 0, *range(3, 3 + r), 2)
          .reshape(g, n * math.prod(sizes), c // g))
    wm = weight.reshape(g, c // g, -1)                           # (G, C_in/G, C_out/G·K)
    cols = (xm @ wm).reshape(g, n, *sizes, co // g, *k)
    cols = cols.transpose(1, 0, r + 2, *range(2, r + 2), *range(r + 3, 2 * r + 3)).reshape(
        n, co, *sizes, *k)
    full_shape = (n, co) + tuple(o + 2 * pi for o, pi in zip(out_sp, p))
    out = _crop(_col2im(cols, full_shape, k, s, d, sizes), p, out_sp)
    if attrs["bias"]:
        out = out + params["bias"].reshape((-1,) + (1,) * r)
    if x.ndim == 3:
        out = out[:, :, 0, :]
    return out, (x.shape, xm, wm, weight.shape, full_shape, (k, s, p, d), g, attrs["bias"])


def conv_transpose_backward(dout, cache):
    x_shape, xm, wm, w_shape, full_shape, (k, s, p, d), g, bias = cache
    d4 = _as_2d(dout)
    n, co = d4.shape[:2]
    out_sp, r = d4.shape[2:], len(k)
    sizes = tuple(x_shape[2:]) if len(x_shape) > 3 else (1, x_shape[2])
    c = x_shape[1]
    dfull = np.zeros(full_shape, dout.dtype)
    _crop(dfull, p, out_sp)[...] = d4
    win = _windows(dfull, k, s, d, sizes).reshape(n, g, co // g, *sizes, *k)
    order = (1, 0, *range(3, 3 + r), 2, *range(3 + r, 3 + 2 * r))
    dcols = win.transpose(order).reshape(g, n * math.prod(sizes), -1)
    dx = ((dcols @ wm.transpose(0, 2, 1)).reshape(g, n, *sizes, c // g)
          .transpose(1, 0, r + 2, *range(2, r + 2)))
    grads = {"weight": (xm.transpose(0, 2, 1) @ dcols).reshape(w_shape)}
    if bias:
        grads["bias"] = d4.sum(axis=(0, *range(2, 2 + r)))
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
    """x (N, C, *spatial) -> (N, C, size·scale per axis), nearest or linear along every axis
    (bilinear in 2-D, trilinear in 3-D), one interpolation matrix per axis (PyTorch's
    nn.Upsample, align_corners=False)."""
    x4 = _as_2d(x)
    scale = _per_axis(attrs["scale"], x.ndim)
    make = _nearest_matrix if attrs["mode"] == "nearest" else _linear_matrix
    mats = [make(n, si, x.dtype) for n, si in zip(x4.shape[2:], scale)]
    out = _per_axis_maps(mats, x4)
    if x.ndim == 3:
        out = out[:, :, 0, :]
    return out, (x.shape, mats)


upsample_backward = adaptive_avgpool_backward
