"""Sliding windows: convolution and pooling, and their shared arithmetic
O = floor((N − D·(F − 1) − 1 + 2P) / S) + 1 (domain.md), with PyTorch's ceil-mode rule; and
the up-sampling ops, transposed convolution (O = (N − 1)·S − 2P + D·(F − 1) + output_pad + 1)
and interpolation."""

from __future__ import annotations

import math
from typing import ClassVar

from .base import (Arg, ArgError, Example, Op, ShapeError, Tensor, _axes, _spatial_rank, n,
                   register, shape_str)


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
    traits = frozenset({"weighted"})
    keeps = frozenset({"input"})
    example = Example(((4, 9, 9),), (6, 3), {"stride": 2, "pad": 1})
    doc = "Convolution over the spatial axes (1-D for CxL inputs, 2-D for CxHxW, 3-D for CxDxHxW)."
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
    example = Example(((4, 9, 9),), (3,), {"stride": 2, "pad": 1})

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
    keeps = frozenset({"input", "indices"})  # PyTorch keeps both for max_pool2d's backward
    doc = "Max pooling; stride defaults to the kernel size."
    args = (Arg("kernel", "size"), Arg("stride", "size", None), Arg("pad", "pad", 0),
            Arg("dilation", "size", 1), Arg("ceil_mode", "bool", False))


@register
class AvgPool(_Pool):
    name = "avgpool"
    traits = frozenset({"linear_eval"})
    keeps = frozenset()  # the gradient spreads evenly: only shapes are needed
    doc = "Average pooling; stride defaults to the kernel size."
    args = (Arg("kernel", "size"), Arg("stride", "size", None), Arg("pad", "pad", 0),
            Arg("ceil_mode", "bool", False), Arg("count_include_pad", "bool", True))


@register
class AdaptiveAvgPool(Op):
    name = "adaptive_avgpool"
    category = "pool"
    traits = frozenset({"linear_eval"})
    keeps = frozenset()
    example = Example(((4, 7, 7),), ((2, 3),))
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
    traits = frozenset({"linear_eval", "global_pool"})
    keeps = frozenset()
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



# ---- up-sampling: transposed convolution and interpolation -------------------------------------

@register
class ConvTranspose(Op):
    """Transposed convolution (deconvolution), as PyTorch's ConvTranspose1d/2d/3d.

    Not a `_Windowed` op: its output grows, O = (N − 1)·S − 2P + D·(F − 1) + output_pad + 1,
    and none of the forward-window rules (tiling, `pad="same"`) apply to it."""

    name = "conv_transpose"
    category = "upsample"  # not "conv": the forward-window rules read conv's geometry
    traits = frozenset({"weighted"})
    keeps = frozenset({"input"})
    example = Example(((4, 5, 5),), (6, 3), {"stride": 2, "pad": 1, "output_pad": 1})
    doc = ("Transposed convolution (deconvolution, up-sampling): O = (N−1)·S − 2P + D·(F−1) + "
           "output_pad + 1; weight C_in x C_out/groups x F_h x F_w as in PyTorch; MACs = "
           "C_in·H_in·W_in·(C_out/groups)·F_h·F_w (every input value times every weight it meets).")
    args = (Arg("out", "count", doc="output channels"),
            Arg("kernel", "size", doc="F, or (F_h, F_w)"),
            Arg("stride", "size", 1),
            Arg("pad", "pad", 0, doc="P: removed from both ends of the output (PyTorch's padding)"),
            Arg("output_pad", "pad", 0, doc="extra rows/columns at the end (PyTorch's output_padding)"),
            Arg("dilation", "size", 1),
            Arg("groups", "count", 1),
            Arg("bias", "bool", True))

    def validate(self, a):
        for arg in ("pad", "output_pad"):
            if a[arg] == "same":
                raise ArgError("NN013", f"conv_transpose: {arg}=\"same\" is not defined for a "
                                        f"transposed convolution", "give the padding as a number",
                               arg=arg)

    def axes(self, ins, a):
        """(spatial sizes, kernel, stride, pad, dilation, output_pad), one value per axis.
        (Not named `geometry`: lint's rules for forward windows must not apply here.)"""
        r = _spatial_rank(ins[0], self.name)
        k, s, p, d = window_axes(a, r)
        op = _axes(a["output_pad"], r, "output_pad")
        return ins[0][1:], k, s, p, d, op

    def infer(self, ins, a):
        sizes, k, s, p, d, op = self.axes(ins, a)
        c, g = ins[0][0], a["groups"]
        if c % g or a["out"] % g:
            raise ShapeError("NN025", f"groups={g} must divide both the {c} input and the {a['out']} "
                                      f"output channels", arg="groups",
                             help=f"choose groups among the common divisors of {c} and {a['out']}")
        outs = []
        for N, K, S, P, D, OP in zip(sizes, k, s, p, d, op):
            if OP >= max(S, D):
                raise ShapeError("NN013", f"output_pad {OP} must be smaller than the stride ({S}) "
                                          f"or the dilation ({D})", arg="output_pad",
                                 help="output_pad only picks among the sizes a stride > 1 makes ambiguous")
            o = (N - 1) * S - 2 * P + D * (K - 1) + OP + 1
            if o < 1:
                raise ShapeError("NN020", f"padding {P} removes the whole {K}-wide transposed "
                                          f"convolution's output", about_input=True, arg="pad",
                                 help="use less padding")
            outs.append(o)
        return (a["out"],) + tuple(outs)

    def tensors(self, ins, a):
        _, k, *_ = self.axes(ins, a)
        w = Tensor("weight", (ins[0][0], a["out"] // a["groups"]) + tuple(k), "param")
        return (w, Tensor("bias", (a["out"],), "param")) if a["bias"] else (w,)

    def macs(self, ins, out, a):
        _, k, *_ = self.axes(ins, a)
        return math.prod(ins[0]) * (a["out"] // a["groups"]) * math.prod(k)

    def window(self, ins, out, a):
        # An output position is reached by ceil(D·(F−1)+1 / S) input positions per axis. The
        # analyzer's jump counts whole input pixels, so it is not divided by S: receptive fields
        # after up-sampling are upper bounds.
        _, k, s, _, d, _ = self.axes(ins, a)
        return tuple((-(-(D * (K - 1) + 1) // S), 1) for K, S, D in zip(k, s, d))

    def label(self, a):
        s = f"conv_transpose {_tuple_str(a['kernel'])}/{_stride_str(a['stride'])}"
        if a["pad"] not in (0, (0, 0)):
            s += f" p{_stride_str(a['pad'])}"
        if a["output_pad"] not in (0, (0, 0)):
            s += f" op{_stride_str(a['output_pad'])}"
        if a["dilation"] not in (1, (1, 1)):
            s += f" d{_stride_str(a['dilation'])}"
        if a["groups"] != 1:
            s += f" g{a['groups']}"
        return s

    def explain_shape(self, ins, out, a):
        sizes, k, s, p, d, op = self.axes(ins, a)
        axes = ("H", "W") if len(sizes) == 2 else ("L",) if len(sizes) == 1 else ("D", "H", "W")
        return [f"{ax}: ({N} − 1)·{S} − 2·{P} + {D}·({K} − 1) + {OP} + 1 = {O}"
                for ax, N, K, S, P, D, OP, O in zip(axes, sizes, k, s, p, d, op, out[1:])]

    def explain_params(self, ins, out, a):
        _, k, *_ = self.axes(ins, a)
        cin, g, co = ins[0][0], a["groups"], a["out"]
        fk = "·".join(map(str, k))
        w = cin * (co // g) * math.prod(k)
        per = f"{cin}·{co}" + (f"/{g}" if g > 1 else "") + f"·{fk}"
        if a["bias"]:
            return [f"{per} + {co} = {n(w + co)}   (weights {n(w)} + biases {co})"]
        return [f"{per} = {n(w)}   (no bias)"]

    def explain_macs(self, ins, out, a):
        _, k, *_ = self.axes(ins, a)
        g = a["groups"]
        m = self.macs(ins, out, a)
        return [f"each of the {'·'.join(map(str, ins[0]))} input values meets {a['out']}"
                + (f"/{g}" if g > 1 else "") + f"·{'·'.join(map(str, k))} weights: {n(m)} MACs "
                f"(FLOPs = 2 x MACs = {n(2 * m)})"]


@register
class Upsample(Op):
    name = "upsample"
    category = "upsample"
    traits = frozenset({"linear_eval"})
    keeps = frozenset()  # a fixed linear map: backward needs only the shapes
    example = Example(((4, 3, 3),), (2,), {"mode": "bilinear"})
    doc = ("Up-sampling by an integer factor per spatial axis: nearest neighbour or bilinear "
           "(linear along every spatial axis, align_corners false), as PyTorch's nn.Upsample.")
    args = (Arg("scale", "size", doc="factor s, or one per spatial axis"),
            Arg("mode", "enum:nearest|bilinear", "nearest"))

    def infer(self, ins, a):
        r = _spatial_rank(ins[0], self.name)
        return (ins[0][0],) + tuple(N * s for N, s in zip(ins[0][1:], _axes(a["scale"], r, "scale")))

    def window(self, ins, out, a):
        # nearest: each output copies one input; bilinear (s > 1): it mixes the 2 nearest inputs
        # per axis. The jump is not divided (see conv_transpose).
        scale = _axes(a["scale"], len(ins[0]) - 1, "scale")
        return tuple((2 if a["mode"] == "bilinear" and s > 1 else 1, 1) for s in scale)

    def label(self, a):
        return f"upsample x{_stride_str(a['scale'])} {a['mode']}"

    def explain_shape(self, ins, out, a):
        r = len(ins[0]) - 1
        return [f"{N}·{s} = {O}" for N, s, O in zip(ins[0][1:], _axes(a["scale"], r, "scale"), out[1:])]

    def explain_params(self, ins, out, a):
        return ["up-sampling has no parameters"]
