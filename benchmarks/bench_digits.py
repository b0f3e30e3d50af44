"""The shipped digits CNN trained as its spec says, in a fresh process: wall time and test
accuracy (targets: ≥ 97% test accuracy, ≤ 60 s on the 2-core development machine).

    python benchmarks/bench_digits.py [--backend torch]

The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--spec", default="specs/cnn_digits.nn")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "nnspec", "train", args.spec, "--backend", args.backend,
                            "--run", str(Path(tmp) / "run"), "--report", str(report)],
                           cwd=ROOT, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if p.returncode != 0:
            sys.exit(p.stderr)
        r = json.loads(report.read_text())
    print(f"{args.spec} ({args.backend}): test accuracy {r['test_accuracy']:.4f} (target >= 0.97), "
          f"{seconds:.1f} s whole process (target <= 60 s), {r['epochs']} epochs, best epoch {r['best_epoch']}")
    print(json.dumps({"spec": args.spec, "backend": args.backend, "test_accuracy": round(r["test_accuracy"], 4),
                      "seconds": round(seconds, 2), "epochs": r["epochs"]}))


if __name__ == "__main__":
    main()
