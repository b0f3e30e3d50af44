"""NN4xx: initialisation — constant weights, schemes that do not fit the activation, and a
static layer-by-layer estimate of the activation scale (nnspec.lint.variance).

These rules read the train section's `init` entries, so they apply only to specs that
have a `train { }` section (PyTorch's default init is assumed when it names none).
"""

from __future__ import annotations

import math

from ..config import matching_nothing
from .catalogue import rule
from .context import RELU_LIKE, SATURATING, Context, fan, num, plural
from .variance import second_moments, weight_gain

_BEFORE_ACTIVATION = frozenset({"dropout", "identity", "flatten", "maxpool", "avgpool",
                                "adaptive_avgpool", "global_avgpool"})


def _names(nodes, limit: int = 3) -> str:
    names = [nd.name for nd in nodes]
    return ", ".join(names[:limit]) + (f", … ({len(names)} in all)" if len(names) > limit else "")


def _by_choice(cx: Context, nodes):
    """Group weighted layers by the init entry that applies to them (in source order)."""
    groups: dict[int, tuple] = {}
    for nd in nodes:
        ch = cx.init_of(nd)
        key = id(ch)
        groups.setdefault(key, (ch, []))[1].append(nd)
    return list(groups.values())


@rule(
    "NN401", "constant-weight-init", "error",
    summary="`init zeros` or `init constant(…)` applied to hidden layers (layers followed by "
            "another weighted layer).",
    why="Every unit of such a layer computes the same function and receives the same "
        "gradient, so they stay identical forever: symmetry never breaks and the layer has "
        "the capacity of one unit (with zeros, hidden gradients are 0 as well).",
    bad="""
        input 64
        linear(32) relu
        linear(10)
        train {
          init zeros
        }
    """,
    good="""
        input 64
        linear(32) relu
        linear(10)
        train {
          init he
        }
    """,
    fix="Use a random scheme (`init he` for ReLU, `init xavier` for tanh/sigmoid); zeros are "
        "fine for the last layer only (`init \"head\" zeros`).",
)
def constant_init(cx: Context):
    if cx.train is None:
        return
    hidden = cx.downstream_weighted()
    nodes = [nd for nd in cx.weighted if nd.id in hidden]
    for choice, group in _by_choice(cx, nodes):
        if choice.name in ("zeros", "constant"):
            yield cx.hit(choice.span, f"init {choice} gives every unit of "
                                      f"{plural(len(group), 'hidden layer')} ({_names(group)}) the "
                                      f"same weights: they stay identical during training")


def _next_activation(cx: Context, nd):
    nxt = cx.ahead(nd, _BEFORE_ACTIVATION)
    return nxt if nxt is not None and nxt.opdef.category == "activation" else None


@rule(
    "NN402", "init-activation-mismatch", "info",
    summary="Xavier init feeding ReLU-like activations (He init is derived for them), or He "
            "init feeding tanh/sigmoid (Xavier is); layers followed by batch norm are exempt.",
    why="Xavier's variance 2/(fan_in + fan_out) halves the signal's second moment at every "
        "ReLU layer; He's 2/fan_in doubles the pre-activations of tanh/sigmoid and pushes "
        "them into saturation.",
    bad="""
        input 64
        linear(64) relu
        linear(10)
        train {
          init xavier
        }
    """,
    good="""
        input 64
        linear(64) relu
        linear(10)
        train {
          init he
        }
    """,
    fix="`init he` for ReLU-like activations, `init xavier` for tanh and sigmoid.",
    false_positives="In shallow networks (a few layers) the mismatch compounds little; "
                    "NN403 reports when it actually matters. The output's own activation (a "
                    "sigmoid head) is not counted: no later layer compounds it.",
)
def init_activation_mismatch(cx: Context):
    if cx.train is None:
        return
    pairs = []
    hidden = cx.downstream_weighted()
    for nd in cx.weighted:
        act = _next_activation(cx, nd)
        if act is None or act.id not in hidden:
            continue  # an output activation: no later layer compounds the mismatch
        scheme = cx.init_of(nd).name
        if (scheme == "xavier" and act.op in RELU_LIKE) or (scheme == "he" and act.op in SATURATING):
            pairs.append((nd, act))
    groups: dict[int, tuple] = {}
    for nd, act in pairs:
        ch = cx.init_of(nd)
        groups.setdefault(id(ch), (ch, []))[1].append((nd, act))
    for ch, group in groups.values():
        acts = sorted({a.op for _, a in group})
        gains = []
        for nd, act in group:
            fi, fo = fan(nd, cx.graph)
            gains.append(weight_gain(ch, fi, fo) * (0.5 if act.op in RELU_LIKE else 1.0))
        mean = math.exp(sum(math.log(g) for g in gains) / len(gains))
        better = "he" if ch.name == "xavier" else "xavier"
        yield cx.hit(ch.span, f"init {ch.name} feeds {'/'.join(acts)} in "
                              f"{plural(len(group), 'layer')} ({_names([n for n, _ in group])}): "
                              f"the signal's second moment changes ×{gains and num(mean)} per layer",
                     help=f"use `init {better}`")


_LOW, _HIGH = 1e-8, 1e8


@rule(
    "NN403", "activation-scale-drift", "warning",
    summary="A static, layer-by-layer estimate of the input's signal at initialisation "
            "(fan-in, init variance, activation; batch norm resets it) leaves [1e-8, 1e8] "
            "of its scale at the input.",
    why="The signal (and its gradient) then vanishes or explodes with depth before training "
        "starts: He et al. (2015) report that a 30-layer plain ReLU network initialised with "
        "Xavier — a factor 2^-30 ≈ 1e-9 — does not learn, and the VGG authors trained their "
        "16-layer network by initialising it from a shallower one. The model: standardised "
        "inputs, zero-mean independent weights; biases are left out (constant at "
        "initialisation, they carry no information about the input); pooling is taken as "
        "scale-preserving.",
    bad="""
        input 64
        repeat 12 { linear(64) relu }
        linear(10)
        train {
          init default
        }
    """,
    good="""
        input 64
        repeat 12 { linear(64) relu }
        linear(10)
        train {
          init he
        }
    """,
    fix="Use the init that keeps the scale (He for ReLU, Xavier for tanh/sigmoid), or add "
        "batch norm.",
)
def activation_scale_drift(cx: Context):
    if cx.train is None:
        return
    q = second_moments(cx)
    for nd in cx.weighted:
        v = q[nd.id]
        if v is None or _LOW <= v <= _HIGH:
            continue
        n, ref = 0, 1.0
        cur = nd
        while True:
            if cur.opdef.category in ("conv", "linear"):
                n += 1
            if cur.op in ("batchnorm", "input") or cur.opdef.category == "merge" or not cur.inputs:
                ref = q[cur.id] or 1.0
                break
            cur = cx.source(cur)
        per = (v / ref) ** (1 / max(n, 1))
        acts = sorted({a.op for a in (_next_activation(cx, w) for w in cx.weighted) if a is not None})
        inits = sorted({str(cx.init_of(w)) for w in cx.weighted})
        direction = "fallen" if v < 1 else "grown"
        relu = any(a in RELU_LIKE for a in acts)
        help = ("use `init he` for ReLU layers, or add batchnorm" if relu
                else "use `init xavier` for tanh/sigmoid layers, or add batchnorm")
        if v > 1 and not relu:
            help = "scale the init down (`init xavier`), or add batchnorm"
        yield cx.hit(nd, f"{nd.name}: the input's signal has {direction} to E[x²] = {num(v)} "
                         f"after {plural(n, 'weighted layer')} without normalisation "
                         f"(×{num(per)} per layer, init {', '.join(inits)}"
                         f"{' with ' + '/'.join(acts) if acts else ''})",
                     help=help,
                     notes=("static estimate at initialisation: inputs with E[x²] = 1, "
                            "zero-mean independent weights, the part of each activation that "
                            "depends on the input (nnspec.lint.variance)",))
        return


@rule(
    "NN404", "init-pattern-matches-nothing", "warning",
    summary="A per-layer `init \"pattern\" scheme` whose pattern matches no layer with parameters.",
    why="The init the author meant for those layers is silently not applied (a renamed layer, "
        "a typo, or a pattern in another network's naming).",
    bad="""
        input 64
        fc1: linear(32) relu
        fc2: linear(10)
        train {
          init he
          init "head*" zeros
        }
    """,
    good="""
        input 64
        fc1: linear(32) relu
        fc2: linear(10)
        train {
          init he
          init "fc2" zeros
        }
    """,
    fix="Use a pattern that matches the layer names `nnspec table` shows.",
)
def init_pattern_matches_nothing(cx: Context):
    if cx.train is None:
        return
    names = [s.node.name for s in cx.analysis.layers[1:] if s.params]
    unmatched = set(matching_nothing([p for p, _ in cx.train.init_overrides], names))
    for pattern, choice in cx.train.init_overrides:
        if pattern in unmatched:
            yield cx.hit(choice.span, f"init pattern \"{pattern}\" matches no layer with parameters",
                         help=_closest(pattern, names))


def _closest(pattern: str, names) -> str | None:
    from .rules_training import closest_prefix
    return closest_prefix(pattern, names)
