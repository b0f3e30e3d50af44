"""The pictures of docs/experiments.md's cross-validation, bagging, ensemble and class-imbalance
sections, drawn from real runs of the example specs in examples/experiments/:

    python docs/figures/make_folds.py          # writes docs/figures/folds_*.png (about 30 s)

It also writes examples/experiments/imbalanced.npz (the 1:10 data set) when it is missing.
Every number drawn comes from the trainer (the runs go to a temporary folder).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "experiments"
OUT = ROOT / "docs" / "figures"


def imbalanced_data(path: Path = EXAMPLES / "imbalanced.npz") -> Path:
    """Two Gaussian classes 2 standard deviations apart: 1,000 : 100 training samples, 500 : 500
    test samples, from numpy's default_rng(0)."""
    if path.exists():
        return path
    g = np.random.default_rng(0)

    def draw(n0, n1):
        x = np.concatenate([g.normal(0, 1, (n0, 2)), g.normal(0, 1, (n1, 2)) + [2.0, 0.0]])
        return x.astype(np.float32), np.array([0] * n0 + [1] * n1)

    x, y = draw(1000, 100)
    xt, yt = draw(500, 500)
    np.savez(path, x=x, y=y, x_test=xt, y_test=yt)
    return path


def main() -> int:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import nnspec
    from nnspec.train.evaluate import evaluate
    from nnspec.train.schedule import cycle_ends, trajectory

    imbalanced_data()
    tmp = Path(tempfile.mkdtemp(prefix="nnspec-folds-"))
    mlp = nnspec.load(EXAMPLES / "digits_mlp.nn")

    # k-fold cross-validation: each fold's held-out accuracy, their mean ± std
    cv = nnspec.train(mlp, folds=5, run=tmp / "cv").summary
    acc = [m["val_accuracy"] for m in cv["members"]]
    mean, std = cv["mean_std"]["val_accuracy"]["mean"], cv["mean_std"]["val_accuracy"]["std"]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.bar([f"fold {k}" for k in range(1, 6)], acc, color="#4c72b0")
    ax.axhline(mean, color="k", lw=1)
    ax.axhspan(mean - std, mean + std, color="k", alpha=0.12, label=f"mean ± std {mean:.3f} ± {std:.3f}")
    ax.set_ylim(min(acc) - 0.03, min(1.0, max(acc) + 0.02))
    ax.set_ylabel("held-out accuracy")
    ax.set_title("5-fold cross-validation, digits_mlp.nn")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(OUT / "folds_cv.png", dpi=110)
    plt.close(fig)

    # bagging: each bootstrap model and the bagged ensemble on the test images
    bag = nnspec.train(mlp, bootstrap=5, run=tmp / "bag").summary["bagging"]["test"]
    names = [m["name"] for m in bag["models"]] + ["bagged"]
    accs = [m["accuracy"] for m in bag["models"]] + [bag["ensemble"]["accuracy"]]
    nlls = [m["nll"] for m in bag["models"]] + [bag["ensemble"]["nll"]]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3.2))
    colors = ["#4c72b0"] * len(bag["models"]) + ["#dd8452"]
    a1.bar(names, accs, color=colors)
    a1.set_ylim(min(accs) - 0.02, min(1.0, max(accs) + 0.01))
    a1.set_ylabel("test accuracy")
    a2.bar(names, nlls, color=colors)
    a2.set_ylabel("test log loss")
    for a in (a1, a2):
        a.tick_params(axis="x", rotation=45)
    fig.suptitle("bagging: 5 models on bootstrap resamples and their ensemble")
    fig.tight_layout()
    fig.savefig(OUT / "folds_bagging.png", dpi=110)
    plt.close(fig)

    # snapshot ensemble: the learning rate, the snapshots at the cycle ends, their accuracies
    spec = nnspec.load(EXAMPLES / "snapshots.nn")
    r = nnspec.train(spec, run=tmp / "snap")
    t = spec.graph.train
    rates = trajectory(t.schedule, t.optimizer.options["lr"], t.epochs)
    ends = cycle_ends(t.schedule, t.epochs)
    test = r.snapshots["splits"]["test"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3.2))
    a1.step(range(1, len(rates) + 1), rates, where="mid")
    a1.plot(ends, [rates[e - 1] for e in ends], "o", color="#dd8452", label="snapshots")
    a1.set_xlabel("epoch")
    a1.set_ylabel("learning rate")
    a1.legend()
    labels = [f"snapshot {i}" for i in r.snapshots["cycles"]] + ["ensemble"]
    accs = [m["accuracy"] for m in test["models"]] + [test["ensemble"]["accuracy"]]
    a2.bar(labels, accs, color=["#4c72b0"] * len(test["models"]) + ["#dd8452"])
    a2.set_ylim(min(accs) - 0.02, min(1.0, max(accs) + 0.01))
    a2.set_ylabel("test accuracy")
    a2.tick_params(axis="x", rotation=30)
    fig.suptitle("snapshot ensemble: restarts(period=4), snapshots 3")
    fig.tight_layout()
    fig.savefig(OUT / "folds_snapshots.png", dpi=110)
    plt.close(fig)

    # class imbalance: per-class recall without a remedy, with class weights, with the sampler
    recalls = {}
    for label, name in (("plain", "imbalance"), ("class_weights balanced", "imbalance_weighted"),
                        ("sampler balanced", "imbalance_sampled")):
        s = nnspec.load(EXAMPLES / f"{name}.nn")
        run = nnspec.train(s, run=tmp / name)
        recalls[label] = evaluate(s, run.run_dir / "last.safetensors")["per_class_recall"]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    width = 0.27
    for i, (label, rec) in enumerate(recalls.items()):
        ax.bar(np.arange(2) + (i - 1) * width, rec, width, label=label)
    ax.set_xticks([0, 1], ["class 0 (1,000 samples)", "class 1 (100 samples)"])
    ax.set_ylabel("test recall")
    ax.set_ylim(0, 1.05)
    ax.legend(loc="lower left")
    ax.set_title("a 1:10 split: per-class recall on balanced test data")
    fig.tight_layout()
    fig.savefig(OUT / "folds_imbalance.png", dpi=110)
    plt.close(fig)
    print("wrote " + ", ".join(f"docs/figures/folds_{n}.png" for n in ("cv", "bagging", "snapshots", "imbalance")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
