"""Sub-commands `train` and `evaluate`.

    nnspec train specs/cnn_digits.nn                     the embedded digits, offline
    nnspec train net.nn --data train.npz --run runs/a    Ctrl-C writes a checkpoint, then:
    nnspec train net.nn --run runs/a --resume            continues exactly where it stopped
    nnspec train head.nn --init-from runs/a/best.safetensors   weights only: transfer learning
    nnspec evaluate net.nn --weights runs/a/best.safetensors   accuracy, per class, confusion
    nnspec train net.nn --folds 5 --run runs/cv          k-fold cross-validation: mean ± std
    nnspec train net.nn --bootstrap 5 --run runs/bag     bagging: 5 resamples, their ensemble
    nnspec evaluate net.nn --weights a.safetensors b.safetensors   each model and the ensemble

Exit codes: 0 done, 1 the run could not start or continue (a one-line reason), 2 usage,
130 interrupted (after writing a checkpoint and printing the command that resumes).
"""

from __future__ import annotations

import json
import shlex
import sys


def register(sub) -> None:
    t = sub.add_parser("train", help="train a spec as its train section says")
    t.add_argument("file", help="a .nn spec")
    t.add_argument("--set", action="append", metavar="NAME=VALUE", help="override a network parameter")
    t.add_argument("--data", help="digits, a .npz file (x, y), mnist:DIR, fashion:DIR, cifar10:DIR, "
                                  "spirals, moons, circles, synthetic (default: the train section's)")
    t.add_argument("--epochs", type=_positive, help="override `epochs`")
    t.add_argument("--batch", type=_positive, help="override `batch`")
    t.add_argument("--lr", type=_positive_float, help="override the optimizer's learning rate")
    t.add_argument("--seed", type=_nonneg, help="override `seed`")
    t.add_argument("--run", "--run-dir", dest="run", metavar="DIR",
                   help="the run directory (default: a new one under runs/); under torchrun write "
                        "--run-dir (torchrun takes --run for its own --run-path)")
    t.add_argument("--resume", action="store_true", help="continue the run in --run DIR")
    t.add_argument("--init-from", metavar="FILE", help="start from these weights (transfer learning)")
    t.add_argument("--backend", choices=("torch", "numpy"), default="torch")
    t.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    t.add_argument("--precision", choices=("fp32", "fp64", "bf16", "fp16"), default="fp32",
                   help="bf16/fp16: autocast on a GPU; fp64: double precision")
    t.add_argument("--checkpoint-every", type=_nonneg, default=0, metavar="N",
                   help="also write a checkpoint every N steps (default: at the end of each epoch)")
    t.add_argument("--folds", type=_at_least_2, metavar="K",
                   help="k-fold cross-validation (overrides `folds`): DIR/fold-1 … fold-K, mean ± std; "
                        "the same command again resumes the interrupted fold")
    t.add_argument("--bootstrap", type=_at_least_2, metavar="M",
                   help="bagging: M models on resamples with replacement (DIR/bootstrap-1 …), their "
                        "ensemble beside each")
    t.add_argument("--report", metavar="FILE", help="write the run's summary as JSON")
    t.add_argument("--plot", metavar="FILE.png", help="draw loss, accuracy and learning-rate curves "
                                                      "(needs matplotlib)")
    t.add_argument("--sanity", action="store_true",
                   help="run the recipe checks (initial loss, overfit one batch, zero-input baseline, "
                        "batch independence, float64 gradient check) instead of training; exit 1 if one fails")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="accuracy, per-class recall and confusion matrix of weights (several: their ensemble)")
    e.add_argument("file", help="a .nn spec")
    e.add_argument("--set", action="append", metavar="NAME=VALUE", help="override a network parameter")
    e.add_argument("--weights", required=True, nargs="+", metavar="FILE",
                   help="a .safetensors checkpoint; several: each model and their ensemble (mean probability)")
    e.add_argument("--backend", choices=("torch", "numpy"), default="torch")
    e.add_argument("--data", help="as for train (default: the train section's)")
    e.add_argument("--split", choices=("test", "val", "train"), default="test")
    e.add_argument("--format", choices=("text", "json"), default="text")
    e.set_defaults(func=cmd_evaluate)


def _positive(v: str) -> int:
    return _int(v, 1)


def _nonneg(v: str) -> int:
    return _int(v, 0)


def _int(v: str, low: int) -> int:
    import argparse
    try:
        n = int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {v!r}") from None
    if n < low or n > 2 ** 31:
        raise argparse.ArgumentTypeError(f"expected an integer from {low} to {2 ** 31:,}, got {v}")
    return n


def _at_least_2(v: str) -> int:
    return _int(v, 2)


def _positive_float(v: str) -> float:
    import argparse
    import math
    try:
        x = float(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {v!r}") from None
    if not (x > 0 and math.isfinite(x)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {v}")
    return x


def _err(msg: str) -> None:
    print(f"nnspec: {msg}", file=sys.stderr)


def cmd_train(args) -> int:
    from ..cli import _load
    from .loop import Interrupted, Options, TrainError, Trainer

    spec = _load(args.file, args)
    if args.sanity:
        return _sanity(spec, args)
    members = bool(args.folds or args.bootstrap or (spec.graph.train is not None and spec.graph.train.folds))
    if members and args.plot:
        from ..cli import UsageError
        raise UsageError("--plot draws one run and does not combine with folds or --bootstrap "
                         "(each member's curves are in DIR/fold-k/log.jsonl, its table in DIR/summary.json)")
    opts = Options(data=args.data, epochs=args.epochs, batch=args.batch, lr=args.lr, seed=args.seed,
                   run=args.run, resume=args.resume, init_from=args.init_from, backend=args.backend,
                   device=args.device, precision=args.precision, checkpoint_every=args.checkpoint_every,
                   handle_signals=True, command=_command(args), folds=args.folds, bootstrap=args.bootstrap)
    view = _view()
    try:
        if members:
            from .members import run_members
            result = run_members(spec, opts, view.event)
        else:
            result = Trainer(spec, opts, view.event).run()
    except Interrupted as e:
        view.close()
        print(f"interrupted: the last checkpoint is in {e.run_dir}\nresume with: {e.command}",
              file=sys.stderr)
        return 130
    except TrainError as e:
        view.close()
        _err(str(e))
        return 1
    view.close()
    if args.report:
        from ..checkpoint import atomic_write
        try:
            with atomic_write(args.report, "w") as f:
                json.dump(result.report(), f, indent=2, allow_nan=True)
                f.write("\n")
        except OSError as e:
            _err(f"{args.report}: cannot write the report ({e.strerror or e})")
            return 1
    if args.plot:
        from .plot import PlotError, plot_run
        try:
            plot_run(result.run_dir, args.plot)
        except PlotError as e:
            _err(str(e))
            return 1
    return 0


def _sanity(spec, args) -> int:
    from .loop import TrainError
    from .sanity import run, table
    try:
        checks = run(spec, data=args.data, seed=args.seed)
    except TrainError as e:
        _err(str(e))
        return 1
    sys.stdout.write(table(checks))
    return 0 if all(c.passed for c in checks) else 1


def _command(args) -> str:
    parts = ["nnspec", "train", args.file]
    for flag in ("data", "epochs", "batch", "lr", "seed", "device", "precision", "folds", "bootstrap", "backend"):
        v = getattr(args, flag)
        if v is not None and (flag, v) not in (("device", "cpu"), ("precision", "fp32"), ("backend", "torch")):
            parts += [f"--{flag}", str(v)]
    for s in args.set or ():
        parts += ["--set", s]
    return " ".join(shlex.quote(p) for p in parts)


class _Plain:
    """One line per epoch (no carriage returns): what a log file or a pipe should get."""

    def event(self, e: dict) -> None:
        kind = e["event"]
        if kind == "start":
            print(f"training on {e['samples']:,} samples ({e['data']}), {e['epochs']} epochs, "
                  f"batch {e['batch']}, seed {e['seed']}, backend {e['backend']}; run {e['run']}", flush=True)
        elif kind == "resume":
            switched = (f", checkpointed by the {e['was']} backend, now {e['backend']}"
                        if e.get("was") and e.get("was") != e.get("backend") else "")
            print(f"resuming {e['run']} at epoch {e['epoch'] + 1}, batch {e['batch']} (step {e['step']})"
                  f"{switched}", flush=True)
        elif kind == "epoch":
            print(_epoch_line(e), flush=True)
        elif kind == "init_from":
            print(_init_table(e), end="", flush=True)
        elif kind == "health":
            print(e["rendered"], end="", flush=True)
        elif kind == "nonfinite":
            print(f"step {e['step']}: the loss is {e['loss']}; stopping and keeping the last good "
                  f"checkpoint", flush=True)
        elif kind == "end":
            acc = e.get("test_accuracy")
            tail = f", test accuracy {acc:.4f}" if acc is not None else ""
            best = f", best epoch {e['best_epoch']}" if e.get("best_epoch") else ""
            who = f"{e['member']}: " if e.get("member") else ""
            print(f"{who}done in {e['seconds']:.1f} s ({e['stopped']}){best}{tail}", flush=True)
        elif kind == "class_weights":
            weights = ", ".join(f"{c}: {w:.4g}" for c, w in enumerate(e["weights"]))
            print(f"class weights ({e['rule']}; the loss is their weighted mean, as PyTorch's weight=): "
                  f"{weights}", flush=True)
        elif kind == "snapshots":
            print(_snapshot_table(e), end="", flush=True)
        elif kind == "members":
            what = "folds" if e["kind"] == "folds" else "bootstrap models"
            print(f"{e['count']} {what}, seed {e['seed']}; run {e['run']}", flush=True)
        elif kind == "member":
            name = "fold" if e["kind"] == "folds" else "bootstrap model"
            state = {"done": "finished earlier, not retrained", "resume": "resuming",
                     "start": "training"}[e["status"]]
            print(f"{name} {e['index']}/{e['count']} (seed {e['seed']}): {state}", flush=True)
        elif kind == "members_end":
            from .members import table
            print(table(e), end="", flush=True)

    def close(self) -> None:
        pass


def _snapshot_table(e: dict) -> str:
    """Each snapshot's accuracy and the snapshot ensemble's, per evaluated split."""
    from .ensemble import table
    if not e["cycles"]:
        return f"snapshots {e['wanted']}: no restart cycle ended during the run, no snapshot taken\n"
    out = [f"snapshot ensemble of cycles {', '.join(map(str, e['cycles']))} "
           f"({len(e['cycles'])} of the {e['wanted']} wanted):"]
    for name, scored in e["splits"].items():
        out.append(f"{name} split ({scored['samples']:,} samples):")
        out.append(table(scored, "snapshot").rstrip("\n"))
    return "\n".join(out) + "\n"


def _init_table(e: dict) -> str:
    """What --init-from did to every tensor: loaded, skipped (in the file only), new (in the
    spec only), frozen (loaded or not, not trained)."""
    rows = [("loaded", e["loaded"]), ("skipped", e["skipped"]), ("new", e["new"]), ("frozen", e["frozen"])]
    lines = [f"weights from {e['path']}:"]
    for what, names in rows:
        shown = ", ".join(names[:8]) + (f", … ({len(names) - 8} more)" if len(names) > 8 else "")
        lines.append(f"  {what:<8}{len(names):>5}  {shown}")
    return "\n".join(lines) + "\n"


def _epoch_line(e: dict) -> str:
    parts = [f"epoch {e['epoch']}/{e['epochs']}", f"loss {e['train_loss']:.4f}"]
    if e.get("member"):
        parts.insert(0, e["member"])
    if e.get("val_loss") is not None:
        parts.append(f"val loss {e['val_loss']:.4f}")
    if e.get("val_accuracy") is not None:
        parts.append(f"val acc {e['val_accuracy']:.4f}")
    parts.append(f"lr {e['lr']:.3g}")
    return "  ".join(parts)


class _Live(_Plain):
    """A rich progress bar with loss and learning rate, and a line per finished epoch."""

    def __init__(self):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
        self.console = Console()
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[stats]}"), TimeRemainingColumn(),
                                 console=self.console, transient=True)
        self.task = None
        self.progress.start()

    def event(self, e: dict) -> None:
        if e["event"] == "step":
            desc = f"epoch {e['epoch'] + 1}"
            stats = f"loss {e['loss']:.4f} lr {e['lr']:.3g}"
            if self.task is None:
                self.task = self.progress.add_task(desc, total=e["batches"], stats=stats)
            self.progress.update(self.task, description=desc, completed=e["batch"], total=e["batches"],
                                 stats=stats)
            return
        if e["event"] == "epoch" and self.task is not None:
            self.progress.update(self.task, completed=0)
        text = _render(e)
        if text:
            self.progress.console.print(text, end="", markup=False, highlight=False)

    def close(self) -> None:
        self.progress.stop()


def _render(e: dict) -> str:
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        _Plain().event(e)
    return buf.getvalue()


class _Quiet(_Plain):
    """Processes other than rank 0 under torchrun: rank 0 alone reports."""

    def event(self, e: dict) -> None:
        pass


def _view():
    import os
    if os.environ.get("RANK", "0") not in ("", "0"):
        return _Quiet()
    return _Live() if sys.stdout.isatty() else _Plain()


def cmd_evaluate(args) -> int:
    from ..cli import _load
    from .evaluate import EvaluateError, evaluate, render

    spec = _load(args.file, args)
    try:
        ev = evaluate(spec, args.weights if len(args.weights) > 1 else args.weights[0], data=args.data,
                      split=args.split, backend=args.backend)
    except EvaluateError as e:
        _err(str(e))
        return 1
    if args.format == "json":
        print(json.dumps(ev, indent=2))
    else:
        sys.stdout.write(render(ev))
    return 0
