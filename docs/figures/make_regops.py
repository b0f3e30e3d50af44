"""The experiments of docs/experiments.md's sections "Second-order: L-BFGS" and "DropConnect,
fractional max pooling, weight noise": prints their tables and draws their pictures.

    python docs/figures/make_regops.py                # from the repository root; needs matplotlib
    python docs/figures/make_regops.py --no-figures   # the tables only (tests compare them)

- L-BFGS against Adam on specs/mlp_spirals_lbfgs.nn: `benchmarks/lbfgs_vs_adam.py`'s runs,
  the training loss per full-batch gradient evaluation -> regops_lbfgs.png.
- examples/regops/digits_regularizers.nn trained 40 epochs as each variant (and the plain
  variant with `noise weights=0.05`), NumPy backend in float64 (the same numbers on any
  machine; `--backend torch` in the trainer agrees to rounding): training and validation
  loss per epoch -> regops_regularizers.png, and a table of the last epoch and the test
  accuracy.

Every number and curve comes from the runs; nothing is retouched by hand.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
REG_SPEC = "examples/regops/digits_regularizers.nn"
VARIANTS = (("plain", "plain", None), ("dropout", "dropout", None), ("dropconnect", "dropconnect", None),
            ("fractional", "fractional", None), ("weight noise 0.05", "plain", 0.05))


def lbfgs():
    """(the comparison's record, its table) from benchmarks/lbfgs_vs_adam.py."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import lbfgs_vs_adam
    r = lbfgs_vs_adam.compare("numpy", "fp64")
    return r, lbfgs_vs_adam.table(r)


def regularizers():
    """(label -> the trainer's Result, the table) of the regulariser variants."""
    import nnspec
    from nnspec.spec import Spec
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, variant, noise in VARIANTS:
            spec = nnspec.load(ROOT / REG_SPEC, variant=variant)
            if noise is not None:
                g = spec.graph
                spec = Spec(dataclasses.replace(g, train=dataclasses.replace(g.train, noise={"weights": noise})))
            runs[label] = nnspec.train(spec, backend="numpy", precision="fp64", health=False,
                                       run=pathlib.Path(tmp) / label.replace(" ", "_"))
    lines = [f"{REG_SPEC}: 40 epochs each, numpy backend, float64",
             f"{'variant':<18} {'train loss':>10} {'val loss':>9} {'best val':>9} {'val acc':>8} {'test acc':>9}"]
    for label, r in runs.items():
        last = r.history[-1]
        best = min(h["val_loss"] for h in r.history)
        lines.append(f"{label:<18} {last['train_loss']:>10.4f} {last['val_loss']:>9.4f} {best:>9.4f} "
                     f"{last['val_accuracy']:>8.3f} {r.test_accuracy:>9.3f}")
    return runs, "\n".join(lines)


def draw(lb, runs) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = {"lbfgs": "L-BFGS (strong Wolfe), full batch", "adam_full": "Adam, full batch",
             "adam_batch32": "Adam, batch 32 (one evaluation = one epoch)"}
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    for key, pts in lb["curves"].items():
        xs, ys = zip(*pts)
        ax.plot(xs, [max(y, 1e-9) for y in ys], marker="o" if key == "lbfgs" else None, label=names[key])
    ax.set_yscale("log")
    ax.set_xlabel("full-batch gradient evaluations")
    ax.set_ylabel("training loss (cross-entropy)")
    ax.set_title("mlp_spirals_lbfgs: L-BFGS vs Adam, same start")
    ax.legend()
    fig.tight_layout()
    _save(fig, HERE / "regops_lbfgs.png")

    fig, axes = plt.subplots(1, 2, figsize=(9.6, 4.0), dpi=110, sharex=True)
    for label, r in runs.items():
        epochs = [h["epoch"] for h in r.history]
        axes[0].plot(epochs, [h["train_loss"] for h in r.history], label=label)
        axes[1].plot(epochs, [h["val_loss"] for h in r.history], label=label)
    for a in axes:
        a.set_yscale("log")
    axes[0].set_title("training loss")
    axes[1].set_title("validation loss")
    for a in axes:
        a.set_xlabel("epoch")
    axes[1].legend()
    fig.suptitle("digits_regularizers: one CNN, one regulariser each")
    fig.tight_layout()
    _save(fig, HERE / "regops_regularizers.png")


def _save(fig, path) -> None:
    import io

    from nnspec.backends.commands import write_atomic
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    write_atomic(str(path), buf.getvalue())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-figures", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    lb, lb_table = lbfgs()
    print(lb_table)
    print()
    runs, reg_table = regularizers()
    print(reg_table)
    if not args.no_figures:
        draw(lb, runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
