"""The command line: argument parsing, and the only module that prints.

Exit codes: 0 success, 1 problems found in a spec (one that cannot be read included),
2 usage errors (a bad flag value, an output that cannot be written). A closed pipe
(`nnspec table … | head`) ends quietly with 0. Colour only on a terminal (NO_COLOR and
FORCE_COLOR are respected).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .errors import SpecError

# Modules that add sub-commands: each has register(subparsers) and keeps heavy imports lazy.
EXTENSIONS: tuple[str, ...] = (
    "nnspec.lint.commands",
    "nnspec.backends.commands",
    "nnspec.train.commands",
    "nnspec.train.explore_commands",
    "nnspec.diagram_commands",
    "nnspec.web.commands",
    "nnspec.train.search_commands",
)


def _network_args(pairs) -> dict:
    out = {}
    for p in pairs or ():
        if "=" not in p:
            raise UsageError(f"--set expects NAME=VALUE, got {_short(p)}")
        k, v = p.split("=", 1)
        out[k.strip()] = _literal(k.strip(), v.strip())
    return out


def _literal(name: str, v: str):
    """A --set value as the spec would read it: true/false, an integer, a number, else a
    string. Numbers obey the spec's own limits (below 10^18, finite): a UsageError if not."""
    from .parser import MAX_INT_DIGITS
    if v in ("true", "false"):
        return v == "true"
    digits = v.lstrip("+-").replace("_", "")
    if digits.isascii() and digits.isdigit():
        if len(digits.lstrip("0")) > MAX_INT_DIGITS:
            raise UsageError(f"--set {name}: integers must be below 10^{MAX_INT_DIGITS}, "
                             f"got {_short(v)}")
        return int(v)
    if v.startswith("("):  # a tuple, `--set depths=(2, 2, 2, 2)`, read as the spec reads one
        from .expr import literal
        try:
            return literal(v)
        except SpecError:
            pass
    try:
        x = float(v)
    except ValueError:
        return v
    if x != x or x in (float("inf"), float("-inf")):
        raise UsageError(f"--set {name}: expected a finite number, got {_short(v)}")
    return x


def _usage(msg: str) -> int:
    print(f"nnspec: error: {msg}", file=sys.stderr)
    return 2


class UsageError(Exception):
    """A bad command-line value found after parsing: main() prints it, exit 2."""


class CommandError(Exception):
    """The command cannot do its work on this spec (a model too large to build here):
    main() prints it, exit 1."""


def _print_error(e: SpecError) -> None:
    sys.stderr.write(e.render())


def colour(stream) -> bool:
    """Whether to write colour codes to `stream`: never when NO_COLOR is set
    (no-color.org), always when FORCE_COLOR is (and is not 0), else only on a terminal."""
    if os.environ.get("NO_COLOR"):
        return False
    force = os.environ.get("FORCE_COLOR")
    if force and force.lower() not in ("0", "false", "no"):
        return True
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False
    return tty and os.environ.get("TERM") != "dumb"


def expand_paths(paths) -> list[str]:
    """Spec paths with every folder replaced by the .nn files under it (sorted, recursive);
    `-` (standard input) and files pass through as given."""
    out = []
    for p in paths:
        if p != "-" and os.path.isdir(p):
            found = []
            for root, dirs, files in os.walk(p):
                dirs.sort()
                found += [os.path.join(root, f) for f in sorted(files) if f.endswith(".nn")]
            if not found:
                raise UsageError(f"no .nn files in the folder '{p}'")
            out += found
        else:
            out.append(p)
    if out.count("-") > 1:
        raise UsageError("standard input (-) can be read only once")
    return out


def _load(path: str, args):
    from .spec import load
    return load(path, **_network_args(getattr(args, "set", None)))


def cmd_table(args) -> int:
    """One table per spec (files, folders, `-`), each titled with its file when there are
    several; a spec with errors is reported and skipped (exit 1), the others are shown."""
    from .report import all_digits
    from .spec import _gc_paused, display_name
    paths = expand_paths(args.files)
    several = len(paths) > 1
    status, shown, docs = 0, 0, []
    for path in paths:
        try:
            an = _load(path, args).analyze(args.batch, args.dtype)
        except SpecError as e:
            _print_error(e)
            status = 1
            continue
        name = display_name(path) if several else None
        if args.format == "json":
            docs.append(an if name is None else (name, an))
        else:
            with _gc_paused():  # rows of a 200,000-layer table: the collector's passes cost 30%
                _print_table(an, args, name, first=shown == 0)
        shown += 1
    if docs:
        import json
        from .report import to_dict
        with _gc_paused(), all_digits():
            out = to_dict(docs[0]) if not several else [{"file": f, **to_dict(an)} for f, an in docs]
            sys.stdout.write(json.dumps(out, indent=2) + "\n")
    return status


def _print_table(an, args, name: str | None, first: bool) -> None:
    """One spec's table in args.format; `name` (several specs) titles it, or for CSV fills
    a leading `file` column (one header for all)."""
    from . import report
    fmt, depth = args.format, args.depth
    if fmt == "csv":
        text = report.to_csv(an, depth)
        if name is not None:
            head, _, body = text.partition("\n")
            field = _csv_field(name) + ","
            text = ("file," + head + "\n" if first else "") + "".join(
                field + line for line in body.splitlines(keepends=True))
        sys.stdout.write(text)
        return
    if name is not None:
        sys.stdout.write(("" if first else "\n") + (f"## {name}\n\n" if fmt == "markdown"
                                                    else f"== {name}\n"))
    if fmt == "markdown":
        sys.stdout.write(report.to_markdown(an, depth))
    elif fmt == "text":
        sys.stdout.write(report.to_text(an, depth))
    else:
        _print_rich(an, depth)


def _csv_field(value: str) -> str:
    import csv
    import io
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow([value])
    return out.getvalue()


def _print_rich(an, depth) -> None:
    """The rich table, as wide as it needs (a narrow terminal, or a pipe at 80 columns, must
    not cut numbers short: the terminal wraps long lines instead). Past RICH_MAX_ROWS rows
    rich's layout is slow (seconds per thousand rows) and the plain text table is printed."""
    from . import report
    from .report import RICH_MAX_ROWS
    n_rows = len(report.rows(an, depth))
    if n_rows > RICH_MAX_ROWS:
        sys.stdout.write(f"({n_rows:,} rows: the plain text table; --format text/csv/json say "
                         f"the same)\n")
        sys.stdout.write(report.to_text(an, depth))
        return
    from rich.console import Console
    on = colour(sys.stdout)
    console = Console(force_terminal=on, no_color=not on, color_system="auto" if on else None,
                      highlight=on)
    need = report.rich_width(an, depth)
    if console.width < need:
        console = Console(width=need, force_terminal=on, no_color=not on,
                          color_system="auto" if on else None, highlight=on)
    console.on_broken_pipe = _raise_broken_pipe  # rich's own handler exits with 1
    console.print(report.to_rich(an, depth))
    from rich.text import Text
    for line in report.totals_lines(an):
        console.print(Text(line))


def _raise_broken_pipe() -> None:
    raise BrokenPipeError


def cmd_explain(args) -> int:
    from .explain import explain
    spec = _load(args.file, args)
    sys.stdout.write(explain(spec.analyze(args.batch, args.dtype), args.layer))
    return 0


def cmd_check(args) -> int:
    from .report import count, shape_cell
    from .spec import display_name, load
    status = 0
    for path in expand_paths(args.files):
        name = display_name(path)
        try:
            spec = load(path, **_network_args(args.set))
        except SpecError as e:
            _print_error(e)
            n = len(e.diagnostics)
            print(f"{name}: {n} error{'s' if n != 1 else ''}", file=sys.stderr)
            status = 1
            continue
        t = spec.analyze().totals
        out = spec.graph.nodes[spec.graph.output].shape
        print(f"{name}: ok — {spec.name}, {len(spec.graph.nodes) - 1} layers, "
              f"{count(t.params)} parameters, output {shape_cell(out)}")
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
        sp.add_argument("--batch", type=positive("batch", MAX_BATCH), default=None,
                        help=f"batch size, 1 to {MAX_BATCH:,} (default: the train section's, else 1)")
        sp.add_argument("--dtype", choices=("float32", "float16", "bfloat16", "float64"),
                        default="float32")
        sp.add_argument("--set", action="append", metavar="NAME=VALUE",
                        help="override a network parameter, e.g. --set classes=10")

    t = sub.add_parser("table", help="the layer table: shapes, parameters, MACs, memory, receptive fields")
    t.add_argument("files", nargs="+", metavar="FILE",
                   help=".nn specs or folders of them (one table each); - reads standard input")
    analysis_opts(t)
    t.add_argument("--depth", type=positive("depth", MAX_DEPTH), default=None,
                   help="fold layers below this name depth")
    t.add_argument("--format", choices=("rich", "markdown", "json", "csv", "text"), default="rich")
    t.set_defaults(func=cmd_table)

    e = sub.add_parser("explain", help="how every number of one layer's row is derived")
    e.add_argument("file", help="one .nn spec; - reads standard input")
    e.add_argument("layer")
    analysis_opts(e)
    e.set_defaults(func=cmd_explain)

    c = sub.add_parser("check", help="parse and shape-check specs (exit 0 clean, 1 errors)")
    c.add_argument("files", nargs="+", metavar="FILE",
                   help=".nn specs or folders of them; - reads standard input")
    c.add_argument("--set", action="append", metavar="NAME=VALUE")
    c.set_defaults(func=cmd_check)

    o = sub.add_parser("ops", help="list the built-in ops and their arguments")
    o.set_defaults(func=cmd_ops)

    for mod in EXTENSIONS if extensions else ():
        importlib.import_module(mod).register(sub)
    _colour_parsers(p, colour(sys.stdout) and colour(sys.stderr))
    return p


def _colour_parsers(parser: argparse.ArgumentParser, on: bool) -> None:
    """Python 3.14's argparse colours help and usage errors by its own test of the terminal;
    decide with ours instead (colour only when both standard output and standard error are
    terminals), on every sub-parser. Older Pythons ignore the attribute."""
    parser.color = on
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _colour_parsers(sub, on)


MAX_BATCH = 2 ** 31 - 1  # PyTorch indexes a batch with 32-bit sizes in places; nobody needs more
MAX_DEPTH = 1000


def positive(what: str, most: int):
    """An argparse type: an integer from 1 to `most` (a usage error, exit 2, otherwise)."""
    def parse(v: str) -> int:
        text = v.strip().replace("_", "")
        sign = text[:1] if text[:1] in "+-" else ""
        body = text[len(sign):]
        if not (body.isascii() and body.isdigit()):
            raise argparse.ArgumentTypeError(f"expected an integer from 1 to {most:,}, got {_short(v)}")
        digits = body.lstrip("0")  # compared by length first: 5,000 digits are refused, not parsed
        if sign == "-" or not digits or len(digits) > len(str(most)) or int(digits) > most:
            raise argparse.ArgumentTypeError(f"{what} must be from 1 to {most:,}, got {_short(v)}")
        return int(digits)

    parse.__name__ = what  # argparse names the type in its messages
    return parse


def _short(v: str, width: int = 40) -> str:
    return repr(v) if len(v) <= width else repr(v[:width // 2]) + f"…({len(v):,} characters)"


def _command(argv) -> str | None:
    """The sub-command named on the command line (the first word that is not an option)."""
    for word in argv:
        if not word.startswith("-"):
            return word
        if word in ("-h", "--help", "--version"):
            return None
    return None


def main(argv=None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # the reader went away, possibly while an error was printed
        _quiet_stdout()
        return 0
    except KeyboardInterrupt:
        return 130


def _main(argv) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    p = build_parser(extensions=_command(argv) not in CORE_COMMANDS)
    args = p.parse_args(argv)
    if not getattr(args, "func", None):
        p.print_help()
        return 2
    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except SpecError as e:
        _print_error(e)
        return 1
    except UsageError as e:
        return _usage(str(e))
    except CommandError as e:
        print(f"nnspec: error: {e}", file=sys.stderr)
        return 1


def _quiet_stdout() -> None:
    """After a reader closed the pipe (`nnspec table … | head -1`): point standard output
    and error at /dev/null, so the interpreter's last flush does not fail again, and exit 0
    quietly."""
    for stream in (sys.stdout, sys.stderr):
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):  # no real file behind it (tests)
            pass
