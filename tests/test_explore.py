"""`nnspec histograms` and `nnspec lr-find` (nnspec/train/histograms.py, lr_find.py,
spec_edit.py): the lecture's initialisation experiments and the learning-rate range test.

The effects are measured, not restated: the CS231n ten-layer tanh net collapses with
std 0.01, saturates with std 1 and keeps its spread with Xavier; ReLU keeps it with He and
loses it with Xavier; the numbers equal a forward pass written here in plain NumPy and agree
between the two backends. The range test's suggestion trains faster than a rate 100x lower,
leaves the model and the spec as they were, and `--write` changes only the number."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
from conftest import ROOT, UPDATE

import nnspec
from nnspec import rng
from nnspec.backends.init import initial_weights
from nnspec.cli import main
from nnspec.train import histograms as H
from nnspec.train import lr_find as L
from nnspec.train.spec_edit import EditError, format_lr, with_lr

TANH10 = ROOT / "examples" / "init" / "tanh10.nn"
RELU10 = ROOT / "examples" / "init" / "relu10.nn"
MLP = ROOT / "specs" / "mlp_digits.nn"
CNN = ROOT / "specs" / "cnn_digits.nn"


def stds(h):
    return np.array([r.std for r in h.layers])


def tanh(spec=TANH10, **kw):
    return H.collect(nnspec.load(spec, **kw.pop("set", {})), synthetic=True, backend="numpy",
                     activations_only=True, **kw)


# ---- histograms: the lecture's effects ---------------------------------------------------------

def test_std_001_activations_collapse_toward_zero_with_depth():
    s = stds(tanh())
    ratios = s[1:] / s[:-1]
    # each layer multiplies the spread by about 0.01·√500 ≈ 0.22 (tanh is linear near 0)
    assert np.all((ratios > 0.15) & (ratios < 0.3)), ratios
    assert s[-1] < 1e-6 and s[-1] / s[0] < 1e-5


def test_std_1_saturates_tanh_at_plus_minus_one():
    h = tanh(set={"std": 1.0})
    edges = np.asarray(h.edges)
    near_one = np.abs((edges[:-1] + edges[1:]) / 2) > 0.95
    for r in h.layers:
        assert r.saturated > 0.85, (r.name, r.saturated)
        assert sum(c for c, n in zip(r.counts, near_one) if n) / r.counted > 0.8
        assert r.std > 0.95


def test_xavier_keeps_tanh_activations_spread_out():
    h = tanh(init="xavier")
    s = stds(h)
    assert 0.5 < s[0] < 0.7 and s[-1] / s[0] > 0.3  # the lecture's 0.63 ... 0.23: slowly shrinking
    assert np.all(np.diff(s) < 0) and np.all(s > 0.2)
    assert all(r.saturated < 0.05 for r in h.layers)


def test_relu_keeps_its_spread_with_he_and_loses_it_with_xavier():
    he = stds(tanh(RELU10))
    xavier = stds(tanh(RELU10, init="xavier"))
    assert 0.8 < he[-1] / he[0] < 1.25
    # ReLU zeroes half the variance at each layer: Xavier's 1/fan_in loses a factor √2 per layer
    assert xavier[-1] / xavier[0] < 0.1
    assert np.allclose(xavier[1:] / xavier[:-1], 1 / np.sqrt(2), rtol=0.1)
    zeros = [r.zeros for r in tanh(RELU10).layers]
    assert all(0.45 < z < 0.55 for z in zeros)


def test_numbers_equal_a_forward_pass_written_in_numpy():
    spec = nnspec.load(TANH10, depth=4, width=300)
    h = H.collect(spec, synthetic=True, backend="numpy", batch=200, seed=3, dtype="float64",
                  init="normal(std=0.05)")
    g = nnspec.load(TANH10, depth=4, width=300).graph
    import dataclasses
    g = dataclasses.replace(g, train=dataclasses.replace(g.train, init=H.parse_init("normal(std=0.05)")))
    w = initial_weights(g, 3)
    x = rng.normal(rng.stream(3, "histogram", "input"), (200, 500)).astype(np.float64)
    want = {}
    for name in ("linear", "linear_1", "linear_2", "linear_3"):
        x = x @ w[f"{name}.weight"].astype(np.float64).T + w[f"{name}.bias"]
        want[name] = x
        x = np.tanh(x)
        want["tanh" + name[len("linear"):]] = x
    edges = np.asarray(h.edges)
    assert edges[0] == -edges[-1] and len(edges) == H.BINS + 1
    for r in h.layers:
        v = want[r.name]
        assert r.mean == pytest.approx(v.mean(), rel=1e-9, abs=1e-12)
        assert r.std == pytest.approx(v.std(), rel=1e-9)
        assert r.min == pytest.approx(v.min()) and r.max == pytest.approx(v.max())
        counts, _ = np.histogram(v, edges)
        assert np.abs(np.array(r.counts) - counts).sum() <= 2
        if r.op == "tanh":
            assert r.saturated == pytest.approx(float((1 - v * v < 0.05).mean()), abs=1e-3)
        else:
            assert r.saturated is None


def test_training_mode_normalises_by_the_batch_and_dropout_passes_everything():
    h = H.collect(CNN, backend="numpy", batch=128)
    by = {r.name: r for r in h.layers}
    for bn in ("bn1", "bn2", "bn3"):  # batch statistics: the output is standardised per channel
        assert by[bn].std == pytest.approx(1.0, abs=1e-3) and abs(by[bn].mean) < 1e-5
    assert by["conv1"].std > 1.2  # in evaluation mode bn1 would have passed this spread on
    assert by["drop"].std == by["gap"].std and by["drop"].counts == by["gap"].counts
    assert h.input == "digits" and h.samples == 128


CROSS = """input 64
fc1: linear(96) hardtanh
fc2: linear(96) hardsigmoid
fc3: linear(32) tanh
drop: dropout(0.5)
bn: batchnorm relu
out: linear(10)
train {
  init normal(std=0.3)
  seed 5
}
"""


@pytest.mark.parametrize("spec, dtype, tol", [(CROSS, "float64", 1e-9), (CROSS, "float32", 2e-4),
                                              (CNN, "float64", 1e-9)])
def test_both_backends_give_the_same_numbers(spec, dtype, tol):
    pytest.importorskip("torch")
    spec = nnspec.loads(spec) if isinstance(spec, str) else nnspec.load(spec)
    kw = dict(synthetic=spec.graph.train.data is None, batch=96, dtype=dtype)
    if spec.graph.input.shape == (64,):
        kw["synthetic"] = True
    a = H.collect(spec, backend="numpy", **kw)
    b = H.collect(spec, backend="torch", **kw)
    assert a.edges == b.edges
    for x, y in zip(a.layers, b.layers):
        assert x.name == y.name
        for k in ("mean", "std", "min", "max"):
            assert getattr(x, k) == pytest.approx(getattr(y, k), rel=tol, abs=tol), (x.name, k)
        assert x.zeros == pytest.approx(y.zeros, abs=1e-3)
        assert (x.saturated is None) == (y.saturated is None)
        if x.saturated is not None:
            assert x.saturated == pytest.approx(y.saturated, abs=2e-3), x.name
        assert np.abs(np.array(x.counts) - np.array(y.counts)).sum() <= (0 if dtype == "float64" else 8)


def test_hardtanh_saturation_is_measured_on_its_input():
    h = H.collect(nnspec.loads(CROSS), synthetic=True, backend="numpy", batch=64, layers=("fc1_hardtanh",))
    assert [r.name for r in h.layers] == ["fc1_hardtanh"]
    r = h.layers[0]
    assert 0.3 < r.saturated < 1  # std(pre-activation) ≈ 0.3·√64 = 2.4: most beyond ±1
    assert r.saturated == pytest.approx(sum(r.counts[:1] + r.counts[-1:]) / r.counted, abs=0.02)


# ---- histograms: the command ---------------------------------------------------------------------

def test_cli_json_png_and_the_table(tmp_path, capsys):
    out = tmp_path / "acts.png"
    assert main(["histograms", str(TANH10), "--synthetic", "--backend", "numpy", "--set", "depth=3",
                 "--format", "json", "-o", str(out)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in doc["layers"]] == ["linear", "tanh", "linear_1", "tanh_1", "linear_2", "tanh_2"]
    for key in ("mean", "std", "zero_fraction", "saturated_fraction", "counts"):
        assert key in doc["layers"][0]
    assert len(doc["edges"]) == len(doc["layers"][0]["counts"]) + 1
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["histograms", str(TANH10), "--synthetic", "--backend", "numpy", "--set", "depth=2",
                 "--activations", "--format", "text"]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[1].split() == list(H.HEADER) and "tanh_1" in text and "linear" not in text.split("\n", 2)[2]


@pytest.mark.parametrize("argv, code, message", [
    (["--init", "xavir"], 1, "unknown init 'xavir' (did you mean 'xavier'?)"),
    (["--range", "1,0"], 2, "--range expects finite LO < HI"),
    (["--layers", "nothing*"], 1, "no layer matches nothing*"),
    (["-o", "acts.txt"], 2, "give a .png, .svg or .pdf file name"),
])
def test_cli_refuses_cleanly(argv, code, message, capsys):
    assert main(["histograms", str(TANH10), "--synthetic", "--backend", "numpy", *argv]) == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_without_data_asks_for_synthetic(capsys, tmp_path):
    assert main(["histograms", str(TANH10), "--backend", "numpy"]) == 1
    assert "--synthetic" in capsys.readouterr().err
    assert main(["histograms", str(tmp_path), "--synthetic"]) == 1
    assert "Is a directory" in capsys.readouterr().err


# ---- the learning-rate finder ---------------------------------------------------------------------

def test_suggestions_on_a_known_curve():
    lrs = L.rates(1e-6, 1.0, 121)
    x = np.log10(lrs)
    # falls fastest at 1e-3 (a logistic step in log lr), bottoms out near 1e-1, then rises
    curve = 2.0 - 1.5 / (1 + np.exp(-3 * (x + 3))) + np.where(x > -1, 8 * (x + 1) ** 2, 0)
    picks, minimum = L.suggest(lrs, curve)
    assert picks["steepest"] == pytest.approx(1e-3, rel=0.15)
    assert minimum == pytest.approx(lrs[np.argmin(curve)]) and picks["min10"] == pytest.approx(minimum / 10)
    assert L.suggest(lrs, np.linspace(1, 5, 121))[0] == {"min10": None, "steepest": None}  # only rises


def _trained_loss(lr: float, tmp_path) -> float:
    r = nnspec.train(MLP, lr=lr, epochs=1, backend="numpy", health=False, run=tmp_path / f"r{lr:g}")
    return r.train_loss


def test_the_suggestion_trains_faster_than_a_much_lower_rate(tmp_path):
    s = L.find_lr(MLP, backend="numpy")
    lr = s.suggestions["min10"]
    assert 1e-4 < lr < 1e-1 and 1e-4 < s.suggestions["steepest"] < 1e-1
    assert s.stopped == "diverged" and s.losses[-1] > 4 * min(s.smoothed)
    assert s.smoothed == tuple(L.smooth(s.losses))
    assert np.allclose(np.log(np.diff(np.log(s.lrs))), np.log(np.log(1e8) / 99))  # geometric steps
    assert _trained_loss(lr, tmp_path) < 0.5 * _trained_loss(lr / 100, tmp_path)


def test_the_sweep_changes_nothing_and_repeats_itself():
    from nnspec.train.loop import Options, Trainer
    t = Trainer(nnspec.load(CNN), Options(backend="numpy"))
    splits, b = t._data(), t._backend()
    b.step(splits.train.x[:32], splits.train.y[:32], 1e-3)  # a backend mid-training, with Adam slots
    before = b.state()
    first = L.sweep(b, splits.train, batch=32, seed=0, steps=20)
    after = b.state()
    assert before.keys() == after.keys()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert L.sweep(b, splits.train, batch=32, seed=0, steps=20) == first
    assert L.sweep(b, splits.train, batch=32, seed=1, steps=20)[1] != first[1]


def test_the_sweep_restores_a_torch_backend_and_agrees_with_numpy():
    pytest.importorskip("torch")
    from nnspec.train.loop import Options, Trainer
    t = Trainer(nnspec.load(MLP), Options(backend="torch"))
    splits, b = t._data(), t._backend()
    before = b.state()
    lrs, losses, _, _ = L.sweep(b, splits.train, batch=32, seed=0, steps=40, end=1e-2)
    after = b.state()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    import torch
    torch.manual_seed(123)
    want = torch.rand(3)
    torch.manual_seed(123)
    L.find_lr(MLP, backend="torch", steps=5)
    assert torch.equal(torch.rand(3), want)  # the caller's generator is where it was
    t2 = Trainer(nnspec.load(MLP), Options(backend="numpy"))
    _, theirs, _, _ = L.sweep(t2._backend(), splits.train, batch=32, seed=0, steps=40, end=1e-2)
    assert np.allclose(losses, theirs, rtol=1e-4)


WRITE_CASES = {
    "kwarg": ("  optimizer   adam(beta1=0.85, lr=1e-3 , eps=1e-8)   # tuned by hand\n", "lr=1e-3 ", "lr=0.0055 "),
    "positional": ("  optimizer sgd(0.1, 0.9)\n", "sgd(0.1,", "sgd(0.0055,"),
    "bare": ("  optimizer adam  # defaults\n", "adam  #", "adam(lr=0.0055)  #"),
    "no lr": ("  optimizer sgd( momentum=0.9 )\n", "sgd( momentum", "sgd( lr=0.0055, momentum"),
    "empty": ("  optimizer rmsprop()\n", "rmsprop()", "rmsprop(lr=0.0055)"),
}
SPEC_HEAD = "# a spec whose bytes must survive\nnetwork w(classes = 10)\ninput 64\n\nfc: linear(classes)\t# head\n\ntrain {\n"
SPEC_TAIL = "  data digits\n  batch 32   # small\n}\n# end\n"


@pytest.mark.parametrize("case", sorted(WRITE_CASES))
def test_with_lr_replaces_only_the_number(case):
    line, old, new = WRITE_CASES[case]
    text = SPEC_HEAD + line + SPEC_TAIL
    out = with_lr(nnspec.loads(text, "w.nn").graph, 0.005512)
    assert out == text.replace(old, new, 1)
    assert nnspec.loads(out).graph.train.optimizer.options["lr"] == 0.0055


def test_with_lr_golden(golden):
    """What --write makes of each way of writing the optimizer, as a person reads it."""
    parts = []
    for case in sorted(WRITE_CASES) + ["no optimizer"]:
        line = WRITE_CASES[case][0] if case in WRITE_CASES else ""
        text = SPEC_HEAD + line + SPEC_TAIL
        parts.append(f"==== {case}\n" + with_lr(nnspec.loads(text, "w.nn").graph, 0.005512))
    golden("explore/write_lr", "".join(parts))


def test_with_lr_adds_an_optimizer_line_where_there_is_none():
    text = SPEC_HEAD + SPEC_TAIL
    out = with_lr(nnspec.loads(text).graph, 2.5e-5)
    assert out == SPEC_HEAD + "  data digits\n  batch 32   # small\n  optimizer sgd(lr=2.5e-5)\n}\n# end\n"
    crlf = text.replace("\n", "\r\n")  # Windows line ends stay Windows line ends
    assert with_lr(nnspec.loads(crlf).graph, 2.5e-5) == out.replace("\n", "\r\n")
    kwarg = (SPEC_HEAD + WRITE_CASES["kwarg"][0] + SPEC_TAIL).replace("\n", "\r\n")
    assert with_lr(nnspec.loads(kwarg).graph, 0.0055) == kwarg.replace("lr=1e-3 ", "lr=0.0055 ")


@pytest.mark.parametrize("text, message", [
    ("network w(base = 0.1)\ninput 4\nlinear(2)\ntrain {\n  optimizer adam(lr=base * 2)\n}\n",
     "the learning rate is an expression"),
    ("input 4\nlinear(2)\n", "has no train section"),
])
def test_with_lr_refuses_what_it_cannot_edit_safely(text, message):
    with pytest.raises(EditError, match=message):
        with_lr(nnspec.loads(text).graph, 0.01)


def test_format_lr():
    assert [format_lr(v) for v in (0.0055123, 1.234e-5, 0.1, 2.0)] == ["0.0055", "1.2e-5", "0.1", "2"]


def test_cli_write_changes_only_the_rate_and_nothing_else_without_it(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "w.nn"
    text = SPEC_HEAD + WRITE_CASES["kwarg"][0] + SPEC_TAIL
    spec.write_bytes(text.encode())
    os.chmod(spec, 0o644)
    assert main(["lr-find", str(spec), "--backend", "numpy", "--steps", "60", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert spec.read_bytes() == text.encode() and os.listdir(tmp_path) == ["w.nn"]  # no run dir
    assert len(doc["curve"]) <= 60 and set(doc["suggestions"]) == set(L.PICKS)
    assert main(["lr-find", str(spec), "--backend", "numpy", "--steps", "60", "--write",
                 "--pick", "steepest", "--format", "text"]) == 0
    err = capsys.readouterr().err
    written = re.search(r"wrote lr=(\S+) \(steepest\)", err).group(1)
    assert float(written) == pytest.approx(doc["suggestions"]["steepest"], rel=0.05)
    assert spec.read_bytes() == text.replace("lr=1e-3 ", f"lr={written} ").encode()
    assert oct(os.stat(spec).st_mode & 0o777) == "0o644" and os.listdir(tmp_path) == ["w.nn"]


def test_cli_write_refuses_standard_input(capsys):
    assert main(["lr-find", "-", "--write"]) == 2
    assert "standard input" in capsys.readouterr().err


# ---- docs/experiments.md: the outputs shown are what the commands print ----------------------------

EXPERIMENTS = ROOT / "docs" / "experiments.md"
SECTIONS = ("## Activation histograms and initialisation", "## Learning-rate finder")
OUTPUT = re.compile(r"<!-- output of: (nnspec [^>]*?) -->\n```text\n(.*?)```", re.S)


def _my_sections(text: str) -> list[tuple[int, int]]:
    spans = []
    for title in SECTIONS:
        start = text.index(title + "\n")
        nxt = text.find("\n## ", start + len(title))
        spans.append((start, nxt if nxt >= 0 else len(text)))
    return spans


def test_experiments_doc_outputs_are_what_the_commands_print(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("NO_COLOR", "1")
    text = EXPERIMENTS.read_text("utf-8")
    assert text.startswith("# Experiments from the lecture notes\n")
    pieces, at, stale = [], 0, []
    for start, end in _my_sections(text):
        for m in OUTPUT.finditer(text, start, end):
            assert main(m.group(1).split()[1:]) == 0, m.group(1)
            out = capsys.readouterr().out
            pieces += [text[at:m.start(2)], out]
            at = m.end(2)
            if out != m.group(2):
                stale.append(m.group(1))
    pieces.append(text[at:])
    assert len(pieces) >= 2 * 6 + 1
    if stale and UPDATE:
        EXPERIMENTS.write_text("".join(pieces), "utf-8")
        return
    assert not stale, (f"docs/experiments.md: the output of {stale} changed; regenerate with "
                       f"NNSPEC_UPDATE_GOLDEN=1")


def test_experiments_doc_pictures_come_from_the_script():
    import importlib.util
    path = ROOT / "docs" / "figures" / "make_explore.py"
    spec = importlib.util.spec_from_file_location("make_explore", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = EXPERIMENTS.read_text("utf-8")
    shown = set()
    for start, end in _my_sections(text):
        shown |= set(re.findall(r"\]\(figures/(explore[^)]*\.png)\)", text[start:end]))
    assert shown == {name for name, _ in module.FIGURES}
    for name, argv in module.FIGURES:
        assert (ROOT / "docs" / "figures" / name).read_bytes()[:4] == b"\x89PNG"
        # each picture is drawn by a command the doc shows
        assert " ".join(argv) in text, argv


def test_write_lr_keeps_a_byte_order_mark_and_refuses_a_changed_file(tmp_path):
    from nnspec.train.spec_edit import write_lr
    spec = tmp_path / "bom.nn"
    text = SPEC_HEAD + WRITE_CASES["empty"][0] + SPEC_TAIL
    spec.write_bytes(b"\xef\xbb\xbf" + text.encode())
    graph = nnspec.load(spec).graph
    assert write_lr(graph, 0.02) == "0.02"
    assert spec.read_bytes() == b"\xef\xbb\xbf" + text.replace("rmsprop()", "rmsprop(lr=0.02)").encode()
    with pytest.raises(EditError, match="changed while the sweep ran"):
        write_lr(graph, 0.03)  # the file no longer holds the text that was parsed


def test_the_numpy_backend_imports_neither_torch_nor_matplotlib():
    import subprocess
    import sys
    code = ("import sys; from nnspec.cli import main; "
            "main(['histograms', 'examples/init/tanh10.nn', '--synthetic', '--backend', 'numpy', "
            "'--format', 'json', '--set', 'depth=2']); "
            "main(['lr-find', 'specs/mlp_digits.nn', '--backend', 'numpy', '--format', 'json', '--steps', '5']); "
            "print('torch' in sys.modules, 'matplotlib' in sys.modules, file=sys.stderr)")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stderr.strip().splitlines()[-1] == "False False", p.stderr
