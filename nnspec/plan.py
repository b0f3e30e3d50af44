"""The backend-neutral plan of a graph: facts about running it that every backend shares.

Which ops may overwrite their input (run in place) is decided here, once, from the registry's
facts (`stores`, `keeps`) and the graph's edges, so `nnspec.compile`, the emitted source and
the NumPy executor can never disagree about it.

>>> import nnspec
>>> g = nnspec.loads("input 4x8x8\\nc: conv(4, 3, pad=1)\\nadd {\\n  relu\\n  identity\\n}\\n").graph
>>> [nd.name for nd in g.layers if may_run_in_place(g, nd)]   # c is also read by the identity path
[]
>>> g = nnspec.loads("input 4x8x8\\nconv(4, 3, pad=1) relu\\n").graph
>>> [nd.name for nd in g.layers if may_run_in_place(g, nd)]
['conv_relu']
"""

from __future__ import annotations

from typing import Mapping

from .ir import Graph, Node


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
