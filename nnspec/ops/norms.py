"""Normalisation by statistics of each sample: layer, group and instance normalisation
(batch normalisation, which uses the mini-batch, is in `layers`).

Parameter names are PyTorch's (`weight` is γ, `bias` is β); none of these layers has
multiply-accumulates counted (only weighted layers' are)."""

from __future__ import annotations

import math

from .base import Arg, Example, Op, ShapeError, Tensor, _spatial_rank, n, register, shape_str


@register
class LayerNorm(Op):
    """Layer normalisation. `over="sample"` (the default) normalises each sample over all of
    its values, C·H·W for an image: PyTorch's nn.LayerNorm(normalized_shape=(C, H, W)), with
    γ and β of the sample's shape. `over="channels"` normalises the C values of each position
    separately, with γ and β of C values: the channels-last LayerNorm2d of torchvision's
    ConvNeXt. On a vector the two are the same."""

    name = "layernorm"
    category = "norm"
    traits = frozenset({"normalizes"})
    example = Example(((4, 3, 3),), (), {"over": "channels"})
    doc = ("Layer normalisation of each sample: over all its values (`over=\"sample\"`, "
           "nn.LayerNorm(C, H, W)) or over the channels at each position (`over=\"channels\"`, "
           "ConvNeXt's LayerNorm2d); γ (weight) and β (bias) of that shape.")
    args = (Arg("over", "enum:sample|channels", "sample"),
            Arg("eps", "posfloat", 1e-5),
            Arg("affine", "bool", True, doc="learn γ and β (PyTorch's elementwise_affine)"))

    @staticmethod
    def normalized(shape, a) -> tuple:
        return shape if a["over"] == "sample" else shape[:1]

    def tensors(self, ins, a):
        if not a["affine"]:
            return ()
        s = self.normalized(ins[0], a)
        return (Tensor("weight", s, "param"), Tensor("bias", s, "param"))

    def label(self, a):
        return "layernorm" if a["over"] == "sample" else "layernorm channels"

    def explain_shape(self, ins, out, a):
        s = self.normalized(ins[0], a)
        groups = ("once per sample" if s == ins[0] else
                  f"at each of the {n(_positions(ins[0]))} positions of a sample")
        return [f"layernorm keeps the shape: {shape_str(out)}; mean and variance over "
                f"{n(math.prod(s))} values, {groups}"]


@register
class GroupNorm(Op):
    name = "groupnorm"
    category = "norm"
    traits = frozenset({"normalizes"})
    example = Example(((4, 3, 3),), (2,))
    doc = ("Group normalisation (Wu & He 2018): each sample's channels in `groups` groups, "
           "each normalised over its C/groups·H·W values; γ, β per channel (nn.GroupNorm).")
    args = (Arg("groups", "count"), Arg("eps", "posfloat", 1e-5), Arg("affine", "bool", True))

    def infer(self, ins, a):
        c, g = ins[0][0], a["groups"]
        if c % g:
            raise ShapeError("NN025", f"groups={g} must divide the {c} channels", arg="groups",
                             help=f"choose groups among the divisors of {c}")
        return ins[0]

    def tensors(self, ins, a):
        c = ins[0][0]
        return (Tensor("weight", (c,), "param"), Tensor("bias", (c,), "param")) if a["affine"] else ()

    def label(self, a):
        return f"groupnorm {a['groups']}"

    def explain_shape(self, ins, out, a):
        c, g = ins[0][0], a["groups"]
        per = c // g * _positions(ins[0])
        return [f"groupnorm keeps the shape: {shape_str(out)}; {g} groups of {c}/{g} channels, "
                f"statistics over {n(per)} values each"]


@register
class InstanceNorm(Op):
    name = "instancenorm"
    category = "norm"
    traits = frozenset({"normalizes"})
    example = Example(((4, 5, 5),), (), {"affine": True, "track_running_stats": True})
    doc = ("Instance normalisation: each channel of each sample over its positions "
           "(nn.InstanceNorm1d/2d/3d; PyTorch's defaults: affine false, no running statistics).")
    args = (Arg("eps", "posfloat", 1e-5), Arg("momentum", "prob", 0.1), Arg("affine", "bool", False),
            Arg("track_running_stats", "bool", False))

    def infer(self, ins, a):
        _spatial_rank(ins[0], self.name)
        return ins[0]

    def tensors(self, ins, a):
        c = ins[0][0]
        ts = (Tensor("weight", (c,), "param"), Tensor("bias", (c,), "param")) if a["affine"] else ()
        if a["track_running_stats"]:
            ts += (Tensor("running_mean", (c,), "buffer"), Tensor("running_var", (c,), "buffer"),
                   Tensor("num_batches_tracked", (), "counter"))
        return ts

    def explain_shape(self, ins, out, a):
        return [f"instancenorm keeps the shape: {shape_str(out)}; statistics of each channel "
                f"over its {n(_positions(ins[0]))} positions"]


def _positions(shape) -> int:
    return math.prod(shape[1:])
