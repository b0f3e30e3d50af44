"""Property tests of the front end on valid-but-extreme input (hypothesis): huge repeat
counts, deep nesting, tuples that grow, long labels, odd whitespace and line-break
characters. Whatever the spec, `nnspec.loads` gives a result or a SpecError whose every
diagnostic is located (file, line, column inside the text) and renders; never another
exception. Each property runs a bounded number of examples (a few seconds).

The fixed corpus of the hostile-spec reproducers (benchmarks/bench_hostile.py) is checked
here for its outcome; its timing is the benchmark's business.
"""

from __future__ import annotations

import importlib.util
import signal

import pytest
from conftest import ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nnspec
import nnspec.expr
from nnspec import parser
from nnspec.errors import render

BOUNDED = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HANG_SECONDS = 20  # a hang detector, not a performance assertion
SMALL_BUDGET = 50_000


def outcome(text: str) -> str:
    """'ok' or the first diagnostic's code; asserts every diagnostic is located and renders.
    The work budget is lowered so that an example that exhausts it costs milliseconds: what
    is checked is how the limit is reported, not where it lies."""
    old = signal.signal(signal.SIGALRM, _hang)
    signal.setitimer(signal.ITIMER_REAL, HANG_SECONDS)
    steps, nnspec.expr.MAX_STEPS = nnspec.expr.MAX_STEPS, SMALL_BUDGET
    try:
        nnspec.loads(text, file="p.nn")
        return "ok"
    except nnspec.SpecError as e:
        lines = text.split("\n")
        for d in e.diagnostics:
            if d.span is not None:
                assert d.span.file == "p.nn"
                assert 1 <= d.span.line <= len(lines), (d, len(lines))
                assert 1 <= d.span.column <= len(lines[d.span.line - 1]) + 2, d
            render(d, e.sources.get("p.nn"))
        return e.diagnostics[0].code
    finally:
        nnspec.expr.MAX_STEPS = steps
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _hang(signum, frame):
    raise AssertionError(f"took more than {HANG_SECONDS} s")


HEADER = "network p\ninput 3x8x8\n"
counts = st.one_of(st.integers(0, 3), st.integers(10 ** 3, 10 ** 12), st.just(200_000))


@BOUNDED
@given(st.lists(counts, min_size=1, max_size=4), st.booleans())
def test_nested_repeats_of_any_size(sizes, with_layer):
    inner = "relu" if with_layer else ""
    body = inner
    for n in reversed(sizes):
        body = f"repeat {n} {{ {body} }}"
    got = outcome(HEADER + body + "\nrelu\n")
    assert got in ("ok", "NN017")


@BOUNDED
@given(st.integers(1, 40), st.integers(1, 3), st.booleans())
def test_blocks_that_multiply_work(levels, calls, leaf_layer):
    lines = ["block b0() { " + ("relu" if leaf_layer else "") + " }"]
    lines += [f"block b{i}() {{ " + " ".join([f"b{i - 1}()"] * calls) + " }" for i in range(1, levels + 1)]
    got = outcome(HEADER + "\n".join(lines) + f"\nb{levels}()\nrelu\n")
    assert got in ("ok", "NN017", "NN018", "NN016")


@BOUNDED
@given(st.integers(0, 60), st.integers(0, 120), st.integers(1, 60))
def test_deep_nesting_inside_chains_of_blocks(blocks, depth, top):
    lines = ["block b0() { relu }"]
    for i in range(1, blocks + 1):
        lines.append(f"block b{i}() {{ " + "{ " * depth + f"b{i - 1}()" + " }" * depth + " }")
    got = outcome(HEADER + "\n".join(lines) + "\n" + "{ " * top + f"b{blocks}()" + " }" * top + "\n")
    assert got in ("ok", "NN002", "NN016", "NN017", "NN018")


@BOUNDED
@given(st.integers(0, 30), st.integers(1, 3))
def test_tuples_that_grow(doublings, width):
    params = [f"t0 = ({', '.join(['1'] * width)},)"]
    params += [f"t{i} = t{i - 1} + t{i - 1}" for i in range(1, doublings + 1)]
    text = f"network p({', '.join(params)})\ninput 3x8x8\nconv(len(t{doublings}) % 7 + 1, 1)\n"
    got = outcome(text)
    assert got == ("ok" if width * 2 ** doublings <= 10_000 else "NN017")


@BOUNDED
@given(st.integers(1, 2_000_000), st.integers(1, 3))
def test_long_labels(length, repeats):
    text = HEADER + f"repeat {repeats} as i {{ {'a' * length}{{i}}: relu }}\n"
    got = outcome(text)
    if len(text) > parser.MAX_SOURCE_BYTES:
        assert got == "NN002"  # refused before parsing
    else:
        assert got == ("ok" if length + 1 <= 1000 else "NN017")


odd = st.sampled_from(["\f", "\v", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\t", "\r",
                       " ", "\xa0", "\u200b", "\ufeff", "\x00"])


@BOUNDED
@given(st.lists(st.tuples(st.integers(0, 60), odd), max_size=6))
def test_odd_whitespace_and_line_breaks_anywhere(insertions):
    text = HEADER + "# a comment\nconv(8, 3, pad=1) relu  # another\nx: conv(4, 1)\ntrain {\n  batch 8\n}\n"
    for pos, ch in insertions:
        pos = min(len(text), len(HEADER) + pos)
        text = text[:pos] + ch + text[pos:]
    outcome(text)


@BOUNDED
@given(st.lists(st.sampled_from(["(", ")", "\n", "[", "]", "1", ",", "x", "{", "}", " ", "#", ":",
                                 "denselayer{i + 1}:", "use \"x.nn\"", "min(", "depths[", "\\\n"]),
                max_size=30))
def test_token_soup_with_the_new_syntax(tokens):
    outcome("network p(depths = (1, 2))\ninput 3x8x8\nrepeat 2 as i {\n" + "".join(tokens) + "\n}\n")


# ---- the benchmark's corpus: every reproducer ends as it should -----------------------------------

def _bench():
    path = ROOT / "benchmarks" / "bench_hostile.py"
    spec = importlib.util.spec_from_file_location("bench_hostile", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BENCH = _bench()


@pytest.mark.parametrize("name", sorted(BENCH.CORPUS))
def test_hostile_corpus(name):
    text, want = BENCH.CORPUS[name]
    assert BENCH.run(text) == want


# ---- freeze patterns: compiled once, same answers as matching one by one -------------------------

def _reference(pattern: str, name: str) -> bool:
    """The rule as first written (config.matches), pattern by pattern: the oracle."""
    import fnmatch
    return fnmatch.fnmatchcase(name, pattern) or name.startswith(pattern.rstrip(".*") + ".") \
        or name == pattern


name_parts = st.sampled_from(["features", "layer1", "0", "3", "conv1", "fc", "a", "b", "ab"])
layer_names = st.lists(name_parts, min_size=1, max_size=4).map(".".join)
pattern_chars = st.sampled_from(["features", "layer", "1", "0", ".", "*", "?", "[!a]", "[ab]", "conv",
                                 "fc", "a", "b", "[", "]", "\\"])
patterns = st.lists(pattern_chars, min_size=1, max_size=5).map("".join)


@settings(max_examples=150, deadline=None)
@given(st.lists(patterns, min_size=1, max_size=8), st.lists(layer_names, max_size=12))
def test_compiled_patterns_agree_with_matching_one_by_one(pats, names):
    from nnspec.config import is_frozen, matching_nothing
    for n in names:
        assert is_frozen(n, tuple(pats)) == any(_reference(p, n) for p in pats), n
    assert matching_nothing(pats, names) == [p for p in pats if not any(_reference(p, n) for n in names)]
