"""The op registry: the single source of truth for every layer kind.

Each op declares, once: its arguments and defaults, its shape rule, its parameter and
buffer tensors (names and shapes, as PyTorch names them), its multiply-accumulates, its
sliding window (for receptive fields) and how each of those numbers is derived (for
`nnspec explain`). The analyzer, the linter and the backends read them from here.

Conventions (domain.md): shapes are channel-first without the batch axis (C,H,W), (C,L) or
(F,); MACs count the multiply-accumulates of conv, linear and maxout layers, bias excluded.

>>> OPS["conv"].infer(((3, 227, 227),), OPS["conv"].bind((96, 11), {"stride": 4}))
(96, 55, 55)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

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


def _window_out(n_in: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    eff = d * (k - 1) + 1
    span = n_in + 2 * p - eff
    if ceil_mode:
        o = -(-span // s) + 1
        if (o - 1) * s >= n_in + p:  # PyTorch: the last window must start inside the input or left padding
            o -= 1
    else:
        o = span // s + 1
    return o


OPS: dict[str, "Op"] = {}


def register(cls):
    OPS[cls.name] = cls()
    return cls


class Op:
    name: ClassVar[str]
    args: ClassVar[tuple[Arg, ...]] = ()
    category: ClassVar[str] = "layer"
    doc: ClassVar[str] = ""
    # How the output is stored in a forward pass: "new" tensor, "inplace" (an elementwise op
    # that may overwrite its input, as torchvision runs ReLU) or "view" (no copy).
    stores: ClassVar[str] = "new"
    n_inputs: ClassVar[int] = 1  # 0 = any number (merges)

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
                from .errors import did_you_mean
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
        return ["no multiply-accumulates counted (only conv, linear and maxout are)"]


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


# ---- sliding windows: conv and pooling ---------------------------------------------------------

def window_axes(a: dict, rank: int) -> tuple:
    """(kernel, stride, pad, dilation) of a conv or pool, one value per spatial axis, pad="same"
    resolved. No checks beyond the axis count (`geometry` checks; the torch emitter passes
    symbolic values through here)."""
    k = _axes(a["kernel"], rank, "kernel")
    s = _axes(a["stride"] if a.get("stride") is not None else a["kernel"], rank, "stride")
    d = _axes(a.get("dilation", 1), rank, "dilation")
    pad = a.get("pad", 0)
    if isinstance(pad, str) and pad == "same":
        p = tuple(di * (ki - 1) // 2 for ki, di in zip(k, d))
    else:
        p = _axes(pad, rank, "pad")
    return k, s, p, d


_GEOMETRY: dict = {}


class _Windowed(Op):
    """Shared arithmetic of conv and pooling: O = floor((N - D(F-1) - 1 + 2P)/S) + 1."""

    has_dilation: ClassVar[bool] = True

    def geometry(self, ins, a):
        """(spatial sizes, kernel, stride, pad, dilation), one value per spatial axis.

        Memoised: the expander, the analysis passes and `explain` ask for the same layer's
        geometry several times, and networks repeat the same few layer shapes."""
        key = (ins[0], a["kernel"], a.get("stride"), a.get("pad", 0), a.get("dilation", 1))
        hit = _GEOMETRY.get(key)
        if hit is None:
            hit = self._geometry(ins, a)
            if len(_GEOMETRY) > 4096:
                _GEOMETRY.clear()
            _GEOMETRY[key] = hit
        return hit

    def _geometry(self, ins, a):
        shape = ins[0]
        k, s, p, d = window_axes(a, _spatial_rank(shape, self.name))
        if a.get("pad") == "same":
            if any(x != 1 for x in s):
                raise ShapeError("NN013", "pad=\"same\" needs stride 1", help="give the padding as a number",
                                 arg="pad")
            if any((di * (ki - 1)) % 2 for ki, di in zip(k, d)):
                raise ShapeError("NN013", "pad=\"same\" needs an odd kernel extent",
                                 help="pad an even kernel explicitly, e.g. pad=(1, 2) is not symmetric",
                                 arg="pad")
        return shape[1:], k, s, p, d

    def spatial_out(self, ins, a) -> tuple[int, ...]:
        sizes, k, s, p, d = self.geometry(ins, a)
        ceil_mode = a.get("ceil_mode", False)
        outs = []
        for N, K, S, P, D in zip(sizes, k, s, p, d):
            eff = D * (K - 1) + 1
            if self.category == "pool" and 2 * P > eff:
                raise ShapeError("NN020", f"padding {P} is more than half of the {K}-wide window",
                                 help=f"use pad ≤ {eff // 2}", arg="pad")
            o = _window_out(N, K, S, P, D, ceil_mode)
            if o < 1 or N + 2 * P < eff:
                what = "kernel" if self.category == "conv" else "window"
                win = "x".join(map(str, k))
                dil = (" dilated to " + "x".join(str(di * (ki - 1) + 1) for ki, di in zip(k, d))
                       if D > 1 else "")
                pad = f", even padded by {P}" if P else ""
                raise ShapeError("NN020", f"a {win} {what}{dil} does not fit{pad}", about_input=True,
                                 help="use a smaller kernel, add padding, or remove a downsampling layer earlier")
            outs.append(o)
        return tuple(outs)

    def window(self, ins, out, a):
        _, k, s, _, d = self.geometry(ins, a)
        return tuple((D * (K - 1) + 1, S) for K, S, D in zip(k, s, d))

    def explain_shape(self, ins, out, a):
        sizes, k, s, p, d = self.geometry(ins, a)
        axes = ("H", "W") if len(sizes) == 2 else ("L",) if len(sizes) == 1 else ("D", "H", "W")
        lines = []
        ceil_mode = a.get("ceil_mode", False)
        for ax, N, K, S, P, D, O in zip(axes, sizes, k, s, p, d, out[1:]):
            F = f"{K}" if D == 1 else f"({D}·({K}−1)+1)"
            rnd = "ceil" if ceil_mode else "floor"
            lines.append(f"{ax}: {rnd}(({N} − {F} + 2·{P}) / {S}) + 1 = {O}")
            rem = (N - (D * (K - 1) + 1) + 2 * P) % S
            if rem:
                unit = {"H": "row", "W": "column", "L": "position", "D": "slice"}[ax]
                unseen = unit if rem == 1 else f"{rem} {unit}s"
                lines.append(f"   note: ({N} − {F} + 2·{P}) mod {S} = {rem}: the window does not tile "
                             f"the input; " + ("the last window hangs over the edge (ceil_mode)"
                                               if ceil_mode else
                                               f"the last {unseen} of the padded input "
                                               f"{'is' if rem == 1 else 'are'} never seen"))
        return lines


def _tuple_str(v) -> str:
    return "x".join(map(str, v)) if isinstance(v, tuple) else f"{v}x{v}"


@register
class Conv(_Windowed):
    name = "conv"
    category = "conv"
    doc = "Convolution over the spatial axes (1-D for CxL inputs, 2-D for CxHxW)."
    args = (Arg("out", "count", doc="number of filters (output channels)"),
            Arg("kernel", "size", doc="F, or (F_h, F_w)"),
            Arg("stride", "size", 1),
            Arg("pad", "pad", 0, doc="zero padding P, (P_h, P_w) or \"same\""),
            Arg("dilation", "size", 1),
            Arg("groups", "count", 1),
            Arg("bias", "bool", True))

    def infer(self, ins, a):
        c = ins[0][0] if len(ins[0]) > 1 else None
        spatial = self.spatial_out(ins, a)
        g = a["groups"]
        if c % g or a["out"] % g:
            raise ShapeError("NN025", f"groups={g} must divide both the {c} input and the {a['out']} "
                                      f"output channels", arg="groups",
                             help=f"choose groups among the common divisors of {c} and {a['out']}")
        return (a["out"],) + spatial

    def tensors(self, ins, a):
        sizes, k, *_ = self.geometry(ins, a)
        w = Tensor("weight", (a["out"], ins[0][0] // a["groups"]) + tuple(k), "param")
        return (w, Tensor("bias", (a["out"],), "param")) if a["bias"] else (w,)

    def macs(self, ins, out, a):
        _, k, *_ = self.geometry(ins, a)
        return math.prod(out) * (ins[0][0] // a["groups"]) * math.prod(k)

    def label(self, a):
        s = f"conv {_tuple_str(a['kernel'])}/{_stride_str(a['stride'])}"
        if a["pad"] not in (0, (0, 0)):
            s += f" p{_stride_str(a['pad'])}"
        if a["dilation"] not in (1, (1, 1)):
            s += f" d{_stride_str(a['dilation'])}"
        if a["groups"] != 1:
            s += f" g{a['groups']}"
        return s

    def explain_params(self, ins, out, a):
        _, k, *_ = self.geometry(ins, a)
        cin, g, co = ins[0][0], a["groups"], a["out"]
        fk = "·".join(map(str, k))
        per = f"{fk}·{cin}" + (f"/{g}" if g > 1 else "")
        total = (math.prod(k) * cin // g + (1 if a["bias"] else 0)) * co
        if a["bias"]:
            return [f"({per} + 1)·{co} = {n(total)}   (weights {n(math.prod(k) * cin // g * co)} + biases {co})"]
        return [f"{per}·{co} = {n(total)}   (no bias)"]

    def explain_macs(self, ins, out, a):
        _, k, *_ = self.geometry(ins, a)
        cin, g = ins[0][0], a["groups"]
        return [f"C_out·O = {'·'.join(map(str, out))} outputs, each {'·'.join(map(str, k))}·{cin}"
                + (f"/{g}" if g > 1 else "") + f" MACs: {n(self.macs(ins, out, a))} "
                f"(FLOPs = 2 x MACs = {n(2 * self.macs(ins, out, a))})"]


def _stride_str(v) -> str:
    return "x".join(map(str, v)) if isinstance(v, tuple) else str(v)


class _Pool(_Windowed):
    category = "pool"

    def infer(self, ins, a):
        return (ins[0][0],) + self.spatial_out(ins, a)

    def label(self, a):
        stride = a["stride"] if a["stride"] is not None else a["kernel"]
        s = f"{self.name} {_tuple_str(a['kernel'])}/{_stride_str(stride)}"
        if a["pad"] not in (0, (0, 0)):
            s += f" p{_stride_str(a['pad'])}"
        if a["ceil_mode"]:
            s += " ceil"
        return s

    def explain_params(self, ins, out, a):
        return ["pooling has no parameters; depth is unchanged"]


@register
class MaxPool(_Pool):
    name = "maxpool"
    doc = "Max pooling; stride defaults to the kernel size."
    args = (Arg("kernel", "size"), Arg("stride", "size", None), Arg("pad", "pad", 0),
            Arg("dilation", "size", 1), Arg("ceil_mode", "bool", False))


@register
class AvgPool(_Pool):
    name = "avgpool"
    doc = "Average pooling; stride defaults to the kernel size."
    args = (Arg("kernel", "size"), Arg("stride", "size", None), Arg("pad", "pad", 0),
            Arg("ceil_mode", "bool", False), Arg("count_include_pad", "bool", True))


@register
class AdaptiveAvgPool(Op):
    name = "adaptive_avgpool"
    category = "pool"
    doc = "Average pooling to a fixed output size (PyTorch AdaptiveAvgPool)."
    args = (Arg("size", "size"),)

    def infer(self, ins, a):
        r = _spatial_rank(ins[0], self.name)
        return (ins[0][0],) + _axes(a["size"], r, "size")

    def window(self, ins, out, a):
        # Each output cell averages at most ceil(N/O) inputs, placed every floor(N/O).
        return tuple((-(-N // O), max(1, N // O)) for N, O in zip(ins[0][1:], out[1:]))

    def label(self, a):
        return f"adaptive_avgpool {_tuple_str(a['size'])}"

    def explain_shape(self, ins, out, a):
        return [f"output size is fixed by the layer: {shape_str(out)} (windows of about "
                f"{' x '.join(f'{N}/{O}' for N, O in zip(ins[0][1:], out[1:]))})"]

    def explain_params(self, ins, out, a):
        return ["pooling has no parameters"]


@register
class GlobalAvgPool(Op):
    name = "global_avgpool"
    category = "pool"
    doc = "Mean over all spatial positions; CxHxW -> C (pooling and flatten in one)."

    def infer(self, ins, a):
        _spatial_rank(ins[0], self.name)
        return (ins[0][0],)

    def window(self, ins, out, a):
        return tuple((N, N) for N in ins[0][1:])

    def explain_shape(self, ins, out, a):
        return [f"{shape_str(ins[0])} -> {ins[0][0]}: one mean per channel"]

    def explain_params(self, ins, out, a):
        return ["pooling has no parameters"]


@register
class LRN(Op):
    name = "lrn"
    category = "norm"
    doc = "Local response normalisation across `size` neighbouring channels (AlexNet)."
    args = (Arg("size", "count"), Arg("alpha", "float", 1e-4), Arg("beta", "float", 0.75),
            Arg("k", "float", 1.0))

    def infer(self, ins, a):
        _spatial_rank(ins[0], self.name)
        return ins[0]

    def label(self, a):
        return f"lrn {a['size']}"


@register
class Linear(Op):
    name = "linear"
    category = "linear"
    doc = "Fully connected layer on a feature vector: (in + 1)·out parameters."
    args = (Arg("out", "count"), Arg("bias", "bool", True))

    def infer(self, ins, a):
        if len(ins[0]) != 1:
            raise ShapeError("NN021", f"linear needs a feature vector, got a {shape_str(ins[0])} tensor",
                             help=f"add `flatten` before it ({shape_str(ins[0])} -> {math.prod(ins[0])}) "
                                  f"or `global_avgpool` (-> {ins[0][0]})")
        return (a["out"],)

    def tensors(self, ins, a):
        w = Tensor("weight", (a["out"], ins[0][0]), "param")
        return (w, Tensor("bias", (a["out"],), "param")) if a["bias"] else (w,)

    def macs(self, ins, out, a):
        return ins[0][0] * a["out"]

    def label(self, a):
        return f"linear {a['out']}"

    def explain_shape(self, ins, out, a):
        return [f"{ins[0][0]} features -> {a['out']}"]

    def explain_params(self, ins, out, a):
        if a["bias"]:
            return [f"({ins[0][0]} + 1)·{a['out']} = {n((ins[0][0] + 1) * a['out'])}"]
        return [f"{ins[0][0]}·{a['out']} = {n(ins[0][0] * a['out'])}   (no bias)"]

    def explain_macs(self, ins, out, a):
        m = ins[0][0] * a["out"]
        return [f"{ins[0][0]}·{a['out']} = {n(m)} (FLOPs = 2 x MACs = {n(2 * m)})"]


@register
class Maxout(Op):
    name = "maxout"
    category = "linear"
    doc = "max over `pieces` linear maps: (in + 1)·units·pieces parameters."
    args = (Arg("units", "count"), Arg("pieces", "count", 2))

    def infer(self, ins, a):
        if len(ins[0]) != 1:
            raise ShapeError("NN021", f"maxout needs a feature vector, got {shape_str(ins[0])}",
                             help="add `flatten` before it")
        return (a["units"],)

    def tensors(self, ins, a):
        u = a["units"] * a["pieces"]
        return (Tensor("weight", (u, ins[0][0]), "param"), Tensor("bias", (u,), "param"))

    def macs(self, ins, out, a):
        return ins[0][0] * a["units"] * a["pieces"]

    def label(self, a):
        return f"maxout {a['units']}x{a['pieces']}"

    def explain_params(self, ins, out, a):
        return [f"({ins[0][0]} + 1)·{a['units']}·{a['pieces']} = "
                f"{n((ins[0][0] + 1) * a['units'] * a['pieces'])}"]

    def explain_macs(self, ins, out, a):
        return [f"{ins[0][0]}·{a['units']}·{a['pieces']} = {n(self.macs(ins, out, a))}"]


@register
class Flatten(Op):
    name = "flatten"
    category = "reshape"
    stores = "view"
    doc = "CxHxW -> C·H·W features."

    def infer(self, ins, a):
        return (math.prod(ins[0]),)

    def window(self, ins, out, a):
        return "global"

    def explain_shape(self, ins, out, a):
        return [f"{'·'.join(map(str, ins[0]))} = {out[0]} features"]


@register
class BatchNorm(Op):
    name = "batchnorm"
    category = "norm"
    doc = "Batch normalisation per channel: gamma, beta trained; running mean/var are buffers."
    args = (Arg("eps", "posfloat", 1e-5), Arg("momentum", "prob", 0.1), Arg("affine", "bool", True))

    def tensors(self, ins, a):
        c = ins[0][0]
        ts = ((Tensor("weight", (c,), "param"), Tensor("bias", (c,), "param")) if a["affine"] else ())
        return ts + (Tensor("running_mean", (c,), "buffer"), Tensor("running_var", (c,), "buffer"),
                     Tensor("num_batches_tracked", (), "counter"))

    def explain_params(self, ins, out, a):
        c = ins[0][0]
        lines = [f"gamma and beta: 2·{c} = {n(2 * c)} trained"] if a["affine"] else []
        return lines + [f"running mean and variance: 2·{c} = {n(2 * c)} buffers (not trained)"]


@register
class Dropout(Op):
    name = "dropout"
    category = "regularization"
    stores = "inplace"
    doc = "Inverted dropout: zero with probability p in training, scale survivors by 1/(1-p)."
    args = (Arg("p", "prob", 0.5),)

    def label(self, a):
        return f"dropout {a['p']:g}"


class _Activation(Op):
    category = "activation"
    stores = "inplace"


def _activation(name_: str, doc_: str, args_: tuple = (), label_fmt=None):
    cls = type(name_.title().replace("_", ""), (_Activation,), {"name": name_, "doc": doc_, "args": args_})
    if label_fmt:
        cls.label = lambda self, a: label_fmt(a)
    return register(cls)


_activation("relu", "max(0, x)")
_activation("leaky_relu", "max(a·x, x), a = 0.01 by default", (Arg("a", "float", 0.01),),
            lambda a: f"leaky_relu {a['a']:g}")
_activation("rrelu", "leaky ReLU with a slope sampled in [lower, upper] during training",
            (Arg("lower", "float", 1 / 8), Arg("upper", "float", 1 / 3)))
_activation("elu", "x if x > 0 else a·(e^x − 1)", (Arg("a", "float", 1.0),),
            lambda a: f"elu {a['a']:g}")
_activation("gelu", "x·Φ(x)")
_activation("sigmoid", "1 / (1 + e^−x)")
_activation("tanh", "tanh(x)")


@register
class PReLU(_Activation):
    name = "prelu"
    doc = "max(a·x, x) with a learned slope a (one, or one per channel)"
    args = (Arg("per_channel", "bool", False), Arg("init", "float", 0.25))

    def tensors(self, ins, a):
        return (Tensor("weight", (ins[0][0] if a["per_channel"] else 1,), "param"),)


@register
class Softmax(_Activation):
    name = "softmax"
    stores = "new"
    doc = "exp(x_i) / Σ exp(x_j) over the channel (feature) axis"


@register
class LogSoftmax(_Activation):
    name = "log_softmax"
    stores = "new"
    doc = "log of softmax, over the channel (feature) axis"


@register
class Identity(Op):
    name = "identity"
    category = "reshape"
    stores = "view"
    doc = "passes its input through (a residual shortcut without weights)"


# ---- merges of parallel paths ----------------------------------------------------------------

@register
class Add(Op):
    name = "add"
    category = "merge"
    n_inputs = 0
    doc = "element-wise sum of parallel paths (residual connection)"

    def infer(self, ins, a):
        if any(s != ins[0] for s in ins[1:]):
            raise ShapeError("NN022", "add needs every path to have the same shape, got "
                             + ", ".join(shape_str(s) for s in ins), per_input=True,
                             help="project the shortcut, e.g. `conv(C, 1, stride=S, bias=false) batchnorm`")
        return ins[0]

    def explain_shape(self, ins, out, a):
        return [f"sum of {len(ins)} paths of shape {shape_str(out)}"]


@register
class Concat(Op):
    name = "concat"
    category = "merge"
    n_inputs = 0
    doc = "concatenation of parallel paths along channels (Inception, DenseNet)"

    def infer(self, ins, a):
        if any(len(s) != len(ins[0]) or s[1:] != ins[0][1:] for s in ins[1:]):
            raise ShapeError("NN023", "concat needs every path to have the same spatial size, got "
                             + ", ".join(shape_str(s) for s in ins), per_input=True,
                             help="make the branches use the same stride and 'same' padding")
        return (sum(s[0] for s in ins),) + ins[0][1:]

    def explain_shape(self, ins, out, a):
        return [" + ".join(str(s[0]) for s in ins) + f" = {out[0]} channels"]


@register
class Input(Op):
    name = "input"
    category = "input"
    n_inputs = 0
    doc = "the network input"

    def infer(self, ins, a):
        return a["shape"]

    def explain_shape(self, ins, out, a):
        return [f"declared by `input {shape_str(out)}`"]


USER_OPS = tuple(sorted(k for k, op in OPS.items() if op.category not in ("merge", "input")))
