"""nnspec.rng: random streams keyed by (seed, purpose, name, step).

Stability: the literals below were drawn once (the init ones by the initial-weights code as it
was before rng.py existed); a change of keying or of a draw recipe changes them."""

from __future__ import annotations

import doctest
import json
import zlib

import numpy as np
import pytest

import nnspec
from nnspec import rng
from nnspec.backends.init import initial_weights


def test_module_examples():
    assert doctest.testmod(rng).failed == 0


def _bits(gen, n=8):
    return gen.integers(0, 2 ** 63, size=n).tolist()


def test_the_same_key_draws_the_same_numbers():
    for purpose in rng.PURPOSES:
        assert _bits(rng.stream(5, purpose, "layer1.conv", 3)) == _bits(rng.stream(5, purpose, "layer1.conv", 3))


def test_every_part_of_the_key_changes_the_numbers():
    base = (5, "dropout", "drop1", 3)
    variants = [(6, "dropout", "drop1", 3), (5, "shuffle", "drop1", 3), (5, "dropout", "drop2", 3),
                (5, "dropout", "drop1", 4), (5, "dropout", "", 3), (5, "init", "drop1", 3),
                (5, "dropout", "drop1", 0), (5, "init", "drop1", 0), (5, "augment", "drop1", 3)]
    draws = [tuple(_bits(rng.stream(*k))) for k in [base] + variants]
    assert len(set(draws)) == len(draws)


def test_init_keeps_the_historic_key():
    """The init stream is NumPy's PCG64 seeded by SeedSequence([seed, crc32(name)]), the key
    backends/init.py has always used; no other purpose or step reproduces it."""
    for seed, name in ((0, "fc.weight"), (42, "layer4.1.conv2.weight"), (2 ** 40, "x")):
        old = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, zlib.crc32(name.encode())])))
        assert _bits(rng.stream(seed, "init", name)) == _bits(old)
        assert _bits(rng.stream(seed, "init", name, step=1)) != _bits(rng.stream(seed, "init", name))


SPEC = "input 3x8x8\nconv1: conv(4, 3)\nbn: batchnorm\nflatten\nfc: linear(5)\ntrain {{\n  init {init}\n  seed 42\n}}"


@pytest.mark.parametrize("init, pinned", [
    ("he", {"conv1.weight": [0.014558297581970692, 0.12137554585933685, 0.1856720894575119],
            "fc.weight": [-0.09658150374889374, 0.10756352543830872, 0.03483166545629501],
            "fc.bias": [0.0, 0.0, 0.0]}),
    ("normal(std=0.02, mean=0.5)",
     {"conv1.weight": [0.5010697841644287, 0.5089192390441895, 0.5136440396308899],
      "fc.weight": [0.4836095869541168, 0.5182541608810425, 0.505911111831665]}),
    ("default", {"conv1.weight": [-0.17693929374217987, 0.018343880772590637, 0.0014438629150390625],
                 "fc.weight": [0.06981586664915085, 0.0015708431601524353, -0.06330274045467377],
                 "fc.bias": [0.05787251144647598, 0.0063280463218688965, 0.07018322497606277]}),
])
def test_initial_weights_did_not_change(init, pinned):
    """Exact float32 values drawn by init.py before it used rng.py."""
    w = initial_weights(nnspec.loads(SPEC.format(init=init)).graph, 42)
    for name, values in pinned.items():
        assert w[name].ravel()[:3].tolist() == values, name


def test_adding_a_layer_elsewhere_changes_no_other_layer():
    small = initial_weights(nnspec.loads(SPEC.format(init="he")).graph, 42)
    big_spec = SPEC.format(init="he").replace("conv1: conv(4, 3)", "conv0: conv(3, 1)\nconv1: conv(4, 3)")
    big = initial_weights(nnspec.loads(big_spec).graph, 42)
    assert "conv0.weight" in big
    for name in small:
        assert np.array_equal(small[name], big[name]), name
    # the same holds for every purpose: a stream depends on its own key only
    before = rng.keep_mask(rng.stream(1, "dropout", "drop2", 7), (64,), 0.5)
    rng.keep_mask(rng.stream(1, "dropout", "drop1", 7), (64,), 0.5)  # a new layer draws first
    assert np.array_equal(before, rng.keep_mask(rng.stream(1, "dropout", "drop2", 7), (64,), 0.5))


def test_pinned_draws_of_the_other_purposes():
    assert rng.keep_mask(rng.stream(0, "dropout", "drop1", 3), (2, 5), 0.5).astype(int).tolist() == \
        [[1, 0, 0, 1, 0], [1, 0, 0, 0, 1]]
    assert rng.permutation(rng.stream(7, "shuffle", "train", 0), 6).tolist() == [4, 5, 2, 3, 1, 0]
    assert rng.permutation(rng.stream(7, "shuffle", "train", 1), 6).tolist() == [2, 5, 4, 0, 1, 3]
    assert rng.uniform(rng.stream(1, "augment", "train", 2), (3,)).tolist() == \
        [0.029690265655517578, 0.12196683883666992, 0.9179739952087402]
    assert rng.integers(rng.stream(2, "augment", "train", 5), (2, 3), 0, 10).tolist() == \
        [[9, 2, 1], [6, 0, 3]]
    assert rng.normal(rng.stream(1, "split", "cifar10"), (3,)).tolist() == \
        [-0.9488292336463928, -0.2082379311323166, -0.4239335358142853]
    # nnspec histograms --synthetic, nnspec lr-find's batch order (one pass after another)
    assert rng.normal(rng.stream(0, "histogram", "input"), (3,)).tolist() == \
        [-0.5699577331542969, 0.7198700308799744, -0.6138364672660828]
    assert rng.permutation(rng.stream(0, "lr_find", "train", 0), 6).tolist() == [5, 4, 1, 3, 0, 2]
    assert rng.permutation(rng.stream(0, "lr_find", "train", 1), 6).tolist() == [3, 4, 1, 2, 5, 0]


def test_keep_mask_keeps_one_minus_p():
    g = rng.stream(3, "dropout", "d", 0)
    assert rng.keep_mask(g, (1000,), 0.0).all() and not rng.keep_mask(g, (1000,), 1.0).any()
    n, p = 200_000, 0.3
    kept = rng.keep_mask(g, (n,), p).mean()
    # binomial: the standard deviation of the kept fraction is sqrt(p(1-p)/n) ~ 0.001
    assert abs(kept - (1 - p)) < 5 * np.sqrt(p * (1 - p) / n)
    with pytest.raises(ValueError, match="dropout probability"):
        rng.keep_mask(g, (3,), 1.5)


def test_uniform_normal_and_permutation_draw_what_they_say():
    g = rng.stream(4, "augment", "train")
    u = rng.uniform(g, (100_000,), -2.0, 3.0)
    assert u.dtype == np.float32 and u.min() >= -2.0 and u.max() < 3.0 and abs(u.mean() - 0.5) < 0.02
    x = rng.normal(g, (100_000,), mean=1.0, std=2.0)
    assert x.dtype == np.float32 and abs(x.mean() - 1.0) < 0.03 and abs(x.std() - 2.0) < 0.03
    order = rng.permutation(g, 1000)
    assert order.dtype == np.int64 and sorted(order.tolist()) == list(range(1000))
    out = np.zeros((2, 3), np.float32)
    assert rng.uniform(g, (2, 3), out=out) is out and (out != 0).any()
    with pytest.raises(ValueError, match="float32 array of shape"):
        rng.normal(g, (3, 2), out=out)


def test_state_round_trips_through_json_mid_stream():
    g = rng.stream(9, "augment", "train", 1)
    g.integers(0, 10, size=5)
    g.integers(0, 2 ** 32, dtype=np.uint32)  # leaves a buffered 32-bit half in the state
    state = json.loads(json.dumps(rng.get_state(g)))
    assert all(isinstance(v, (str, int)) for v in state.values())
    resumed = rng.from_state(state)
    assert resumed.integers(0, 2 ** 32, dtype=np.uint32) == g.integers(0, 2 ** 32, dtype=np.uint32)
    assert _bits(resumed) == _bits(g)
    with pytest.raises(ValueError, match="not a random-stream state"):
        rng.from_state({"bit_generator": "PCG64"})


def test_bad_keys_are_refused():
    with pytest.raises(ValueError, match="unknown random-stream purpose 'dropuot'"):
        rng.stream(0, "dropuot")
    with pytest.raises(ValueError, match="step"):
        rng.stream(0, "dropout", "d", -1)
    with pytest.raises(ValueError, match="step"):
        rng.stream(0, "dropout", "d", 2 ** 64)
    with pytest.raises(ValueError, match="seed"):
        rng.stream(-1, "init", "d")
    with pytest.raises(ValueError, match="seed"):
        rng.stream(True, "init", "d")
