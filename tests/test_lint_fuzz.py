"""Property test: lint never raises on a network the checker accepts, and every finding
points inside the source it came from."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings, strategies as st

from nnspec.lint import RULES, lint_source

SPATIAL = st.sampled_from([
    "conv({c}, {k}, stride={s}, pad={p})", "conv({c}, {k}, bias=false) batchnorm",
    "maxpool({k}, stride={s})", "avgpool({k}, stride={s}, ceil_mode=true)", "relu", "tanh",
    "sigmoid", "dropout(0.{p})", "lrn(3)", "leaky_relu", "elu", "gelu", "prelu(per_channel=true)",
    "add {{\n  conv({c}, 3, pad=1)\n  conv({c}, 1)\n}}", "concat {{\n  relu\n  {{ }}\n}}",
])
VECTOR = st.sampled_from([
    "linear({c})", "linear({c}, bias=false) batchnorm", "relu", "sigmoid", "tanh", "softmax",
    "log_softmax", "dropout(0.{p})", "maxout({c})", "add {{\n  linear({c})\n  linear({c})\n}}",
])
TRAIN = st.lists(st.sampled_from([
    "loss cross_entropy", "loss mse", "loss bce", "loss bce_logits", "loss nll", "loss hinge",
    "optimizer sgd(lr=0.{p}, momentum=0.9)", "optimizer adam(lr=1e-3)", "optimizer adagrad",
    "optimizer adamw(lr=0.01)", "weight_decay 1e-{s}", "l2 1e-3", "batch {c}", "epochs {k}0",
    "validation 0.{p}", "early_stopping patience={k}", "schedule step(every={k}, gamma=0.5)",
    "schedule multistep(milestones=({k}, {c}))", "init he", "init xavier", "init zeros",
    "init normal(std=0.{p})", "data digits", "data synthetic(samples={c}, classes={k})",
    "classes {k}", 'freeze "l*"', 'init "l*" uniform(a=0.1)', "augment hflip, cutout",
]), unique_by=lambda e: e.split()[0], max_size=8)
NUM = st.fixed_dictionaries({"c": st.integers(1, 64), "k": st.integers(1, 5),
                             "s": st.integers(1, 3), "p": st.integers(0, 2)})


@st.composite
def specs(draw):
    h = draw(st.integers(1, 33))
    lines = [f"input {draw(st.integers(1, 8))}x{h}x{h}"]
    for tmpl, nums in draw(st.lists(st.tuples(SPATIAL, NUM), max_size=6)):
        lines.append(tmpl.format(**nums))
    lines.append(draw(st.sampled_from(["flatten", "global_avgpool"])))
    for tmpl, nums in draw(st.lists(st.tuples(VECTOR, NUM), max_size=6)):
        lines.append(tmpl.format(**nums))
    entries = draw(TRAIN)
    if entries:
        nums = draw(NUM)
        lines += ["train {"] + [f"  {e.format(**nums)}" for e in entries] + ["}"]
    return "\n".join(lines) + "\n"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs(), st.sampled_from([None, "1MB", "1GB"]))
def test_lint_never_raises_and_spans_point_into_the_source(text, budget):
    result = lint_source(text, "fuzz.nn", options={"memory_budget": budget} if budget else {})
    n_lines = len(text.splitlines())
    for d in result.findings:
        assert d.code in RULES and d.name == RULES[d.code].name
        if d.span is not None:
            assert 1 <= d.span.line <= n_lines, (d, text)
