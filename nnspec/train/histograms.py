"""`nnspec histograms`: every layer's activations at initialisation, for one batch — the
lecture's "too small / too large / just right" figures, for any spec and init.

What is run, and why:

- The weights are the train section's initial weights (`nnspec.backends.init`), drawn from
  its seed (or `seed=`); `init=` replaces the default scheme (per-layer `init "pattern" …`
  overrides still apply), so `normal(std=0.01)`, `normal(std=1)`, `xavier` and `he` can be
  compared on one spec. Both backends start from the same numbers.
- The batch is the first `batch` samples of the training split of the spec's data (after the
  loader's normalisation), or with `synthetic=True` unit-Gaussian values of the input's shape
  from the stream ("histogram", "input") of the seed (`nnspec.rng`).
- The forward pass runs in training mode — normalisation layers use the batch's own
  statistics, as the first training step sees them (in evaluation mode a fresh batch norm
  would only divide by √(1+eps) and hide what it does) — except the random layers (registry
  trait `random`: dropout, stochastic depth, rrelu), which run as in evaluation: a histogram
  shows what the initial weights do to the signal, not one draw of the masks, and the two
  backends agree without sharing masks.

Per recorded layer (every layer, or those matching `layers=` patterns, or the activations
only): mean and standard deviation (over every value of the batch, in float64), min, max,
the share of exact zeros, the share of saturated values for saturating activations (registry
trait `saturating`: |f′| below 5 % of its peak, the health check NN915's test; None for the
others), and a histogram over bins shared by every layer (`bins` equal bins on [lo, hi]:
`value_range`, else [-R, R] with R the 99.9th percentile of |value| over all recorded layers
rounded up to 1, 2, 2.5 or 5 × 10^k, and lo = 0 when no value is negative). The histogram
counts the first samples of the batch up to HIST_VALUES values per layer (all of them for
small layers); values outside the bins are counted in `outside`.

>>> import nnspec
>>> spec = nnspec.loads("input 100\\nrepeat 3 {\\n  linear(100) tanh\\n}\\ntrain {\\n  init normal(std=0.01)\\n}")
>>> h = collect(spec, synthetic=True, backend="numpy", batch=64)
>>> [f"{r.name} {r.std:.1e}" for r in h.layers if r.op == "tanh"]
['tanh 9.9e-02', 'tanh_1 1.0e-02', 'tanh_2 9.9e-04']
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from .. import rng
from ..ops import OpsWith

BATCH = 256                 # samples in the batch
BINS = 50                   # histogram bins
HIST_VALUES = 200_000       # values per layer that go into the histogram (first samples; kept in float64)
QUANTILE = 0.999            # of |value|, for the automatic range
RANDOM = OpsWith("random")
SATURATING = OpsWith("saturating")


class HistogramError(Exception):
    """What cannot be measured, in one line (the CLI prints it, exit 1)."""


@dataclass(frozen=True)
class LayerStats:
    name: str
    op: str
    shape: tuple[int, ...]
    mean: float
    std: float
    min: float
    max: float
    zeros: float                 # share of values exactly 0
    saturated: float | None      # share of values in a flat part (saturating activations only)
    counts: tuple[int, ...]      # per bin
    outside: int                 # histogram values outside the bins
    counted: int                 # values that went into the histogram


@dataclass(frozen=True)
class Histograms:
    spec: str
    file: str
    backend: str
    seed: int
    init: str
    input: str                  # "synthetic" or the data source
    samples: int
    edges: tuple[float, ...]
    layers: tuple[LayerStats, ...]

    def to_dict(self) -> dict:
        return {"spec": self.spec, "file": self.file, "backend": self.backend, "seed": self.seed,
                "init": self.init, "input": self.input, "samples": self.samples,
                "mode": "train (batch statistics), random layers as in evaluation",
                "edges": list(self.edges),
                "layers": [{"name": r.name, "op": r.op, "shape": list(r.shape), "mean": r.mean,
                            "std": r.std, "min": r.min, "max": r.max, "zero_fraction": r.zeros,
                            "saturated_fraction": r.saturated, "counts": list(r.counts),
                            "outside": r.outside, "counted": r.counted} for r in self.layers]}


def parse_init(text: str):
    """An init scheme as the train section writes it (`he`, `normal(std=0.01)`,
    `xavier(dist=uniform)`) -> config.Choice; a HistogramError says what is wrong."""
    from ..errors import SpecError
    from ..spec import loads
    if "\n" in text or "\r" in text or not text.strip():
        raise HistogramError(f"--init: expected one scheme, e.g. xavier or normal(std=0.01); got {text!r}")
    try:
        return loads(f"input 1\nidentity\ntrain {{\n  init {text}\n}}\n", file="--init").graph.train.init
    except SpecError as e:
        d = e.diagnostics[0]
        raise HistogramError(f"--init {text}: {d.message}" + (f" ({d.help})" if d.help else "")) from None


def collect(spec, *, backend: str = "torch", data=None, synthetic: bool = False, batch: int = BATCH,
            seed: int | None = None, init=None, layers=(), activations_only: bool = False,
            bins: int = BINS, value_range: tuple[float, float] | None = None,
            dtype: str = "float32") -> Histograms:
    """Run one batch through the freshly initialised network and measure every recorded
    layer's output (see the module docstring). `init` is a config.Choice or its text."""
    from ..backends.torch import as_spec
    from ..config import TrainConfig, matches
    from ..spec import Spec

    spec = as_spec(spec)
    g = spec.graph
    cfg = g.train if g.train is not None else TrainConfig()
    seed = seed if seed is not None else (cfg.seed if cfg.seed is not None else 0)
    if isinstance(init, str):
        init = parse_init(init)
    cfg = dataclasses.replace(cfg, seed=seed, **({"init": init} if init is not None else {}))
    g = dataclasses.replace(g, train=cfg)
    spec = Spec(g)
    if bins < 1:
        raise HistogramError(f"bins must be at least 1, got {bins}")
    if value_range is not None and not value_range[0] < value_range[1]:
        raise HistogramError(f"the range must have low < high, got {value_range}")
    chosen = [nd for nd in g.layers
              if (not layers or any(matches(p, nd.name) for p in layers))
              and (not activations_only or nd.opdef.category == "activation")]
    if not chosen:
        raise HistogramError("no layer matches " + (", ".join(layers) if layers else "--activations"))
    x, source = _batch(spec, data, synthetic, batch, seed)
    wanted = {nd.name for nd in chosen}
    raw: dict[str, tuple] = {}

    def observe(nd, ins, out):
        if nd.name in wanted:
            raw[nd.name] = _measure(nd, ins, out)

    if backend == "numpy":
        _run_numpy(g, x, seed, dtype, observe)
    elif backend == "torch":
        _run_torch(spec, x, dtype, chosen, observe)
    else:
        raise HistogramError(f"--backend {backend}: not available (backends: torch, numpy)")
    lo, hi = value_range if value_range is not None else _auto_range([raw[nd.name] for nd in chosen])
    edges = np.linspace(lo, hi, bins + 1)
    rows = []
    for nd in chosen:
        stats, values = raw[nd.name]
        counts, _ = np.histogram(values, edges)
        rows.append(LayerStats(nd.name, nd.op, tuple(nd.shape), **stats,
                               counts=tuple(int(c) for c in counts),
                               outside=int(values.size - counts.sum()), counted=int(values.size)))
    return Histograms(g.name, g.file, backend, seed, str(cfg.init) if cfg.init is not None else "default",
                      source, len(x), tuple(float(e) for e in edges), tuple(rows))


def _batch(spec, data, synthetic: bool, batch: int, seed: int) -> tuple[np.ndarray, str]:
    g = spec.graph
    if synthetic:
        gen = rng.stream(seed, "histogram", "input")
        return rng.normal(gen, (batch,) + tuple(g.input.shape)), "synthetic"
    if data is None and (g.train is None or g.train.data is None):
        raise HistogramError(f"{g.file}: no data: add `data digits` (or another source) to the train "
                             f"section, pass --data, or --synthetic for unit-Gaussian inputs")
    from .loop import Options, TrainError, Trainer
    t = Trainer(spec, Options(data=data, seed=seed))
    try:
        splits = t._data()
    except TrainError as e:
        raise HistogramError(str(e)) from None
    return splits.train.x[:batch], splits.name


def _measure(nd, ins, out) -> tuple[dict, np.ndarray]:
    """The numbers of one layer's output; `ins` the layer's inputs (NumPy)."""
    from ..ops.activations import ACTIVATIONS
    from .health import flat_fraction
    v = np.asarray(out, np.float64)
    flat = v.reshape(-1)
    saturated = None
    if nd.op in SATURATING and nd.op in ACTIVATIONS:
        row = ACTIVATIONS[nd.op]
        saturated = flat_fraction(row, nd.attrs, v if row.keeps == "output" else ins[0])
    per_sample = max(1, flat.size // max(1, len(v)))
    kept = flat[:max(per_sample, HIST_VALUES // per_sample * per_sample)].copy()
    stats = {"mean": float(flat.mean()) if flat.size else 0.0, "std": float(flat.std()) if flat.size else 0.0,
             "min": float(flat.min()) if flat.size else 0.0, "max": float(flat.max()) if flat.size else 0.0,
             "zeros": float((flat == 0).mean()) if flat.size else 0.0, "saturated": saturated}
    return stats, kept


def _auto_range(measured) -> tuple[float, float]:
    finite = [np.abs(v[np.isfinite(v)]) for _, v in measured]
    finite = [a for a in finite if a.size]
    top = max((float(np.quantile(a, QUANTILE)) for a in finite), default=0.0)
    r = nice_ceiling(top) if top > 0 else 1.0
    low = 0.0 if all(s["min"] >= 0 for s, _ in measured) else -r
    return low, r


def nice_ceiling(x: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10^k that is ≥ x (x > 0).

    >>> nice_ceiling(0.9999), nice_ceiling(3.2), nice_ceiling(2.2e-7)
    (1.0, 5.0, 2.5e-07)
    """
    k = math.floor(math.log10(x))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        v = float(f"{m}e{k}")
        if v >= x * (1 - 1e-12):
            return v
    return float(f"1e{k + 1}")


def _run_numpy(g, x, seed: int, dtype: str, observe) -> None:
    from ..backends.numpy.model import NumpyModel
    m = NumpyModel(g, dtype=dtype, seed=seed)
    m.train()
    m.always_eval = {nd.name for nd in g.layers if nd.op in RANDOM}
    m.forward(x, grad=False, observe=observe)


def _run_torch(spec, x, dtype: str, chosen, observe) -> None:
    import torch

    from ..backends.torch import compile_torch
    from ..ops.activations import ACTIVATIONS
    with torch.random.fork_rng(devices=[]):
        model = compile_torch(spec)
        model = model.double() if dtype == "float64" else model.float()
        model.train()
        for nd in spec.graph.layers:
            if nd.op in RANDOM:
                model.get_submodule(nd.name).eval()
        handles, inputs = [], {}
        for nd in chosen:
            module = model.get_submodule(nd.name)
            row = ACTIVATIONS.get(nd.op)
            if row is not None and row.keeps == "input":
                # the module may overwrite its input in place: keep a copy of what it read
                def pre(module, args, nd=nd):
                    inputs[nd.name] = [a.detach().double().cpu().numpy().copy() for a in args]
                handles.append(module.register_forward_pre_hook(pre))

            def post(module, args, output, nd=nd):
                ins = inputs.pop(nd.name, None)
                if ins is None:
                    ins = [a.detach().double().cpu().numpy() for a in args]
                observe(nd, ins, output.detach().double().cpu().numpy())
            handles.append(module.register_forward_hook(post))
        try:
            with torch.no_grad():
                model(torch.from_numpy(np.asarray(x, np.float64 if dtype == "float64" else np.float32)))
        finally:
            for h in handles:
                h.remove()


# ---- formats ---------------------------------------------------------------------------------

def _num(v: float) -> str:
    return "0" if v == 0 else f"{v:.3g}"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _mean(r: LayerStats) -> str:
    # a mean below 1e-5 of the spread is float32 rounding (batch norm's output): shown as 0
    return "0" if abs(r.mean) < 1e-5 * r.std else _num(r.mean)


def table_rows(h: Histograms) -> list[tuple[str, ...]]:
    return [(r.name, r.op, "x".join(map(str, r.shape)), _mean(r), _num(r.std), _pct(r.zeros),
             _pct(r.saturated)) for r in h.layers]


HEADER = ("layer", "op", "output", "mean", "std", "zeros", "saturated")


def title(h: Histograms) -> str:
    return (f"{h.spec}: activations at initialisation, init {h.init}, seed {h.seed}, "
            f"{h.samples} {h.input} samples, {h.backend} backend")


def to_text(h: Histograms) -> str:
    """A fixed-width table (what the docs show)."""
    rows = [HEADER] + table_rows(h)
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    left = (0, 1, 2)
    lines = [title(h)]
    for r in rows:
        lines.append("  ".join(c.ljust(w) if i in left else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths))).rstrip())
    return "\n".join(lines) + "\n"


def to_rich(h: Histograms):
    from rich.table import Table
    t = Table()
    for i, name in enumerate(HEADER):
        t.add_column(name, justify="left" if i < 3 else "right")
    for r in table_rows(h):
        t.add_row(*r)
    return t


def plot(h: Histograms) -> "object":
    """The figure: mean and std per layer (the lecture's line plots), then one histogram per
    layer over the shared bins, titled with its mean and std. Returns a matplotlib Figure."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n = len(h.layers)
    cols = min(5, n)
    rows = math.ceil(n / cols)
    fig = plt.figure(figsize=(3.2 * max(cols, 3), 2.7 + 2.2 * rows))
    grid = fig.add_gridspec(rows + 1, cols, height_ratios=[1.25] + [1] * rows, hspace=0.75, wspace=0.35)
    idx = list(range(n))
    top_left = fig.add_subplot(grid[0, :max(1, cols // 2)])
    top_right = fig.add_subplot(grid[0, max(1, cols // 2):]) if cols > 1 else None
    top_left.plot(idx, [r.mean for r in h.layers], "o-", color="C0")
    top_left.set_title("mean per layer", fontsize=10)
    if top_right is not None:
        top_right.plot(idx, [r.std for r in h.layers], "o-", color="C1")
        top_right.set_title("std per layer", fontsize=10)
        stds = [r.std for r in h.layers]
        if min(stds) > 0 and max(stds) / min(stds) > 100:
            top_right.set_yscale("log")
        else:  # from 0: noise in the third digit must not look like a trend
            top_right.set_ylim(0, 1.15 * max(stds) if max(stds) > 0 else 1)
    # the same for the means: at least a tenth of the largest spread either side
    reach = max(max(abs(r.mean) for r in h.layers) * 1.2, 0.1 * max(r.std for r in h.layers)) or 1.0
    top_left.set_ylim(-reach, reach)
    top_left.axhline(0, color="grey", linewidth=0.8)
    for ax in (top_left, top_right):
        if ax is not None:
            ax.set_xticks(idx)
            ax.set_xticklabels([r.name for r in h.layers], rotation=45, ha="right", fontsize=7)
            ax.grid(alpha=0.3)
    edges = np.asarray(h.edges)
    width = np.diff(edges)
    for i, r in enumerate(h.layers):
        ax = fig.add_subplot(grid[1 + i // cols, i % cols])
        ax.bar(edges[:-1], r.counts, width=width, align="edge", color="C0", linewidth=0)
        sat = f", sat {100 * r.saturated:.0f}%" if r.saturated is not None else ""
        if r.zeros > 0.1:  # ReLU's spike of exact zeros: cut its bar, say how tall it is
            sat += f", zeros {100 * r.zeros:.0f}%"
            at = int(np.searchsorted(edges, 0.0, side="right")) - 1
            others = [c for k, c in enumerate(r.counts) if k != at]
            if 0 <= at < len(r.counts) and others and max(others) > 0:
                ax.set_ylim(0, 1.15 * max(others))
        ax.set_title(f"{r.name} ({r.op})\nmean {_num(r.mean)}, std {_num(r.std)}{sat}", fontsize=8)
        ax.set_xlim(edges[0], edges[-1])
        ax.tick_params(labelsize=7)
        ax.set_yticks([])
    fig.suptitle(title(h), fontsize=10)
    return fig


def save_plot(h: Histograms, path: str) -> None:
    """Draw the figure and write it atomically (the format from the file's extension)."""
    save_figure(plot(h), path)


def save_figure(fig, path: str) -> None:
    import io

    import matplotlib.pyplot as plt

    from ..backends.commands import write_atomic
    buf = io.BytesIO()
    try:
        ext = path.rsplit(".", 1)[-1].lower() if "." in path else "png"
        fig.savefig(buf, format=ext, dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    write_atomic(path, buf.getvalue())


__all__ = ["BATCH", "BINS", "HistogramError", "Histograms", "LayerStats", "collect", "parse_init",
           "plot", "save_plot", "to_text"]
