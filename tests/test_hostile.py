"""Hostile input gets a clean SpecError (or a correct answer) quickly: never another exception,
a hang, a recursion overflow or a memory blow-up. Through the CLI: exit 1 and rendered text,
never a traceback.

The time guard is a generous hang detector (20 s), not a performance assertion.
"""

from __future__ import annotations

import contextlib
import random
import signal
import subprocess
import sys

import pytest
from conftest import ROOT

import nnspec
from nnspec.expand import MAX_NODES

HEADER = "network n\ninput 3x8x8\n"
HANG_SECONDS = 20


class Hang(Exception):
    pass


@contextlib.contextmanager
def hang_guard(seconds: int = HANG_SECONDS):
    def on_alarm(signum, frame):
        raise Hang(f"took more than {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def spec_error(text: str) -> nnspec.SpecError:
    """`nnspec.loads(text)` must raise a SpecError, and nothing else, in time."""
    with hang_guard():
        try:
            nnspec.loads(text)
        except nnspec.SpecError as e:
            e.render()  # rendering must not fail either (huge lines, odd characters)
            return e
    pytest.fail("expected a SpecError")


def codes(text: str) -> list[str]:
    return [d.code for d in spec_error(text).diagnostics]


# ---- text that loads() refuses -----------------------------------------------------------------

HOSTILE = {
    "empty": ("", "NN019"),
    "only_comments": ("# nothing\n# here\n", "NN019"),
    "only_newlines": ("\n" * 100_000, "NN019"),
    "nul_character": ("network n\ninput 3x8x8\nrelu\0", "NN002"),
    "nested_braces_100k": (HEADER + "{" * 100_000 + "relu" + "}" * 100_000, "NN002"),
    "nested_parens_100k": (HEADER + "conv(" + "(" * 100_000 + "1" + ")" * 100_000 + ", 3)", "NN002"),
    "unclosed_braces_100k": (HEADER + "{" * 100_000, "NN002"),
    "unary_minus_100k": (HEADER + "conv(" + "-" * 100_000 + "1, 3)", "NN002"),
    "not_chain_50k": (HEADER + "conv(" + "not " * 50_000 + "1, 3)", "NN002"),
    "sum_chain_100k": (HEADER + "conv(" + "+".join(["1"] * 100_000) + ", 3)", "NN002"),
    "power_chain_50k": (HEADER + "conv(" + "**".join(["1"] * 50_000) + ", 3)", "NN002"),
    "conditional_chain_20k": (HEADER + "conv(" + "1 if true else " * 20_000 + "1, 3)", "NN002"),
    "digits_5000": (HEADER + "conv(" + "9" * 5000 + ", 3)", "NN003"),
    "float_digits_5000": (HEADER + "dropout(0." + "9" * 5000 + ")", "NN003"),
    "float_overflow": (HEADER + "dropout(1e400)", "NN003"),
    "tower_of_powers": (HEADER + "conv(2**2**2**2**2**2, 3)", "NN003"),
    "huge_exponent": (HEADER + "conv(10**100000, 3)", "NN003"),
    "huge_float_power": (HEADER + "dropout(1.5**100000)", "NN003"),
    "complex_power": (HEADER + "dropout((-8)**0.5)", "NN015"),
    "product_overflow": (HEADER + "conv(999999999*999999999*999999999, 3)", "NN003"),
    "ten_mb_line": (HEADER + "relu " * 2_000_000, "NN002"),
    "ten_mb_comment": (HEADER + "#" + "x" * 10_000_000 + "\nrelu\n", "NN002"),
    "recursive_block": (HEADER + "block a() { relu a() }\na()\n", "NN016"),
    "mutually_recursive_blocks": (HEADER + "block a() { b() }\nblock b() { c() }\nblock c() { a() }\na()\n",
                                  "NN016"),
    "repeat_10_pow_9": (HEADER + "repeat 10**9 { relu }\n", "NN017"),
    "repeat_200k_layers": (HEADER + "repeat 200000 { relu }\n", "NN017"),
    "repeat_of_repeats": (HEADER + "repeat 1000 { repeat 1000 { relu } }\n", "NN017"),
    "repeat_of_blocks": (HEADER + "block b() { repeat 1000 { relu } }\nrepeat 1000 { b() }\n", "NN017"),
    "lone_carriage_returns": ("network n\rinput 3x8x8\rrelu\r", "NN001"),
    "unicode_identifier": (HEADER + "конв(3, 3)\n", "NN001"),
    "backslash_at_end": (HEADER + "relu \\", "NN001"),
    "only_a_colon": (":", "NN001"),
    "negative_repeat": (HEADER + "repeat -1 { relu }\n", "NN013"),
    "float_repeat": (HEADER + "repeat 2.5 { relu }\n", "NN013"),
    "zero_shape": ("input 0x8x8\nrelu\n", "NN013"),
    "five_axis_shape": ("input 1x2x3x4x5\nrelu\n", "NN013"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_text_gets_a_clean_error(name):
    text, code = HOSTILE[name]
    assert code in codes(text)


def test_a_chain_longer_than_the_node_limit(monkeypatch):
    # the real limit is 200,000; a line of 200,001 ops costs seconds of parsing alone
    monkeypatch.setattr("nnspec.expand.MAX_NODES", 1000)
    assert codes(HEADER + "relu " * 1001 + "\n") == ["NN017"]
    assert codes(HEADER + "relu " * 600 + "\n" + "relu " * 600 + "\n") == ["NN017"]
    assert len(nnspec.loads(HEADER + "relu " * 999 + "\n").graph.nodes) == 1000


def test_deep_block_hierarchy_is_refused_not_overflowed():
    blocks = "".join(f"block b{i}() {{ b{i - 1}() }}\n" for i in range(1, 400))
    text = HEADER + "block b0() { relu }\n" + blocks + "b399()\n"
    assert codes(text) == ["NN016"]


def test_random_bytes_decode_or_fail_cleanly(tmp_path):
    rng = random.Random(1234)
    for i in range(30):
        path = tmp_path / f"r{i}.nn"
        path.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400))))
        with hang_guard(), pytest.raises(nnspec.SpecError):
            nnspec.load(path)


# ---- files -------------------------------------------------------------------------------------

def test_binary_file(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"PK\x03\x04\x00\x00binary\x00data")
    with pytest.raises(nnspec.SpecError) as info:
        nnspec.load(path)
    [d] = info.value.diagnostics
    assert d.code == "NN002" and "binary" in d.message


def test_invalid_utf8_points_at_the_byte(tmp_path):
    path = tmp_path / "latin1.nn"
    path.write_bytes(b"network n\ninput 3x8x8\n# caf\xe9\nrelu\n")
    with pytest.raises(nnspec.SpecError) as info:
        nnspec.load(path)
    [d] = info.value.diagnostics
    assert (d.code, d.message) == ("NN002", "invalid UTF-8 byte 0xe9")
    assert (d.span.line, d.span.column) == (3, 6)
    text = info.value.render()
    assert "3 | # caf\ufffd" in text and text.splitlines()[4].endswith("     ^")


def test_file_larger_than_the_limit(tmp_path):
    path = tmp_path / "big.nn"
    path.write_text(HEADER + "relu " * 2_000_000)
    with hang_guard(), pytest.raises(nnspec.SpecError) as info:
        nnspec.load(path)
    assert info.value.diagnostics[0].code == "NN002"
    assert "larger than" in info.value.diagnostics[0].message


def test_missing_file_and_directory(tmp_path):
    for path in (tmp_path / "nope.nn", tmp_path):
        with pytest.raises(nnspec.SpecError) as info:
            nnspec.load(path)
        assert info.value.diagnostics[0].code == "NN002"
        assert "cannot read" in info.value.diagnostics[0].message


# ---- inputs that are odd but fine get a correct answer -----------------------------------------

def test_byte_order_mark_is_ignored():
    spec = nnspec.loads("\ufeffnetwork n\ninput 3x8x8\nconv(4, 3)\n")
    assert spec.graph.nodes[1].shape == (4, 6, 6)


def test_crlf_line_endings_and_tabs():
    spec = nnspec.loads("network n\r\ninput\t3x8x8\r\n\tconv(4, 3)\t# tab\r\n")
    assert spec.graph.nodes[1].shape == (4, 6, 6)


def test_nesting_right_at_the_limit_loads():
    depth = 100  # parser.MAX_NESTING
    spec = nnspec.loads(HEADER + "{" * depth + "relu" + "}" * depth)
    assert [nd.name for nd in spec.graph.layers] == ["relu"]
    spec = nnspec.loads(HEADER + "conv(" + "(" * 98 + "4" + ")" * 98 + ", 3)")
    assert spec.graph.nodes[1].shape == (4, 6, 6)


def test_long_but_reasonable_expressions_load():
    spec = nnspec.loads(HEADER + "conv(" + "+".join(["1"] * 250) + ", 3)")
    assert spec.graph.nodes[1].attrs["out"] == 250
    spec = nnspec.loads(HEADER + "conv(" + "-" * 200 + "4, 3)")
    assert spec.graph.nodes[1].attrs["out"] == 4


def test_huge_but_finite_shapes_are_computed_exactly():
    spec = nnspec.loads("input 999999999x999999999x99999999\nflatten\nlinear(999999999)\n")
    t = spec.analyze().totals
    assert t.params == (999999999 * 999999999 * 99999999 + 1) * 999999999


def test_the_node_limit_is_reachable_and_not_exceeded():
    text = HEADER + f"repeat {MAX_NODES - 1} {{ relu }}\n"
    with hang_guard():
        spec = nnspec.loads(text)
    assert len(spec.graph.nodes) == MAX_NODES
    assert codes(HEADER + f"repeat {MAX_NODES} {{ relu }}\n") == ["NN017"]


# ---- the command line: exit 1, rendered text, no traceback -------------------------------------

CLI_CASES = {
    "binary.nn": b"\x00\x01\x02binary",
    "latin1.nn": b"network n\ninput 3x8x8\n# caf\xe9\n",
    "braces.nn": (HEADER + "{" * 100_000).encode(),
    "repeat.nn": (HEADER + "repeat 10**9 { relu }\n").encode(),
    "digits.nn": (HEADER + "conv(" + "9" * 5000 + ", 3)").encode(),
    "minus.nn": (HEADER + "conv(" + "-" * 100_000 + "1, 3)").encode(),
    "recursive.nn": (HEADER + "block a() { a() }\na()\n").encode(),
}


@pytest.mark.parametrize("command", ["check", "table"])
def test_cli_on_hostile_files(tmp_path, command):
    paths = []
    for name, data in CLI_CASES.items():
        (tmp_path / name).write_bytes(data)
        paths.append(str(tmp_path / name))
    if command == "table":
        paths = paths[:3]
    for path in ([paths] if command == "check" else [[p] for p in paths]):
        r = subprocess.run([sys.executable, "-m", "nnspec", command, *path], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 1, r.stderr
        assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
        assert r.stderr.count("error[NN") == len(path)
        assert " --> " in r.stderr or "binary" in r.stderr


def test_cli_on_a_missing_file():
    r = subprocess.run([sys.executable, "-m", "nnspec", "table", "no/such/file.nn"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.startswith("error[NN002]: cannot read 'no/such/file.nn'")
