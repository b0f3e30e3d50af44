"""What a rule reads: the typed graph, its analysis, the train section and the syntax tree,
plus the few facts several rules share (the loss, the class count, the dataset size).

Rules look at ops (`node.op`, the registry's `category`, `stores`, tensors), shapes, the
analysis and `TrainConfig` — never at layer names. The only names a rule compares are the
patterns a spec itself writes (`freeze "features.*"`, `init "fc*" zeros`), matched exactly
as the trainer matches them (`nnspec.config.matches`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Iterable, Mapping

from ..errors import Frame, Span
from ..ir import Graph, Node
from ..ops import OpsWith

# Op sets derived from the registry's traits (never kept by hand here).
LINEAR_PASS = OpsWith("linear_eval")      # linear in their input at inference
SATURATING = OpsWith("saturating")
RELU_LIKE = OpsWith("relu_like")
NORMALIZES = OpsWith("normalizes")
PROBABILITY = OpsWith("probabilities", "log_probabilities")

# What each loss expects from the network's output.
LOSS_INPUT = {
    "cross_entropy": "logits", "nll": "log-probabilities", "bce": "probabilities",
    "bce_logits": "logits", "mse": "values", "l1": "values", "huber": "values",
    "hinge": "scores",
}
REGRESSION = frozenset({"mse", "l1", "huber"})
CLASSIFICATION = frozenset({"cross_entropy", "nll", "bce", "bce_logits", "hinge"})


@dataclass(frozen=True)
class Dataset:
    samples: int | None
    classes: int | None
    features: int | None      # elements of one input sample, when the source fixes it
    single_label: bool        # one class per sample (not multi-label)
    name: str


def dataset(choice) -> Dataset | None:
    """Facts about the train section's `data` source."""
    if choice is None:
        return None
    from ..train.data import facts  # the trainer's own description of its sources (NumPy only)
    f = facts(choice)
    features = math.prod(f.sample_shape) if f.sample_shape else None
    return Dataset(f.samples, f.classes, features, f.classes is not None, choice.name)


@dataclass(frozen=True)
class Hit:
    """One finding before the catalogue gives it a code, name and severity."""
    message: str
    span: Span | None
    chain: tuple[Frame, ...] = ()
    help: str | None = None
    notes: tuple[str, ...] = ()


class Context:
    def __init__(self, graph: Graph, module, options: Mapping[str, object] | None = None):
        self.graph = graph
        self.module = module          # nnspec.ast.Module: what was written, before expansion
        self.options = dict(options or {})
        self.train = graph.train
        self.nodes = graph.nodes

    # ---- findings
    def hit(self, where, message: str, *, help: str | None = None, notes: Iterable[str] = ()) -> Hit:
        if isinstance(where, Node):
            return Hit(message, where.span, where.chain, help, tuple(notes))
        return Hit(message, where, (), help, tuple(notes))

    # ---- the graph
    @cached_property
    def analysis(self):
        from ..analysis import analyze
        batch = self.train.batch if self.train is not None and self.train.batch else 1
        return analyze(self.graph, batch)

    @cached_property
    def consumers(self) -> dict[int, list[int]]:
        return self.graph.consumers()

    @property
    def output(self) -> Node:
        return self.nodes[self.graph.output]

    def users(self, node: Node) -> list[Node]:
        return [self.nodes[i] for i in self.consumers[node.id]]

    def source(self, node: Node) -> Node:
        return self.nodes[node.inputs[0]]

    def layers(self, *categories: str) -> list[Node]:
        return [nd for nd in self.nodes[1:] if not categories or nd.opdef.category in categories]

    @cached_property
    def weighted(self) -> list[Node]:
        """Layers with a weight matrix or kernel (conv, linear, maxout, …)."""
        return [nd for nd in self.nodes[1:] if "weighted" in nd.opdef.traits]

    def back(self, node: Node, through=LINEAR_PASS) -> Node:
        """The first node upstream of `node`'s input that is not one of `through`
        (single-input ops only; merges stop the walk)."""
        cur = self.source(node)
        while cur.op in through and len(cur.inputs) == 1:
            cur = self.source(cur)
        return cur

    def ahead(self, node: Node, through=LINEAR_PASS) -> Node | None:
        """The node downstream of `node` past `through` ops, if the path does not branch."""
        cur = node
        while True:
            users = self.users(cur)
            if len(users) != 1:
                return None
            cur = users[0]
            if cur.op not in through:
                return cur

    def head(self, through=frozenset({"dropout", "identity"})) -> Node:
        """The last node that decides the output (dropout/identity at the very end skipped)."""
        cur = self.output
        while cur.op in through and cur.inputs:
            cur = self.source(cur)
        return cur

    def downstream_weighted(self) -> set[int]:
        """Ids of nodes with a weighted layer somewhere after them (the hidden layers)."""
        later: set[int] = set()
        for nd in reversed(self.nodes):  # topological order, walked backwards
            if any(u in later or "weighted" in self.nodes[u].opdef.traits
                   for u in self.consumers[nd.id]):
                later.add(nd.id)
        return later

    # ---- the train section
    @property
    def loss(self) -> str | None:
        t = self.train
        return t.loss.name if t is not None and t.loss is not None else None

    @property
    def optimizer(self):
        return self.train.optimizer if self.train is not None else None

    def span(self, key: str) -> Span | None:
        """Where a train entry was written (falls back to the first entry written)."""
        if self.train is None:
            return None
        spans = self.train.spans
        return spans.get(key) or (next(iter(spans.values())) if spans else None)

    @cached_property
    def data(self) -> Dataset | None:
        return dataset(self.train.data) if self.train is not None else None

    @cached_property
    def classes(self) -> tuple[int, str] | None:
        """(count, where it comes from) from `classes N` or the data source."""
        t = self.train
        if t is None:
            return None
        if t.classes:
            return t.classes, "`classes` in the train section"
        if self.data is not None and self.data.classes:
            return self.data.classes, f"the {self.data.name} data"
        return None

    @cached_property
    def train_samples(self) -> int | None:
        """Samples left for training after the validation split (floor of the held-out part)."""
        if self.data is None or self.data.samples is None:
            return None
        n = self.data.samples
        return n - int(n * (self.train.validation or 0.0))

    def init_of(self, node: Node):
        """The init scheme that applies to a weighted layer: the last `init "pattern" …`
        that matches its name, else the default `init …`, else PyTorch's default."""
        from ..config import Choice
        t = self.train
        chosen = (t.init_override(node.name) or t.init) if t is not None else None
        return chosen or Choice("default", {}, node.span)


def fan(node: Node, graph: Graph) -> tuple[int, int]:
    """(fan_in, fan_out) of a weighted layer's weight, as torch.nn.init computes them."""
    return node.opdef.tensors(graph.in_shapes(node), node.attrs)[0].fans


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


def num(x: float) -> str:
    """A measured number, short: 0.25, 1.2e-09, 4,096; a float estimate that ran past the
    float range says so.

    >>> num(4096), num(1 / 3), num(power(1.5, 9999)), num(power(0.5, 9999))
    ('4,096', '0.333', 'more than 1.8e+308 (past the float range)', '0')
    """
    if isinstance(x, float) and not math.isfinite(x):
        what = "more than 1.8e+308" if x > 0 else "less than -1.8e+308" if x < 0 else "undefined"
        return f"{what} (past the float range)"
    if isinstance(x, int) or float(x).is_integer() and abs(x) < 1e15:
        return f"{int(x):,}"
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e6):
        return f"{x:.2g}"
    for digits in range(3, 10):  # a value that is not whole is never shown as one (0.99997)
        text = f"{x:.{digits}g}"
        if float(text) != round(x) or float(x).is_integer():
            return text
    return f"{x:.10g}"


def article(phrase: str) -> str:
    """'a 5x5', 'an 11x11', 'an 8-wide': the article English reads aloud before a number.

    >>> article("11x11"), article("5x5"), article("8-wide"), article("18x18"), article("110-wide")
    ('an 11x11', 'a 5x5', 'an 8-wide', 'an 18x18', 'a 110-wide')
    """
    lead = phrase.split("x")[0].split("-")[0]
    group = lead[:len(lead) % 3 or 3]  # the digits read first: 11 of 11,000, 110 of 110,000
    vowel = lead.isdigit() and (group[0] == "8" or group in ("11", "18"))
    return ("an " if vowel else "a ") + phrase


def window(ks) -> str:
    """A kernel as users say it: '5x5', '3x3x3', and a 1-D kernel '5-wide'."""
    ks = tuple(ks)
    return f"{ks[0]}-wide" if len(ks) == 1 else "x".join(map(str, ks))


def power(base: float, exponent: int | float) -> float:
    """base ** exponent, saturating to inf instead of raising OverflowError (a learning rate
    ×1.5 per epoch for 10,000 epochs); `num` prints inf as past the float range."""
    try:
        return float(base) ** exponent
    except OverflowError:
        return math.inf if base > 0 or exponent % 2 == 0 else -math.inf
