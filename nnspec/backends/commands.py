"""Sub-commands of the backends: `compile`, `export`, `weights`.

    nnspec compile specs/resnet18.nn                        build it with PyTorch, print the modules
    nnspec compile specs/resnet18.nn --emit torch -o r18.py  standalone PyTorch source
    nnspec export specs/resnet18.nn --onnx resnet18.onnx    ONNX, checked with onnx.checker
    nnspec weights specs/resnet18.nn resnet18.pth --map module.=   which tensors load, which do not

Imported by `nnspec.cli` for every command: PyTorch is imported only inside the handlers.
"""

from __future__ import annotations

import sys


def register(sub) -> None:
    def spec_opts(p):
        p.add_argument("file", help="a .nn spec")
        p.add_argument("--set", action="append", metavar="NAME=VALUE",
                       help="override a network parameter, e.g. --set classes=10")

    def map_opts(p):
        p.add_argument("--map", action="append", metavar="OLD=NEW", default=[],
                       help="rename weight names starting with OLD to start with NEW "
                            "(--map module.= strips DataParallel's prefix); repeatable")
        p.add_argument("--drop", action="append", metavar="PREFIX", default=[],
                       help="ignore weights whose names start with PREFIX (e.g. a head to retrain)")

    c = sub.add_parser("compile", help="build the model with PyTorch, or --emit its source")
    spec_opts(c)
    c.add_argument("--emit", choices=("torch",), help="write standalone source instead of building")
    c.add_argument("-o", "--output", help="file for --emit (default: standard output)")
    c.set_defaults(func=cmd_compile)

    e = sub.add_parser("export", help="export the model to ONNX (needs nnspec[onnx])")
    spec_opts(e)
    e.add_argument("--onnx", required=True, metavar="OUT", help="the .onnx file to write")
    e.add_argument("--batch", type=int, default=1, help="batch size of the example input "
                                                        "(the batch axis stays dynamic)")
    e.add_argument("--weights", help="load these weights first (.safetensors, .pt, .pth)")
    e.add_argument("--opset", type=int, default=None, help="ONNX opset (default: torch's)")
    map_opts(e)
    e.set_defaults(func=cmd_export)

    w = sub.add_parser("weights", help="match a weights file against a spec: what loads, what not")
    spec_opts(w)
    w.add_argument("weights", help=".safetensors, .pt or .pth state dict")
    map_opts(w)
    w.add_argument("-o", "--output", help="save the model's weights after loading "
                                          "(.safetensors or .pt)")
    w.set_defaults(func=cmd_weights)


def _mapping(args) -> dict | None:
    out: dict = {}
    for item in args.map:
        if "=" not in item:
            raise SystemExit(f"nnspec: error: --map expects OLD=NEW, got {item!r}")
        old, new = item.split("=", 1)
        out[old] = new
    for prefix in args.drop:
        out[prefix] = None
    return out or None


def _torch_or_message():
    try:
        import torch  # noqa: F401
        return None
    except ImportError:
        print("nnspec: error: this command needs PyTorch: pip install \"nnspec[torch]\"",
              file=sys.stderr)
        return 2


def _spec(args):
    from ..cli import _network_args
    from ..spec import load
    return load(args.file, **_network_args(args.set))


def cmd_compile(args) -> int:
    spec = _spec(args)
    if args.emit == "torch":
        from .torch_emit import emit_torch
        source = emit_torch(spec)
        if args.output:
            with open(args.output, "w", encoding="utf-8") as f:
                f.write(source)
            print(f"wrote {args.output}: {spec.name} as PyTorch source", file=sys.stderr)
        else:
            sys.stdout.write(source)
        return 0
    if (code := _torch_or_message()) is not None:
        return code
    from .torch import compile_torch
    model = compile_torch(spec)
    params = sum(p.numel() for p in model.parameters())
    print(model)
    print(f"{spec.name}: {params:,} parameters, "
          f"{sum(b.numel() for n, b in model.named_buffers() if not n.endswith('num_batches_tracked')):,} "
          f"buffer values")
    return 0


def cmd_export(args) -> int:
    if (code := _torch_or_message()) is not None:
        return code
    from .onnx_export import ExportError, export_onnx
    from .torch import compile_torch
    from .weights import WeightsError, load_weights
    spec = _spec(args)
    model = compile_torch(spec)
    try:
        if args.weights:
            report = load_weights(model, args.weights, map=_mapping(args))
            print(report.summary(), file=sys.stderr)
        export_onnx(model, args.onnx, spec.graph.input.shape, batch=args.batch, opset=args.opset)
    except (WeightsError, ExportError) as e:
        print(f"nnspec: error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.onnx}: {spec.name}, input (batch, {', '.join(map(str, spec.graph.input.shape))}), "
          f"checked with onnx.checker", file=sys.stderr)
    return 0


def cmd_weights(args) -> int:
    """Exit 0 when every model tensor loads, 1 when some do not, or the weights file is
    unreadable or refused, or the -o file cannot be written (one line on stderr)."""
    if (code := _torch_or_message()) is not None:
        return code
    from .torch import compile_torch
    from .weights import WeightsError, load_weights, save_weights
    model = compile_torch(_spec(args))
    try:
        report = load_weights(model, args.weights, map=_mapping(args))
    except WeightsError as e:
        print(f"nnspec: error: {e}", file=sys.stderr)
        return 1
    sys.stdout.write(report.table())
    if args.output:
        try:
            save_weights(model, args.output)
        except WeightsError as e:
            print(f"nnspec: error: {e}", file=sys.stderr)
            return 1
        print(f"wrote {args.output}", file=sys.stderr)
    return 0 if report.ok else 1
