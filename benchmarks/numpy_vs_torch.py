"""The NumPy backend against PyTorch: one full training step, float32, batch 64, same threads.

    python benchmarks/numpy_vs_torch.py [--rounds 30] [--threads N] [--batch 64]

For each model (benchmarks/specs/: an MLP 784-256-128-10, LeNet-5 on 1x28x28, a small
VGG-style CNN on 3x32x32) the trainer's two backends (`NumpyBackend`, `TorchBackend`) take
the same step — forward in training mode, cross-entropy, backward, SGD with momentum — on the
same batch; the two are timed back to back in one process (alternating which goes first) and
the figure is the median over rounds of numpy time / torch time (targets: MLP <= 0.8,
LeNet-5 <= 1.1, small VGG <= 1.4). Both use the same thread count: torch.set_num_threads and
threadpoolctl's limit on NumPy's BLAS (`pip install nnspec[bench]`; without it OpenBLAS's own
setter through ctypes); the BLAS library and the kernel it chose are printed, with
OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE when set (they force a kernel / a cache size: compare a
run with them unset, `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python ...`).

On a machine whose cores are busy with other work, use `--threads 1`: two BLAS threads on
two shared cores spin and wait (measured here: the MLP step 1.5 ms with 1 thread, 26 ms with 2).

Then a per-op breakdown of the NumPy step (forward and backward of each op kind, the loss, the
optimizer, the rest; `--layers` per layer) says what limits the ratio, and the GEMM floor: the
step's multiply-accumulates (the analyzer's MACs: forward, the weight gradient, the input
gradient where one is needed) at the sgemm rate this machine's BLAS reaches on the
convolutions' chunk shape, against the time the conv and linear kernels take. The last line is one JSON object
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
    """Limit NumPy's BLAS to `threads`; return a line naming the library, its kernel, threads."""
    env = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ}
    env_text = f"environment {env or 'OPENBLAS_CORETYPE/L2_SIZE unset'}"
    try:
        import threadpoolctl
    except ImportError:
        threadpoolctl = None
    if threadpoolctl is not None:
        global _LIMITS  # held for the whole run
        _LIMITS = threadpoolctl.threadpool_limits(limits=threads, user_api="blas")
        info = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
        libs = "; ".join(f"{i['internal_api']} {i.get('version')} kernel {i.get('architecture')}, "
                         f"{i['num_threads']} threads" for i in info)
        return f"BLAS (threadpoolctl): {libs or 'none found'}; {env_text}"
    lib, prefix, suffix = _openblas()
    if lib is None:
        return f"BLAS: not OpenBLAS (thread count not set; pip install threadpoolctl); {env_text}"
    getattr(lib, f"{prefix}_set_num_threads{suffix}")(ctypes.c_int(threads))
    core = getattr(lib, f"{prefix}_get_corename{suffix}")
    core.restype = ctypes.c_char_p
    cfg = getattr(lib, f"{prefix}_get_config{suffix}")
    cfg.restype = ctypes.c_char_p
    return (f"BLAS (ctypes): OpenBLAS kernel {core().decode()} ({cfg().decode().strip()}), "
            f"{threads} threads; {env_text}")


def sgemm_rate(shape=(1024, 288, 32), rounds: int = 20) -> float:
    """FLOP/s of float32 (M, K) @ (K, N) at the convolutions' chunk shape (ROWS rows)."""
    m, k, n = shape
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    out = np.empty((m, n), np.float32)
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        np.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - t0)
    return 2 * m * k * n / best


def step_macs(nb, batch: int) -> int:
    """Multiply-accumulates of one training step by the analyzer's per-layer MACs: forward,
    the weight gradient, and the input gradient of every layer but those reading the input."""
    an = nb.spec.analyze(batch=batch, dtype="float32")
    total = 0
    for st in an.layers:
        if st.macs:
            total += st.macs * (2 if tuple(st.node.inputs) == (0,) else 3)
    return total * batch


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


def breakdown(nb, x, y, rounds: int, per_layer: bool = False):
    """Seconds per step by op kind (or by layer) and direction, loss, optimizer and the rest."""
    spent = defaultdict(float)
    by_op = defaultdict(float)
    real = numpy_model.pair_for

    def timed(op):
        f, b = real(op)

        def fwd(x, params, attrs, mode, ctx):
            t0 = time.perf_counter()
            out, cache = f(x, params, attrs, mode, ctx)
            key = f"{ctx.name} ({op})" if per_layer else op
            spent[f"{key} forward"] += time.perf_counter() - t0
            by_op[op] += time.perf_counter() - t0
            return out, (key, cache)

        def bwd(d, cache):
            key, cache = cache
            t0 = time.perf_counter()
            out = b(d, cache)
            spent[f"{key} backward"] += time.perf_counter() - t0
            by_op[op] += time.perf_counter() - t0
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
    return ({k: v / rounds for k, v in spent.items()}, total / rounds,
            {k: v / rounds for k, v in by_op.items()})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--layers", action="store_true", help="the breakdown per layer, not per op kind")
    args = ap.parse_args()
    import torch
    torch.set_num_threads(args.threads)
    print(blas_setup(args.threads))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; numpy {np.__version__}; "
          f"batch {args.batch}, float32, {args.rounds} rounds; load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())} on {os.cpu_count()} cores")
    rate = sgemm_rate()
    print(f"sgemm (1024, 288) x (288, 32): {rate / 1e9:.0f} GFLOP/s")
    result = {}
    for name in args.models.split(","):
        nb, tb, x, y = make_pair(name, args.batch)
        ratio, tn, tt = time_ratio(nb, tb, x, y, args.rounds)
        result[name] = round(ratio, 3)
        ok = "ok" if ratio <= TARGETS[name] else "over target"
        print(f"\n{name:10s} numpy {tn * 1e3:7.2f} ms  torch {tt * 1e3:7.2f} ms  "
              f"ratio {ratio:.3f} (target <= {TARGETS[name]}: {ok})")
        parts, total, by_op = breakdown(nb, x, y, max(5, args.rounds // 2), args.layers)
        print(f"  what the numpy step spends ({total * 1e3:.2f} ms with the timers):")
        for k, v in sorted(parts.items(), key=lambda kv: -kv[1])[:25 if args.layers else 10]:
            print(f"    {k:34s} {v * 1e3:7.3f} ms  {100 * v / total:5.1f}%")
        weighted = by_op.get("conv", 0.0) + by_op.get("linear", 0.0)
        macs = step_macs(nb, args.batch)
        floor = 2 * macs / rate
        print(f"  GEMM floor: {macs / 1e9:.2f} GMAC per step at {rate / 1e9:.0f} GFLOP/s = "
              f"{floor * 1e3:.1f} ms; the conv and linear kernels take {weighted * 1e3:.1f} ms "
              f"({weighted / floor:.2f}x the floor: above it, the convolutions' unfolding, padding "
              f"and gradient scatter, small GEMMs' lower rate, and the machine's load); the other "
              f"ops {(total - weighted) * 1e3:.1f} ms")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
