"""Whole-process wall time of `nnspec table specs/vgg16.nn`, and proof that it never imports torch.

    python benchmarks/bench_cli.py            # prints a table, then one JSON line

Target: <= 0.25 s per run (a torchinfo summary of the same network takes seconds).
Runs `python -m nnspec` with this interpreter (what the `nnspec` console script runs; a
pyenv or conda shim in front of the script adds its own start-up time, measured separately
when the script is on PATH). The baseline `python -c pass` shows the interpreter's share.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
TARGET_S = 0.25  # issue "One source of truth per op…" tightened it from 0.3 s
RUNS = 10


def wall(cmd: list[str], runs: int = RUNS) -> dict:
    times = []
    for _ in range(runs + 1):
        t0 = time.perf_counter()
        r = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        times.append(time.perf_counter() - t0)
        if r.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr.decode()}")
    times = times[1:]  # the first run warms the file cache and the parser-table cache
    return {"best": min(times), "median": statistics.median(times)}


def imported_modules(cmd: list[str]) -> list[str]:
    r = subprocess.run(cmd[:1] + ["-X", "importtime"] + cmd[1:], cwd=ROOT, capture_output=True, text=True)
    return [line.split("|")[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")]


def main() -> dict:
    py = sys.executable
    table = [py, "-m", "nnspec", "table", "specs/vgg16.nn"]
    rows = {
        "python -c pass": wall([py, "-c", "pass"]),
        "nnspec table (rich)": wall(table),
        "nnspec table --format text": wall(table + ["--format", "text"]),
        "nnspec table --format json": wall(table + ["--format", "json"]),
    }
    script = shutil.which("nnspec")
    if script:
        rows["`nnspec` console script"] = wall([script, "table", "specs/vgg16.nn"])
    modules = imported_modules(table)
    torch_modules = sorted(m for m in modules if m == "torch" or m.startswith("torch."))
    nnspec_import = subprocess.run([py, "-X", "importtime", "-c", "import nnspec.cli, nnspec.spec, nnspec.report"],
                                   cwd=ROOT, capture_output=True, text=True).stderr.splitlines()
    own = [l for l in nnspec_import if l.split("|")[-1].strip() == "nnspec"]
    nnspec_ms = int(own[-1].split("|")[1]) / 1000 if own else None

    print(f"{'command':<30} {'best':>8} {'median':>8}")
    for label, m in rows.items():
        print(f"{label:<30} {m['best']:>7.3f}s {m['median']:>7.3f}s")
    print(f"modules imported by `nnspec table`: {len(modules)}; torch among them: "
          f"{'YES ' + ', '.join(torch_modules[:3]) if torch_modules else 'no'}")
    if nnspec_ms is not None:
        print(f"`import nnspec` (cumulative, -X importtime): {nnspec_ms:.1f} ms")
    best = rows["nnspec table (rich)"]["best"]
    figures = {
        "table_rich_s": round(best, 4),
        "table_rich_median_s": round(rows["nnspec table (rich)"]["median"], 4),
        "table_text_s": round(rows["nnspec table --format text"]["best"], 4),
        "python_startup_s": round(rows["python -c pass"]["best"], 4),
        "console_script_s": round(rows["`nnspec` console script"]["best"], 4) if script else None,
        "import_nnspec_ms": nnspec_ms,
        "torch_imported": bool(torch_modules),
        "cpus": os.cpu_count(),
    }
    figures["targets_met"] = best <= TARGET_S and not torch_modules
    print(f"target: whole process <= {TARGET_S:g} s without torch: {'met' if figures['targets_met'] else 'MISSED'}")
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
