"""Initial weights from the train section: which draw each parameter gets, and NumPy draws.

Schemes (`init` in the train section; `nnspec.config.INITS`), for the weight of every weighted
layer (conv, conv_transpose, linear, maxout: the registry's "weighted" trait), with fans as
torch.nn.init computes them from the weight's shape: fan_in = C_in/groups·F_h·F_w and
fan_out = C_out·F_h·F_w (for conv_transpose, whose weight is C_in x C_out/groups x F_h x F_w,
torch reads the axes the same way: fan_in = C_out/groups·F_h·F_w):

    default   PyTorch's defaults: weight and bias ~ U(-1/√fan_in, 1/√fan_in)
              (torch's kaiming_uniform_ with a=√5)
    xavier    Glorot & Bengio: normal std √(2/(fan_in+fan_out)), uniform bound √(6/(fan_in+fan_out))
              (torch.nn.init.xavier_normal_ / xavier_uniform_)
    he        He et al., gain √2 for ReLU: normal std √(2/fan), uniform bound √(6/fan), with
              fan = fan_in or fan_out (`mode`) (torch.nn.init.kaiming_normal_ / kaiming_uniform_)
    normal    N(mean, std²)      uniform   U(-a, a)      zeros     constant(value)

Under every scheme but `default`, those layers' biases start at zero. Normalisation layers
(batch, layer, group, instance norm) start at gamma 1, beta 0 (running mean 0, variance 1)
and PReLU at its `init` slope, unless a per-layer override names them (`init "bn3" zeros`): then zeros, constant, normal or uniform set their
weight. The last override whose pattern matches a layer wins.

`rules(graph)` reduces all this to one draw per parameter (normal, uniform or constant),
framework-free; `initial_weights(graph, seed)` draws them with NumPy. Every tensor has its
own generator, `nnspec.rng.stream(seed, "init", name)` (seeded by the seed and the CRC-32 of
its name): a layer's first weights depend on the seed, its name and its shape only (adding a
layer elsewhere does not change them), and any backend that draws from here starts from the
same numbers.

>>> import nnspec
>>> spec = nnspec.loads("input 4\\nlinear(3)\\ntrain {\\n  init zeros\\n  seed 1\\n}")
>>> sorted((k, v.shape) for k, v in initial_weights(spec.graph, 1).items())
[('linear.bias', (3,)), ('linear.weight', (3, 4))]
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .. import rng
from ..config import Choice
from ..errors import Diagnostic, SpecError
from ..ir import Graph
from ..ops import OpsWith

_FAN_LAYERS = OpsWith("weighted")  # layers whose weight is drawn by fan
_SCALE_ONLY = ("zeros", "constant", "normal", "uniform", "default")


def explicit(train) -> bool:
    """Whether the train section asks for initial weights (else: the backend's defaults)."""
    return train is not None and (train.init is not None or bool(train.init_overrides)
                                  or train.seed is not None)


@dataclass(frozen=True, slots=True)
class Rule:
    """How one parameter starts, reduced to one of three draws:
    normal (`a` = std, `b` = mean), uniform (on [-a, a]) or constant (`a`)."""
    name: str
    shape: tuple[int, ...]
    kind: str
    a: float
    b: float = 0.0


def rules(graph: Graph) -> list[Rule]:
    """The rule of every parameter of the network, in graph order. Raises SpecError when a
    per-layer override cannot apply (xavier or he on a layer without fan-in)."""
    train = graph.train
    default = train.init if train is not None and train.init is not None else Choice("default", {}, None)
    out: list[Rule] = []
    diags = []
    for nd in graph.layers:
        params = [t for t in nd.opdef.tensors(graph.in_shapes(nd), nd.attrs) if t.role == "param"]
        if not params:
            continue
        scheme = train.init_override(nd.name) if train is not None else None
        weight = next((t for t in params if t.name == "weight"), None)
        fans = weight.fans if weight is not None and len(weight.shape) >= 2 else None
        if nd.op in _FAN_LAYERS:
            scheme = scheme or default
        elif scheme is not None and scheme.name not in _SCALE_ONLY:
            diags.append(Diagnostic("NN030", f"init {scheme.name} needs a weight with a fan-in; "
                                             f"{nd.name} ({nd.op}) has a {len(weight.shape)}-D weight",
                                    scheme.span, help="use zeros, constant, normal or uniform for "
                                                      "this layer, or narrow the pattern"))
            continue
        for t in params:
            kind, a, b = _rule(nd.op, t, scheme, fans, nd.attrs)
            out.append(Rule(f"{nd.name}.{t.name}", t.shape, kind, a, b))
    if diags:
        raise SpecError(diags, {graph.file: graph.source})
    return out


def initial_weights(graph: Graph, seed: int, into: dict | None = None) -> dict[str, np.ndarray]:
    """Every parameter of the network by state-dict name, float32, drawn with NumPy.

    `into` (name -> writable float32 array of the right shape, e.g. a framework's parameter
    memory) is filled in place instead of allocating. Tensors are drawn on several threads
    (NumPy releases the GIL; each tensor has its own generator, so the numbers do not change)."""
    todo = rules(graph)

    def run(rule: Rule):
        out = into[rule.name] if into is not None else np.empty(rule.shape, np.float32)
        if out.shape != rule.shape or out.dtype != np.float32:
            raise ValueError(f"{rule.name}: expected a float32 array of shape {rule.shape}")
        if rule.kind == "constant":
            out.fill(rule.a)
            return rule.name, out
        gen = rng.stream(seed, "init", rule.name)
        if rule.kind == "normal":
            rng.normal(gen, rule.shape, rule.b, rule.a, out=out)
        else:
            rng.uniform(gen, rule.shape, -rule.a, rule.a, out=out)
        return rule.name, out

    workers = min(8, os.cpu_count() or 1)
    if workers > 1 and sum(math.prod(r.shape) for r in todo) > 1_000_000:
        with ThreadPoolExecutor(workers) as pool:
            return dict(pool.map(run, todo))
    return dict(map(run, todo))


def _rule(op: str, t, scheme: Choice | None, fans, attrs) -> tuple[str, float, float]:
    if op not in _FAN_LAYERS and (scheme is None or scheme.name == "default"):
        if op == "prelu":
            return "constant", attrs["init"], 0.0
        return "constant", 1.0 if t.name == "weight" else 0.0, 0.0  # batch norm
    name, o = scheme.name, scheme.options
    if t.name != "weight":  # biases
        if name == "default" and fans is not None:
            return "uniform", 1 / math.sqrt(fans[0]), 0.0
        return "constant", 0.0, 0.0
    if name == "default":
        return "uniform", 1 / math.sqrt(fans[0]), 0.0
    if name == "zeros":
        return "constant", 0.0, 0.0
    if name == "constant":
        return "constant", o["value"], 0.0
    if name == "normal":
        return "normal", o["std"], o["mean"]
    if name == "uniform":
        return "uniform", o["a"], 0.0
    fan_in, fan_out = fans
    if name == "xavier":
        fan, gain = (fan_in + fan_out) / 2, 1.0
    elif name == "he":
        fan, gain = (fan_in if o["mode"] == "fan_in" else fan_out), math.sqrt(2.0)
    else:
        raise AssertionError(name)
    std = gain / math.sqrt(fan)
    if o["dist"] == "normal":
        return "normal", std, 0.0
    return "uniform", math.sqrt(3.0) * std, 0.0
