"""The training data layer (nnspec/train/data.py): the embedded digits and their fixed split,
.npz / IDX / CIFAR-10 binary files written here byte by byte from their published formats,
the generated sets, normalisation on the training split, and a clean DataError for every
broken file."""

from __future__ import annotations

import gzip
import hashlib
import struct
import subprocess
import sys
import tomllib

import numpy as np
import pytest
from conftest import ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nnspec
from nnspec import config
from nnspec.train import data
from nnspec.train.data import DataError

# sha256 of the embedded arrays (x uint8 1797x8x8 then y uint8), as extracted from
# scikit-learn 1.9.1's sklearn/datasets/data/digits.csv.gz (docs/data.md).
DIGITS_SHA256 = "87ff0c9e40dc7e2c0e34e7257799c2e3f3aec1a016363bb11cad869ec428a826"
# sha256 of the split: train, val, test indices as little-endian int64, in that order.
SPLIT_SHA256 = "04d48903aa90f9fab03a081c00aa0eb8f1acfe24b46a6eefa3facd9e8917735f"


def choice(name, **options):
    """The train section's `data` choice, built the way a spec builds it."""
    args = ", ".join(f"{k}={v!r}".replace("'", '"') for k, v in options.items())
    spec = nnspec.loads(f"input 2\nlinear(2)\ntrain {{\n  data {name}({args})\n}}\n" if args
                        else f"input 2\nlinear(2)\ntrain {{\n  data {name}\n}}\n")
    return spec.graph.train.data


# ---- the embedded digits -------------------------------------------------------------------------

def test_embedded_digits_are_the_uci_digits():
    x, y = data._digits_arrays()
    assert x.shape == (1797, 8, 8) and x.dtype == np.uint8 and y.shape == (1797,) and y.dtype == np.uint8
    assert hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest() == DIGITS_SHA256
    assert x.max() == 16 and x.min() == 0
    # scikit-learn's class counts and its first image (a zero), as load_digits() gives them
    assert np.bincount(y).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert y[0] == 0 and x[0, 1].tolist() == [0, 0, 13, 15, 10, 15, 5, 0]


def test_digits_split_is_fixed_stratified_and_pinned():
    parts = data.split_indices()
    raw = b"".join(parts[k].astype("<i8").tobytes() for k in ("train", "val", "test"))
    assert hashlib.sha256(raw).hexdigest() == SPLIT_SHA256
    assert [len(parts[k]) for k in ("train", "val", "test")] == [1259, 269, 269]
    every = np.concatenate(list(parts.values()))
    assert sorted(every.tolist()) == list(range(1797))           # disjoint and complete
    _, y = data._digits_arrays()
    counts = np.bincount(y)
    for k in ("val", "test"):                                    # 15 % of each class, rounded half up
        assert np.bincount(y[parts[k]], minlength=10).tolist() == [int(c * 0.15 + 0.5) for c in counts]
    # the documented recipe, re-derived: per class, order by PCG64(1797)'s raw draws
    keys = np.random.PCG64(1797).random_raw(1797)
    for c in range(10):
        idx = np.flatnonzero(y == c)
        idx = idx[np.argsort(keys[idx], kind="stable")]
        k = int(len(idx) * 0.15 + 0.5)
        assert set(idx[:k]) == set(parts["test"][y[parts["test"]] == c])
        assert set(idx[k:2 * k]) == set(parts["val"][y[parts["val"]] == c])


def test_load_digits_normalises_with_training_statistics():
    s = data.load("digits")
    assert (s.name, s.classes) == ("digits", 10)
    assert "CC BY 4.0" in s.source
    parts = data.split_indices()
    x, y = data._digits_arrays()
    for k in ("train", "val", "test"):
        d = getattr(s, k)
        assert d.x.dtype == np.float32 and d.y.dtype == np.int64 and d.x.shape == (len(parts[k]), 1, 8, 8)
        assert np.array_equal(d.y, y[parts[k]])
    pixels = x[parts["train"]].astype(np.float64) / 16
    assert s.mean.shape == (1,) and s.std.shape == (1,)              # one channel
    assert s.mean[0] == pytest.approx(pixels.mean(), rel=1e-6)
    assert s.std[0] == pytest.approx(pixels.std(), rel=1e-6)
    for k in ("train", "test"):                                       # test uses the train statistics
        want = (x[parts[k]].astype(np.float64) / 16 - pixels.mean()) / pixels.std()
        np.testing.assert_allclose(getattr(s, k).x[:, 0], want, atol=1e-5)
    assert abs(float(s.test.x.mean())) > 1e-4                         # not its own statistics
    np.testing.assert_allclose(s.normalize(x[parts["test"]][:, None] / 16), s.test.x, atol=1e-6)


def test_validation_fraction_is_drawn_from_the_non_test_samples_with_the_seed():
    a = data.load("digits", validation=0.2, seed=3)
    b = data.load("digits", validation=0.2, seed=3)
    c = data.load("digits", validation=0.2, seed=4)
    assert np.array_equal(a.val.x, b.val.x) and not np.array_equal(a.val.x, c.val.x)
    fixed = data.load("digits")
    np.testing.assert_array_equal(a.test.y, fixed.test.y)           # the test split never moves
    assert len(a.train) + len(a.val) == 1797 - 269
    assert np.bincount(a.val.y).tolist() == [int(n * 0.2 + 0.5) for n in
                                            np.bincount(np.concatenate([fixed.train.y, fixed.val.y]))]
    # the statistics follow the new training split
    raw = a.train.x * a.std[0] + a.mean[0]
    assert raw.mean() == pytest.approx(a.mean[0], abs=1e-6) and abs(a.train.x.mean()) < 1e-5
    with pytest.raises(DataError, match="validation"):
        data.load("digits", validation=1.0)


def test_reshape_between_image_and_vector_layouts():
    s = data.load("digits")
    flat = data.reshape_to(s, (64,))
    assert flat.train.x.shape == (1259, 64) and flat.test.x.shape == (269, 64)
    np.testing.assert_array_equal(flat.train.x.reshape(-1, 1, 8, 8), s.train.x)
    back = data.check_against(flat, (1, 8, 8), 10)
    np.testing.assert_array_equal(back.val.x, s.val.x)
    with pytest.raises(DataError) as err:
        data.check_against(s, (3, 32, 32), 10)
    assert str(err.value) == ("data digits gives samples of shape 1x8x8 (64 values) but the spec's "
                              "input is 3x32x32 (3072 values)")


def test_head_width_must_match_the_classes():
    s = data.load("digits")
    with pytest.raises(DataError) as err:
        data.check_against(s, (64,), 5)
    assert str(err.value) == "data digits has 10 classes but the network's head gives 5 outputs"
    moons = data.load("moons")
    assert data.check_against(moons, (2,), 1) is not None            # one logit serves two classes
    data.check_against(moons, (2,), 2)
    with pytest.raises(DataError, match="2 classes but the network's head gives 3 outputs"):
        data.check_against(moons, (2,), 3)


# ---- .npz files ----------------------------------------------------------------------------------

def test_npz_round_trip_with_a_test_split_and_relative_path(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(3.0, 2.0, (40, 5)), rng.integers(0, 4, 40)
    xt, yt = rng.normal(size=(10, 5)), rng.integers(0, 4, 10)
    np.savez(tmp_path / "train.npz", x=x, y=y, x_test=xt, y_test=yt)
    s = data.load("train.npz", root=tmp_path)
    assert (s.name, s.classes, s.val) == ("train.npz", 4, None)
    assert s.mean.shape == (5,)                                        # per feature
    np.testing.assert_allclose(s.mean, x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(s.std, x.std(0), rtol=1e-5)
    np.testing.assert_allclose(s.test.x, (xt - x.mean(0)) / x.std(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(s.test.y, yt)
    same = data.load(choice("npz", path=str(tmp_path / "train.npz")))
    np.testing.assert_array_equal(same.train.x, s.train.x)


def test_npz_float_targets_are_regression(tmp_path):
    x, t = np.ones((6, 3, 4, 4), np.float32), np.linspace(0, 1, 12, dtype=np.float32).reshape(6, 2)
    x[:, 1] = 5.0
    np.savez(tmp_path / "r.npz", x=x, y=t)
    s = data.load(str(tmp_path / "r.npz"))
    assert s.classes is None and s.train.y.dtype == np.float32
    assert s.mean.tolist() == [1.0, 5.0, 1.0] and s.std.tolist() == [1.0, 1.0, 1.0]  # constant: std 1
    data.check_against(s, (3, 4, 4), 2)
    with pytest.raises(DataError, match="2 target values per sample but the network's head gives 1 output"):
        data.check_against(s, (3, 4, 4), 1)


BAD_NPZ = {
    "no y": (dict(x=np.zeros((3, 2))), "no array 'y' (found: x)"),
    "lengths": (dict(x=np.zeros((3, 2)), y=np.zeros(4, int)), "x has 3 samples but y has shape 4"),
    "negative label": (dict(x=np.zeros((3, 2)), y=np.array([0, -1, 2])), "label -1 of y[1] is out of range"),
    "label >= classes": (dict(x=np.zeros((3, 2)), y=np.array([0, 1, 3]), classes=np.array(3)),
                         "label 3 of y[2] is out of range for 3 classes (labels are 0..2)"),
    "NaN": (dict(x=np.array([[0.0, 1.0], [np.nan, 2.0], [np.nan, 0.0]]), y=np.zeros(3, int)),
            "x has 2 NaN values (the first in sample 1)"),
    "object": (dict(x=np.array([[1], "a", None], dtype=object), y=np.zeros(3, int)),
               "holds object arrays (pickled Python objects), which are never loaded"),
    "strings": (dict(x=np.array(["a", "b"]), y=np.zeros(2, int)), "x has dtype <U1; samples must be numbers"),
    "test shape": (dict(x=np.zeros((3, 2)), y=np.zeros(3, int), x_test=np.zeros((2, 3)), y_test=np.zeros(2, int)),
                   "samples of x_test are 3, those of x are 2"),
    "half a pair": (dict(x=np.zeros((3, 2)), y=np.zeros(3, int), x_val=np.zeros((2, 2))),
                    "x_val and y_val come together"),
}


@pytest.mark.parametrize("case", sorted(BAD_NPZ))
def test_broken_npz_is_a_clean_error_naming_the_file(tmp_path, case):
    arrays, message = BAD_NPZ[case]
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError) as err:
        data.load(str(path))
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)


def test_unreadable_npz_files(tmp_path):
    good = tmp_path / "good.npz"
    np.savez_compressed(good, x=np.arange(3000.0).reshape(1000, 3), y=np.zeros(1000, int))
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[:500])
    text = tmp_path / "text.npz"
    text.write_text("x,y\n1,2\n")
    npy = tmp_path / "array.npz"
    with open(npy, "wb") as f:
        np.save(f, np.zeros(3))
    for path, why in ((cut, "cannot be read as an .npz archive"), (text, "not an .npz archive"),
                      (npy, "not an .npz archive"), (tmp_path / "missing.npz", "no such file")):
        with pytest.raises(DataError) as err:
            data.load(str(path))
        assert str(err.value).startswith(f"{path}: ") and why in str(err.value), str(err.value)


# ---- MNIST / Fashion-MNIST IDX files -------------------------------------------------------------

def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX format: two zero bytes, type 0x08 (unsigned byte), the rank, big-endian sizes."""
    return bytes([0, 0, 8, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape) \
        + array.astype(np.uint8).tobytes()


def write_mnist(folder, n_train=12, n_test=5, zipped=True, names=data._IDX):
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x, y = rng.integers(0, 256, (n, 28, 28)), rng.integers(0, 10, n)
        arrays[split] = (x, y)
        for stem, a in zip(names[split], (x, y)):
            raw = idx_bytes(a)
            (folder / (stem + ".gz" * zipped)).write_bytes(gzip.compress(raw) if zipped else raw)
    return arrays


@pytest.mark.parametrize("zipped", [True, False])
def test_mnist_idx_files(tmp_path, zipped):
    arrays = write_mnist(tmp_path / "mnist", zipped=zipped)
    s = data.load(f"mnist:{tmp_path / 'mnist'}")
    (x, y), (xt, yt) = arrays["train"], arrays["test"]
    assert s.classes == 10 and s.train.x.shape == (12, 1, 28, 28) and s.test.x.shape == (5, 1, 28, 28)
    np.testing.assert_array_equal(s.train.y, y)
    pixels = x / 255.0
    assert s.mean[0] == pytest.approx(pixels.mean(), rel=1e-5) and s.std[0] == pytest.approx(pixels.std(), rel=1e-5)
    np.testing.assert_allclose(s.test.x[:, 0], (xt / 255.0 - pixels.mean()) / pixels.std(), atol=1e-5)


def test_fashion_in_torchvisions_folder_layout(tmp_path):
    write_mnist(tmp_path / "FashionMNIST" / "raw")
    s = data.load(choice("fashion", path=str(tmp_path)))
    assert s.name == "fashion" and len(s.train) == 12


def test_broken_idx_files_name_the_file(tmp_path):
    folder = tmp_path / "m"
    write_mnist(folder, zipped=False)
    images = folder / "train-images-idx3-ubyte"
    labels = folder / "train-labels-idx1-ubyte"
    good = images.read_bytes()

    def fails(message, path=images):
        with pytest.raises(DataError) as err:
            data.load(f"mnist:{folder}")
        assert str(err.value).startswith(f"{path}: ") and message in str(err.value), str(err.value)

    images.write_bytes(good[:-100])
    fails("truncated: the header says 12x28x28 = 9,408 bytes of data, the file holds 9,308")
    images.write_bytes(good[:10])
    fails("truncated inside the IDX header (10 of 16 bytes)")
    images.write_bytes(b"\x00\x00\x08\x01" + good[4:])
    fails("wrong magic number 0x00000801, expected 0x00000803")
    images.write_bytes(gzip.compress(good)[:200])
    fails("truncated or corrupt gzip data")
    images.write_bytes(good)
    y = np.arange(12) % 10
    y[7] = 11
    labels.write_bytes(idx_bytes(y))
    fails("label 11 at position 7 is out of range (0..9)", labels)
    labels.write_bytes(idx_bytes(np.zeros(11)))
    fails("11 labels for the 12 images of train-images-idx3-ubyte", labels)
    images.unlink()
    with pytest.raises(DataError, match=r"mnist: no train-images-idx3-ubyte \(or train-images-idx3-ubyte.gz\) in "):
        data.load(f"mnist:{folder}")
    with pytest.raises(DataError, match="is not a folder"):
        data.load(f"mnist:{tmp_path / 'nowhere'}")


# ---- CIFAR-10 binary batches ---------------------------------------------------------------------

def cifar_bytes(x: np.ndarray, y: np.ndarray) -> bytes:
    """Records of <1 label byte><1024 red><1024 green><1024 blue> bytes, rows first."""
    return b"".join(bytes([int(label)]) + img.astype(np.uint8).tobytes() for img, label in zip(x, y))


def write_cifar(folder, n=4):
    rng = np.random.default_rng(2)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in data._CIFAR_TRAIN + (data._CIFAR_TEST,):
        x, y = rng.integers(0, 256, (n, 3, 32, 32)), rng.integers(0, 10, n)
        (folder / name).write_bytes(cifar_bytes(x, y))
        out[name] = (x, y)
    return out


def test_cifar10_binary_batches(tmp_path):
    batches = write_cifar(tmp_path / "cifar-10-batches-bin")
    rec = bytearray((tmp_path / "cifar-10-batches-bin" / "test_batch.bin").read_bytes())
    rec[0], rec[1 + 1024 + 32 * 5 + 7] = 3, 200                  # green plane, row 5, column 7
    (tmp_path / "cifar-10-batches-bin" / "test_batch.bin").write_bytes(bytes(rec))
    s = data.load(f"cifar10:{tmp_path}")
    x = np.concatenate([batches[n][0] for n in data._CIFAR_TRAIN]) / 255.0
    assert s.train.x.shape == (20, 3, 32, 32) and s.test.y[0] == 3 and s.classes == 10
    np.testing.assert_allclose(s.mean, x.mean(axis=(0, 2, 3)), rtol=1e-5)       # per channel
    np.testing.assert_allclose(s.std, x.std(axis=(0, 2, 3)), rtol=1e-5)
    raw = s.test.x[0] * s.std[:, None, None] + s.mean[:, None, None]
    assert raw[1, 5, 7] == pytest.approx(200 / 255, abs=1e-5)


def test_broken_cifar_batches(tmp_path):
    folder = tmp_path / "c"
    write_cifar(folder)
    batch = folder / "data_batch_3.bin"
    good = batch.read_bytes()
    batch.write_bytes(good[:-5])
    with pytest.raises(DataError) as err:
        data.load(f"cifar10:{folder}")
    assert str(err.value) == (f"{batch}: 12,287 bytes is not a whole number of 3,073-byte CIFAR-10 "
                              "records (truncated, or not the binary version)")
    bad = bytearray(good)
    bad[3073] = 10
    batch.write_bytes(bytes(bad))
    with pytest.raises(DataError, match=r"data_batch_3.bin: record 1 has label 10, out of range"):
        data.load(f"cifar10:{folder}")
    batch.unlink()
    with pytest.raises(DataError, match="cifar10: no data_batch_3.bin in"):
        data.load(f"cifar10:{folder}")
    py = tmp_path / "py"
    py.mkdir()
    (py / "data_batch_1").write_bytes(b"\x80\x04pickle")
    with pytest.raises(DataError, match="pickled Python version, which is never loaded"):
        data.load(f"cifar10:{py}")


# ---- generated sets ------------------------------------------------------------------------------

def test_generated_sets_have_their_geometry():
    circles = data.load(choice("circles", noise=0, factor=0.3, samples=200))
    raw = np.concatenate([circles.train.x, circles.test.x]) * circles.std + circles.mean
    ys = np.concatenate([circles.train.y, circles.test.y])
    radius = np.hypot(raw[:, 0], raw[:, 1])
    np.testing.assert_allclose(radius, np.where(ys == 0, 1.0, 0.3), atol=1e-5)
    moons = data.load(choice("moons", noise=0, samples=100))
    raw = np.concatenate([moons.train.x, moons.test.x]) * moons.std + moons.mean
    ys = np.concatenate([moons.train.y, moons.test.y])
    centre = np.where(ys[:, None] == 0, [0.0, 0.0], [1.0, 0.5])
    np.testing.assert_allclose(np.hypot(*(raw - centre).T), 1.0, atol=1e-5)
    assert (raw[ys == 0, 1] >= -1e-6).all() and (raw[ys == 1, 1] <= 0.5 + 1e-6).all()
    spirals = data.load(choice("spirals", noise=0, classes=4, samples=400))
    raw = spirals.train.x * spirals.std + spirals.mean
    r = np.hypot(*raw.T)                                   # radius u, angle 4u + 2πk/K
    angle = np.arctan2(raw[:, 0], raw[:, 1])
    want = 4 * r + 2 * np.pi * spirals.train.y / 4
    assert np.allclose(np.angle(np.exp(1j * (angle - want))), 0, atol=1e-4)


def test_generated_sets_are_fixed_balanced_and_split():
    for name in ("spirals", "moons", "circles"):
        a, b = data.load(name, seed=0), data.load(name, seed=7)
        np.testing.assert_array_equal(a.train.x, b.train.x)             # the data ignores the seed
        counts = np.bincount(np.concatenate([a.train.y, a.test.y]))
        assert counts.sum() == 1024 and counts.max() - counts.min() <= 1
        assert len(a.test) == sum(int(c * 0.2 + 0.5) for c in counts)
        assert a.train.x.shape[1:] == (2,) and a.val is None
        np.testing.assert_allclose(a.train.x.mean(0), 0, atol=1e-5)


def test_synthetic_takes_the_spec_input_and_is_learnable():
    s = data.load(choice("synthetic", samples=600, classes=3), input_shape=(3, 6, 6))
    assert s.train.x.shape == (480, 3, 6, 6) and s.classes == 3
    means = np.stack([s.train.x[s.train.y == c].mean(0) for c in range(3)])
    guess = np.argmin(((s.test.x[:, None] - means[None]) ** 2).sum(axis=(2, 3, 4)), axis=1)
    assert 0.8 < (guess == s.test.y).mean() < 1.0                       # learnable, not trivial
    with pytest.raises(DataError, match="takes its sample shape from the spec's input"):
        data.load("synthetic")


# ---- names, batches, the schema ------------------------------------------------------------------

def test_source_names_and_errors():
    with pytest.raises(DataError) as err:
        data.load("digit")
    assert "unknown data source 'digit'" in str(err.value) and "digits" in str(err.value)
    for text in ("mnist:", "mnist", " MNIST: "):
        with pytest.raises(DataError) as err:
            data.load(text)
        assert str(err.value) == ('data mnist needs a path: `mnist:~/data/mnist` on the command line, '
                                  '`data mnist("~/data/mnist")` in a spec')
    with pytest.raises(DataError, match=r"unknown data source 'mnistt' \(did you mean 'mnist'\?\)"):
        data.load("mnistt:/data")
    with pytest.raises(DataError, match="noise must be zero or positive"):
        data.load(choice("moons", noise=-1.0))


def test_every_data_choice_has_a_source():
    assert set(config.DATA) == set(data._SOURCES)


@pytest.mark.parametrize("name", ["digits", "spirals", "moons", "circles", "synthetic"])
def test_facts_agree_with_the_loaded_data(name):
    f = data.facts(name)
    s = data.load(name, input_shape=(4, 3))
    assert f.samples == len(s.train) + len(s.val or ()) + len(s.test) and f.classes == s.classes
    assert f.sample_shape == (s.train.sample_shape if name != "synthetic" else None)
    assert data.facts(f"mnist:{ROOT}") == data.Facts(70000, 10, (1, 28, 28))


def test_batches_cover_the_permutation():
    s = data.load("moons")
    order = data.permutation(len(s.train), np.random.default_rng(5))
    got = list(data.batches(s.train, 100, order))
    n = len(s.train)
    assert n == 820 and [len(b[0]) for b in got] == [100] * 8 + [20]
    np.testing.assert_array_equal(np.concatenate([b[1] for b in got]), s.train.y[order])
    assert len(list(data.batches(s.train, 100, order, drop_last=True))) == 8
    np.testing.assert_array_equal(order, data.permutation(len(s.train), np.random.default_rng(5)))


def test_the_digits_ship_in_the_wheel_and_no_torch_is_imported():
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "digits.npz" in conf["package-data"]["nnspec.train"]
    code = ("import sys, nnspec.train.data as d, nnspec.train.augment; d.load('digits'); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_docs_examples_run():
    """The >>> examples of docs/data.md and of the two modules' docstrings are doctests."""
    import doctest

    from nnspec.train import augment
    for module in (data, augment):
        result = doctest.testmod(module, verbose=False, report=False)
        assert result.attempted and not result.failed, module.__name__
    import re
    text = (ROOT / "docs" / "data.md").read_text("utf-8")
    bodies = re.findall(r"^```python\n(.*?)^```", text, re.DOTALL | re.MULTILINE)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for body in bodies:
        runner.run(doctest.DocTestParser().get_doctest(body, {}, "docs/data.md", "docs/data.md", 0))
    assert len(bodies) == 2 and runner.tries >= 8 and runner.failures == 0


def test_docs_describe_every_source_and_augment():
    from nnspec.train import augment
    text = (ROOT / "docs" / "data.md").read_text("utf-8")
    for name in list(config.DATA) + list(augment.AUGMENTS):
        assert f"`{name}" in text or f"data {name}" in text, name
    for fact in ("1,259 train / 269 validation / 269 test", "PCG64(1797)", "CC BY 4.0"):
        assert fact in text


# ---- hostile bytes: a DataError or data, never another exception ----------------------------------

HEADERS = st.sampled_from([b"", b"\x00\x00\x08\x03", b"\x00\x00\x08\x01", b"\x1f\x8b", b"PK\x03\x04"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(head=HEADERS, body=st.binary(max_size=120), zipped=st.booleans())
def test_random_bytes_never_escape_as_another_exception(tmp_path, head, body, zipped):
    blob = gzip.compress(head + body) if zipped else head + body
    path = tmp_path / "blob.npz"
    path.write_bytes(blob)
    for read in (lambda: data.read_idx(path, 3), lambda: data.read_idx(path, 1),
                 lambda: data.read_cifar(path), lambda: data.load(str(path))):
        try:
            read()
        except DataError as err:
            assert str(err).startswith(f"{path}: ")


def test_every_truncation_of_an_npz_is_a_clean_error(tmp_path):
    good = tmp_path / "good.npz"
    np.savez_compressed(good, x=np.arange(60.0).reshape(20, 3), y=np.arange(20) % 3)
    whole = good.read_bytes()
    cut = tmp_path / "cut.npz"
    for n in range(0, len(whole), 7):
        cut.write_bytes(whole[:n])
        with pytest.raises(DataError, match="cut.npz: "):
            data.load(str(cut))
