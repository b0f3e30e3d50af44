"""Property tests: lint never raises on a network the checker accepts, and every finding
points inside the source it came from; valid-but-extreme specs (numbers up to the checker's
limits and shapes grown far past them, deep stacks, wide concats, extreme train settings)
give findings or a clean SpecError, never another exception or a hang; the closed forms
that replaced loops over positions and taps agree with brute force."""

from __future__ import annotations

import json
import random
import re
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from lint_extreme import extreme_spec
from test_hostile import hang_guard

from nnspec import cli
from nnspec.errors import SpecError
from nnspec.lint import RULES, formats, lint_source
from nnspec.lint.rules_spatial import _floor_sum, _live_taps, _pad_fix
from nnspec.ops import _window_out

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


# ---- valid but extreme: huge numbers, deep stacks, wide concats, extreme train settings ------

def lint_or_spec_error(text: str, **options):
    """Lint must give findings (rendered in every format) or a clean SpecError, in time."""
    with hang_guard():
        try:
            result = lint_source(text, "extreme.nn", options=options)
        except SpecError:
            return None
        formats.to_text([result])
        formats.to_json([result])
        formats.to_sarif([result], "0")
        return result


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data(), st.sampled_from([None, 1, 2 ** 30]))
def test_extreme_specs_give_findings_or_a_clean_error(data, budget):
    text = extreme_spec(lambda seq: data.draw(st.sampled_from(list(seq))))
    lint_or_spec_error(text, **({"memory_budget": budget} if budget else {}))


def _finding(text: str, code: str):
    result = lint_or_spec_error(text)
    assert result is not None, text
    hits = [d for d in result.findings if d.code == code]
    assert hits, [d.code for d in result.findings]
    return hits[0]


def test_huge_init_spread_saturates_with_a_note():
    d = _finding("input 64\nlinear(10)\ntrain {\n  init normal(std=1e200)\n}\n", "NN403")
    # fan_in · std² = 64 · 1e400: past the float range, said so instead of an OverflowError
    assert "E[x²] = more than 1.8e+308 (past the float range)" in d.message


def test_growing_learning_rate_over_10000_epochs_saturates():
    text = "input 64\nlinear(10)\ntrain {\n  schedule exponential(gamma=1.5)\n  epochs 10000\n}\n"
    d = _finding(text, "NN706")
    assert "×more than 1.8e+308 (past the float range) by epoch 10000" in d.message  # 1.5^9999
    text = text.replace("10000", "100")
    assert f"×{1.5 ** 99:.2g} by epoch 100" in _finding(text, "NN706").message


def test_concat_doubled_1100_times_is_exact():
    # 2^1100 channels: far past a float. Identity paths keep E[x²] = 1 whatever the channel
    # count, so the sigmoid stack after them is estimated exactly as after 3 doublings.
    def nn313(doublings: int) -> str:
        text = (f"input 1x4x4\nrepeat {doublings} {{ concat {{\n  identity\n  identity\n}} }}\n"
                "flatten\nrepeat 8 { sigmoid }\n")
        return _finding(text, "NN313").message
    assert nn313(1100) == nn313(3)
    assert "8 saturating activations in a row" in nn313(1100)


def test_features_grown_from_the_largest_input():
    # two (10^18 − 1)-wide layers: 2·10^36 parameters, exact integers all the way to the message
    text = ("input 999999999999999999\nlinear(in.features) relu\nlinear(in.features)\n"
            "train {\n  init he\n  batch 999999999999999999\n}\n")
    result = lint_or_spec_error(text, memory_budget=2 ** 30)
    d = next(d for d in result.findings if d.code == "NN802")
    assert d.message.startswith("parameters (") and "above the 1.0 GB budget" in d.message


def test_windows_of_10_to_the_8_taps_in_closed_form():
    # one output position reads tap k at k − 5·10^7: only the middle tap meets the 1-wide input
    d = _finding("input 1x1\nconv(1, 100000001, pad=50000000)\n", "NN205")
    assert "100,000,000 of the 100,000,001 taps" in d.message
    assert lint_or_spec_error("input 1x100000000\nconv(1, 100000000)\n").findings == []


def test_pooling_window_of_4e17_in_closed_form():
    d = _finding("input 1x400000000000000001\nmaxpool(400000000000000000)\n", "NN201")
    assert "(400000000000000001 − 400000000000000000 + 2·0) mod 400000000000000000 = 1" in d.message
    # (1 + 2p) mod 4e17 ≤ p first holds at p = 2e17, half the window: the exact fix
    assert "pad=200000000000000000 makes the windows cover the input" in d.help
    lint_or_spec_error("input 1x400000000000000000x400000000000000000\nmaxpool(400000000000000000)\n")


# ---- the closed forms against brute force ------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(st.integers(1, 12), st.integers(1, 9), st.integers(1, 9), st.integers(0, 6),
       st.integers(1, 4), st.booleans())
def test_live_taps_and_pad_fix_match_brute_force(N, K, S, P, D, ceil):
    O = _window_out(N, K, S, P, D, ceil)
    if O < 1:
        return
    live = sum(1 for k in range(K) if any(0 <= o * S - P + k * D < N for o in range(O)))
    assert _live_taps(N, K, S, P, D, O) == live
    eff = D * (K - 1) + 1
    fix = next((p for p in range(P + 1, eff // 2 + 1) if (N - eff + 2 * p) % S <= p), None)
    assert _pad_fix(N, eff, S, P) == fix


@given(st.integers(0, 40), st.integers(1, 30), st.integers(-60, 60), st.integers(-60, 60))
def test_floor_sum_matches_brute_force(n, m, a, b):
    assert _floor_sum(n, m, a, b) == sum((a * i + b) // m for i in range(n))


# ---- many suppression comments ---------------------------------------------------------------

def test_thousands_of_suppressions_apply_one_to_one():
    # n linear layers in a row: NN301 fires on each but the first (n − 1 findings); a comment
    # above each silences it, the first one has nothing to silence (NN903), and a trailing
    # comment on every layer names an unknown rule (NN902, with a help line each)
    n = 3000
    lines = ["input 64"]
    for i in range(n):
        lines += ["# nnspec: allow NN301 -- on purpose",
                  f"l{i}: linear(64)  # nnspec: allow no-such-rule-{i % 7} -- typo"]
    with hang_guard():
        result = lint_source("\n".join(lines) + "\n", "many.nn")
    got = Counter(d.code for d in result.findings if d.code.startswith(("NN3", "NN9")))
    assert got == {"NN902": n, "NN903": 1} and result.suppressed == n - 1
    assert all(d.help for d in result.findings if d.code == "NN902")
    (unused,) = [d for d in result.findings if d.code == "NN903"]
    assert unused.span.line == 2  # the comment above l0, the first layer


@pytest.mark.slow
def test_nnspec_lint_over_1000_random_extreme_specs(tmp_path, capsys):
    rng = random.Random(20261130)
    for i in range(1000):
        (tmp_path / f"s{i:04}.nn").write_text(extreme_spec(rng.choice), "utf-8")
    with hang_guard(600):
        code = cli.main(["lint", str(tmp_path), "--memory-budget", "1GB", "--format", "json"])
    out, err = capsys.readouterr()
    assert code in (0, 1) and err == ""
    files = json.loads(out)["files"]
    assert len(files) == 1000 and not any(f["parse_error"] for f in files)
    codes = Counter(d["code"] for f in files for d in f["findings"])
    assert set(codes) <= set(RULES)
    assert sum(n for c, n in codes.items() if not c.startswith("NN0")) > 1000  # rules did run


def test_sizes_past_pythons_int_to_str_guard_are_written_not_raised():
    # 2^14,501 channels: 4,366 digits, past the 4,300-digit guard on int -> str
    text = "input 3x8x8\nrepeat 14500 { concat {\n  identity\n  identity\n} }\nflatten\nlinear(10)\n"
    from nnspec.lint import lint_source
    result = lint_source(text)
    (fc,) = [d for d in result.findings if d.code == "NN606"]   # the fully connected layer's note
    assert sum(ch.isdigit() for ch in fc.message) > 4300           # its input size, written exactly
