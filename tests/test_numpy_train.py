"""The NumPy trainer backend: its losses against PyTorch's, its steps against TorchBackend's
(same seed, same batches, float64), exact resume, and `nnspec train --backend numpy` learning."""

from __future__ import annotations

import numpy as np
import pytest

import nnspec
from nnspec.backends.numpy import losses
from nnspec.train.numpy_backend import NumpyBackend

torch = pytest.importorskip("torch")

from nnspec.train.torch_backend import TorchBackend, compute_loss  # noqa: E402

LOSS_CASES = [
    ("cross_entropy", {}, "int"), ("cross_entropy", {"label_smoothing": 0.1}, "int"),
    ("cross_entropy", {"label_smoothing": 0.2}, "soft"), ("nll", {}, "int"), ("nll", {}, "soft"),
    ("hinge", {"margin": 0.7}, "int"), ("bce", {}, "prob"), ("bce_logits", {}, "int"),
    ("mse", {}, "float"), ("l1", {}, "float"), ("huber", {"delta": 0.5}, "float"),
]


@pytest.mark.parametrize("name, options, target", LOSS_CASES)
def test_loss_value_and_gradient_equal_torch(name, options, target):
    gen = np.random.default_rng(0)
    out = gen.standard_normal((6, 4))
    if name == "bce":
        out = 1 / (1 + np.exp(-out))
    y = {"int": gen.integers(0, 4, 6), "soft": gen.dirichlet(np.ones(4), 6),
         "prob": gen.random((6, 4)), "float": gen.standard_normal((6, 4))}[target]
    value, dout = losses.loss(name, options, out, y)
    ot = torch.tensor(out, requires_grad=True)
    want = compute_loss(name, options, ot, torch.from_numpy(y))
    want.backward()
    assert value == pytest.approx(float(want.detach()), rel=1e-12)
    np.testing.assert_allclose(dout, ot.grad.numpy(), rtol=1e-10, atol=1e-14)


def _batches(spec, n, seed=0):
    gen = np.random.default_rng(seed)
    shape = spec.graph.input.shape
    return [(gen.standard_normal((8,) + shape), gen.integers(0, 10, 8)) for _ in range(n)]


@pytest.mark.parametrize("path, extra", [
    ("specs/mlp_digits.nn", ""),                                      # adam + weight decay
    ("specs/lenet5.nn", ""),                                          # sgd momentum, tanh, avgpool
    ("specs/mlp_digits.nn", "  optimizer rmsprop(lr=0.01, momentum=0.5)\n  l2 0.01\n  clip norm=0.5\n"),
])
def test_steps_equal_torch_backend_in_float64(path, extra):
    source = open(path).read()
    if extra:
        source = source.replace("train {\n", "train {\n" + extra, 1).replace("  optimizer adam(lr=1e-3)\n", "")
    spec = nnspec.loads(source, path)
    ours = NumpyBackend(spec, seed=3, precision="fp64")
    theirs = TorchBackend(spec, seed=3, precision="fp64")
    for k, v in theirs.weights().items():   # the same seed: the same initial weights
        np.testing.assert_allclose(ours.weights()[k], v, rtol=1e-7, err_msg=k)  # float32 draws
    ours.load_weights(theirs.weights())
    for x, y in _batches(spec, 6):
        a, b = ours.step(x, y, 0.01), theirs.step(x, y, 0.01)
        assert a == pytest.approx(b, rel=1e-9)
        assert ours.last_grad_norm == pytest.approx(theirs.last_grad_norm, rel=1e-9)
    for k, v in theirs.weights().items():
        np.testing.assert_allclose(ours.weights()[k], v, rtol=1e-9, atol=1e-12, err_msg=k)
    x, _ = _batches(spec, 1, seed=9)[0]
    np.testing.assert_allclose(ours.evaluate(x), theirs.evaluate(x), rtol=1e-5, atol=1e-6)


FROZEN_BN = """input 64
fc1: linear(32)
bn: batchnorm relu
fc2: linear(10)
train {
  optimizer sgd(lr=0.1, momentum=0.9, nesterov=true)
  weight_decay 1e-3
  l1 1e-3
  clip value=0.05
  freeze "bn", "fc1"
}
"""


def test_frozen_layers_and_penalties_step_as_torch_backend():
    """Frozen layers stay put, a frozen batch norm keeps its running statistics (evaluation
    mode); L1, decay and value clipping as TorchBackend applies them."""
    spec = nnspec.loads(FROZEN_BN, "frozen.nn")
    ours = NumpyBackend(spec, seed=0, precision="fp64")
    theirs = TorchBackend(spec, seed=0, precision="fp64")
    ours.load_weights(theirs.weights())
    assert ours.frozen() == sorted(theirs.frozen())
    start = ours.weights()
    for x, y in _batches(nnspec.loads(FROZEN_BN), 4):
        assert ours.step(x, y, 0.1) == pytest.approx(theirs.step(x, y, 0.1), rel=1e-9)
    for k, v in theirs.weights().items():
        np.testing.assert_allclose(ours.weights()[k], v, rtol=1e-9, atol=1e-12, err_msg=k)
    for k in ("fc1.weight", "bn.weight", "bn.running_mean"):
        np.testing.assert_array_equal(ours.weights()[k], start[k])


def test_an_op_the_numpy_trainer_cannot_run_is_a_clean_NN040(tmp_path, capsys, monkeypatch):
    from nnspec.backends import numpy as npb
    from nnspec.cli import main
    monkeypatch.setitem(npb.UNSUPPORTED, "rrelu", "a reason given by the table")
    path = tmp_path / "rr.nn"
    path.write_text("input 64\nfc1: linear(32)\nact: rrelu\nfc2: linear(10)\n")
    assert main(["train", str(path), "--data", "digits", "--backend", "numpy",
                 "--run", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert "NN040" in err and "rr.nn:3:6" in err and "Traceback" not in err


def test_state_round_trip_resumes_exactly():
    spec = nnspec.load("specs/cnn_digits.nn")   # batch norm, dropout, adam
    batches = _batches(spec, 5)
    whole = NumpyBackend(spec, seed=1)
    for x, y in batches:
        whole.step(x, y, 0.01)
    part = NumpyBackend(spec, seed=1)
    for x, y in batches[:3]:
        part.step(x, y, 0.01)
    saved = part.state()
    resumed = NumpyBackend(spec, seed=1)
    resumed.load_state(saved)
    for x, y in batches[3:]:
        resumed.step(x, y, 0.01)
    for k, v in whole.state().items():
        np.testing.assert_array_equal(resumed.state()[k], v, err_msg=k)


def test_nnspec_train_with_the_numpy_backend_learns(tmp_path):
    r = nnspec.train("specs/mlp_digits.nn", epochs=4, backend="numpy", run=tmp_path / "run")
    assert r.backend == "numpy"
    losses_ = [h["train_loss"] for h in r.history]
    assert losses_[-1] < 0.5 * losses_[0]
    assert r.test_accuracy > 0.9     # chance is 0.1


def test_the_numpy_backend_refuses_what_it_cannot_run():
    with pytest.raises(RuntimeError, match="CPU only"):
        NumpyBackend(nnspec.load("specs/mlp_digits.nn"), seed=0, device="cuda")


def test_the_numpy_backend_never_imports_torch(tmp_path):
    import subprocess
    import sys
    code = ("import sys, numpy as np, nnspec\n"
            "m = nnspec.compile('specs/cnn_digits.nn', backend='numpy')\n"
            "m.backward(np.ones_like(m.forward(np.zeros((2, 1, 8, 8), np.float32))))\n"
            f"nnspec.train('specs/mlp_digits.nn', epochs=1, backend='numpy', run={str(tmp_path / 'r')!r})\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


TINY = """input 64
fc1: linear(24) relu
drop: dropout(0.2)
fc2: linear(10)
train {{
  data digits
  {optimizer}
  schedule {schedule}
  batch 100
  epochs 3
  seed 3
  clip norm=1.0
  l1 1e-5
  l2 1e-4
  weight_decay 1e-4
  augment noise(std=0.05)
}}
"""


@pytest.mark.parametrize("optimizer, schedule", [
    ("optimizer sgd(lr=0.1, momentum=0.9, nesterov=true)", "step(every=1, gamma=0.5)"),
    ("optimizer adam(lr=0.01)", "warmup(epochs=1), cosine"),
])
def test_numpy_training_resumes_mid_epoch_bitwise_exactly(tmp_path, optimizer, schedule):
    def spec():
        return nnspec.loads(TINY.format(optimizer=optimizer, schedule=schedule), file="tiny.nn")

    whole = nnspec.train(spec(), backend="numpy", run=tmp_path / "a")
    part = nnspec.train(spec(), backend="numpy", run=tmp_path / "b", max_steps=16)  # mid epoch 2
    assert part.stopped == "max_steps"
    rest = nnspec.train(spec(), backend="numpy", run=tmp_path / "b", resume=True)
    a, b = whole.model.state_dict(), rest.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    assert [h["train_loss"] for h in whole.history] == [h["train_loss"] for h in rest.history]
