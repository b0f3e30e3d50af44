"""Data augmentation on NumPy batches, one function per `augment` choice of the train section.

Each takes a float32 batch `x` (N, C, H, W) — hflip, noise, jitter and mixup also take
(N, C, L) or (N, F) where that makes sense — its labels `y` and a `numpy.random.Generator`,
and returns a new `(x, y)` (the input is never modified). The same generator state gives the
same result. mixup and cutmix return soft targets (N, classes) float32; the others return `y`
unchanged. The work is vectorised over the batch: the geometric ones gather pixels through
one index computation (rotate: a bilinear affine resampling of the whole batch at once).

>>> import numpy as np
>>> from nnspec.train import augment
>>> x = np.arange(2 * 1 * 3 * 3, dtype=np.float32).reshape(2, 1, 3, 3)
>>> fx, _ = augment.hflip(x, None, np.random.default_rng(0), p=1.0)
>>> fx[0, 0].tolist()
[[2.0, 1.0, 0.0], [5.0, 4.0, 3.0], [8.0, 7.0, 6.0]]
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .data import DataError


def _images(name: str, x: np.ndarray) -> tuple[int, int, int, int]:
    if x.ndim != 4:
        raise DataError(f"augment {name} needs image batches (N, C, H, W); got shape {x.shape}")
    return x.shape


def _per_sample(v: np.ndarray, ndim: int) -> np.ndarray:
    return v.reshape((-1,) + (1,) * (ndim - 1))


# ---- primitives with explicit parameters (the augmentations draw them) --------------------------

def shift_by(x: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Move each image's content down by rows[n] and right by cols[n] whole pixels (zeros fill)."""
    n, c, h, w = _images("translate", x)
    rows, cols = np.asarray(rows, np.intp), np.asarray(cols, np.intp)
    pad_r, pad_c = int(np.abs(rows).max(initial=0)), int(np.abs(cols).max(initial=0))
    padded = np.pad(x, ((0, 0), (0, 0), (pad_r, pad_r), (pad_c, pad_c)))
    # window (i, j) of the padded image starts at its pixel (i, j); a shift by (r, c) is the window
    # starting at (pad_r - r, pad_c - c).
    windows = sliding_window_view(padded, (h, w), axis=(2, 3))    # (N, C, 2pr+1, 2pc+1, H, W)
    return np.ascontiguousarray(windows[np.arange(n), :, pad_r - rows, pad_c - cols])


def _bilinear(x: np.ndarray, src_r: np.ndarray, src_c: np.ndarray) -> np.ndarray:
    """Sample every image of x (N, C, H, W) at the source coordinates (N, H, W) of its output
    pixels, bilinearly; taps outside the image read zeros (as grid_sample's padding "zeros")."""
    n, c, h, w = x.shape
    r0, c0 = np.floor(src_r), np.floor(src_c)
    fr, fc = (src_r - r0).astype(np.float32), (src_c - c0).astype(np.float32)
    r0, c0 = r0.astype(np.intp), c0.astype(np.intp)
    # per tap: the clipped index and a weight that is zero where the tap falls outside
    rows = [(np.clip(r, 0, h - 1) * w, f * ((r >= 0) & (r < h)))
            for r, f in ((r0, 1 - fr), (r0 + 1, fr))]
    cols = [(np.clip(k, 0, w - 1), f * ((k >= 0) & (k < w)))
            for k, f in ((c0, 1 - fc), (c0 + 1, fc))]
    flat = np.ascontiguousarray(x, np.float32).ravel()
    # one flat index per (image, channel, output pixel): a 1-D take is several times faster than
    # fancy indexing over (N, :, rows, cols)
    base = ((np.arange(n)[:, None] * c + np.arange(c)) * (h * w))[:, :, None]
    out = np.zeros((n, c, h * w), np.float32)
    for ri, rw in rows:
        for ci, cw in cols:
            out += flat.take(base + (ri + ci).reshape(n, 1, h * w)) * (rw * cw).reshape(n, 1, h * w)
    return out.reshape(n, c, h, w)


def rotate_by(x: np.ndarray, degrees) -> np.ndarray:
    """Rotate each image counter-clockwise (as displayed, rows downwards) by degrees[n] about its
    centre, bilinearly, zeros outside; 90° on a square image is np.rot90(x, axes=(2, 3))."""
    n, c, h, w = _images("rotate", x)
    theta = np.deg2rad(np.broadcast_to(np.asarray(degrees, np.float64), (n,)))[:, None, None]
    # sin/cos rounded to 15 places: quarter turns land exactly on whole pixels
    sin, cos = np.round(np.sin(theta), 15), np.round(np.cos(theta), 15)
    cr, cc = (h - 1) / 2.0, (w - 1) / 2.0
    dy = np.arange(h, dtype=np.float64)[None, :, None] - cr
    dx = np.arange(w, dtype=np.float64)[None, None, :] - cc
    # the output pixel at offset (dy, dx) reads the input at the inverse rotation of that offset
    return _bilinear(x, cr + sin * dx + cos * dy, cc + cos * dx - sin * dy)


def soft_targets(y: np.ndarray, classes: int | None) -> np.ndarray:
    """Labels (N,) int -> one-hot (N, classes) float32; soft targets (N, k) pass through."""
    y = np.asarray(y)
    if y.ndim == 2 and y.dtype.kind == "f":
        return y.astype(np.float32, copy=False)
    if classes is None:
        raise DataError("mixup and cutmix need the number of classes to make soft targets")
    return np.eye(classes, dtype=np.float32)[y]


# ---- the augmentations ---------------------------------------------------------------------------

def hflip(x, y, rng: np.random.Generator, p: float = 0.5):
    """Mirror each sample left-right (its last axis) with probability p."""
    if x.ndim < 3:
        raise DataError(f"augment hflip needs images or sequences (N, C, …); got shape {x.shape}")
    flip = _per_sample(rng.random(len(x)) < p, x.ndim)
    return np.where(flip, x[..., ::-1], x), y


def crop(x, y, rng: np.random.Generator, pad: int = 4):
    """Pad each image with `pad` zeros on every side and cut out a random H x W window (the
    CIFAR recipe): a shift by up to ±pad pixels on each axis, drawn per image."""
    n, c, h, w = _images("crop", x)
    off = rng.integers(0, 2 * pad + 1, size=(2, n))
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    windows = sliding_window_view(padded, (h, w), axis=(2, 3))
    return np.ascontiguousarray(windows[np.arange(n), :, off[0], off[1]]), y


def translate(x, y, rng: np.random.Generator, pixels: int = 2):
    """Move each image by a whole number of pixels in [-pixels, pixels] per axis (zeros fill)."""
    n = len(x)
    _images("translate", x)
    rows, cols = rng.integers(-pixels, pixels + 1, size=(2, n))
    return shift_by(x, rows, cols), y


def noise(x, y, rng: np.random.Generator, std: float = 0.1):
    """Add Gaussian noise of standard deviation `std` (in the normalised units) to every value."""
    return x + rng.standard_normal(x.shape, dtype=np.float32) * np.float32(std), y


def jitter(x, y, rng: np.random.Generator, strength: float = 0.4):
    """Brightness and contrast per sample: x' = (x - m)·c + m + b, with m the sample's mean,
    contrast c ~ U[1 - s, 1 + s] and brightness b ~ U[-s, s] (normalised units)."""
    n = len(x)
    c = _per_sample(rng.uniform(1 - strength, 1 + strength, n).astype(np.float32), x.ndim)
    b = _per_sample(rng.uniform(-strength, strength, n).astype(np.float32), x.ndim)
    m = x.reshape(n, -1).mean(axis=1, dtype=np.float64).astype(np.float32)
    m = _per_sample(m, x.ndim)
    return (x - m) * c + m + b, y


def rotate(x, y, rng: np.random.Generator, degrees: float = 15.0):
    """Rotate each image by an angle drawn uniformly from [-degrees, degrees] (bilinear, zeros fill)."""
    _images("rotate", x)
    return rotate_by(x, rng.uniform(-degrees, degrees, len(x))), y


def cutout(x, y, rng: np.random.Generator, size: int = 8):
    """Zero a size x size square centred on a random pixel of each image (clipped at the border,
    so part of it may fall outside), as in DeVries & Taylor (2017)."""
    n, c, h, w = _images("cutout", x)
    cy, cx = rng.integers(0, h, n), rng.integers(0, w, n)
    mask = _box(h, w, cy - size // 2, cy - size // 2 + size, cx - size // 2, cx - size // 2 + size)
    return np.where(mask[:, None], np.float32(0), x), y


def mixup(x, y, rng: np.random.Generator, alpha: float = 0.2, *, classes: int | None = None):
    """Blend each sample with a random partner of the batch: x' = λ·x + (1-λ)·x[perm], same for
    the one-hot targets, λ ~ Beta(alpha, alpha) per sample (Zhang et al. 2018)."""
    t = soft_targets(y, classes)
    lam = rng.beta(alpha, alpha, len(x)).astype(np.float32)
    perm = rng.permutation(len(x))
    lx = _per_sample(lam, x.ndim)
    return lx * x + (1 - lx) * x[perm], lam[:, None] * t + (1 - lam[:, None]) * t[perm]


def cutmix(x, y, rng: np.random.Generator, alpha: float = 1.0, *, classes: int | None = None):
    """Paste a box of a random partner into each image; the box covers about 1-λ of the image,
    λ ~ Beta(alpha, alpha), and the targets mix by the area actually pasted (Yun et al. 2019)."""
    n, c, h, w = _images("cutmix", x)
    t = soft_targets(y, classes)
    lam = rng.beta(alpha, alpha, n)
    perm = rng.permutation(n)
    ratio = np.sqrt(1.0 - lam)
    ch, cw = (h * ratio).astype(np.intp), (w * ratio).astype(np.intp)
    cy, cx = rng.integers(0, h, n), rng.integers(0, w, n)
    mask = _box(h, w, cy - ch // 2, cy + ch // 2, cx - cw // 2, cx + cw // 2)
    kept = (1.0 - mask.sum(axis=(1, 2)) / (h * w)).astype(np.float32)[:, None]
    return np.where(mask[:, None], x[perm], x), kept * t + (1 - kept) * t[perm]


def _box(h, w, r0, r1, c0, c1) -> np.ndarray:
    """(N, H, W) masks of the boxes rows [r0, r1) x cols [c0, c1), clipped to the image."""
    rows = np.arange(h)[None, :, None]
    cols = np.arange(w)[None, None, :]
    inside_r = (rows >= np.asarray(r0)[:, None, None]) & (rows < np.asarray(r1)[:, None, None])
    inside_c = (cols >= np.asarray(c0)[:, None, None]) & (cols < np.asarray(c1)[:, None, None])
    return inside_r & inside_c


AUGMENTS: dict[str, Callable] = {
    "hflip": hflip, "crop": crop, "noise": noise, "jitter": jitter, "rotate": rotate,
    "translate": translate, "cutout": cutout, "mixup": mixup, "cutmix": cutmix,
}
MIXING = frozenset({"mixup", "cutmix"})      # these return soft targets and need `classes`
IMAGES_ONLY = frozenset({"crop", "translate", "rotate", "cutout", "cutmix"})


def check(augments, sample_shape, classes: int | None = None) -> None:
    """Before the first step: every augmentation fits the samples (a DataError otherwise)."""
    rank = len(sample_shape)
    for a in augments:
        if a.name in IMAGES_ONLY and rank != 3:
            raise DataError(f"augment {a.name} needs images (C x H x W samples); the samples are "
                            f"{'x'.join(map(str, sample_shape))}")
        if a.name == "hflip" and rank < 2:
            raise DataError(f"augment hflip needs images or sequences; the samples are {sample_shape[0]} values")
        if a.name in MIXING and classes is None:
            raise DataError(f"augment {a.name} needs class labels; the data has none")


def apply(augments, x: np.ndarray, y: np.ndarray, rng: np.random.Generator, classes: int | None = None):
    """Apply the train section's augment choices (config.Choice: name + options) in order."""
    for a in augments:
        extra = {"classes": classes} if a.name in MIXING else {}
        x, y = AUGMENTS[a.name](x, y, rng, **a.options, **extra)
    return x, y
