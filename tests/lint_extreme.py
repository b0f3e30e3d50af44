"""Valid-but-extreme specs for the lint robustness tests (tests/test_lint_fuzz.py).

`extreme_spec(pick)` writes one spec from choices made by `pick`: huge numbers (up to the
checker's 10^18 limit on literals, and shapes grown far past it by doubling concats or
`in.features`), deep stacks, wide concats and extreme train settings. `pick(seq)` returns
one element of `seq`; hypothesis drives it in the property test (so failures shrink) and a
seeded `random.Random` in the 1,000-spec run.
"""

from __future__ import annotations

from typing import Callable, Sequence

Pick = Callable[[Sequence], object]

BIG = (1, 2, 3, 7, 64, 1000, 65_537, 10 ** 8, 2 ** 31, 2 ** 59, 10 ** 17, 999_999_999_999_999_999)
SIZE = (1, 2, 3, 5, 8, 33, 224, 100_000_000, 400_000_000_000_000_000, 999_999_999_999_999_999)
SMALL = (1, 2, 3, 4, 7)
COUNT = (0, 1, 2, 5, 40, 200, 1100)
FLOAT = ("1e-300", "5e-324", "1e-9", "0.5", "0.999999", "1.5", "10", "1e200", "1e300",
         "1.7976931348623157e308")
PROB = ("0.0", "1e-300", "0.5", "0.999999", "1.0")

SPATIAL = (
    "conv({c}, {k}, stride={s}, pad={p}, dilation={d})",
    "conv({c}, {k}, stride={s}, pad={p}, groups=1, bias=false) batchnorm",
    "conv({c}, 1)", "conv({c}, 3, pad=1) relu",
    "maxpool({k}, stride={s}, pad={p})", "maxpool({k})", "avgpool({k}, stride={s}, ceil_mode=true)",
    "maxpool({k}, stride={s}, ceil_mode=true)", "global_avgpool",
    "relu", "sigmoid", "tanh", "leaky_relu(a={f})", "elu(a={f})", "gelu", "prelu",
    "dropout({q})", "lrn({k})", "batchnorm(momentum={q})",
    "repeat {n} {{ concat {{\n  identity\n  identity\n}} }}",
    "repeat {n} {{ add {{\n  identity\n  identity\n}} }}",
    "repeat {n} {{ conv(in.c, 1) sigmoid }}",
    "add {{\n  conv({c}, 3, pad=1)\n  conv({c}, 1)\n}}",
)
VECTOR = (
    "linear({c})", "linear({c}, bias=false) batchnorm", "linear(in.features)",
    "linear(in.features * {k})", "relu", "sigmoid", "tanh", "softmax", "log_softmax",
    "dropout({q})", "maxout({c})", "maxout(in.features, pieces={k})",
    "repeat {n} {{ linear(in.features) relu }}", "repeat {n} {{ linear({c}) sigmoid }}",
    "repeat {n} {{ concat {{\n  identity\n  identity\n}} }}",
    "repeat {n} {{ add {{\n  linear(in.features)\n  identity\n}} }}",
    "add {{\n  linear({c})\n  linear({c})\n}}",
)
TRAIN = (
    "loss cross_entropy(label_smoothing={q})", "loss mse", "loss bce", "loss bce_logits",
    "loss nll", "loss hinge(margin={f})", "loss huber(delta={f})", "loss l1",
    "optimizer sgd(lr={f}, momentum={f}, nesterov=true, dampening={f})",
    "optimizer sgd(lr={f}, momentum={q})", "optimizer adam(lr={f}, beta1={q}, beta2={q}, eps={f})",
    "optimizer adamw(lr={f}, weight_decay={f})", "optimizer adagrad(lr={f})",
    "optimizer rmsprop(lr={f}, decay={q}, momentum={f})",
    "weight_decay {f}", "l1 {f}", "l2 {f}", "batch {c}", "epochs {c}", "seed {c}",
    "validation {q}", "classes {c}", "early_stopping patience={c}, min_delta={f}",
    "clip norm={f}", "elastic_net l1={f}, l2={f}",
    "schedule exponential(gamma={f})", "schedule step(every={c}, gamma={f})",
    "schedule multistep(milestones=({k}, {c}), gamma={f})", "schedule inv(k={f})",
    "schedule cosine(t_max={c}, min_lr={f})", "schedule restarts(period={c}, mult={c}, min_lr={f})",
    "schedule warmup(epochs={c}, start={q}), cosine",
    "init he", "init xavier(dist=uniform)", "init default", "init zeros", "init constant(value={f})",
    "init normal(std={f}, mean={f})", "init uniform(a={f})", 'init "*" normal(std={f})',
    "data digits", "data synthetic(samples={c}, classes={c})",
    'freeze "*"', "augment hflip(p={q}), cutout(size={c}), crop(pad={c}), rotate(degrees={f})",
    "augment mixup(alpha={f}), noise(std={f}), translate(pixels={c})",
)


def _numbers(pick: Pick) -> dict:
    return {"c": pick(BIG), "k": pick(SMALL + BIG[:6]), "s": pick(SMALL + (10 ** 17,)),
            "p": pick((0, 0, 1, 2, 10 ** 9)), "d": pick((1, 1, 2, 10 ** 6)), "n": pick(COUNT),
            "f": pick(FLOAT), "q": pick(PROB)}


def extreme_spec(pick: Pick) -> str:
    """One spec; the checker may still reject it (a window that does not fit, NN020)."""
    rank = pick((1, 2, 3))
    dims = [pick(SIZE) for _ in range(rank)]
    lines = ["input " + "x".join(map(str, dims))]
    for _ in range(pick(range(7))):
        if rank > 1:
            lines.append(pick(SPATIAL).format(**_numbers(pick)))
    if rank > 1:
        lines.append(pick(("flatten", "global_avgpool")))
    for _ in range(pick(range(7))):
        lines.append(pick(VECTOR).format(**_numbers(pick)))
    entries = {}
    for _ in range(pick(range(10))):
        entry = pick(TRAIN).format(**_numbers(pick))
        entries.setdefault(entry.split()[0], entry)  # one entry per key
    if entries:
        lines += ["train {"] + [f"  {e}" for e in entries.values()] + ["}"]
    return "\n".join(lines) + "\n"
