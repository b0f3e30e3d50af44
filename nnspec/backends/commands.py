"""Sub-commands of the backends: `compile`, `export`, `weights`.

    nnspec compile specs/resnet18.nn                        build it with PyTorch, print the modules
    nnspec compile specs/resnet18.nn --emit torch -o r18.py  standalone PyTorch source
    nnspec export specs/resnet18.nn --onnx resnet18.onnx    ONNX, checked with onnx.checker
    nnspec weights specs/resnet18.nn resnet18.pth --map module.=   which tensors load, which do not

Imported by `nnspec.cli` for every command: PyTorch is imported only inside the handlers.
"""

from __future__ import annotations

import os
import sys

from ..cli import CommandError, UsageError, positive
from .onnx_export import MAX_BATCH as MAX_EXPORT_BATCH


def register(sub) -> None:
    def spec_opts(p):
        p.add_argument("file", help="one .nn spec; - reads standard input")
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
    c.add_argument("-o", "--output", help="file for --emit (default: standard output); "
                                          "written whole or not at all")
    c.set_defaults(func=cmd_compile)

    e = sub.add_parser("export", help="export the model to ONNX (needs nnspec[onnx])")
    spec_opts(e)
    e.add_argument("--onnx", required=True, metavar="OUT", help="the .onnx file to write")
    e.add_argument("--batch", type=positive("batch", MAX_EXPORT_BATCH), default=1,
                   help=f"batch size of the example input, 1 to {MAX_EXPORT_BATCH:,} "
                        f"(the batch axis stays dynamic)")
    e.add_argument("--weights", help="load these weights first (.safetensors, .pt, .pth)")
    e.add_argument("--opset", default=None, metavar="N",
                   help="ONNX opset, within the range torch's exporter supports (default: torch's)")
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
    if args.output and args.emit is None:
        raise UsageError("-o/--output goes with --emit torch (without it the model is built "
                         "and summarised)")
    if args.output:
        check_output(args.output)
    spec = _spec(args)
    if args.emit == "torch":
        from .torch_emit import emit_torch
        source = emit_torch(spec)
        if args.output:
            write_atomic(args.output, source.encode("utf-8"))
            print(f"wrote {args.output}: {spec.name} as PyTorch source", file=sys.stderr)
        else:
            sys.stdout.write(source)
        return 0
    if (code := _torch_or_message()) is not None:
        return code
    from .torch import compile_torch
    _fits_in_memory(spec, "building")
    model = _allocating(compile_torch, spec)
    params = sum(p.numel() for p in model.parameters())
    print(model)
    print(f"{spec.name}: {params:,} parameters, "
          f"{sum(b.numel() for n, b in model.named_buffers() if not n.endswith('num_batches_tracked')):,} "
          f"buffer values")
    return 0


def cmd_export(args) -> int:
    if (code := _torch_or_message()) is not None:
        return code
    from .onnx_export import ExportError, export_onnx, opset_range
    if args.opset is not None:
        low, high = opset_range()
        text = args.opset.strip()
        if not (text.isascii() and text.isdigit() and len(text) <= 4 and low <= int(text) <= high):
            raise UsageError(f"--opset must be an integer from {low} to {high} (what this "
                             f"torch's ONNX exporter supports), got {args.opset[:40]!r}")
        args.opset = int(text)
    check_output(args.onnx)
    from .torch import compile_torch
    from .weights import WeightsError, load_weights
    spec = _spec(args)
    _fits_in_memory(spec, "exporting", batch=args.batch)
    model = _allocating(compile_torch, spec)
    try:
        if args.weights:
            report = load_weights(model, args.weights, map=_mapping(args))
            print(report.summary(), file=sys.stderr)
        _allocating(export_onnx, model, args.onnx, spec.graph.input.shape, batch=args.batch,
                    opset=args.opset)
    except (WeightsError, ExportError) as e:
        print(f"nnspec: error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.onnx}: {spec.name}, input (batch, {', '.join(map(str, spec.graph.input.shape))}), "
          f"checked with onnx.checker", file=sys.stderr)
    return 0


# ---- outputs and memory: checked before the work, reported in one line ----------------------

def check_output(path: str) -> None:
    """A UsageError (exit 2) naming `path` when it cannot be written: a folder, in a folder
    that does not exist, or not writable. Checked before any slow work."""
    if os.path.isdir(path):
        raise UsageError(f"cannot write '{path}': Is a directory; give a file name")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        what = "is not a folder" if os.path.exists(folder) else "does not exist"
        raise UsageError(f"cannot write '{path}': the folder '{os.path.dirname(path) or folder}' "
                         f"{what}")
    if not os.access(folder, os.W_OK) or os.path.exists(path) and not os.access(path, os.W_OK):
        raise UsageError(f"cannot write '{path}': Permission denied")


def write_atomic(path: str, data: bytes) -> None:
    """Write `data` to `path` whole or not at all: a temporary file in the same folder,
    flushed and fsynced, then renamed over `path`. The file keeps the permissions it had, or
    gets those of a new file (0666 less the umask; mkstemp's own are 0600). An OSError
    becomes a UsageError. A link is followed (the file it names is replaced, not the link); a
    device or pipe (`-o /dev/null`, `-o >(gzip > x)`) is written straight: renaming a file over
    it would replace the device itself."""
    import stat
    import tempfile
    shown, path = path, os.path.realpath(path)
    folder = os.path.dirname(path)
    tmp = None
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            try:
                with open(path, "wb") as f:
                    f.write(data)
            except OSError as e:
                raise UsageError(f"cannot write '{shown}': {e.strerror or e}") from None
            return
        mode = st.st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise UsageError(f"cannot write '{shown}': {e.strerror or e}") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux: MemAvailable), or None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _fits_in_memory(spec, doing: str, batch: int | None = None) -> None:
    """Refuse, before PyTorch allocates anything, a model whose parameters and buffers
    (float32, as built) — and, for an export, one forward pass at `batch` — exceed the
    memory available: the analyzer knows the sizes without building."""
    from ..report import human_bytes
    an = spec.analyze(batch or 1, "float32")
    need = an.totals.param_bytes + (an.totals.forward_bytes if batch else 0)
    avail = available_memory()
    if avail is not None and need > avail:
        what = "parameters, buffers and one forward pass" if batch else "parameters and buffers"
        raise CommandError(f"{doing} {spec.name} needs {human_bytes(need)} for its {what} "
                         f"(float32), more than the {human_bytes(avail)} of memory available; "
                         f"`nnspec table` gives every figure without building the model")


def _allocating(fn, *a, **kw):
    """Run `fn`; running out of memory anyway (the estimate is a lower bound) is one line."""
    try:
        return fn(*a, **kw)
    except MemoryError:
        raise CommandError("out of memory while building the model; `nnspec table` gives every "
                         "figure without building it") from None
    except RuntimeError as e:
        text = str(e)
        if "alloc" in text.lower() or "memory" in text.lower():
            raise CommandError(f"PyTorch could not allocate the model: "
                             f"{text.strip().splitlines()[0][:200]}") from None
        raise


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
