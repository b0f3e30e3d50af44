"""Named random streams: every random number nnspec draws comes from a generator keyed by
(seed, purpose, name, step), so any backend that asks for the same key draws the same numbers.

A stream is a NumPy `Generator` (PCG64) seeded by a `SeedSequence` built from the key:

    entropy   = [seed, crc32(name)]                       (name as UTF-8; "" for none)
    spawn_key = ()                                        for ("init", step 0)
                (crc32(purpose), step)                    for everything else

The initial-weights key is the one `backends/init.py` has always used, so those numbers do
not change. Every other key has a spawn key, which NumPy mixes in after padding the entropy
to its pool size: no other key can reproduce an init stream. The purposes are the fixed
names of `PURPOSES` (a typo must not silently open a fresh stream); the name is a layer's
or a tensor's state-dict name; the step is the training step, epoch or sample index that
the purpose advances by. Seeds are non-negative integers (keys are distinct for seeds
below 2**64), steps integers in [0, 2**64).

What is keyed by what (the convention the backends share):

    init      name = parameter name ("conv1.weight"), step 0
    dropout   name = layer name, step = global training step: one mask per layer and step
              (dropout, stochastic depth, rrelu's slopes, dropconnect's weight mask,
              fractional max pooling's samples)
    shuffle   name = data split ("train"), step = epoch: the order of the samples (or, with
              `sampler balanced`, the epoch's draws with replacement)
    augment   name = data split, step = global training step: one batch's parameters per step
    split     name = data set, step 0: which samples go to validation; "folds", step 0: the
              cross-validation folds; "bootstrap", step m: bagging's resample m;
              "folds.seed" / "bootstrap.seed", step k: member k's seed (train/members.py)
    histogram name = "input", step 0: the unit-Gaussian batch of `nnspec histograms --synthetic`
    lr_find   name = data split ("train"), step = pass over the data: the order of the
              learning-rate finder's mini-batches (its own, so a sweep shares no draw with training)
    noise     name = parameter name, step = global training step: weight noise (`noise weights=σ`)
    search    name = hyperparameter, step = trial number: that trial's random draw of it

Because a stream depends on its own key only, adding a layer elsewhere does not change a
layer's numbers, and step 1000's dropout masks can be drawn without drawing steps 0-999:
resuming a run needs the seed and the step, nothing else. A stream consumed across many
calls (augmenting sample after sample) can be saved and restored exactly with
`get_state` / `from_state` (plain JSON).

>>> g = stream(0, "dropout", "drop1", step=3)
>>> keep_mask(g, (2, 5), 0.5).astype(int).tolist()
[[1, 0, 0, 1, 0], [1, 0, 0, 0, 1]]
>>> bool((keep_mask(stream(0, "dropout", "drop1", 3), (2, 5), 0.5)
...       == keep_mask(stream(0, "dropout", "drop1", 3), (2, 5), 0.5)).all())
True
>>> permutation(stream(7, "shuffle", "train", step=0), 6).tolist()
[4, 5, 2, 3, 1, 0]
>>> permutation(stream(7, "shuffle", "train", step=1), 6).tolist()  # the next epoch
[2, 5, 4, 0, 1, 3]
>>> uniform(stream(1, "init", "fc.weight"), (3,), -0.5, 0.5).astype(float).round(4).tolist()
[-0.312, -0.105, 0.0318]
>>> g = stream(3, "augment", "train")
>>> saved = get_state(g)            # JSON-safe: resume draws exactly where it stopped
>>> a = normal(g, (2,))
>>> bool((normal(from_state(saved), (2,)) == a).all())
True
"""

from __future__ import annotations

import zlib

import numpy as np

PURPOSES = ("init", "dropout", "shuffle", "augment", "split", "noise", "histogram", "lr_find", "search")
_LIMIT = 2 ** 64


def key(seed: int, purpose: str, name: str = "", step: int = 0) -> np.random.SeedSequence:
    """The SeedSequence of a stream (see the module docstring for the layout)."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown random-stream purpose {purpose!r}; one of {', '.join(PURPOSES)}")
    for what, v, limit in (("seed", seed, None), ("step", step, _LIMIT)):
        if (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0
                or (limit is not None and v >= limit)):
            raise ValueError(f"random-stream {what} must be an integer in "
                             f"[0, {'2**64' if limit else 'inf'}), got {v!r}")
    if not isinstance(name, str):
        raise TypeError(f"random-stream name must be a str, got {type(name).__name__}")
    entropy = [int(seed), zlib.crc32(name.encode("utf-8"))]
    if purpose == "init" and step == 0:
        return np.random.SeedSequence(entropy)
    return np.random.SeedSequence(entropy, spawn_key=(zlib.crc32(purpose.encode()), int(step)))


def stream(seed: int, purpose: str, name: str = "", step: int = 0) -> np.random.Generator:
    """A fresh generator for the key (seed, purpose, name, step)."""
    return np.random.Generator(np.random.PCG64(key(seed, purpose, name, step)))


# ---- draws: each says exactly what it takes from the generator, so a backend that needs
# ---- the same numbers in its own framework can call these and convert the result.

def uniform(gen: np.random.Generator, shape, low: float = 0.0, high: float = 1.0,
            out: np.ndarray | None = None) -> np.ndarray:
    """float32 on [low, high): one `gen.random(float32)` per value, then ·(high-low) + low
    (in float32). `out` (a float32 array of `shape`) is filled in place."""
    out = _out(shape, out)
    gen.random(dtype=np.float32, out=out)
    out *= np.float32(high - low)
    if low:
        out += np.float32(low)
    return out


def normal(gen: np.random.Generator, shape, mean: float = 0.0, std: float = 1.0,
           out: np.ndarray | None = None) -> np.ndarray:
    """float32 N(mean, std²): one `gen.standard_normal(float32)` per value (ziggurat),
    then ·std + mean (in float32; mean 0 adds nothing)."""
    out = _out(shape, out)
    gen.standard_normal(dtype=np.float32, out=out)
    out *= np.float32(std)
    if mean:
        out += np.float32(mean)
    return out


def keep_mask(gen: np.random.Generator, shape, p: float) -> np.ndarray:
    """Dropout's keep-mask: True where a unit is kept, with probability 1-p each.
    One float32 uniform u per unit, kept where u >= p (p = 0 keeps all, p = 1 none).
    The caller scales the kept units by 1/(1-p) (inverted dropout)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p!r}")
    return gen.random(shape, dtype=np.float32) >= np.float32(p)


def permutation(gen: np.random.Generator, n: int) -> np.ndarray:
    """A random order of range(n), int64 (NumPy's `Generator.permutation`)."""
    return gen.permutation(int(n)).astype(np.int64, copy=False)


def integers(gen: np.random.Generator, shape, low: int, high: int) -> np.ndarray:
    """int64 uniform on [low, high) (crop offsets, flips with high=2): NumPy's
    `gen.integers(low, high, size=shape, dtype=int64)`."""
    return gen.integers(low, high, size=shape, dtype=np.int64)


def _out(shape, out):
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if out is None:
        return np.empty(shape, np.float32)
    if out.shape != shape or out.dtype != np.float32:
        raise ValueError(f"expected a float32 array of shape {shape}, got {out.dtype} {out.shape}")
    return out


# ---- state: exact resume of a stream consumed across calls ------------------------------------

def get_state(gen: np.random.Generator) -> dict:
    """The generator's state as plain JSON (the 128-bit PCG64 words as hex strings)."""
    s = gen.bit_generator.state
    if s["bit_generator"] != "PCG64":
        raise ValueError(f"expected a PCG64 generator, got {s['bit_generator']}")
    return {"bit_generator": "PCG64", "state": f"{s['state']['state']:032x}",
            "inc": f"{s['state']['inc']:032x}", "has_uint32": int(s["has_uint32"]),
            "uinteger": int(s["uinteger"])}


def from_state(state: dict) -> np.random.Generator:
    """A generator that continues exactly where the one `get_state` saved stopped."""
    try:
        if state["bit_generator"] != "PCG64":
            raise ValueError(f"expected a PCG64 state, got {state['bit_generator']!r}")
        words = {k: int(state[k], 16) for k in ("state", "inc")}
        if not all(0 <= v < 2 ** 128 for v in words.values()):
            raise ValueError("PCG64 state words must be 128-bit")
        bits = np.random.PCG64()
        bits.state = {"bit_generator": "PCG64", "state": words,
                      "has_uint32": int(state["has_uint32"]), "uinteger": int(state["uinteger"])}
    except (KeyError, TypeError) as e:
        raise ValueError(f"not a random-stream state ({type(e).__name__}: {e})") from None
    return np.random.Generator(bits)
