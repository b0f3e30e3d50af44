"""Worst-case time of the front end on hostile specs: each must end in a clean, located
diagnostic (or, for the valid ones, a result) within about a second.

    python benchmarks/bench_hostile.py        # a table, then one JSON line

The corpus (`CORPUS`) holds the reproducers of the "hostile specs" issue: work that adds no
layers (repeats of empty repeats, blocks that instantiate the previous block twice), tuples
doubled 27 times, a 1 MB label repeated, deep nesting inside chains of blocks, hundreds of
`freeze` patterns over thousands of layers, 20,000 suppression comments. tests/
test_front_properties.py checks that every entry gives what `CORPUS` says (no timing there).
"""

from __future__ import annotations

import json
import sys
import time

TARGET_S = 1.0


def _blocks_doubling(k: int) -> str:
    lines = ["network doubling", "input 3x8x8", "block b0() { }"]
    lines += [f"block b{i}() {{ b{i - 1}() b{i - 1}() }}" for i in range(1, k + 1)]
    return "\n".join(lines + [f"b{k}()", "relu", ""])


def _tuple_doubling(k: int) -> str:
    params = ["t0 = (1, 1)"] + [f"t{i} = t{i - 1} + t{i - 1}" for i in range(1, k + 1)]
    return f"network t({', '.join(params)})\ninput 3x8x8\nrelu\n"


def _deep_nesting_in_blocks(blocks: int, depth: int) -> str:
    lines = ["network deep", "input 3x8x8", "block b0() { relu }"]
    for i in range(1, blocks + 1):
        lines.append(f"block b{i}() {{ " + "{ " * depth + f"b{i - 1}()" + " }" * depth + " }")
    return "\n".join(lines + [f"b{blocks}()", ""])


def _freeze(patterns: int, layers: int, form: str = "stage{i}.*") -> str:
    pats = ", ".join('"' + form.format(i=i) + '"' for i in range(patterns))
    return (f"network frozen\ninput 64\nrepeat {layers} as i {{ stage{{i}}: linear(64) }}\n"
            f"train {{\n  freeze {pats}\n}}\n")


def _suppressions(n: int) -> str:
    lines = ["network quiet", "input 64"]
    lines += ["# nnspec: allow NN301 -- the comment itself is the point"] * n
    return "\n".join(lines + ["linear(32)", "linear(10)", ""])


# name -> (spec text, what must come out: a diagnostic code, or "ok" for a result)
CORPUS = {
    "repeat_of_empty_repeat": ("network n\ninput 3x8x8\nrepeat 200000 { repeat 200000 { } }\nrelu\n", "NN017"),
    "repeat_of_layerless_repeat": ("network n\ninput 3x8x8\nrepeat 200000 { repeat 200000 { if false { relu } } }\n"
                                   "relu\n", "NN017"),
    "blocks_doubling_30": (_blocks_doubling(30), "NN017"),
    "tuple_doubling_27": (_tuple_doubling(27), "NN017"),
    "label_1mb_repeated": ("network n\ninput 3x8x8\nrepeat 1000 { " + "a" * 1_000_000 + ": relu }\n", "NN017"),
    "label_1mb_in_block": ("network n\ninput 3x8x8\nblock b() { " + "a" * 1_000_000 + ": relu }\n"
                           "repeat 1000 { b() }\n", "NN017"),
    "deep_nesting_in_blocks": (_deep_nesting_in_blocks(50, 95), "NN017"),
    "freeze_500_patterns_5000_layers": (_freeze(500, 5000), "ok"),
    "freeze_500_wildcards_5000_layers": (_freeze(500, 5000, "st?ge{i}*x"), "ok"),
    "suppressions_20000": (_suppressions(20_000), "ok"),
}


def run(text: str, lint: bool = True) -> str:
    """What the front end makes of a spec: "ok" or the first diagnostic's code; a foreign
    exception propagates."""
    import nnspec
    try:
        spec = nnspec.loads(text, file="hostile.nn")
        spec.analyze()
    except nnspec.SpecError as e:
        e.render()
        return e.diagnostics[0].code
    if lint:
        from nnspec.lint.engine import lint_source
        lint_source(text, "hostile.nn")
    return "ok"


def main() -> int:
    import nnspec  # noqa: F401  (import time is not the spec's)
    rows, worst, failed = [], 0.0, []
    for name, (text, want) in CORPUS.items():
        t0 = time.perf_counter()
        got = run(text)
        dt = time.perf_counter() - t0
        worst = max(worst, dt)
        rows.append((name, dt, got, want))
        if got != want:
            failed.append(name)
    width = max(len(r[0]) for r in rows)
    print(f"{'case':<{width}}  seconds  result")
    for name, dt, got, want in rows:
        print(f"{name:<{width}}  {dt:7.3f}  {got}" + ("" if got == want else f"  (expected {want})"))
    print(json.dumps({"benchmark": "hostile", "worst_s": round(worst, 3), "target_s": TARGET_S,
                      "cases": {name: round(dt, 3) for name, dt, _, _ in rows},
                      "all_clean": not failed}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
