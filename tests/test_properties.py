"""Property tests (hypothesis).

- The output-size formula of conv and pooling against brute-force enumeration of the window
  positions (padding, dilation, stride, ceil_mode with PyTorch's rule).
- Parameter and MAC counts of conv, linear and batchnorm against the formulas of domain.md,
  written out again here.
- "A clean error, never a traceback": random token soups and mutated shipped specs given to
  `nnspec.loads` produce a Spec or a SpecError, nothing else; a Spec then analyzes and renders.

Example counts are bounded so the file runs in well under 30 s.
"""

from __future__ import annotations

import pytest
from conftest import SPECS
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import nnspec
from nnspec import report
from nnspec.explain import explain
from nnspec.ops import OPS as REGISTRY
from nnspec.ops import _lit, user_ops

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---- window arithmetic against enumeration -----------------------------------------------------

def enumerate_windows(n: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """Count window positions by walking the padded input, without the closed formula.

    Floor mode keeps every window that lies wholly inside the padded input. Ceil mode also
    keeps one last window that hangs over the end, when the full windows leave a tail of the
    padded input unseen; PyTorch drops it when it would start in the right padding."""
    padded = n + 2 * p
    extent = d * (k - 1) + 1
    starts = []
    at = 0
    while at + extent <= padded:
        starts.append(at)
        at += s
    if ceil_mode and starts and starts[-1] + extent < padded:
        extra = starts[-1] + s
        if extra < n + p:  # starts inside the input or the left padding
            starts.append(extra)
    return len(starts)


windows = st.fixed_dictionaries({
    "n": st.integers(1, 40), "k": st.integers(1, 7), "s": st.integers(1, 4),
    "p": st.integers(0, 3), "d": st.integers(1, 3), "ceil": st.booleans()})


def one_axis_shape(text: str):
    """Load a spec and return the output shape of its single layer."""
    return nnspec.loads(text).graph.nodes[1].shape


@FAST
@given(windows, st.integers(1, 8))
def test_conv_output_size_matches_enumeration(w, channels):
    n, k, s, p, d = w["n"], w["k"], w["s"], w["p"], w["d"]
    expected = enumerate_windows(n, k, s, p, d, False)
    text = f"input {channels}x{n}x{n + 3}\nconv(5, ({k}, 1), stride=({s}, 1), pad=({p}, 0), dilation=({d}, 1))\n"
    if expected == 0:
        with pytest.raises(nnspec.SpecError) as info:
            nnspec.loads(text)
        assert [x.code for x in info.value.diagnostics] == ["NN020"]
    else:
        assert one_axis_shape(text) == (5, expected, n + 3)


@FAST
@given(windows)
def test_maxpool_output_size_matches_enumeration(w):
    n, k, s, p, d, ceil = w["n"], w["k"], w["s"], w["p"], w["d"], w["ceil"]
    assume(2 * p <= d * (k - 1) + 1)  # PyTorch: padding at most half the (dilated) window
    expected = enumerate_windows(n, k, s, p, d, ceil)
    text = (f"input 2x{n}\nmaxpool({k}, stride={s}, pad={p}, dilation={d}, "
            f"ceil_mode={'true' if ceil else 'false'})\n")
    if expected == 0:
        with pytest.raises(nnspec.SpecError):
            nnspec.loads(text)
    else:
        assert one_axis_shape(text) == (2, expected)


@FAST
@given(windows)
def test_avgpool_output_size_matches_enumeration(w):
    n, k, s, p, ceil = w["n"], w["k"], w["s"], w["p"], w["ceil"]
    assume(2 * p <= k)
    expected = enumerate_windows(n, k, s, p, 1, ceil)
    text = f"input 3x{n}x{n}\navgpool({k}, stride={s}, pad={p}, ceil_mode={'true' if ceil else 'false'})\n"
    if expected == 0:
        with pytest.raises(nnspec.SpecError):
            nnspec.loads(text)
    else:
        assert one_axis_shape(text) == (3, expected, expected)


def test_enumeration_agrees_with_the_cs231n_examples():
    assert enumerate_windows(7, 3, 1, 0, 1, False) == 5
    assert enumerate_windows(7, 3, 2, 0, 1, False) == 3
    assert enumerate_windows(7, 3, 3, 0, 1, False) == 2   # "doesn't fit": one column unseen
    assert enumerate_windows(227, 11, 4, 0, 1, False) == 55
    assert enumerate_windows(112, 3, 2, 1, 1, False) == 56  # ResNet's max pool
    assert enumerate_windows(5, 2, 2, 0, 1, True) == 3     # ceil_mode covers the last column
    assert enumerate_windows(4, 2, 2, 1, 1, True) == 3     # ... but never starts in the right padding


@FAST
@given(st.integers(1, 64), st.sampled_from([1, 3, 5, 7]), st.integers(5, 30))
def test_same_padding_keeps_the_size(c, k, n):
    assert one_axis_shape(f"input {c}x{n}x{n}\nconv(8, {k}, pad=\"same\")\n") == (8, n, n)


# ---- parameters and MACs against domain.md -----------------------------------------------------

def conv_params(fh, fw, c_in, groups, c_out, bias):
    return (fh * fw * c_in // groups + (1 if bias else 0)) * c_out


def conv_macs(c_out, oh, ow, c_in, groups, fh, fw):
    return c_out * oh * ow * (c_in // groups * fh * fw)


@FAST
@given(st.integers(1, 6), st.integers(1, 6), st.integers(1, 5), st.integers(1, 4),
       st.integers(1, 4), st.booleans(), st.integers(0, 2))
def test_conv_params_and_macs(fh, fw, gin, gout, groups, bias, pad):
    c_in, c_out, n = gin * groups, gout * groups, 12
    text = (f"input {c_in}x{n}x{n}\nconv({c_out}, ({fh}, {fw}), pad={pad}, groups={groups}, "
            f"bias={'true' if bias else 'false'})\n")
    an = nnspec.loads(text).analyze()
    layer = an.layers[1]
    oh, ow = n - fh + 2 * pad + 1, n - fw + 2 * pad + 1
    assert layer.node.shape == (c_out, oh, ow)
    assert layer.params == conv_params(fh, fw, c_in, groups, c_out, bias)
    assert layer.macs == conv_macs(c_out, oh, ow, c_in, groups, fh, fw)
    assert an.totals.params == layer.params


@FAST
@given(st.lists(st.integers(1, 300), min_size=2, max_size=5), st.booleans())
def test_mlp_params_and_macs(widths, bias):
    lines = [f"input {widths[0]}"] + [f"linear({w}, bias={'true' if bias else 'false'}) relu"
                                      for w in widths[1:]]
    an = nnspec.loads("\n".join(lines) + "\n").analyze()
    pairs = list(zip(widths, widths[1:]))
    assert an.totals.params == sum((i + (1 if bias else 0)) * o for i, o in pairs)
    assert an.totals.macs == sum(i * o for i, o in pairs)


@FAST
@given(st.integers(1, 512), st.booleans())
def test_batchnorm_params_and_buffers(c, affine):
    an = nnspec.loads(f"input {c}x4x4\nbatchnorm(affine={'true' if affine else 'false'})\n").analyze()
    assert an.totals.params == (2 * c if affine else 0)
    assert an.totals.buffers == 2 * c  # running mean and variance; num_batches_tracked is a counter


def test_domain_md_worked_examples():
    # 4 filters 5x5x3 -> (5*5*3+1)*4 = 304; then 6 filters 5x5x4 -> (5*5*4+1)*6 = 606
    an = nnspec.loads("input 3x32x32\nconv(4, 5)\nconv(6, 5)\n").analyze()
    assert [s.params for s in an.layers[1:]] == [304, 606]
    # a single FC neuron on a 32x32x3 image: 3072 weights
    an = nnspec.loads("input 3x32x32\nflatten\nlinear(1, bias=false)\n").analyze()
    assert an.totals.params == 3072


# ---- the fuzzer: a Spec or a SpecError, never anything else -------------------------------------

TOKENS = [
    "network", "input", "block", "train", "add", "concat", "repeat", "as", "if", "else", "in",
    "and", "or", "not", "true", "false", "conv", "maxpool", "avgpool", "linear", "relu",
    "flatten", "batchnorm", "dropout", "identity", "global_avgpool", "adaptive_avgpool",
    "maxout", "prelu", "lrn", "softmax", "loss", "optimizer", "sgd", "adam", "schedule", "freeze",
    "init", "batch", "x", "c", "i", "in.c", "in.h", "in.shape", "n:", "layer1:", "fc:",
    "(", ")", "{", "}", ",", "=", "->", ":", ".", "+", "-", "*", "/", "//", "%", "**", "==", "<",
    "0", "1", "2", "3", "7", "64", "1000", "0.5", "1e-3", "3x32x32", "16x8x8", "784", "10**9",
    '"same"', '"fc*"', "#", "# comment", "\n", "\n", "\n", " ", "\t", "\\\n", "[", "@", "é",
]


def check_loads(text: str) -> None:
    try:
        spec = nnspec.loads(text)
    except nnspec.SpecError as e:
        assert e.diagnostics
        e.render()
        return
    an = spec.analyze()
    report.to_text(an)
    report.to_json(an)
    report.to_text(an, depth=1)
    for node in spec.graph.layers[:3]:
        explain(an, node.name)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), max_size=60).map(" ".join))
def test_token_soup(text):
    check_loads(text)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), max_size=40).map(" ".join))
def test_token_soup_after_a_valid_prefix(text):
    check_loads("network n(c = 8)\ninput 3x16x16\nconv(c, 3, pad=1) relu\n" + text)


SHIPPED = {p.name: p.read_text("utf-8") for p in sorted(SPECS.glob("*.nn"))}


@st.composite
def mutated_spec(draw):
    text = draw(st.sampled_from(sorted(SHIPPED.values())))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["delete", "duplicate", "insert", "number", "swap"]))
        i = draw(st.integers(0, len(text)))
        j = min(len(text), i + draw(st.integers(0, 40)))
        if kind == "delete":
            text = text[:i] + text[j:]
        elif kind == "duplicate":
            text = text[:j] + text[i:j] + text[j:]
        elif kind == "insert":
            text = text[:i] + draw(st.sampled_from(TOKENS)) + text[i:]
        elif kind == "number":
            digits = [k for k, ch in enumerate(text) if ch.isdigit()]
            if digits:
                k = draw(st.sampled_from(digits))
                text = text[:k] + draw(st.sampled_from(["0", "-1", "99999", "0.5", "2**40", "3x3"])) + text[k + 1:]
        else:
            lines = text.split("\n")
            a = draw(st.integers(0, len(lines) - 1))
            b = draw(st.integers(0, len(lines) - 1))
            lines[a], lines[b] = lines[b], lines[a]
            text = "\n".join(lines)
    return text


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_spec())
def test_mutated_shipped_specs(text):
    check_loads(text)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_unicode(text):
    check_loads(text)


def test_every_shipped_spec_loads():
    assert len(SHIPPED) >= 2
    for name, text in SHIPPED.items():
        nnspec.loads(text, file=name)


# ---- structured fuzzing: syntactically plausible specs with random semantics --------------------

VALUES = st.sampled_from(["0", "1", "2", "3", "5", "8", "16", "-1", "0.5", "1.5", "true", "false",
                          '"same"', "(2, 3)", "(1, 1, 1)", "c", "c * 2", "in.c", "in.h", "i",
                          "2 if i == 0 else 1", "(in.c // 2)", "7 // 0", "in.shape", "x"])
# every op of the registry (a new op is fuzzed with no change here), weighted towards conv
# and relu, plus a block name and a name that is nothing
OPS = st.sampled_from(list(user_ops()) + ["conv", "relu", "batchnorm", "b", "nope"])
KEYWORDS = st.sampled_from(["stride", "pad", "dilation", "groups", "bias", "ceil_mode", "p", "a",
                            "per_channel", "out", "kernel", "units", "pieces", "size", "affine"])
# mostly plausible arguments per op, so that many generated specs get through to the analyzer
PLAUSIBLE = {
    "conv": st.sampled_from(["(8, 3, pad=1)", "(c, 1)", "(16, 3, stride=2, pad=1, bias=false)",
                             "(in.c, 3, pad=\"same\", groups=in.c)", "(4, (1, 3), pad=(0, 1))",
                             "(8, 3, dilation=2, pad=2)", "(8, 5)"]),
    "maxpool": st.sampled_from(["(2)", "(3, stride=2, pad=1)", "(2, ceil_mode=true)", "(3, stride=1, pad=1)"]),
    "avgpool": st.sampled_from(["(2)", "(3, stride=2, ceil_mode=true, count_include_pad=false)"]),
    "adaptive_avgpool": st.sampled_from(["(1)", "(2)", "((2, 1))"]),
    "linear": st.sampled_from(["(10)", "(c)", "(in.features // 2 + 1, bias=false)"]),
    "maxout": st.sampled_from(["(4)", "(4, pieces=3)"]),
    "lrn": st.just("(5)"), "dropout": st.sampled_from(["", "(0.2)"]),
    "leaky_relu": st.sampled_from(["", "(0.1)"]), "elu": st.sampled_from(["", "(a=0.5)"]),
    "prelu": st.sampled_from(["", "(per_channel=true)"]), "batchnorm": st.sampled_from(["", "(eps=1e-3)"]),
    "b": st.sampled_from(["", "(4)", "(c=2, s=2)"]),
}


def example_args(op: str) -> str:
    """The registry's own example call of an op, as spec text: `(6, 3, stride=2, pad=1)`."""
    ex = REGISTRY[op].example
    args = [_lit(v) for v in ex.pos] + [f"{k}={_lit(v)}" for k, v in ex.kw.items()]
    return f"({', '.join(args)})" if args else ""


@st.composite
def call(draw):
    op = draw(OPS)
    if draw(st.integers(0, 7)):
        if op in PLAUSIBLE and draw(st.booleans()):
            return op + draw(PLAUSIBLE[op])
        return op + (example_args(op) if op in REGISTRY else "")
    pos = draw(st.lists(VALUES, max_size=3))
    kw = [f"{draw(KEYWORDS)}={draw(VALUES)}" for _ in range(draw(st.integers(0, 2)))]
    args = pos + kw
    return op + (f"({', '.join(args)})" if args or draw(st.booleans()) else "")


@st.composite
def statement(draw, depth=0):
    kind = draw(st.sampled_from(["call", "call", "call", "chain", "group", "add", "concat",
                                 "repeat", "if"] if depth < 2 else ["call", "chain"]))
    label = draw(st.sampled_from(["", "", "", "", "", "l1: ", "l2: ", "fc: "]))
    if kind == "call":
        body = draw(call())
    elif kind == "chain":
        body = " ".join(draw(st.lists(call(), min_size=2, max_size=3)))
    else:
        inner = "\n".join(draw(st.lists(statement(depth + 1), min_size=0, max_size=3)))
        head = {"group": "", "add": "add ", "concat": "concat ",
                "repeat": f"repeat {draw(st.sampled_from(['0', '1', '2', '3']))} as i ",
                "if": f"if {draw(VALUES)} == 1 "}[kind]
        body = f"{head}{{\n{inner}\n}}"
    expect = draw(st.sampled_from([""] * 8 + [" -> 8x8x8", " -> 16", " -> (in.c, 2)"]))
    return label + body + expect


@st.composite
def structured_spec(draw):
    shape = draw(st.sampled_from(["3x16x16", "8x8x8", "16", "4x20", "1x1x1", "2x4x4x4"]))
    block = f"block b(c = 4, s = 1) {{\n{draw(statement(1))}\n}}\n" if draw(st.booleans()) else ""
    body = "\n".join(draw(st.lists(statement(), min_size=1, max_size=6)))
    train = ""
    if draw(st.booleans()):
        entries = draw(st.lists(st.sampled_from([
            "loss cross_entropy(label_smoothing=0.1)", "optimizer adam(lr=1e-3)", "optimizer sgd",
            "batch 32", "epochs 0", "freeze \"l1\"", "init he", "init \"fc*\" zeros",
            "schedule step(every=3), warmup(epochs=1)", "weight_decay -1", "clip norm=1.0",
            "early_stopping patience=3", "augment hflip, crop(pad=2)", "data synthetic(samples=8)",
            "elastic_net l1=0.1, l2=0.2", "seed 0", "validation 0.2", "bogus 1"]), max_size=6))
        train = "train {\n" + "\n".join(entries) + "\n}\n"
    return f"network n(c = 8)\ninput {shape}\n{block}{body}\n{train}"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(structured_spec())
def test_structured_random_specs(text):
    check_loads(text)
