"""NN5xx: normalisation, dropout and regularisation."""

from __future__ import annotations

import math

from ..ops import shape_str
from .catalogue import rule
from .context import NORMALIZES, Context, num, plural


@rule(
    "NN501", "bias-before-batchnorm", "warning",
    summary="A conv/linear layer with a bias whose output goes straight into batch norm.",
    why="Batch norm subtracts the per-channel mean, which removes any constant the bias adds; "
        "its own beta plays the bias's role. The bias parameters are redundant (the message "
        "counts them).",
    bad="""
        input 3x8x8
        conv(16, 3, pad=1)
        batchnorm relu
    """,
    good="""
        input 3x8x8
        conv(16, 3, pad=1, bias=false)
        batchnorm relu
    """,
    fix="Add `bias=false` to the layer before batch norm.",
)
def bias_before_bn(cx: Context):
    for nd in cx.weighted:
        if not nd.attrs.get("bias", nd.op == "maxout"):
            continue
        users = cx.users(nd)
        if len(users) == 1 and users[0].op == "batchnorm":
            n = nd.attrs.get("out", nd.shape[0])
            yield cx.hit(nd, f"{nd.name}: its {plural(n, 'bias', 'biases')} are cancelled by "
                             f"{users[0].name} (batch norm subtracts the mean)",
                         help="add `bias=false`")


_TO_BN = frozenset({"flatten", "identity", "conv", "linear", "avgpool", "adaptive_avgpool",
                    "global_avgpool"})


@rule(
    "NN502", "dropout-before-batchnorm", "warning",
    summary="Dropout (or dropconnect, stochastic depth) whose output reaches batch norm "
            "through only linear layers.",
    why="Dropout changes the variance of its output between training and inference; the "
        "batch norm statistics gathered in training then do not fit at test time "
        "(the 'variance shift' of Li et al. 2019), which costs accuracy.",
    bad="""
        input 64
        linear(64, bias=false)
        batchnorm relu dropout(0.5)
        linear(64, bias=false)
        batchnorm relu
        linear(10)
    """,
    good="""
        input 64
        linear(64, bias=false)
        batchnorm relu
        linear(64, bias=false)
        batchnorm relu dropout(0.5)
        linear(10)
    """,
    fix="Move dropout after the last batch norm (just before the classifier).",
)
def dropout_before_bn(cx: Context):
    # every layer that drops with a probability p in training: dropout, stochastic depth and
    # dropconnect (its dropped weights shift the output's variance just the same)
    for nd in cx.nodes[1:]:
        if "random" not in nd.opdef.traits or not nd.attrs.get("p"):
            continue
        nxt = cx.ahead(nd, _TO_BN)
        if nxt is not None and nxt.op == "batchnorm":
            what = "dropconnect" if "weighted" in nd.opdef.traits else "dropout"
            yield cx.hit(nd, f"{nd.name}: {what} feeds {nxt.name} (batch norm) with only linear "
                             f"layers between")


@rule(
    "NN503", "dropout-drops-everything", "error",
    summary="dropout(p=1).",
    why="Every unit is zeroed in training (and inverted dropout divides by 1 − p = 0): "
        "nothing after it can learn.",
    bad="""
        input 64
        linear(32) relu dropout(1.0)
        linear(10)
    """,
    good="""
        input 64
        linear(32) relu dropout(0.5)
        linear(10)
    """,
    fix="Use a probability in [0, 0.5] (0.5 for wide FC layers, 0.1–0.3 elsewhere).",
)
def dropout_everything(cx: Context):
    for nd in cx.nodes[1:]:
        if nd.op == "dropout" and nd.attrs["p"] >= 1:
            yield cx.hit(nd, f"{nd.name}: dropout p={num(nd.attrs['p'])} zeroes every unit")


@rule(
    "NN504", "dropout-above-half", "warning",
    summary="Dropout with 0.5 < p < 1.",
    why="More than half of the units are dropped at each step: the network underfits and "
        "trains slowly; 0.5 is the usual maximum for hidden layers (Srivastava et al. 2014).",
    bad="""
        input 64
        linear(32) relu dropout(0.8)
        linear(10)
    """,
    good="""
        input 64
        linear(32) relu dropout(0.5)
        linear(10)
    """,
    fix="Use p ≤ 0.5 (p is the probability of dropping a unit, not of keeping it).",
)
def dropout_above_half(cx: Context):
    for nd in cx.nodes[1:]:
        p = nd.attrs.get("p") if nd.op == "dropout" else None
        if p is not None and 0.5 < p < 1:
            yield cx.hit(nd, f"{nd.name}: dropout p={num(p)} drops {p:.0%} of the units",
                         help=f"if {1 - p:.0%} was meant as the keep probability, write "
                              f"dropout({num(round(1 - p, 6))})")


@rule(
    "NN505", "dropout-on-logits", "warning",
    summary="Dropout as the network's last layer, on its outputs.",
    why="It zeroes class scores (or regression outputs) at random during training, so the "
        "loss is computed on corrupted predictions.",
    bad="""
        input 64
        linear(32) relu
        linear(10) dropout(0.5)
    """,
    good="""
        input 64
        linear(32) relu dropout(0.5)
        linear(10)
    """,
    fix="Apply dropout before the last layer, not after it.",
)
def dropout_on_logits(cx: Context):
    out = cx.output
    if out.op == "dropout" and out.attrs["p"] > 0:
        yield cx.hit(out, f"{out.name}: dropout on the network's output")


@rule(
    "NN506", "batchnorm-with-batch-of-one", "error",
    summary="Batch norm trained with batches of one sample: `batch 1`, or a dataset whose "
            "last partial batch holds a single sample.",
    why="The batch statistics of one sample are degenerate (a variance of 0 over a feature "
        "vector); PyTorch raises 'Expected more than 1 value per channel when training'.",
    bad="""
        input 64
        linear(32, bias=false)
        batchnorm relu
        linear(10)
        train {
          batch 1
        }
    """,
    good="""
        input 64
        linear(32, bias=false)
        batchnorm relu
        linear(10)
        train {
          batch 32
        }
    """,
    fix="Use batches of at least 16 samples, change the batch size so that no batch of 1 "
        "remains, or drop the last partial batch.",
)
def bn_batch_of_one(cx: Context):
    t = cx.train
    if t is None or not t.batch or not any(nd.op == "batchnorm" for nd in cx.nodes):
        return
    if t.batch == 1:
        yield cx.hit(cx.span("batch"), "batch 1 with batch norm: the batch statistics of one "
                                       "sample are degenerate")
        return
    n = cx.train_samples
    if n and n > t.batch and n % t.batch == 1:
        yield cx.hit(cx.span("batch"), f"the last batch of each epoch holds 1 sample "
                                       f"({n:,} training samples = {n // t.batch} × {t.batch} + 1)",
                     help=f"use batch {t.batch + 1} or {t.batch - 1}")


def _decays(cx: Context) -> tuple[float, object]:
    """(decay strength, span) of weight decay as the optimizer applies it."""
    t = cx.train
    opt = t.optimizer
    if t.weight_decay:
        return t.weight_decay, cx.span("weight_decay")
    if opt is not None and opt.name == "adamw" and opt.options.get("weight_decay"):
        return opt.options["weight_decay"], opt.span
    return 0.0, None


_SHRINK = 5e-5  # lr·wd per step from which decaying normalisation gains matters


@rule(
    "NN507", "weight-decay-on-biases-and-norms", "info",
    summary="Weight decay strong enough to shrink the normalisation gains and shifts it also "
            "applies to: the peak rate times the decay is at least 5e-5 per step (once per "
            "run, on the decay's line).",
    why="Decaying batch-norm gamma/beta adds no useful regularisation and can hurt (it pulls "
        "the normalised scale towards 0, by lr·wd of its value each step); modern recipes "
        "exclude these 1-D parameters.",
    bad="""
        input 64
        linear(32, bias=false)
        batchnorm relu
        linear(10)
        train {
          optimizer sgd(lr=0.1, momentum=0.9)
          weight_decay 1e-3
        }
    """,
    good="""
        input 64
        linear(32, bias=false)
        batchnorm relu
        linear(10)
        train {
          optimizer sgd(lr=0.1, momentum=0.9)
          weight_decay 1e-4
        }
    """,
    fix="Exclude 1-D parameters (biases, norm weights) from weight decay where the trainer "
        "allows it.",
    false_positives="Below 5e-5 per step (SGD 0.1 with 1e-4, Adam 1e-3 with 0.01) the pull "
                    "is negligible and nothing is reported; above it, classic recipes "
                    "(Goyal et al.'s large batches) decay everything and still train fine: "
                    "a tuning hint, not a bug.",
)
def decay_on_biases(cx: Context):
    if cx.train is None:
        return
    wd, span = _decays(cx)
    if wd <= 0:
        return
    opt = cx.optimizer
    lr = opt.options.get("lr", 0.0) if opt is not None else 0.01
    norms = one_d = 0
    for s in cx.analysis.layers[1:]:
        if not s.trainable:
            continue
        n = sum(t.numel for t in s.tensors if t.role == "param" and len(t.shape) <= 1)
        one_d += n
        if s.node.op in NORMALIZES:
            norms += n
    shrink = lr * wd
    if norms and shrink >= _SHRINK:
        yield cx.hit(span, f"weight decay {num(wd)} at learning rate {num(lr)} shrinks "
                           f"{one_d:,} bias and normalisation parameters by {num(shrink)} of "
                           f"their value per step (to 1/e in {math.ceil(1 / shrink):,} steps "
                           f"unless their gradients push back)")


@rule(
    "NN508", "negative-regularization", "error",
    summary="A negative weight_decay, l1 or l2 strength.",
    why="A negative penalty rewards large weights: they grow without bound and training "
        "diverges.",
    bad="""
        input 64
        linear(10, bias=false)
        train {
          weight_decay -1e-4
        }
    """,
    good="""
        input 64
        linear(10, bias=false)
        train {
          weight_decay 1e-4
        }
    """,
    fix="Use a positive strength (or 0 for none).",
)
def negative_regularization(cx: Context):
    t = cx.train
    if t is None:
        return
    for key in ("weight_decay", "l1", "l2"):
        v = getattr(t, key)
        if v < 0:
            yield cx.hit(cx.span(key), f"{key} {num(v)} is negative")
    opt = t.optimizer
    if opt is not None and (opt.options.get("weight_decay") or 0) < 0:
        yield cx.hit(opt.span, f"{opt.name} weight_decay {num(opt.options['weight_decay'])} is negative")


# (strength limit, what is typical) per penalty; AdamW's decoupled decay is scaled by lr.
_LIMITS = {"coupled": (1e-2, "1e-5 to 5e-4 with SGD"), "adamw": (0.5, "0.01 to 0.1 with AdamW"),
           "l1": (1e-2, "1e-6 to 1e-4"), "l2": (1e-2, "1e-5 to 5e-4")}


@rule(
    "NN509", "regularization-too-strong", "warning",
    summary="Weight decay, l1 or l2 far above the usual range (coupled L2 / weight decay > "
            "1e-2, AdamW's decoupled decay > 0.5, l1 > 1e-2).",
    why="The penalty then dominates the loss: weights shrink towards zero faster than the "
        "data can move them and the network underfits.",
    bad="""
        input 64
        linear(10, bias=false)
        train {
          optimizer sgd(lr=0.1, momentum=0.9)
          weight_decay 0.1
        }
    """,
    good="""
        input 64
        linear(10, bias=false)
        train {
          optimizer sgd(lr=0.1, momentum=0.9)
          weight_decay 1e-4
        }
    """,
    fix="Use a strength in the typical range the message gives.",
)
def regularization_too_strong(cx: Context):
    t = cx.train
    if t is None:
        return
    opt = t.optimizer
    adamw = opt is not None and opt.name == "adamw"
    checks = [("weight_decay", t.weight_decay, "adamw" if adamw else "coupled", cx.span("weight_decay")),
              ("l1", t.l1, "l1", cx.span("l1") if "l1" in t.spans else cx.span("elastic_net")),
              ("l2", t.l2, "l2", cx.span("l2") if "l2" in t.spans else cx.span("elastic_net"))]
    if adamw:
        checks.append(("adamw weight_decay", opt.options.get("weight_decay") or 0, "adamw", opt.span))
    for what, v, kind, span in checks:
        limit, typical = _LIMITS[kind]
        if v > limit:
            yield cx.hit(span, f"{what} {num(v)} is above {num(limit)} (typical: {typical})")


@rule(
    "NN510", "l2-and-weight-decay", "warning",
    summary="Two weight penalties at once: `l2` and `weight_decay`, or `weight_decay` together "
            "with AdamW's own weight_decay option.",
    why="The same penalty is applied twice (or it is unclear which one applies), so the "
        "effective regularisation is not the one written.",
    bad="""
        input 64
        linear(10, bias=false)
        train {
          weight_decay 1e-4
          l2 1e-4
        }
    """,
    good="""
        input 64
        linear(10, bias=false)
        train {
          weight_decay 1e-4
        }
    """,
    fix="Keep one: `weight_decay` (applied by the optimizer) or `l2` (added to the loss).",
)
def l2_and_weight_decay(cx: Context):
    t = cx.train
    if t is None:
        return
    if t.l2 > 0 and t.weight_decay > 0:
        yield cx.hit(cx.span("l2") if "l2" in t.spans else cx.span("elastic_net"),
                     f"l2 {num(t.l2)} and weight_decay {num(t.weight_decay)} both penalise the "
                     f"weights", notes=(f"weight_decay at {cx.span('weight_decay')}",))
    opt = t.optimizer
    if opt is not None and opt.name == "adamw" and t.weight_decay > 0:
        yield cx.hit(cx.span("weight_decay"),
                     f"weight_decay {num(t.weight_decay)} and adamw's weight_decay="
                     f"{num(opt.options.get('weight_decay') or 0)} are two settings for one decay",
                     help="set it once, as `adamw(weight_decay=…)`")


@rule(
    "NN511", "consecutive-normalization", "warning",
    summary="A normalisation layer applied directly to the output of another one.",
    why="The second one re-normalises an already normalised tensor: extra parameters and "
        "compute, no effect beyond an affine map.",
    bad="""
        input 3x8x8
        conv(16, 3, pad=1, bias=false)
        batchnorm
        batchnorm relu
    """,
    good="""
        input 3x8x8
        conv(16, 3, pad=1, bias=false)
        batchnorm relu
    """,
    fix="Remove one of them.",
)
def consecutive_norm(cx: Context):
    for nd in cx.layers("norm"):
        prev = cx.back(nd, frozenset({"identity", "flatten", "dropout"}))
        if prev.opdef.category == "norm":
            yield cx.hit(nd, f"{nd.name}: {nd.op} right after {prev.name} ({prev.op})")


@rule(
    "NN512", "batchnorm-momentum-degenerate", "warning",
    summary="Batch norm with momentum 0 (running statistics never update) or 1 (they are "
            "only the last batch's).",
    why="At inference batch norm uses the running statistics: with momentum 0 they stay at "
        "mean 0, variance 1 whatever the data; with 1 they are one batch's noisy estimate.",
    bad="""
        input 3x8x8
        conv(16, 3, pad=1, bias=false)
        batchnorm(momentum=0) relu
    """,
    good="""
        input 3x8x8
        conv(16, 3, pad=1, bias=false)
        batchnorm relu
    """,
    fix="Use the default momentum=0.1 (PyTorch's convention: the weight of the new batch).",
)
def bn_momentum(cx: Context):
    for nd in cx.nodes[1:]:
        if nd.op == "batchnorm" and nd.attrs["momentum"] in (0.0, 1.0):
            what = ("the running statistics never update: inference uses mean 0, variance 1"
                    if nd.attrs["momentum"] == 0 else
                    "the running statistics are only the last batch's")
            yield cx.hit(nd, f"{nd.name}: momentum={num(nd.attrs['momentum'])}: {what}")


@rule(
    "NN513", "dropout-on-feature-maps", "info",
    summary="Element-wise dropout on a CxHxW (or CxL) feature map.",
    why="Neighbouring pixels are strongly correlated, so a dropped pixel is recovered from its "
        "neighbours: element-wise dropout regularises conv layers little (channel-wise "
        "'spatial' dropout or batch norm work better).",
    bad="""
        input 3x8x8
        conv(16, 3, pad=1) relu dropout(0.2)
        conv(16, 3, pad=1)
    """,
    good="""
        input 3x8x8
        conv(16, 3, pad=1) relu
        conv(16, 3, pad=1)
    """,
    fix="Drop the dropout on feature maps; use it in the fully connected head.",
    false_positives="Wide ResNets place dropout between the convs of a block on purpose.",
)
def dropout_feature_maps(cx: Context):
    for nd in cx.nodes[1:]:
        if nd.op == "dropout" and len(nd.shape) > 1 and nd.attrs["p"] > 0:
            yield cx.hit(nd, f"{nd.name}: element-wise dropout on a {shape_str(nd.shape)} "
                             f"feature map")
