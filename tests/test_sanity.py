"""`nnspec train --sanity` (nnspec/train/sanity.py): a healthy spec passes all five checks and
exits 0; each planted bug fails its own check and exits 1.

The language has no layer that mixes samples of a batch (every op maps one sample to one
sample), so the batch-mixing bug is planted by wrapping the compiled model's forward
(monkeypatching `compile_torch`), as is the wrong gradient (a custom autograd function)."""

from __future__ import annotations

import re

import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import nnspec.backends.torch as torch_backend  # noqa: E402
from nnspec.cli import main  # noqa: E402
from nnspec.train import sanity  # noqa: E402

DATA = Path(__file__).resolve().parent / "data" / "health"
OK = str(DATA / "mlp_ok.nn")

_CACHE: dict = {}


def checks(path=OK) -> dict[str, sanity.Check]:
    if path not in _CACHE:
        _CACHE[path] = {c.name: c for c in sanity.run(path)}
    return _CACHE[path]


def test_a_healthy_spec_passes_every_check():
    got = checks()
    assert list(got) == ["initial loss", "overfit one batch", "zero-input baseline", "batch independence",
                         "gradient check (float64)"]
    assert all(c.status == "pass" for c in got.values()), got
    loss = float(got["initial loss"].measured)
    assert math.log(10) / 2 <= loss <= 2 * math.log(10)


def test_the_cli_prints_a_table_and_exits_0(capsys):
    rc = main(["train", OK, "--sanity"])
    out = capsys.readouterr().out
    assert rc == 0
    assert out.splitlines()[0].split() == ["check", "result", "measured", "expected"]
    assert out.count("PASS") == 5 and out.rstrip().endswith("all 5 checks passed")


def test_a_large_initial_loss_fails_the_first_check():
    c = checks(str(DATA / "init_loss.nn"))["initial loss"]
    assert c.status == "fail" and float(c.measured) > 2 * math.log(10)


def test_a_learning_rate_that_moves_nothing_cannot_overfit_or_beat_zeros():
    got = checks(str(DATA / "update_ratio.nn"))  # sgd(lr=1e-7)
    assert got["overfit one batch"].status == "fail"
    assert got["zero-input baseline"].status == "fail"
    assert got["batch independence"].status == "pass" and got["gradient check (float64)"].status == "pass"


def _patched(monkeypatch, wrap):
    real = torch_backend.compile_torch

    def compile_torch(spec, **kw):
        model = real(spec, **kw)
        inner = model.forward
        model.forward = lambda x: wrap(inner, x)
        return model

    monkeypatch.setattr(torch_backend, "compile_torch", compile_torch)


def test_a_reshape_that_mixes_samples_fails_batch_independence(monkeypatch, capsys):
    # the classic bug: a view that swaps the batch axis with a feature axis and back, here
    # written as its effect: every output gets a little of the next sample's
    _patched(monkeypatch, lambda f, x: f(x + 0.1 * x.roll(1, dims=0)))
    got = {c.name: c for c in sanity.run(OK)}
    assert got["batch independence"].status == "fail"
    assert "for j ≠ i" in got["batch independence"].measured
    assert got["gradient check (float64)"].status == "pass"
    assert main(["train", OK, "--sanity"]) == 1
    assert "FAIL" in capsys.readouterr().out


class _WrongBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return 1.5 * g  # the forward is the identity: its gradient is g


def test_a_wrong_backward_fails_the_gradient_check(monkeypatch):
    _patched(monkeypatch, lambda f, x: _WrongBackward.apply(f(x)))
    got = {c.name: c for c in sanity.run(OK)}
    assert got["gradient check (float64)"].status == "fail"
    # |1.5 a - a| / (1.5 |a| + |a|) = 0.2 for every weight
    assert "max relative error 0.2 " in got["gradient check (float64)"].measured
    assert got["batch independence"].status == "pass"


def test_sanity_leaves_the_callers_random_state_alone():
    before = torch.get_rng_state()
    sanity.run(str(DATA / "frozen.nn"))  # dropout draws while training inside
    assert torch.equal(torch.get_rng_state(), before)


def test_the_docs_table_is_what_the_code_prints():
    # The gradient check's float64 rounding error (~1e-8) depends on torch's thread count and
    # summation order, so that one figure is compared by magnitude (and the column padding it
    # sets is ignored); every other cell of the table exactly.
    doc = (Path(__file__).resolve().parent.parent / "docs" / "train.md").read_text("utf-8")
    got = sanity.table(list(checks().values()))
    shown = re.search(r"```text\n(check +result[^`]*)```", doc)
    assert shown, "docs/train.md lost its sanity table"
    err = re.compile(r"max relative error ([0-9.e+-]+)")
    assert all(float(v) < 1e-6 for v in err.findall(shown.group(1)) + err.findall(got))

    def cells(table):
        return [re.split(r"  +", err.sub("max relative error N", line).rstrip())
                for line in table.splitlines()]
    assert cells(shown.group(1)) == cells(got)
