"""Sub-commands `histograms` and `lr-find`: looking at a network before training it.

    nnspec histograms examples/init/tanh10.nn --synthetic -o acts.png   each layer's activations
    nnspec histograms net.nn --init xavier --format json                 the numbers, another init
    nnspec lr-find specs/mlp_digits.nn -o curve.png                      the range test
    nnspec lr-find specs/mlp_digits.nn --write                           the rate into the spec

Both build a fresh model and write nothing unless asked (`-o`, `--write`). torch and
matplotlib are imported inside the handlers only.
"""

from __future__ import annotations

import json
import sys

from ..cli import CommandError, UsageError, positive

FIGURES = ("png", "svg", "pdf")


def register(sub) -> None:
    def common(p, what: str):
        p.add_argument("file", help="one .nn spec; - reads standard input")
        p.add_argument("--set", action="append", metavar="NAME=VALUE",
                       help="override a network parameter, e.g. --set std=1.0")
        p.add_argument("-o", "--output", metavar="FILE.png", help=f"draw {what} (.png, .svg or .pdf; "
                                                                   f"needs matplotlib)")
        p.add_argument("--format", choices=("rich", "text", "json"), default="rich")
        p.add_argument("--backend", choices=("torch", "numpy"), default="torch")
        p.add_argument("--data", help="a data source as for `nnspec train --data` (default: the "
                                      "train section's)")
        p.add_argument("--seed", type=_nonneg, help="override `seed` (initial weights, draws)")
        p.add_argument("--precision", choices=("fp32", "fp64"), default="fp32")

    h = sub.add_parser("histograms", help="each layer's activations at initialisation: mean, std, "
                                          "zeros, saturation, histograms")
    common(h, "the histograms and the mean/std per layer")
    h.add_argument("--synthetic", action="store_true",
                   help="unit-Gaussian inputs of the input's shape instead of the data")
    h.add_argument("--batch", type=positive("batch", 1 << 20), default=None,
                   help="samples in the batch (default 256)")
    h.add_argument("--init", metavar="SCHEME", help="replace the train section's init: he, xavier, "
                                                    "normal(std=0.01), uniform(a=0.05), …")
    h.add_argument("--bins", type=positive("bins", 1000), default=None, help="histogram bins (default 50)")
    h.add_argument("--range", dest="value_range", metavar="LO,HI",
                   help="the histograms' range (default: shared by all layers, from the values)")
    h.add_argument("--layers", action="append", metavar="PATTERN",
                   help="only layers matching this name pattern (as `freeze`); repeatable")
    h.add_argument("--activations", action="store_true", help="only the outputs of activation layers")
    h.set_defaults(func=cmd_histograms)

    f = sub.add_parser("lr-find", help="the learning-rate range test: loss against an exponentially "
                                       "growing rate, and suggestions")
    common(f, "the loss curve")
    f.add_argument("--batch", type=positive("batch", 1 << 20), default=None,
                   help="override `batch`")
    f.add_argument("--start", type=_positive_float, default=None, help="the first rate (default 1e-7)")
    f.add_argument("--end", type=_positive_float, default=None, help="the last rate (default 10)")
    f.add_argument("--steps", type=positive("steps", 100_000), default=None,
                   help="mini-batches in the sweep (default 100)")
    f.add_argument("--pick", choices=("min10", "steepest"), default="min10",
                   help="the suggestion --write uses (default min10: the minimum's rate / 10)")
    f.add_argument("--write", action="store_true",
                   help="put the picked rate into the spec's optimizer line (nothing else changes)")
    f.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    f.set_defaults(func=cmd_lr_find)


def _nonneg(v: str) -> int:
    from .commands import _nonneg as nonneg
    return nonneg(v)


def _positive_float(v: str) -> float:
    from .commands import _positive_float as pf
    return pf(v)


def _check_figure(path: str | None) -> None:
    if path is None:
        return
    from ..backends.commands import check_output
    if path.rsplit(".", 1)[-1].lower() not in FIGURES or "." not in path:
        raise UsageError(f"-o {path}: give a .png, .svg or .pdf file name")
    check_output(path)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError("-o needs matplotlib: pip install \"nnspec[plot]\"") from None


def _needs_torch(backend: str) -> None:
    if backend != "torch":
        return
    try:
        import torch  # noqa: F401
    except ImportError:
        raise UsageError("--backend torch needs PyTorch: pip install \"nnspec[torch]\", or use "
                         "--backend numpy") from None


def _range(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    import math
    parts = text.split(",")
    try:
        lo, hi = (float(p) for p in parts)
    except ValueError:
        raise UsageError(f"--range expects LO,HI (two numbers), got {text[:40]!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise UsageError(f"--range expects finite LO < HI, got {text[:40]!r}")
    return lo, hi


def _print(renderable, before=(), after=()) -> None:
    from rich.console import Console

    from ..cli import _raise_broken_pipe, colour
    on = colour(sys.stdout)
    console = Console(force_terminal=on, no_color=not on, color_system="auto" if on else None,
                      highlight=False)
    console.on_broken_pipe = _raise_broken_pipe
    from rich.text import Text
    for line in before:
        console.print(Text(line))
    console.print(renderable)
    for line in after:
        console.print(Text(line))


def _save(fig, path: str) -> None:
    from .histograms import save_figure
    save_figure(fig, path)
    print(f"wrote {path}", file=sys.stderr)


def cmd_histograms(args) -> int:
    from ..cli import _load
    from . import histograms as H
    value_range = _range(args.value_range)
    _check_figure(args.output)
    _needs_torch(args.backend)
    spec = _load(args.file, args)
    try:
        h = H.collect(spec, backend=args.backend, data=args.data, synthetic=args.synthetic,
                      batch=args.batch or H.BATCH, seed=args.seed, init=args.init,
                      layers=tuple(args.layers or ()), activations_only=args.activations,
                      bins=args.bins or H.BINS, value_range=value_range,
                      dtype="float64" if args.precision == "fp64" else "float32")
    except H.HistogramError as e:
        raise CommandError(str(e)) from None
    if args.format == "json":
        sys.stdout.write(json.dumps(h.to_dict(), indent=2) + "\n")
    elif args.format == "text":
        sys.stdout.write(H.to_text(h))
    else:
        _print(H.to_rich(h), [H.title(h)])
    if args.output:
        _save(H.plot(h), args.output)
    return 0


def cmd_lr_find(args) -> int:
    from ..cli import _load
    from ..spec import STDIN
    from . import lr_find as L
    from .spec_edit import EditError, write_lr
    if args.write and args.file == STDIN:
        raise UsageError("--write edits the spec file: it cannot write to standard input")
    if args.write:
        from ..backends.commands import check_output
        check_output(args.file)
    _check_figure(args.output)
    _needs_torch(args.backend)
    spec = _load(args.file, args)
    try:
        s = L.find_lr(spec, data=args.data, backend=args.backend, batch=args.batch, seed=args.seed,
                      start=args.start or L.START, end=args.end or L.END, steps=args.steps or L.STEPS,
                      device=args.device, precision=args.precision)
    except L.LRFindError as e:
        raise CommandError(str(e)) from None
    if args.format == "json":
        sys.stdout.write(json.dumps(s.to_dict(), indent=2, allow_nan=True) + "\n")
    elif args.format == "text":
        sys.stdout.write(L.to_text(s))
    else:
        _print(L.to_rich(s), L.summary_lines(s), L.suggestion_lines(s))
    if args.output:
        _save(L.plot(s), args.output)
    if args.write:
        lr = s.suggestions.get(args.pick)
        if lr is None:
            raise CommandError(f"no {args.pick} suggestion (the loss did not fall before it rose); "
                               f"{args.file} not changed")
        try:
            written = write_lr(spec.graph, lr)
        except EditError as e:
            raise CommandError(str(e)) from None
        print(f"wrote lr={written} ({args.pick}) into {args.file}", file=sys.stderr)
    return 0
