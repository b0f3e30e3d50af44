"""DropConnect, fractional max pooling and weight noise: each has the effect it claims, and the
two backends draw the same numbers. (Every op is also run from its registry example by
tests/test_registry.py and tests/test_numpy_backend.py: shapes, tensors, evaluation against
torch, gradients against autograd and finite differences.)"""

from __future__ import annotations

import numpy as np
import pytest

import nnspec
from nnspec import rng
from nnspec.backends.numpy import pair_for
from nnspec.backends.numpy.layers import Context
from nnspec.train.numpy_backend import NumpyBackend

torch = pytest.importorskip("torch")

from nnspec.backends.torch import use_random_streams  # noqa: E402
from nnspec.train.torch_backend import TorchBackend  # noqa: E402

F = torch.nn.functional


# ---- DropConnect ------------------------------------------------------------------------------

DC = "input 12\nfc: dropconnect(7, p=0.4)\n"


def _both(text, dtype="float64", seed=3):
    spec = nnspec.loads(text)
    m = nnspec.compile(spec, backend="numpy", dtype=dtype, seed=seed)
    t = nnspec.compile(spec).to(getattr(torch, dtype))
    t.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in m.state_dict().items()})
    return spec, m, t


def test_dropconnect_has_a_linear_layers_parameters_and_evaluates_as_that_linear_layer():
    spec, m, t = _both(DC)
    assert sorted(t.state_dict()) == ["fc.bias", "fc.weight"]       # nn.Linear's names
    an = spec.analyze()
    assert an.totals.params == (12 + 1) * 7 and an.totals.macs == 12 * 7
    w, b = m.state_dict()["fc.weight"], m.state_dict()["fc.bias"]
    x = np.random.default_rng(0).standard_normal((5, 12))
    m.eval(), t.eval()
    np.testing.assert_allclose(m.forward(x), x @ w.T + b, rtol=1e-12)
    with torch.no_grad():
        np.testing.assert_allclose(t(torch.from_numpy(x)).numpy(), x @ w.T + b, rtol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dropconnect_masks_weights_from_the_stream_identically_in_both_backends(dtype):
    spec, m, t = _both(DC, dtype)
    t.train()
    clock = use_random_streams(t, seed=5)
    w, b = m.state_dict()["fc.weight"], m.state_dict()["fc.bias"]
    x = np.random.default_rng(1).standard_normal((6, 12)).astype(dtype)
    outs = []
    for step in (0, 1):
        clock.step = step
        ours, cache = pair_for("dropconnect")[0](x, {"weight": w, "bias": b}, spec.graph.find("fc").attrs,
                                                   "train", Context("fc", 5, step))
        # the same mask bit for bit (the products are each backend's BLAS: equal to rounding)
        assert np.array_equal(cache[1], t.fc.keep_scale().detach().numpy())
        np.testing.assert_allclose(ours, t(torch.from_numpy(x)).detach().numpy(),
                                   rtol=1e-5 if dtype == "float32" else 1e-12, atol=1e-6)
        keep = rng.keep_mask(rng.stream(5, "dropout", "fc", step), w.shape, 0.4)
        # the weights are masked (not the activations): one mask for the whole batch
        want = x @ (w * keep.astype(dtype) * dtype_(dtype)(1 / 0.6)).T + b
        np.testing.assert_allclose(ours, want, rtol=1e-5 if dtype == "float32" else 1e-12)
        assert 0.25 < (~keep).mean() < 0.55
        # dropped weights get no gradient; kept ones the linear layer's, times 1/(1 − p)
        dx, grads = pair_for("dropconnect")[1](np.ones_like(ours), cache)
        assert np.all(grads["weight"][~keep] == 0) and np.all(grads["weight"][keep] != 0)
        outs.append(ours)
    assert not np.allclose(outs[0], outs[1])   # a new mask each step


def test_dropconnects_expected_weights_are_w():
    """Averaged over many steps the masked, rescaled weights approach W (so evaluation with
    W is the mean of training's layers)."""
    w = np.random.default_rng(0).standard_normal((7, 12))
    from nnspec.backends.numpy.regularizers import dropconnect_keep_scale
    mean = np.mean([w * dropconnect_keep_scale(0, "fc", s, w.shape, 0.4, w.dtype) for s in range(4000)], axis=0)
    np.testing.assert_allclose(mean, w, atol=0.06 * np.abs(w).max())


def test_dropconnect_p_must_be_below_one():
    with pytest.raises(nnspec.SpecError, match="must be below 1"):
        nnspec.loads("input 4\ndropconnect(3, p=1.0)\n")


# ---- fractional max pooling ---------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape, ratio, kernel", [((3, 9, 9), 0.6, 2), ((2, 10, 7), 0.7, 3),
                                                  ((2, 25, 25), 0.5, 2), ((1, 8, 13), 0.75, 2),
                                                  ((2, 5, 5), 0.5, 1)])
def test_fractional_maxpool_equals_torchs_given_the_same_samples(shape, ratio, kernel, dtype):
    """Forward (bit for bit) and gradient against F.fractional_max_pool2d fed the samples
    our layer drew from the stream ("dropout", layer, step)."""
    attrs = {"ratio": ratio, "kernel": kernel}
    gen = np.random.default_rng(0)
    x = gen.standard_normal((4,) + shape).astype(dtype)
    forward, backward = pair_for("fractional_maxpool")
    ours, cache = forward(x, {}, attrs, "train", Context("pool", 9, 13))
    u = rng.uniform(rng.stream(9, "dropout", "pool", 13), (4, shape[0], 2)).astype(dtype)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    theirs = F.fractional_max_pool2d(xt, kernel, output_ratio=(ratio, ratio), _random_samples=torch.from_numpy(u))
    assert ours.shape[2:] == (int(shape[1] * ratio), int(shape[2] * ratio)) == tuple(theirs.shape[2:])
    assert np.array_equal(ours, theirs.detach().numpy())
    dout = gen.standard_normal(ours.shape).astype(dtype)
    theirs.backward(torch.from_numpy(dout))
    dx, _ = backward(dout, cache)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-5 if dtype == "float32" else 1e-12, atol=1e-6)
    # the registry's shape is the one both produce
    spec = nnspec.loads(f"input {'x'.join(map(str, shape))}\npool: fractional_maxpool({ratio}, kernel={kernel})\n")
    assert spec.graph.find("pool").shape == tuple(theirs.shape[1:])


def test_fractional_maxpool_regions_are_random_in_training_and_fixed_at_evaluation():
    spec = nnspec.loads("input 2x12x12\npool: fractional_maxpool(0.7)\n")
    t = nnspec.compile(spec).double().train()
    clock = use_random_streams(t, seed=1)
    m = nnspec.compile(spec, backend="numpy", dtype="float64", seed=1)
    x = np.random.default_rng(2).standard_normal((3, 2, 12, 12))
    outs = []
    for step in (0, 1):
        clock.step = m.step = step
        a = m.train().forward(x)
        assert np.array_equal(a, t(torch.from_numpy(x)).detach().numpy())
        outs.append(a)
    assert not np.array_equal(outs[0], outs[1])
    t.eval()
    a, b = m.eval().forward(x), m.eval().forward(x)
    with torch.no_grad():
        c = t(torch.from_numpy(x)).numpy()
    u = torch.full((3, 2, 2), 0.5, dtype=torch.float64)   # evaluation: the fixed sample 0.5
    want = F.fractional_max_pool2d(torch.from_numpy(x), 2, output_ratio=(0.7, 0.7), _random_samples=u).numpy()
    assert np.array_equal(a, b) and np.array_equal(a, c) and np.array_equal(a, want)


def test_fractional_maxpool_refuses_what_does_not_fit():
    for text, msg in (("input 3x8x8\nfractional_maxpool(1.2)", "between 0 and 1"),
                      ("input 3x3x3\nfractional_maxpool(0.9, kernel=3)", "does not fit"),
                      ("input 3x16\nfractional_maxpool(0.5)", "needs a CxHxW input")):
        with pytest.raises(nnspec.SpecError, match=msg):
            nnspec.loads(text + "\n")


# ---- weight noise -----------------------------------------------------------------------------

NOISY = """input 6
fc1: linear(8) tanh
fc2: linear(3)
train {{
  optimizer sgd(lr=0.1)
  {noise}
  seed 4
}}
"""


def _noisy(noise="noise weights=0.05"):
    return nnspec.loads(NOISY.format(noise=noise), "noisy.nn")


def test_weight_noise_perturbs_forward_and_backward_and_the_update_lands_on_the_clean_weights():
    """One SGD step with noise: w ← w − lr·∇L(w + ε) with ε = σ·N(0,1) from the stream
    ("noise", name, step), computed independently with torch autograd."""
    spec = _noisy()
    backend = NumpyBackend(spec, seed=4, precision="fp64")
    start = {k: v.copy() for k, v in backend.weights().items()}
    gen = np.random.default_rng(0)
    x, y = gen.standard_normal((10, 6)), gen.integers(0, 3, 10)
    backend.step(x, y, 0.1)
    eps = {k: rng.normal(rng.stream(4, "noise", k, 0), start[k].shape, 0.0, 0.05).astype(np.float64)
           for k in ("fc1.weight", "fc2.weight")}
    p = {k: torch.tensor(v, requires_grad=True) for k, v in start.items()}
    noisy = {k: p[k] + torch.from_numpy(eps[k]) if k in eps else p[k] for k in p}
    h = torch.tanh(torch.from_numpy(x) @ noisy["fc1.weight"].T + noisy["fc1.bias"])
    loss = F.cross_entropy(h @ noisy["fc2.weight"].T + noisy["fc2.bias"], torch.from_numpy(y))
    loss.backward()
    for k in start:
        np.testing.assert_allclose(backend.weights()[k], start[k] - 0.1 * p[k].grad.numpy(), rtol=1e-12,
                                   atol=1e-14, err_msg=k)
    # and it is noise: the step without it differs
    plain = NumpyBackend(_noisy(""), seed=4, precision="fp64")
    plain.step(x, y, 0.1)
    assert not np.allclose(plain.weights()["fc1.weight"], backend.weights()["fc1.weight"])


@pytest.mark.parametrize("optimizer", ["sgd(lr=0.1, momentum=0.9)", "adam(lr=0.01)",
                                       "lbfgs(max_iter=4, line_search=strong_wolfe)"])
def test_weight_noise_is_the_same_in_both_backends(optimizer):
    spec = nnspec.loads(NOISY.format(noise="noise weights=0.1\n  l2 1e-3").replace("sgd(lr=0.1)", optimizer))
    a, b = NumpyBackend(spec, seed=4, precision="fp64"), TorchBackend(spec, seed=4, precision="fp64")
    gen = np.random.default_rng(1)
    x, y = gen.standard_normal((12, 6)), gen.integers(0, 3, 12)
    for _ in range(3):
        la, lb = a.step(x, y, 0.1), b.step(x, y, 0.1)
        assert la == pytest.approx(lb, rel=1e-10)
    for k, v in a.weights().items():
        np.testing.assert_allclose(v, b.weights()[k], rtol=1e-9, atol=1e-12, err_msg=k)


def test_weight_noise_makes_the_loss_surface_flatter_on_average():
    """The documented effect: training minimises the loss averaged over weight perturbations,
    so the trained network is less sensitive to perturbed weights than one trained without.
    Measured on a small regression: the mean loss under N(0, σ²) weight perturbations,
    relative to the clean loss, is lower after noisy training."""
    gen = np.random.default_rng(0)
    x = gen.standard_normal((64, 6))
    y = np.sin(x[:, :3].sum(axis=1, keepdims=True)) + 0.1 * gen.standard_normal((64, 1))
    text = """input 6
fc1: linear(32) tanh
fc2: linear(1)
train {{
  loss mse
  optimizer adam(lr=0.01)
  {noise}
  seed 1
}}
"""
    def sharpness(noise):
        b = NumpyBackend(nnspec.loads(text.format(noise=noise)), seed=1, precision="fp64")
        for _ in range(300):
            b.step(x, y, 0.01)
        w = b.weights()
        clean = b.loss_numpy(b.evaluate(x).astype(np.float64), y)
        probe = np.random.default_rng(7)
        perturbed = []
        for _ in range(30):
            b.load_weights({k: v + (0.15 * probe.standard_normal(v.shape) if k.endswith("weight") else 0)
                            for k, v in w.items()})
            perturbed.append(b.loss_numpy(b.evaluate(x).astype(np.float64), y))
        return np.mean(perturbed) - clean

    noisy, plain = sharpness("noise weights=0.15"), sharpness("")
    assert 0 < noisy < 0.7 * plain, (noisy, plain)


def test_noise_is_validated():
    with pytest.raises(nnspec.SpecError, match="noise needs option 'weights'|noise has no option"):
        nnspec.loads(NOISY.format(noise="noise inputs=0.1"))
    assert _noisy().graph.train.noise == {"weights": 0.05}


def dtype_(name):
    return np.dtype(name).type
