"""`nnspec train` and `nnspec evaluate` end to end, on the embedded digits: accuracy, exact
resume (mid-epoch, every optimizer and schedule), interrupts, early stopping, transfer
learning, reports, plots and clean errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import nnspec  # noqa: E402
from nnspec import checkpoint  # noqa: E402
from nnspec.train.loop import TrainError  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

TINY = """network tiny(classes = 10)
input 64
fc1: linear(24) relu
drop: dropout(0.2)
fc2: linear(classes)
train {{
  data digits
  loss cross_entropy
  {optimizer}
  schedule {schedule}
  batch 100
  epochs {epochs}
  seed 3
{extra}}}
"""


def tiny(optimizer="optimizer adam(lr=1e-2)", schedule="constant", epochs=3, extra="") -> nnspec.Spec:
    return nnspec.loads(TINY.format(optimizer=optimizer, schedule=schedule, epochs=epochs, extra=extra),
                        file="tiny.nn")


def weights(result) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in result.model.state_dict().items()}


def test_the_digits_mlp_learns_and_reports(tmp_path):
    r = nnspec.train("specs/mlp_digits.nn", epochs=6, run=tmp_path / "run")
    assert r.test_accuracy > 0.9
    rep = r.report()
    assert set(rep) >= {"backend", "epochs", "best_epoch", "train_loss", "val_loss", "val_accuracy",
                        "test_accuracy", "seconds", "history", "health"}
    assert [h["epoch"] for h in rep["history"]] == list(range(1, 7))
    assert rep["history"][-1]["train_loss"] < rep["history"][0]["train_loss"]
    run = tmp_path / "run"
    assert {"manifest.json", "last.safetensors", "best.safetensors", "log.jsonl"} <= {p.name for p in run.iterdir()}
    events = [json.loads(line)["event"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert events[0] == "start" and events[-1] == "end" and events.count("epoch") == 6


PAIRS = [
    ("optimizer sgd(lr=0.1, momentum=0.9, nesterov=true)", "step(every=1, gamma=0.5)"),
    ("optimizer sgd(lr=0.1, momentum=0.9, dampening=0.1)", "multistep(milestones=(1, 2))"),
    ("optimizer adagrad(lr=0.05)", "exponential(gamma=0.7)"),
    ("optimizer rmsprop(lr=0.003, momentum=0.5)", "inv(k=0.5)"),
    ("optimizer adam(lr=0.01)", "warmup(epochs=1), cosine"),
    ("optimizer adamw(lr=0.01, weight_decay=0.1)", "restarts(period=1, mult=2)"),
]


@pytest.mark.parametrize("optimizer, schedule", PAIRS)
def test_resume_mid_epoch_is_bitwise_exact(tmp_path, optimizer, schedule):
    extra = "  clip norm=1.0\n  l1 1e-5\n  l2 1e-4\n  weight_decay 1e-4\n  augment noise(std=0.05)\n"
    whole = nnspec.train(tiny(optimizer, schedule, extra=extra), run=tmp_path / "a")
    # 11 steps per epoch (1,078 training samples, batch 100): stop in the middle of epoch 2
    part = nnspec.train(tiny(optimizer, schedule, extra=extra), run=tmp_path / "b", max_steps=16)
    assert part.stopped == "max_steps"
    rest = nnspec.train(tiny(optimizer, schedule, extra=extra), run=tmp_path / "b", resume=True)
    a, b = weights(whole), weights(rest)
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    assert [h["train_loss"] for h in whole.history] == [h["train_loss"] for h in rest.history]


def test_resume_refuses_a_changed_architecture_and_names_the_line(tmp_path):
    nnspec.train(tiny(epochs=1), run=tmp_path / "r", max_steps=3)
    changed = nnspec.loads(TINY.format(optimizer="optimizer adam", schedule="constant", epochs=2, extra="")
                           .replace("linear(24)", "linear(32)"), file="tiny.nn")
    with pytest.raises(TrainError) as e:
        nnspec.train(changed, run=tmp_path / "r", resume=True)
    assert "tiny.nn:3" in str(e.value) and "fc1" in str(e.value)


def test_a_new_run_refuses_a_used_directory_and_resume_needs_a_run(tmp_path):
    nnspec.train(tiny(epochs=1), run=tmp_path / "r", max_steps=2)
    with pytest.raises(TrainError, match="already holds a run"):
        nnspec.train(tiny(epochs=1), run=tmp_path / "r")
    with pytest.raises(TrainError, match="no manifest.json"):
        nnspec.train(tiny(epochs=1), run=tmp_path / "empty", resume=True)


def test_early_stopping_restores_the_best_weights(tmp_path):
    # a rate that overshoots after the first epochs: validation loss stops improving
    spec = tiny("optimizer sgd(lr=2.0, momentum=0.9)", epochs=12,
                extra="  validation 0.2\n  early_stopping patience=2\n")
    r = nnspec.train(spec, run=tmp_path / "r")
    assert r.best_epoch is not None and r.epochs >= r.best_epoch
    best = checkpoint.load(tmp_path / "r" / "best.safetensors")
    for k, v in weights(r).items():
        assert np.array_equal(best[f"model/{k}"], v), k
    losses = [h["val_loss"] for h in r.history]
    assert r.best_epoch == 1 + int(np.nanargmin(losses))
    if r.stopped == "early stopping":
        assert r.epochs == r.best_epoch + 2


def test_data_that_does_not_fit_the_input_is_one_clear_error(tmp_path):
    spec = nnspec.loads("input 3x8x8\nflatten\nlinear(10)\ntrain {\n  data digits\n}\n", file="x.nn")
    with pytest.raises(TrainError, match="1x8x8.*3x8x8|64.*192"):
        nnspec.train(spec, run=tmp_path / "r")
    spec = nnspec.loads("input 64\nlinear(7)\ntrain {\n  data digits\n}\n", file="x.nn")
    with pytest.raises(TrainError, match="10 classes.*7 outputs"):
        nnspec.train(spec, run=tmp_path / "r2")


@pytest.mark.slow
def test_transfer_learning_as_the_readme_shows_it(tmp_path):
    """examples/transfer: the digits CNN trained on 0-4, its trunk loaded and frozen, a new
    5-way head trained on 5-9; frozen batch norms keep their running statistics."""
    r1 = nnspec.train("examples/transfer/trunk.nn", run=tmp_path / "trunk", epochs=4)
    assert r1.test_accuracy > 0.9
    r2 = nnspec.train("examples/transfer/head.nn", run=tmp_path / "head", epochs=4,
                      init_from=tmp_path / "trunk" / "best.safetensors")
    a, b = weights(r1), weights(r2)
    trunk = [k for k in a if k.split(".")[0] in ("conv1", "bn1", "conv2", "bn2")]
    assert any(k.endswith("running_mean") for k in trunk)
    for k in trunk:  # loaded, then neither trained nor re-estimated
        assert np.array_equal(a[k], b[k]), k
    assert r2.history[-1]["train_loss"] < r2.history[0]["train_loss"]
    # the transferred features beat the same frozen trunk at its random initialisation
    r3 = nnspec.train("examples/transfer/head.nn", run=tmp_path / "random", epochs=4)
    assert r2.test_accuracy > r3.test_accuracy + 0.1 and r2.test_accuracy > 0.5  # chance: 0.2
    log = [json.loads(line) for line in (tmp_path / "head" / "log.jsonl").read_text().splitlines()]
    init = next(e for e in log if e["event"] == "init_from")
    assert init["skipped"] == ["fc.bias", "fc.weight"] and init["new"] == ["head.bias", "head.weight"]
    assert init["frozen"] == ["bn1.bias", "bn1.weight", "bn2.bias", "bn2.weight", "conv1.weight", "conv2.weight"]


def run_cli(*argv, **kw):
    return subprocess.run([sys.executable, "-m", "nnspec", *argv], capture_output=True, text=True,
                          cwd=kw.pop("cwd", ROOT), timeout=kw.pop("timeout", 600), **kw)


@pytest.mark.slow
def test_cli_train_report_plot_and_evaluate(tmp_path):
    pytest.importorskip("matplotlib")
    run = tmp_path / "run"
    p = run_cli("train", "specs/mlp_digits.nn", "--epochs", "3", "--run", str(run),
                "--report", str(tmp_path / "r.json"), "--plot", str(tmp_path / "r.png"))
    assert p.returncode == 0, p.stderr
    assert "\r" not in p.stdout and "\x1b[" not in p.stdout
    assert [line.split()[1] for line in p.stdout.splitlines() if line.startswith("epoch ")] == ["1/3", "2/3", "3/3"]
    rep = json.loads((tmp_path / "r.json").read_text())
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    e = run_cli("evaluate", "specs/mlp_digits.nn", "--weights", str(run / "best.safetensors"),
                "--format", "json")
    assert e.returncode == 0, e.stderr
    ev = json.loads(e.stdout)
    conf = np.array(ev["confusion"])
    assert conf.sum() == ev["samples"] and conf.shape == (10, 10)
    assert ev["accuracy"] == pytest.approx(np.trace(conf) / conf.sum())
    assert ev["accuracy"] == pytest.approx(rep["test_accuracy"])
    text = run_cli("evaluate", "specs/mlp_digits.nn", "--weights", str(run / "best.safetensors"))
    assert "per-class recall" in text.stdout and "confusion matrix" in text.stdout


def test_cli_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.nn"
    bad.write_text("input 5\nlinear(10)\ntrain {\n  data digits\n}\n")
    p = run_cli("train", str(bad), "--run", str(tmp_path / "r"))
    assert p.returncode == 1 and "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
    p = run_cli("evaluate", "specs/mlp_digits.nn", "--weights", str(tmp_path / "none.safetensors"))
    assert p.returncode == 1 and "Traceback" not in p.stderr and "none.safetensors" in p.stderr
    p = run_cli("train", "specs/mlp_digits.nn", "--epochs", "0")
    assert p.returncode == 2 and "Traceback" not in p.stderr


def _wait_for(path: Path, text: str, proc, timeout=300):
    end = time.time() + timeout
    while time.time() < end:
        if path.exists() and text in path.read_text():
            return
        if proc.poll() is not None:
            raise AssertionError(f"exited early: {proc.stderr.read()}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {text!r} in {path}")


@pytest.mark.slow
def test_ctrl_c_checkpoints_prints_the_resume_command_and_resume_is_exact(tmp_path):
    spec = tmp_path / "tiny.nn"
    spec.write_text(TINY.format(optimizer="optimizer sgd(lr=0.05, momentum=0.9)", schedule="cosine",
                                epochs=40, extra=""))
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "nnspec", "train", str(spec), "--run", str(run)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(run / "log.jsonl", '"epoch": 2,', proc)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    command = err.strip().splitlines()[-1].removeprefix("resume with: ")
    assert command.startswith("nnspec train") and "--resume" in command and str(run) in command
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["epoch"] < 40
    # resume through the printed command, then compare with an uninterrupted run
    p = run_cli(*command.split()[1:], timeout=900)
    assert p.returncode == 0, p.stderr
    whole = tmp_path / "whole"
    p2 = run_cli("train", str(spec), "--run", str(whole), timeout=900)
    assert p2.returncode == 0, p2.stderr
    a, b = checkpoint.load(run / "last.safetensors"), checkpoint.load(whole / "last.safetensors")
    for k in a:
        if k.startswith("model/"):
            assert np.array_equal(a[k], b[k]), k


@pytest.mark.slow
def test_a_second_ctrl_c_exits_at_once_and_keeps_the_last_good_checkpoint(tmp_path):
    spec = tmp_path / "tiny.nn"
    spec.write_text(TINY.format(optimizer="optimizer adam", schedule="constant", epochs=400, extra=""))
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "nnspec", "train", str(spec), "--run", str(run)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(run / "log.jsonl", '"epoch": 1,', proc)
        os.kill(proc.pid, signal.SIGINT)
        os.kill(proc.pid, signal.SIGINT)
        proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    ck = checkpoint.load(run / "last.safetensors")   # a whole, readable checkpoint
    assert "model/fc1.weight" in ck


def test_the_python_example_of_docs_train_md_runs(tmp_path, monkeypatch):
    import re
    text = (ROOT / "docs" / "train.md").read_text("utf-8")
    (code,) = re.findall(r"```python\n(.*?)```", text, re.S)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "specs").symlink_to(ROOT / "specs")
    exec(compile(code, "docs/train.md", "exec"), {"__name__": "docs"})  # our own example
    assert (tmp_path / "runs" / "readme-mlp" / "best.safetensors").is_file()


LOSS_HEADS = {  # loss -> the head it expects (lint's NN2xx rules say the same)
    "cross_entropy(label_smoothing=0.1)": "", "nll": "log_softmax", "bce": "sigmoid",
    "bce_logits": "", "mse": "", "l1": "", "huber(delta=0.5)": "", "hinge(margin=1)": "",
}


@pytest.mark.parametrize("loss", sorted(LOSS_HEADS))
def test_every_loss_trains_and_equals_its_formula(tmp_path, loss):
    from nnspec.train.torch_backend import compute_loss
    head = LOSS_HEADS[loss]
    spec = nnspec.loads(f"input 64\nfc1: linear(32) relu\nfc2: linear(10) {head}\ntrain {{\n"
                        f"  data digits\n  loss {loss}\n  optimizer adam(lr=3e-3)\n  batch 64\n"
                        f"  epochs 2\n  seed 1\n}}\n", file="loss.nn")
    r = nnspec.train(spec, run=tmp_path / "r", health=False)
    assert r.history[-1]["train_loss"] < r.history[0]["train_loss"]
    if not loss.startswith("l1"):  # L1 on one-hot targets first pulls every output to 0: slow
        assert r.test_accuracy > 0.5
    # the value against the formula written out (NumPy, float64) on one batch
    rng = np.random.default_rng(0)
    out = rng.normal(size=(6, 10))
    y = rng.integers(0, 10, 6)
    name, _, rest = loss.partition("(")
    opts = {k: float(v) for k, v in (kv.split("=") for kv in rest.rstrip(")").split(",") if kv)}
    if name == "bce":
        out = 1 / (1 + np.exp(-out))
    if name == "nll":
        out = out - np.log(np.exp(out).sum(1, keepdims=True))
    got = float(compute_loss(name, opts, torch.from_numpy(out), torch.from_numpy(y)))
    onehot = np.eye(10)[y]
    logp = out - np.log(np.exp(out).sum(1, keepdims=True))
    want = {
        "cross_entropy": lambda: -(((1 - 0.1) * onehot + 0.1 / 10) * logp).sum(1).mean(),
        "nll": lambda: -out[np.arange(6), y].mean(),
        "bce": lambda: -(onehot * np.log(out) + (1 - onehot) * np.log(1 - out)).mean(),
        "bce_logits": lambda: (np.logaddexp(0, out) - onehot * out).mean(),
        "mse": lambda: ((out - onehot) ** 2).mean(),
        "l1": lambda: np.abs(out - onehot).mean(),
        "huber": lambda: np.where(np.abs(out - onehot) < 0.5, 0.5 * (out - onehot) ** 2,
                                  0.5 * (np.abs(out - onehot) - 0.25)).mean(),
        "hinge": lambda: (np.maximum(0, 1 - out[np.arange(6), y][:, None] + out)
                          * (1 - onehot)).sum(1).mean() / 10,
    }[name]()
    assert got == pytest.approx(want, rel=1e-9)


def test_every_augmentation_trains_an_image_network_and_resumes_exactly(tmp_path):
    text = """network small(classes = 10)
input 1x8x8
conv1: conv(8, 3, pad=1) relu
pool: maxpool(2)
flatten
fc: linear(classes)
train {
  data digits
  loss cross_entropy
  optimizer sgd(lr=0.05, momentum=0.9)
  batch 64
  epochs 3
  seed 2
  augment hflip, crop(pad=1), noise(std=0.05), jitter(strength=0.2), rotate(degrees=10), translate(pixels=1), cutout(size=2), mixup(alpha=0.2), cutmix(alpha=1)
}
"""
    whole = nnspec.train(nnspec.loads(text, file="aug.nn"), run=tmp_path / "a", health=False)
    assert whole.history[-1]["train_loss"] < whole.history[0]["train_loss"]
    assert whole.val_accuracy > 0.3
    nnspec.train(nnspec.loads(text, file="aug.nn"), run=tmp_path / "b", health=False, max_steps=25)
    rest = nnspec.train(nnspec.loads(text, file="aug.nn"), run=tmp_path / "b", health=False, resume=True)
    for k, v in weights(whole).items():
        assert np.array_equal(v, weights(rest)[k]), k
