"""Augmentations on NumPy batches (nnspec/train/augment.py): each one's real effect, measured;
np.rot90 and torch.nn.functional.grid_sample are the references for the resampling."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import nnspec
from nnspec import config
from nnspec.train import augment as A
from nnspec.train.data import DataError


def batch(n=16, c=3, h=9, w=9, seed=0):
    return np.random.default_rng(seed).standard_normal((n, c, h, w)).astype(np.float32) + 3.0


def rng(seed=1):
    return np.random.default_rng(seed)


def augments(text):
    spec = nnspec.loads(f"input 1x8x8\nflatten linear(10)\ntrain {{\n  augment {text}\n}}\n")
    return spec.graph.train.augment


def test_every_augment_choice_has_a_function_taking_its_options():
    assert set(A.AUGMENTS) == set(config.AUGMENTS)
    for name, fn in A.AUGMENTS.items():
        params = list(inspect.signature(fn).parameters)
        assert params[:3] == ["x", "y", "rng"]
        assert [p for p in params[3:] if p != "classes"] == [a.name for a in config.AUGMENTS[name]]
        assert config.AUGMENTS[name][0].default == inspect.signature(fn).parameters[params[3]].default


@pytest.mark.parametrize("name", sorted(config.AUGMENTS))
def test_deterministic_given_the_generator_and_input_untouched(name):
    x, y = batch(), np.arange(16) % 10
    keep = x.copy()
    kw = {"classes": 10} if name in A.MIXING else {}
    a = A.AUGMENTS[name](x, y, rng(7), **kw)
    b = A.AUGMENTS[name](x, y, rng(7), **kw)
    c = A.AUGMENTS[name](x, y, rng(8), **kw)
    np.testing.assert_array_equal(x, keep)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[0].shape == x.shape and a[0].dtype == np.float32
    assert not np.array_equal(a[0], c[0]) or name == "hflip"      # another stream, another result
    if name in A.MIXING:
        assert a[1].shape == (16, 10) and a[1].dtype == np.float32
    else:
        assert a[1] is y


def test_hflip():
    x = batch()
    once, _ = A.hflip(x, None, rng(), p=1.0)
    np.testing.assert_array_equal(once, x[..., ::-1])
    twice, _ = A.hflip(once, None, rng(2), p=1.0)
    np.testing.assert_array_equal(twice, x)
    np.testing.assert_array_equal(A.hflip(x, None, rng(), p=0.0)[0], x)
    big = batch(n=2000, c=1, h=2, w=3)
    half, _ = A.hflip(big, None, rng(), p=0.5)
    flipped = np.all(half == big[..., ::-1], axis=(1, 2, 3))
    kept = np.all(half == big, axis=(1, 2, 3))
    assert (flipped ^ kept).all() and 0.45 < flipped.mean() < 0.55
    seq = batch(n=4, c=2, h=5, w=1)[..., 0]                          # (N, C, L) sequences
    np.testing.assert_array_equal(A.hflip(seq, None, rng(), p=1.0)[0], seq[..., ::-1])


def test_crop_is_a_shifted_window_of_the_padded_image():
    x, pad = batch(n=40), 2
    out, _ = A.crop(x, None, rng(), pad=pad)
    assert out.shape == x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    seen = set()
    for i in range(len(x)):
        hits = [(r, c) for r in range(2 * pad + 1) for c in range(2 * pad + 1)
                if np.array_equal(out[i], padded[i, :, r:r + 9, c:c + 9])]
        assert len(hits) == 1
        seen.add(hits[0])
    assert len(seen) > 10                                             # the offsets vary
    np.testing.assert_array_equal(A.crop(x, None, rng(), pad=0)[0], x)


def rolled(img, r, c):
    """An independent shift: np.roll, then zero what wrapped around."""
    out = np.roll(img, (r, c), axis=(-2, -1))
    if r > 0:
        out[..., :r, :] = 0
    if r < 0:
        out[..., r:, :] = 0
    if c > 0:
        out[..., :, :c] = 0
    if c < 0:
        out[..., :, c:] = 0
    return out


def test_translate_moves_by_whole_pixels_within_range():
    x = batch(n=6)
    rows, cols = np.array([0, 1, -2, 3, 0, -1]), np.array([0, 2, 1, -3, -1, 0])
    out = A.shift_by(x, rows, cols)
    for i in range(6):
        np.testing.assert_array_equal(out[i], rolled(x[i], rows[i], cols[i]))
    moved, _ = A.translate(x, None, rng(3), pixels=2)
    r, c = rng(3).integers(-2, 3, size=(2, 6))                      # the draws it made
    np.testing.assert_array_equal(moved, A.shift_by(x, r, c))
    assert np.abs(r).max() <= 2 and np.abs(c).max() <= 2


def test_noise_has_the_measured_std():
    x = np.zeros((64, 3, 16, 16), np.float32)
    y = np.arange(64)
    out, same = A.noise(x, y, rng(), std=0.3)
    assert same is y
    assert out.std() == pytest.approx(0.3, rel=0.02) and abs(out.mean()) < 0.01


def test_jitter_is_a_per_sample_brightness_and_contrast_change():
    x, s = batch(n=50), 0.4
    out, _ = A.jitter(x, None, rng(), strength=s)
    for i in range(len(x)):
        a, k = np.polyfit(x[i].ravel().astype(np.float64), out[i].ravel().astype(np.float64), 1)
        np.testing.assert_allclose(out[i], a * x[i] + k, atol=1e-4)  # exactly affine
        m = x[i].mean(dtype=np.float64)
        b = out[i].mean(dtype=np.float64) - m                          # brightness moves the mean
        assert 1 - s <= a <= 1 + s and -s <= b <= s
        assert out[i].std() == pytest.approx(a * x[i].std(), rel=1e-4)  # contrast scales the spread


def test_rotate_by_quarter_turns_is_rot90():
    x = batch(n=3, h=8, w=8)
    for k in (1, 2, 3, -1):
        np.testing.assert_allclose(A.rotate_by(x, 90 * k), np.rot90(x, k, axes=(2, 3)), atol=1e-5)
    np.testing.assert_allclose(A.rotate_by(x, 360), x, atol=1e-5)
    odd = batch(n=2, h=7, w=7)
    np.testing.assert_allclose(A.rotate_by(odd, 90), np.rot90(odd, 1, axes=(2, 3)), atol=1e-5)


def test_rotate_matches_torch_grid_sample_at_any_angle():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = batch(n=5, h=7, w=11)
    deg = np.array([0.0, 17.0, -33.0, 90.0, 141.0])
    ours = A.rotate_by(x, deg)
    t = np.deg2rad(deg)
    cr, cc = (7 - 1) / 2, (11 - 1) / 2
    theta = np.stack([np.stack([np.cos(t), -np.sin(t) * cr / cc, 0 * t], 1),
                      np.stack([np.sin(t) * cc / cr, np.cos(t), 0 * t], 1)], 1)
    grid = F.affine_grid(torch.tensor(theta), (5, 3, 7, 11), align_corners=True)
    ref = F.grid_sample(torch.tensor(x, dtype=torch.float64), grid, mode="bilinear",
                        padding_mode="zeros", align_corners=True).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    out, _ = A.rotate(x, None, rng(4), degrees=20)
    np.testing.assert_allclose(out, A.rotate_by(x, rng(4).uniform(-20, 20, 5)), atol=0)


def test_cutout_zeros_one_clipped_square():
    x, size = batch(n=200), 4
    out, _ = A.cutout(x, None, rng(), size=size)
    for i in range(len(x)):
        zero = np.all(out[i] == 0, axis=0)
        np.testing.assert_array_equal(out[i][:, ~zero], x[i][:, ~zero])   # the rest is untouched
        rows, cols = np.flatnonzero(zero.any(1)), np.flatnonzero(zero.any(0))
        assert zero.sum() == len(rows) * len(cols) >= 1                    # one rectangle
        assert rows[-1] - rows[0] == len(rows) - 1 and cols[-1] - cols[0] == len(cols) - 1
        assert len(rows) <= size and len(cols) <= size
        if 0 < rows[0] and rows[-1] < 8 and 0 < cols[0] and cols[-1] < 8:
            assert zero.sum() == size * size                               # inside: the full square
    assert {int(np.all(out == 0, axis=1).sum(axis=(1, 2))[i]) for i in range(200)} >= {16, 8}


def test_mixup_is_one_convex_combination_of_images_and_targets():
    n = 10
    x, y = batch(n=n), np.arange(n)
    out, t = A.mixup(x, y, rng(), alpha=0.4, classes=n)
    np.testing.assert_allclose(t.sum(1), 1, atol=1e-6)
    assert (t >= 0).all()
    mixed = 0
    for i in range(n):
        lam = t[i, i]
        partner = [j for j in range(n) if j != i and t[i, j] > 0]
        j = partner[0] if partner else i
        np.testing.assert_allclose(out[i], lam * x[i] + (1 - lam) * x[j], atol=1e-5)
        mixed += bool(partner)
    assert mixed >= n // 2
    soft, t2 = A.mixup(x, t, rng(2), alpha=0.4)                      # soft targets mix again
    np.testing.assert_allclose(t2.sum(1), 1, atol=1e-6)


def test_cutmix_label_weight_is_the_pasted_area():
    n = 12
    x = np.broadcast_to(np.arange(1, n + 1, dtype=np.float32)[:, None, None, None], (n, 2, 8, 8)).copy()
    out, t = A.cutmix(x, np.arange(n), rng(), alpha=1.0, classes=n)
    np.testing.assert_allclose(t.sum(1), 1, atol=1e-6)
    pasted = 0
    for i in range(n):
        assert np.array_equal(out[i, 0], out[i, 1])                    # all channels alike
        own = out[i, 0] == i + 1
        assert own.mean() == pytest.approx(t[i, i], abs=1e-6)
        for j in set(np.unique(out[i, 0]).astype(int) - 1) - {i}:
            assert (out[i, 0] == j + 1).mean() == pytest.approx(t[i, j], abs=1e-6)
            box = out[i, 0] == j + 1
            rows, cols = np.flatnonzero(box.any(1)), np.flatnonzero(box.any(0))
            assert box.sum() == len(rows) * len(cols)                 # a rectangle
            pasted += 1
    assert pasted >= n // 2


def test_apply_runs_the_train_sections_choices_in_order():
    x, y = batch(n=8, c=1, h=8, w=8), np.arange(8) % 10
    chosen = augments("hflip(p=1), crop(pad=1), mixup(alpha=0.5)")
    out, t = A.apply(chosen, x, y, rng(5), classes=10)
    g = rng(5)
    a, _ = A.hflip(x, y, g, p=1.0)
    a, _ = A.crop(a, y, g, pad=1)
    a, want = A.mixup(a, y, g, alpha=0.5, classes=10)
    np.testing.assert_array_equal(out, a)
    np.testing.assert_array_equal(t, want)


def test_check_refuses_what_cannot_apply_before_the_first_step():
    A.check(augments("hflip, crop, rotate, cutmix"), (1, 8, 8), classes=10)
    with pytest.raises(DataError, match=r"augment rotate needs images \(C x H x W samples\); the samples are 64"):
        A.check(augments("noise, rotate"), (64,), classes=10)
    with pytest.raises(DataError, match="augment hflip needs images or sequences"):
        A.check(augments("hflip"), (64,), classes=10)
    with pytest.raises(DataError, match="augment mixup needs class labels"):
        A.check(augments("mixup"), (64,), classes=None)
    with pytest.raises(DataError, match=r"augment crop needs image batches \(N, C, H, W\)"):
        A.crop(np.zeros((4, 64), np.float32), None, rng())
