"""The NumPy executor's training memory against the analyzer's estimate.

    python benchmarks/numpy_memory.py [--batch 16]

For the three models of numpy_vs_torch.py and ResNet-18 at 3x64x64 (a reduced-input copy of
specs/resnet18.nn, 10 classes), float32, each spec's own optimizer (ResNet-18: its train section's):

- peak: tracemalloc's highest traced memory during a whole step (forward, loss, backward,
  update), traced from before the model is built;
- estimate: `spec.analyze(batch=...).totals.train_bytes`, the analyzer's peak of a training
  step (parameters + optimizer state + the highest of the forward's live values, each
  backward step's kept values still alive + activation gradients + parameter gradients made
  so far, and the update's gradients), from the plan's order and each op's `keeps` (it
  equals the peak of PyTorch's live tensors: tests/test_memory.py);
- the ratio peak / estimate (target within 0.85 .. 1.15). Above the estimate the NumPy step
  has its kernels' scratch: conv chunk buffers (unfolded matrices), the optimizer's update
  blocks (`optim.BLOCK`), f′ blocks;
- held: what the model holds after one training step's forward — the distinct arrays its
  backward caches keep (each counted once by the buffer it lives in; parameters excluded) —
  plus the parameters and buffers, one gradient per trainable parameter (after backward) and
  the optimizer's state (after an update); est.kept is `totals.saved_bytes`.

The last line is one JSON object {model: {"peak": peak / estimate, "held": held / estimate}}.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import tracemalloc

import numpy as np

import nnspec
from nnspec.train.numpy_backend import NumpyBackend

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent


def specs():
    yield "mlp", nnspec.load(HERE / "specs" / "mlp.nn")
    yield "lenet5", nnspec.load(HERE / "specs" / "lenet5_28.nn")
    yield "small_vgg", nnspec.load(HERE / "specs" / "small_vgg.nn")
    text = (ROOT / "specs" / "resnet18.nn").read_text().replace("input 3x224x224", "input 3x64x64")
    text = re.sub(r"->\s*\S+", "", text)  # the shape annotations are for 224x224
    yield "resnet18@64", nnspec.loads(text, "resnet18_64.nn", classes=10)


def _root(a: np.ndarray) -> np.ndarray:
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def _arrays(obj):
    if isinstance(obj, np.ndarray):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for o in obj:
            yield from _arrays(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _arrays(o)


def kept_bytes(model) -> int:
    """Bytes of the distinct buffers the backward caches hold, parameters and buffers excluded."""
    own = {id(_root(v)) for v in model._state.values()}
    seen = {}
    for cache in model._caches.values():
        for a in _arrays(cache):
            r = _root(a)
            if id(r) not in own:
                seen[id(r)] = r.nbytes
    return sum(seen.values())


def measure(spec, batch: int):
    """(held, kept, params + grads + optimizer state, peak) in bytes; peak: tracemalloc's
    highest traced memory during a training step, traced from before the model exists (so
    arrays the step frees, such as the last step's gradients, count as freed); a first
    model's step, untraced, has done the imports."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch,) + tuple(spec.graph.nodes[0].shape)).astype(np.float32)
    y = rng.integers(0, 10, batch).astype(np.int64)
    NumpyBackend(spec, seed=0).step(x, y, 0.01)
    tracemalloc.start()
    nb = NumpyBackend(spec, seed=0)
    m = nb.model
    nb.step(x, y, 0.01)  # the optimizer's state exists from here
    m.train()
    m.forward(x, input_grad=False)
    kept = kept_bytes(m)
    m._caches = {}
    state = sum(v.nbytes for v in m._state.values())
    grads = sum(v.nbytes for k, v in m.grads.items() if k in dict(nb.params))
    opt = sum(v.nbytes for st in nb.optimizer.state.values() for v in st.values() if isinstance(v, np.ndarray))
    tracemalloc.reset_peak()
    nb.step(x, y, 0.01)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    held = state + grads + opt + kept
    return held, kept, state + grads + opt, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()
    result = {}
    print(f"float32, batch {args.batch}, each spec's optimizer; MiB")
    print(f"{'model':12s} {'kept':>8s} {'est.kept':>8s} {'held':>8s} {'step peak':>9s} {'estimate':>8s} "
          f"{'ratio':>6s}  estimated peak at")
    mib = 2 ** 20
    for name, spec in specs():
        t = spec.analyze(batch=args.batch).totals
        held, kept, fixed, peak = measure(spec, args.batch)
        ratio = peak / t.train_bytes
        result[name] = {"peak": round(ratio, 3), "held": round(held / t.train_bytes, 3)}
        print(f"{name:12s} {kept / mib:8.2f} {t.saved_bytes / mib:8.2f} {held / mib:8.2f} "
              f"{peak / mib:9.2f} {t.train_bytes / mib:8.2f} {ratio:6.3f}  {t.peak_at}"
              f"{'' if 0.85 <= ratio <= 1.15 else '  (outside ±15%)'}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
