"""nnspec.checkpoint against torch.save / torch.load, on ResNet-50's state dict (~100 MB).

    python benchmarks/bench_checkpoint.py [--repeat 5]

1. save: `checkpoint.save` (.safetensors, atomic: fsync included) over `torch.save` (.pt, no
   fsync) of the same arrays: the ratio ours / torch's.
2. load: `checkpoint.load` (every tensor) over `torch.load(weights_only=True)`.
3. open: `checkpoint.open` of a header of 100,000 tensors (the header checks alone), and of a
   6 GB sparse file (a lazy open reads the header only).

Medians over the rounds; the last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import tempfile
import time

import numpy as np
import torch

import nnspec
from nnspec import checkpoint

ROOT = pathlib.Path(__file__).resolve().parent.parent


def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    state = nnspec.compile(str(ROOT / "specs" / "resnet50.nn")).state_dict()
    arrays = {k: v.numpy() for k, v in state.items()}
    mb = sum(a.nbytes for a in arrays.values()) / 1e6
    out: dict = {"state_mb": round(mb, 1), "tensors": len(arrays)}
    with tempfile.TemporaryDirectory() as d:
        st, pt = os.path.join(d, "w.safetensors"), os.path.join(d, "w.pt")
        ours = median_time(lambda: checkpoint.save(st, arrays), args.repeat)
        theirs = median_time(lambda: torch.save(state, pt), args.repeat)
        out["save_s"], out["torch_save_s"], out["save_ratio"] = ours, theirs, ours / theirs
        print(f"save  {mb:.0f} MB: checkpoint.save {ours * 1e3:.0f} ms (fsync'd), torch.save "
              f"{theirs * 1e3:.0f} ms: ratio {ours / theirs:.2f}")
        ours = median_time(lambda: checkpoint.load(st), args.repeat)
        theirs = median_time(lambda: torch.load(pt, weights_only=True), args.repeat)
        out["load_s"], out["torch_load_s"], out["load_ratio"] = ours, theirs, ours / theirs
        print(f"load  {mb:.0f} MB: checkpoint.load {ours * 1e3:.0f} ms, torch.load "
              f"{theirs * 1e3:.0f} ms: ratio {ours / theirs:.2f}")

        many = os.path.join(d, "many.safetensors")
        checkpoint.save(many, {f"model.layers.{i}.weight": np.zeros(1, np.float32) for i in range(100_000)})
        t = median_time(lambda: checkpoint.open(many).close(), max(1, args.repeat // 2))
        out["open_100k_tensors_s"] = t
        print(f"open  a header of 100,000 tensors ({os.path.getsize(many) / 1e6:.1f} MB): {t * 1e3:.0f} ms")

        big = os.path.join(d, "big.safetensors")
        n = 6 * 10 ** 9
        header = json.dumps({"x": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}}).encode()
        with open(big, "wb") as f:
            f.write(len(header).to_bytes(8, "little") + header)
        os.truncate(big, 8 + len(header) + n)
        t = median_time(lambda: checkpoint.open(big).close(), args.repeat)
        out["open_6gb_s"] = t
        print(f"open  a 6 GB file: {t * 1e6:.0f} us (the header only)")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
