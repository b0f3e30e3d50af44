"""The PyTorch backend: one table `op -> torch module factory`, and `compile_torch`.

`TORCH` maps every op of the registry (`nnspec.ops.OPS`) to a factory
`(input shapes, attrs) -> Layer`: the torch class and its constructor arguments. `compile`
instantiates the Layer, `nnspec compile --emit torch` prints it, so both build the same
modules. `UNSUPPORTED` names the ops this backend cannot express (and why); a factory may
also raise `Unsupported` for an argument combination torch lacks. Either is reported when
the model is built, with the spec location: never halfway through training.

The model mirrors the spec's names: a node `layer1.0.downsample.1` is the module at that
path, so `state_dict()` keys are the spec's (torchvision's, for the shipped torchvision
specs). A block instance or labelled group whose layers form a chain is an nn.Sequential;
anything with parallel paths (and the network itself) is a `SpecModule` whose `forward` is
Python generated at build time: the children called in order, residual adds and concats
included, nothing interpreted per op.

>>> import nnspec
>>> model = nnspec.compile(nnspec.loads("input 3x8x8\\nconv(4, 3, pad=1) relu\\nflatten\\nlinear(10)"))
>>> sum(p.numel() for p in model.parameters())
2682
"""

from __future__ import annotations

import contextlib
import functools
import keyword
import os
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Callable, Mapping

from ..errors import Diagnostic, SpecError
from ..ir import Graph, Node
from ..ops import is_formula, window_axes
from ..plan import Plan, Scope, registers
from ..plan import plan as make_plan
from .pysource import one, py

BACKEND_CODE = "NN040"  # a layer this backend cannot build


class Unsupported(Exception):
    """Raised by a factory for arguments that torch cannot express."""


# ---- layer descriptions ---------------------------------------------------------------------

@dataclass(frozen=True)
class Layer:
    """A torch module to build: `cls` is `nn.<Name>` (torch.nn) or a class of
    `nnspec.backends.torch_layers`; `defaults` are torch's, left out of generated source."""

    cls: str
    args: tuple = ()
    kwargs: Mapping = field(default_factory=dict)
    defaults: Mapping = field(default_factory=dict)

    @property
    def custom(self) -> bool:
        return not self.cls.startswith("nn.")

    def build(self):
        if self.custom:
            from . import torch_layers
            cls = getattr(torch_layers, self.cls)
        else:
            from torch import nn
            cls = getattr(nn, self.cls[3:])
        return cls(*self.args, **self.kwargs)

    def arguments(self) -> list[str]:
        """The constructor's arguments as source, torch's defaults left out."""
        parts = [py(a) for a in self.args]
        for k, v in self.kwargs.items():
            if k in self.defaults and _is_default(v, self.defaults[k]):
                continue
            parts.append(f"{k}={py(v)}")
        return parts

    def source(self) -> str:
        """`nn.Conv2d(64, 128, 3, stride=2, padding=1, bias=False)`"""
        return f"{self.cls}({', '.join(self.arguments())})"


def _is_default(v, d) -> bool:
    v = one(v)
    if isinstance(v, bool) or isinstance(d, bool):
        return isinstance(v, bool) and isinstance(d, bool) and v == d
    return isinstance(v, (int, float, str, type(None))) and type(v) in (type(d), int, float) and v == d


# ---- the table ------------------------------------------------------------------------------

def _per_axis(v, r: int) -> tuple:
    return tuple(v) if isinstance(v, tuple) else (v,) * r


def _window(shape, a):
    """(rank, kernel, stride, padding, dilation) per spatial axis, as the op registry reads
    them (the registry has already checked that they apply)."""
    r = len(shape) - 1
    return (r,) + window_axes(a, r)


def _pool_padding_fits(op: str, k, p) -> None:
    # PyTorch allows padding up to half the kernel, whatever the dilation; the registry
    # measures it against the dilated window, so a dilated pool can pass there and not here.
    for ki, pi in zip(k, p):
        if isinstance(ki, int) and isinstance(pi, int) and pi > ki // 2:
            raise Unsupported(f"PyTorch's {op} allows padding up to half the kernel "
                              f"({ki // 2} for a {ki}-wide kernel, dilation aside), got {pi}")


def _conv(ins, a):
    shape = ins[0]
    r, k, s, p, d = _window(shape, a)
    return Layer(f"nn.Conv{r}d", (shape[0], a["out"], one(k)),
                 {"stride": one(s), "padding": one(p), "dilation": one(d), "groups": a["groups"],
                  "bias": a["bias"]},
                 {"stride": 1, "padding": 0, "dilation": 1, "groups": 1, "bias": True})


def _maxpool(ins, a):
    r, k, s, p, d = _window(ins[0], a)
    _pool_padding_fits("max pooling", k, p)
    kw = {} if a["stride"] is None else {"stride": one(s)}
    kw.update(padding=one(p), dilation=one(d), ceil_mode=a["ceil_mode"])
    return Layer(f"nn.MaxPool{r}d", (one(k),), kw, {"padding": 0, "dilation": 1, "ceil_mode": False})


def _avgpool(ins, a):
    r, k, s, p, _ = _window(ins[0], a)
    _pool_padding_fits("average pooling", k, p)
    kw = {} if a["stride"] is None else {"stride": one(s)}
    kw.update(padding=one(p), ceil_mode=a["ceil_mode"], count_include_pad=a["count_include_pad"])
    return Layer(f"nn.AvgPool{r}d", (one(k),), kw,
                 {"padding": 0, "ceil_mode": False, "count_include_pad": True})


def _batchnorm(ins, a):
    dims = {1: 1, 2: 1, 3: 2, 4: 3}[len(ins[0])]  # vectors (N, C) and CxL both take BatchNorm1d
    return Layer(f"nn.BatchNorm{dims}d", (ins[0][0],),
                 {"eps": a["eps"], "momentum": a["momentum"], "affine": a["affine"]},
                 {"eps": 1e-5, "momentum": 0.1, "affine": True})


def _conv_transpose(ins, a):
    shape = ins[0]
    r, k, s, p, d = _window(shape, a)
    op = _per_axis(a["output_pad"], r)
    return Layer(f"nn.ConvTranspose{r}d", (shape[0], a["out"], one(k)),
                 {"stride": one(s), "padding": one(p), "output_padding": one(op),
                  "groups": a["groups"], "bias": a["bias"], "dilation": one(d)},
                 {"stride": 1, "padding": 0, "output_padding": 0, "groups": 1, "bias": True,
                  "dilation": 1})


def _upsample(ins, a):
    r = len(ins[0]) - 1
    scale = one(_per_axis(a["scale"], r))
    scale = tuple(float(x) for x in scale) if isinstance(scale, tuple) else float(scale)
    if a["mode"] == "nearest":
        return Layer("nn.Upsample", (), {"scale_factor": scale, "mode": "nearest"})
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[r]
    return Layer("nn.Upsample", (), {"scale_factor": scale, "mode": mode, "align_corners": False})


def _layernorm(ins, a):
    shape = ins[0]
    kw = {"eps": a["eps"], "elementwise_affine": a["affine"]}
    defaults = {"eps": 1e-5, "elementwise_affine": True}
    if a["over"] == "sample":
        return Layer("nn.LayerNorm", (tuple(shape) if len(shape) > 1 else shape[0],), kw, defaults)
    if len(shape) == 1:
        return Layer("nn.LayerNorm", (shape[0],), kw, defaults)
    return Layer("ChannelLayerNorm", (shape[0],), kw, defaults)


def _instancenorm(ins, a):
    r = len(ins[0]) - 1
    return Layer(f"nn.InstanceNorm{r}d", (ins[0][0],),
                 {"eps": a["eps"], "momentum": a["momentum"], "affine": a["affine"],
                  "track_running_stats": a["track_running_stats"]},
                 {"eps": 1e-5, "momentum": 0.1, "affine": False, "track_running_stats": False})


def _simple(cls: str, **arg_names):
    """A module whose keyword arguments are op arguments renamed: _simple("nn.ELU", alpha="a")."""
    def factory(ins, a):
        return Layer(cls, (), {k: a[v] for k, v in arg_names.items()})
    return factory


def _no_module(ins, a):
    return None


Factory = Callable[[tuple, Mapping], "Layer | None"]


TORCH: dict[str, Factory] = {
    # the network input is the argument of forward: no module
    "input": _no_module,
    "conv": _conv,
    "maxpool": _maxpool,
    "avgpool": _avgpool,
    "adaptive_avgpool": lambda ins, a: Layer(f"nn.AdaptiveAvgPool{len(ins[0]) - 1}d",
                                              (one(_per_axis(a["size"], len(ins[0]) - 1)),)),
    "global_avgpool": lambda ins, a: Layer("GlobalAvgPool"),
    # PyTorch's LRN divides alpha by `size` (so does Caffe's); the spec's alpha is PyTorch's
    "lrn": lambda ins, a: Layer("nn.LocalResponseNorm", (a["size"],),
                                {"alpha": a["alpha"], "beta": a["beta"], "k": a["k"]},
                                {"alpha": 1e-4, "beta": 0.75, "k": 1.0}),
    "linear": lambda ins, a: Layer("nn.Linear", (ins[0][0], a["out"]), {"bias": a["bias"]},
                                   {"bias": True}),
    "maxout": lambda ins, a: Layer("Maxout", (ins[0][0], a["units"]), {"pieces": a["pieces"]},
                                   {"pieces": 2}),
    "flatten": lambda ins, a: Layer("nn.Flatten"),
    "batchnorm": _batchnorm,
    "dropout": lambda ins, a: Layer("nn.Dropout", (a["p"],)),
    "relu": lambda ins, a: Layer("nn.ReLU", (), {}, {"inplace": False}),
    "relu6": lambda ins, a: Layer("nn.ReLU6", (), {}, {"inplace": False}),
    "hardtanh": lambda ins, a: Layer("nn.Hardtanh", (a["min"], a["max"]), {}, {"inplace": False}),
    "hardsigmoid": _simple("nn.Hardsigmoid"),
    "hardswish": _simple("nn.Hardswish"),
    "silu": _simple("nn.SiLU"),
    "mish": _simple("nn.Mish"),
    "softplus": lambda ins, a: Layer("nn.Softplus", (), {"threshold": a["threshold"]},
                                     {"threshold": 20.0}),
    "leaky_relu": lambda ins, a: Layer("nn.LeakyReLU", (a["a"],)),
    "rrelu": lambda ins, a: Layer("nn.RReLU", (a["lower"], a["upper"])),
    "elu": lambda ins, a: Layer("nn.ELU", (), {"alpha": a["a"]}, {"alpha": 1.0}),
    "gelu": _simple("nn.GELU"),
    "sigmoid": _simple("nn.Sigmoid"),
    "tanh": _simple("nn.Tanh"),
    "prelu": lambda ins, a: Layer("nn.PReLU", (),
                                  {"num_parameters": ins[0][0] if a["per_channel"] else 1,
                                   "init": a["init"]},
                                  {"num_parameters": 1, "init": 0.25}),
    "softmax": lambda ins, a: Layer("nn.Softmax", (), {"dim": 1}),
    "log_softmax": lambda ins, a: Layer("nn.LogSoftmax", (), {"dim": 1}),
    "identity": _simple("nn.Identity"),
    "add": lambda ins, a: Layer("Add"),
    "concat": lambda ins, a: Layer("Concat"),
    "mul": lambda ins, a: Layer("Mul"),
    "conv_transpose": _conv_transpose,
    "upsample": _upsample,
    "layernorm": _layernorm,
    "groupnorm": lambda ins, a: Layer("nn.GroupNorm", (a["groups"], ins[0][0]),
                                      {"eps": a["eps"], "affine": a["affine"]},
                                      {"eps": 1e-5, "affine": True}),
    "instancenorm": _instancenorm,
    "stochastic_depth": lambda ins, a: Layer("StochasticDepth", (a["p"],), {"mode": a["mode"]}),
    "dropconnect": lambda ins, a: Layer("DropConnect", (ins[0][0], a["out"]), {"p": a["p"], "bias": a["bias"]},
                                        {"bias": True}),
    "fractional_maxpool": lambda ins, a: Layer("FractionalMaxPool", (a["kernel"], a["ratio"])),
}

# op -> why this backend cannot build it. Empty today: every op of the registry has a torch
# module. An op added to the registry must be added to TORCH or here (tests check).
UNSUPPORTED: dict[str, str] = {}

def _elementwise(ins, a, op: str):
    """An activation without a native module: the registry row's formula, run by torch."""
    return Layer("Elementwise", (op,), {k: a[k] for k in sorted(a)})


def factory_for(op: str) -> "Factory | None":
    """The op's factory: the table's, else the generic one for an activation row."""
    factory = TORCH.get(op)
    if factory is None and is_formula(op):
        return functools.partial(_elementwise, op=op)
    return factory


def implemented(op: str) -> bool:
    """Whether this backend can build an op (its arguments may still be refused)."""
    return op not in UNSUPPORTED and factory_for(op) is not None


def layer_for(graph: Graph, node: Node, in_place: bool = False) -> Layer | None:
    """The Layer of one node, writing into its input where `in_place` (the plan's decision,
    `nnspec.plan.may_run_in_place`) and its module can; raises Unsupported."""
    if node.op in UNSUPPORTED:
        raise Unsupported(UNSUPPORTED[node.op])
    factory = factory_for(node.op)
    if factory is None:
        raise Unsupported("the op is missing from the torch backend's table")
    layer = factory(graph.in_shapes(node), node.attrs)
    return in_place_layer(layer) if in_place else layer


def in_place_layer(layer: Layer | None) -> Layer | None:
    """The layer overwriting its input, where its torch module has an `inplace` switch
    (nn.ReLU, nn.ReLU6, nn.Hardtanh); any other layer as it is (it makes a new tensor, which
    is always correct)."""
    if layer is None or "inplace" not in layer.defaults:
        return layer
    return replace(layer, kwargs={**layer.kwargs, "inplace": True})


# ---- the module tree ------------------------------------------------------------------------
# The tree itself, the order and the variables are backend-neutral (nnspec.plan); this writes
# them as Python.

def forward_source(scope: Scope, call: Callable[[str, object, list[str]], str]) -> str:
    """`def forward(self, x): …` for a scope: each child in order, in the variables that
    `nnspec.plan.registers` allots (a value's variable is reused once its last reader ran, so
    intermediate tensors are freed as in hand-written code). `call(name, child, args)`
    returns the expression for one child."""
    calls, result = registers(scope)
    lines = ["def forward(self, x):"]
    for c in calls:
        expr = call(c.name, c.child, list(c.args))
        if expr != c.out:
            lines.append(f"    {c.out} = {expr}")
    lines.append(f"    return {result}")
    return "\n".join(lines) + "\n"


def attr(name: str, owner: str = "self") -> str:
    """Python access to a child module: `self.conv1`, or `getattr(self, "5")`."""
    if name.isidentifier() and not keyword.iskeyword(name):
        return f"{owner}.{name}"
    return f'getattr({owner}, "{name}")'


def _module_call(name, child, args) -> str:
    return f"{attr(name)}({', '.join(args)})"


# ---- building -------------------------------------------------------------------------------

@dataclass(frozen=True)
class TorchPlan:
    """The backend-neutral plan of the graph and the torch Layer of every node."""
    plan: Plan
    layers: Mapping[int, "Layer | None"]  # node id -> Layer (None: no module, the input)

    @property
    def graph(self) -> Graph:
        return self.plan.graph

    @property
    def root(self) -> Scope:
        return self.plan.root


def plan(graph: Graph) -> TorchPlan:
    """Every node's Layer (in place where the plan allows) and the module tree; all problems
    raised together as a SpecError."""
    neutral = make_plan(graph)
    layers, diags = {}, []
    reserved = _reserved_names()
    for step in neutral.steps:
        nd = step.node
        try:
            layers[nd.id] = layer_for(graph, nd, step.in_place)
        except Unsupported as e:
            diags.append(Diagnostic(BACKEND_CODE, f"{nd.name}: the torch backend cannot build "
                                                  f"`{nd.op}`: {e}", nd.span, chain=nd.chain,
                                    help="change the arguments, or use another backend"))
        for part in nd.name.split("."):
            if part in reserved:
                diags.append(Diagnostic(BACKEND_CODE, f"the layer name '{part}' ({nd.name}) is an "
                                                      f"attribute of torch.nn.Module", nd.span,
                                        chain=nd.chain, help="rename the layer or group"))
                break
    if diags:
        raise SpecError(diags, {graph.file: graph.source})
    return TorchPlan(neutral, layers)


@functools.lru_cache(maxsize=1)
def _reserved_names() -> frozenset:
    try:
        from torch import nn

        from .torch_layers import SpecModule
    except ImportError:
        return frozenset({"forward", "training", "train", "eval", "to", "type", "float", "double",
                          "half", "cuda", "cpu", "apply", "parameters", "buffers", "children",
                          "modules", "state_dict"})
    probe = SpecModule("probe", "def forward(self, x):\n    return x\n")
    return frozenset(n for n in set(dir(probe)) | set(dir(nn.Sequential())) if not n[:1].isdigit())


def build(p: TorchPlan, scope: Scope | None = None):
    from torch import nn

    from .torch_layers import SpecModule
    scope = scope or p.root
    children = [(name, build(p, c) if isinstance(c, Scope) else p.layers[c.id].build())
                for name, c in scope.children]
    if scope.path and scope.chain:
        return nn.Sequential(OrderedDict(children))
    module = SpecModule(scope.kind, forward_source(scope, _module_call))
    for name, m in children:
        module.add_module(name, m)
    return module


def as_spec(spec, network_args: Mapping | None = None):
    """A Spec from a Spec, a Graph, or a path to a .nn file."""
    from ..spec import Spec, load, loads
    args = dict(network_args or {})
    if isinstance(spec, Graph):
        spec = Spec(spec)
    if isinstance(spec, Spec):
        if args:
            g = spec.graph
            return loads(g.source, g.file, **{**g.args, **args})
        return spec
    if isinstance(spec, (str, os.PathLike)):
        return load(spec, **args)
    raise TypeError(f"expected a Spec or a path to a .nn file, got {type(spec).__name__}")


def compile_torch(spec, **network_args):
    """Build an nn.Module from a spec (a Spec, or a path to a .nn file).

    Weights: with no `init` and no `seed` in the train section, each layer keeps PyTorch's
    own default initialisation. Otherwise every parameter follows `nnspec.backends.init`'s
    rules: with a `seed`, drawn with NumPy (the same numbers any backend gets); without,
    drawn with torch's global generator (so torch.manual_seed applies). Layers matched by
    the train section's `freeze` have requires_grad=False.
    """
    import torch

    from ..config import is_frozen
    from . import init as nninit

    spec = as_spec(spec, network_args)
    g = spec.graph
    p = plan(g)
    explicit = nninit.explicit(g.train)
    with torch.device("meta") if explicit else contextlib.nullcontext():
        model = build(p)  # on "meta" no memory is touched: the init below writes every value
    if explicit:
        model.to_empty(device="cpu")
        _fill(model, g, g.train.seed)
    freeze = g.train.freeze if g.train is not None else ()
    if freeze:
        for nd in g.layers:
            if is_frozen(nd.name, freeze):
                for prm in model.get_submodule(nd.name).parameters():
                    prm.requires_grad_(False)
    model.nnspec_graph = g
    return model


def use_random_streams(model, seed: int, suffix: str = ""):
    """Swap the model's random layers (nn.Dropout, StochasticDepth, nn.RReLU, DropConnect,
    FractionalMaxPool) for ones that
    draw from nnspec.rng's streams ("dropout", layer name, step), as the NumPy backend does, and
    return their shared `RandomClock`: set its `step` before each training step (the trainer's
    TorchBackend does). With the same seed and step both backends draw the same masks and
    slopes, bit for bit. `nnspec.compile` itself keeps torch's modules (and torch's generator);
    the swapped layers hold no state, so the state dict does not change."""
    from torch import nn

    from .torch_layers import (DropConnect, FractionalMaxPool, RandomClock, StochasticDepth,
                               StreamDropConnect, StreamDropout, StreamFractionalMaxPool,
                               StreamRReLU, StreamStochasticDepth)
    clock = RandomClock(seed, 0, suffix)
    for name, m in list(model.named_modules()):
        if type(m) is nn.Dropout:
            new = StreamDropout(m.p, name, clock)
        elif type(m) is StochasticDepth:
            new = StreamStochasticDepth(m.p, m.mode, name, clock)
        elif type(m) is nn.RReLU:
            new = StreamRReLU(m.lower, m.upper, name, clock)
        elif type(m) is DropConnect:
            new = StreamDropConnect.sharing(m, name, clock)
        elif type(m) is FractionalMaxPool:
            new = StreamFractionalMaxPool(m.kernel_size, m.output_ratio, name, clock)
        else:
            continue
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, new.train(m.training))
    return clock


def _fill(model, g: Graph, seed: int | None) -> None:
    """Every parameter by `nnspec.backends.init`'s rules, written straight into its memory:
    drawn with NumPy from `seed` (the numbers every backend gets), or without a seed with
    torch's global generator (the same distributions; as fast as torch's own init).
    Running statistics reset (mean 0, variance 1)."""
    import torch

    from . import init as nninit
    params = dict(model.named_parameters())
    if seed is not None and all(p.dtype == torch.float32 for p in params.values()):
        filled = set(nninit.initial_weights(g, seed, into={n: p.detach().numpy() for n, p in params.items()}))
    elif seed is not None:  # another default dtype: draw in float32, then convert
        arrays = nninit.initial_weights(g, seed)
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(torch.from_numpy(arrays[name]))
        filled = set(arrays)
    else:
        filled = set()
        with torch.no_grad():
            for rule in nninit.rules(g):
                p = params[rule.name]
                if rule.kind == "normal":
                    p.normal_(rule.b, rule.a)
                elif rule.kind == "uniform":
                    p.uniform_(-rule.a, rule.a)
                else:
                    p.fill_(rule.a)
                filled.add(rule.name)
    if filled != set(params):
        raise AssertionError(f"init covers {sorted(filled ^ set(params))[:5]} differently")
    for m in model.modules():
        if hasattr(m, "reset_running_stats"):
            m.reset_running_stats()
    leftover = [n for n, m in model.named_modules() if m._buffers and not hasattr(m, "reset_running_stats")]
    if leftover:
        raise AssertionError(f"buffers of {leftover} were not initialised")


def module_source(module) -> str:
    """The generated forward of a compiled SpecModule (or a note for nn.Sequential)."""
    code = getattr(module, "_nnspec_code", None)
    return code if code is not None else f"# {type(module).__name__}: its children in order\n"
