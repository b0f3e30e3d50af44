"""NumPy optimizers against torch.optim: the same gradients, 20 steps, float64, 1e-9."""

from __future__ import annotations

import numpy as np
import pytest

from nnspec.backends.numpy import optim

torch = pytest.importorskip("torch")

CASES = [
    ("sgd", {}, {}),
    ("sgd", {"momentum": 0.9}, {"momentum": 0.9}),
    ("sgd", {"momentum": 0.9, "dampening": 0.3, "weight_decay": 1e-2},
     {"momentum": 0.9, "dampening": 0.3, "weight_decay": 1e-2}),
    ("sgd", {"momentum": 0.8, "nesterov": True, "weight_decay": 1e-3},
     {"momentum": 0.8, "nesterov": True, "weight_decay": 1e-3}),
    ("adagrad", {"eps": 1e-10}, {"eps": 1e-10}),
    ("adagrad", {"weight_decay": 0.1}, {"weight_decay": 0.1}),
    ("rmsprop", {"alpha": 0.9}, {"alpha": 0.9}),
    ("rmsprop", {"momentum": 0.5, "weight_decay": 1e-2, "eps": 1e-6},
     {"momentum": 0.5, "weight_decay": 1e-2, "eps": 1e-6}),
    ("adam", {}, {}),
    ("adam", {"beta1": 0.8, "beta2": 0.99, "eps": 1e-6, "weight_decay": 1e-2},
     {"betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 1e-2}),
    ("adamw", {"weight_decay": 0.05}, {"weight_decay": 0.05}),
]
OURS = {"sgd": optim.SGD, "adagrad": optim.Adagrad, "rmsprop": optim.RMSprop, "adam": optim.Adam,
        "adamw": optim.AdamW}
THEIRS = {"sgd": "SGD", "adagrad": "Adagrad", "rmsprop": "RMSprop", "adam": "Adam", "adamw": "AdamW"}


@pytest.mark.parametrize("block", [None, 5])
@pytest.mark.parametrize("name, ours, theirs", CASES)
def test_twenty_steps_equal_torch_optim(name, ours, theirs, block, monkeypatch):
    if block:  # in-place updates block by block (optim.BLOCK): the 4x3 weight in 3 blocks
        monkeypatch.setattr(optim, "BLOCK", block)
    gen = np.random.default_rng(0)
    start = {"w": gen.standard_normal((4, 3)), "b": gen.standard_normal(3)}
    params = {k: v.copy() for k, v in start.items()}
    tparams = {k: torch.tensor(v, requires_grad=True) for k, v in start.items()}
    lr = 0.05
    opt = OURS[name](params, lr, **ours)
    topt = getattr(torch.optim, THEIRS[name])(list(tparams.values()), lr=lr, **theirs)
    for step in range(20):
        # gradients that depend on the weights (a quadratic), so the trajectories feed back
        grads = {k: 2 * params[k] + gen.standard_normal(v.shape) for k, v in params.items()}
        lr_now = lr * (0.9 ** step)   # a schedule changes the learning rate between steps
        opt.lr = lr_now
        for group in topt.param_groups:
            group["lr"] = lr_now
        for k, p in tparams.items():
            p.grad = torch.from_numpy(grads[k].copy())
        opt.step(grads)
        topt.step()
        for k in params:
            np.testing.assert_allclose(params[k], tparams[k].detach().numpy(), rtol=1e-9, atol=1e-12,
                                       err_msg=f"{k} at step {step}")
    # the state a checkpoint keeps has torch's names and values
    for k, p in tparams.items():
        for key, val in topt.state[p].items():
            np.testing.assert_allclose(opt.state[k][key], np.asarray(val), rtol=1e-9, err_msg=key)


def test_nesterov_without_momentum_is_refused_as_torch_refuses_it():
    with pytest.raises(ValueError):
        optim.SGD({"w": np.zeros(2)}, 0.1, nesterov=True)


def test_docstring_example_runs():
    import doctest
    assert doctest.testmod(optim).failed == 0
