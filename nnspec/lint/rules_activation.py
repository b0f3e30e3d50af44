"""NN3xx: activations and losses — missing or doubled non-linearities, heads that do not fit
the loss, saturating stacks."""

from __future__ import annotations

from .catalogue import rule
from .context import (LINEAR_PASS, LOSS_INPUT, NORMALIZES, PROBABILITY, REGRESSION, RELU_LIKE, SATURATING,
                      Context, num)
from .variance import expect, second_moments


def _is_weighted(nd) -> bool:
    return nd.opdef.category in ("conv", "linear") and nd.op != "maxout"


@rule(
    "NN301", "linear-layers-collapse", "warning",
    summary="Two conv/linear layers in a plain chain with nothing non-linear or normalising "
            "between them (only reshapes, dropout or average pooling, linear at inference).",
    why="The composition of linear maps is one linear map: the pair has the capacity of a "
        "single layer (of rank at most the narrower width) at the cost of two.",
    bad="""
        input 64
        linear(32)
        linear(10)
    """,
    good="""
        input 64
        linear(32) relu
        linear(10)
    """,
    fix="Put an activation between them (`linear(32) relu`), or merge them into one layer.",
    false_positives="Deliberate low-rank factorisations do this on purpose: silence with a "
                    "reason. Structures linear by design are not reported: a normalisation "
                    "between the two layers (MobileNetV2's linear bottleneck), or a first layer "
                    "whose output is also used elsewhere (a projection shortcut beside a "
                    "residual path), which no single layer could replace.",
)
def linear_collapse(cx: Context):
    for nd in cx.nodes[1:]:
        if not _is_weighted(nd):
            continue
        prev = _collapsible_partner(cx, nd)
        if prev is None:
            continue
        s_prev, s_nd = cx.analysis.layers[prev.id], cx.analysis.layers[nd.id]
        notes = ()
        if prev.op == "linear" and nd.op == "linear":
            n_in, n_out = cx.graph.in_shapes(prev)[0][0], nd.shape[0]
            notes = (f"together a {n_in}→{n_out} linear map of rank ≤ {min(prev.shape[0], n_out)}; "
                     f"{s_prev.params + s_nd.params:,} parameters where one layer has "
                     f"{(n_in + 1) * n_out:,}",)
        yield cx.hit(nd, f"{prev.name} ({prev.opdef.label(prev.attrs)}) and {nd.name} "
                         f"({nd.opdef.label(nd.attrs)}) have no non-linearity between them",
                     notes=notes)


_PASS_THROUGH = frozenset({"dropout", "identity", "flatten"})


def _collapsible_partner(cx: Context, nd):
    """The weighted layer that `nd` would merge with: reached through single-input linear
    ops that do not normalise, along a chain whose every tensor feeds only the next step.
    None where a normalisation intervenes or the chain branches (merging is then impossible)."""
    cur = cx.source(nd)
    while True:
        if len(cx.consumers[cur.id]) != 1:
            return None
        if _is_weighted(cur):
            return cur
        if cur.op not in LINEAR_PASS or cur.op in NORMALIZES or len(cur.inputs) != 1:
            return None
        cur = cx.source(cur)


@rule(
    "NN302", "consecutive-activations", "warning",
    summary="An activation applied directly to the output of another activation.",
    why="relu(relu(x)) = relu(x); other pairs squash twice and add no capacity, only "
        "saturation. Usually a layer between them was lost in editing.",
    bad="""
        input 64
        linear(32) relu relu
        linear(10)
    """,
    good="""
        input 64
        linear(32) relu
        linear(10)
    """,
    fix="Remove one of the activations, or restore the layer between them.",
)
def consecutive_activations(cx: Context):
    for nd in cx.layers("activation"):
        if nd.op in PROBABILITY:
            continue
        prev = cx.back(nd, _PASS_THROUGH)
        if prev.opdef.category == "activation" and prev.op not in PROBABILITY:
            same = " (the second one does nothing)" if prev.op == nd.op == "relu" else ""
            yield cx.hit(nd, f"{nd.name}: {nd.op} applied to the output of {prev.name} "
                             f"({prev.op}){same}")


def _head(cx: Context):
    return cx.head()


@rule(
    "NN303", "double-softmax", "error",
    summary="A network that ends in softmax trained with cross_entropy, which applies "
            "log-softmax itself.",
    why="The loss then sees probabilities as logits: softmax of values in [0, 1] is nearly "
        "uniform, gradients shrink by orders of magnitude and training stalls.",
    bad="""
        input 64
        linear(10) softmax
        train {
          loss cross_entropy
        }
    """,
    good="""
        input 64
        linear(10)
        train {
          loss cross_entropy
        }
    """,
    fix="Remove the final softmax (apply it only at inference), or use `log_softmax` with "
        "`loss nll`.",
)
def double_softmax(cx: Context):
    h = _head(cx)
    if cx.loss == "cross_entropy" and h.op == "softmax":
        yield cx.hit(h, f"{h.name}: the network ends in softmax, and cross_entropy applies "
                        f"log-softmax again", notes=(f"loss at {cx.span('loss')}",))


@rule(
    "NN304", "double-sigmoid", "error",
    summary="A network that ends in sigmoid trained with bce_logits, which applies the "
            "sigmoid itself.",
    why="The loss squashes values that are already in (0, 1): predictions can never get "
        "below 0.5 or above 0.73, and gradients vanish.",
    bad="""
        input 64
        linear(1) sigmoid
        train {
          loss bce_logits
        }
    """,
    good="""
        input 64
        linear(1)
        train {
          loss bce_logits
        }
    """,
    fix="Remove the final sigmoid, or use `loss bce` (which expects probabilities).",
)
def double_sigmoid(cx: Context):
    h = _head(cx)
    if cx.loss == "bce_logits" and h.op == "sigmoid":
        yield cx.hit(h, f"{h.name}: the network ends in sigmoid, and bce_logits applies the "
                        f"sigmoid again")


@rule(
    "NN305", "nll-without-log-softmax", "error",
    summary="`loss nll` on a network that does not end in log_softmax.",
    why="NLL expects log-probabilities and only negates the target entry: on raw scores the "
        "loss is unbounded below and minimising it just inflates one output.",
    bad="""
        input 64
        linear(10)
        train {
          loss nll
        }
    """,
    good="""
        input 64
        linear(10) log_softmax
        train {
          loss nll
        }
    """,
    fix="End the network with `log_softmax`, or use `loss cross_entropy` on the raw scores.",
)
def nll_without_log_softmax(cx: Context):
    h = _head(cx)
    if cx.loss == "nll" and h.op != "log_softmax":
        got = "probabilities (softmax)" if h.op == "softmax" else f"the output of {h.op}"
        yield cx.hit(h, f"{h.name}: nll expects log-probabilities but gets {got}")


@rule(
    "NN306", "bce-without-sigmoid", "error",
    summary="`loss bce` on a network that does not end in sigmoid.",
    why="Binary cross-entropy takes probabilities in [0, 1]; raw scores make it fail at run "
        "time or produce NaN.",
    bad="""
        input 64
        linear(1)
        train {
          loss bce
        }
    """,
    good="""
        input 64
        linear(1) sigmoid
        train {
          loss bce
        }
    """,
    fix="End the network with `sigmoid`, or better use `loss bce_logits` on the raw scores "
        "(numerically stable).",
)
def bce_without_sigmoid(cx: Context):
    h = _head(cx)
    if cx.loss == "bce" and h.op != "sigmoid":
        yield cx.hit(h, f"{h.name}: bce expects probabilities but the network ends in {h.op}")


@rule(
    "NN307", "softmax-over-one-unit", "error",
    summary="softmax or log_softmax over a single channel or feature.",
    why="softmax of one value is always 1 (log_softmax always 0): the output is constant and "
        "no gradient flows back.",
    bad="""
        input 64
        linear(1) softmax
    """,
    good="""
        input 64
        linear(1) sigmoid
    """,
    fix="Use sigmoid for one output (binary), or widen the layer to the number of classes.",
)
def softmax_one_unit(cx: Context):
    for nd in cx.layers("activation"):
        if nd.op in PROBABILITY and nd.shape[0] == 1:
            const = "1" if nd.op == "softmax" else "0"
            yield cx.hit(nd, f"{nd.name}: {nd.op} over 1 {'channel' if len(nd.shape) > 1 else 'feature'} "
                             f"is always {const}")


@rule(
    "NN308", "cross-entropy-on-one-output", "error",
    summary="cross_entropy or nll on a network with a single output.",
    why="With one class the loss is identically 0: nothing is learned.",
    bad="""
        input 64
        linear(1)
        train {
          loss cross_entropy
        }
    """,
    good="""
        input 64
        linear(2)
        train {
          loss cross_entropy
        }
    """,
    fix="Output one score per class (at least 2), or use bce_logits for a single binary output.",
)
def ce_one_output(cx: Context):
    out = cx.output
    if cx.loss in ("cross_entropy", "nll") and out.shape[0] == 1:
        yield cx.hit(_head(cx), f"{_head(cx).name}: {cx.loss} over 1 output is always 0")


@rule(
    "NN309", "bce-on-single-label-classes", "warning",
    summary="bce/bce_logits with a data source whose samples each have exactly one of more "
            "than two classes.",
    why="BCE treats each output as an independent yes/no label; for single-label classes "
        "cross_entropy models the choice and trains better.",
    bad="""
        input 64
        linear(10)
        train {
          data digits
          loss bce_logits
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
    fix="Use `loss cross_entropy` (with logits) for single-label classification.",
)
def bce_single_label(cx: Context):
    d = cx.data
    if cx.loss in ("bce", "bce_logits") and d is not None and d.single_label and (d.classes or 0) > 2:
        yield cx.hit(cx.span("loss"), f"{cx.loss} treats the {d.classes} outputs as independent "
                                      f"labels, but each {d.name} sample has exactly one of "
                                      f"{d.classes} classes")


@rule(
    "NN310", "activation-on-logits", "warning",
    summary="A ReLU-like, tanh or sigmoid activation on the output of a network trained with "
            "a loss that expects raw logits (cross_entropy, hinge, bce_logits).",
    why="ReLU clips every negative score to 0 (those classes can no longer be pushed down, "
        "and dead outputs get no gradient); tanh/sigmoid bound the logits so the loss can "
        "never become confident.",
    bad="""
        input 64
        linear(10) relu
        train {
          loss cross_entropy
        }
    """,
    good="""
        input 64
        linear(10)
        train {
          loss cross_entropy
        }
    """,
    fix="End the network with the last linear/conv layer.",
)
def activation_on_logits(cx: Context):
    h = _head(cx)
    if LOSS_INPUT.get(cx.loss) not in ("logits", "scores"):
        return
    if h.op in RELU_LIKE or h.op == "tanh" or (h.op == "sigmoid" and cx.loss != "bce_logits"):
        yield cx.hit(h, f"{h.name}: {h.op} on the logits that {cx.loss} expects raw")


@rule(
    "NN311", "probability-head-with-value-loss", "warning",
    summary="A softmax/log_softmax output trained with a regression loss (mse, l1, huber) "
            "or hinge.",
    why="MSE on softmax outputs learns slowly (the gradient vanishes as an output nears 0 or "
        "1); hinge and regression losses expect unbounded scores or values.",
    bad="""
        input 64
        linear(10) softmax
        train {
          loss mse
        }
    """,
    good="""
        input 64
        linear(10)
        train {
          loss cross_entropy
        }
    """,
    fix="For classification use raw scores with cross_entropy; for regression end with the "
        "last linear layer.",
)
def probability_head_value_loss(cx: Context):
    h = _head(cx)
    if h.op in PROBABILITY and (cx.loss in REGRESSION or cx.loss == "hinge"):
        yield cx.hit(h, f"{h.name}: {h.op} output trained with {cx.loss}, which expects "
                        f"{LOSS_INPUT[cx.loss]}")


@rule(
    "NN312", "relu-head-with-regression-loss", "warning",
    summary="A regression network (mse, l1, huber) whose output goes through ReLU.",
    why="It can never predict a negative value, and an output stuck at 0 gets no gradient "
        "(a dead unit), so a wrong prediction may never be corrected.",
    bad="""
        input 8
        linear(16) relu
        linear(1) relu
        train {
          loss mse
        }
    """,
    good="""
        input 8
        linear(16) relu
        linear(1)
        train {
          loss mse
        }
    """,
    fix="End with the linear layer; clamp the predictions at inference if they must be ≥ 0.",
)
def relu_head_regression(cx: Context):
    h = _head(cx)
    if h.op == "relu" and cx.loss in REGRESSION:
        yield cx.hit(h, f"{h.name}: relu on the output of a regression network ({cx.loss}): "
                        f"negative targets cannot be reached and dead outputs get no gradient")


_SLOPE_LIMIT = 1e-3


@rule(
    "NN313", "saturating-stack-vanishes", "warning",
    summary="A deep stack of sigmoid/tanh layers with no normalisation or residual connection "
            "in it; the message gives the depth and a static estimate of the gradient scale.",
    why="Each saturating activation multiplies the backward signal by its mean slope (at "
        "most 0.25 for sigmoid); across the stack the gradient reaching the first layers "
        "becomes too small to train them (vanishing gradients).",
    bad="""
        input 64
        repeat 6 { linear(64) sigmoid }
        linear(10)
    """,
    good="""
        input 64
        repeat 6 { linear(64) relu }
        linear(10)
    """,
    fix="Use ReLU-like activations, or add batchnorm / residual connections in the stack.",
)
def saturating_stack(cx: Context):
    """The estimate: product of E[f'(z)] over the stack, z ~ N(0, E[z²]) from the
    initialisation model (nnspec.lint.variance); batch norm and merges restart the stack.
    One finding per run, at its last layer, with the whole run's length and factor."""
    q = second_moments(cx)
    # node id -> (run length, gradient factor, first activation of the run, largest E[z²])
    depth: dict[int, tuple] = {0: (0, 1.0, None, 0.0)}
    ends: dict[int, tuple] = {}  # first activation's id -> the run at its longest
    for nd in cx.nodes[1:]:
        if nd.op == "batchnorm" or nd.opdef.category == "merge":
            depth[nd.id] = (0, 1.0, None, 0.0)
            continue
        d, scale, first, big = depth[nd.inputs[0]]
        if nd.op in SATURATING:
            var = q[nd.inputs[0]] if q[nd.inputs[0]] is not None else 1.0
            first = first or nd
            d, scale, big = d + 1, scale * expect(nd.op, dict(nd.attrs), var, "slope"), max(big, var)
            if first.id not in ends or ends[first.id][0] < d:
                ends[first.id] = (d, scale, first, big, nd)
        depth[nd.id] = (d, scale, first, big)
    for d, scale, first, big, last in ends.values():
        if scale >= _SLOPE_LIMIT:
            continue
        notes, help = [], None
        init = cx.init_of(first) if cx.train is not None else None
        if init is not None and init.name in ("normal", "uniform") and big > 2.0:
            notes.append(f"init {init} gives the activations inputs of second moment up to "
                         f"{num(big)}: they sit in the flat tails, where the slope is near 0")
            help = "init xavier scales the weights by the fan and keeps the inputs near 1"
        span_of = f"{first.name} … {last.name}" if first is not last else last.name
        yield cx.hit(last, f"{span_of}: {d} saturating activations in a row without "
                           f"normalisation or a residual path; their slopes scale the "
                           f"gradient by about {num(scale)}", help=help, notes=notes)


@rule(
    "NN314", "softmax-in-hidden-layer", "info",
    summary="softmax/log_softmax whose output feeds further layers.",
    why="A softmax in the middle squashes a whole layer onto a simplex and saturates easily; "
        "it is rarely meant outside attention or gating.",
    bad="""
        input 64
        linear(32) softmax
        linear(10)
    """,
    good="""
        input 64
        linear(32) relu
        linear(10)
    """,
    fix="Use an elementwise activation in hidden layers.",
    false_positives="Attention weights and gating (mixture-of-experts) use softmax on purpose.",
)
def softmax_hidden(cx: Context):
    for nd in cx.layers("activation"):
        if nd.op in PROBABILITY and cx.users(nd):
            yield cx.hit(nd, f"{nd.name}: {nd.op} feeds {cx.users(nd)[0].name}, a hidden layer")

