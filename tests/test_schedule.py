"""The learning-rate schedules against PyTorch's own schedulers (stepped once per epoch)."""

import math

import pytest

from nnspec.config import Choice
from nnspec.train.schedule import lr_at, trajectory

torch = pytest.importorskip("torch")


def torch_trajectory(make, epochs, lr=0.1):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr)
    sched = make(opt)
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def C(name, **options):
    return Choice(name, options, None)


S = torch.optim.lr_scheduler
CASES = [
    (C("step", every=3, gamma=0.5), lambda o: S.StepLR(o, 3, 0.5)),
    (C("multistep", milestones=(2, 5, 6), gamma=0.1), lambda o: S.MultiStepLR(o, [2, 5, 6], 0.1)),
    (C("exponential", gamma=0.8), lambda o: S.ExponentialLR(o, 0.8)),
    (C("inv", k=0.5), lambda o: S.LambdaLR(o, lambda e: 1 / (1 + 0.5 * e))),
    (C("cosine", t_max=7, min_lr=0.01), lambda o: S.CosineAnnealingLR(o, 7, 0.01)),
    (C("cosine", t_max=None, min_lr=0.0), lambda o: S.CosineAnnealingLR(o, 12)),
    (C("restarts", period=3, mult=2, min_lr=0.001),
     lambda o: S.CosineAnnealingWarmRestarts(o, 3, 2, 0.001)),
    (C("restarts", period=4, mult=1, min_lr=0.0), lambda o: S.CosineAnnealingWarmRestarts(o, 4)),
]


@pytest.mark.parametrize("choice, make", CASES, ids=[c.name + str(i) for i, (c, _) in enumerate(CASES)])
def test_schedule_equals_pytorchs_scheduler(choice, make):
    ours = trajectory((choice,), 0.1, 12)
    theirs = torch_trajectory(make, 12)
    if choice.name == "cosine" and choice.options["t_max"]:
        # PyTorch's CosineAnnealingLR climbs again after t_max; nnspec holds min_lr there
        assert ours[8:] == [0.01] * 4
        ours, theirs = ours[:8], theirs[:8]
    assert all(math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) for a, b in zip(ours, theirs)), (ours, theirs)


def test_warmup_then_cosine_equals_sequential_lr():
    ours = trajectory((C("warmup", epochs=3, start=0.1), C("cosine", t_max=None, min_lr=0.0)), 0.1, 10)
    theirs = torch_trajectory(lambda o: S.SequentialLR(o, [
        S.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=3),
        S.CosineAnnealingLR(o, 7)], milestones=[3]), 10)
    assert all(math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) for a, b in zip(ours, theirs)), (ours, theirs)


def test_no_schedule_is_constant_and_growth_saturates():
    assert trajectory((), 0.05, 4) == [0.05] * 4
    assert lr_at((C("exponential", gamma=1.5),), 0.1, 10_000, 10_000) == math.inf
