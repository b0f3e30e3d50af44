"""The backend-neutral plan of a graph: the facts about running it that every backend shares.

`plan(graph)` computes them once, from the graph's edges and the op registry's facts
(`stores`, `keeps`, `tensors`), so `nnspec.compile`, the emitted PyTorch source and the NumPy
executor can never disagree about them:

- `steps`: the execution order, one `Step` per node: the values it reads, the value it makes,
  whether it may overwrite its input (`may_run_in_place`) and the values read for the last
  time there (an executor drops them after the step, as hand-written code lets them die);
  `last_use` maps each value to the position of that step;
- `root`: the module tree (network, block instances, labelled groups; `scopes`), and per
  scope the variables of its `forward` (`registers`);
- `state`: the state_dict keys with their tensors, as the registry names them.

A value is named by the id of the node that made it; 0 is the network's input.

>>> import nnspec
>>> p = plan(nnspec.loads("input 4x8x8\\nc: conv(4, 3, pad=1)\\nadd {\\n  relu\\n  identity\\n}\\n").graph)
>>> [(s.node.name, s.inputs, s.in_place, s.frees) for s in p.steps]   # relu would clobber c
[('c', (0,), False, (0,)), ('relu', (1,), False, ()), ('identity', (1,), False, (1,)), ('add', (2, 3), False, (2, 3))]
>>> p = plan(nnspec.loads("input 4x8x8\\nconv(4, 3, pad=1) relu\\n").graph)
>>> [s.node.name for s in p.steps if s.in_place], list(p.state)
(['relu'], ['conv.weight', 'conv.bias'])
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping

from .ir import Graph, Node
from .ops import Tensor

# ---- in place ---------------------------------------------------------------------------------


def may_run_in_place(graph: Graph, node: Node, consumers: Mapping[int, list[int]] | None = None) -> bool:
    """Whether `node` may overwrite the value it reads instead of making a new tensor.

    Only when nothing is lost by it: the op is elementwise and may overwrite (`stores ==
    "inplace"`), its own backward does not need its input; the value it reads is not the
    network's input (the caller's tensor), is read by nothing else (another path of an add or
    concat would see the overwritten value), is not a view of another value (nor the output of
    a train-only op, which is its input at evaluation), and its producer's
    backward does not need it (a sigmoid keeps its output)."""
    op = node.opdef
    if op.stores != "inplace" or len(node.inputs) != 1 or "input" in op.keeps_for(node.attrs):
        return False
    src = graph.nodes[node.inputs[0]]
    # a view, or a train-only op (dropout returns its input itself at evaluation), aliases
    # the value before it, which other paths may read
    if src.op == "input" or src.opdef.stores == "view" or "train_only" in src.opdef.traits:
        return False
    if "output" in src.opdef.keeps_for(src.attrs):
        return False
    readers = (consumers if consumers is not None else graph.consumers())[src.id]
    return list(readers) == [node.id]


# ---- execution order --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """One node run: `output = node(*inputs)`; with `in_place` it may write its result into
    the memory of its one input (`inputs[0]`, which then is in `frees`); after it, the values
    in `frees` are read no more (the network's output never is)."""
    node: Node
    inputs: tuple[int, ...]
    output: int
    in_place: bool
    frees: tuple[int, ...]


def last_use(graph: Graph) -> dict[int, int]:
    """value id -> position in `graph.layers` of the last step that reads it. The network's
    output is read by the caller: `len(graph.layers)`. A value nothing reads dies where it is
    made."""
    out = {nd.id: k for k, nd in enumerate(graph.layers)}
    out[0] = -1
    for k, nd in enumerate(graph.layers):
        for v in nd.inputs:
            out[v] = k
    out[graph.output] = len(graph.layers)
    return out


def steps(graph: Graph, consumers: Mapping[int, list[int]] | None = None,
          last: Mapping[int, int] | None = None) -> tuple[Step, ...]:
    """One Step per node, in execution order (see `Step`)."""
    consumers = consumers if consumers is not None else graph.consumers()
    last = last if last is not None else last_use(graph)
    dying: dict[int, list[int]] = {}
    for v, k in last.items():
        if 0 <= k < len(graph.layers):
            dying.setdefault(k, []).append(v)
    return tuple(Step(nd, nd.inputs, nd.id, may_run_in_place(graph, nd, consumers),
                      tuple(sorted(dying.get(k, ()))))
                 for k, nd in enumerate(graph.layers))


# ---- the module tree --------------------------------------------------------------------------


@dataclass
class Scope:
    """A network, block instance or labelled group: a module whose children are the spec's."""

    path: str                 # "" for the network
    kind: str                 # block name, "group", or the network's name
    children: list = field(default_factory=list)  # [(local name, Node | Scope)]
    first: int = -1           # id of its first node
    last: int = -1            # id of its last node: its output
    input: int = 0            # id of the value entering it

    @property
    def chain(self) -> bool:
        """Each child takes the previous child's output (the scope's input for the first)."""
        prev = self.input
        for _, child in self.children:
            if io(child)[0] != (prev,):
                return False
            prev = io(child)[1]
        return True


def io(child) -> tuple[tuple[int, ...], int]:
    """(ids of the values a child reads, id of the value it makes)"""
    if isinstance(child, Scope):
        return (child.input,), child.last
    return child.inputs, child.id


def scopes(graph: Graph) -> Scope:
    """The module tree of a graph, from the nodes' hierarchical names."""
    kinds = {}
    for nd in graph.layers:
        for fr in nd.chain:
            kinds.setdefault(fr.instance, fr.block)
    root = Scope("", graph.name, first=1, last=graph.output, input=0)
    index = {"": root}
    for nd in graph.layers:
        parts = nd.name.split(".")
        parent = root
        for depth in range(1, len(parts)):
            path = ".".join(parts[:depth])
            sc = index.get(path)
            if sc is None:
                sc = index[path] = Scope(path, kinds.get(path, "group"), first=nd.id)
                parent.children.append((parts[depth - 1], sc))
            sc.last = nd.id
            parent = sc
        parent.children.append((parts[-1], nd))
    for sc in index.values():
        if sc.path:
            outside = {i for nd in graph.nodes[sc.first:sc.last + 1] for i in nd.inputs if i < sc.first}
            if len(outside) != 1:  # the expander builds series-parallel scopes: cannot happen
                raise AssertionError(f"scope {sc.path} reads {len(outside)} outside values")
            sc.input = outside.pop()
    return root


def walk(scope: Scope):
    """The scope and every scope below it, parents first."""
    yield scope
    for _, child in scope.children:
        if isinstance(child, Scope):
            yield from walk(child)


@dataclass(frozen=True, slots=True)
class Call:
    """One line of a scope's forward: `out = <child>(*args)`, variables by name."""
    name: str                 # the child's local name
    child: object             # Node | Scope
    args: tuple[str, ...]
    out: str


def registers(scope: Scope, first: str = "x") -> tuple[tuple[Call, ...], str]:
    """The calls of a scope's forward and the variable it returns, values held in as few
    variables as they need: a value's variable is reused once its last reader ran (so
    intermediate tensors are freed as in hand-written code, and an in-place op writes into the
    variable it reads). The scope's input arrives in `first`.

    >>> import nnspec
    >>> g = nnspec.loads("input 4x8x8\\nc: conv(4, 3, pad=1)\\nadd {\\n  relu\\n  identity\\n}\\n").graph
    >>> calls, result = registers(scopes(g))
    >>> [(c.out, c.name, c.args) for c in calls], result
    ([('x', 'c', ('x',)), ('x1', 'relu', ('x',)), ('x', 'identity', ('x',)), ('x', 'add', ('x1', 'x'))], 'x')
    """
    steps_ = [(name, child) + io(child) for name, child in scope.children]
    last = {}
    for k, (_, _, ins, _) in enumerate(steps_):
        for v in ins:
            last[v] = k
    last[scope.last] = len(steps_)
    regs = {scope.input: first}
    free: list[str] = []
    made = 0
    calls = []
    for k, (name, child, ins, out) in enumerate(steps_):
        args = tuple(regs[v] for v in ins)
        for v in dict.fromkeys(ins):
            if last.get(v) == k:
                free.append(regs.pop(v))
        if free:
            free.sort(key=lambda r: (len(r), r))
            reg = free.pop(0)
        else:
            made += 1
            reg = f"{first}{made}"
        regs[out] = reg
        calls.append(Call(name, child, args, reg))
    return tuple(calls), regs[scope.last]


# ---- state ------------------------------------------------------------------------------------


def state(graph: Graph) -> dict[str, Tensor]:
    """The state_dict of the network, as the registry describes it: key -> Tensor (named by
    its full key), in the order the module tree registers them (each module's parameters,
    then its buffers, modules in execution order)."""
    out = {}
    for nd in graph.layers:
        for t in nd.opdef.tensors(graph.in_shapes(nd), nd.attrs):
            key = f"{nd.name}.{t.name}"
            out[key] = replace(t, name=key)
    return out


# ---- the plan ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    graph: Graph
    steps: tuple[Step, ...]
    last_use: Mapping[int, int]   # value id -> position of the step that reads it last
    root: Scope
    state: Mapping[str, Tensor]

    @property
    def in_place(self) -> frozenset[int]:
        """Ids of the nodes that may overwrite their input."""
        return frozenset(s.output for s in self.steps if s.in_place)

    def forward(self, scope: Scope | None = None, first: str = "x") -> tuple[tuple[Call, ...], str]:
        """The calls of a scope's forward (the network's by default); see `registers`."""
        return registers(scope or self.root, first)


def plan(graph: Graph) -> Plan:
    """The plan of a graph (see the module docstring)."""
    last = last_use(graph)
    return Plan(graph, steps(graph, last=last), last, scopes(graph), state(graph))


__all__ = ["Call", "Plan", "Scope", "Step", "io", "last_use", "may_run_in_place", "plan",
           "registers", "scopes", "state", "steps", "walk"]
