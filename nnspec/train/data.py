"""Data sources for training: the embedded digits, .npz files, MNIST / Fashion-MNIST IDX files,
CIFAR-10 binary batches and synthetic sets, split, checked and normalised (NumPy only).

>>> from nnspec.train import data
>>> splits = data.load("digits")
>>> splits.train.x.shape, splits.val.x.shape, splits.test.x.shape, splits.classes
((1259, 1, 8, 8), (269, 1, 8, 8), (269, 1, 8, 8), 10)
>>> data.reshape_to(splits, (64,)).train.x.shape
(1259, 64)

Every problem with a source (a missing or truncated file, a wrong magic number, NaN pixels, labels
out of range) is a `DataError` whose message names the file and what is wrong; nothing we load
is unpickled. The data never depends on the run's seed; only the validation draw does.
"""

from __future__ import annotations

import gzip
import math
import os
import pathlib
import zipfile
import zlib
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any, Iterator, Mapping

import numpy as np

from ..config import DATA
from ..errors import did_you_mean
from ..ops import REQUIRED

# The embedded digits' fixed split: per class, 15 % test and 15 % validation (rounded half up),
# the rest training, ordered by one raw 64-bit PCG64 draw per image from np.random.PCG64(1797).
# PCG64 and SeedSequence are fixed algorithms, so the split is the same on every machine.
DIGITS_SPLIT = (0.15, 0.15)          # test, validation
DIGITS_SEED = 1797
SYNTHETIC_TEST = 0.2                 # the fixed test share of the generated sets
_TORCHVISION = {"mnist": "MNIST", "fashion": "FashionMNIST"}   # their folders under torchvision's root
_IDX = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_CIFAR_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
_CIFAR_TEST = "test_batch.bin"
_CIFAR_RECORD = 1 + 3 * 32 * 32


class DataError(Exception):
    """A data source that cannot be used; the message names the file or field and the fault."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """`x`: float32 (N, *sample_shape); `y`: int64 (N,) class indices, or float32 (N,) / (N, k)
    targets for regression and multi-label data."""
    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.x)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])


@dataclass(frozen=True, eq=False)
class Splits:
    """The three splits of one source, normalised with statistics of `train` alone.

    `mean` and `std` (float32, one value per channel for images — the first sample axis of a
    sample with two or more axes — or per feature for vectors) are what was subtracted and
    divided; `normalize(raw)` applies them to new raw samples."""
    train: Dataset
    val: Dataset | None
    test: Dataset | None
    classes: int | None
    name: str
    mean: np.ndarray
    std: np.ndarray
    source: str

    def normalize(self, x: np.ndarray) -> np.ndarray:
        """Raw samples (N, *sample_shape, in the source's units scaled as load scales them) ->
        the normalised float32 samples the network was trained on."""
        x = np.asarray(x, np.float32)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return (x - self.mean.reshape(shape)) / self.std.reshape(shape)


# ---- the public entry points ---------------------------------------------------------------------

def load(choice_or_str, *, root=None, validation: float = 0.0, seed: int = 0,
         input_shape: tuple[int, ...] | None = None) -> Splits:
    """Load a data source: the train section's `data` choice (config.Choice) or a CLI string
    (`digits`, `train.npz`, `mnist:DIR`, `fashion:DIR`, `cifar10:DIR`, `spirals`, `moons`,
    `circles`, `synthetic`). Relative paths are taken from `root` (default: the working folder).

    `validation` 0 keeps the source's own validation split (digits, an .npz with x_val/y_val) or
    none; a fraction f > 0 draws a stratified f of the non-test samples with `seed` instead.
    `input_shape` (the spec's input) gives `synthetic` its sample shape; other sources ignore it.
    """
    name, options = _parse(choice_or_str)
    if not 0.0 <= validation < 1.0:
        raise DataError(f"validation must be a fraction in [0, 1), got {validation}")
    base = pathlib.Path(root) if root is not None else pathlib.Path.cwd()
    raw = _SOURCES[name](options, base, input_shape)
    return _finish(raw, validation, seed)


@dataclass(frozen=True, eq=False)
class Pool:
    """The non-test samples of a source, raw (not normalised): the training split, then the
    validation split (`n_train` marks where it starts), and the test split apart. What
    cross-validation deals into folds and bagging resamples (nnspec/train/members.py)."""
    x: np.ndarray
    y: np.ndarray
    n_train: int
    test: tuple[np.ndarray, np.ndarray] | None
    classes: int | None
    name: str
    source: str

    def splits(self, train: np.ndarray, val: np.ndarray, note: str) -> Splits:
        """Train on the samples `train` (indices into x, repeats allowed), validate on `val`,
        test on the source's test split; normalised with the statistics of `train` alone.
        `note` ("fold 2 of 5") joins the source's description, which a resume compares."""
        test = None if self.test is None else (self.test[0].copy(), self.test[1])
        raw = _Raw(self.name, f"{self.source}; {note}", (self.x[train], self.y[train]),
                   (self.x[val], self.y[val]) if len(val) else None, test, self.classes)
        return _finish(raw, 0.0, 0)


def load_pool(choice_or_str, *, root=None, validation: float = 0.0, seed: int = 0,
              input_shape: tuple[int, ...] | None = None) -> Pool:
    """A source's samples as `load` would split them (same arguments), before normalisation."""
    name, options = _parse(choice_or_str)
    if not 0.0 <= validation < 1.0:
        raise DataError(f"validation must be a fraction in [0, 1), got {validation}")
    base = pathlib.Path(root) if root is not None else pathlib.Path.cwd()
    raw = _SOURCES[name](options, base, input_shape)
    train, val = _validation_split(raw, validation, seed)
    if val is None:
        x, y = train
    else:
        x, y = np.concatenate([train[0], val[0]]), np.concatenate([train[1], val[1]])
    return Pool(x, y, len(train[0]), raw.test, raw.classes, raw.name, raw.source)


def reshape_to(splits: Splits, input_shape) -> Splits:
    """The same data with samples reshaped to `input_shape` when the element counts agree
    (digits 1x8x8 <-> 64); otherwise a DataError naming both shapes."""
    input_shape = tuple(int(d) for d in input_shape)
    have = splits.train.sample_shape
    if have == input_shape:
        return splits
    if math.prod(have) != math.prod(input_shape):
        raise DataError(f"data {splits.name} gives samples of shape {_shape(have)} "
                        f"({math.prod(have)} values) but the spec's input is {_shape(input_shape)} "
                        f"({math.prod(input_shape)} values)")

    def fit(d: Dataset | None) -> Dataset | None:
        return None if d is None else Dataset(d.x.reshape((len(d.x),) + input_shape), d.y)

    return replace(splits, train=fit(splits.train), val=fit(splits.val), test=fit(splits.test))


def check_against(splits: Splits, input_shape, head_width: int | None) -> Splits:
    """Check the data against the spec before the first step: the samples must fit the input
    (reshaped when only the layout differs, see reshape_to) and the classes the head's width
    (a single output serves two classes). Returns the splits to train on (use the result)."""
    splits = reshape_to(splits, input_shape)
    if head_width is None:
        return splits
    head_width = int(head_width)
    y = splits.train.y
    if y.dtype.kind == "f":
        width = 1 if y.ndim == 1 else y.shape[1]
        if width != head_width:
            raise DataError(f"data {splits.name} has {width} target value{'s' * (width != 1)} per sample "
                            f"but the network's head gives {head_width} output{'s' * (head_width != 1)}")
    elif splits.classes != head_width and not (splits.classes == 2 and head_width == 1):
        raise DataError(f"data {splits.name} has {splits.classes} classes but the network's head "
                        f"gives {head_width} output{'s' * (head_width != 1)}")
    return splits


def permutation(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random order of 0..n-1 drawn from `rng` (the trainer passes the epoch's stream)."""
    return rng.permutation(n)


def batches(dataset: Dataset, batch_size: int, order: np.ndarray | None = None, *,
            drop_last: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(x, y) mini-batches of `dataset` in `order` (all samples in sequence when None); the last
    batch is smaller unless `drop_last`."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    n = len(dataset)
    order = np.arange(n) if order is None else np.asarray(order)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        yield dataset.x[idx], dataset.y[idx]


@dataclass(frozen=True)
class Facts:
    """What a source gives, known without reading a file: None where only the file (or, for
    synthetic, the spec's input) can tell."""
    samples: int | None               # all splits together
    classes: int | None
    sample_shape: tuple[int, ...] | None


def facts(choice_or_str) -> Facts:
    """The facts of a source for the linter and reports (no file is opened).

    >>> facts("digits")
    Facts(samples=1797, classes=10, sample_shape=(1, 8, 8))
    """
    name, o = _parse(choice_or_str)
    if name == "digits" and o.get("classes"):
        keep = set(o["classes"])
        x, y = _digits_arrays()
        return Facts(int(np.isin(y, list(keep)).sum()), len(keep), (1, 8, 8))
    fixed = {"digits": Facts(1797, 10, (1, 8, 8)), "mnist": Facts(70000, 10, (1, 28, 28)),
             "fashion": Facts(70000, 10, (1, 28, 28)), "cifar10": Facts(60000, 10, (3, 32, 32)),
             "npz": Facts(None, None, None)}
    if name in fixed:
        return fixed[name]
    classes = o.get("classes", 2)
    return Facts(o["samples"], classes, None if name == "synthetic" else (2,))


def split_indices() -> dict[str, np.ndarray]:
    """The embedded digits' fixed split: sorted indices into the 1,797 images."""
    _, y = _digits_arrays()
    test, val, train = _stratified(y.astype(np.int64), DIGITS_SPLIT, np.random.PCG64(DIGITS_SEED).random_raw(len(y)))
    return {"train": train, "val": val, "test": test}


# ---- parsing the choice --------------------------------------------------------------------------

def _parse(choice) -> tuple[str, dict[str, Any]]:
    if hasattr(choice, "name") and hasattr(choice, "options"):
        name, given = choice.name, dict(choice.options)
    elif isinstance(choice, str):
        text = choice.strip()
        head, colon, rest = text.partition(":")
        if colon and head.lower() in ("npz", "mnist", "fashion", "cifar10"):
            name, given = head.lower(), {"path": rest}
        elif text.lower().endswith(".npz"):
            name, given = "npz", {"path": text}
        else:
            name, given = (head if colon else text).lower(), {}
    else:
        raise DataError(f"a data source is a name or a path, got {choice!r}")
    if name not in DATA:
        hint = did_you_mean(name, DATA)
        raise DataError(f"unknown data source '{name}'" + (f" ({hint})" if hint else "")
                        + "; sources: digits, FILE.npz, mnist:DIR, fashion:DIR, cifar10:DIR, "
                        "spirals, moons, circles, synthetic")
    options = {}
    for arg in DATA[name]:
        if arg.name in given and given[arg.name] is not None:
            options[arg.name] = given[arg.name]
        elif arg.default is not REQUIRED:
            options[arg.name] = arg.default
        elif arg.name == "path":
            options["path"] = ""                                  # said just below
        else:
            raise DataError(f"data {name} needs '{arg.name}'")
    if "path" in options and not str(options["path"]).strip():
        where = "FILE.npz" if name == "npz" else f"~/data/{name}"
        raise DataError(f"data {name} needs a path: `{name}:{where}` on the command line, "
                        f"`data {name}(\"{where}\")` in a spec")
    return name, options


def _path(options: Mapping[str, Any], base: pathlib.Path) -> pathlib.Path:
    path = pathlib.Path(os.path.expanduser(str(options["path"])))
    return path if path.is_absolute() else base / path


# ---- the sources: each returns a _Raw (float32 x in natural units scaled to [0, 1] for images) ----

@dataclass
class _Raw:
    name: str
    source: str
    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray] | None
    test: tuple[np.ndarray, np.ndarray] | None
    classes: int | None


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    with resources.files("nnspec.train").joinpath("digits.npz").open("rb") as f:
        d = np.load(f, allow_pickle=False)
        return d["x"], d["y"]


def _digits(options, base, input_shape) -> _Raw:
    x, y = _digits_arrays()
    x = (x.astype(np.float32) / np.float32(16.0))[:, None]  # pixels 0..16 -> [0, 1], 1x8x8
    y = y.astype(np.int64)
    parts = split_indices()
    keep = options.get("classes")
    source = ("digits: embedded UCI ML hand-written digits (1,797 8x8 images, CC BY 4.0), "
              f"fixed split 70/15/15 % from PCG64({DIGITS_SEED})")
    if not keep:
        return _Raw("digits", source, *((x[parts[k]], y[parts[k]]) for k in ("train", "val", "test")), 10)
    keep = tuple(keep)
    bad = [c for c in keep if not 0 <= c <= 9]
    if bad or len(set(keep)) != len(keep):
        raise DataError(f"digits(classes={keep}): each class must be a digit 0-9, given once")
    # a subset of the classes, relabelled 0..k-1 in the order given (transfer learning: 0-4, 5-9)
    relabel = np.full(10, -1, np.int64)
    relabel[list(keep)] = np.arange(len(keep))
    chosen = []
    for k in ("train", "val", "test"):
        idx = parts[k][np.isin(y[parts[k]], keep)]
        chosen.append((x[idx], relabel[y[idx]]))
    return _Raw("digits", f"{source}, classes {', '.join(map(str, keep))} as 0-{len(keep) - 1}", *chosen,
                len(keep))


def _npz(options, base, input_shape) -> _Raw:
    path = _path(options, base)
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror or err})") from None
    if magic not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise DataError(f"{path}: not an .npz archive (a zip file of .npy arrays, as np.savez writes)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except ValueError as err:
        why = "holds object arrays (pickled Python objects), which are never loaded" \
            if "allow_pickle" in str(err) else f"not a valid .npz archive ({err})"
        raise DataError(f"{path}: {why}") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as err:
        raise DataError(f"{path}: cannot be read as an .npz archive ({err or type(err).__name__})") from None
    if "x" not in arrays or "y" not in arrays:
        missing = " and ".join(f"'{k}'" for k in ("x", "y") if k not in arrays)
        raise DataError(f"{path}: no array {missing} (found: {', '.join(sorted(arrays)) or 'nothing'}); "
                        "an .npz source holds x (samples) and y (labels or targets)")
    for k in ("val", "test"):
        if (f"x_{k}" in arrays) != (f"y_{k}" in arrays):
            raise DataError(f"{path}: x_{k} and y_{k} come together; found only one of them")
    parts = {"train": ("x", "y"), "val": ("x_val", "y_val"), "test": ("x_test", "y_test")}
    got = {k: _arrays(path, arrays[a], arrays[b], a, b) for k, (a, b) in parts.items() if a in arrays}
    sample = got["train"][0].shape[1:]
    kind = got["train"][1].dtype.kind
    for k, (x, y) in got.items():
        if x.shape[1:] != sample:
            raise DataError(f"{path}: samples of {parts[k][0]} are {_shape(x.shape[1:])}, "
                            f"those of x are {_shape(sample)}")
        if y.dtype.kind != kind or y.shape[1:] != got["train"][1].shape[1:]:
            raise DataError(f"{path}: {parts[k][1]} does not match y (one holds class indices, "
                            "the other targets, or their widths differ)")
    classes = None
    if kind == "i":
        top = max(int(y.max(initial=-1)) for _, y in got.values()) + 1
        classes = top
        if "classes" in arrays:
            c = arrays["classes"]
            if c.shape != () or c.dtype.kind not in "iu" or int(c) < 1:
                raise DataError(f"{path}: 'classes' must be one positive integer")
            classes = int(c)
            for k, (_, y) in got.items():
                if y.max(initial=-1) >= classes:
                    at = int(np.argmax(y >= classes))
                    raise DataError(f"{path}: label {int(y[at])} of {parts[k][1]}[{at}] is out of range "
                                    f"for {classes} classes (labels are 0..{classes - 1})")
    return _Raw(path.name, f"npz: {path}", got["train"], got.get("val"), got.get("test"), classes)


def _arrays(path, x, y, xname, yname) -> tuple[np.ndarray, np.ndarray]:
    """Check one (x, y) pair of an .npz and convert it: x float32, y int64 labels or float32 targets."""
    if x.dtype.kind not in "biuf":
        raise DataError(f"{path}: {xname} has dtype {x.dtype}; samples must be numbers")
    if x.ndim == 0 or len(x) == 0:
        raise DataError(f"{path}: {xname} holds no samples (shape {x.shape})")
    if y.ndim not in (1, 2) or len(y) != len(x):
        raise DataError(f"{path}: {xname} has {len(x)} samples but {yname} has shape {_shape(y.shape, 'x')}; "
                        f"{yname} needs one label (or one row of targets) per sample")
    if y.dtype.kind not in "biuf":
        raise DataError(f"{path}: {yname} has dtype {y.dtype}; labels must be integers, targets numbers")
    xf = x.astype(np.float32)
    if x.ndim == 1:
        xf = xf[:, None]
    bad = ~np.isfinite(xf)
    if bad.any():
        at = int(np.argmax(bad.reshape(len(xf), -1).any(axis=1)))
        what = "NaN" if np.isnan(xf).any() else "infinite (or too large for float32)"
        raise DataError(f"{path}: {xname} has {int(bad.sum())} {what} value{'s' * (int(bad.sum()) != 1)} "
                        f"(the first in sample {at})")
    if y.dtype.kind in "iu" and y.ndim == 1:
        if y.min() < 0:
            at = int(np.argmin(y))
            raise DataError(f"{path}: label {int(y[at])} of {yname}[{at}] is out of range (labels are 0, 1, …)")
        return xf, y.astype(np.int64)
    yf = y.astype(np.float32)
    if not np.isfinite(yf).all():
        raise DataError(f"{path}: {yname} has NaN or infinite targets")
    return xf, yf


def _find(folder: pathlib.Path, stem: str, *also: str) -> pathlib.Path | None:
    for where in (folder, *(folder / a for a in also)):
        for name in (stem, stem + ".gz"):
            if (where / name).is_file():
                return where / name
    return None


def _read(path: pathlib.Path) -> bytes:
    try:
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
    except (EOFError, zlib.error, gzip.BadGzipFile):
        raise DataError(f"{path}: cannot be read (truncated or corrupt gzip data)") from None
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror or err})") from None
    return data


def read_idx(path: pathlib.Path, ndim: int) -> np.ndarray:
    """One IDX file of unsigned bytes (MNIST's format), gzipped or not: magic 0x0000 08 <ndim>,
    then ndim big-endian 32-bit sizes, then the bytes."""
    data = _read(path)
    want = 0x0800 + ndim
    if len(data) < 4:
        raise DataError(f"{path}: truncated: {len(data)} bytes, not even an IDX header")
    magic = int.from_bytes(data[:4], "big")
    if magic != want:
        raise DataError(f"{path}: wrong magic number 0x{magic:08x}, expected 0x{want:08x} (an IDX file "
                        f"of unsigned bytes with {ndim} dimension{'s' * (ndim != 1)})")
    head = 4 + 4 * ndim
    if len(data) < head:
        raise DataError(f"{path}: truncated inside the IDX header ({len(data)} of {head} bytes)")
    dims = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    need = math.prod(dims)
    if len(data) - head != need:
        what = "truncated" if len(data) - head < need else "too long"
        raise DataError(f"{path}: {what}: the header says {_shape(dims, 'x')} = {need:,} bytes of data, "
                        f"the file holds {len(data) - head:,}")
    return np.frombuffer(data, np.uint8, offset=head).reshape(dims)


def _idx_source(name):
    def source(options, base, input_shape) -> _Raw:
        folder = _path(options, base)
        if not folder.is_dir():
            raise DataError(f"{name}: {folder} is not a folder (it should hold train-images-idx3-ubyte[.gz] "
                            "and the other IDX files)")
        parts = {}
        for split, (images, labels) in _IDX.items():
            found = [_find(folder, f, "raw", f"{_TORCHVISION[name]}/raw") for f in (images, labels)]
            if found == [None, None] and split == "test":
                continue
            for f, p in zip((images, labels), found):
                if p is None:
                    raise DataError(f"{name}: no {f} (or {f}.gz) in {folder}")
            x, y = read_idx(found[0], 3), read_idx(found[1], 1)
            if len(x) != len(y):
                raise DataError(f"{found[1]}: {len(y):,} labels for the {len(x):,} images of {found[0].name}")
            if y.max(initial=0) > 9:
                at = int(np.argmax(y > 9))
                raise DataError(f"{found[1]}: label {int(y[at])} at position {at} is out of range (0..9)")
            parts[split] = ((x.astype(np.float32) / np.float32(255.0))[:, None], y.astype(np.int64))
        return _Raw(name, f"{name}: {folder}", parts["train"], None, parts.get("test"), 10)
    return source


def read_cifar(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 binary batch: records of 1 label byte and 3x32x32 pixel bytes (R, G, B planes)."""
    data = _read(path)
    if not data or len(data) % _CIFAR_RECORD:
        raise DataError(f"{path}: {len(data):,} bytes is not a whole number of {_CIFAR_RECORD:,}-byte "
                        "CIFAR-10 records (truncated, or not the binary version)")
    rec = np.frombuffer(data, np.uint8).reshape(-1, _CIFAR_RECORD)
    y = rec[:, 0]
    if y.max() > 9:
        at = int(np.argmax(y > 9))
        raise DataError(f"{path}: record {at} has label {int(y[at])}, out of range (0..9): not a CIFAR-10 batch")
    return rec[:, 1:].reshape(-1, 3, 32, 32), y.astype(np.int64)


def _cifar10(options, base, input_shape) -> _Raw:
    folder = _path(options, base)
    if not folder.is_dir():
        raise DataError(f"cifar10: {folder} is not a folder (it should hold data_batch_1.bin … test_batch.bin)")
    if (folder / "cifar-10-batches-bin").is_dir():
        folder = folder / "cifar-10-batches-bin"
    missing = [f for f in _CIFAR_TRAIN + (_CIFAR_TEST,) if not (folder / f).is_file()]
    if missing:
        pickled = (folder / "data_batch_1").is_file() or (folder / "cifar-10-batches-py").is_dir()
        raise DataError(f"cifar10: no {', '.join(missing)} in {folder}" + (
            "; that is the pickled Python version, which is never loaded: use the binary version "
            "(cifar-10-binary.tar.gz)" if pickled else ""))
    batches_ = [read_cifar(folder / f) for f in _CIFAR_TRAIN]
    x = np.concatenate([b[0] for b in batches_]).astype(np.float32)
    x /= np.float32(255.0)
    y = np.concatenate([b[1] for b in batches_])
    tx, ty = read_cifar(folder / _CIFAR_TEST)
    return _Raw("cifar10", f"cifar10: {folder}", (x, y), None,
                (tx.astype(np.float32) / np.float32(255.0), ty), 10)


def _generated(name, make, options, classes) -> _Raw:
    """A generated set: fixed data (seed 0 of its own stream), a fixed stratified test share."""
    noise = options.get("noise", 0.0)
    if noise < 0:
        raise DataError(f"data {name}: noise must be zero or positive, got {noise}")
    rng = _rng(0, f"data.{name}")
    x, y = make(rng)
    test, train = _stratified(y, (SYNTHETIC_TEST,), _rng(0, f"data.{name}.split").bit_generator.random_raw(len(y)))
    desc = ", ".join(f"{k}={v}" for k, v in options.items())
    return _Raw(name, f"{name}({desc}): generated, {100 - round(100 * SYNTHETIC_TEST)}/"
                f"{round(100 * SYNTHETIC_TEST)} % train/test", (x[train], y[train]), None,
                (x[test], y[test]), classes)


def _spirals(options, base, input_shape) -> _Raw:
    n, k, noise = options["samples"], options["classes"], options["noise"]

    def make(rng):
        y = np.arange(n) % k
        u = rng.random(n)
        t = 4.0 * u + 2.0 * np.pi * y / k + noise * rng.standard_normal(n)
        return np.stack([u * np.sin(t), u * np.cos(t)], axis=1).astype(np.float32), y.astype(np.int64)
    return _generated("spirals", make, options, k)


def _moons(options, base, input_shape) -> _Raw:
    n, noise = options["samples"], options["noise"]

    def make(rng):
        y = np.arange(n) % 2
        t = np.pi * rng.random(n)
        x = np.where(y[:, None] == 0, np.stack([np.cos(t), np.sin(t)], 1),
                     np.stack([1.0 - np.cos(t), 0.5 - np.sin(t)], 1))
        return (x + noise * rng.standard_normal((n, 2))).astype(np.float32), y.astype(np.int64)
    return _generated("moons", make, options, 2)


def _circles(options, base, input_shape) -> _Raw:
    n, noise, factor = options["samples"], options["noise"], options["factor"]

    def make(rng):
        y = np.arange(n) % 2
        t = 2.0 * np.pi * rng.random(n)
        r = np.where(y == 0, 1.0, factor)[:, None]
        x = r * np.stack([np.cos(t), np.sin(t)], 1)
        return (x + noise * rng.standard_normal((n, 2))).astype(np.float32), y.astype(np.int64)
    return _generated("circles", make, options, 2)


def _synthetic(options, base, input_shape) -> _Raw:
    """Gaussian classes in the spec's input shape: one prototype per class, scaled so that two
    prototypes lie about 4.2 noise deviations apart whatever the size (learnable, not trivial)."""
    n, k = options["samples"], options["classes"]
    if input_shape is None:
        raise DataError("data synthetic takes its sample shape from the spec's input; none was given")
    shape = tuple(int(d) for d in input_shape)
    d = math.prod(shape)

    def make(rng):
        protos = rng.standard_normal((k, d), dtype=np.float32) * np.float32(3.0 / math.sqrt(d))
        y = np.arange(n) % k
        x = protos[y] + rng.standard_normal((n, d), dtype=np.float32)
        return x.reshape((n,) + shape), y.astype(np.int64)
    return _generated("synthetic", make, options, k)


_SOURCES = {"digits": _digits, "npz": _npz, "mnist": _idx_source("mnist"),
            "fashion": _idx_source("fashion"), "cifar10": _cifar10, "spirals": _spirals,
            "moons": _moons, "circles": _circles, "synthetic": _synthetic}


# ---- splitting and normalising -------------------------------------------------------------------

def _rng(seed: int, purpose: str) -> np.random.Generator:
    """The stream for one purpose, keyed like the weight initialiser: (seed, crc32 of the name)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, zlib.crc32(purpose.encode())])))


def _stratified(y: np.ndarray, fractions, keys: np.ndarray) -> list[np.ndarray]:
    """Split 0..n-1 into len(fractions) + 1 sorted index arrays: part i takes round(f_i·n_c) samples
    of each class c (all samples form one group for float targets), the last part the rest; within
    a class, samples are taken in the order of their `keys`."""
    groups = ([np.flatnonzero(y == c) for c in np.unique(y)] if y.dtype.kind in "iu" and y.ndim == 1
              else [np.arange(len(y))])
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for idx in groups:
        idx = idx[np.argsort(keys[idx], kind="stable")]
        start = 0
        for i, f in enumerate(fractions):
            take = int(math.floor(f * len(idx) + 0.5))
            parts[i].append(idx[start:start + take])
            start += take
        parts[-1].append(idx[start:])
    return [np.sort(np.concatenate(p)).astype(np.int64) for p in parts]


def _validation_split(raw: _Raw, validation: float, seed: int):
    """(train, val) of a source: its own, or a stratified fraction `validation` > 0 of the
    non-test samples drawn with `seed`."""
    train, val = raw.train, raw.val
    if validation > 0:
        pool = train if val is None else tuple(np.concatenate([a, b]) for a, b in zip(train, val))
        keys = _rng(seed, "data.validation").bit_generator.random_raw(len(pool[1]))
        vi, ti = _stratified(pool[1], (validation,), keys)
        if len(ti) == 0:
            raise DataError(f"data {raw.name}: validation {validation} leaves no training samples")
        train, val = (pool[0][ti], pool[1][ti]), ((pool[0][vi], pool[1][vi]) if len(vi) else None)
    return train, val


def _finish(raw: _Raw, validation: float, seed: int) -> Splits:
    train, val = _validation_split(raw, validation, seed)
    mean, std = _statistics(train[0])
    shape = (1, -1) + (1,) * (train[0].ndim - 2)

    def norm(part):
        if part is None:
            return None
        x = part[0]          # every source hands over arrays of its own: normalise in place
        if x.dtype != np.float32 or not x.flags.writeable:
            x = x.astype(np.float32)
        x -= mean.reshape(shape)
        x /= std.reshape(shape)
        return Dataset(x, part[1])

    return Splits(norm(train), norm(val), norm(raw.test), raw.classes, raw.name, mean, std, raw.source)


def _statistics(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation per channel (axis 1 of images and sequences) or per feature
    (vectors), returned as float32; a constant channel gets std 1. Two passes in float64 over
    chunks of about 8 MB: exact enough for any offset, and 50,000 CIFAR images take a second."""
    n = len(x)
    flat = x.reshape(n, x.shape[1], -1) if x.ndim > 2 else x.reshape(n, -1, 1)   # (N, C, L)
    step = max(1, (1 << 20) // max(1, flat[0].size))
    count = n * flat.shape[2]
    total = np.zeros(flat.shape[1])
    for s in range(0, n, step):
        total += flat[s:s + step].sum(axis=(0, 2), dtype=np.float64)
    mean = total / count
    squares = np.zeros(flat.shape[1])
    for s in range(0, n, step):
        d = flat[s:s + step].astype(np.float64)
        d -= mean[:, None]
        squares += np.einsum("ncl,ncl->c", d, d)
    std = np.sqrt(squares / count)
    std = np.where(std > 1e-7, std, 1.0)
    return mean.astype(np.float32), std.astype(np.float32)


def _shape(shape, sep: str = "x") -> str:
    return sep.join(str(d) for d in shape) if len(shape) else "scalar"
