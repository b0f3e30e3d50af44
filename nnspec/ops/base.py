"""The op registry's foundation: `Op`, its arguments, tensors, traits and the registry dict.

Every fact about an op lives on its registry entry (one class per layer kind; activations
are rows of one table in `activations.py`): arguments and defaults, shape rule, parameter
and buffer tensors (named as PyTorch names them), multiply-accumulates, sliding window (for
receptive fields), traits (what lint, init and the backends need to know), what its backward
pass keeps (the analyzer's training-memory figure), an example call (docs, generic tests,
fuzzing), and how each number is derived (`nnspec explain`).

Conventions (domain.md): shapes are channel-first without the batch axis (C,H,W), (C,L) or
(F,); MACs count the multiply-accumulates of weighted layers (conv, linear, maxout, …),
bias excluded.

>>> from nnspec.ops import OPS
>>> OPS["conv"].infer(((3, 227, 227),), OPS["conv"].bind((96, 11), {"stride": 4}))
(96, 55, 55)
>>> sorted(OPS["relu"].traits)
['elementwise', 'relu_like']
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, Mapping

Shape = tuple[int, ...]
REQUIRED = object()


class ShapeError(Exception):
    """An op cannot be applied to its input(s). `code` is a diagnostic code."""

    def __init__(self, code: str, message: str, help: str | None = None, per_input: bool = False,
                 arg: str | None = None, about_input: bool = False):
        super().__init__(message)
        self.code, self.message, self.help, self.per_input = code, message, help, per_input
        self.arg = arg                  # the argument at fault, where the caret should point
        self.about_input = about_input  # the message completes "input to <layer> is <shape>; …"


class ArgError(Exception):
    def __init__(self, code: str, message: str, help: str | None = None, arg: str | None = None):
        super().__init__(message)
        self.code, self.message, self.help, self.arg = code, message, help, arg


@dataclass(frozen=True, slots=True)
class Arg:
    name: str
    kind: str  # count | size | pad | nonneg | float | posfloat | prob | bool | dim | str | ints | enum:a|b
    default: object = REQUIRED
    doc: str = ""


@dataclass(frozen=True, slots=True)
class Tensor:
    """A parameter or buffer of a layer, named as in PyTorch's state_dict."""
    name: str
    shape: Shape
    role: str  # "param" (trainable) | "buffer" (running statistics) | "counter" (num_batches_tracked)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def fans(self) -> tuple[int, int]:
        """(fan_in, fan_out) of a weight of 2 or more axes, as torch.nn.init computes them."""
        receptive = math.prod(self.shape[2:])
        return self.shape[1] * receptive, self.shape[0] * receptive


def n(x: int) -> str:
    """34944 -> '34,944'"""
    return f"{x:,}"


def shape_str(shape: Shape | None) -> str:
    return "?" if shape is None else "x".join(map(str, shape))


def _axes(value, rank: int, what: str) -> tuple[int, ...]:
    if isinstance(value, tuple):
        if len(value) != rank:
            raise ShapeError("NN021", f"{what} {value} has {len(value)} values but the input has "
                                      f"{rank} spatial {'axis' if rank == 1 else 'axes'}")
        return value
    return (value,) * rank


def _spatial_rank(shape: Shape, op: str, allowed=(2, 3, 4)) -> int:
    if len(shape) not in allowed:
        if len(shape) == 1:
            raise ShapeError("NN021", f"{op} needs a CxHxW (or CxL) input, got a vector of "
                                      f"{shape[0]} features",
                             help="spatial layers go before `flatten`; use `linear` on vectors")
        raise ShapeError("NN021", f"{op} cannot take a {len(shape)}-D input {shape_str(shape)}")
    return len(shape) - 1


OPS: dict[str, "Op"] = {}


def register(cls):
    unknown = set(cls.traits) - set(TRAITS)
    if unknown:
        raise AssertionError(f"{cls.name}: unknown traits {sorted(unknown)}")
    if set(cls.keeps) - set(KEEPS):
        raise AssertionError(f"{cls.name}: keeps {sorted(cls.keeps)}, expected among {KEEPS}")
    OPS[cls.name] = cls()
    return cls


# Traits: the facts lint, init, the analyzer and the backends ask of an op. Name lists of
# ops anywhere else are derived from these (`with_trait`), never kept by hand.
TRAITS = {
    "weighted": "has a weight with a fan-in (conv, linear, …): init draws it by fan, lint's "
                "variance estimate multiplies by fan_in·Var(W)",
    "elementwise": "each output value depends on the input value at the same position only",
    "relu_like": "a rectifier: identity-like for x > 0, does not saturate there",
    "saturating": "flat at both ends (sigmoid-like): gradients vanish for large |x|",
    "probabilities": "outputs probabilities that sum to 1 over the channels",
    "log_probabilities": "outputs log-probabilities over the channels",
    "linear_eval": "a linear function of its input at evaluation (no weights of its own)",
    "normalizes": "rescales its input by statistics of the input (batch norm, layer norm, …)",
    "batch_stats": "uses statistics of the mini-batch in training",
    "random": "draws random numbers in training (a named random stream of nnspec.rng)",
    "train_only": "identity at evaluation (dropout, stochastic depth)",
    "merge": "joins several parallel paths",
    "global_pool": "reduces every spatial position of a channel to one value",
}

# What a backward pass keeps of a layer: its input, its output, a mask (1 byte per element),
# the argmax indices of max pooling (8 bytes per output element, as PyTorch stores them), or
# nothing beyond its parameters. The analyzer's training-memory figure reads this.
KEEPS = ("input", "output", "mask", "indices")


@dataclass(frozen=True, slots=True)
class Example:
    """A small call of an op, valid as written: the input shape(s), positional and keyword
    arguments. Docs, the generic backend tests and fuzzing build from it."""
    inputs: tuple[Shape, ...]
    pos: tuple = ()
    kw: Mapping = field(default_factory=dict)


def with_trait(trait: str) -> frozenset[str]:
    """The names of the registered ops that have a trait.

    >>> "sigmoid" in with_trait("saturating")
    True
    """
    if trait not in TRAITS:
        raise KeyError(f"unknown trait {trait!r}")
    return frozenset(name for name, op in OPS.items() if trait in op.traits)


class OpsWith:
    """A live view of the ops having any of some traits: `"relu6" in OpsWith("relu_like")`.
    Reads the registry at each test, so an op registered later is seen too."""

    __slots__ = ("traits",)

    def __init__(self, *traits: str):
        unknown = set(traits) - set(TRAITS)
        if unknown:
            raise KeyError(f"unknown traits {sorted(unknown)}")
        self.traits = traits

    def __contains__(self, name) -> bool:
        op = OPS.get(name)
        return op is not None and any(t in op.traits for t in self.traits)

    def __iter__(self):
        return iter(sorted(name for name in OPS if name in self))

    def __repr__(self):
        return f"OpsWith{self.traits}"


class Op:
    name: ClassVar[str]
    args: ClassVar[tuple[Arg, ...]] = ()
    category: ClassVar[str] = "layer"
    doc: ClassVar[str] = ""
    # How the output is stored in a forward pass: "new" tensor, "inplace" (an elementwise op
    # that may overwrite its input, as torchvision runs ReLU) or "view" (no copy).
    stores: ClassVar[str] = "new"
    n_inputs: ClassVar[int] = 1  # 0 = any number (merges)
    traits: ClassVar[frozenset[str]] = frozenset()
    keeps: ClassVar[frozenset[str]] = frozenset({"input"})  # see KEEPS
    example: ClassVar[Example] = Example(((4, 8, 8),))

    def keeps_for(self, a: dict) -> frozenset[str]:
        """What backward keeps for these arguments (an op whose needs depend on its arguments
        overrides this)."""
        return self.keeps

    # ---- arguments
    def bind(self, pos: tuple, kw: dict) -> dict:
        """Positional and keyword values -> every argument, type-checked, defaults filled in."""
        args = self.args
        if not pos and not kw:  # `relu`, `batchnorm`: the defaults (computed once per op)
            defaults = self.__dict__.get("_defaults")
            if defaults is None:
                defaults = self.__dict__["_defaults"] = (
                    {a.name: a.default for a in args} if all(a.default is not REQUIRED for a in args) else False)
            if defaults is not False:
                out = dict(defaults)
                self.validate(out)
                return out
        if len(pos) > len(args):
            raise ArgError("NN012", f"{self.name} takes at most {len(args)} positional "
                                    f"argument{'s' if len(args) != 1 else ''}, got {len(pos)}",
                           self.usage())
        names = self._names()
        given = {a.name: v for a, v in zip(args, pos)}
        for k, v in kw.items():
            if k not in names:
                from ..errors import did_you_mean
                raise ArgError("NN011", f"{self.name} has no argument '{k}'",
                               did_you_mean(k, names) or self.usage(), arg=k)
            if k in given:
                raise ArgError("NN012", f"argument '{k}' of {self.name} given twice", self.usage(), arg=k)
            given[k] = v
        out = {}
        for a in args:
            if a.name in given:
                out[a.name] = _check(self.name, a, given[a.name])
            elif a.default is REQUIRED:
                raise ArgError("NN012", f"{self.name} needs argument '{a.name}'", self.usage())
            else:
                out[a.name] = a.default
        self.validate(out)
        return out

    def _names(self) -> dict:
        names = self.__dict__.get("_arg_names")
        if names is None:
            names = self.__dict__["_arg_names"] = {a.name: a for a in self.args}
        return names

    def usage(self) -> str:
        parts = [a.name if a.default is REQUIRED else f"{a.name}={_lit(a.default)}" for a in self.args]
        return f"usage: {self.name}({', '.join(parts)})" if parts else f"usage: {self.name}"

    def validate(self, a: dict) -> None:
        """Checks between arguments, after each was type-checked."""

    # ---- the facts
    def infer(self, ins: tuple[Shape, ...], a: dict) -> Shape:
        return ins[0]

    def tensors(self, ins: tuple[Shape, ...], a: dict) -> tuple[Tensor, ...]:
        return ()

    def macs(self, ins: tuple[Shape, ...], out: Shape, a: dict) -> int:
        return 0

    def window(self, ins: tuple[Shape, ...], out: Shape, a: dict):
        """Per spatial axis (kernel extent, stride) for receptive fields; None: elementwise."""
        return None

    def label(self, a: dict) -> str:
        return self.name

    # ---- derivations for `nnspec explain`: lists of text lines
    def explain_shape(self, ins, out, a) -> list[str]:
        return [f"{self.name} keeps the shape: {shape_str(out)}"]

    def explain_params(self, ins, out, a) -> list[str]:
        ts = self.tensors(ins, a)
        if not ts:
            return ["no parameters"]
        lines = [f"{t.name} {'x'.join(map(str, t.shape)) or 'scalar'} = {n(t.numel)}"
                 + ("" if t.role == "param" else f" ({'buffer, not trained' if t.role == 'buffer' else 'counter, not counted'})")
                 for t in ts]
        return lines

    def explain_macs(self, ins, out, a) -> list[str]:
        return ["no multiply-accumulates counted (only weighted layers are: conv, conv_transpose, "
                "linear, maxout)"]


def _lit(v) -> str:
    """A value as a spec writes it (`true`, `"same"`, `(3, 5)`)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, tuple):
        return "(" + ", ".join(_lit(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, float):
        return f"{v:g}"
    return str(getattr(v, "name", v))


def _check(op: str, a: Arg, v):
    def bad(what: str):
        return ArgError("NN013", f"{op}: argument '{a.name}' must be {what}, got {_lit(v)}", arg=a.name)

    kind = a.kind
    if kind in ("size", "pad"):
        if kind == "pad" and v == "same":
            return v
        items = v if isinstance(v, tuple) else (v,)
        if not items or len(items) > 3:
            raise bad("an integer or a tuple of 1 to 3 integers")
        for x in items:
            if isinstance(x, bool) or not isinstance(x, int):
                raise bad("an integer or a tuple of integers" + (" or \"same\"" if kind == "pad" else ""))
            if kind == "size" and x < 1:
                raise bad("positive")
            if kind == "pad" and x < 0:
                raise bad("zero or positive")
        return v
    if kind in ("count", "nonneg", "dim"):
        if isinstance(v, bool) or not isinstance(v, int):
            raise bad("an integer")
        if kind == "count" and v < 1:
            raise bad("a positive integer")
        if kind == "nonneg" and v < 0:
            raise bad("zero or positive")
        return v
    if v is None and a.default is None:
        return None
    if kind in ("float", "posfloat", "prob"):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise bad("a number")
        v = float(v)
        if not math.isfinite(v):
            raise bad("a finite number")
        if kind == "posfloat" and v <= 0:
            raise bad("positive")
        if kind == "prob" and not 0.0 <= v <= 1.0:
            raise bad("a probability between 0 and 1")
        return v
    if kind == "bool":
        if not isinstance(v, bool):
            raise bad("true or false")
        return v
    if kind.startswith("enum:"):
        choices = kind[5:].split("|")
        word = getattr(v, "name", v)
        if not isinstance(word, str) or word not in choices:
            raise bad("one of " + ", ".join(choices))
        return word
    if kind == "str":
        if not isinstance(v, str):
            raise bad("a string in quotes")
        return v
    if kind == "ints":
        items = v if isinstance(v, tuple) else (v,)
        if not items or any(isinstance(x, bool) or not isinstance(x, int) or x < 0 for x in items):
            raise bad("a tuple of non-negative integers, e.g. (30, 60)")
        return items
    raise AssertionError(kind)

