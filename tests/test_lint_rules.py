"""The lint catalogue: every rule's examples run as tests, parametrized over the catalogue so a
new rule is covered with no new test code; plus the oracles behind the measured numbers."""

from __future__ import annotations

import doctest
import importlib
import math
import pkgutil
import re

import pytest

import nnspec.lint
from nnspec.errors import CODES
from nnspec.lint import RULES, find_rule, lint_source, ordered
from nnspec.lint.catalogue import CATEGORIES, SEVERITIES
from nnspec.lint.variance import expect

ALL = ordered()
LINT_RULES = [r for r in ALL if r.category not in ("checker",)]
# Rules whose examples `nnspec lint` can find: all but the codes a backend raises when it
# builds the model (their examples run in tests/test_lint_codes.py).
LINTED = [r for r in ALL if r.found_by in ("lint", "checker")]


def codes(text: str, **options) -> list[str]:
    return sorted({d.code for d in lint_source(text, "example.nn", options=options).findings})


@pytest.mark.parametrize("rule", LINTED, ids=lambda r: f"{r.code}-{r.name}")
def test_bad_example_triggers_exactly_this_rule(rule):
    assert codes(rule.bad, **rule.options) == [rule.code]


@pytest.mark.parametrize("rule", LINTED, ids=lambda r: f"{r.code}-{r.name}")
def test_good_example_is_clean(rule):
    assert codes(rule.good, **rule.options) == []


@pytest.mark.parametrize("rule", ALL, ids=lambda r: r.code)
def test_rule_record_is_complete(rule):
    assert re.fullmatch(r"NN\d{3}", rule.code)
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)+", rule.name), "kebab-case, at least two words"
    assert rule.severity in SEVERITIES
    assert rule.category in set(CATEGORIES.values()) | {"health"}
    for field in ("summary", "why", "fix", "bad", "good"):
        assert getattr(rule, field).strip(), field
    assert rule.bad != rule.good
    assert (rule.check is None) == (rule.category in ("checker", "suppression", "health"))
    assert find_rule(rule.code) is rule and find_rule(rule.name) is rule


def test_heuristic_rules_are_info_and_say_when_they_are_wrong():
    for r in LINT_RULES:
        if r.severity == "info":
            assert r.false_positives, f"{r.code} is info: say when it is a false positive"
    assert all(r.severity == "info" for r in ALL if r.category == "design")


def test_checker_errors_are_in_the_catalogue():
    for code, c in CODES.items():
        r = RULES[code]
        assert (r.name, r.severity, r.found_by, r.category) == (c.name, "error", c.found_by, "checker")
    assert [r.code for r in ALL if r.category == "checker"] == sorted(CODES)


def test_catalogue_size_and_spread():
    lint = [r for r in ALL if r.check is not None]
    assert len(lint) >= 40
    by_cat = {}
    for r in lint:
        by_cat.setdefault(r.category, []).append(r)
    for cat in ("graph", "spatial", "activations-and-losses", "initialisation",
                "normalisation-and-regularisation", "design", "training", "memory"):
        assert by_cat.get(cat), cat


_KEYWORDS = ("network", "input", "block", "train", "}", "#", "else")


def _label_every_statement(text: str) -> str:
    """Give every statement a label of our own (`zz7: conv(…)`): findings must not change,
    because rules read ops, shapes and the train section, never layer names."""
    out, in_train = [], False
    for no, line in enumerate(text.splitlines(), 1):
        body = line.lstrip()
        if body.startswith("train"):
            in_train = True
        ops = re.findall(r"[a-z_]+(?=\(|\s|$)", body)
        # (a label would name `relu relu` twice: `x_relu`; the checker rejects that, NN018)
        if in_train or not body or body.startswith(_KEYWORDS) or re.match(r"\w+\s*:", body) \
                or len(ops) != len(set(ops)):
            out.append(line)
            continue
        out.append(f"{line[:len(line) - len(body)]}zz{no}: {body}")
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("rule", [r for r in LINT_RULES if r.check is not None and '"' not in r.bad],
                         ids=lambda r: r.code)
def test_findings_do_not_depend_on_layer_names(rule):
    labelled = _label_every_statement(rule.bad)
    assert labelled != rule.bad
    assert codes(labelled, **rule.options) == [rule.code]


# ---- measured values in messages: oracles worked out by hand -----------------------------------

def messages(text: str, **options) -> list[str]:
    return [d.message for d in lint_source(text, "m.nn", options=options).findings]


def test_cs231n_window_that_does_not_fit():
    # N=7, F=3, S=3: (7 - 3 + 0) mod 3 = 1, one row and one column never seen (CS231n notes)
    (msg,) = messages("input 3x7x7\nconv(8, 3, stride=3)\n")
    assert "(7 − 3 + 2·0) mod 3 = 1" in msg
    assert "the last row and column of the 7x7 input" in msg


def test_padding_absorbs_the_remainder():
    # ResNet's stem: (224 - 7 + 2*3) mod 2 = 1, but the lost position is padding: nothing to say
    assert messages("input 3x224x224\nconv(64, 7, stride=2, pad=3, bias=false)\n") == []


def test_bias_before_batchnorm_counts_the_biases():
    (msg,) = messages("input 3x8x8\nconv(16, 3, pad=1)\nbatchnorm relu\n")
    assert "16 biases" in msg


def test_linear_collapse_counts_the_parameters():
    # 64->32->10 has (64+1)*32 + (32+1)*10 = 2,410 parameters; one 64->10 layer (64+1)*10 = 650
    (d,) = lint_source("input 64\nlinear(32)\nlinear(10)\n").findings
    assert "2,410 parameters where one layer has 650" in d.notes[0]


def test_variance_estimate_for_pytorch_default_init_with_relu():
    # Default init: Var(W) = 1/(3 fan_in), so E[z²] gains x1/3 per layer, ReLU halves it:
    # at the 11th linear layer E[z²] = (1/6)^10 * (1/3) = 5.51e-9 < 1e-8.
    (msg,) = messages("input 64\nrepeat 12 { linear(64) relu }\nlinear(10)\ntrain {\n  init default\n}\n")
    assert "fallen to E[x²] = 5.5e-09 after 11 weighted layers" in msg
    value = (1 / 6) ** 10 / 3
    assert math.isclose(value, 5.51e-9, rel_tol=1e-2)


def test_he_init_keeps_the_scale():
    # He: Var(W) = 2/fan_in, ReLU halves E[z²]: x1 per layer, whatever the depth
    text = "input 64\nrepeat 40 { linear(64) relu }\nlinear(10)\ntrain {\n  init he\n}\n"
    assert "NN403" not in codes(text)


def test_residual_network_without_normalisation_explodes():
    # With He init the branch linear-relu-linear returns 2q for an input q; the identity adds
    # q, the ReLU after the sum halves it: x1.5 per block, 1.5^46 > 1e8 (the Fixup observation).
    block = "add {\n  { linear(64) relu linear(64) }\n  identity\n}\nrelu\n"
    text = "input 64\nrepeat 50 {\n" + block + "}\nlinear(10)\ntrain {\n  init he\n}\n"
    assert "NN403" in codes(text)


def test_sigmoid_slopes_bound_the_gradient():
    # sigmoid'(0) = 1/4: six layers give at most 4^-6 = 2.4e-4; the message reports the whole
    # run of six (not the fifth, where the estimate first crosses the limit)
    (msg,) = messages("input 64\nrepeat 6 { linear(64) sigmoid }\nlinear(10)\n")
    k = int(re.search(r"(\d+) saturating", msg).group(1))
    scale = float(re.search(r"about ([0-9.e+-]+)", msg).group(1))
    assert k == 6 and 0.2 ** k < scale <= 0.25 ** k


def test_saturating_run_of_nine_reports_nine_and_an_init_cause():
    (msg,) = messages("input 64\nrepeat 9 { linear(64) sigmoid }\nlinear(10)\n")
    scale = float(re.search(r"about ([0-9.e+-]+)", msg).group(1))
    assert "9 saturating activations in a row" in msg and 0.2 ** 9 < scale <= 0.25 ** 9
    # tanh with normal(std=1) on 256-wide layers: E[z²] = 256·1·E[x²] ≫ 1, the tails
    text = "input 64\nrepeat 5 { linear(256) tanh }\nlinear(10)\ntrain {\n  init normal(std=1.0)\n}\n"
    (d,) = [d for d in lint_source(text, "m.nn").findings if d.code == "NN313"]
    assert "5 saturating activations" in d.message and "init xavier" in d.help
    assert any("normal(std=1" in n for n in d.notes)


def test_expectations_match_monte_carlo():
    np = pytest.importorskip("numpy")
    rng = np.random.default_rng(0)
    z = rng.standard_normal(1_000_000)
    for op, f, df in (("tanh", np.tanh, lambda x: 1 - np.tanh(x) ** 2),
                      ("sigmoid", lambda x: 1 / (1 + np.exp(-x)),
                       lambda x: np.exp(-x) / (1 + np.exp(-x)) ** 2)):
        for var in (0.1, 1.0, 4.0):
            x = z * math.sqrt(var)
            assert expect(op, {}, var, "square") == pytest.approx(float(np.mean(f(x) ** 2)), rel=1e-2)
            assert expect(op, {}, var, "slope") == pytest.approx(float(np.mean(df(x))), rel=1e-2)
    assert expect("relu", {}, 2.0, "square") == 1.0
    assert expect("leaky_relu", {"a": 0.1}, 1.0, "slope") == pytest.approx(0.55)


def test_memory_budget_names_the_batch_that_fits():
    text = "input 3x64x64\nconv(32, 3, pad=1) relu\nconv(32, 3, pad=1) relu\ntrain {\n  batch 1024\n}\n"
    (d,) = lint_source(text, options={"memory_budget": "1GB"}).findings
    # the peak is the backward of the last ReLU: everything kept still alive — the input
    # 3*64*64 (conv 1) and each ReLU's output 32*64*64 (the first is also conv 2's input),
    # 274,432 values — plus the ReLU's output gradient and its input gradient being made
    # (2 * 32*64*64), no parameter gradient yet: 536,576 values = 2,146,304 bytes per sample;
    # parameters (3*9*32+32) + (32*9*32+32) = 10,144 (SGD: no state)
    fits = (2 ** 30 - 10_144 * 4) // 2_146_304
    assert d.code == "NN801" and f"batch {fits} fits" in d.help
    assert "the peak, at the backward of relu_1" in d.notes[0]


def test_head_width_uses_the_data_classes():
    text = "input 64\nlinear(7)\ntrain {\n  data digits\n  loss cross_entropy\n}\n"
    (msg,) = messages(text)
    assert "outputs 7 values but the digits data has 10 classes" in msg


@pytest.mark.parametrize("module", sorted(m.name for m in pkgutil.iter_modules(nnspec.lint.__path__)))
def test_docstring_examples_run(module):
    # the closed forms (rules_spatial), the saturating arithmetic (context, variance) and the
    # catalogue show runnable examples; they are tests
    assert doctest.testmod(importlib.import_module(f"nnspec.lint.{module}")).failed == 0
