"""The `nnspec diagram` sub-command (registered through cli.EXTENSIONS).

    nnspec diagram specs/resnet18.nn -o resnet18.svg          one box per layer
    nnspec diagram specs/resnet152.nn --depth 2 -o r152.svg   bottlenecks folded, as table --depth
    nnspec diagram specs/googlenet.nn -o googlenet.png        PNG (cairosvg or rsvg-convert)

Pure Python up to the SVG; PNG needs a converter: the `cairosvg` package
(`pip install "nnspec[diagram]"`) or `rsvg-convert` on PATH. No torch import.
"""

from __future__ import annotations

import os
import sys

from .cli import MAX_DEPTH, UsageError, positive

FORMATS = ("svg", "png")


def register(sub) -> None:
    d = sub.add_parser("diagram", help="draw the network (SVG or PNG): layers, paths side by side, "
                                       "blocks as frames, lint findings marked")
    d.add_argument("file", help="one .nn spec; - reads standard input")
    d.add_argument("-o", "--output", help="the file to write (default: standard output); its "
                                          ".png/.svg suffix picks the format; written whole or not at all")
    d.add_argument("--format", choices=FORMATS, default=None,
                   help="svg (default) or png (needs cairosvg, pip install \"nnspec[diagram]\", "
                        "or rsvg-convert on PATH)")
    d.add_argument("--depth", type=positive("depth", MAX_DEPTH), default=None,
                   help="fold block instances and groups below this name depth into one box "
                        "(as table --depth)")
    d.add_argument("--no-lint", action="store_true", help="do not run lint or mark its findings")
    d.add_argument("--set", action="append", metavar="NAME=VALUE",
                   help="override a network parameter, e.g. --set classes=10")
    d.set_defaults(func=cmd_diagram)


def output_format(args) -> str:
    if args.format:
        return args.format
    if args.output and os.path.splitext(args.output)[1].lower() == ".png":
        return "png"
    return "svg"


def cmd_diagram(args) -> int:
    from .backends.commands import check_output, write_atomic
    from .cli import _network_args
    from .spec import load
    fmt = output_format(args)
    if args.output:
        check_output(args.output)
    elif fmt == "png" and _isatty(sys.stdout):
        raise UsageError("a PNG is not written to a terminal: give -o FILE.png (or redirect)")
    from . import diagram
    if fmt == "png":
        try:
            diagram.png_converter()   # before the work: say what to install at once
        except diagram.ConverterMissing as e:
            raise UsageError(str(e)) from None
    spec = load(args.file, **_network_args(args.set))
    svg = diagram.render_svg(spec, depth=args.depth, findings=() if args.no_lint else None)
    if fmt == "png":
        try:
            data = diagram.to_png(svg)
        except diagram.ConverterMissing as e:
            raise UsageError(str(e)) from None
        except diagram.ConversionError as e:
            from .cli import CommandError
            raise CommandError(str(e)) from None
    else:
        data = svg.encode("utf-8")
    if args.output:
        write_atomic(args.output, data)
        print(f"wrote {args.output}: {spec.name} as {fmt.upper()}", file=sys.stderr)
    elif fmt == "svg":
        sys.stdout.write(svg)
    else:
        out = getattr(sys.stdout, "buffer", None)
        if out is None:
            raise UsageError("standard output takes no bytes here: give -o FILE.png")
        sys.stdout.flush()
        out.write(data)
        out.flush()
    return 0


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False
