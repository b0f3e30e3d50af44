"""How long `nnspec diagram` takes to draw (the issue asks for a few hundred milliseconds).

    python benchmarks/bench_diagram.py [--repeat 10]

For googlenet, resnet152 (unfolded and --depth 2), efficientnet_b0 and densenet_small: the
median in-process time of `render_svg` from a loaded spec, with lint run inside it (what the
command does) and without (`findings=()`: the layout and the SVG alone), interleaved run by
run; the SVG's size; and the whole-process time of `python -m nnspec diagram ... -o FILE`
(interpreter start and imports included). The last line is the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
CASES = [("googlenet", "specs/googlenet.nn", None), ("resnet152", "specs/resnet152.nn", None),
         ("resnet152 --depth 2", "specs/resnet152.nn", 2),
         ("efficientnet_b0", "specs/efficientnet_b0.nn", None),
         ("densenet_small", "docs/examples/densenet_small.nn", None)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=10)
    args = ap.parse_args()
    import nnspec
    from nnspec.diagram import render_svg

    out = {}
    print(f"{'case':24} {'with lint':>10} {'layout+SVG':>11} {'SVG size':>9} {'process':>8}")
    for label, path, depth in CASES:
        spec = nnspec.load(ROOT / path)
        render_svg(spec, depth=depth)  # warm: imports, parser tables
        full, bare = [], []
        for _ in range(args.repeat):  # interleaved: both see the same machine load
            t0 = time.perf_counter()
            svg = render_svg(spec, depth=depth)
            full.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            render_svg(spec, depth=depth, findings=())
            bare.append(time.perf_counter() - t0)
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "nnspec", "diagram", path, "-o", f"{tmp}/d.svg"]
            cmd += ["--depth", str(depth)] if depth else []
            t0 = time.perf_counter()
            subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
            proc = time.perf_counter() - t0
        f, b = statistics.median(full), statistics.median(bare)
        print(f"{label:24} {f * 1e3:8.1f} ms {b * 1e3:8.1f} ms {len(svg) / 1024:7.0f} KB {proc:6.2f} s")
        out[label] = {"render_ms": round(f * 1e3, 1), "layout_svg_ms": round(b * 1e3, 1),
                      "svg_bytes": len(svg), "process_s": round(proc, 2)}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
