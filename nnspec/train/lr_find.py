"""`nnspec lr-find`: the learning-rate range test (Leslie Smith; fastai's `lr_find`).

From the freshly initialised network, `steps` mini-batches are trained with the spec's
optimizer while the learning rate grows exponentially from `start` to `end`
(lr_i = start·(end/start)^(i/(steps-1))). Each step's training loss is recorded and smoothed
by a bias-corrected exponential moving average (a_i = β·a_{i-1} + (1-β)·loss_i, shown as
s_i = a_i/(1-β^(i+1))); the sweep stops early once the smoothed loss exceeds 4× the best so
far, or a loss is not finite. β is 0.9, not fastai's 0.98: at 100 steps over 8 decades 0.98
averages about 50 steps, four decades of rates, and its minimum lags far behind the raw
loss's (on the digits MLP with Adam: minimum at 0.24 and min10 0.024, where β = 0.9 finds
0.055 and 0.0055, which trains better: 0.043 vs 0.105 training loss after 3 epochs).
Two suggestions are read off the smoothed curve:

    steepest   where it falls fastest (the most negative d loss / d log lr, measured across
               half a decade of rates), between the first tenth of the points and the minimum
    min10      the rate at the minimum, divided by 10 (past the minimum training diverges)

The sweep goes through the trainer's backend interface (`step(x, y, lr)`), so it runs on
either backend; the spec's optimizer, loss, penalties and clipping apply; augmentation does
not (the sweep measures the optimizer on the data as it is). Its mini-batches come from its
own stream, ("lr_find", "train", pass) of `nnspec.rng`; dropout masks are the backend's
("dropout", layer, step). It changes nothing: `sweep` restores the backend's whole state
(weights, optimizer slots, step counter, torch's random state) afterwards, and nothing is
written to disk (no run directory); `nnspec lr-find --write` alone edits the spec
(`nnspec.train.spec_edit`).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import numpy as np

from .. import rng

START, END, STEPS = 1e-7, 10.0, 100
BETA = 0.9           # smoothing of the loss (see the module docstring)
DIVERGE = 4.0        # stop once the smoothed loss is 4x its best
SKIP = 0.1           # share of the first points the steepest-descent search skips
PICKS = ("min10", "steepest")


class LRFindError(Exception):
    """A sweep that cannot run, in one line (the CLI prints it, exit 1)."""


@dataclass(frozen=True)
class Sweep:
    spec: str
    file: str
    backend: str
    seed: int
    batch: int
    optimizer: str
    start: float
    end: float
    lrs: tuple[float, ...]
    losses: tuple[float, ...]
    smoothed: tuple[float, ...]
    stopped: str                       # "end" | "diverged" | "non-finite loss"
    suggestions: dict = field(default_factory=dict)   # pick -> lr (or None)
    minimum: float | None = None       # the rate at the smoothed loss's minimum

    def to_dict(self) -> dict:
        return {"spec": self.spec, "file": self.file, "backend": self.backend, "seed": self.seed,
                "batch": self.batch, "optimizer": self.optimizer, "start": self.start, "end": self.end,
                "steps": len(self.lrs), "stopped": self.stopped, "minimum": self.minimum,
                "suggestions": dict(self.suggestions),
                "curve": [{"lr": lr, "loss": loss, "smoothed": s}
                          for lr, loss, s in zip(self.lrs, self.losses, self.smoothed)]}


def rates(start: float, end: float, steps: int) -> np.ndarray:
    """The sweep's learning rates: geometric from start to end, both included.

    >>> rates(1e-3, 1e-1, 3).tolist()
    [0.001, 0.01, 0.1]
    """
    if not (0 < start < end and math.isfinite(end)):
        raise LRFindError(f"the sweep needs 0 < start < end, got start {start:g}, end {end:g}")
    if steps < 2:
        raise LRFindError(f"the sweep needs at least 2 steps, got {steps}")
    return start * (end / start) ** (np.arange(steps) / (steps - 1))


def smooth(losses, beta: float = BETA) -> list[float]:
    """The bias-corrected exponential moving average of the losses.

    >>> [round(v, 6) for v in smooth([2.0, 2.0, 2.0])]   # a constant stays itself
    [2.0, 2.0, 2.0]
    >>> [round(v, 4) for v in smooth([1.0, 0.0], beta=0.5)]   # (0.5·1 + 0) / (1 - 0.25)
    [1.0, 0.3333]
    """
    out, avg = [], 0.0
    for i, loss in enumerate(losses):
        avg = beta * avg + (1 - beta) * loss
        out.append(avg / (1 - beta ** (i + 1)))
    return out


def suggest(lrs, smoothed) -> tuple[dict, float | None]:
    """({"min10": …, "steepest": …}, the rate at the minimum) from a smoothed curve. The
    slope is measured across half a decade of rates (a quarter on each side: one step's
    noise averages out), from the first tenth of the points (where the moving average has
    seen few losses) to the minimum. A suggestion is None when the curve does not fall first
    (the start rate is already too high, or the sweep stopped at once)."""
    lrs, s = np.asarray(lrs, float), np.asarray(smoothed, float)
    none = {"min10": None, "steepest": None}
    if len(s) < 3 or not np.isfinite(s).all():
        return none, None
    i_min = int(np.argmin(s))
    per_decade = 1 / math.log10(lrs[1] / lrs[0])
    h = max(1, round(per_decade / 4))
    lo = max(h, int(len(s) * SKIP))
    if i_min - h < lo:
        lo = h
    if i_min - h < lo:
        return none, float(lrs[i_min])
    i = np.arange(lo, i_min - h + 1)
    slope = (s[i + h] - s[i - h]) / (np.log(lrs[i + h]) - np.log(lrs[i - h]))
    if slope.min() >= 0:
        return none, float(lrs[i_min])
    return {"min10": float(lrs[i_min]) / 10, "steepest": float(lrs[i[int(np.argmin(slope))]])}, float(lrs[i_min])


def sweep(backend, train, *, batch: int, seed: int, start: float = START, end: float = END,
          steps: int = STEPS) -> tuple[list, list, list, str]:
    """Run the range test on a built backend and a training Dataset; returns (rates, losses,
    smoothed losses, why it stopped). The backend's state is restored afterwards, whatever
    happens."""
    lrs = rates(start, end, steps)
    n = len(train.x)
    if n == 0:
        raise LRFindError("the training split is empty")
    batch = min(batch, n)
    saved = backend.state()
    done, losses, smoothed = [], [], []
    stopped = "end"
    order, passes, at = None, 0, n
    avg, best = 0.0, math.inf
    try:
        for i, lr in enumerate(lrs):
            if at + batch > n:  # a fresh order of the samples: the sweep's own stream
                order = rng.permutation(rng.stream(seed, "lr_find", "train", passes), n)
                passes, at = passes + 1, 0
            idx = order[at:at + batch]
            at += batch
            loss = float(backend.step(train.x[idx], train.y[idx], float(lr)))
            if not math.isfinite(loss) or not math.isfinite(backend.last_grad_norm):
                stopped = "non-finite loss"
                break
            avg = BETA * avg + (1 - BETA) * loss
            s = avg / (1 - BETA ** (i + 1))
            done.append(float(lr))
            losses.append(loss)
            smoothed.append(s)
            best = min(best, s)
            if i > 0 and s > DIVERGE * best:
                stopped = "diverged"
                break
    finally:
        backend.load_state(saved)
    return done, losses, smoothed, stopped


def find_lr(spec, *, data=None, backend: str = "torch", batch: int | None = None, seed: int | None = None,
            start: float = START, end: float = END, steps: int = STEPS, device: str = "cpu",
            precision: str = "fp32") -> Sweep:
    """The range test of a spec (a Spec or a path) as its train section says, with these
    overrides; returns a Sweep (curve and suggestions). Writes nothing."""
    from ..backends.torch import as_spec
    from .loop import Options, TrainError, Trainer
    spec = as_spec(spec)
    rates(start, end, steps)  # bad arguments before any work
    t = Trainer(spec, Options(data=data, batch=batch, seed=seed, backend=backend, device=device,
                              precision=precision))
    with contextlib.ExitStack() as stack:
        if backend == "torch":  # the torch backend seeds torch's generator: the caller's is kept
            import torch
            stack.enter_context(torch.random.fork_rng(devices=[]))
        try:
            splits = t._data()
            b = t._backend()
        except TrainError as e:
            raise LRFindError(str(e)) from None
        lrs, losses, smoothed, stopped = sweep(b, splits.train, batch=t.batch, seed=t.seed,
                                               start=start, end=end, steps=steps)
    picks, minimum = suggest(lrs, smoothed)
    opt = t.cfg.optimizer
    return Sweep(spec.name, spec.graph.file, b.name, t.seed, min(t.batch, len(splits.train.x)),
                 str(opt) if opt is not None else "sgd(lr=0.01)", start, end, tuple(lrs), tuple(losses),
                 tuple(smoothed), stopped, picks, minimum)


# ---- formats ---------------------------------------------------------------------------------

ROWS = 12   # curve rows in the table


def _lr(v: float | None) -> str:
    return "-" if v is None else f"{v:.2g}"


def table_rows(s: Sweep) -> list[tuple[str, str, str, str]]:
    """About ROWS evenly spaced points of the curve, the minimum's among them."""
    n = len(s.lrs)
    if n == 0:
        return []
    keep = set(np.linspace(0, n - 1, min(n, ROWS)).round().astype(int).tolist())
    i_min = int(np.argmin(s.smoothed))
    keep.add(i_min)
    return [(str(i + 1), f"{s.lrs[i]:.2e}", f"{s.losses[i]:.4f}", f"{s.smoothed[i]:.4f}"
             + ("  <- minimum" if i == i_min else "")) for i in sorted(keep)]


def summary_lines(s: Sweep) -> list[str]:
    why = {"end": f"reached {s.end:g}", "diverged": f"stopped: the smoothed loss passed {DIVERGE:g}x its best",
           "non-finite loss": "stopped: the loss was not finite"}[s.stopped]
    lines = [f"{s.spec}: learning-rate range test, {s.optimizer}, batch {s.batch}, seed {s.seed}, "
             f"{s.backend} backend",
             f"{len(s.lrs)} steps from {s.start:g} ({why})"]
    return lines


def suggestion_lines(s: Sweep) -> list[str]:
    if s.suggestions.get("min10") is None:
        return ["no suggestion: the loss did not fall before it rose; lower --start"]
    return [f"suggested: min10 {_lr(s.suggestions['min10'])} (the minimum {_lr(s.minimum)} / 10), "
            f"steepest {_lr(s.suggestions['steepest'])}"]


HEADER = ("step", "lr", "loss", "smoothed")


def to_text(s: Sweep) -> str:
    rows = [HEADER] + table_rows(s)
    widths = [max(len(r[i].split("  <-")[0]) for r in rows) for i in range(4)]
    out = summary_lines(s)
    for r in rows:
        out.append("  ".join(c.rjust(w) if i < 3 else c for i, (c, w) in enumerate(zip(r, widths))).rstrip())
    out += suggestion_lines(s)
    return "\n".join(out) + "\n"


def to_rich(s: Sweep):
    from rich.table import Table
    t = Table()
    for name in HEADER:
        t.add_column(name, justify="right" if name != "smoothed" else "left")
    for r in table_rows(s):
        t.add_row(*r)
    return t


def plot(s: Sweep):
    """The curve: raw and smoothed loss against the rate (log scale), the suggestions marked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(s.lrs, s.losses, color="C0", alpha=0.3, linewidth=1, label="loss")
    ax.plot(s.lrs, s.smoothed, color="C0", linewidth=2, label="smoothed loss")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    for (name, lr), color in zip(s.suggestions.items(), ("C3", "C2")):
        if lr is not None:
            ax.axvline(lr, color=color, linestyle="--", linewidth=1.2, label=f"{name} {lr:.2g}")
    if s.smoothed:
        i_min = int(np.argmin(s.smoothed))
        ax.plot([s.lrs[i_min]], [s.smoothed[i_min]], "o", color="C3", markersize=5)
        low = min(min(s.smoothed), min(s.losses[:i_min + 1]))
        top = max(s.smoothed[:i_min + 1]) * 1.15
        ax.set_ylim(low - 0.05 * (top - low), top)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title(f"{s.spec}: learning-rate range test ({s.optimizer}, batch {s.batch})", fontsize=10)
    fig.tight_layout()
    return fig


__all__ = ["END", "LRFindError", "PICKS", "START", "STEPS", "Sweep", "find_lr", "rates", "smooth",
           "suggest", "sweep", "to_text"]
