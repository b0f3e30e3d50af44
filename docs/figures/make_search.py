"""The figures and outputs of docs/experiments.md, section "Hyperparameter search".

    python docs/figures/make_search.py        (a few minutes on 2 CPU cores)

Runs each search of SEARCHES (the commands the page shows) in a temporary folder, writes
docs/figures/<name>.png (`--plot`) and docs/figures/<name>.out (what the command printed, as
the page shows it: the first trial lines and everything from the summary on), and puts each
output into the page between `<!-- make_search: NAME -->` and `<!-- end -->`.
tests/test_search.py checks that the page shows these commands and these outputs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIGURES = ROOT / "docs" / "figures"
PAGE = ROOT / "docs" / "experiments.md"
SHOWN_TRIALS = 5  # trial lines the page keeps before "…"

SEARCHES = {
    # the notes' random search of the learning rate and the regularisation strength
    "search": ["nnspec", "search", "specs/mlp_digits.nn", "--trials", "30", "--epochs", "3", "--jobs", "2",
               "--set", "lr=loguniform(1e-6, 1e-1)", "--set", "weight_decay=loguniform(1e-5, 10)",
               "--refine", "5", "--refine-trials", "10", "--run", "runs/search", "--plot",
               "docs/figures/search.png"],
    # the notes' optimizer comparison: each update rule at its best learning rate
    "search_optimizers": ["nnspec", "search", "specs/mlp_digits.nn", "--trials", "36", "--epochs", "3",
                          "--jobs", "2", "--set", "optimizer=sgd,momentum,nesterov,adagrad,rmsprop,adam",
                          "--set", "lr=loguniform(1e-4, 1e-1)", "--run", "runs/search-optimizers",
                          "--plot", "docs/figures/search_optimizers.png"],
}


def command_text(argv: list[str]) -> str:
    import shlex
    return " ".join(shlex.quote(a) for a in argv)


def shown(output: str) -> str:
    """The command's output as the page shows it: the header, the first trial lines, …, the rest."""
    lines = output.splitlines()
    trial = [i for i, x in enumerate(lines) if x.startswith(("val acc", "failed ("))]
    summary = next(i for i, x in enumerate(lines) if re.match(r"\d+ trials: ", x))
    keep = lines[:trial[0] + SHOWN_TRIALS] + ["…"] if len(trial) > SHOWN_TRIALS + 1 else lines[:summary]
    fine = [x for x in lines[:summary] if x.startswith("fine stage")]
    return "\n".join(keep + fine + lines[summary:]) + "\n"


def run(name: str, argv: list[str], tmp: Path) -> str:
    run_dir = argv[argv.index("--run") + 1]
    real = [sys.executable, "-m", "nnspec", *argv[1:]]
    real[real.index("--run") + 1] = str(tmp / name)
    p = subprocess.run(real, cwd=ROOT, capture_output=True, text=True, check=False,
                       env={**os.environ, "NO_COLOR": "1"})
    if p.returncode != 0:
        raise SystemExit(f"{command_text(argv)} failed ({p.returncode}):\n{p.stderr}")
    return shown(p.stdout.replace(str(tmp / name), run_dir))


def update_page(outputs: dict[str, str]) -> None:
    text = PAGE.read_text("utf-8")
    for name, out in outputs.items():
        pattern = re.compile(rf"(<!-- make_search: {name} -->\n).*?(<!-- end -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"{PAGE}: no <!-- make_search: {name} --> block")
        text = pattern.sub(lambda m: f"{m.group(1)}```text\n{out}```\n{m.group(2)}", text)
    PAGE.write_text(text, "utf-8")


def main() -> None:
    outputs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, argv in SEARCHES.items():
            outputs[name] = run(name, argv, Path(tmp))
            (FIGURES / f"{name}.out").write_text(outputs[name], "utf-8")
            print(f"{name}: {FIGURES / (name + '.png')}")
    update_page(outputs)


if __name__ == "__main__":
    main()
