"""Rules that reason about the whole run rather than one setting: the batch a normalisation
layer really sees, conventions copied from another framework, the learning rate over the whole
schedule, the loss against the task the data defines, information bottlenecks, the channel
order of the input, and merges of more paths than were probably meant."""

from __future__ import annotations

import math

from ..ops import shape_str
from ..train.schedule import cycle_ends, trajectory
from .catalogue import rule
from .context import NORMALIZES, REGRESSION, Context, num, plural

# Ops with a weight matrix whose output width can squeeze information (not the head).
_PASS = NORMALIZES


def _uses_batch_stats(cx: Context) -> list:
    return [nd for nd in cx.nodes[1:] if "batch_stats" in nd.opdef.traits]


@rule(
    "NN514", "batchnorm-with-tiny-batch", "warning",
    summary="Batch statistics computed over 2–4 samples: the batch size, divided among the "
            "data-parallel processes (`--processes N`), is what each batch-norm layer sees.",
    why="Batch norm estimates the mean and variance of every channel from the mini-batch: from "
        "2–4 samples the estimates are so noisy that the network trains on, and later infers "
        "with, statistics unlike the data's (Wu & He 2018: ResNet-50's error rises from 23.6% "
        "at 32 images per device to 34.7% at 2).",
    bad="""
        input 3x8x8
        conv(16, 3, pad=1, bias=false) batchnorm relu
        maxpool(2)
        conv(16, 3, pad=1, bias=false) batchnorm relu
        global_avgpool
        linear(10)
        train {
          batch 4
        }
    """,
    good="""
        input 3x8x8
        conv(16, 3, pad=1, bias=false) groupnorm(4) relu
        maxpool(2)
        conv(16, 3, pad=1, bias=false) groupnorm(4) relu
        global_avgpool
        linear(10)
        train {
          batch 4
        }
    """,
    fix="Use at least 16 samples per process, or a normalisation that does not depend on the "
        "batch (groupnorm, layernorm).",
)
def bn_tiny_batch(cx: Context):
    t = cx.train
    if t is None or not t.batch or t.batch == 1:
        return  # batch 1 is NN506's (an error)
    layers = _uses_batch_stats(cx)
    if not layers:
        return
    procs = int(cx.options.get("processes") or 1)
    each = t.batch // procs
    if 1 <= each <= 4:
        per = (f"batch {t.batch:,} over {plural(procs, 'process', 'processes')} gives each "
               f"{plural(each, 'sample')}" if procs > 1 else f"batch {t.batch}")
        yield cx.hit(cx.span("batch"), f"{per}: {layers[0].name} and the "
                                       f"{plural(len(layers), 'batch-statistics layer')} estimate "
                                       f"each channel's mean and variance from "
                                       f"{plural(each, 'sample')}")


@rule(
    "NN515", "batchnorm-momentum-keras-convention", "warning",
    summary="A batch-norm momentum above 0.5, such as Keras's 0.99: in PyTorch (and here) the "
            "momentum is the weight of the new batch, the complement of Keras's.",
    why="Keras's momentum=0.99 keeps 99% of the old running statistics; PyTorch's momentum=0.99 "
        "keeps 1%: the running mean and variance are essentially the last batch's, and "
        "inference uses that one noisy estimate.",
    bad="""
        input 3x8x8
        conv(16, 3, pad=1, bias=false)
        batchnorm(momentum=0.99) relu
    """,
    good="""
        input 3x8x8
        conv(16, 3, pad=1, bias=false)
        batchnorm(momentum=0.01) relu
    """,
    fix="Use 1 − the Keras value (0.99 → 0.01), or PyTorch's default 0.1.",
)
def bn_keras_momentum(cx: Context):
    for nd in cx.nodes[1:]:
        m = nd.attrs.get("momentum") if "batch_stats" in nd.opdef.traits else None
        if m is not None and 0.5 < m < 1:
            yield cx.hit(nd, f"{nd.name}: momentum={num(m)} keeps only {num(1 - m)} of the running "
                             f"statistics per batch (Keras's {num(m)} is PyTorch's "
                             f"{num(round(1 - m, 12))})",
                         help=f"batchnorm(momentum={num(round(1 - m, 12))}) is what Keras's "
                              f"{num(m)} means")


_FLOOR = 1e-3  # of the peak rate: below it an epoch barely moves the weights
_MAX_EPOCHS = 20_000  # the trajectory is computed epoch by epoch up to this run length


@rule(
    "NN720", "learning-rate-trajectory-wasted", "warning",
    summary="The learning rate over the whole run (the trainer's own schedule code): more than "
            "a quarter of the epochs below 1/1000 of the peak rate, or a run that ends in the "
            "middle of a warm restart cycle.",
    why="Epochs at a rate near 0 change nothing: an exponential decay of 0.5 per epoch leaves "
        "1/1000 of the rate after 10 epochs, and the rest of the run is wasted. SGDR's "
        "snapshots are good only at the end of a cycle; a run cut mid-cycle ends at a high "
        "rate.",
    bad="""
        input 64
        linear(10)
        train {
          optimizer sgd(lr=0.1, momentum=0.9)
          schedule exponential(gamma=0.5)
          epochs 60
        }
    """,
    good="""
        input 64
        linear(10)
        train {
          optimizer sgd(lr=0.1, momentum=0.9)
          schedule exponential(gamma=0.93)
          epochs 60
        }
    """,
    fix="Choose the decay from the run length (exponential: gamma = floor^(1/epochs)), or end "
        "the run at the end of a restart cycle.",
)
def lr_trajectory(cx: Context):
    t = cx.train
    if t is None or not t.schedule or not t.epochs or cx.optimizer is None:
        return
    lr0 = cx.optimizer.options.get("lr")
    if not lr0:
        return
    E = t.epochs
    if E > _MAX_EPOCHS:
        return  # an epoch count no run reaches: not worth a rate per epoch
    rates = trajectory(t.schedule, lr0, E)
    peak = max(rates)
    if not math.isfinite(peak) or peak <= 0:
        return
    low = [e for e, r in enumerate(rates) if r < peak * _FLOOR]
    span = cx.span("schedule")
    if len(low) * 4 > E:
        first = low[0]
        yield cx.hit(span, f"the learning rate falls below 1/1000 of its peak {num(peak)} at "
                           f"epoch {first + 1} ({num(rates[first])}) and stays there for "
                           f"{len(low)} of the {E} epochs",
                     notes=[f"epochs 1, {max(1, first // 2) + 1}, {first + 1}: "
                            f"{num(rates[0])}, {num(rates[max(1, first // 2)])}, {num(rates[first])}"])
        return
    for s in t.schedule:
        if s.name != "restarts":
            continue
        o = s.options
        ends, length, at = [], o["period"], 0
        while at + length <= E:
            at += length
            ends.append(at)
            length *= o.get("mult", 1)
        last = rates[-1]
        if ends and ends[-1] != E and last > 0.1 * peak:
            yield cx.hit(s.span, f"the run ends at epoch {E} in the middle of a restart cycle "
                                 f"(cycles end at epochs {', '.join(map(str, ends[-3:]))}, next "
                                 f"{at + length}): the last rate is {num(last / peak)} of the peak",
                         help=f"train {ends[-1]} or {at + length} epochs")


@rule(
    "NN725", "snapshots-exceed-cycles", "warning",
    summary="`snapshots M` asks for more snapshots than the run has warm-restart cycles: one "
            "snapshot is taken at the end of each cycle that ends within the epochs.",
    why="A snapshot ensemble (Huang et al. 2017) averages the models at the ends of the last M "
        "cycles, where the learning rate has annealed to its minimum; a run with fewer cycles "
        "ensembles fewer models than asked, and a cycle cut short by the last epoch gives none.",
    bad="""
        input 64
        linear(10)
        train {
          schedule restarts(period=10)
          snapshots 5
          epochs 30
        }
    """,
    good="""
        input 64
        linear(10)
        train {
          schedule restarts(period=10)
          snapshots 3
          epochs 30
        }
    """,
    fix="Train for M cycles (epochs = M · period with mult 1), or ask for fewer snapshots.",
)
def snapshots_exceed_cycles(cx: Context):
    t = cx.train
    if t is None or not t.snapshots:
        return
    E = t.epochs or 10       # the trainer's default
    if E > _MAX_EPOCHS:
        return
    ends = cycle_ends(t.schedule, E)
    if len(ends) < t.snapshots:
        restarts = next(s for s in t.schedule if s.name == "restarts")
        period = restarts.options["period"]
        needed = (f"{t.snapshots * period} epochs" if restarts.options.get("mult", 1) == 1 else
                  "more epochs")
        yield cx.hit(cx.span("snapshots"),
                     f"snapshots {t.snapshots}, but the {E} epochs end "
                     f"{plural(len(ends), 'restart cycle')}"
                     + (f" (at epochs {', '.join(map(str, ends))})" if ends else "")
                     + f": the ensemble gets {len(ends)}",
                     help=f"train {needed}, or `snapshots {max(1, len(ends))}`")


@rule(
    "NN316", "regression-loss-on-class-labels", "warning",
    summary="A regression loss (mse, l1, huber) on a data source whose targets are class labels.",
    why="The labels are category numbers: a regression loss treats class 7 as closer to 8 than "
        "to 1 and fits their average, which is no class at all.",
    bad="""
        input 64
        linear(10)
        train {
          data digits
          loss mse
        }
    """,
    good="""
        input 64
        linear(10)
        train {
          data digits
          loss cross_entropy
        }
    """,
    fix="Use cross_entropy on logits for single-label classes.",
)
def regression_on_classes(cx: Context):
    d = cx.data
    if cx.loss in REGRESSION and d is not None and d.single_label and d.classes:
        yield cx.hit(cx.span("loss"), f"{cx.loss} on the {d.name} data, whose targets are "
                                      f"{d.classes} class labels")


@rule(
    "NN108", "information-bottleneck", "warning",
    summary="A hidden layer that squeezes the channels (or features) to 1/64 or less of both "
            "the layer before it and the layer after it (e.g. 128 → 1 → 128).",
    why="Everything the later layers know passes through those few values: the network's "
        "capacity is capped there, whatever the width around it.",
    bad="""
        input 64
        linear(128) relu
        linear(1) relu
        linear(128) relu
        linear(10)
    """,
    good="""
        input 64
        linear(128) relu
        linear(32) relu
        linear(128) relu
        linear(10)
    """,
    fix="Widen the layer, or remove it.",
    false_positives="Autoencoders with a deliberately tiny code (a 2-D embedding to plot) and "
                    "gates that are multiplied back in (squeeze-and-excitation reaches 1/24) "
                    "are narrow on purpose; silence with a reason.",
)
def bottleneck(cx: Context):
    later = cx.downstream_weighted()
    for nd in cx.weighted:
        if nd.id not in later or len(nd.shape) < 1:
            continue
        c, c_in = nd.shape[0], cx.graph.in_shapes(nd)[0][0]
        nxt = _next_weighted(cx, nd)
        if nxt is None:
            continue
        c_out = nxt.shape[0]
        if c * 64 <= min(c_in, c_out):
            yield cx.hit(nd, f"{nd.name}: {c_in:,} → {plural(c, 'channel')} → {c_out:,} at "
                             f"{nxt.name}: everything later passes through "
                             f"{plural(c, 'value')} per position")


def _next_weighted(cx: Context, nd):
    cur = nd
    while True:
        users = cx.users(cur)
        if len(users) != 1:
            return None
        cur = users[0]
        if "weighted" in cur.opdef.traits:
            return cur
        if "merge" in cur.opdef.traits:
            return None


@rule(
    "NN210", "input-channels-last", "warning",
    summary="An image input written channels-last (`input 32x32x3`, CS231n's [32x32x3]): the "
            "last axis is 1, 3 or 4 and smaller than the others, while nnspec reads CxHxW.",
    why="The first conv then sees 32 channels of a 32x3 image: it trains on a transposed "
        "picture, and real data (3x32x32) fails to load.",
    bad="""
        input 5x5x3
        conv(16, 3, pad=1) relu
        conv(16, 3, pad=1) relu
        global_avgpool
        linear(10)
    """,
    good="""
        input 3x5x5
        conv(16, 3, pad=1) relu
        conv(16, 3, pad=1) relu
        global_avgpool
        linear(10)
    """,
    fix="Write the channels first: `input CxHxW`.",
)
def channels_last(cx: Context):
    shape = cx.nodes[0].shape
    if len(shape) != 3:
        return
    *hw, c = shape
    if c in (1, 3, 4) and all(x > 4 and x > c for x in hw) and shape[0] > 4:
        fixed = shape_str((c, *hw))
        yield cx.hit(cx.nodes[0].span, f"input {shape_str(shape)} has {c} at the end and reads as "
                                       f"{shape[0]} channels of {shape_str(tuple(shape[1:]))}: "
                                       f"nnspec reads CxHxW",
                     help=f"did you mean `input {fixed}`?")


@rule(
    "NN109", "add-of-many-paths", "info",
    summary="An `add` of three or more paths: one path per line, so two lines meant as one "
            "path become two.",
    why="With `linear(64)`, `batchnorm` and `identity` on three lines, `add` sums the linear "
        "layer, the normalised input and the input, not the normalised linear layer and the "
        "input; the shapes agree, so nothing else notices.",
    bad="""
        input 64
        add {
          linear(64, bias=false)
          batchnorm
          identity
        }
        linear(10)
    """,
    good="""
        input 64
        add {
          { linear(64, bias=false) batchnorm }
          identity
        }
        linear(10)
    """,
    fix="Group the layers of one path in braces: `{ linear(64) batchnorm }`.",
    false_positives="Some designs add three or more paths on purpose (a multi-branch residual "
                    "such as a ResNeXt written out): silence with a reason.",
)
def add_many_paths(cx: Context):
    for nd in cx.nodes[1:]:
        if nd.op == "add" and len(nd.inputs) >= 3:
            paths = [cx.nodes[i] for i in nd.inputs]
            shown = "; ".join(f"path {k + 1} ends at {p.name} ({p.op})" for k, p in enumerate(paths))
            yield cx.hit(nd, f"{nd.name}: adds {len(paths)} paths", notes=[shown])
