"""The NumPy backend against PyTorch: one full training step, float32, batch 64, same threads.

    python benchmarks/numpy_vs_torch.py [--rounds 30] [--threads N] [--batch 64]

For each model (benchmarks/specs/: an MLP 784-256-128-10, LeNet-5 on 1x28x28, a small
VGG-style CNN on 3x32x32) the trainer's two backends (`NumpyBackend`, `TorchBackend`) take
the same step — forward in training mode, cross-entropy, backward, SGD with momentum — on the
same batch; the two are timed back to back in one process (alternating which goes first) and
the figure is the median over rounds of numpy time / torch time (targets: MLP <= 0.8,
LeNet-5 <= 1.1, small VGG <= 1.4). Both use the same thread count: torch.set_num_threads and
OpenBLAS's own setter (through ctypes, as threadpoolctl does); the BLAS kernel OpenBLAS chose
is printed (OPENBLAS_CORETYPE forces one: compare a run with it unset).

On a machine whose cores are busy with other work, use `--threads 1`: two BLAS threads on
two shared cores spin and wait (measured here: the MLP step 1.5 ms with 1 thread, 26 ms with 2).

Then a per-op breakdown of the NumPy step (forward and backward of each op kind, the loss, the
optimizer, the rest) says what limits the ratio. The last line is one JSON object
{"mlp": ratio, "lenet5": ratio, "small_vgg": ratio}.
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import json
import os
import pathlib
import statistics
import time
from collections import defaultdict

import numpy as np

import nnspec
from nnspec.backends.numpy import model as numpy_model
from nnspec.train.numpy_backend import NumpyBackend
from nnspec.train.torch_backend import TorchBackend

HERE = pathlib.Path(__file__).resolve().parent
MODELS = {"mlp": "mlp.nn", "lenet5": "lenet5_28.nn", "small_vgg": "small_vgg.nn"}
TARGETS = {"mlp": 0.8, "lenet5": 1.1, "small_vgg": 1.4}


def _openblas():
    """NumPy's OpenBLAS library (ctypes) and its symbol suffix, or (None, '')."""
    libs = glob.glob(os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs", "*openblas*"))
    for path in libs:
        lib = ctypes.CDLL(path)
        for prefix, suffix in (("scipy_openblas", "64_"), ("openblas", ""), ("scipy_openblas", "")):
            if hasattr(lib, f"{prefix}_get_corename{suffix}"):
                return lib, prefix, suffix
    return None, "", ""


def blas_setup(threads: int) -> str:
    """Set OpenBLAS's thread count; return a line naming its kernel and threads."""
    lib, prefix, suffix = _openblas()
    if lib is None:
        return "BLAS: not OpenBLAS (thread count not set)"
    getattr(lib, f"{prefix}_set_num_threads{suffix}")(ctypes.c_int(threads))
    core = getattr(lib, f"{prefix}_get_corename{suffix}")
    core.restype = ctypes.c_char_p
    cfg = getattr(lib, f"{prefix}_get_config{suffix}")
    cfg.restype = ctypes.c_char_p
    env = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ}
    return (f"BLAS: OpenBLAS kernel {core().decode()} ({cfg().decode().strip()}), "
            f"{threads} threads; environment {env or 'OPENBLAS_CORETYPE/L2_SIZE unset'}")


def make_pair(name: str, batch: int):
    spec = nnspec.load(HERE / "specs" / MODELS[name])
    nb = NumpyBackend(spec, seed=0)
    tb = TorchBackend(spec, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch,) + tuple(spec.graph.nodes[0].shape)).astype(np.float32)
    y = rng.integers(0, 10, batch).astype(np.int64)
    return nb, tb, x, y


def time_ratio(nb, tb, x, y, rounds: int):
    for _ in range(3):  # warm up both (allocator, BLAS buffers, torch's first-call paths)
        nb.step(x, y, 0.01)
        tb.step(x, y, 0.01)
    ratios, tn, tt = [], [], []
    for r in range(rounds):
        order = (nb, tb) if r % 2 == 0 else (tb, nb)
        t = {}
        for b in order:
            t0 = time.perf_counter()
            b.step(x, y, 0.01)
            t[b.name] = time.perf_counter() - t0
        ratios.append(t["numpy"] / t["torch"])
        tn.append(t["numpy"])
        tt.append(t["torch"])
    return statistics.median(ratios), statistics.median(tn), statistics.median(tt)


def breakdown(nb, x, y, rounds: int):
    """Seconds per step by op kind (forward / backward), loss, optimizer and the rest."""
    spent = defaultdict(float)
    real = numpy_model.pair_for

    def timed(op):
        f, b = real(op)

        def fwd(*a):
            t0 = time.perf_counter()
            out = f(*a)
            spent[f"{op} forward"] += time.perf_counter() - t0
            return out

        def bwd(*a):
            t0 = time.perf_counter()
            out = b(*a)
            spent[f"{op} backward"] += time.perf_counter() - t0
            return out
        return fwd, bwd

    real_loss, real_opt = nb.loss_of, nb.optimizer.step

    def loss(*a):
        t0 = time.perf_counter()
        out = real_loss(*a)
        spent["loss"] += time.perf_counter() - t0
        return out

    def opt(*a):
        t0 = time.perf_counter()
        out = real_opt(*a)
        spent["optimizer"] += time.perf_counter() - t0
        return out

    numpy_model.pair_for = timed
    nb.loss_of, nb.optimizer.step = loss, opt
    try:
        total = 0.0
        for _ in range(rounds):
            t0 = time.perf_counter()
            nb.step(x, y, 0.01)
            total += time.perf_counter() - t0
    finally:
        numpy_model.pair_for = real
        del nb.loss_of, nb.optimizer.step
    spent["rest (executor, clipping norm)"] = total - sum(spent.values())
    return {k: v / rounds for k, v in spent.items()}, total / rounds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--models", default=",".join(MODELS))
    args = ap.parse_args()
    import torch
    torch.set_num_threads(args.threads)
    print(blas_setup(args.threads))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; numpy {np.__version__}; "
          f"batch {args.batch}, float32, {args.rounds} rounds")
    result = {}
    for name in args.models.split(","):
        nb, tb, x, y = make_pair(name, args.batch)
        ratio, tn, tt = time_ratio(nb, tb, x, y, args.rounds)
        result[name] = round(ratio, 3)
        ok = "ok" if ratio <= TARGETS[name] else "over target"
        print(f"\n{name:10s} numpy {tn * 1e3:7.2f} ms  torch {tt * 1e3:7.2f} ms  "
              f"ratio {ratio:.3f} (target <= {TARGETS[name]}: {ok})")
        parts, total = breakdown(nb, x, y, max(5, args.rounds // 2))
        print(f"  what the numpy step spends ({total * 1e3:.2f} ms with the timers):")
        for k, v in sorted(parts.items(), key=lambda kv: -kv[1])[:10]:
            print(f"    {k:34s} {v * 1e3:7.3f} ms  {100 * v / total:5.1f}%")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
