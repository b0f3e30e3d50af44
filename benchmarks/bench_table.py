"""Time to render the table of a generated 199,999-layer spec (the expander's limit), in every format, and the whole
`nnspec table` process (the rich default, written to a pipe).

    python benchmarks/bench_table.py            # prints a table, then one JSON line

Issue "Hostile specs…": the rich table of a 199,999-layer spec took 90 s and 1 GB. Rich lays
out about 1 ms a row, so past report.RICH_MAX_ROWS rows the CLI prints the plain text table
(with a note); cells are clipped to report.MAX_CELL characters, so long names cannot blow up
the rendering. Target: the whole process under 10 s on the 2-core development machine (the
parse, expansion and analysis of 200,000 layers are most of it: see bench_analyze.py).
"""

from __future__ import annotations

import io
import json
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import nnspec  # noqa: E402
from nnspec import report  # noqa: E402

LAYERS = 199_999  # the expander refuses more than 200,000
TARGET_PROCESS_S = 10.0


def spec_text(layers: int) -> str:
    """`layers` layers: conv-bn-relu triples, named, so that the table has real rows."""
    triples, rest = divmod(layers, 3)
    return (f"network generated\ninput 8x16x16\n"
            f"stage: repeat {triples} {{ conv(8, 3, pad=1) batchnorm relu }}\n"
            + ("relu " * rest).strip() + "\n")


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "generated.nn"
        path.write_text(spec_text(LAYERS))
        # The whole process first: a child forked later would inherit (and report as its
        # peak) this process's memory, the in-process analysis below included.
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "nnspec", "table", str(path)], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        process_s = time.perf_counter() - t0
        if r.returncode != 0:
            raise SystemExit(f"nnspec table failed:\n{r.stderr.decode()[-2000:]}")
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KB on Linux
        load_s, spec = timed(lambda: nnspec.load(path))
        analyze_s, an = timed(lambda: spec.analyze())
        layers = len(an.layers) - 1
        figures = {"layers": layers, "process_s": round(process_s, 3),
                   "process_peak_mb": round(peak_mb, 1), "load_s": round(load_s, 3),
                   "analyze_s": round(analyze_s, 3)}
        for fmt, fn in (("text", report.to_text), ("markdown", report.to_markdown),
                        ("csv", report.to_csv), ("json", lambda a, d=None: report.to_json(a))):
            s, out = timed(lambda: fn(an))
            figures[f"{fmt}_s"] = round(s, 3)
            figures[f"{fmt}_mb"] = round(len(out.encode()) / 2 ** 20, 1)
        # The CLI's default (rich) path, in process, to a pipe-like stream.
        from nnspec import cli
        sink = io.StringIO()
        real, sys.stdout = sys.stdout, sink
        try:
            rich_s, _ = timed(lambda: cli._print_rich(an, None))
        finally:
            sys.stdout = real
        figures["rich_cli_s"] = round(rich_s, 3)
        figures["rich_cli_fell_back_to_text"] = sink.getvalue().startswith("(")
    # What the fallback avoids: rich's own layout of RICH_MAX_ROWS rows.
    from rich.console import Console
    small = nnspec.loads(spec_text(report.RICH_MAX_ROWS)).analyze()
    console = Console(file=io.StringIO(), width=200, color_system=None)
    s, _ = timed(lambda: console.print(report.to_rich(small)))
    figures[f"rich_{report.RICH_MAX_ROWS}_rows_s"] = round(s, 3)
    print(f"{'what':<34} {'figure':>10}")
    for k, v in figures.items():
        print(f"{k:<34} {v!s:>10}")
    figures["target_process_s"] = TARGET_PROCESS_S
    figures["targets_met"] = figures["process_s"] <= TARGET_PROCESS_S
    print(f"target: whole process <= {TARGET_PROCESS_S:g} s: "
          f"{'met' if figures['targets_met'] else 'MISSED'}")
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
