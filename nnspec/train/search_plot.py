"""`nnspec search --plot FILE.png`: validation accuracy against each hyperparameter (log axes
for log-scale ranges: the notes' scatter), and the training loss of every trial, step by step,
coloured by the categorical choice when one was searched (the optimizer comparison: SGD,
momentum, Nesterov, AdaGrad, RMSProp, Adam on one problem) or by validation accuracy.
matplotlib is an optional extra (`pip install "nnspec[plot]"`)."""

from __future__ import annotations

import math

from .plot import PlotError
from .search import read_losses


def _smooth(ys: list[float], width: int) -> list[float]:
    """A running mean over `width` steps (the per-step loss of a mini-batch is noisy)."""
    out, total = [], 0.0
    for i, y in enumerate(ys):
        total += y
        if i >= width:
            total -= ys[i - width]
        out.append(total / min(i + 1, width))
    return out


def plot_search(summary: dict, s, out) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotError("--plot needs matplotlib: pip install \"nnspec[plot]\"") from None
    dims = [d for d in s.dims if d.searched]
    trials = summary["trials"]
    if not trials:
        raise PlotError(f"{s.run}: no finished trial to plot")
    panels = len(dims) + 1
    cols = min(panels, 3)
    rows = math.ceil(panels / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.7 * rows), squeeze=False)
    axes = [a for row in axes for a in row]
    for ax, d in zip(axes, dims):
        _scatter(ax, d, trials)
    _curves(axes[len(dims)], dims, trials)
    for ax in axes[panels:]:
        ax.axis("off")
    fig.tight_layout()
    import io

    from ..backends.commands import write_atomic
    from ..cli import UsageError
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=110)
    finally:
        plt.close(fig)
    try:
        write_atomic(str(out), buf.getvalue())  # whole or not at all
    except UsageError as e:
        raise PlotError(str(e)) from None


def _scatter(ax, d, trials) -> None:
    categorical = d.kind == "choice"
    order = list(d.choices)

    def x_of(t):
        v = t["params"][d.name]
        if not categorical:
            return v
        # spread equal choices a little (a fixed pattern from the trial number: no randomness)
        return order.index(v) + ((t["number"] * 0.618) % 1 - 0.5) * 0.3 if v in order else None

    for stage, colour, label in ((1, "C0", "trial"), (2, "C1", "fine stage")):
        done = [t for t in trials if t["stage"] == stage and t["state"] == "complete" and d.name in t["params"]]
        if done:
            ax.scatter([x_of(t) for t in done], [t["value"] for t in done], s=18, color=colour,
                       alpha=0.8, label=label if stage == 2 or any(x["stage"] == 2 for x in trials) else None)
    failed = [t for t in trials if t["state"] == "failed" and d.name in t["params"]]
    if failed:
        ax.scatter([x_of(t) for t in failed], [0.0] * len(failed), marker="x", color="C3", s=22,
                   label="failed")
    if categorical:
        ax.set_xticks(range(len(order)), order, rotation=30 if len(order) > 3 else 0, fontsize=8)
    elif d.log:
        ax.set_xscale("log")
    ax.set_xlabel(d.name)
    ax.set_ylabel("validation accuracy")
    ax.set_title(f"{d.name}: {d.text()}", fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def _curves(ax, dims, trials) -> None:
    import matplotlib
    by = next((d for d in dims if d.name == "optimizer"), None) or next((d for d in dims if d.kind == "choice"), None)
    done = [t for t in trials if t.get("run")]
    values = [t["value"] for t in done if t["value"] is not None]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    cmap = matplotlib.colormaps["viridis"]
    best_of: dict = {}
    for t in done:
        key = t["params"].get(by.name) if by is not None else None
        if t["value"] is not None and (key not in best_of or t["value"] > best_of[key]["value"]):
            best_of[key] = t
    firsts = []
    labelled = set()
    for t in done:
        steps = [r for r in read_losses(t["run"]) if r[1] is not None and math.isfinite(r[1])]
        if not steps:
            continue
        xs, ys = [r[0] for r in steps], [r[1] for r in steps]
        firsts.append(ys[0])
        ys = _smooth(ys, max(1, len(ys) // 25))
        if by is not None:
            key = t["params"].get(by.name)
            colour = f"C{list(by.choices).index(key) % 10}" if key in by.choices else "grey"
        else:
            key = None
            colour = cmap((t["value"] - lo) / (hi - lo) if t["value"] is not None and hi > lo else 0.0)
        best = best_of.get(key) is t
        label = str(key) if by is not None and best and key not in labelled else None
        labelled.add(key) if label else None
        ax.plot(xs, ys, color=colour, linewidth=1.6 if best else 0.7, alpha=1.0 if best else 0.3, label=label)
    ax.set_yscale("log")
    if firsts:
        ax.set_ylim(top=3 * sorted(firsts)[len(firsts) // 2])
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title("training loss of every trial" + (f" by {by.name} (bold: its best)" if by is not None
                                                  else " (colour: validation accuracy)"), fontsize=9)
    if by is not None and labelled:
        ax.legend(fontsize=7)
