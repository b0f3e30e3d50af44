"""Trainer overhead: `nnspec train` against a bare hand-written PyTorch loop on the same model,
the same data and the same batches, interleaved in one process.

Both sides train specs/cnn_digits.nn (augmentation off, so both do the same work) for two
epochs and evaluate the validation split after each; the trainer also shuffles from its named
stream, checks the loss, writes its checkpoints and manifest and logs. Timed from the first
step to the end (building the model and loading the data are one-time costs both pay and are
left out). Prints the median time of each and the ratio (target ≤ 1.05); the last line is JSON.

    python benchmarks/bench_train.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import nnspec
from nnspec.backends.torch import compile_torch
from nnspec.train import data
from nnspec.train.loop import Options, Trainer

ROOT = Path(__file__).resolve().parent.parent


def spec_without_augment():
    spec = nnspec.load(ROOT / "specs" / "cnn_digits.nn")
    g = spec.graph
    return nnspec.Spec(dataclasses.replace(g, train=dataclasses.replace(g.train, augment=(), epochs=1)))


EPOCHS = 2


def bare(spec, splits) -> tuple[float, float]:
    """(seconds in the training steps, seconds in all: steps + evaluation)"""
    model = compile_torch(spec)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    x, y = torch.from_numpy(splits.train.x), torch.from_numpy(splits.train.y)
    steps = 0.0
    t0 = time.perf_counter()
    for _ in range(EPOCHS):
        t1 = time.perf_counter()
        order = torch.randperm(len(x))
        model.train()
        for i in range(0, len(x), 32):
            idx = order[i:i + 32]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            loss.item()
        steps += time.perf_counter() - t1
        model.eval()
        with torch.no_grad():
            F.cross_entropy(model(torch.from_numpy(splits.val.x)), torch.from_numpy(splits.val.y)).item()
    return steps, time.perf_counter() - t0


def ours(spec, root, health: bool = True) -> tuple[float, float]:
    """The same two figures for the trainer, from its events: steps are timed from the start
    (or the previous epoch's end) to the epoch's last step; all from the start to the end."""
    marks = {"steps": 0.0}

    def on_event(e):
        now = time.perf_counter()
        kind = e["event"]
        if kind in ("start", "epoch"):
            marks["from"] = now
            marks.setdefault("start", now)
        elif kind == "step":
            marks["last"] = now
            if e["batch"] == e["batches"]:
                marks["steps"] += now - marks["from"]
        elif kind == "end":
            marks["end"] = now

    Trainer(spec, Options(run=Path(root) / f"r{time.perf_counter_ns()}", epochs=EPOCHS, health=health),
            on_event).run()
    return marks["steps"], marks["end"] - marks["start"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    spec = spec_without_augment()
    splits = data.check_against(data.load("digits"), spec.graph.input.shape, 10)
    a, b, c = [], [], []
    with tempfile.TemporaryDirectory() as root:
        bare(spec, splits), ours(spec, root), ours(spec, root, False)  # warm-up
        for _ in range(args.rounds):
            a.append(bare(spec, splits))
            b.append(ours(spec, root, False))
            c.append(ours(spec, root, True))
    steps = EPOCHS * -(-len(splits.train.x) // 32)
    sa, sb, sc = (statistics.median(r[0] for r in x) for x in (a, b, c))
    ta, tb, tc = (statistics.median(r[1] for r in x) for x in (a, b, c))
    print(f"per step: bare PyTorch {sa / steps * 1000:.3f} ms, nnspec trainer {sb / steps * 1000:.3f} ms: "
          f"ratio {sb / sa:.3f} (target <= 1.05; health checks off)")
    print(f"with health checks (a probe of 256 samples at the start and every 50 steps, counted in the "
          f"steps): {sc / steps * 1000:.3f} ms per step, ratio {sc / sa:.3f}")
    print(f"whole run ({EPOCHS} epochs of {steps // EPOCHS} steps, with evaluation; the trainer also "
          f"writes 3 checkpoint files and its manifest per epoch, each fsync'd): bare {ta * 1000:.0f} ms, "
          f"trainer {tb * 1000:.0f} ms: ratio {tb / ta:.3f}")
    print(json.dumps({"step_ratio": round(sb / sa, 4), "step_ratio_health": round(sc / sa, 4),
                      "run_ratio": round(tb / ta, 4), "run_ratio_health": round(tc / ta, 4),
                      "bare_step_ms": round(sa / steps * 1000, 4), "trainer_step_ms": round(sb / steps * 1000, 4)}))


if __name__ == "__main__":
    main()
