"""Sub-command `search`: hyperparameter search (nnspec/train/search.py, on Optuna).

    nnspec search net.nn --trials 100 --epochs 5 --set "lr=loguniform(1e-6, 1e-2)" \\
        --set "weight_decay=loguniform(1e-5, 10)" --run runs/search   # Ctrl-C, then the same
                                                                       # command continues it
    nnspec search net.nn --set optimizer=sgd,momentum,nesterov,adagrad,rmsprop,adam --plot s.png
    nnspec search net.nn ... --jobs 4 --refine 5 --sampler tpe

Exit codes: 0 done, 1 the search could not start (one line says why), 2 usage, 130
interrupted (the same command continues).
"""

from __future__ import annotations

import json
import shlex
import sys

from .commands import _nonneg, _positive


def register(sub) -> None:
    p = sub.add_parser("search", help="hyperparameter search: random (or TPE) trials of short training runs")
    p.add_argument("file", help="a .nn spec with a train section")
    p.add_argument("--set", action="append", metavar="NAME=VALUE",
                   help="a hyperparameter and its range: loguniform(a, b), uniform(a, b), int(a, b), "
                        "a comma list (optimizer=sgd,nesterov,adam), or one value")
    p.add_argument("--trials", type=_positive, default=20, help="trials of the (coarse) stage (default 20)")
    p.add_argument("--epochs", type=_positive, help="epochs per trial (default: the train section's)")
    p.add_argument("--run", "--run-dir", dest="run", metavar="DIR",
                   help="the search directory: study.db and trials/N (default: runs/<spec>-search)")
    p.add_argument("--storage", metavar="URL", help="a database URL shared by several machines "
                                                    "(default: sqlite in DIR/study.db)")
    p.add_argument("--study", metavar="NAME", help="the study's name (default: the spec's file name)")
    p.add_argument("--jobs", type=_positive, default=1, metavar="N", help="worker processes (default 1)")
    p.add_argument("--sampler", choices=("random", "tpe"), default="random",
                   help="random search (default) or Optuna's TPE")
    p.add_argument("--seed", type=_nonneg, default=0, help="the sampler's seed (default 0); trials train "
                                                           "with the spec's seed")
    p.add_argument("--refine", type=_positive, metavar="K",
                   help="then a fine stage whose ranges are those of the best K trials")
    p.add_argument("--refine-trials", type=_positive, metavar="N", help="trials of the fine stage "
                                                                         "(default: --trials)")
    p.add_argument("--refine-epochs", type=_positive, metavar="N", help="epochs per fine trial "
                                                                         "(default: --epochs)")
    p.add_argument("--data", help="as for train (default: the train section's)")
    p.add_argument("--backend", choices=("torch", "numpy"), default="torch")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    p.add_argument("--precision", choices=("fp32", "fp64", "bf16", "fp16"), default="fp32")
    p.add_argument("--health", action="store_true", help="run the health checks in every trial (slower)")
    p.add_argument("--top", type=_positive, default=10, help="rows of the table of best trials (default 10)")
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="json: the summary on standard output, trial lines on standard error")
    p.add_argument("--plot", metavar="FILE.png", help="validation accuracy against each hyperparameter "
                                                      "and the trials' loss curves (needs matplotlib)")
    p.set_defaults(func=cmd_search)


def _definition(args):
    from ..cli import UsageError
    from ..spec import load
    from . import space
    from .search import Search
    if args.file == "-":
        raise UsageError("nnspec search reads the spec from a file (each trial loads it again), not standard input")
    network = load(args.file).graph.args
    try:
        dims = space.parse(args.set, network)
    except space.SpaceError as e:
        raise UsageError(e.message + (f"\n  help: {e.help}" if e.help else "")) from None
    if not any(d.searched for d in dims):
        raise UsageError('nothing to search: give a range, e.g. --set "lr=loguniform(1e-5, 1e-1)"')
    if args.refine_trials and not args.refine or args.refine_epochs and not args.refine:
        raise UsageError("--refine-trials and --refine-epochs go with --refine K")
    from pathlib import Path
    run = args.run or str(Path("runs") / f"{Path(args.file).stem}-search")
    return Search(spec=args.file, dims=dims, trials=args.trials, run=run, epochs=args.epochs,
                  storage=args.storage, study=args.study, sampler=args.sampler, seed=args.seed,
                  refine=args.refine, refine_trials=args.refine_trials, refine_epochs=args.refine_epochs,
                  data=args.data, backend=args.backend, device=args.device, precision=args.precision,
                  health=args.health)


def cmd_search(args) -> int:
    from ..cli import CommandError
    from . import search as S

    s = _definition(args)
    if args.plot:
        from ..backends.commands import check_output
        check_output(args.plot)  # before the trials, not after
    out = sys.stderr if args.format == "json" else sys.stdout
    try:
        S.prepare(s)
        command = _command(args, s)
        print(f"searching {', '.join(f'{d.name} {d.text()}' for d in s.dims if d.searched)}: "
              f"{s.trials} trials, {args.jobs} process{'es' if args.jobs > 1 else ''}, "
              f"{s.sampler} sampler; study {s.url()}", file=out, flush=True)
        for stage in s.stages():
            if stage == 2:
                fine = S.refine(s)
                print(f"fine stage from trials {', '.join(map(str, fine['from']))}: " + ", ".join(
                    f"{d['name']} {S.Dim.from_json(d).text()}" for d in fine["space"]), file=out, flush=True)
            while True:
                code = _run_stage(s, stage, args.jobs, out)
                if code:
                    print(f"interrupted: the study is in {s.url()}\ncontinue with: {command}", file=sys.stderr)
                    return code
                if not S.wait_for(s, stage):
                    break
        summary = S.summary(s, top=args.top)
    except S.SearchError as e:
        raise CommandError(str(e)) from None
    if args.format == "json":
        print(json.dumps(summary, indent=2, allow_nan=True))
    else:
        sys.stdout.write(render(summary, s))
    if args.plot:
        from .search_plot import PlotError, plot_search
        try:
            plot_search(summary, s, args.plot)
        except PlotError as e:
            raise CommandError(str(e)) from None
    return 0


def _command(args, s) -> str:
    """The command that continues this search (the same flags)."""
    parts = ["nnspec", "search", args.file, "--trials", str(args.trials)]
    for flag in ("epochs", "storage", "study", "jobs", "sampler", "seed", "refine", "refine_trials",
                 "refine_epochs", "data", "backend", "device", "precision"):
        v = getattr(args, flag)
        if v is not None and v != _DEFAULTS.get(flag):
            parts += [f"--{flag.replace('_', '-')}", str(v)]
    for d in args.set or ():
        parts += ["--set", d]
    parts += ["--run", s.run]
    return " ".join(shlex.quote(p) for p in parts)


_DEFAULTS = {"jobs": 1, "sampler": "random", "seed": 0, "backend": "torch", "device": "cpu", "precision": "fp32"}


# ---- workers

def _printer(dims, out):
    from .search import trial_line

    def on_trial(r) -> None:
        print(trial_line(r, dims), file=out, flush=True)
    return on_trial


def _run_stage(s, stage: int, jobs: int, out) -> int:
    """Run the stage's trials here (--jobs 1) or in `jobs` processes; 130 if interrupted."""
    from . import search as S
    dims = S.space_of(s, stage)
    if jobs == 1:
        try:
            S.work(s, stage, _printer(dims, out))
        except S.Stopped:
            return 130
        return 0
    import multiprocessing as mp
    import signal
    ctx = mp.get_context("spawn")
    procs, lifelines = [], []
    for _ in range(jobs):
        r, w = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_worker, args=(s, stage, out is sys.stderr, r, jobs))
        p.start()
        r.close()
        procs.append(p)
        lifelines.append(w)

    def forward(signum, frame):  # `kill PID`: the workers stop too, checkpointing their trials
        for w in lifelines:
            w.close()
    previous = signal.signal(signal.SIGTERM, forward)
    try:
        for p in procs:
            while True:
                try:
                    p.join()
                    break
                except KeyboardInterrupt:  # Ctrl-C reached the workers too: wait for their checkpoints
                    continue
    finally:
        signal.signal(signal.SIGTERM, previous)
        for w in lifelines:
            w.close()
    codes = [p.exitcode for p in procs]
    if any(c == 130 or (c is not None and c < 0) for c in codes):
        return 130
    if any(codes):
        from ..cli import CommandError
        raise CommandError(f"a search process failed (exit {next(c for c in codes if c)}); "
                           f"run the same command to continue")
    return 0


def _worker(s, stage: int, to_stderr: bool, lifeline, jobs: int) -> None:
    """One process of --jobs: runs trials until the stage has its target. When the process
    that started it dies (its end of `lifeline` closes), it stops as after a SIGTERM: the
    running trial writes its checkpoint and is queued again."""
    import os
    import signal
    import threading

    # the processes share the cores: N processes of all-core thread pools run slower than one
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // jobs)))

    from . import search as S

    stop = threading.Event()

    def watch():
        try:
            lifeline.recv()
        except (EOFError, OSError):
            pass
        stop.set()  # no new trial; the running one checkpoints (the trainer's SIGTERM handler)
        os.kill(os.getpid(), signal.SIGTERM)

    def between_trials(signum, frame):
        stop.set()
        raise KeyboardInterrupt
    threading.Thread(target=watch, daemon=True).start()
    signal.signal(signal.SIGTERM, between_trials)
    signal.signal(signal.SIGINT, between_trials)
    out = sys.stderr if to_stderr else sys.stdout
    try:
        S.work(s, stage, _printer(S.space_of(s, stage), out), stop)
    except S.Stopped:
        sys.exit(130)
    except S.SearchError as e:
        print(f"nnspec: error: {e}", file=sys.stderr)
        sys.exit(1)


# ---- the summary

def render(summary: dict, s) -> str:
    """The table of the best trials and the spec lines to paste, as text (rich, no colour)."""
    import io

    from rich.console import Console
    from rich.table import Table

    from . import space as spacemod
    dims = {d.name: d for d in s.dims}
    trials = summary["trials"]
    failed = [t for t in trials if t["state"] == "failed"]
    buf = io.StringIO()
    console = Console(file=buf, width=200, color_system=None, highlight=False)
    reasons: dict[str, int] = {}
    for t in failed:
        key = t["reason"].split(" at step")[0].split(":")[0]
        reasons[key] = reasons.get(key, 0) + 1
    why = f" ({', '.join(f'{k} ×{n}' for k, n in reasons.items())})" if reasons else ""
    console.print(f"{len(trials)} trials: {summary['complete']} complete, {len(failed)} failed{why}")
    if summary["best"]:
        stages = {t["stage"] for t in trials}
        table = Table(box=None, pad_edge=False, header_style="bold")
        for col in ["rank", "trial"] + (["stage"] if len(stages) > 1 else []) + ["val acc"]:
            table.add_column(col, justify="right")
        names = [d.name for d in s.dims if d.searched]
        for n in names:
            table.add_column(n, justify="right")
        table.add_column("epochs", justify="right")
        table.add_column("seconds", justify="right")
        for k, t in enumerate(summary["best"], 1):
            row = [str(k), str(t["number"])] + (["coarse" if t["stage"] == 1 else "fine"] if len(stages) > 1 else [])
            row.append(f"{t['value']:.3f}")
            row += [spacemod.value_text(dims[n], t["params"][n]) if n in t["params"] else "-" for n in names]
            row += [str(t["epochs"] or "-"), f"{t['seconds']:.1f}" if t["seconds"] is not None else "-"]
            table.add_row(*row)
        console.print(table)
        best = summary["best"][0]
        console.print(f"best: trial {best['number']}{' (fine stage)' if best['stage'] == 2 else ''}, "
                      f"val acc {best['value']:.3f}; in the spec:")
        for line in summary["spec_lines"]:
            console.print(f"  {line}")
    return buf.getvalue()
