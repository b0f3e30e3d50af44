"""`--plot FILE.png`: loss, accuracy and learning-rate curves of a run, from its log.jsonl
(so a resumed run's curves continue, with a marker where it was resumed). matplotlib is an
optional extra (`pip install "nnspec[plot]"`)."""

from __future__ import annotations

import json
from pathlib import Path


class PlotError(Exception):
    pass


def epochs_of(run_dir: Path) -> tuple[list[dict], list[int]]:
    """The epoch rows of a run (the last of each epoch number, across resumes) and the epochs
    after which it was resumed."""
    rows: dict[int, dict] = {}
    resumes: list[int] = []
    for line in (Path(run_dir) / "log.jsonl").read_text("utf-8").splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if e.get("event") == "epoch":
            rows[e["epoch"]] = e
        elif e.get("event") == "resume":
            resumes.append(e["epoch"])
    return [rows[k] for k in sorted(rows)], resumes


def plot_run(run_dir, out) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotError("--plot needs matplotlib: pip install \"nnspec[plot]\"") from None
    rows, resumes = epochs_of(run_dir)
    if not rows:
        raise PlotError(f"{run_dir}: no finished epoch to plot")
    ep = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    ax = axes[0]
    ax.plot(ep, [r["train_loss"] for r in rows], label="train loss")
    if any(r.get("val_loss") is not None for r in rows):
        ax.plot(ep, [r.get("val_loss") for r in rows], label="validation loss")
    ax.set_title("loss")
    ax = axes[1]
    if any(r.get("val_accuracy") is not None for r in rows):
        ax.plot(ep, [r.get("val_accuracy") for r in rows], label="validation accuracy", color="C2")
    ax.set_title("accuracy")
    ax = axes[2]
    ax.plot(ep, [r["lr"] for r in rows], color="C3")
    ax.set_yscale("log")
    ax.set_title("learning rate")
    for a in axes:
        a.set_xlabel("epoch")
        for k in resumes:
            a.axvline(k + 0.5, color="grey", linestyle=":", linewidth=1)
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=8)
    if resumes:
        axes[0].text(0.01, 0.01, "dotted: resumed", transform=axes[0].transAxes, fontsize=7, color="grey")
    fig.tight_layout()
    try:
        fig.savefig(out, dpi=110)
    except OSError as e:
        raise PlotError(f"{out}: cannot write the plot ({e.strerror or e})") from None
    finally:
        plt.close(fig)
