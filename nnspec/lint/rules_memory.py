"""NN8xx: the training-memory estimate against `--memory-budget`.

The estimate is the analysis's (nnspec/analysis.py `train_peak`): the peak of a training
step — parameters and buffers, the optimizer's state (SGD with momentum 1 value per
parameter, Adam 2), and at the step's highest point the parameter gradients made so far,
the layer outputs kept for backward still alive and the activation gradients, at the train
section's batch, in float32. Framework overhead, kernels' workspace and fragmentation come
on top.
"""

from __future__ import annotations

import re

from ..analysis import DTYPE_BYTES, analyze
from ..report import human_bytes
from .catalogue import rule
from .context import Context

_UNITS = {"": 1, "B": 1, "K": 2 ** 10, "M": 2 ** 20, "G": 2 ** 30, "T": 2 ** 40}


def parse_size(text) -> int:
    """'8GB' -> 8·2^30 bytes (units are powers of 1024, as `nnspec table` prints them).

    >>> parse_size("1.5GB"), parse_size("512MiB"), parse_size("1000")
    (1610612736, 536870912, 1000)
    """
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(i?B)?\s*", str(text), re.IGNORECASE)
    if not m or (m.group(2) == "" and m.group(3) and m.group(3).lower() == "ib"):
        raise ValueError(f"expected a size such as 8GB or 512MB, got {text!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def _budget(cx: Context) -> int | None:
    b = cx.options.get("memory_budget")
    return None if b is None else parse_size(b)


def _fixed(cx: Context) -> tuple[int, int, int]:
    """(parameter+buffer bytes, gradient bytes, optimizer-state bytes)."""
    t = cx.analysis.totals
    size = DTYPE_BYTES[cx.analysis.dtype]
    return t.param_bytes, t.trainable * size, t.trainable * size * t.optimizer_slots


def _where(cx: Context):
    return cx.span("batch") if cx.train is not None and "batch" in cx.train.spans else cx.nodes[0]


@rule(
    "NN801", "training-memory-over-budget", "error",
    summary="The training-memory estimate at the train section's batch size exceeds "
            "`--memory-budget` (the message breaks it down and gives the largest batch that "
            "fits).",
    why="The run would fail with out-of-memory after the model is built and data is loaded.",
    bad="""
        input 3x64x64
        conv(32, 3, pad=1) relu
        conv(32, 3, pad=1) relu
        train {
          batch 1024
        }
    """,
    good="""
        input 3x64x64
        conv(32, 3, pad=1) relu
        conv(32, 3, pad=1) relu
        train {
          batch 256
        }
    """,
    fix="Use a smaller batch (the message gives the largest that fits), float16/bfloat16, or "
        "a smaller network.",
    options={"memory_budget": "1GB"},
)
def training_memory(cx: Context):
    budget = _budget(cx)
    if budget is None:
        return
    an = cx.analysis
    t = an.totals
    params, grads, state = _fixed(cx)
    fixed = params + grads + state
    if fixed > budget:
        return  # NN802 says it: no batch size helps
    if t.train_bytes <= budget:
        return
    # the peak grows with the batch: the largest batch under the budget, by bisection
    g, dtype = an.graph, an.dtype
    lo, hi = 0, an.batch - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if analyze(g, mid, dtype).totals.train_bytes <= budget:
            lo = mid
        else:
            hi = mid - 1
    fits = lo
    saved, act_grads, param_grads = t.peak_parts
    yield cx.hit(_where(cx),
                 f"training needs about {human_bytes(t.train_bytes)} at batch {an.batch}, above "
                 f"the {human_bytes(budget)} budget",
                 notes=(f"the peak, at the {t.peak_at}: parameters and buffers "
                        f"{human_bytes(params)}, optimizer state {human_bytes(state)} "
                        f"({t.optimizer}), parameter gradients made so far "
                        f"{human_bytes(param_grads)}, activations kept for backward still alive "
                        f"{human_bytes(saved)}, activation gradients {human_bytes(act_grads)}",),
                 help=(f"batch {fits} fits" if fits >= 1 else "not even batch 1 fits")
                 + "; float16 halves every term")


@rule(
    "NN802", "parameters-over-budget", "error",
    summary="Parameters, gradients and optimizer state alone exceed `--memory-budget`, "
            "whatever the batch size.",
    why="No batch size can make the run fit; the model itself is too large for the device.",
    bad="""
        input 8192
        linear(8192)
    """,
    good="""
        input 8192
        linear(1024)
    """,
    fix="Use a smaller model, freeze part of it (no gradients or optimizer state), a "
        "stateless optimizer, or lower precision.",
    options={"memory_budget": "256MB"},
)
def parameter_memory(cx: Context):
    budget = _budget(cx)
    if budget is None:
        return
    params, grads, state = _fixed(cx)
    if params + grads + state > budget:
        # the batch plays no part in it: point at the layer holding the most parameters
        big = max(cx.analysis.layers[1:], key=lambda s: s.params, default=None)
        where = big.node if big is not None and big.params else cx.nodes[0]
        notes = [f"the largest layer, {big.node.name}, holds {big.params:,} parameters"] \
            if big is not None and big.params else []
        yield cx.hit(where, f"parameters ({human_bytes(params)}), gradients "
                                 f"({human_bytes(grads)}) and optimizer state "
                                 f"({human_bytes(state)}) need "
                                 f"{human_bytes(params + grads + state)}, above the "
                                 f"{human_bytes(budget)} budget", notes=notes)
