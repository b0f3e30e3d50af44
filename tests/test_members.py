"""Cross-validation (`folds K`), bagging (`--bootstrap M`), snapshot ensembles (`snapshots M`)
and `nnspec evaluate --weights a b c`, on the embedded digits: stratified folds, mean ± std
from the per-fold numbers, a killed fold that resumes alone, bagged and snapshot ensembles
checked against the mean of the members' probabilities computed here with torch."""

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
from nnspec.train import members  # noqa: E402
from nnspec.train import data  # noqa: E402
from nnspec.train.loop import Options, TrainError  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

TINY = """network tiny(classes = 10)
input 64
fc1: linear(24) relu
fc2: linear(classes)
train {{
  data digits
  optimizer adam(lr=1e-2)
  batch 100
  epochs {epochs}
  seed 3
  health off
{extra}}}
"""


def tiny(epochs=2, extra=""):
    return nnspec.loads(TINY.format(epochs=epochs, extra=extra), file="tiny.nn")


def softmax_of(spec, weights_file, x):
    """Class probabilities of a checkpoint, computed here: nnspec.compile + torch.softmax."""
    model = nnspec.compile(spec)
    arrays = checkpoint.load(weights_file)
    model.load_state_dict({k[6:]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith("model/")})
    model.eval()
    with torch.no_grad():
        return torch.softmax(model(torch.from_numpy(x.reshape(len(x), -1))).double(), dim=1).numpy()


# ---- folds ---------------------------------------------------------------------------------------

def test_folds_are_stratified_and_partition_the_samples():
    y = np.repeat(np.arange(4), [40, 25, 13, 7])
    fold = members.fold_of(y, 5, seed=11)
    assert sorted(np.unique(fold)) == list(range(5))
    for c in range(4):                      # each class split as evenly as it can be
        per = np.bincount(fold[y == c], minlength=5)
        assert per.max() - per.min() <= 1, (c, per)
    sizes = np.bincount(fold)
    assert sizes.max() - sizes.min() <= 1
    assert (members.fold_of(y, 5, seed=11) == fold).all()
    assert (members.fold_of(y, 5, seed=12) != fold).any()


def test_cross_validation_reports_each_fold_and_their_mean_and_std(tmp_path):
    r = nnspec.train(tiny(extra="  folds 3\n"), run=tmp_path / "cv")
    s = json.loads((tmp_path / "cv" / "summary.json").read_text())
    assert s == r.summary and s["status"] == "finished" and s["kind"] == "folds" and s["count"] == 3
    folds = s["members"]
    # the digits' 1,528 non-test samples, every one held out exactly once
    assert sum(f["held_out"] for f in folds) == 1528
    assert all(f["samples"] + f["held_out"] == 1528 for f in folds)
    # stratified: each fold trains on (K-1)/K of every class, to within a sample per fold
    counts = np.array([f["class_counts"] for f in folds])
    assert (counts.max(axis=0) - counts.min(axis=0) <= 1).all()
    # per-fold seeds derived from the run seed, each its own; each fold a normal run
    seeds = [f["seed"] for f in folds]
    assert seeds == [members.member_seed(3, "folds", k) for k in (1, 2, 3)] and len(set(seeds)) == 3
    for k, f in enumerate(folds, 1):
        manifest = json.loads((tmp_path / "cv" / f"fold-{k}" / "manifest.json").read_text())
        assert manifest["status"] == "finished" and manifest["seed"] == f["seed"]
        assert f"fold {k} of 3" in manifest["data"]
    for key in ("val_accuracy", "val_loss", "test_accuracy"):
        values = [f[key] for f in folds]
        assert s["mean_std"][key]["mean"] == pytest.approx(sum(values) / 3)
        assert s["mean_std"][key]["std"] == pytest.approx(
            (sum((v - sum(values) / 3) ** 2 for v in values) / 3) ** 0.5)
    assert all(0.8 < f["val_accuracy"] <= 1 for f in folds)
    text = members.table(s)
    assert "mean ± std" in text and f"{s['mean_std']['val_accuracy']['mean']:.4f} ± " in text


def test_cross_validation_runs_on_the_numpy_backend_with_the_same_numbers(tmp_path):
    a = nnspec.train(tiny(extra="  folds 2\n"), run=tmp_path / "t")
    b = nnspec.train(tiny(extra="  folds 2\n"), run=tmp_path / "n", backend="numpy")
    for x, y in zip(a.summary["members"], b.summary["members"]):
        assert x["val_accuracy"] == pytest.approx(y["val_accuracy"], abs=2 / 764)


def test_a_changed_rerun_is_refused(tmp_path):
    nnspec.train(tiny(epochs=1), run=tmp_path / "cv", folds=2)
    with pytest.raises(TrainError, match="was started with count 2, now 3"):
        nnspec.train(tiny(epochs=1), run=tmp_path / "cv", folds=3)
    with pytest.raises(TrainError, match="choose one"):
        nnspec.train(tiny(epochs=1), run=tmp_path / "x", folds=2, bootstrap=2)


def _cli(*argv):
    return [sys.executable, "-m", "nnspec", *map(str, argv)]


@pytest.mark.slow
def test_a_killed_fold_resumes_alone_and_finished_folds_are_not_retrained(tmp_path):
    spec = tmp_path / "cv.nn"
    spec.write_text(TINY.format(epochs=25, extra="  folds 3\n"))
    run = tmp_path / "cv"
    argv = _cli("train", spec, "--run", run, "--checkpoint-every", 1)
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        manifest = run / "fold-2" / "manifest.json"
        deadline = time.time() + 120
        while time.time() < deadline:        # kill it in the middle of fold 2
            try:
                m = json.loads(manifest.read_text())
            except (OSError, ValueError):
                m = {}
            if m.get("status") == "running" and m.get("step", 0) >= 30:
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed_at = json.loads(manifest.read_text())["step"]
    assert 30 <= killed_at < 275 and not (run / "fold-2" / "result.json").exists()
    assert not (run / "fold-3").exists()
    fold1 = {p.name: p.read_bytes() for p in (run / "fold-1").iterdir()}
    again = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "fold 1/3 (seed" in again.stdout and "finished earlier, not retrained" in again.stdout
    assert f"resuming {run / 'fold-2'}" in again.stdout
    assert {p.name: p.read_bytes() for p in (run / "fold-1").iterdir()} == fold1   # untouched
    events = [json.loads(x)["event"] for x in (run / "fold-2" / "log.jsonl").read_text().splitlines()]
    assert events.count("start") == 1 and events.count("resume") == 1
    # exact resume: the folds end where an uninterrupted run ends
    whole = nnspec.train(nnspec.load(spec), run=tmp_path / "whole")
    got = json.loads((run / "summary.json").read_text())
    for a, b in zip(got["members"], whole.summary["members"]):
        assert (a["val_loss"], a["val_accuracy"], a["test_accuracy"]) == \
            (b["val_loss"], b["val_accuracy"], b["test_accuracy"])


# ---- bagging -------------------------------------------------------------------------------------

def test_bagging_trains_on_resamples_and_scores_their_ensemble(tmp_path):
    r = nnspec.train(tiny(epochs=3), run=tmp_path / "bag", bootstrap=3)
    s = r.summary
    assert s["kind"] == "bootstrap" and [m["run"] for m in s["members"]] == [
        "bootstrap-1", "bootstrap-2", "bootstrap-3"]
    n = 1259
    for k, m in enumerate(s["members"], 1):
        drawn = members.resample(n, 3, k)
        assert len(drawn) == n and len(np.unique(drawn)) < n         # with replacement
        assert m["oob_samples"] == n - len(np.unique(drawn))
        assert 0.33 < m["oob_samples"] / n < 0.40                    # (1 - 1/n)^n ≈ 0.368
    # the bagged ensemble is the mean of the members' probabilities, recomputed here; each
    # member sees the test images normalised as it was trained
    runner = members.Members(tiny(epochs=3), Options(bootstrap=3), None)
    pool = runner._pool()
    probs = []
    for k in (1, 2, 3):
        test = runner.member_splits(pool, k).test
        probs.append(softmax_of(tiny(epochs=3), tmp_path / "bag" / f"bootstrap-{k}" / "last.safetensors", test.x))
    y = test.y
    bag = s["bagging"]["test"]
    for p, m in zip(probs, bag["models"]):
        assert m["accuracy"] == pytest.approx(float((p.argmax(1) == y).mean()))
    mean = np.mean(probs, axis=0)
    assert bag["ensemble"]["accuracy"] == pytest.approx(float((mean.argmax(1) == y).mean()))
    assert bag["ensemble"]["nll"] == pytest.approx(float(-np.log(mean[np.arange(len(y)), y]).mean()), rel=1e-5)
    # the effect on the test images: the bag is at least as accurate as its best member, and
    # its log loss below the members' mean
    assert bag["ensemble"]["accuracy"] >= max(m["accuracy"] for m in bag["models"]) == bag["best_member"]
    assert bag["ensemble"]["nll"] < np.mean([m["nll"] for m in bag["models"]])
    assert "bagged ensemble on the test split" in members.table(s)


# ---- snapshot ensembles --------------------------------------------------------------------------

SNAP = """network snap(classes = 10)
input 64
fc1: linear(256) relu
drop: dropout(0.3)
fc2: linear(classes)
train {
  data digits
  optimizer sgd(lr=0.2, momentum=0.9)
  schedule restarts(period=4)
  snapshots 3
  batch 32
  epochs 12
  seed 0
  health off
}
"""


@pytest.mark.parametrize("backend", ["torch", "numpy"])
def test_the_snapshot_ensemble_is_at_least_as_accurate_as_its_best_snapshot(tmp_path, backend):
    spec = nnspec.loads(SNAP, file="snap.nn")
    r = nnspec.train(spec, run=tmp_path / "s", backend=backend)
    snap = r.snapshots
    assert snap["cycles"] == [1, 2, 3] and r.report()["snapshots"] == snap
    for i, epoch in zip((1, 2, 3), (4, 8, 12)):       # one snapshot at the end of each cycle
        with checkpoint.open(tmp_path / "s" / f"snapshot-{i}.safetensors") as f:
            assert json.loads(f.metadata["nnspec.trainer"])["epoch"] == epoch
    splits = snap["splits"]
    # on the validation and test images together (538 samples)
    correct = sum(v["ensemble"]["accuracy"] * v["samples"] for v in splits.values())
    best = max(sum(v["models"][i]["accuracy"] * v["samples"] for v in splits.values()) for i in range(3))
    assert round(correct) >= round(best)
    # recomputed from the snapshot files with torch
    test = data.load("digits").test
    probs = [softmax_of(spec, tmp_path / "s" / f"snapshot-{i}.safetensors", test.x) for i in (1, 2, 3)]
    assert splits["test"]["ensemble"]["accuracy"] == pytest.approx(
        float((np.mean(probs, 0).argmax(1) == test.y).mean()))


def test_snapshots_need_the_restarts_schedule():
    with pytest.raises(nnspec.SpecError) as err:
        nnspec.loads(SNAP.replace("  schedule restarts(period=4)\n", ""), file="snap.nn")
    text = err.value.render()
    assert "NN030" in text and "the schedule has no restarts" in text and "restarts(period=" in text


# ---- nnspec evaluate --weights a b c -------------------------------------------------------------

def test_evaluate_several_weights_shows_each_model_and_their_ensemble(tmp_path, capsys):
    from nnspec.cli import main
    spec_file = tmp_path / "tiny.nn"
    spec_file.write_text(TINY.format(epochs=2, extra=""))
    files = []
    for seed in (1, 2, 3):
        nnspec.train(nnspec.load(spec_file), run=tmp_path / f"r{seed}", seed=seed)
        files.append(tmp_path / f"r{seed}" / "last.safetensors")
    capsys.readouterr()
    assert main(["evaluate", str(spec_file), "--weights", *map(str, files), "--format", "json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    test = data.load("digits").test
    probs = [softmax_of(nnspec.load(spec_file), f, test.x) for f in files]
    mean = np.mean(probs, 0)
    assert ev["accuracy"] == pytest.approx(float((mean.argmax(1) == test.y).mean()))
    assert [m["accuracy"] for m in ev["models"]] == pytest.approx(
        [float((p.argmax(1) == test.y).mean()) for p in probs])
    recall = [float((mean.argmax(1)[test.y == c] == c).mean()) for c in range(10)]
    assert ev["per_class_recall"] == pytest.approx(recall)
    assert main(["evaluate", str(spec_file), "--weights", *map(str, files), "--backend", "numpy"]) == 0
    text = capsys.readouterr().out
    assert "ensemble" in text and "per-class recall" in text and str(files[0]) in text
    # weights of another network: one clear line naming the file
    other = tmp_path / "other.nn"
    other.write_text(TINY.format(epochs=1, extra="").replace("linear(24)", "linear(12)"))
    assert main(["evaluate", str(other), "--weights", str(files[0]), str(files[1])]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"{files[0]}: does not fit" in err and "fc1.weight of shape (24, 64)" in err


def test_cli_refuses_what_cannot_combine(tmp_path, capsys):
    from nnspec.cli import main
    spec = str(ROOT / "examples" / "experiments" / "digits_mlp.nn")
    with pytest.raises(SystemExit) as exit_:
        main(["train", spec, "--folds", "1"])
    assert exit_.value.code == 2 and "expected an integer from 2" in capsys.readouterr().err
    assert main(["train", spec, "--folds", "2", "--plot", str(tmp_path / "p.png")]) == 2
    assert "does not combine with folds" in capsys.readouterr().err
    assert main(["train", spec, "--folds", "2", "--bootstrap", "2", "--run", str(tmp_path / "r")]) == 1
    assert "choose one" in capsys.readouterr().err
