"""How long `nnspec lint` takes over every shipped spec (the issue asks for well under a second).

    python benchmarks/bench_lint.py [--repeat 20] [--suppressions 20000]

Prints, for specs/*.nn: the in-process time (parse, check, analyse, every rule, render; first
run and the median of warm runs — the parser tables are cached on disk, so "first" is a
fresh interpreter's cost minus the imports), the per-spec split, and the whole-process time
of `python -m nnspec lint specs` (interpreter start and imports included). Then the cost of
suppression comments: a spec of N linear layers linted bare and with a `# nnspec: allow`
comment above each layer and another after it (the ratio stays near 1: they are matched by
line, not each against every finding). The last line is the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--suppressions", type=int, default=20_000)
    args = ap.parse_args()
    specs = sorted((ROOT / "specs").glob("*.nn"))

    t0 = time.perf_counter()
    from nnspec.lint import formats, lint_file
    t_import = time.perf_counter() - t0

    def once():
        results = [lint_file(p) for p in specs]
        formats.to_text(results)
        return results

    t0 = time.perf_counter()
    results = once()
    first = time.perf_counter() - t0
    warm = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        once()
        warm.append(time.perf_counter() - t0)

    per_spec = []
    for p in specs:
        ts = []
        for _ in range(max(3, args.repeat // 4)):
            t0 = time.perf_counter()
            lint_file(p)
            ts.append(time.perf_counter() - t0)
        per_spec.append((p.name, statistics.median(ts)))

    whole = []
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "nnspec", "lint", "specs", "--fail-level", "error"],
                       cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        whole.append(time.perf_counter() - t0)

    findings = sum(len(r.findings) for r in results)
    print(f"nnspec lint over {len(specs)} specs in specs/ ({findings} findings, "
          f"{len(formats.RULES)} rules)")
    print(f"  import nnspec.lint           {t_import * 1000:8.1f} ms")
    print(f"  in-process, first run        {first * 1000:8.1f} ms")
    print(f"  in-process, warm (median)    {statistics.median(warm) * 1000:8.1f} ms"
          f"   (min {min(warm) * 1000:.1f}, {args.repeat} runs)")
    print(f"  whole process (median of 5)  {statistics.median(whole) * 1000:8.1f} ms"
          f"   `python -m nnspec lint specs`")
    print("  per spec (median):")
    width = max(len(n) for n, _ in per_spec)
    for name, t in sorted(per_spec, key=lambda x: -x[1]):
        print(f"    {name:<{width}}  {t * 1000:7.2f} ms  {'#' * max(1, round(t * 2000))}")

    n = args.suppressions
    bare, commented = _suppression_specs(n)
    from nnspec.lint import lint_source
    t0 = time.perf_counter()
    lint_source(bare)
    t_bare = time.perf_counter() - t0
    t0 = time.perf_counter()
    r = lint_source(commented)
    t_comm = time.perf_counter() - t0
    print(f"{n:,} layers, bare vs with {2 * n:,} `# nnspec: allow` comments "
          f"({r.suppressed:,} findings suppressed, {len(r.findings):,} left)")
    print(f"  bare                         {t_bare * 1000:8.1f} ms")
    print(f"  with the comments            {t_comm * 1000:8.1f} ms   ratio {t_comm / t_bare:.2f}")
    print(json.dumps({"specs": len(specs), "findings": findings, "import_ms": round(t_import * 1000, 1),
                      "first_ms": round(first * 1000, 1),
                      "warm_median_ms": round(statistics.median(warm) * 1000, 1),
                      "process_median_ms": round(statistics.median(whole) * 1000, 1),
                      "suppressions": {"layers": n, "bare_ms": round(t_bare * 1000, 1),
                                       "commented_ms": round(t_comm * 1000, 1),
                                       "ratio": round(t_comm / t_bare, 2)}}))
    return 0


def _suppression_specs(n: int) -> tuple[str, str]:
    """n linear layers in a row (NN301 fires on all but the first), bare and commented: an
    own-line allow above each layer and a trailing allow of an unknown rule on it."""
    bare, commented = ["input 64"], ["input 64"]
    for i in range(n):
        bare.append(f"l{i}: linear(64)")
        commented += ["# nnspec: allow NN301 -- on purpose",
                      f"l{i}: linear(64)  # nnspec: allow no-such-rule -- a typo"]
    return "\n".join(bare) + "\n", "\n".join(commented) + "\n"


if __name__ == "__main__":
    sys.exit(main())
