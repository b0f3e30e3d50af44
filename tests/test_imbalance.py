"""Class imbalance: `class_weights balanced | (w1, …, wC)` (the weighted mean of PyTorch's
weight=, in both backends) and `sampler balanced` (oversampling), checked by their effect on
the minority class's recall on a synthetic 1:10 split, and the weighted losses against
torch.nn.functional itself."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import nnspec  # noqa: E402
from nnspec.backends.numpy.losses import loss as numpy_loss  # noqa: E402
from nnspec.train.evaluate import evaluate  # noqa: E402
from nnspec.train.loop import TrainError  # noqa: E402

F = torch.nn.functional
BACKENDS = ("torch", "numpy")


# ---- the weighted losses, against PyTorch --------------------------------------------------------

def _torch_loss(name, out, y, w, ls=0.0):
    out = torch.tensor(out, dtype=torch.float64, requires_grad=True)
    yt = torch.tensor(y)
    wt = torch.tensor(w, dtype=torch.float64)
    if name == "cross_entropy":
        value = F.cross_entropy(out, yt, weight=wt, label_smoothing=ls)
    else:
        value = F.nll_loss(out, yt, weight=wt)
    value.backward()
    return float(value.detach()), out.grad.numpy()


@pytest.mark.parametrize("name, ls, soft", [("cross_entropy", 0.0, False), ("cross_entropy", 0.2, False),
                                            ("cross_entropy", 0.1, True), ("nll", 0.0, False)])
def test_weighted_losses_equal_pytorchs_weight_and_their_gradients_autograds(name, ls, soft):
    g = np.random.default_rng(4)
    out = g.normal(size=(7, 4))
    if name == "nll":
        out = out - np.log(np.exp(out).sum(axis=1, keepdims=True))
    y = np.array([0, 1, 1, 3, 3, 3, 2])
    if soft:
        y = g.dirichlet(np.ones(4), size=7)
    w = np.array([0.5, 2.0, 1.0, 4.0])
    want, want_grad = _torch_loss(name, out, y, w, ls)
    value, grad = numpy_loss(name, {"label_smoothing": ls, "weight": w}, out, y)
    assert value == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-10, atol=1e-14)
    # the torch backend's own loss function is PyTorch's weight= too
    from nnspec.train.torch_backend import compute_loss
    t = compute_loss(name, {"label_smoothing": ls, "weight": w}, torch.tensor(out), torch.tensor(y))
    assert float(t) == pytest.approx(want, rel=1e-12)


def test_the_weighted_mean_divides_by_the_weights_of_the_targets():
    out = np.zeros((3, 2))                  # every loss term is ln 2
    y = np.array([0, 0, 1])
    value, _ = numpy_loss("cross_entropy", {"weight": np.array([1.0, 10.0])}, out, y)
    assert value == pytest.approx(np.log(2))  # (1 + 1 + 10)·ln 2 / (1 + 1 + 10)


# ---- the effect on a 1:10 split -----------------------------------------------------------------

SPEC = """input 2
fc1: linear(16) relu
fc2: linear(2)
train {{
  data npz("{path}")
  optimizer adam(lr=1e-2)
  batch 64
  epochs 10
  seed 1
  health off
{extra}}}
"""


@pytest.fixture(scope="module")
def imbalanced(tmp_path_factory):
    """Two overlapping Gaussian classes 2 standard deviations apart: 1,000 : 100 samples to
    train on, 500 : 500 to test on."""
    g = np.random.default_rng(0)

    def draw(n0, n1):
        x = np.concatenate([g.normal(0, 1, (n0, 2)), g.normal(0, 1, (n1, 2)) + [2.0, 0.0]])
        return x.astype(np.float32), np.array([0] * n0 + [1] * n1)

    x, y = draw(1000, 100)
    xt, yt = draw(500, 500)
    path = tmp_path_factory.mktemp("imbalanced") / "d.npz"
    np.savez(path, x=x, y=y, x_test=xt, y_test=yt)
    return path


def _recall(imbalanced, tmp_path, extra, backend):
    spec = nnspec.loads(SPEC.format(path=imbalanced, extra=extra), file="imb.nn")
    events = []
    r = nnspec.train(spec, run=tmp_path / f"run-{backend}-{abs(hash(extra))}", backend=backend,
                     on_event=events.append)
    ev = evaluate(spec, r.run_dir / "last.safetensors", backend=backend)
    return ev["per_class_recall"], r, events


@pytest.mark.parametrize("backend", BACKENDS)
def test_balanced_class_weights_raise_the_minority_recall(imbalanced, tmp_path, backend):
    plain, _, _ = _recall(imbalanced, tmp_path, "", backend)
    weighted, r, events = _recall(imbalanced, tmp_path, "  class_weights balanced\n", backend)
    # scikit-learn's balanced weights: n / (C · count_c) = 1100 / (2·1000), 1100 / (2·100)
    assert r.class_weights == pytest.approx([0.55, 5.5])
    shown = [e for e in events if e["event"] == "class_weights"]
    assert shown and shown[0]["weights"] == r.class_weights and shown[0]["counts"] == [1000, 100]
    assert r.report()["class_weights"] == r.class_weights
    assert plain[1] < 0.6 < 0.8 < weighted[1]          # the minority class: 0.43 -> 0.88
    assert weighted[0] < plain[0]                      # paid for by the majority class
    # the weighted mean does not change when every weight is scaled: (1, 10) trains the same
    scaled, _, _ = _recall(imbalanced, tmp_path, "  class_weights (1, 10)\n", backend)
    assert scaled == weighted


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_balanced_sampler_raises_the_minority_recall(imbalanced, tmp_path, backend):
    plain, _, _ = _recall(imbalanced, tmp_path, "", backend)
    sampled, _, _ = _recall(imbalanced, tmp_path, "  sampler balanced\n", backend)
    assert plain[1] < 0.6 < 0.8 < sampled[1]


def test_the_balanced_sampler_draws_each_class_equally_with_replacement_and_resumes_exactly(imbalanced, tmp_path):
    from nnspec.train.loop import Options, Trainer
    spec = nnspec.loads(SPEC.format(path=imbalanced, extra="  sampler balanced\n"), file="imb.nn")
    tr = Trainer(spec, Options())
    tr.splits = tr._data()
    orders = [tr._order(e, 1100) for e in range(5)]
    y = tr.splits.train.y
    share = np.mean([np.mean(y[o] == 1) for o in orders])
    assert 0.45 < share < 0.55                          # 1 in 11 without the sampler
    assert all(len(o) == 1100 and len(np.unique(o)) < 1100 for o in orders)   # repeats: with replacement
    assert (tr._order(3, 1100) == orders[3]).all()      # the epoch's stream alone: resume draws it again
    whole = nnspec.train(spec, run=tmp_path / "a", epochs=2)
    nnspec.train(spec, run=tmp_path / "b", epochs=2, max_steps=25)
    resumed = nnspec.train(spec, run=tmp_path / "b", epochs=2, resume=True)
    for k, v in whole.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


def test_class_weights_errors_are_clear(imbalanced, tmp_path):
    spec = nnspec.loads(SPEC.format(path=imbalanced, extra="  class_weights (1, 2, 3)\n"), file="imb.nn")
    with pytest.raises(TrainError, match=r"imb.nn:11:3: class_weights gives 3 weights for 2 classes"):
        nnspec.train(spec, run=tmp_path / "c")
    with pytest.raises(nnspec.SpecError, match="loss mse takes no class weights"):
        nnspec.loads(SPEC.format(path=imbalanced, extra="  loss mse\n  class_weights balanced\n"))
