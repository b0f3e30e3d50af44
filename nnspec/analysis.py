"""Static analysis of a graph: an ordered tuple of small pure passes -> an `Analysis`.

Each pass reads the graph (and earlier passes' results) and returns one fact per node;
nothing here builds a model. Conventions are domain.md's: MACs of conv/linear/maxout,
bias excluded, FLOPs = 2 x MACs; "forward activations" count the input and every layer
that makes a new tensor (elementwise activations and dropout are taken as in place, as
torchvision runs them; flatten and identity are views).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from .config import is_frozen, optimizer_slots
from .ir import Graph, Node
from .ops import Tensor

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}


@dataclass(frozen=True, slots=True)
class LayerStats:
    node: Node
    tensors: tuple[Tensor, ...]
    params: int      # parameters (PyTorch's sum(p.numel())), frozen ones included
    trainable: int   # parameters not frozen by the train section's `freeze`
    buffers: int     # running statistics: stored, not trained, not counted in params
    macs: int
    activations: int  # output elements per sample
    rf: tuple[int, ...] | None    # receptive field per spatial axis of the input
    jump: tuple[int, ...] | None  # cumulative stride per spatial axis


@dataclass(frozen=True, slots=True)
class Totals:
    params: int            # parameters, as quoted for torchvision models
    trainable: int         # parameters not frozen
    buffers: int
    macs: int
    activations: int       # forward activation elements per sample (input included)
    kept: int              # values per sample the backward pass keeps (registry's `keeps`)
    kept_extra_bytes: int  # per sample: dropout masks (1 byte) and max-pool indices (8 bytes)
    param_bytes: int
    forward_bytes: int     # activations x batch x dtype
    train_bytes: int       # params + grads + optimizer state + kept activations x batch
    optimizer: str
    optimizer_slots: int


@dataclass(frozen=True)
class Analysis:
    graph: Graph
    batch: int
    dtype: str
    layers: tuple[LayerStats, ...]  # one per node, input first
    totals: Totals

    def layer(self, name: str) -> LayerStats | None:
        node = self.graph.find(name)
        return self.layers[node.id] if node is not None else None


# ---- passes: each maps (graph, facts so far) -> a tuple with one entry per node ------------

def inputs_pass(g: Graph, facts: dict) -> tuple:
    """The shapes entering each node (computed once; every later pass reads them)."""
    nodes = g.nodes
    return tuple(tuple(nodes[i].shape for i in nd.inputs) for nd in nodes)


def tensors_pass(g: Graph, facts: dict) -> tuple:
    ins = facts["inputs"]
    return tuple(nd.opdef.tensors(ins[nd.id], nd.attrs) if nd.inputs else () for nd in g.nodes)


def macs_pass(g: Graph, facts: dict) -> tuple:
    ins = facts["inputs"]
    return tuple(nd.opdef.macs(ins[nd.id], nd.shape, nd.attrs) if nd.inputs else 0 for nd in g.nodes)


def receptive_field_pass(g: Graph, facts: dict) -> tuple:
    """rf += (F − 1)·jump; jump *= S, per spatial axis of the input (domain.md)."""
    if len(g.input.shape) < 2:
        return tuple((None, None) for _ in g.nodes)
    axes = len(g.input.shape) - 1
    out: list = [((1,) * axes, (1,) * axes)]
    all_ins = facts["inputs"]
    for nd in g.nodes[1:]:
        inputs = nd.inputs
        rf, jump = out[inputs[0]] if len(inputs) == 1 else entering(g, nd, out)
        ins = all_ins[nd.id]
        window = nd.opdef.window(ins, nd.shape, nd.attrs) if len(ins[0]) > 1 else None
        if window == "global":
            window = tuple((N, N) for N in ins[0][1:])
        if window is not None and len(window) == axes:
            rf = tuple(r + (k - 1) * j for r, j, (k, s) in zip(rf, jump, window))
            jump = tuple(j * s for j, (k, s) in zip(jump, window))
        out.append((rf, jump))
    return tuple(out)


def kept_pass(g: Graph, facts: dict) -> tuple:
    """Per node: (values of its output the backward pass keeps, extra bytes for masks and
    indices), from each op's `keeps` (nnspec/ops): a value is kept once, however many layers
    need it, when its producer keeps its output or a reader keeps its input. A view (flatten,
    identity) shares its source's storage, so keeping it keeps the source. Layers before the
    first trainable parameter record nothing (no gradient flows there)."""
    nodes = g.nodes
    freeze = g.train.freeze if g.train is not None else ()
    n = len(nodes)
    grads = [False] * n       # the node's output takes part in a gradient
    storage = list(range(n))  # the value whose memory a node's output is (views share it)
    needed = [False] * n
    extra = [0] * n
    prod = math.prod
    for nd, ts in zip(nodes, facts["tensors"]):
        i, inputs, op = nd.id, nd.inputs, nd.opdef
        if inputs and op.stores == "view":
            storage[i] = storage[inputs[0]]
        g_i = any(grads[j] for j in inputs) or (
            bool(ts) and any(t.role == "param" for t in ts) and not (freeze and is_frozen(nd.name, freeze)))
        grads[i] = g_i
        if not g_i or not inputs:
            continue
        keeps = op.keeps_for(nd.attrs)
        if not keeps:
            continue
        if "input" in keeps:
            for j in inputs:
                needed[storage[j]] = True
        if "output" in keeps:
            needed[storage[i]] = True
        if "mask" in keeps:
            extra[i] += prod(nd.shape)
        if "indices" in keeps:
            extra[i] += 8 * prod(nd.shape)  # int64, as PyTorch stores them
    return tuple((math.prod(nd.shape) if needed[nd.id] else 0, extra[nd.id]) for nd in nodes)


def entering(g: Graph, nd, rf_jump) -> tuple:
    """(rf, jump) of the value(s) a node reads; `rf_jump[i]` is node i's (rf, jump).

    A merge sees as far as its widest path. Its stride is that of the paths at its own
    resolution: a path that `mul` broadcasts (squeeze-and-excitation's Cx1x1 gate) has no
    positions to step between."""
    if len(nd.inputs) == 1:
        return rf_jump[nd.inputs[0]]
    prev = [rf_jump[i] for i in nd.inputs]
    own = [rf_jump[i] for i in nd.inputs if g.nodes[i].shape[1:] == nd.shape[1:]] or prev
    axes = range(len(prev[0][0]))
    return (tuple(max(p[0][a] for p in prev) for a in axes),
            tuple(max(p[1][a] for p in own) for a in axes))


PASSES: tuple[tuple[str, Callable], ...] = (
    ("inputs", inputs_pass),
    ("tensors", tensors_pass),
    ("macs", macs_pass),
    ("rf", receptive_field_pass),
    ("kept", kept_pass),
)


def analyze(g: Graph, batch: int = 1, dtype: str = "float32") -> Analysis:
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPE_BYTES)}")
    if batch < 1:
        raise ValueError("batch must be positive")
    facts: dict = {}
    for name, fn in PASSES:
        facts[name] = fn(g, facts)
    layers = []
    freeze = g.train.freeze if g.train is not None else ()
    prod = math.prod
    for nd, ts, macs, (rf, jump) in zip(g.nodes, facts["tensors"], facts["macs"], facts["rf"]):
        params = buffers = 0
        for t in ts:
            if t.role == "param":
                params += prod(t.shape)
            elif t.role == "buffer":
                buffers += prod(t.shape)
        trainable = 0 if freeze and is_frozen(nd.name, freeze) else params
        layers.append(LayerStats(nd, ts, params, trainable, buffers, macs, prod(nd.shape), rf, jump))
    return Analysis(g, batch, dtype, tuple(layers), _totals(g, layers, facts, batch, dtype))


def _totals(g: Graph, layers: list[LayerStats], facts: dict, batch: int, dtype: str) -> Totals:
    size = DTYPE_BYTES[dtype]
    params = sum(s.params for s in layers)
    trainable = sum(s.trainable for s in layers)
    buffers = sum(s.buffers for s in layers)
    forward = sum(s.activations for s in layers
                  if s.node.op == "input" or s.node.opdef.stores == "new")
    kept = sum(k for k, _ in facts["kept"])
    extra = sum(e for _, e in facts["kept"])
    opt = g.train.optimizer if g.train is not None and g.train.optimizer is not None else None
    opt_name = opt.name if opt else "sgd"
    slots = optimizer_slots(opt_name, opt.options if opt else {})
    param_bytes = (params + buffers) * size
    train_bytes = param_bytes + trainable * size * (1 + slots) + (kept * size + extra) * batch
    return Totals(params, trainable, buffers, sum(s.macs for s in layers), forward, kept, extra,
                  param_bytes, forward * batch * size, train_bytes, opt_name, slots)
