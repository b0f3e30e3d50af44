"""NN6xx: design hints (info). Each is a rule of thumb from the 2012–2015 ImageNet
architectures, with its known false positives; none fails a lint run by default."""

from __future__ import annotations

import math

from ..ops import shape_str
from .catalogue import rule
from .context import Context, article, plural, window

_BIG_NETWORK = 1_000_000     # parameters: below this, where they sit hardly matters
_BIG_ACTIVATIONS = 1_000_000  # activation elements per sample


@rule(
    "NN601", "parameter-concentration", "info",
    summary="One layer holds more than half of a large (≥ 1M parameters) network's parameters.",
    why="Typically a fully connected layer on a flattened feature map (VGG-16's FC6 holds "
        "~74% of 138M): it dominates memory and overfitting risk while convs do the work; "
        "global average pooling before the classifier removes it (GoogLeNet, ResNet).",
    bad="""
        input 64x4x4
        conv(128, 3, pad=1) relu
        conv(128, 3, pad=1) relu
        flatten
        linear(1024) relu
        linear(10)
    """,
    good="""
        input 64x4x4
        conv(128, 3, pad=1) relu
        conv(128, 3, pad=1) relu
        global_avgpool
        linear(10)
    """,
    fix="Replace `flatten` + large linear layers by `global_avgpool` and one classifier layer.",
    false_positives="Fires on AlexNet and VGG by design of those networks: their FC layers are "
                    "what the pretrained weights contain.",
)
def parameter_concentration(cx: Context):
    layers = cx.analysis.layers[1:]
    total = cx.analysis.totals.params
    if total < _BIG_NETWORK or len(cx.weighted) < 2:
        return
    top = max(layers, key=lambda s: s.params)
    share = top.params / total
    if share > 0.5:
        yield cx.hit(top.node, f"{top.node.name} holds {top.params:,} of the {total:,} parameters "
                               f"({share:.0%})", help=_concentration_help(cx, top.node))


def _seen_map(cx: Context, nd):
    """The tensor a layer reads, before any flatten/dropout/identity: (shape, pooled), where
    pooled says a global pooling reduced it to one value per channel on the way."""
    cur = cx.source(nd)
    while cur.op in ("flatten", "dropout", "identity") and len(cur.inputs) == 1:
        cur = cx.source(cur)
    pooled = any("global_pool" in x.opdef.traits for x in cx.nodes[1:cur.id + 1])
    return cur.shape, pooled


def _concentration_help(cx: Context, nd) -> str:
    if nd.opdef.category == "linear":
        shape, pooled = _seen_map(cx, nd)
        if len(shape) > 1 and not pooled:
            return (f"it reads the flattened {shape_str(shape)} map: global average pooling "
                    f"before it ({shape[0]:,} values) removes most of them")
        return "a narrower layer here, or a narrower one before it, shrinks it"
    return "fewer channels here, or a 1x1 reduction before it (a bottleneck), shrinks it"


@rule(
    "NN602", "receptive-field-smaller-than-input", "info",
    summary="Global average pooling over features whose receptive field is smaller than the "
            "input image.",
    why="Each averaged feature has seen only a patch of the image, so the classifier never "
        "gets evidence that spans the object: the network needs more depth or downsampling "
        "before pooling.",
    bad="""
        input 3x32x32
        conv(16, 3, pad=1) relu
        conv(32, 3, pad=1) relu
        global_avgpool
        linear(10)
    """,
    good="""
        input 3x32x32
        conv(16, 3, pad=1) relu
        maxpool(2)
        conv(32, 3, pad=1) relu
        maxpool(2)
        conv(64, 3, pad=1) relu
        maxpool(2)
        conv(128, 3, pad=1) relu
        global_avgpool
        linear(10)
    """,
    fix="Add downsampling (pooling or strided convs) or depth before the global pooling.",
    false_positives="Bag-of-local-features models (BagNet) limit the receptive field on purpose.",
)
def receptive_field(cx: Context):
    size = cx.nodes[0].shape[1:]
    if not size:
        return
    for nd in cx.nodes[1:]:
        is_global = nd.op == "global_avgpool" or (
            nd.op == "adaptive_avgpool" and all(x == 1 for x in nd.shape[1:]))
        if not is_global:
            continue
        rf = cx.analysis.layers[nd.inputs[0]].rf
        if rf and any(r < n for r, n in zip(rf, size)):
            yield cx.hit(nd, f"{nd.name}: the features it averages see {shape_str(rf)} of the "
                             f"{shape_str(size)} input")
            return


@rule(
    "NN603", "channels-not-growing", "info",
    summary="A conv stage at a resolution at least 2x smaller (in area) with fewer channels "
            "than the stage before it.",
    why="Downsampling discards spatial positions; growing the channels (VGG and ResNet double "
        "them at each halving) keeps the representation's capacity roughly constant.",
    bad="""
        input 3x32x32
        conv(64, 3, pad=1) relu
        maxpool(2)
        conv(32, 3, pad=1) relu
        maxpool(2)
        flatten
        linear(10)
    """,
    good="""
        input 3x32x32
        conv(32, 3, pad=1) relu
        maxpool(2)
        conv(64, 3, pad=1) relu
        maxpool(2)
        flatten
        linear(10)
    """,
    fix="Increase the channels when the resolution drops (×2 per halving).",
    false_positives="Bottleneck and compression layers narrow on purpose; AlexNet's conv5 "
                    "narrows 384 → 256.",
)
def channels_not_growing(cx: Context):
    stages: dict[int, tuple[int, object]] = {}  # area -> (max channels, first conv with them)
    for nd in cx.layers("conv"):
        if len(nd.shape) < 2:
            continue
        area = math.prod(nd.shape[1:])
        c = nd.shape[0]
        if area not in stages or c > stages[area][0]:
            stages[area] = (c, nd)
    areas = sorted(stages, reverse=True)
    for big, small in zip(areas, areas[1:]):
        (c_big, n_big), (c_small, n_small) = stages[big], stages[small]
        if big >= 2 * small and c_small < c_big:  # a real downsampling, not a valid-padding trim
            yield cx.hit(n_small, f"{n_small.name}: {plural(c_small, 'channel')} at "
                                  f"{shape_str(n_small.shape[1:])}, fewer than the {c_big} at "
                                  f"{shape_str(n_big.shape[1:])} before it")


@rule(
    "NN604", "activation-memory-concentration", "info",
    summary="One layer's output holds more than half of the forward activation memory of a "
            "network with ≥ 1M activations per sample.",
    why="That layer sets the batch size that fits: a full-resolution, wide layer early in the "
        "network (downsample first, as every ImageNet stem does).",
    bad="""
        input 3x128x128
        conv(64, 3, pad=1) relu
        maxpool(4)
        conv(128, 3, pad=1) relu
    """,
    good="""
        input 3x128x128
        conv(64, 7, stride=2, pad=3) relu
        maxpool(2)
        conv(128, 3, pad=1) relu
    """,
    fix="Downsample earlier (a strided stem) or make the full-resolution layers narrower.",
    false_positives="Dense-prediction networks keep full resolution on purpose.",
)
def activation_concentration(cx: Context):
    an = cx.analysis
    total = an.totals.activations
    if total < _BIG_ACTIVATIONS:
        return
    counted = [s for s in an.layers[1:] if s.node.opdef.stores == "new"]
    if not counted:
        return
    top = max(counted, key=lambda s: s.activations)
    if top.activations / total > 0.5:
        yield cx.hit(top.node, f"{top.node.name}: its {shape_str(top.node.shape)} output holds "
                               f"{top.activations / total:.0%} of the {total:,} forward "
                               f"activations per sample")


@rule(
    "NN605", "large-kernel-after-stem", "info",
    summary="A stride-1 conv with a kernel of 5 or more after the first layer.",
    why="A stack of 3x3 convs sees the same window with fewer weights and more "
        "non-linearities: two 3x3 convs cover 5x5, three cover 7x7 (the VGG argument, "
        "3·9C² against 49C²). It fires only when the stack is smaller; the message computes "
        "both counts.",
    bad="""
        input 3x32x32
        conv(32, 3, pad=1) relu
        conv(64, 5, pad=2) relu
    """,
    good="""
        input 3x32x32
        conv(32, 3, pad=1) relu
        conv(64, 3, pad=1) relu
        conv(64, 3, pad=1) relu
    """,
    fix="Replace the large kernel by (F − 1)/2 stacked 3x3 convs with activations between.",
    false_positives="AlexNet's and LeNet's 5x5 convs, and 1-D convs over long sequences, are "
                    "period-correct or intended.",
)
def large_kernel(cx: Context):
    first = cx.weighted[0].id if cx.weighted else None
    for nd in cx.layers("conv"):
        if nd.id == first:
            continue
        _, k, s, _, _ = nd.opdef.geometry(cx.graph.in_shapes(nd), nd.attrs)
        f = max(k)
        if f < 5 or any(x != 1 for x in s) or f % 2 == 0 or len(set(k)) > 1:
            continue
        c_in, c_out, g = cx.graph.in_shapes(nd)[0][0], nd.shape[0], nd.attrs["groups"]
        dims = len(nd.shape) - 1
        n = (f - 1) // 2
        m = min(c_in, c_out)  # width of the intermediate 3x3 layers
        one = cx.analysis.layers[nd.id].tensors[0].numel  # the conv's weight
        stacked = 3 ** dims * (c_in * m + (n - 2) * m * m + m * c_out) // g
        if stacked >= one:
            continue
        win = window((f,) * dims)
        yield cx.hit(nd, f"{nd.name}: {article(win)} conv with {one:,} weights; {n} stacked "
                         f"{window((3,) * dims)} convs see the same {win} window with "
                         f"{stacked:,} weights and {n - 1} more non-linearit"
                         f"{'y' if n == 2 else 'ies'}")


@rule(
    "NN606", "fully-connected-on-image", "info",
    summary="A network whose first weighted layer is fully connected although its input is an "
            "image (or sequence).",
    why="A linear layer treats the pixels as unrelated features: it learns every position "
        "separately, needs far more weights than a conv (3,072 per neuron for 32x32x3) and "
        "does not generalise across translations.",
    bad="""
        input 1x8x8
        flatten
        linear(32) relu
        linear(10)
    """,
    good="""
        input 1x8x8
        conv(8, 3, pad=1) relu
        flatten
        linear(10)
    """,
    fix="Start with conv layers; flatten or pool only before the classifier.",
    false_positives="MLP baselines on tiny images are intended as such.",
)
def fc_on_image(cx: Context):
    shape = cx.nodes[0].shape
    if len(shape) < 2 or not cx.weighted:
        return
    first = cx.weighted[0]
    if first.opdef.category == "linear":
        seen, pooled = _seen_map(cx, first)
        if len(seen) < 2:
            return  # global pooling came first: the layer reads one value per channel
        where = (f"the {shape_str(shape)} input" if seen == shape else
                 f"the {shape_str(seen)} map made from the {shape_str(shape)} input")
        yield cx.hit(first, f"{first.name}: the first weighted layer is fully connected on "
                            f"{where} ({cx.analysis.layers[first.id].params:,} parameters)")


_DEEP = 30


@rule(
    "NN607", "deep-plain-network", "info",
    summary="A network whose shortest path from input to output crosses 30 or more weighted "
            "layers: no residual (`add`) or dense (`concat` with the input) shortcut.",
    why="Plain networks that deep train worse than shallower ones — the degradation problem "
        "that residual connections solved (He et al. 2015: a 34-layer plain network did worse "
        "than an 18-layer one) — even with batch norm.",
    bad="""
        input 64
        repeat 30 { linear(64, bias=false) batchnorm relu }
        linear(10)
    """,
    good="""
        input 64
        repeat 15 {
          add {
            { linear(64, bias=false) batchnorm relu linear(64, bias=false) batchnorm }
            identity
          }
          relu
        }
        linear(10)
    """,
    fix="Add identity shortcuts around pairs of layers (`add { … \\n identity }`).",
    false_positives="Some deep plain networks train with careful initialisation, batch norm "
                    "or auxiliary classifiers (GoogLeNet has 22 layers, below the limit).",
)
def deep_plain(cx: Context):
    if any(nd.op == "add" for nd in cx.nodes):
        return
    depth = [0] * len(cx.nodes)
    deepest = None
    for nd in cx.nodes[1:]:
        # a merge is as deep as its shortest path: `concat { identity … }` (dense
        # connectivity) carries its input forward past the layers, as a residual add does
        pick = min if "merge" in nd.opdef.traits else max
        d = pick(depth[i] for i in nd.inputs) + ("weighted" in nd.opdef.traits)
        depth[nd.id] = d
        if d >= _DEEP and deepest is None:
            deepest = nd
    if deepest is not None:
        yield cx.hit(deepest, f"{deepest.name}: {max(depth)} weighted layers in a row without a "
                              f"residual connection",
                     help="residual connections: add { layers \\n identity }")


