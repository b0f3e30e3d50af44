"""NN2xx: spatial arithmetic of conv and pooling windows, and the head against the classes.

Per spatial axis, N input size, F kernel (dilated: D·(F−1)+1), P padding, S stride:
O = ⌊(N − F + 2P)/S⌋ + 1 (domain.md). Sizes ≤ 0 are the checker's NN020.
"""

from __future__ import annotations

import math

from ..ops import _window_out, shape_str
from .catalogue import rule
from .context import CLASSIFICATION, Context, num, plural, window

_AXIS_WORD = {"H": "row", "W": "column", "L": "position", "D": "slice"}


def _axes(rank: int) -> tuple[str, ...]:
    return {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}[rank]


def _windowed(cx: Context, category: str | None = None):
    """(node, sizes, kernels, strides, pads, dilations) of every conv/pool with a fixed window."""
    for nd in cx.nodes[1:]:
        if not hasattr(nd.opdef, "geometry") or (category and nd.opdef.category != category):
            continue
        sizes, k, s, p, d = nd.opdef.geometry(cx.graph.in_shapes(nd), nd.attrs)
        yield nd, sizes, k, s, p, d


def _words(axes, n: int) -> str:
    """'row', 'rows and columns', 'slice, row and column'."""
    words = [_AXIS_WORD[a] + ("s" if n > 1 else "") for a in axes]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _fmt_f(k: int, d: int) -> str:
    return str(k) if d == 1 else f"({d}·({k}−1)+1)"


@rule(
    "NN201", "window-does-not-tile", "warning",
    summary="A conv or pooling window that does not tile its input: (N − F + 2P) mod S ≠ 0 "
            "and the remainder reaches past the padding into real input.",
    why="The last windows would start beyond the edge, so the last rows and columns of the "
        "input are silently never seen (the CS231n \"doesn't fit\" case, N=7, F=3, S=3).",
    bad="""
        input 3x7x7
        conv(8, 3, stride=3)
    """,
    good="""
        input 3x7x7
        conv(8, 3, stride=3, pad=1)
    """,
    fix="Change the padding so that (N − F + 2P) is divisible by S (the help line gives one), "
        "or use ceil_mode=true on a pooling layer.",
)
def window_does_not_tile(cx: Context):
    """One root cause, one finding: a layer whose input sizes come from an earlier layer
    that already loses rows is a consequence (fixing the first changes its sizes); it is a
    note on the first finding, not a finding of its own."""
    found = list(_untiled(cx))
    at = {nd.id: i for i, (nd, _, _) in enumerate(found)}
    root: dict[int, int] = {}  # node id -> index of the upstream finding it follows from
    notes: dict[int, list[str]] = {}
    for nd in cx.nodes[1:]:
        up = next((root[i] for i in nd.inputs if i in root), None)
        if nd.id in at:
            if up is None:
                up = at[nd.id]
            else:
                notes.setdefault(up, []).append(f"then {found[at[nd.id]][1]}")
        if up is not None:
            root[nd.id] = up
    for i, (nd, msg, help) in enumerate(found):
        if root.get(nd.id) == i:
            yield cx.hit(nd, msg, help=help, notes=notes.get(i, ()))


def _untiled(cx: Context):
    for nd, sizes, ks, ss, ps, ds in _windowed(cx):
        if nd.attrs.get("ceil_mode"):
            continue
        lost_axes, parts, pads = [], [], list(ps)
        for i, (ax, N, K, S, P, D) in enumerate(zip(_axes(len(sizes)), sizes, ks, ss, ps, ds)):
            eff = D * (K - 1) + 1
            if eff < S:  # windows skip rows by design: NN204
                continue
            rem = (N - eff + 2 * P) % S
            lost = rem - P  # the right padding absorbs part of the remainder
            if lost <= 0:
                continue
            lost_axes.append((ax, lost))
            text = f"({N} − {_fmt_f(K, D)} + 2·{P}) mod {S} = {rem}"
            if text not in parts:
                parts.append(text)
            pads[i] = _pad_fix(N, eff, S, P)
        if not lost_axes:
            continue
        n = max(lost for _, lost in lost_axes)
        if len({lost for _, lost in lost_axes}) == 1:
            what = f"the last {'' if n == 1 else f'{n} '}{_words([a for a, _ in lost_axes], n)}"
        else:
            what = ", ".join(f"the last {lost} {_words([a], lost)}" for a, lost in lost_axes)
        verb = "is" if n == 1 and len(lost_axes) == 1 else "are"
        beyond = " (beyond the padding)" if any(ps) else ""
        msg = (f"{nd.name}: {'; '.join(parts)}: {what} of the {shape_str(sizes)} input {verb} "
               f"never seen{beyond}")
        fixes = []
        if None not in pads:
            fixes.append(f"pad={pads[0] if len(set(pads)) == 1 else tuple(pads)} makes the "
                         f"windows cover the input")
        if nd.opdef.category == "pool":
            fixes.append("ceil_mode=true keeps a last, partial window")
        yield nd, msg, ", or ".join(fixes) or None


def _pad_fix(N: int, eff: int, S: int, P: int) -> int | None:
    """The smallest larger padding, at most half the window, under which no input row is lost:
    the least p > P with (N − F + 2p) mod S ≤ p, in closed form (sizes reach 10^18).

    Write N − F + 2p = qS + r. While q stays the same, r grows with p, so the condition
    r ≤ p, i.e. p ≤ qS − (N − F), holds at p = P + 1 or, failing that, first at the start of
    the next q, p = ⌈((q+1)S − (N − F))/2⌉ (where r = 0 or 1 and qS > N − F + 2P ≥ N − F).

    >>> _pad_fix(7, 3, 3, 0), _pad_fix(10, 5, 4, 0), _pad_fix(8, 1, 1, 0)
    (1, 2, None)
    """
    c, p = N - eff, P + 1
    if (c + 2 * p) % S > p:
        q = (c + 2 * p) // S + 1
        p = -((c - q * S) // 2)  # ⌈(qS − c)/2⌉
    return p if p <= eff // 2 else None


@rule(
    "NN202", "ceil-mode-changes-shape", "info",
    summary="A pooling layer with ceil_mode=true whose output differs from the usual floor "
            "rounding (Caffe-style pooling).",
    why="The shapes, and every layer size after them, then differ from what PyTorch's or "
        "TensorFlow's defaults give, and the last window hangs over the edge of the input.",
    bad="""
        input 8x14x14
        maxpool(3, stride=2, ceil_mode=true)
    """,
    good="""
        input 8x14x14
        maxpool(3, stride=2, pad=1)
    """,
    fix="Use floor rounding (the default) with padding, unless the layer must match weights "
        "trained with Caffe-style rounding.",
    false_positives="Ports of Caffe models (GoogLeNet, torchvision's googlenet) use ceil_mode on "
                    "purpose so that pretrained weights fit; silence it there with a reason.",
)
def ceil_mode_changes_shape(cx: Context):
    # one choice, one finding: the first pool it changes, the later ones as notes
    changed = []
    for nd, sizes, ks, ss, ps, ds in _windowed(cx, "pool"):
        if not nd.attrs.get("ceil_mode"):
            continue
        floor = tuple(_window_out(N, K, S, P, D, False) for N, K, S, P, D in zip(sizes, ks, ss, ps, ds))
        ceil = tuple(nd.shape[1:])
        if floor != ceil:
            changed.append((nd, ceil, floor))
    if changed:
        nd, ceil, floor = changed[0]
        yield cx.hit(nd, f"{nd.name}: ceil_mode rounds up to {shape_str(ceil)}; floor rounding "
                         f"(the default) gives {shape_str(floor)}",
                     notes=[f"also {o.name}: {shape_str(c)} instead of {shape_str(f)}"
                            for o, c, f in changed[1:]])


@rule(
    "NN203", "padding-exceeds-half-kernel", "warning",
    summary="A conv whose zero padding is more than half its (dilated) kernel: 2P > F.",
    why="The output grows beyond the input ('same' padding is (F−1)/2) and its outer ring is "
        "computed mostly, or only, from zeros.",
    bad="""
        input 3x8x8
        conv(8, 3, pad=2)
    """,
    good="""
        input 3x8x8
        conv(8, 3, pad=1)
    """,
    fix="Use pad=(F−1)/2 for 'same' output (pad=\"same\"), or pad=0.",
)
def padding_exceeds_half_kernel(cx: Context):
    for nd, sizes, ks, ss, ps, ds in _windowed(cx, "conv"):
        for N, K, S, P, D in zip(sizes, ks, ss, ps, ds):
            eff = D * (K - 1) + 1
            if 2 * P > eff:
                yield cx.hit(nd, f"{nd.name}: padding {P} is more than half of the {eff}-wide "
                                 f"kernel: the output is {shape_str(nd.shape[1:])} from a "
                                 f"{shape_str(sizes)} input",
                             help=f"pad={(eff - 1) // 2} keeps the size at stride 1")
                break


def _covers(cx: Context, nd) -> bool:
    """Whether every window of `nd` is at least as wide as its stride."""
    if not hasattr(nd.opdef, "geometry"):
        return True
    _, ks, ss, _, ds = nd.opdef.geometry(cx.graph.in_shapes(nd), nd.attrs)
    return all(D * (K - 1) + 1 >= S for K, S, D in zip(ks, ss, ds))


def _partner_sees_all(cx: Context, nd) -> bool:
    """Another path from `nd`'s input whose layers, up to the next merge, skip no position."""
    for first in cx.consumers[nd.inputs[0]]:
        if first == nd.id:
            continue
        cur, ok = cx.nodes[first], True
        while "merge" not in cur.opdef.traits:
            if not _covers(cx, cur):
                ok = False
                break
            users = cx.consumers[cur.id]
            if len(users) != 1:
                ok = False
                break
            cur = cx.nodes[users[0]]
        if ok:
            return True
    return False


@rule(
    "NN204", "stride-exceeds-kernel", "info",
    summary="A conv or pooling layer whose stride is larger than its window, so input rows "
            "between windows are skipped.",
    why="S − F of every S rows and columns never reach this layer's output: it subsamples "
        "rather than summarises.",
    bad="""
        input 16x8x8
        conv(32, 1, stride=2)
    """,
    good="""
        input 16x8x8
        conv(32, 3, stride=2, pad=1)
    """,
    fix="Use a window at least as wide as the stride, or pool before a stride-1 layer.",
    false_positives="A layer beside a path that sees every position of the same input (ResNet's "
                    "1x1 stride-2 projection shortcut next to a 3x3 stride-2 main path) is not "
                    "reported: the skipped positions reach the merge through its partner.",
)
def stride_exceeds_kernel(cx: Context):
    for nd, sizes, ks, ss, ps, ds in _windowed(cx):
        if len(nd.inputs) == 1 and _partner_sees_all(cx, nd):
            continue
        for K, S, D in zip(ks, ss, ds):
            eff = D * (K - 1) + 1
            if eff < S:
                skipped = 1 - eff ** len(sizes) / S ** len(sizes)
                yield cx.hit(nd, f"{nd.name}: stride {S} is larger than the {eff}-wide window: "
                                 f"{skipped:.0%} of the input positions never reach the output")
                break


@rule(
    "NN205", "kernel-taps-see-only-padding", "warning",
    summary="A conv whose kernel is so large for its input that some of its taps only ever "
            "multiply zero padding (e.g. a 3x3 conv on a 1x1 map).",
    why="Those weights never receive a gradient and never matter: parameters and compute are "
        "wasted, and the map was usually downsampled too far (an ImageNet network on 32x32 "
        "CIFAR images).",
    bad="""
        input 64x1x1
        conv(64, 3, pad=1)
    """,
    good="""
        input 64x1x1
        conv(64, 1)
    """,
    fix="Use a smaller kernel here, or downsample less before this layer.",
)
def taps_see_only_padding(cx: Context):
    for nd, sizes, ks, ss, ps, ds in _windowed(cx, "conv"):
        live = [_live_taps(*axis) for axis in zip(sizes, ks, ss, ps, ds, nd.shape[1:])]
        total = math.prod(ks)
        dead = total - math.prod(live)
        if dead:
            per_tap = cx.analysis.layers[nd.id].tensors[0].numel // total  # weights per kernel tap
            yield cx.hit(nd, f"{nd.name}: {dead:,} of the {total:,} taps of the {window(ks)} kernel "
                             f"only ever see zero padding around the {shape_str(sizes)} input: "
                             f"{dead * per_tap:,} weights never get a gradient")


def _live_taps(N: int, K: int, S: int, P: int, D: int, O: int) -> int:
    """How many of the K taps k along one axis ever read a real input position, in closed form.

    Tap k reads a_k + oS, o = 0 … O−1, where a_k = kD − P. Those positions meet [0, N) exactly
    when a_k ≤ N − 1, a_k + (O−1)S ≥ 0 and, if N < S (the input fits between two strides),
    the first of them that is ≥ 0, a_k mod S, is < N. The first two bound k to a range; the
    third is counted over that range as a sum of floors (`_floor_sum`).

    >>> _live_taps(1, 3, 1, 1, 1, 1)   # a 3-tap kernel on a 1-wide input padded by 1
    1
    >>> _live_taps(7, 3, 3, 0, 1, 2)
    3
    """
    lo = max(0, -(((O - 1) * S - P) // D))  # ⌈(P − (O−1)S)/D⌉
    hi = min(K - 1, (N - 1 + P) // D)
    if hi < lo:
        return 0
    n = hi - lo + 1
    if N >= S:
        return n
    # [x mod S < N] = ⌊x/S⌋ − ⌊(x − N)/S⌋ for 0 < N ≤ S, summed over x = kD − P, k = lo … hi
    b = lo * D - P
    return _floor_sum(n, S, D, b) - _floor_sum(n, S, D, b - N)


def _floor_sum(n: int, m: int, a: int, b: int) -> int:
    """Σ_{i=0}^{n−1} ⌊(a·i + b)/m⌋ for m > 0, in O(log) steps (the Euclid-like reduction).

    >>> _floor_sum(5, 3, 2, -4) == sum((2 * i - 4) // 3 for i in range(5))
    True
    """
    total = 0
    while True:
        if not 0 <= a < m:
            total += n * (n - 1) // 2 * (a // m)
            a %= m
        if not 0 <= b < m:
            total += n * (b // m)
            b %= m
        top = a * n + b
        if top < m:
            return total
        n, b, m, a = top // m, top % m, a, m


@rule(
    "NN206", "pooling-window-of-one", "warning",
    summary="A max or average pooling layer with a 1x1 window and stride 1: the identity.",
    why="It costs a layer and does nothing; a larger window or stride was probably meant.",
    bad="""
        input 8x8x8
        maxpool(1)
    """,
    good="""
        input 8x8x8
        maxpool(2)
    """,
    fix="Give the window its intended size (`maxpool(2)`), or remove the layer.",
)
def pooling_window_of_one(cx: Context):
    for nd, sizes, ks, ss, ps, ds in _windowed(cx, "pool"):
        if all(k == 1 for k in ks) and all(s == 1 for s in ss) and not any(ps):
            yield cx.hit(nd, f"{nd.name}: a 1x1 {nd.op} with stride 1 leaves its input unchanged")


def _head_layer(cx: Context):
    """The last weighted layer before the output (the classifier), else the output node."""
    cur = cx.output
    while cur.opdef.category not in ("conv", "linear") and len(cur.inputs) == 1 \
            and cx.source(cur).op != "input":
        cur = cx.source(cur)
    return cur if cur.opdef.category in ("conv", "linear") else cx.output


def _disagree(cx: Context) -> bool:
    t = cx.train
    return bool(t and t.classes and cx.data and cx.data.classes and t.classes != cx.data.classes)


@rule(
    "NN207", "head-width-not-classes", "error",
    summary="The network's output width differs from the number of classes declared by the "
            "train section (`classes N`, or the data source) for a classification loss.",
    why="The loss fails at the first batch (targets out of range) or, worse, trains a head "
        "for the wrong number of classes.",
    bad="""
        input 64
        linear(32) relu
        linear(100)
        train {
          data digits
          loss cross_entropy
        }
    """,
    good="""
        input 64
        linear(32) relu
        linear(10)
        train {
          data digits
          loss cross_entropy
        }
    """,
    fix="Make the last layer as wide as the number of classes (a network parameter "
        "`classes` and `linear(classes)` keep them together).",
)
def head_width(cx: Context):
    if cx.loss not in CLASSIFICATION or cx.classes is None or _disagree(cx):
        return
    classes, where = cx.classes
    width = cx.output.shape[0]
    ok = {classes}
    if cx.loss in ("bce", "bce_logits") and classes == 2:
        ok = {1, 2}
    if width not in ok:
        head = _head_layer(cx)
        yield cx.hit(head, f"{head.name}: the network outputs {width:,} "
                           f"{'values' if len(cx.output.shape) == 1 else 'channels'} but "
                           f"{where} has {plural(classes, 'class', 'classes')}",
                     help=f"make the last layer {classes} wide"
                          + (" (or 1 wide for a binary sigmoid head)" if classes == 2 else ""))


@rule(
    "NN208", "classes-disagree-with-data", "error",
    summary="`classes N` in the train section differs from the number of classes of the data "
            "source.",
    why="One of the two is wrong; the head and the targets cannot both be right.",
    bad="""
        input 64
        linear(10)
        train {
          data digits
          classes 100
          loss cross_entropy
        }
    """,
    good="""
        input 64
        linear(10)
        train {
          data digits
          classes 10
          loss cross_entropy
        }
    """,
    fix="Remove `classes` (the data source fixes it) or correct it.",
)
def classes_disagree(cx: Context):
    if _disagree(cx):
        t = cx.train
        yield cx.hit(cx.span("classes"), f"classes {t.classes} but the {cx.data.name} data has "
                                         f"{cx.data.classes}")


@rule(
    "NN209", "input-shape-not-data", "error",
    summary="The declared `input` does not match the samples of the data source "
            "(the digits are 8x8 grey images: 64 values, `input 1x8x8` or `input 64`).",
    why="Training fails at the first batch with a shape error.",
    bad="""
        input 100
        linear(10)
        train {
          data digits
        }
    """,
    good="""
        input 64
        linear(10)
        train {
          data digits
        }
    """,
    fix="Declare the input shape the data has.",
)
def input_shape_not_data(cx: Context):
    d = cx.data
    if d is None or d.features is None:
        return
    shape = cx.nodes[0].shape
    if math.prod(shape) != d.features:
        yield cx.hit(cx.nodes[0], f"the input is {shape_str(shape)} ({math.prod(shape):,} values) "
                                  f"but each {d.name} sample has {num(d.features)} values",
                     help="use `input 1x8x8` (an image) or `input 64` (a vector)"
                          if d.name == "digits" else None)
