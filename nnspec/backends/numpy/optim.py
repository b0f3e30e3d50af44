"""Optimizers in NumPy, written exactly as torch.optim computes them (so trajectories compare
step by step): the base class owns the plumbing (state per parameter, weight decay, the
learning rate), each optimizer writes only its update. State keys are torch's
("momentum_buffer", "sum", "square_avg", "exp_avg", "exp_avg_sq", "step").

    sgd       g ← g + wd·p;  b ← g (first step) else μ·b + (1 − dampening)·g;
              g ← g + μ·b (nesterov) or b;  p ← p − lr·g
    adagrad   g ← g + wd·p;  s ← s + g²;  p ← p − lr·g / (√s + ε)
    rmsprop   g ← g + wd·p;  a ← α·a + (1 − α)·g²;  d = √a + ε;
              b ← μ·b + g/d, p ← p − lr·b (momentum) or p ← p − lr·g/d
    adam      g ← g + wd·p;  m ← β1·m + (1 − β1)·g;  v ← β2·v + (1 − β2)·g²;
              p ← p − lr/(1 − β1ᵗ) · m / (√v / √(1 − β2ᵗ) + ε)      (ε outside the root)
    adamw     p ← p·(1 − lr·wd), then adam with no decay in g
    lbfgs     torch.optim.LBFGS, full batch, with a closure: see `lbfgs`

>>> import numpy as np
>>> p = {"w": np.array([1.0, -2.0])}
>>> opt = SGD(p, lr=0.1, momentum=0.9)
>>> opt.step({"w": np.array([1.0, 1.0])}); opt.step({"w": np.array([1.0, 1.0])})
>>> p["w"].round(4).tolist()
[0.71, -2.29]
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np


class Optimizer:
    """Updates the arrays of `params` (name -> array) in place from gradients by name."""

    def __init__(self, params: Mapping[str, np.ndarray], lr: float, weight_decay: float = 0.0):
        self.params = dict(params)
        self.lr = lr
        self.weight_decay = weight_decay
        self.state: dict[str, dict] = {name: {} for name in self.params}

    def step(self, grads: Mapping[str, np.ndarray]) -> None:
        for name, p in self.params.items():
            g = grads.get(name)
            if g is None:
                continue
            if self.weight_decay and self.couples_decay:
                g = g + self.weight_decay * p
            self.update(p, g, self.state[name])

    couples_decay = True  # weight decay added to the gradient (L2), as all but AdamW do

    def update(self, p: np.ndarray, g: np.ndarray, state: dict) -> None:
        raise NotImplementedError


BLOCK = 1 << 16  # elements per block of an in-place update: its temporary stays small


def subtract_scaled(p: np.ndarray, lr: float, g: np.ndarray) -> None:
    """p -= lr·g in place, block by block: the temporary lr·g is one block, not a copy of
    the parameter (the MLP's 784x256 weight: 0.77 MiB at the step's peak, ResNet-18's
    3x3x512x512 ones 9 MiB)."""
    if not p.flags.c_contiguous or p.size <= BLOCK:
        p -= lr * g
        return
    pf, gf = p.reshape(-1), g.reshape(-1)  # pf a view of p (contiguous)
    for i in range(0, pf.size, BLOCK):
        pf[i:i + BLOCK] -= lr * gf[i:i + BLOCK]


class SGD(Optimizer):
    def __init__(self, params, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(params, lr, weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov needs a momentum and zero dampening (as torch.optim.SGD)")
        self.momentum, self.dampening, self.nesterov = momentum, dampening, nesterov

    def update(self, p, g, state):
        if self.momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = g.copy()
            else:
                buf *= self.momentum
                buf += (1 - self.dampening) * g if self.dampening else g
            g = g + self.momentum * buf if self.nesterov else buf
        subtract_scaled(p, self.lr, g)


class Adagrad(Optimizer):
    def __init__(self, params, lr, eps=1e-10, weight_decay=0.0):
        super().__init__(params, lr, weight_decay)
        self.eps = eps

    def update(self, p, g, state):
        s = state.setdefault("sum", np.zeros_like(p))
        state["step"] = state.get("step", 0.0) + 1
        s += g * g
        p -= self.lr * (g / (np.sqrt(s) + self.eps))


class RMSprop(Optimizer):
    def __init__(self, params, lr, alpha=0.99, eps=1e-8, momentum=0.0, weight_decay=0.0):
        super().__init__(params, lr, weight_decay)
        self.alpha, self.eps, self.momentum = alpha, eps, momentum

    def update(self, p, g, state):
        a = state.setdefault("square_avg", np.zeros_like(p))
        state["step"] = state.get("step", 0.0) + 1
        a *= self.alpha
        a += (1 - self.alpha) * g * g
        d = np.sqrt(a) + self.eps
        if self.momentum > 0:
            b = state.setdefault("momentum_buffer", np.zeros_like(p))
            b *= self.momentum
            b += g / d
            p -= self.lr * b
        else:
            p -= self.lr * (g / d)


class Adam(Optimizer):
    def __init__(self, params, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr, weight_decay)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def update(self, p, g, state):
        m = state.setdefault("exp_avg", np.zeros_like(p))
        v = state.setdefault("exp_avg_sq", np.zeros_like(p))
        t = state["step"] = state.get("step", 0.0) + 1
        m += (1 - self.beta1) * (g - m)          # torch's lerp
        v *= self.beta2
        v += (1 - self.beta2) * g * g
        step_size = self.lr / (1 - self.beta1 ** t)
        denom = np.sqrt(v) / math.sqrt(1 - self.beta2 ** t) + self.eps
        p -= step_size * (m / denom)


class AdamW(Adam):
    couples_decay = False

    def update(self, p, g, state):
        p *= 1 - self.lr * self.weight_decay  # decoupled: the weights shrink, g untouched
        super().update(p, g, state)


def make_optimizer(train, params: Mapping[str, np.ndarray]) -> Optimizer:
    """The train section's optimizer over `params`, with torch.optim's defaults (the same
    options `nnspec.train.torch_backend.make_optimizer` passes to torch)."""
    opt = train.optimizer
    name = opt.name if opt is not None else "sgd"
    o = dict(opt.options) if opt is not None else {"lr": 0.01}
    wd = train.weight_decay or 0.0
    if name == "sgd":
        return SGD(params, o["lr"], o.get("momentum", 0.0), o.get("dampening", 0.0),
                   o.get("nesterov", False), wd)
    if name == "adagrad":
        return Adagrad(params, o["lr"], o.get("eps", 1e-10), wd)
    if name == "rmsprop":
        return RMSprop(params, o["lr"], o.get("decay", 0.99), o.get("eps", 1e-8), o.get("momentum", 0.0), wd)
    if name == "adam":
        return Adam(params, o["lr"], o.get("beta1", 0.9), o.get("beta2", 0.999), o.get("eps", 1e-8), wd)
    if name == "adamw":
        return AdamW(params, o["lr"], o.get("beta1", 0.9), o.get("beta2", 0.999), o.get("eps", 1e-8),
                     wd or o.get("weight_decay", 0.01))
    if name == "lbfgs":  # its own step(closure): nnspec/backends/numpy/lbfgs.py
        from .lbfgs import LBFGS
        return LBFGS(params, o["lr"], max_iter=o["max_iter"], history_size=o["history"],
                     line_search_fn=None if o["line_search"] == "none" else o["line_search"])
    raise ValueError(f"unknown optimizer {name!r}")
