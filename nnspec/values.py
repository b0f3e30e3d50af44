"""Values of evaluated expressions that are not plain numbers, strings or tuples."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import Span


@dataclass(frozen=True, slots=True)
class Sym:
    """A bare word in the train section (`loss cross_entropy`): a name, not a variable."""
    name: str
    span: Span

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class CallValue:
    """`sgd(lr=0.1, momentum=0.9)` in the train section."""
    name: str
    args: tuple
    kwargs: tuple  # ((name, value, span), ...)
    span: Span

    def __str__(self) -> str:
        parts = [fmt(a) for a in self.args] + [f"{k}={fmt(v)}" for k, v, _ in self.kwargs]
        return f"{self.name}({', '.join(parts)})"


def fmt(v) -> str:
    """A value as a spec would write it."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, tuple):
        return "(" + ", ".join(fmt(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)
