"""The `nnspec serve` and `nnspec html` sub-commands (registered through cli.EXTENSIONS).

    nnspec serve [net.nn] [--port 8000] [--host 127.0.0.1] [--batch N] [--dtype T] [--set K=V]
    nnspec html net.nn -o report.html [--batch N] [--dtype T] [--depth D] [--set K=V]
"""

from __future__ import annotations

import os
import sys

from .analyze import OptionError, Options

MAX_TIMEOUT = 600.0


def _port(v: str) -> int:
    import argparse
    if not (v.isascii() and v.isdigit()) or int(v) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {v[:20]!r}")
    return int(v)


def _seconds(v: str) -> float:
    import argparse
    try:
        x = float(v)
    except ValueError:
        x = -1.0
    if not 0 < x <= MAX_TIMEOUT:
        raise argparse.ArgumentTypeError(f"expected seconds from 0 to {MAX_TIMEOUT:g}, got {v[:20]!r}")
    return x


def register(subparsers) -> None:
    from ..cli import MAX_BATCH, MAX_DEPTH, positive
    from ..analysis import DTYPE_BYTES

    def controls(p):
        p.add_argument("--batch", type=positive("batch", MAX_BATCH), default=None,
                       help="batch size (default: the train section's, else 1)")
        p.add_argument("--dtype", choices=tuple(DTYPE_BYTES), default="float32")
        p.add_argument("--depth", type=positive("depth", MAX_DEPTH), default=None,
                       help="fold layers below this name depth")
        p.add_argument("--set", action="append", metavar="NAME=VALUE",
                       help="a network parameter's value, e.g. --set classes=10")

    s = subparsers.add_parser(
        "serve", help="a local web page: edit a spec and see its table, diagram and lint as you type",
        description="Serve the playground on 127.0.0.1: the spec in an editor, its layer table, "
                    "totals, diagram and lint findings updated as you type. With FILE, Save writes "
                    "it back and edits made on disk show up in the page.")
    s.add_argument("file", nargs="?", metavar="FILE",
                   help="the .nn file to edit (created by the first save if missing)")
    s.add_argument("--port", type=_port, default=8000, help="TCP port (default 8000; 0: any free one)")
    s.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    s.add_argument("--workers", type=positive("workers", 64), default=None,
                   help="analysis processes (default: one per core, at most 8)")
    s.add_argument("--timeout", type=_seconds, default=5.0,
                   help="seconds one analysis may take before it is stopped (default 5)")
    s.add_argument("--log", action="store_true", help="log every request to standard error")
    controls(s)
    s.set_defaults(func=cmd_serve)

    h = subparsers.add_parser(
        "html", help="the playground's view of a spec as one self-contained HTML file",
        description="Write the spec, its layer table, totals, diagram, lint findings and every "
                    "row's explanation into one static HTML file: no server, no network needed.")
    h.add_argument("file", metavar="FILE", help="the .nn spec; - reads standard input")
    h.add_argument("-o", "--output", required=True, metavar="OUT.html", help="the HTML file to write")
    controls(h)
    h.set_defaults(func=cmd_html)


def _options(args) -> Options:
    from ..cli import UsageError
    pairs = []
    for p in args.set or ():
        if "=" not in p:
            raise UsageError(f"--set expects NAME=VALUE, got {p[:40]!r}")
        k, v = p.split("=", 1)
        pairs.append((k.strip(), v.strip()))
    options = Options(args.batch, args.dtype, args.depth, tuple(sorted(pairs)))
    try:
        options.network_args()  # a bad value is a usage error now, not one per request later
    except OptionError as e:
        raise UsageError(f"--set {e}") from None
    return options


def cmd_serve(args) -> int:
    from ..cli import UsageError
    from .server import Playground, run
    options = _options(args)
    if args.file is not None:
        if args.file == "-":
            raise UsageError("serve edits a file: give its path, not - (standard input)")
        if os.path.isdir(args.file):
            raise UsageError(f"'{args.file}' is a folder: give one .nn file")
        if os.path.exists(args.file):
            from ..spec import read_source
            read_source(args.file)  # an unreadable file is NN002 now, not in the page
        else:
            from ..backends.commands import check_output
            check_output(args.file)
    try:
        app = Playground(args.file, host=args.host, port=args.port, workers=args.workers,
                         timeout=args.timeout, options=options, quiet=not args.log)
    except OSError as e:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}") from None
    if not app.loopback:
        print(f"nnspec serve: warning: listening on {args.host}: anyone who can reach this "
              f"machine can read and write the file", file=sys.stderr)
    return run(app, sys.stdout)


def cmd_html(args) -> int:
    from ..backends.commands import check_output, write_atomic
    from ..errors import SpecError
    from ..spec import read_source
    from .analyze import parse_and_expand
    from .html import page
    options = _options(args)
    check_output(args.output)
    text, name = read_source(args.file)
    html, result = page(text, name, options)
    write_atomic(args.output, html.encode("utf-8"))
    os.chmod(args.output, 0o666 & ~umask())  # a page to share: not the temporary file's 0600
    if result["diagnostics"]:  # the page shows them; the terminal too, as every command does
        _, _, errors = parse_and_expand(text, name, options)
        sys.stderr.write(SpecError(errors, {name: text}).render())
        print(f"wrote {args.output}: {name} has errors; the page shows them", file=sys.stderr)
        return 1
    n = len(result["lint"])
    rows = len(result["rows"])
    print(f"wrote {args.output}: {result['network']}, {rows} row{'s' * (rows != 1)}, "
          f"{n} lint finding{'s' * (n != 1)}", file=sys.stderr)
    return 0


def umask() -> int:
    """The process's umask (read by setting it, so once, before any thread writes files)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
