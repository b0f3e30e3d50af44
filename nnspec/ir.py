"""The expanded network: a flat, immutable graph of op nodes in execution order.

Blocks, repeats and conditionals are gone; every node has its hierarchical name (the
PyTorch module path, e.g. `layer1.0.downsample.0`), its op, resolved attributes, input
edges, output shape, source span and the chain of block instances it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import Frame, Span
from .ops import OPS, Op, Shape


@dataclass(frozen=True, slots=True, eq=False)
class Node:
    id: int
    name: str
    op: str
    attrs: Mapping[str, Any]
    inputs: tuple[int, ...]
    shape: Shape
    span: Span
    chain: tuple[Frame, ...] = ()

    @property
    def opdef(self) -> Op:
        return OPS[self.op]


@dataclass(frozen=True, eq=False)
class Graph:
    name: str
    args: Mapping[str, Any]
    nodes: tuple[Node, ...]  # nodes[0] is the input; topological (execution) order
    output: int
    file: str
    source: str
    train: Any = None  # nnspec.config.TrainConfig
    blocks: Mapping[str, Any] = field(default_factory=dict)  # name -> ast.BlockDef (used files' too)
    _by_name: dict = field(default_factory=dict, repr=False)
    module: Any = field(default=None, repr=False)  # the parsed file (nnspec.ast.Module)
    sources: Mapping[str, str] = field(default_factory=dict, repr=False)  # file -> text, used files too

    @property
    def input(self) -> Node:
        return self.nodes[0]

    @property
    def layers(self) -> tuple[Node, ...]:
        """Every node but the input, in execution order."""
        return self.nodes[1:]

    def in_shapes(self, node: Node) -> tuple[Shape, ...]:
        return tuple(self.nodes[i].shape for i in node.inputs)

    def find(self, name: str) -> Node | None:
        if not self._by_name:
            self._by_name.update({nd.name: nd for nd in self.nodes})
        return self._by_name.get(name)

    def consumers(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {nd.id: [] for nd in self.nodes}
        for nd in self.nodes:
            for i in nd.inputs:
                out[i].append(nd.id)
        return out
