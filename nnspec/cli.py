"""The command line: argument parsing, and the only module that prints.

Exit codes: 0 success, 1 problems found in a spec, 2 usage errors.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import SpecError

# Modules that add sub-commands: each has register(subparsers) and keeps heavy imports lazy.
EXTENSIONS: tuple[str, ...] = (
    "nnspec.lint.commands",
    "nnspec.backends.commands",
    "nnspec.train.commands",
)


def _network_args(pairs) -> dict:
    out = {}
    for p in pairs or ():
        if "=" not in p:
            raise SystemExit(_usage(f"--set expects NAME=VALUE, got {p!r}"))
        k, v = p.split("=", 1)
        out[k.strip()] = _literal(v.strip())
    return out


def _literal(v: str):
    if v in ("true", "false"):
        return v == "true"
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    if v.startswith("("):  # a tuple, `--set depths=(2, 2, 2, 2)`, read as the spec reads one
        from .expr import literal
        try:
            return literal(v)
        except SpecError:
            pass
    return v


def _usage(msg: str) -> int:
    print(f"nnspec: error: {msg}", file=sys.stderr)
    return 2


def _print_error(e: SpecError) -> None:
    sys.stderr.write(e.render())


def _load(path: str, args):
    from .spec import load
    return load(path, **_network_args(getattr(args, "set", None)))


def cmd_table(args) -> int:
    from . import report
    spec = _load(args.file, args)
    an = spec.analyze(args.batch, args.dtype)
    fmt = args.format
    if fmt == "json":
        sys.stdout.write(report.to_json(an) + "\n")
    elif fmt == "markdown":
        sys.stdout.write(report.to_markdown(an, args.depth))
    elif fmt == "csv":
        sys.stdout.write(report.to_csv(an, args.depth))
    elif fmt == "text":
        sys.stdout.write(report.to_text(an, args.depth))
    else:
        from rich.console import Console
        table = report.to_rich(an, args.depth)
        console = Console()
        # As wide as the table needs: a narrow terminal (or a pipe, 80 columns to rich) must
        # not cut numbers short; the terminal wraps the long lines instead.
        need = max(map(len, report.to_text(an, args.depth).splitlines()[1:])) + 2 * len(report.COLUMNS)
        if console.width < need:
            console = Console(width=need)
        console.print(table)
        for line in report.totals_lines(an):
            console.print(line, highlight=False)
    return 0


def cmd_explain(args) -> int:
    from .explain import explain
    spec = _load(args.file, args)
    sys.stdout.write(explain(spec.analyze(args.batch, args.dtype), args.layer))
    return 0


def cmd_check(args) -> int:
    from .spec import load
    status = 0
    for path in args.files:
        try:
            spec = load(path, **_network_args(args.set))
        except SpecError as e:
            _print_error(e)
            n = len(e.diagnostics)
            print(f"{path}: {n} error{'s' if n != 1 else ''}", file=sys.stderr)
            status = 1
            continue
        t = spec.analyze().totals
        print(f"{path}: ok — {spec.name}, {len(spec.graph.nodes) - 1} layers, "
              f"{t.params:,} parameters, output {'x'.join(map(str, spec.graph.nodes[spec.graph.output].shape))}")
    return status


def cmd_ops(args) -> int:
    from .ops import OPS, USER_OPS, _lit, REQUIRED
    for name in USER_OPS:
        op = OPS[name]
        sig = ", ".join(a.name if a.default is REQUIRED else f"{a.name}={_lit(a.default)}" for a in op.args)
        print(f"{name}({sig})" if sig else name)
        print(f"    {op.doc}")
    return 0


CORE_COMMANDS = ("table", "explain", "check", "ops")


def build_parser(extensions: bool = True) -> argparse.ArgumentParser:
    """The argument parser; `extensions=False` leaves out the sub-commands of EXTENSIONS
    (main() does so for the core commands: importing the linter costs start-up time)."""
    p = argparse.ArgumentParser(prog="nnspec", description="Declarative network specs: "
                                "tables, explanations, checks, lint and compilation.")
    p.add_argument("--version", action="version", version=f"nnspec {__import__('nnspec').__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def analysis_opts(sp):
        sp.add_argument("--batch", type=_positive, default=None,
                        help="batch size (default: the train section's, else 1)")
        sp.add_argument("--dtype", choices=("float32", "float16", "bfloat16", "float64"),
                        default="float32")
        sp.add_argument("--set", action="append", metavar="NAME=VALUE",
                        help="override a network parameter, e.g. --set classes=10")

    t = sub.add_parser("table", help="the layer table: shapes, parameters, MACs, memory, receptive fields")
    t.add_argument("file")
    analysis_opts(t)
    t.add_argument("--depth", type=_positive, default=None, help="fold layers below this name depth")
    t.add_argument("--format", choices=("rich", "markdown", "json", "csv", "text"), default="rich")
    t.set_defaults(func=cmd_table)

    e = sub.add_parser("explain", help="how every number of one layer's row is derived")
    e.add_argument("file")
    e.add_argument("layer")
    analysis_opts(e)
    e.set_defaults(func=cmd_explain)

    c = sub.add_parser("check", help="parse and shape-check specs (exit 0 clean, 1 errors)")
    c.add_argument("files", nargs="+")
    c.add_argument("--set", action="append", metavar="NAME=VALUE")
    c.set_defaults(func=cmd_check)

    o = sub.add_parser("ops", help="list the built-in ops and their arguments")
    o.set_defaults(func=cmd_ops)

    for mod in EXTENSIONS if extensions else ():
        importlib.import_module(mod).register(sub)
    return p


def _positive(v: str) -> int:
    try:
        x = int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v!r}") from None
    if x < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v!r}")
    return x


def _command(argv) -> str | None:
    """The sub-command named on the command line (the first word that is not an option)."""
    for word in argv:
        if not word.startswith("-"):
            return word
        if word in ("-h", "--help", "--version"):
            return None
    return None


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    p = build_parser(extensions=_command(argv) not in CORE_COMMANDS)
    args = p.parse_args(argv)
    if not getattr(args, "func", None):
        p.print_help()
        return 2
    try:
        return args.func(args)
    except SpecError as e:
        _print_error(e)
        return 1
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130
