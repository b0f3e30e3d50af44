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
    train_bytes: int       # the peak of a training step: param_bytes + optimizer state + peak_bytes
    optimizer: str
    optimizer_slots: int
    saved_bytes: int = 0   # what backward keeps, x batch: (kept x size + kept_extra_bytes) x batch
    peak_bytes: int = 0    # the step's peak above parameters and optimizer state (see `train_peak`)
    peak_at: str = ""      # where that peak is: "forward", "backward of <layer>" or "update"
    peak_parts: tuple[int, int, int] = (0, 0, 0)  # (saved still alive, activation gradients, parameter gradients) there


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
    indices, the first layer whose backward needs that value — it is freed after that
    backward — or 0, whether a gradient flows through the node's output), from each op's `keeps` (nnspec/ops): a value is kept once, however many layers
    need it, when its producer keeps its output or a reader keeps its input. A view (flatten,
    identity) shares its source's storage, so keeping it keeps the source. Layers before the
    first trainable parameter record nothing (no gradient flows there)."""
    nodes = g.nodes
    freeze = g.train.freeze if g.train is not None else ()
    n = len(nodes)
    grads = [False] * n       # the node's output takes part in a gradient
    storage = list(range(n))  # the value whose memory a node's output is (views share it)
    needed = [False] * n
    first = [0] * n           # the first keeper of a stored value (backward frees it after it)
    extra = [0] * n

    def keep(v: int, by: int) -> None:
        needed[v] = True
        first[v] = min(first[v], by) if first[v] else by

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
                keep(storage[j], i)
        if "output" in keeps:
            keep(storage[i], i)
        if "mask" in keeps:
            extra[i] += prod(nd.shape)
        if "indices" in keeps:
            extra[i] += 8 * prod(nd.shape)  # int64, as PyTorch stores them
    return tuple((math.prod(nd.shape) if needed[nd.id] else 0, extra[nd.id], first[nd.id], grads[nd.id])
                 for nd in nodes)


def train_peak(g: Graph, facts: dict, trainable: list[int], size: int, batch: int) -> tuple:
    """The highest memory of a training step above the parameters and the optimizer state:
    (bytes, where, (saved, activation gradients, parameter gradients) there), bytes of a
    whole batch. The step's order is the plan's (nnspec/plan.py); what is alive follows from
    the last uses and the registry's `keeps` (`kept_pass`):

    - forward, at each step: the values kept for backward made so far, plus the values made
      and not yet read for the last time (an in-place step writes into its input's memory, a
      view shares its source's);
    - backward of each layer, last first: the kept values whose first keeper has not been
      back-propagated yet (the layer's own included), the activation gradients alive (a
      value's gradient lives from the backward of its last reader to that of its producer; a
      view's input gradient is a view of its output gradient), and the parameter gradients
      made so far (this layer's included; the step starts without gradients);
    - the update: every parameter gradient.

    Kernels' own scratch memory (a conv's unfolded chunk) is not counted."""
    from .plan import steps

    nodes = g.nodes
    n = len(nodes)
    kept = facts["kept"]
    consumers = g.consumers()
    last = [i for i in range(n)]          # id of the last reader; the output is read by the loss
    for nd in nodes:
        for v in nd.inputs:
            last[v] = max(last[v], nd.id)
    last[g.output] = n
    # storage: views and in-place steps write into their input's memory
    owner = list(range(n))
    for st in steps(g, consumers):
        if st.node.opdef.stores == "view" or st.in_place:
            owner[st.output] = owner[st.inputs[0]]
    until = [-1] * n                      # last step reading any value in the storage
    for i in range(n):
        until[owner[i]] = max(until[owner[i]], last[i])
    elems = [math.prod(nd.shape) for nd in nodes]
    stored = [0] * n                      # kept elements, by storage
    freed = [0] * n                       # first keeper, by storage
    for i, (k, _, f, _) in enumerate(kept):
        if k:
            o = owner[i]
            stored[o] = elems[o]
            freed[o] = min(freed[o], f) if freed[o] else f
    extra = [e * batch for _, e, _, _ in kept]
    unit = size * batch
    # per step (index k, 1 .. n-1): value changes as the step runs (difference arrays)
    made_saved = [0] * (n + 1)   # forward: kept values appear as they are made
    live = [0] * (n + 2)         # forward: values not kept, from their step to their last reader
    alive = [0] * (n + 1)        # backward: kept values alive down to their first keeper
    made_saved[1] += stored[0] * unit
    for o in range(1, n):
        if owner[o] != o:
            continue
        if stored[o]:
            made_saved[o] += stored[o] * unit
            alive[freed[o]] += stored[o] * unit
        else:
            live[o] += elems[o] * unit
            live[min(until[o], n) + 1] -= elems[o] * unit
    if stored[0]:
        alive[freed[0]] += stored[0] * unit
    # activation-gradient storages (a view's input gradient is a view of its output gradient)
    gowner = list(range(n))
    for i in range(n - 1, 0, -1):
        readers = consumers[i]
        if len(readers) == 1 and nodes[readers[0]].opdef.stores == "view":
            gowner[i] = gowner[readers[0]]
    span: dict[int, list[int]] = {}
    for i in range(1, n):
        if kept[i][3]:
            lo_hi = span.setdefault(gowner[i], [i, last[i]])
            lo_hi[0], lo_hi[1] = min(lo_hi[0], i), max(lo_hi[1], last[i])
    grad_live = [0] * (n + 2)
    for o, (lo, hi) in span.items():
        grad_live[lo] += elems[o] * unit
        grad_live[min(hi, n) + 1] -= elems[o] * unit
    best, where, parts = 0, "forward", (0, 0, 0)
    fwd_saved = fwd_live = 0
    saved_at, grads_at = [0] * n, [0] * n    # backward: prefix sums from the first step
    s_run = g_run = 0
    for k in range(1, n):
        fwd_saved += made_saved[k] + extra[k]
        fwd_live += live[k]
        if fwd_saved + fwd_live > best:
            best, parts = fwd_saved + fwd_live, (fwd_saved, fwd_live, 0)
        s_run += alive[k] + extra[k]
        g_run += grad_live[k]
        saved_at[k], grads_at[k] = s_run, g_run
    # backward of step k: kept values with first keeper <= k are alive (freed[o] <= k)
    param_grads = 0
    for k in range(n - 1, 0, -1):
        if not kept[k][3]:
            continue
        param_grads += trainable[k] * size
        total = saved_at[k] + grads_at[k] + param_grads
        if total > best:
            best, where, parts = total, f"backward of {nodes[k].name}", (saved_at[k], grads_at[k], param_grads)
    total_grads = sum(trainable) * size
    if total_grads > best:
        best, where, parts = total_grads, "update", (0, 0, total_grads)
    return best, where, parts


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
    kept = sum(k[0] for k in facts["kept"])
    extra = sum(k[1] for k in facts["kept"])
    opt = g.train.optimizer if g.train is not None and g.train.optimizer is not None else None
    opt_name = opt.name if opt else "sgd"
    slots = optimizer_slots(opt_name, opt.options if opt else {})
    param_bytes = (params + buffers) * size
    peak, where, parts = train_peak(g, facts, [s.trainable for s in layers], size, batch)
    train_bytes = param_bytes + trainable * size * slots + peak
    return Totals(params, trainable, buffers, sum(s.macs for s in layers), forward, kept, extra,
                  param_bytes, forward * batch * size, train_bytes, opt_name, slots,
                  (kept * size + extra) * batch, peak, where, parts)
