"""L-BFGS in NumPy, written as torch.optim.LBFGS computes it (torch/optim/lbfgs.py), so the two
trajectories agree step by step (tests/test_lbfgs.py: to ~1e-9 in float64, with and without
the line search).

One `step(closure)` is up to `max_iter` iterations on the flattened parameters x (the
parameters in order, each raveled), `closure()` returning (loss, flat gradient) at the
current parameters:

    first iteration ever:  d = −g, the history empty, H_diag = 1, t = min(1, 1/|g|₁)·lr
    later:                 y = g − g_prev, s = t·d; if y·s > 1e−10 append (y, s, 1/(y·s))
                           (dropping the oldest past `history_size`), H_diag = y·s / y·y;
                           d = the two-loop recursion −H·g; t = lr
    no line search:        x ← x + t·d, then f, g at x (except after the last iteration)
    strong_wolfe:          t from `strong_wolfe` (c1 = 1e−4, c2 = 0.9, at most
                           max_eval − evaluations so far), then x ← x + t·d
    stop when              max|g| ≤ tolerance_grad (also before the first iteration),
                           g·d > −tolerance_change, max|t·d| ≤ tolerance_change,
                           |f − f_prev| < tolerance_change, or the evaluations reach
                           max_eval (default max_iter·5//4)

The state survives steps as torch's does (d, t, the history, H_diag, the previous gradient
and loss, n_iter and func_evals). `state_arrays()` / `load_arrays()` give it as named arrays
for a checkpoint, the layout both backends use under optim/<first parameter>/<slot>:

    func_evals, n_iter        scalars (float64)
    d, prev_flat_grad         (P,) flat vectors, P = every trainable value
    old_dirs, old_stps        (k, P): the y and s vectors of the history, oldest first
    ro                        (k,): 1/(y·s) of each pair
    t, H_diag, prev_loss      scalars

>>> import numpy as np
>>> p = {"x": np.array([3.0, -2.0])}
>>> def f():                          # f(x) = |x|², gradient 2x
...     return float(p["x"] @ p["x"]), 2 * p["x"].copy()
>>> opt = LBFGS(p, lr=1.0, line_search_fn="strong_wolfe")
>>> round(opt.step(f), 6), np.abs(p["x"]).max() < 1e-6
(13.0, True)
"""

from __future__ import annotations

import math
from typing import Callable, Mapping

import numpy as np

LAYOUT = ("func_evals", "n_iter", "d", "t", "old_dirs", "old_stps", "ro", "H_diag",
          "prev_flat_grad", "prev_loss")


def cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None):
    """The minimiser of the cubic through (x1, f1, g1) and (x2, f2, g2), clipped to `bounds`
    (default the interval); the midpoint where the cubic has no real minimiser."""
    if bounds is not None:
        xmin_bound, xmax_bound = bounds
    else:
        xmin_bound, xmax_bound = (x1, x2) if x1 <= x2 else (x2, x1)
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1 ** 2 - g1 * g2
    if d2_square >= 0:
        d2 = math.sqrt(d2_square)
        if x1 <= x2:
            min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        else:
            min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
        return min(max(min_pos, xmin_bound), xmax_bound)
    return (xmin_bound + xmax_bound) / 2.0


def strong_wolfe(obj_func, x, t, d, f, g, gtd, c1=1e-4, c2=0.9, tolerance_change=1e-9, max_ls=25):
    """A step length t along d satisfying the strong Wolfe conditions (bracketing, then zoom
    by cubic interpolation), as torch's `_strong_wolfe`. `obj_func(x, t, d)` -> (f, g) at
    x + t·d. Returns (f, g, t, evaluations)."""
    d_norm = float(np.abs(d).max())
    g = g.copy()
    f_new, g_new = obj_func(x, t, d)
    ls_func_evals = 1
    gtd_new = float(g_new @ d)

    t_prev, f_prev, g_prev, gtd_prev = 0, f, g, gtd
    done = False
    ls_iter = 0
    while ls_iter < max_ls:
        if f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev):
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new.copy()], [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g = [t], [f_new], [g_new]
            done = True
            break
        if gtd_new >= 0:
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new.copy()], [gtd_prev, gtd_new]
            break
        min_step = t + 0.01 * (t - t_prev)
        max_step = t * 10
        tmp = t
        t = cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(min_step, max_step))
        t_prev, f_prev, g_prev, gtd_prev = tmp, f_new, g_new.copy(), gtd_new
        f_new, g_new = obj_func(x, t, d)
        ls_func_evals += 1
        gtd_new = float(g_new @ d)
        ls_iter += 1

    if ls_iter == max_ls:
        bracket, bracket_f, bracket_g = [0, t], [f, f_new], [g, g_new]

    insuf_progress = False
    low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = cubic_interpolate(bracket[0], bracket_f[0], bracket_gtd[0],
                              bracket[1], bracket_f[1], bracket_gtd[1])
        # too close to an end of the bracket: move 0.1·(its length) inside
        eps = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < eps:
            if insuf_progress or t >= max(bracket) or t <= min(bracket):
                if abs(t - max(bracket)) < abs(t - min(bracket)):
                    t = max(bracket) - eps
                else:
                    t = min(bracket) + eps
                insuf_progress = False
            else:
                insuf_progress = True
        else:
            insuf_progress = False

        f_new, g_new = obj_func(x, t, d)
        ls_func_evals += 1
        gtd_new = float(g_new @ d)
        ls_iter += 1

        if f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low_pos]:
            bracket[high_pos], bracket_f[high_pos] = t, f_new
            bracket_g[high_pos], bracket_gtd[high_pos] = g_new.copy(), gtd_new
            low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high_pos] - bracket[low_pos]) >= 0:
                bracket[high_pos], bracket_f[high_pos] = bracket[low_pos], bracket_f[low_pos]
                bracket_g[high_pos], bracket_gtd[high_pos] = bracket_g[low_pos], bracket_gtd[low_pos]
            bracket[low_pos], bracket_f[low_pos] = t, f_new
            bracket_g[low_pos], bracket_gtd[low_pos] = g_new.copy(), gtd_new

    return bracket_f[low_pos], bracket_g[low_pos], bracket[low_pos], ls_func_evals


class LBFGS:
    """torch.optim.LBFGS over named arrays (updated in place). `closure()` -> (loss, flat
    gradient of the parameters in `params` order)."""

    def __init__(self, params: Mapping[str, np.ndarray], lr: float = 1.0, max_iter: int = 20,
                 max_eval: int | None = None, tolerance_grad: float = 1e-7,
                 tolerance_change: float = 1e-9, history_size: int = 100,
                 line_search_fn: str | None = None):
        if line_search_fn not in (None, "strong_wolfe"):
            raise ValueError("only 'strong_wolfe' is supported")
        self.params = dict(params)
        self.lr, self.max_iter = lr, max_iter
        self.max_eval = max_eval if max_eval is not None else max_iter * 5 // 4
        self.tolerance_grad, self.tolerance_change = tolerance_grad, tolerance_change
        self.history_size, self.line_search_fn = history_size, line_search_fn
        self.first = next(iter(self.params))
        self.state: dict[str, dict] = {name: {} for name in self.params}  # torch: on the first

    # ---- the flat view
    def _add_grad(self, t, d) -> None:
        offset = 0
        for p in self.params.values():
            p += (t * d[offset:offset + p.size]).reshape(p.shape).astype(p.dtype, copy=False)
            offset += p.size

    def _clone(self):
        return [p.copy() for p in self.params.values()]

    def _set(self, xs) -> None:
        for p, v in zip(self.params.values(), xs):
            p[...] = v

    def _directional_evaluate(self, closure, x, t, d):
        self._add_grad(t, d)
        loss, g = closure()
        self._set(x)
        return float(loss), g

    def step(self, closure: Callable[[], tuple]) -> float:
        """Up to max_iter iterations; returns the loss at the parameters it started from."""
        state = self.state[self.first]
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)
        lr, tol_change = self.lr, self.tolerance_change

        orig_loss, flat_grad = closure()
        loss = float(orig_loss)
        current_evals = 1
        state["func_evals"] += 1
        opt_cond = np.abs(flat_grad).max() <= self.tolerance_grad
        if opt_cond:
            return orig_loss

        d, t = state.get("d"), state.get("t")
        old_dirs, old_stps, ro = state.get("old_dirs"), state.get("old_stps"), state.get("ro")
        H_diag = state.get("H_diag")
        prev_flat_grad, prev_loss = state.get("prev_flat_grad"), state.get("prev_loss")

        n_iter = 0
        while n_iter < self.max_iter:
            n_iter += 1
            state["n_iter"] += 1
            if state["n_iter"] == 1:
                d = -flat_grad
                old_dirs, old_stps, ro = [], [], []
                H_diag = 1
            else:
                y = flat_grad - prev_flat_grad
                s = d * t
                ys = float(y @ s)
                if ys > 1e-10:
                    if len(old_dirs) == self.history_size:
                        old_dirs.pop(0)
                        old_stps.pop(0)
                        ro.pop(0)
                    old_dirs.append(y)
                    old_stps.append(s)
                    ro.append(1.0 / ys)
                    H_diag = ys / float(y @ y)
                num_old = len(old_dirs)
                al = [None] * num_old
                q = -flat_grad
                for i in range(num_old - 1, -1, -1):
                    al[i] = float(old_stps[i] @ q) * ro[i]
                    q = q - al[i] * old_dirs[i]
                d = r = q * H_diag
                for i in range(num_old):
                    be_i = float(old_dirs[i] @ r) * ro[i]
                    r += (al[i] - be_i) * old_stps[i]

            prev_flat_grad = flat_grad.copy()
            prev_loss = loss

            if state["n_iter"] == 1:
                t = min(1.0, 1.0 / float(np.abs(flat_grad).sum())) * lr
            else:
                t = lr
            gtd = float(flat_grad @ d)
            if gtd > -tol_change:
                break

            ls_func_evals = 0
            if self.line_search_fn is not None:
                x_init = self._clone()

                def obj_func(x, t, d):
                    return self._directional_evaluate(closure, x, t, d)

                loss, flat_grad, t, ls_func_evals = strong_wolfe(
                    obj_func, x_init, t, d, loss, flat_grad, gtd,
                    max_ls=self.max_eval - current_evals)
                self._add_grad(t, d)
                opt_cond = np.abs(flat_grad).max() <= self.tolerance_grad
            else:
                self._add_grad(t, d)
                if n_iter != self.max_iter:
                    loss, flat_grad = closure()
                    loss = float(loss)
                    opt_cond = np.abs(flat_grad).max() <= self.tolerance_grad
                    ls_func_evals = 1

            current_evals += ls_func_evals
            state["func_evals"] += ls_func_evals

            if n_iter == self.max_iter or current_evals >= self.max_eval or opt_cond:
                break
            if np.abs(d * t).max() <= tol_change:
                break
            if abs(loss - prev_loss) < tol_change:
                break

        state.update(d=d, t=t, old_dirs=old_dirs, old_stps=old_stps, ro=ro, H_diag=H_diag,
                     prev_flat_grad=prev_flat_grad, prev_loss=prev_loss)
        return orig_loss

    # ---- checkpoints: the documented layout (module docstring)
    def state_arrays(self) -> dict[str, np.ndarray]:
        return to_arrays(self.state[self.first], sum(p.size for p in self.params.values()))

    def load_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        dtype = next(iter(self.params.values())).dtype
        self.state = {name: {} for name in self.params}
        self.state[self.first] = from_arrays(arrays, lambda a: np.array(a, dtype), float)


def to_arrays(state: Mapping, numel: int) -> dict[str, np.ndarray]:
    """L-BFGS state (NumPy arrays or floats, lists for the history) -> the checkpoint layout."""
    out = {}
    for key in LAYOUT:
        if key not in state:
            continue
        v = state[key]
        if key in ("old_dirs", "old_stps"):
            out[key] = np.stack(v) if v else np.zeros((0, numel))
        elif key == "ro":
            out[key] = np.array([float(r) for r in v], np.float64)
        else:
            out[key] = np.array(v, dtype=None if isinstance(v, np.ndarray) else np.float64)
    return out


def from_arrays(arrays: Mapping[str, np.ndarray], vector, scalar) -> dict:
    """The checkpoint layout -> L-BFGS state: `vector(array)` makes a flat vector, `scalar`
    a number (each backend passes its own)."""
    state = {}
    for key, v in arrays.items():
        v = np.asarray(v)
        if key in ("func_evals", "n_iter"):
            state[key] = int(v)
        elif key in ("old_dirs", "old_stps"):
            state[key] = [vector(row) for row in v]
        elif key == "ro":
            state[key] = [scalar(r) for r in v]
        elif key in ("d", "prev_flat_grad"):
            state[key] = vector(v)
        elif key in LAYOUT:
            state[key] = scalar(v)
    return state
