"""The learning rate at every epoch, from the train section's `schedule` list: pure Python, so
the trainer (both backends) and lint read the same numbers.

The rate is constant within an epoch and changes between epochs, as PyTorch's epoch
schedulers step (after the epoch's last update). `schedule` entries apply in order:

    warmup(epochs=W, start=s)   epochs 0..W−1 ramp linearly from s·lr to lr; the schedules
                                after it see the epoch count from the end of the warm-up
    constant                    lr
    step(every, gamma)          lr · gamma^⌊e / every⌋                   (StepLR)
    multistep(milestones, gamma) lr · gamma^(number of milestones ≤ e)  (MultiStepLR)
    exponential(gamma)          lr · gamma^e                              (ExponentialLR)
    inv(k)                      lr / (1 + k·e)                            (the notes' 1/t decay)
    cosine(t_max, min_lr)       min_lr + (lr − min_lr)·(1 + cos(π·e/T))/2, T = t_max or the
                                epochs left after warm-up; held at min_lr past T (CosineAnnealingLR)
    restarts(period, mult, min_lr)  SGDR: cosine cycles of period, period·mult, …
                                (CosineAnnealingWarmRestarts)

Several decays after each other compose: each transforms the rate the previous one gave.

>>> from nnspec.config import Choice
>>> sched = (Choice("warmup", {"epochs": 2, "start": 0.1}, None), Choice("step", {"every": 2, "gamma": 0.5}, None))
>>> [round(lr_at(sched, 1.0, e, 8), 3) for e in range(8)]
[0.1, 0.55, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
"""

from __future__ import annotations

import math
from typing import Sequence


def lr_at(schedule: Sequence, lr: float, epoch: int, epochs: int) -> float:
    """The learning rate during `epoch` (0-based) of a run of `epochs` epochs."""
    e = epoch
    horizon = max(1, epochs)
    for choice in schedule:
        o = choice.options
        name = choice.name
        if name == "warmup":
            w = o["epochs"]
            if e < w:
                start = o.get("start", 0.1)
                return lr * (start + (1 - start) * e / w)
            e -= w
            horizon = max(1, horizon - w)
        elif name == "constant":
            pass
        elif name == "step":
            lr *= _pow(o.get("gamma", 0.1), e // o["every"])
        elif name == "multistep":
            lr *= _pow(o.get("gamma", 0.1), sum(1 for m in o["milestones"] if m <= e))
        elif name == "exponential":
            lr *= _pow(o["gamma"], e)
        elif name == "inv":
            lr /= 1 + o["k"] * e
        elif name == "cosine":
            t = o.get("t_max") or horizon
            lo = o.get("min_lr", 0.0)
            lr = lo + (lr - lo) * (1 + math.cos(math.pi * min(e, t) / t)) / 2
        elif name == "restarts":
            period, mult, lo = o["period"], o.get("mult", 1), o.get("min_lr", 0.0)
            t, length = e, period
            while t >= length:
                t -= length
                length *= mult
            lr = lo + (lr - lo) * (1 + math.cos(math.pi * t / length)) / 2
        else:
            raise ValueError(f"unknown schedule {name!r}")
    return lr


def _pow(base: float, exp: int) -> float:
    """base**exp that saturates instead of raising OverflowError (gamma > 1 for many epochs)."""
    try:
        return base ** exp
    except OverflowError:
        return math.inf


def trajectory(schedule: Sequence, lr: float, epochs: int) -> list[float]:
    """The rate of every epoch of a run."""
    return [lr_at(schedule, lr, e, epochs) for e in range(epochs)]


def cycle_ends(schedule: Sequence, epochs: int) -> list[int]:
    """The epochs (counted from 1) at whose end a warm-restart cycle of the schedule's first
    `restarts` ends, within a run of `epochs` epochs: where a snapshot ensemble takes its
    snapshots (the rate is at its minimum there). A warm-up before it delays every cycle.

    >>> from nnspec.config import Choice
    >>> cycle_ends((Choice("restarts", {"period": 2, "mult": 2, "min_lr": 0.0}, None),), 15)
    [2, 6, 14]
    >>> cycle_ends((Choice("warmup", {"epochs": 1, "start": 0.1}, None),
    ...             Choice("restarts", {"period": 3, "mult": 1, "min_lr": 0.0}, None)), 10)
    [4, 7, 10]
    """
    offset = 0
    for choice in schedule:
        if choice.name == "warmup":
            offset += choice.options["epochs"]
        elif choice.name == "restarts":
            o = choice.options
            ends, at, length = [], offset, o["period"]
            while at + length <= epochs:
                at += length
                ends.append(at)
                length *= o.get("mult", 1)
            return ends
    return []
