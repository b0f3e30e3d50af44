"""The `nnspec lint` and `nnspec rules` sub-commands (registered through cli.EXTENSIONS).

    nnspec lint specs/*.nn                       exit 0 clean, 1 findings at or above the
    nnspec lint net.nn --select NN2 --ignore NN203 --format json|sarif|text
    nnspec lint --explain NN201                  fail level (default warning), 2 usage/parse
    nnspec rules [--format text|json|markdown]

Imports stay light (no torch, no rich): linting every shipped spec takes a fraction of a
second.
"""

from __future__ import annotations

import sys

_EPILOG = ("Selectors are code prefixes (NN2, NN20, NN201), rule names or ALL; the most specific "
           "of --select/--ignore wins. Silence one finding with `# nnspec: allow CODE -- reason` "
           "on its line or the line above. `nnspec rules` lists every rule.")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "lint", help="find architecture and training-configuration bugs (exit 0 clean, "
                     "1 findings, 2 usage/parse errors)",
        description="Lint .nn specs: graph, spatial arithmetic, activations and losses, "
                    "initialisation, regularisation, design, training configuration, memory.",
        epilog=_EPILOG)
    p.add_argument("files", nargs="*", metavar="FILE",
                   help=".nn files or folders (searched for *.nn); - reads standard input")
    p.add_argument("--select", action="append", metavar="CODES",
                   help="only these rules (comma-separated; repeatable)")
    p.add_argument("--ignore", action="append", metavar="CODES",
                   help="skip these rules (comma-separated; repeatable)")
    p.add_argument("--format", choices=("text", "json", "sarif"), default="text")
    p.add_argument("--fail-level", choices=("error", "warning", "info"), default="warning",
                   help="exit 1 when a finding is at least this severe (default: warning)")
    p.add_argument("--memory-budget", metavar="SIZE",
                   help="device memory for NN801/NN802, e.g. 8GB or 512MB (powers of 1024), "
                        "from 1B to 1024TB")
    p.add_argument("--processes", type=int, metavar="N",
                   help="data-parallel processes the run uses (torchrun --nproc_per_node): "
                        "each sees batch/N samples (NN514)")
    p.add_argument("--explain", metavar="CODE", help="explain one rule (code or name) and exit")
    p.add_argument("--set", action="append", metavar="NAME=VALUE",
                   help="override a network parameter, e.g. --set classes=10")
    p.set_defaults(func=cmd_lint)

    r = subparsers.add_parser("rules", help="the lint rule catalogue")
    r.add_argument("--format", choices=("text", "json", "markdown"), default="text")
    r.set_defaults(func=cmd_rules)


def _usage(msg: str) -> int:
    print(f"nnspec lint: error: {msg}", file=sys.stderr)
    return 2


def _split(values) -> list[str]:
    return [x.strip() for v in values or () for x in v.split(",") if x.strip()]


MAX_MEMORY_BUDGET = 2 ** 50  # 1024 TB: a budget is a device's memory, not an arbitrary number


def memory_budget(text: str) -> int:
    """--memory-budget in bytes, or ValueError naming the accepted form and range."""
    from .rules_memory import parse_size
    if len(text) > 40:  # hundreds of digits: refused before any arithmetic
        raise ValueError(f"--memory-budget must be a size from 1B to 1024TB, got "
                         f"{text[:20]!r}…({len(text):,} characters)")
    try:
        size = parse_size(text)
    except OverflowError:
        size = MAX_MEMORY_BUDGET + 1
    if not 1 <= size <= MAX_MEMORY_BUDGET:
        raise ValueError(f"--memory-budget must be a size from 1B to 1024TB, got {text!r}")
    return size


def _lint_path(path, **kw):
    """Lint one path (`-`: standard input); an unreadable one is a fatal result, as
    engine.lint_file makes it, without ever blocking on a named pipe."""
    from ..errors import SpecError
    from ..spec import display_name, read_source
    from .engine import LintResult, _named, lint_source
    try:
        text, name = read_source(path)
    except SpecError as e:
        return LintResult(display_name(path), None, [_named(d) for d in e.diagnostics], 0, True)
    return lint_source(text, name, **kw)


def cmd_lint(args) -> int:
    from ..cli import _network_args, expand_paths
    from . import formats
    from .catalogue import RANK, find_rule, valid_selector
    from .engine import Selection

    if args.explain:
        r = find_rule(args.explain)
        if r is None:
            from ..errors import did_you_mean
            from .catalogue import RULES
            hint = did_you_mean(args.explain, list(RULES) + [x.name for x in RULES.values()])
            return _usage(f"no rule {args.explain!r}" + (f"; {hint}" if hint else ""))
        sys.stdout.write(formats.rule_text(r))
        return 0
    if not args.files:
        return _usage("give one or more .nn files (or --explain CODE)")
    select, ignore = _split(args.select), _split(args.ignore)
    for s in select + ignore:
        if not valid_selector(s):
            return _usage(f"{s!r} selects no rule (`nnspec rules` lists them)")
    options = {}
    if args.memory_budget:
        try:
            options["memory_budget"] = memory_budget(args.memory_budget)
        except ValueError as e:
            return _usage(str(e))
    if args.processes is not None:
        if not 1 <= args.processes <= 1_000_000:
            return _usage(f"--processes must be from 1 to 1,000,000, got {args.processes}")
        options["processes"] = args.processes
    network_args = _network_args(args.set)
    sel = Selection(select, ignore)
    files = expand_paths(args.files)
    results = [_lint_path(f, options=options, selection=sel, network_args=network_args)
               for f in files]
    if args.format == "json":
        sys.stdout.write(formats.to_json(results) + "\n")
    elif args.format == "sarif":
        from .. import __version__
        sys.stdout.write(formats.to_sarif(results, __version__) + "\n")
    else:
        sys.stdout.write(formats.to_text(results))
    if any(r.fatal for r in results):
        return 2
    limit = RANK[args.fail_level]
    return 1 if any(r.worst() >= limit for r in results) else 0


def cmd_rules(args) -> int:
    from . import formats
    if args.format == "json":
        sys.stdout.write(formats.rules_json() + "\n")
    elif args.format == "markdown":
        sys.stdout.write(formats.rules_markdown())
    else:
        sys.stdout.write(formats.rules_text())
    return 0

