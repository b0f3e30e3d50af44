"""The syntax tree of a .nn file, as written (before blocks and repeats are expanded).

Produced by `nnspec.parser`, consumed by `nnspec.expand`. Every node has a `span`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from .errors import Span


# ---- expressions ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Const:
    value: object  # int | float | str | bool
    span: Span


@dataclass(frozen=True, slots=True)
class Var:
    name: str
    span: Span


@dataclass(frozen=True, slots=True)
class Attr:
    obj: str
    attr: str
    span: Span


@dataclass(frozen=True, slots=True)
class CallExpr:
    """`sgd(lr=0.1)` inside an expression or train entry: a named value with arguments."""
    name: str
    args: tuple["Expr", ...]
    kwargs: tuple["Kwarg", ...]
    span: Span


@dataclass(frozen=True, slots=True)
class TupleExpr:
    items: tuple["Expr", ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Unary:
    op: str  # "-" | "not"
    operand: "Expr"
    span: Span


@dataclass(frozen=True, slots=True)
class Binary:
    op: str  # + - * / // % ** == != < <= > >= and or
    left: "Expr"
    right: "Expr"
    span: Span


@dataclass(frozen=True, slots=True)
class Index:
    """`depths[s]`: an item of a tuple (negative indices count from the end)."""
    obj: "Expr"
    index: "Expr"
    span: Span


@dataclass(frozen=True, slots=True)
class IfExpr:
    then: "Expr"
    test: "Expr"
    orelse: "Expr"
    span: Span


Expr = Union[Const, Var, Attr, CallExpr, TupleExpr, Unary, Binary, Index, IfExpr]


@dataclass(frozen=True, slots=True)
class Kwarg:
    name: str
    value: Expr
    span: Span


# ---- statements ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Call:
    """An op (`conv(96, 11, stride=4)`) or a block instance (`basic(64)`)."""
    name: str
    args: tuple[Expr, ...]
    kwargs: tuple[Kwarg, ...]
    span: Span
    name_span: Span


@dataclass(frozen=True, slots=True)
class Group:
    body: tuple["Stmt", ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Merge:
    """`add { … }`, `concat { … }`, `mul { … }` (a merge op of the registry): each statement of
    the body is one parallel path."""
    kind: str  # the merge op: "add" | "concat" | "mul"
    paths: tuple["Stmt", ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Repeat:
    count: Expr
    var: str | None
    body: tuple["Stmt", ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Cond:
    test: Expr
    then: tuple["Stmt", ...]
    orelse: tuple["Stmt", ...] | None
    span: Span


Item = Union[Call, Group, Merge, Repeat, Cond]


@dataclass(frozen=True, slots=True)
class ShapeExpr:
    dims: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Stmt:
    """One line: an optional label, a chain of items, an optional `-> shape` assertion.

    `label` is the label as written; when it holds `{expressions}` (`denselayer{i + 1}`),
    `label_parts` is its text and expressions in order (`("denselayer", Binary(...))`) and
    the expander evaluates it (`expr.label_text`)."""
    label: str | None
    label_span: Span | None
    items: tuple[Item, ...]
    expect: ShapeExpr | None
    span: Span
    label_parts: tuple | None = None


# ---- top level -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Param:
    name: str
    default: Expr | None
    span: Span


@dataclass(frozen=True, slots=True)
class Header:
    name: str
    params: tuple[Param, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class InputDecl:
    shape: ShapeExpr
    span: Span


@dataclass(frozen=True, slots=True)
class BlockDef:
    name: str
    params: tuple[Param, ...]
    body: tuple[Stmt, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class TrainEntry:
    key: str
    args: tuple[Expr, ...]
    kwargs: tuple[Kwarg, ...]
    span: Span
    key_span: Span


@dataclass(frozen=True, slots=True)
class Train:
    entries: tuple[TrainEntry, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Use:
    """`use "blocks.nn"`: bring the block definitions of another file into scope."""
    path: str
    span: Span


@dataclass(frozen=True, slots=True)
class Module:
    """A whole file, in source order."""
    file: str
    source: str
    headers: tuple[Header, ...]
    inputs: tuple[InputDecl, ...]
    blocks: tuple[BlockDef, ...]
    body: tuple[Stmt, ...]
    trains: tuple[Train, ...]
    uses: tuple[Use, ...] = ()
