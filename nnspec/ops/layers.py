"""Layers without a sliding window: normalisation, fully connected, reshapes, regularisers,
the merges of parallel paths, and the network input."""

from __future__ import annotations

import math

from .base import Arg, Example, Op, ShapeError, Tensor, _spatial_rank, n, register, shape_str


@register
class LRN(Op):
    name = "lrn"
    category = "norm"
    keeps = frozenset({"input", "output"})
    example = Example(((6, 4, 4),), (3,))
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
    traits = frozenset({"weighted"})
    example = Example(((12,),), (5,))
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
    traits = frozenset({"weighted"})
    keeps = frozenset({"input", "output"})  # the output marks which piece won
    example = Example(((12,),), (3,), {"pieces": 3})
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
    traits = frozenset({"linear_eval"})
    keeps = frozenset()
    example = Example(((4, 3, 3),))
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
    traits = frozenset({"normalizes", "batch_stats", "linear_eval"})
    example = Example(((4, 5, 5),))
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
    traits = frozenset({"elementwise", "random", "train_only", "linear_eval"})
    keeps = frozenset({"mask"})
    example = Example(((10,),), (0.25,))
    doc = "Inverted dropout: zero with probability p in training, scale survivors by 1/(1-p)."
    args = (Arg("p", "prob", 0.5),)

    def label(self, a):
        return f"dropout {a['p']:g}"


@register
class StochasticDepth(Op):
    name = "stochastic_depth"
    category = "regularization"
    # The identity at evaluation returns its input itself: a view, so that nothing after it
    # overwrites that value in place (another path may read it). In training the product with
    # the mask is a new tensor that backward does not keep.
    stores = "view"
    traits = frozenset({"elementwise", "random", "train_only", "linear_eval"})
    keeps = frozenset()  # its mask is one value per sample (row) or per batch: nothing to count
    example = Example(((4, 5, 5),), (0.2,))
    doc = ("Stochastic depth (Huang et al. 2016) on a residual branch: in training, zero the "
           "whole branch with probability p per sample (`mode=\"row\"`) or for the whole batch "
           "(`\"batch\"`) and scale survivors by 1/(1−p); identity at evaluation "
           "(torchvision's StochasticDepth).")
    args = (Arg("p", "prob"), Arg("mode", "enum:row|batch", "row"))

    def label(self, a):
        return f"stochastic_depth {a['p']:g}" + ("" if a["mode"] == "row" else " batch")


@register
class Identity(Op):
    name = "identity"
    category = "reshape"
    stores = "view"
    traits = frozenset({"elementwise", "linear_eval"})
    keeps = frozenset()
    doc = "passes its input through (a residual shortcut without weights)"


# ---- merges of parallel paths ----------------------------------------------------------------

@register
class Add(Op):
    name = "add"
    category = "merge"
    traits = frozenset({"merge"})
    keeps = frozenset()
    example = Example(((4, 5, 5), (4, 5, 5)))
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
    traits = frozenset({"merge"})
    keeps = frozenset()
    example = Example(((3, 5, 5), (2, 5, 5)))
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
class Mul(Op):
    name = "mul"
    category = "merge"
    traits = frozenset({"merge"})
    keeps = frozenset({"input"})  # each factor's gradient is the other factors
    example = Example(((4, 5, 5), (4, 1, 1)))
    n_inputs = 0
    doc = ("element-wise product of parallel paths, broadcasting axes of size 1 (squeeze-and-"
           "excitation: a Cx1x1 path scales the CxHxW map); no MACs counted")

    def infer(self, ins, a):
        rank = len(ins[0])
        out = []
        for axis in range(rank):
            sizes = {s[axis] for s in ins if len(s) == rank} - {1}
            if any(len(s) != rank for s in ins) or len(sizes) > 1:
                raise ShapeError("NN022", "mul needs paths whose shapes broadcast (each axis equal "
                                          "or 1, same rank), got " + ", ".join(shape_str(s) for s in ins),
                                 per_input=True,
                                 help=f"along each axis the sizes must be equal or 1: e.g. a gate "
                                      f"`adaptive_avgpool(1) conv({max(s[0] for s in ins)}, 1) sigmoid` "
                                      f"scales every channel")
            out.append(sizes.pop() if sizes else 1)
        return tuple(out)

    def explain_shape(self, ins, out, a):
        return [" * ".join(shape_str(s) for s in ins) + f" -> {shape_str(out)} (axes of size 1 broadcast)"]


@register
class Input(Op):
    name = "input"
    category = "input"
    keeps = frozenset()
    example = Example(())
    n_inputs = 0
    doc = "the network input"

    def infer(self, ins, a):
        return a["shape"]

    def explain_shape(self, ins, out, a):
        return [f"declared by `input {shape_str(out)}`"]

