"""optimizer lbfgs: the NumPy port against torch.optim.LBFGS step by step (float64, both line
search settings), its checkpoint layout and exact resume across backends, the full-batch rule,
and the effect the lecture notes claim: per function evaluation it beats first-order descent
on a full-batch problem."""

from __future__ import annotations

import numpy as np
import pytest

import nnspec
from nnspec.backends.numpy.lbfgs import LBFGS, cubic_interpolate
from nnspec.train.loop import TrainError
from nnspec.train.data import load as load_data
from nnspec.train.numpy_backend import NumpyBackend

torch = pytest.importorskip("torch")

from nnspec.train.torch_backend import TorchBackend  # noqa: E402

SPEC = """input 2
fc1: linear(16) tanh
fc2: linear(16) tanh
fc3: linear(3)
train {{
  data spirals(samples=240, noise=0.2)
  optimizer lbfgs({options})
  batch 240
  l2 {l2}
  seed 0
}}
"""


def _spec(options="", l2=0.0):
    return nnspec.loads(SPEC.format(options=options, l2=l2), "lbfgs.nn")


def _batch():
    """The trainer's full batch: the 192 training samples (spirals keep 20% for testing)."""
    splits = load_data(_spec().graph.train.data, seed=0)
    return splits.train.x.astype(np.float64), splits.train.y


def _flat(backend) -> np.ndarray:
    return np.concatenate([np.asarray(v, np.float64).ravel()
                           for k, v in sorted(backend.weights().items())])


# Without a line search the fixed steps amplify the last-digit differences of the two
# backends' gradients (1e-17 at the start, ~1e-12 after 30 iterations, 1e-8 after 70:
# rounding, growing smoothly, not a difference of algorithm): 3 steps of 10 iterations.
@pytest.mark.parametrize("options", ["line_search=none, lr=0.5, history=5, max_iter=10",
                                     "line_search=strong_wolfe, history=5",
                                     "line_search=strong_wolfe, max_iter=7, history=3"])
def test_the_numpy_port_follows_torch_lbfgs_step_by_step_in_float64(options):
    spec = _spec(options, l2=1e-3)
    x, y = _batch()
    ours, theirs = (NumpyBackend(spec, seed=0, precision="fp64"), TorchBackend(spec, seed=0, precision="fp64"))
    np.testing.assert_array_equal(_flat(ours), _flat(theirs))
    lr = ours.train_config.optimizer.options["lr"]
    for step in range(3):
        a, b = ours.step(x, y, lr), theirs.step(x, y, lr)
        assert abs(a - b) <= 1e-9 * max(1.0, abs(b)), step
        np.testing.assert_allclose(_flat(ours), _flat(theirs), rtol=1e-9, atol=1e-10, err_msg=f"step {step}")
        sa, sb = ours.state(), theirs.state()
        for key in ("func_evals", "n_iter"):
            k = f"optim/fc1.weight/{key}"
            assert int(sa[k]) == int(sb[k]), (step, key)
        k = "optim/fc1.weight/old_dirs"
        assert sa[k].shape == sb[k].shape
        np.testing.assert_allclose(sa[k], sb[k], rtol=1e-7, atol=1e-9)
    assert int(sa["optim/fc1.weight/n_iter"]) > 6  # several iterations per step really ran


def test_a_checkpoint_resumes_lbfgs_exactly_in_either_backend():
    """The history, direction and counters go into optim/<first param>/<slot>: a backend
    loaded from another's state continues on the same trajectory."""
    spec = _spec("line_search=strong_wolfe, history=4, max_iter=5")
    x, y = _batch()
    a, b = NumpyBackend(spec, seed=0, precision="fp64"), TorchBackend(spec, seed=0, precision="fp64")
    for _ in range(2):
        a.step(x, y, 1.0), b.step(x, y, 1.0)
    sa, sb = a.state(), b.state()
    lbfgs_keys = {k for k in sa if k.startswith("optim/")}
    assert lbfgs_keys == {f"optim/fc1.weight/{s}" for s in
                          ("func_evals", "n_iter", "d", "t", "old_dirs", "old_stps", "ro", "H_diag",
                           "prev_flat_grad", "prev_loss")}
    assert lbfgs_keys == {k for k in sb if k.startswith("optim/")}
    assert sa["optim/fc1.weight/old_dirs"].shape == (4, 16 * 2 + 16 + 16 * 16 + 16 + 3 * 16 + 3)
    a2, b2 = NumpyBackend(spec, seed=0, precision="fp64"), TorchBackend(spec, seed=0, precision="fp64")
    a2.load_state(sb)    # torch's checkpoint in NumPy, and the other way round
    b2.load_state(sa)
    for backend in (a, b, a2, b2):
        backend.step(x, y, 1.0)
    want = _flat(a)
    for other in (b, a2, b2):
        np.testing.assert_allclose(_flat(other), want, rtol=1e-9, atol=1e-10)


def test_a_checkpoint_written_to_disk_holds_the_empty_history_too(tmp_path):
    from nnspec.train import runs
    spec = _spec("history=3")
    x, y = _batch()
    fresh = NumpyBackend(spec, seed=0, precision="fp64")
    fresh.optimizer.max_iter = 1       # one iteration: the history is still empty
    fresh.step(x, y, 1.0)
    state = fresh.state()
    assert state["optim/fc1.weight/old_dirs"].shape[0] == 0
    runs.save_checkpoint(tmp_path / "c.safetensors", state, {"epoch": 0})
    back = runs.load_checkpoint(tmp_path / "c.safetensors").arrays
    other = TorchBackend(spec, seed=0, precision="fp64")
    other.load_state(back)
    other.optimizer.param_groups[0]["max_iter"] = 1
    fresh.step(x, y, 1.0), other.step(x, y, 1.0)
    np.testing.assert_allclose(_flat(other), _flat(fresh), rtol=1e-9, atol=1e-10)


def test_lbfgs_reaches_a_lower_full_batch_loss_than_sgd_in_the_same_function_evaluations():
    """Spirals, full batch, the same start: L-BFGS (strong Wolfe) for 5 steps, then SGD
    (the best of three learning rates, momentum 0.9) for as many full-batch gradient
    evaluations as L-BFGS used."""
    spec = _spec("line_search=strong_wolfe, history=10")
    x, y = _batch()
    lb = NumpyBackend(spec, seed=0, precision="fp64")
    start = lb.weights()
    for _ in range(5):
        lb.step(x, y, 1.0)
    evals = int(lb.state()["optim/fc1.weight/func_evals"])
    assert 20 <= evals <= 5 * 25
    lb_loss = lb.loss_numpy(lb.evaluate(x), y)

    def sgd_loss(lr):
        sgd = nnspec.loads(SPEC.replace("lbfgs({options})", f"sgd(lr={lr}, momentum=0.9)")
                           .format(l2=0.0), "sgd.nn")
        b = NumpyBackend(sgd, seed=0, precision="fp64")
        b.load_weights(start)
        for _ in range(evals):
            b.step(x, y, lr)
        return b.loss_numpy(b.evaluate(x), y)

    best_sgd = min(sgd_loss(lr) for lr in (0.03, 0.1, 0.3))
    first = lb.loss_numpy(NumpyBackend(spec, seed=0, precision="fp64").evaluate(x), y)
    assert lb_loss < best_sgd < first, (lb_loss, best_sgd, first)
    assert lb_loss < 0.5 * best_sgd


def test_cubic_interpolation_finds_the_minimum_of_a_cubic():
    # f(x) = (x − 1)³ − 3(x − 1) + 2 has its local minimum at x = 2 (f′ = 3(x−1)² − 3)
    def f(x):
        return (x - 1) ** 3 - 3 * (x - 1) + 2

    def df(x):
        return 3 * (x - 1) ** 2 - 3

    assert cubic_interpolate(1.5, f(1.5), df(1.5), 3.0, f(3.0), df(3.0)) == pytest.approx(2.0)
    # rising throughout (d1² < g1·g2): no real minimiser, the midpoint of the bounds
    assert cubic_interpolate(0.0, 0.0, 1.0, 1.0, 2 / 3, 1.0) == 0.5
    from torch.optim.lbfgs import _cubic_interpolate   # and torch's own, on random points
    gen = np.random.default_rng(0)
    for _ in range(50):
        x1, f1, g1, x2, f2, g2 = gen.standard_normal(6)
        bounds = tuple(sorted(gen.standard_normal(2))) if gen.random() < 0.5 else None
        theirs = _cubic_interpolate(x1, f1, torch.tensor(g1), x2, f2, torch.tensor(g2), bounds)
        assert cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds) == pytest.approx(float(theirs), rel=1e-12)


@pytest.mark.parametrize("line_search", [None, "strong_wolfe"])
def test_the_numpy_lbfgs_equals_torch_on_a_quadratic_and_converges(line_search):
    gen = np.random.default_rng(0)
    a = gen.standard_normal((6, 6))
    h = a @ a.T + np.eye(6)
    b = gen.standard_normal(6)
    p = {"x": np.zeros(6)}
    xt = torch.zeros(6, dtype=torch.float64, requires_grad=True)
    ht, bt = torch.from_numpy(h), torch.from_numpy(b)

    def closure():
        return 0.5 * p["x"] @ h @ p["x"] - b @ p["x"], h @ p["x"] - b

    def torch_closure():
        xt.grad = None
        f = 0.5 * xt @ ht @ xt - bt @ xt
        f.backward()
        return f

    ours = LBFGS(p, lr=0.1 if line_search is None else 1.0, line_search_fn=line_search, max_iter=200,
                 tolerance_change=1e-14)
    theirs = torch.optim.LBFGS([xt], lr=ours.lr, line_search_fn=line_search, max_iter=200,
                               tolerance_change=1e-14)
    ours.step(closure)
    theirs.step(torch_closure)
    np.testing.assert_allclose(p["x"], xt.detach().numpy(), rtol=1e-9, atol=1e-12)
    assert ours.state["x"]["func_evals"] == theirs.state[xt]["func_evals"]
    np.testing.assert_allclose(p["x"], np.linalg.solve(h, b), rtol=1e-5, atol=1e-6)


def test_the_trainer_refuses_lbfgs_on_minibatches_and_with_clip(tmp_path):
    text = SPEC.format(options="", l2=0.0).replace("batch 240", "batch 32")
    with pytest.raises(TrainError, match=r"lbfgs\.nn:7: optimizer lbfgs needs full-batch training, "
                                         r"but batch 32 < 192 training samples; set `batch 192`"):
        nnspec.train(nnspec.loads(text, "lbfgs.nn"), backend="numpy", run=tmp_path / "a")
    text = SPEC.format(options="", l2=0.0).replace("seed 0", "seed 0\n  clip norm=1")
    with pytest.raises(TrainError, match="does not take `clip`"):
        nnspec.train(nnspec.loads(text, "lbfgs.nn"), backend="numpy", run=tmp_path / "b")


def test_lbfgs_options_are_validated_with_the_location():
    with pytest.raises(nnspec.SpecError) as err:
        _spec("line_search=wolfe")
    assert "must be one of none, strong_wolfe" in err.value.render()
    o = _spec().graph.train.optimizer.options
    assert dict(o) == {"lr": 1.0, "history": 100, "max_iter": 20, "line_search": "none"}


def test_the_example_spec_trains_in_both_backends_to_the_same_losses(tmp_path):
    results = [nnspec.train("specs/mlp_spirals_lbfgs.nn", backend=b, precision="fp64", epochs=2,
                            run=tmp_path / b, health=False) for b in ("numpy", "torch")]
    losses = [[h["train_loss"] for h in r.history] for r in results]
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-8)
    assert losses[0][1] < 0.5 * losses[0][0]


@pytest.mark.parametrize("first, then", [("numpy", "numpy"), ("torch", "numpy")])
def test_an_interrupted_lbfgs_run_resumes_on_the_same_trajectory(tmp_path, first, then):
    spec = _spec("line_search=strong_wolfe, history=5, max_iter=5")
    whole = nnspec.train(spec, backend="numpy", precision="fp64", epochs=3, run=tmp_path / "whole",
                         health=False)
    nnspec.train(spec, backend=first, precision="fp64", epochs=3, max_steps=2, run=tmp_path / "cut",
                 health=False)
    resumed = nnspec.train(spec, backend=then, precision="fp64", epochs=3, run=tmp_path / "cut",
                           resume=True, health=False)
    a = {k: np.asarray(v) for k, v in whole.model.state_dict().items()}
    b = {k: np.asarray(v) for k, v in resumed.model.state_dict().items()}
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-9, atol=1e-11, err_msg=k)
