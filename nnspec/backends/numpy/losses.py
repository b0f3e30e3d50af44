"""Losses in NumPy, as PyTorch defines them (mean over the batch), each with its gradient.

`loss(name, options, out, y) -> (value, dout)`: `out` the network's outputs (N, …), `y`
class indices (int), soft targets (N, C) or float targets; `dout` is d value / d out.

>>> import numpy as np
>>> value, dout = loss("cross_entropy", {}, np.zeros((2, 4)), np.array([0, 3]))
>>> round(value, 6), dout[0].tolist()
(1.386294, [-0.375, 0.125, 0.125, 0.125])
"""

from __future__ import annotations

from typing import Mapping

import numpy as np


def _log_softmax(out):
    z = out - out.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _one_hot(y, c, dtype):
    q = np.zeros((len(y), c), dtype)
    q[np.arange(len(y)), y] = 1
    return q


def _dense_target(out, y):
    """Float targets shaped like `out`; class indices become one-hot rows (as torch_backend)."""
    if y.dtype.kind == "f":
        return y.astype(out.dtype).reshape(out.shape)
    if out.ndim == 2 and out.shape[1] > 1:
        return _one_hot(y, out.shape[1], out.dtype)
    return y.astype(out.dtype).reshape(out.shape)


def _weighted(q, y, o, dtype):
    """Targets times the class weights `o["weight"]` (C,), and the divisor of the mean as
    PyTorch's weight= defines it: the sum of the weights of the samples' classes for class
    indices, the number of samples for soft targets (class probabilities)."""
    w = o.get("weight")
    if w is None:
        return q, len(q)
    w = np.asarray(w, dtype)
    return q * w, (w[y].sum() if y.dtype.kind != "f" else len(q))


def cross_entropy(out, y, o):
    n, c = out.shape
    q = y.astype(out.dtype) if y.dtype.kind == "f" else _one_hot(y, c, out.dtype)
    ls = o.get("label_smoothing", 0.0)
    if ls:
        q = q * (1 - ls) + ls / c
    q, d = _weighted(q, y, o, out.dtype)
    logp = _log_softmax(out)
    value = -(q * logp).sum() / d
    return value, (np.exp(logp) * q.sum(axis=1, keepdims=True) - q) / d


def nll(out, y, o):
    q = y.astype(out.dtype) if y.dtype.kind == "f" else _one_hot(y, out.shape[1], out.dtype)
    q, d = _weighted(q, y, o, out.dtype)
    return -(q * out).sum() / d, -q / d


def hinge(out, y, o):
    """torch's multi_margin_loss: Σ_{j≠y} max(0, margin − x_y + x_j) / C, mean over N."""
    if y.dtype.kind == "f":
        y = y.argmax(axis=1)
    n, c = out.shape
    rows = np.arange(n)
    m = o.get("margin", 1.0) - out[rows, y][:, None] + out
    m[rows, y] = 0
    active = (m > 0).astype(out.dtype)
    dout = active / (n * c)
    dout[rows, y] = -active.sum(axis=1) / (n * c)
    return (np.maximum(m, 0)).sum() / (n * c), dout


def bce(out, y, o):
    t = _dense_target(out, y)
    # torch clamps each log at −100
    value = -(t * np.maximum(np.log(out), -100) + (1 - t) * np.maximum(np.log1p(-out), -100)).mean()
    return value, (out - t) / np.maximum(out * (1 - out), 1e-12) / out.size


def bce_logits(out, y, o):
    t = _dense_target(out, y)
    value = (np.maximum(out, 0) - out * t + np.log1p(np.exp(-np.abs(out)))).mean()
    return value, (0.5 * (1 + np.tanh(0.5 * out)) - t) / out.size


def mse(out, y, o):
    d = out - _dense_target(out, y)
    return (d * d).mean(), 2 * d / out.size


def l1(out, y, o):
    d = out - _dense_target(out, y)
    return np.abs(d).mean(), np.sign(d) / out.size


def huber(out, y, o):
    delta = o.get("delta", 1.0)
    d = out - _dense_target(out, y)
    small = np.abs(d) <= delta
    value = np.where(small, 0.5 * d * d, delta * (np.abs(d) - 0.5 * delta)).mean()
    return value, np.where(small, d, delta * np.sign(d)) / out.size


LOSSES = {"cross_entropy": cross_entropy, "nll": nll, "hinge": hinge, "bce": bce,
          "bce_logits": bce_logits, "mse": mse, "l1": l1, "huber": huber}


def loss(name: str, options: Mapping, out: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """(value, d value / d out) of the train section's loss."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}")
    value, dout = LOSSES[name](out, np.asarray(y), options)
    return float(value), dout.astype(out.dtype, copy=False)
