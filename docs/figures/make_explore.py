"""Draw the pictures of docs/experiments.md's sections on activation histograms and the
learning-rate finder, with the commands the doc shows (plus `-o`):

    python docs/figures/make_explore.py          # from the repository root; needs matplotlib

Each picture is what `nnspec … -o docs/figures/<name>` draws; nothing is retouched by hand.
"""

from __future__ import annotations

import os
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent

TANH = ["histograms", "examples/init/tanh10.nn", "--synthetic", "--activations", "--backend", "numpy"]
RELU = ["histograms", "examples/init/relu10.nn", "--synthetic", "--activations", "--backend", "numpy"]

# (file under docs/figures, the command that draws it without -o)
FIGURES = (
    ("explore_tanh_std001.png", TANH),
    ("explore_tanh_std1.png", TANH + ["--set", "std=1.0"]),
    ("explore_tanh_xavier.png", TANH + ["--init", "xavier"]),
    ("explore_relu_he.png", RELU),
    ("explore_relu_xavier.png", RELU + ["--init", "xavier"]),
    ("explore_lr_find.png", ["lr-find", "specs/mlp_digits.nn", "--backend", "numpy"]),
)


def main() -> int:
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    from nnspec.cli import main as nnspec
    for name, argv in FIGURES:
        code = nnspec([*argv, "--format", "json", "-o", str(HERE / name)])
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
