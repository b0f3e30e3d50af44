"""In-process parse + expand + analyze time: a shipped spec and generated specs of 1,000 and
10,000 layers.

    python benchmarks/bench_analyze.py            # prints a table, then one JSON line

Targets (issue 2): resnet152 <= 10 ms; 10k layers <= 1 s; time(10k) / time(1k) <= 12 (linear).
Each figure is the best of several runs (the minimum is the least noisy estimate of the
cost; the median is printed too). "written" specs spell out every layer on its own line, so
the parser does all the work; "repeat" specs produce the same layers from a short text, so
the expander and the analysis do.
"""

from __future__ import annotations

import gc
import json
import pathlib
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import nnspec

TARGET_SPEC_MS = 10.0
TARGET_10K_S = 1.0
TARGET_RATIO = 12.0


def written_spec(layers: int) -> str:
    """`layers` layers, one statement per line: conv-bn-relu triples with a residual add
    every fourth line (the add costs one layer, its identity path one more)."""
    lines = ["network generated", "input 16x32x32"]
    count, i = 0, 0
    while count < layers:
        left = layers - count
        if i % 4 == 3 and left >= 5:
            lines.append(f"r{i}: add {{\n  {{ conv(16, 3, pad=1, bias=false) batchnorm relu }}\n  identity\n}}")
            count += 5
        elif left >= 3:
            lines.append(f"c{i}: conv(16, 3, pad=1, bias=false) batchnorm relu")
            count += 3
        else:
            lines.append(" ".join(["relu"] * left))
            count += left
        i += 1
    return "\n".join(lines) + "\n"


def repeat_spec(layers: int) -> str:
    """The same kind of network from a block and a repeat (5 layers per block instance)."""
    blocks, rest = divmod(layers, 5)
    tail = ("\n" + " ".join(["relu"] * rest)) if rest else ""
    return ("network generated\ninput 16x32x32\n"
            "block unit() {\n  add {\n    { conv(16, 3, pad=1, bias=false) batchnorm relu }\n    identity\n  }\n}\n"
            f"body: repeat {blocks} {{ unit() }}{tail}\n")


def run_once(text: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    spec = nnspec.loads(text)
    spec.analyze()
    return time.perf_counter() - t0, len(spec.graph.nodes) - 1


def measure(text: str, runs: int) -> dict:
    run_once(text)  # warm-up: parser tables, lexer regexes
    times = []
    gc.collect()
    for _ in range(runs):
        dt, layers = run_once(text)
        times.append(dt)
    return {"best": min(times), "median": statistics.median(times), "layers": layers}


def main() -> dict:
    spec_path = ROOT / "specs" / "resnet152.nn"
    if not spec_path.exists():
        spec_path = ROOT / "specs" / "resnet18.nn"
    shipped = measure(spec_path.read_text("utf-8"), 50)
    rows = [(spec_path.name, shipped)]
    results = {}
    for style, make in (("written", written_spec), ("repeat", repeat_spec)):
        for n in (1_000, 10_000):
            m = measure(make(n), 7 if n == 1_000 else 3)
            assert m["layers"] == n, (style, n, m["layers"])
            results[(style, n)] = m
            rows.append((f"{style} {n:,} layers", m))

    print(f"{'spec':<24} {'layers':>7} {'best':>10} {'median':>10}")
    for label, m in rows:
        print(f"{label:<24} {m['layers']:>7} {m['best'] * 1e3:>8.2f}ms {m['median'] * 1e3:>8.2f}ms")

    def ratio(style):
        return results[(style, 10_000)]["best"] / results[(style, 1_000)]["best"]

    figures = {
        "spec": spec_path.stem,
        "spec_ms": round(shipped["best"] * 1e3, 3),
        "written_1k_s": round(results[("written", 1_000)]["best"], 4),
        "written_10k_s": round(results[("written", 10_000)]["best"], 4),
        "written_ratio": round(ratio("written"), 2),
        "repeat_1k_s": round(results[("repeat", 1_000)]["best"], 4),
        "repeat_10k_s": round(results[("repeat", 10_000)]["best"], 4),
        "repeat_ratio": round(ratio("repeat"), 2),
    }
    figures["targets_met"] = (figures["spec_ms"] <= TARGET_SPEC_MS
                              and max(figures["written_10k_s"], figures["repeat_10k_s"]) <= TARGET_10K_S
                              and max(figures["written_ratio"], figures["repeat_ratio"]) <= TARGET_RATIO)
    print(f"targets: {spec_path.stem} <= {TARGET_SPEC_MS:g} ms, 10k layers <= {TARGET_10K_S:g} s, "
          f"10k/1k <= {TARGET_RATIO:g}: {'met' if figures['targets_met'] else 'MISSED'}")
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
