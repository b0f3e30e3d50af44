"""`nnspec train spec.nn --sanity`: the recipe checks of a new network, in one command, before a
long run (each on a freshly built model; nothing is written, no run directory is made):

    initial loss        softmax cross-entropy starts near ln C (C classes): between ½·ln C and
                        2·ln C on a batch of training samples
    overfit one batch   the train section's optimizer fits 20 training samples to 100 %
                        training accuracy within 300 steps (regression: 1 % of the initial loss)
    zero-input baseline after the same 30 steps, the loss on real inputs is below 90 % of the
                        loss of a copy trained on all-zero inputs (the network uses its input)
    batch independence  in evaluation mode, the gradient of sample i's output with respect to
                        sample j's input is exactly zero for j ≠ i (no reshape mixes samples;
                        batch norm mixes them legitimately in training mode, hence eval mode)
    gradient check      in float64, centred differences (h = 1e-6) agree with autograd on 16
                        weights to a relative error below 1e-5

Every check runs under `torch.random.fork_rng()`: the caller's random state is untouched.
`run` returns the checks; the CLI prints them as a table and exits 1 if one failed.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from .health import INIT_LOSS_RATIO

TINY = 20              # samples in the batch to overfit
OVERFIT_STEPS = 300
BASELINE_STEPS = 30
BASELINE_RATIO = 0.9
INDEPENDENCE = 4       # samples in the batch-independence check
GRADCHECK_WEIGHTS = 16
GRADCHECK_H = 1e-6
GRADCHECK_TOL = 1e-5


@dataclass(frozen=True)
class Check:
    name: str
    status: str          # "pass" | "fail" | "skip"
    measured: str
    expected: str
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status != "fail"


def run(spec, *, data=None, seed: int | None = None, on_check=None) -> list[Check]:
    """Run every check on `spec` (a Spec or a path); `on_check(check)` is called as each ends."""
    import torch

    from ..backends.torch import as_spec
    from .loop import Options, Trainer

    t = Trainer(as_spec(spec), Options(data=data, seed=seed))
    t.splits = t._data()
    ctx = _Context(t)
    out = []
    for fn in (_initial_loss, _overfit, _baseline, _independence, _gradcheck):
        t0 = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            c = fn(ctx)
        c = Check(c.name, c.status, c.measured, c.expected, time.perf_counter() - t0)
        out.append(c)
        if on_check is not None:
            on_check(c)
    return out


class _Context:
    def __init__(self, trainer):
        self.t = trainer
        train = trainer.splits.train
        self.x, self.y = train.x, train.y
        self.classification = self.y.dtype.kind in "iu"
        self.lr = trainer._base_lr()
        self.batch = trainer.batch

    def backend(self, precision: str = "fp32"):
        from .torch_backend import TorchBackend
        return TorchBackend(self.t.spec, seed=self.t.seed, precision=precision, config=self.t.cfg)


def _initial_loss(c: _Context) -> Check:
    import torch
    b = c.backend()
    name = "initial loss"
    classes = b.graph.nodes[b.graph.output].shape[0]
    if b.loss_name != "cross_entropy" or not c.classification or classes < 2:
        return Check(name, "skip", f"loss {b.loss_name}", "ln C for softmax cross-entropy only")
    n = min(256, len(c.x))
    b.model.train()  # the loss the first step sees (batch norm on batch statistics)
    with torch.no_grad():
        loss = float(b.loss_of(b.model(b.tensor(c.x[:n])), b.tensor(c.y[:n])))
    expected = math.log(classes)
    ok = expected / INIT_LOSS_RATIO <= loss <= INIT_LOSS_RATIO * expected
    return Check(name, "pass" if ok else "fail", f"{loss:.3f}",
                 f"ln {classes} = {expected:.3f} (between {expected / INIT_LOSS_RATIO:.2f} and "
                 f"{INIT_LOSS_RATIO * expected:.2f})")


def _overfit(c: _Context) -> Check:
    from .torch_backend import accuracy_of
    b = c.backend()
    x, y = c.x[:TINY], c.y[:TINY]
    first = b.loss_numpy(b.evaluate(x), y)
    measured = ""
    for step in range(1, OVERFIT_STEPS + 1):
        b.step(x, y, c.lr)
        if step % 10 and step != OVERFIT_STEPS:
            continue
        out = b.evaluate(x)
        if c.classification:
            acc = accuracy_of(out, y, b.loss_name)
            measured = f"{acc:.0%} after {step} steps"
            if acc >= 1.0:
                return Check("overfit one batch", "pass", measured, f"100% of {len(x)} samples")
        else:
            loss = b.loss_numpy(out, y)
            measured = f"loss {loss:.3g} (from {first:.3g}) after {step} steps"
            if loss <= 0.01 * first:
                return Check("overfit one batch", "pass", measured, "1% of the initial loss")
    return Check("overfit one batch", "fail", measured,
                 f"100% of {len(x)} samples within {OVERFIT_STEPS} steps" if c.classification
                 else f"1% of the initial loss within {OVERFIT_STEPS} steps")


def _baseline(c: _Context) -> Check:
    n = min(len(c.x), c.batch * BASELINE_STEPS)
    batches = [(c.x[i:i + c.batch], c.y[i:i + c.batch]) for i in range(0, n, c.batch)][:BASELINE_STEPS]
    real, zero = c.backend(), c.backend()
    for x, y in batches:
        real.step(x, y, c.lr)
        zero.step(np.zeros_like(x), y, c.lr)
    xs = np.concatenate([x for x, _ in batches])
    ys = np.concatenate([y for _, y in batches])
    real_loss = real.loss_numpy(real.evaluate(xs), ys)
    zero_loss = zero.loss_numpy(zero.evaluate(np.zeros_like(xs)), ys)
    ok = real_loss < BASELINE_RATIO * zero_loss
    return Check("zero-input baseline", "pass" if ok else "fail",
                 f"{real_loss:.3f} real vs {zero_loss:.3f} zeroed after {len(batches)} steps",
                 f"real below {BASELINE_RATIO:.0%} of zeroed")


def _independence(c: _Context) -> Check:
    import torch
    b = c.backend()
    b.model.eval()
    x = b.tensor(c.x[:INDEPENDENCE]).requires_grad_(True)
    out = b.model(x)
    worst, dead = 0.0, []
    for i in range(len(x)):
        (g,) = torch.autograd.grad(out[i].sum(), x, retain_graph=True)
        g = g.detach().abs().reshape(len(x), -1).amax(dim=1)
        others = torch.cat([g[:i], g[i + 1:]])
        worst = max(worst, float(others.max()) if len(others) else 0.0)
        if float(g[i]) == 0.0:
            dead.append(i)
    if worst > 0:
        return Check("batch independence", "fail", f"max |∂out_i/∂x_j| = {worst:.3g} for j ≠ i",
                     "0 (samples must not mix)")
    if dead:
        return Check("batch independence", "fail", f"sample {dead[0]}'s output ignores its own input",
                     "∂out_i/∂x_i ≠ 0, ∂out_i/∂x_j = 0")
    return Check("batch independence", "pass", "∂out_i/∂x_j = 0 for j ≠ i", "0")


def _gradcheck(c: _Context) -> Check:
    import torch
    b = c.backend("fp64")
    b.model.eval()  # dropout off: the loss is a deterministic function of the weights
    x, y = b.tensor(c.x[:8]), b.tensor(c.y[:8])
    params = [(n, p) for n, p in b.params]
    loss = b.loss_of(b.model(x), y)
    grads = torch.autograd.grad(loss, [p for _, p in params], allow_unused=True)
    gen = np.random.default_rng(0)  # which weights to probe: not a training draw
    picks = []
    per = max(1, GRADCHECK_WEIGHTS // max(1, len(params)))
    for k, (name, p) in enumerate(params):
        for flat in gen.choice(p.numel(), size=min(per, p.numel()), replace=False):
            picks.append((k, int(flat)))
    picks = picks[:GRADCHECK_WEIGHTS]
    worst, where = 0.0, ""
    with torch.no_grad():
        for k, flat in picks:
            name, p = params[k]
            view = p.view(-1)
            old = float(view[flat])
            view[flat] = old + GRADCHECK_H
            up = float(b.loss_of(b.model(x), y))
            view[flat] = old - GRADCHECK_H
            down = float(b.loss_of(b.model(x), y))
            view[flat] = old
            numeric = (up - down) / (2 * GRADCHECK_H)
            analytic = float(grads[k].reshape(-1)[flat]) if grads[k] is not None else 0.0
            err = abs(numeric - analytic) / max(abs(numeric) + abs(analytic), 1e-7)
            if err > worst:
                worst, where = err, f"{name}[{flat}]"
    status = "pass" if worst < GRADCHECK_TOL else "fail"
    return Check("gradient check (float64)", status,
                 f"max relative error {worst:.2g}" + (f" at {where}" if where and status == "fail" else "")
                 + f" over {len(picks)} weights", f"below {GRADCHECK_TOL:g}")


def table(checks: list[Check]) -> str:
    """The checks as a plain-text table, with a last line that counts the failures."""
    rows = [("check", "result", "measured", "expected")] + \
        [(c.name, c.status.upper(), c.measured, c.expected) for c in checks]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows]
    failed = sum(not c.passed for c in checks)
    lines.append(f"{len(checks) - failed} of {len(checks)} checks passed" if failed
                 else f"all {sum(c.status == 'pass' for c in checks)} checks passed"
                 + (f" ({sum(c.status == 'skip' for c in checks)} skipped)"
                    if any(c.status == "skip" for c in checks) else ""))
    return "\n".join(lines) + "\n"


__all__ = ["Check", "run", "table"]
