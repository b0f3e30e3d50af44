"""Regularising layers that are not dropout on activations: DropConnect (a linear layer whose
weights are dropped in training) and fractional max pooling (pseudo-random pooling regions).

Both draw from the stream ("dropout", layer name, step) of `nnspec.rng` in training, so the
torch and NumPy backends draw the same masks and pooling regions, and both behave
deterministically at evaluation:

- `dropconnect(out, p)` is `linear(out)` whose weight matrix is multiplied in training by a
  keep-mask (one Bernoulli(1−p) draw per weight, shared by the batch) scaled by 1/(1−p)
  (Wan et al. 2013, with inverted scaling): the expected weights are W, so evaluation is the
  plain linear layer with W. Written as its own layer, not a modifier after `linear`, because
  the mask acts on the layer's weights: the parameters are the layer's own (`weight`, `bias`,
  nn.Linear's state_dict names) and a modifier would have to reach into the layer before it.
  The bias is not dropped.
- `fractional_maxpool(ratio, kernel=2)` is PyTorch's FractionalMaxPool2d (Graham 2014):
  output size floor(N·ratio) per axis, window starts from one uniform sample per (sample,
  channel) and axis by PyTorch's interval formula. PyTorch has no evaluation mode for it (it
  keeps drawing); nnspec evaluates with the fixed sample 0.5 for every plane, the middle of
  the sample range, so evaluation is deterministic and equal in both backends.
"""

from __future__ import annotations

import math

from .base import Arg, ArgError, Example, Op, ShapeError, _spatial_rank, register, shape_str
from .layers import Linear


@register
class DropConnect(Linear):
    name = "dropconnect"
    category = "linear"
    traits = frozenset({"weighted", "random"})
    # the input (for dW), as linear; the weight's keep-mask is one per batch, not per sample:
    # nothing the per-sample activation memory counts
    keeps = frozenset({"input"})
    example = Example(((12,),), (5,), {"p": 0.25})
    doc = ("DropConnect (Wan et al. 2013): a linear layer whose weights (not activations) are "
           "zeroed with probability p in training, survivors scaled by 1/(1−p); evaluation uses "
           "the expected weights W. Parameters and MACs as `linear`.")
    args = (Arg("out", "count"), Arg("p", "prob", 0.5), Arg("bias", "bool", True))

    def validate(self, a):
        if a["p"] >= 1.0:
            raise ArgError("NN013", f"dropconnect: argument 'p' must be below 1 (p=1 drops every "
                                    f"weight), got {a['p']:g}", arg="p")

    def label(self, a):
        return f"dropconnect {a['out']} p={a['p']:g}"


@register
class FractionalMaxPool(Op):
    name = "fractional_maxpool"
    category = "pool"
    traits = frozenset({"random"})
    keeps = frozenset({"input", "indices"})  # as max pooling: PyTorch saves the argmax indices
    example = Example(((3, 9, 9),), (0.6,))
    doc = ("Fractional max pooling (Graham 2014, PyTorch's FractionalMaxPool2d): output "
           "floor(N·ratio) per axis, pseudo-random pooling regions drawn per sample and channel "
           "in training; at evaluation the fixed regions of sample 0.5.")
    args = (Arg("ratio", "posfloat"), Arg("kernel", "count", 2))

    def validate(self, a):
        if not a["ratio"] < 1.0:
            raise ArgError("NN013", f"fractional_maxpool: argument 'ratio' must be between 0 and 1 "
                                    f"(the output is floor(N·ratio)), got {a['ratio']:g}", arg="ratio")

    def infer(self, ins, a):
        shape = ins[0]
        if len(shape) != 3:
            _spatial_rank(shape, self.name, allowed=(2, 3, 4))  # a vector: the common message
            raise ShapeError("NN021", f"fractional_maxpool needs a CxHxW input (2-D pooling, as "
                                      f"PyTorch's FractionalMaxPool2d), got {shape_str(shape)}")
        k = a["kernel"]
        out = []
        for size in shape[1:]:
            o = int(size * a["ratio"])
            if o < 1 or o + k - 1 > size:
                raise ShapeError("NN020", f"a {k}x{k} window with ratio {a['ratio']:g} does not fit: "
                                          f"{o} outputs need {o + k - 1} inputs", about_input=True,
                                 help="use a larger ratio or a smaller kernel", arg="ratio")
            out.append(o)
        return (shape[0],) + tuple(out)

    def window(self, ins, out, a):
        # windows start about (N − k)/(O − 1) apart; the receptive field takes the widest gap
        return tuple((a["kernel"], max(1, math.ceil((N - a["kernel"]) / max(1, O - 1))))
                     for N, O in zip(ins[0][1:], out[1:]))

    def label(self, a):
        return f"fractional_maxpool {a['ratio']:g}"

    def explain_shape(self, ins, out, a):
        return [f"{ax}: floor({N}·{a['ratio']:g}) = {O}" for ax, N, O in zip("HW", ins[0][1:], out[1:])]

    def explain_params(self, ins, out, a):
        return ["pooling has no parameters"]


__all__ = ["DropConnect", "FractionalMaxPool"]
