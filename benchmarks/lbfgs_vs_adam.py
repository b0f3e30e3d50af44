"""L-BFGS against Adam on the same data: specs/mlp_spirals_lbfgs.nn (an MLP on the spirals),
its own L-BFGS recipe against Adam on the same network, start and data, counted in gradient
evaluations over the whole training set (one full-batch closure call of L-BFGS = one full
batch step of Adam = one epoch of mini-batch Adam):

    python benchmarks/lbfgs_vs_adam.py [--backend numpy|torch] [--precision fp64|fp32]

Prints a table (the final full-batch training loss, validation accuracy and seconds of each)
and, as the last line, JSON with every curve (docs/figures/make_regops.py draws it). The
runs drive the trainer's backends directly (full batch: the trainer's one step per epoch).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import nnspec  # noqa: E402
from nnspec.config import Choice  # noqa: E402
from nnspec.train.data import load as load_data  # noqa: E402
from nnspec.train.torch_backend import accuracy_of  # noqa: E402

SPEC = ROOT / "specs" / "mlp_spirals_lbfgs.nn"
ADAM_LR = 0.01
MINIBATCH = 32


def _backend(name, spec, cfg, precision):
    if name == "numpy":
        from nnspec.train.numpy_backend import NumpyBackend
        return NumpyBackend(spec, seed=cfg.seed, precision=precision, config=cfg)
    from nnspec.train.torch_backend import TorchBackend
    return TorchBackend(spec, seed=cfg.seed, precision=precision, config=cfg)


def compare(backend: str = "numpy", precision: str = "fp64") -> dict:
    spec = nnspec.load(SPEC)
    t = spec.graph.train
    splits = load_data(t.data, validation=t.validation, seed=t.seed)
    x, y = splits.train.x, splits.train.y
    vx, vy = splits.val.x, splits.val.y

    def measure(b):
        out = b.evaluate(x)
        return b.loss_numpy(out, y), accuracy_of(b.evaluate(vx), vy)

    # L-BFGS: the spec's recipe, one step (up to max_iter iterations) per epoch
    lb = _backend(backend, spec, t, precision)
    start = lb.weights()
    loss0, acc0 = measure(lb)
    curves = {"lbfgs": [(0, loss0)]}
    t0 = time.perf_counter()
    for _ in range(t.epochs):
        lb.step(x, y, t.optimizer.options["lr"])
        evals = int(next(v for k, v in lb.state().items() if k.endswith("/func_evals")))
        curves["lbfgs"].append((evals, measure(lb)[0]))
    seconds = {"lbfgs": time.perf_counter() - t0}
    final = {"lbfgs": measure(lb)}
    budget = curves["lbfgs"][-1][0]

    # Adam on the same start: full batch (one evaluation a step), then mini-batches of 32
    # (one evaluation's worth of samples an epoch), each for L-BFGS's number of evaluations
    adam = Choice("adam", {"lr": ADAM_LR, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}, None)
    for key, batch in (("adam_full", len(x)), (f"adam_batch{MINIBATCH}", MINIBATCH)):
        cfg = dataclasses.replace(t, optimizer=adam, batch=batch)
        b = _backend(backend, spec, cfg, precision)
        b.load_weights(start)
        curves[key] = [(0, loss0)]
        order_gen = np.random.default_rng(0)
        t0 = time.perf_counter()
        for e in range(1, budget + 1):
            order = order_gen.permutation(len(x)) if batch < len(x) else np.arange(len(x))
            for i in range(0, len(x), batch):
                idx = order[i:i + batch]
                b.step(x[idx], y[idx], ADAM_LR)
            if e % max(1, budget // 50) == 0 or e == budget:
                curves[key].append((e, measure(b)[0]))
        seconds[key] = time.perf_counter() - t0
        final[key] = measure(b)
    return {"backend": backend, "precision": precision, "evaluations": budget, "start_loss": loss0,
            "start_accuracy": acc0, "samples": len(x), "curves": curves,
            "final": {k: {"train_loss": v[0], "val_accuracy": v[1], "seconds": round(seconds[k], 2)}
                      for k, v in final.items()}}


def table(r: dict) -> str:
    names = {"lbfgs": "L-BFGS (strong Wolfe), full batch",
             "adam_full": f"Adam lr={ADAM_LR}, full batch",
             f"adam_batch{MINIBATCH}": f"Adam lr={ADAM_LR}, batch {MINIBATCH}"}
    lines = [f"{SPEC.relative_to(ROOT)}: {r['samples']} training samples, {r['evaluations']} "
             f"full-batch gradient evaluations each ({r['backend']}, {r['precision']})",
             f"{'method':<36} {'train loss':>10} {'val acc':>8}",
             f"{'start':<36} {r['start_loss']:>10.3g} {r['start_accuracy']:>8.3f}"]
    for k, v in r["final"].items():
        lines.append(f"{names[k]:<36} {v['train_loss']:>10.3g} {v['val_accuracy']:>8.3f}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default="numpy", choices=("numpy", "torch"))
    ap.add_argument("--precision", default="fp64", choices=("fp32", "fp64"))
    args = ap.parse_args()
    r = compare(args.backend, args.precision)
    print(table(r))
    seconds = ", ".join(f"{k} {v['seconds']} s" for k, v in r["final"].items())
    print(f"seconds: {seconds}")
    print(json.dumps(r))


if __name__ == "__main__":
    main()
