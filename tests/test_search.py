"""`nnspec search`: hyperparameter search on Optuna (nnspec/train/search.py, space.py).

Each trial is a real training run on the embedded digits (a tiny MLP, one epoch): the tests
check the study against the runs it holds, and effects the notes describe (Adam at its usual
learning rate beats plain SGD at the same rate; a huge learning rate diverges)."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT

optuna = pytest.importorskip("optuna")
pytest.importorskip("torch")

from nnspec import cli  # noqa: E402
from nnspec.train import search as S  # noqa: E402
from nnspec.train import space  # noqa: E402

TINY = """\
network tiny(classes = 10, width = 16)
input 64
fc1: linear(width) relu
fc2: linear(classes)
train {
  data digits
  loss cross_entropy
  optimizer sgd(lr=0.05)
  batch 64
  epochs 1
  seed 0
  init he
}
"""


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "tiny.nn"
    path.write_text(TINY)
    return str(path)


def search(spec, run, *flags, trials=4, capsys=None):
    code = cli.main(["search", spec, "--trials", str(trials), "--run", str(run), *flags])
    out = capsys.readouterr() if capsys is not None else None
    return code, out


def study(run, name="tiny"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{run}/study.db")


def finished(st):
    return [t for t in st.get_trials() if t.state.name in ("COMPLETE", "FAIL") and
            (t.state.name == "COMPLETE" or "failed" in t.user_attrs)]


# ---- the trial line and the space

def test_trial_line_is_the_notes_format():
    dims = space.parse(["lr=loguniform(1e-6, 1e-2)", "weight_decay=loguniform(1e-5, 10)"], {})
    r = S.TrialReport(1, 0, "complete", 0.4123, {"lr": 1.41e-4, "weight_decay": 0.479}, done=1, target=100)
    assert S.trial_line(r, dims) == "val acc 0.412, lr 1.41e-04, weight_decay 4.79e-01 (1 / 100)"
    r = S.TrialReport(1, 3, "failed", None, {"lr": 5.2, "weight_decay": 1e-3},
                      reason="non-finite loss at step 3 (loss nan)", done=4, target=100)
    assert S.trial_line(r, dims) == ("failed (non-finite loss at step 3 (loss nan)), lr 5.20e+00, "
                                     "weight_decay 1.00e-03 (4 / 100)")


def test_distributions_are_read_and_checked_against_the_schema():
    d = {x.name: x for x in space.parse(
        ["lr=loguniform(1e-6, 1e-2)", "momentum=uniform(0.5, 0.99)", "batch=16,32,64", "width=int(8, 64)",
         "optimizer=sgd,momentum,nesterov,adagrad,rmsprop,adam", "init=xavier,he", "validation=0.25"],
        {"width": 16})}
    assert (d["lr"].kind, d["lr"].low, d["lr"].high, d["lr"].role) == ("loguniform", 1e-6, 1e-2, "option")
    assert (d["momentum"].kind, d["momentum"].role) == ("uniform", "option")
    assert (d["batch"].kind, d["batch"].choices) == ("choice", (16, 32, 64))
    assert (d["width"].kind, d["width"].role, d["width"].low, d["width"].high) == ("int", "network", 8, 64)
    assert d["init"].choices == ("xavier", "he") and d["validation"].kind == "fixed"
    # the presets are the schema's SGD with momentum / Nesterov
    assert space.resolve_choice("optimizer", "nesterov").options["nesterov"] is True
    assert space.resolve_choice("optimizer", "momentum").options["momentum"] == 0.9


@pytest.mark.parametrize("value, message, hint", [
    ("lrr=loguniform(1e-5, 1)", "not a network parameter, train setting or optimizer option", "did you mean 'lr'?"),
    ("lr=loguniform(0, 1)", "needs a positive low end", "loguniform(1e-5, 1e-1)"),
    ("lr=loguniform(1, 1e-3)", "the low end 1 is not below the high end 0.001", None),
    ("lr=logunifrm(1e-5, 1)", "'logunifrm(…)' is not a distribution", "did you mean 'loguniform'?"),
    ("batch=uniform(16, 64)", "batch takes integers", "int(a, b)"),
    ("optimizer=sgd,nesterv", "unknown optimizer 'nesterv'", "did you mean 'nesterov'?"),
    ("init=xavier,hee", "unknown init 'hee'", "did you mean 'he'?"),
    ("validation=uniform(0, 2)", "must be a probability between 0 and 1, got 2", None),
    ("optimizer=sgd(momentum=0.5),adam(beta3=1)", "adam has no option 'beta3'", "did you mean 'beta2'?"),
    ("lr=loguniform(1e-3", "cannot read", "never closed"),
    ("lr", "expects NAME=VALUE", None),
])
def test_bad_ranges_are_usage_errors(spec, tmp_path, capsys, value, message, hint):
    code, out = search(spec, tmp_path / "r", "--set", value, capsys=capsys)
    assert code == 2 and "Traceback" not in out.err
    assert message in out.err and (hint is None or hint in out.err), out.err
    assert not (tmp_path / "r").exists()  # refused before anything was created


def test_an_option_no_searched_optimizer_has_is_refused(spec, tmp_path, capsys):
    code, out = search(spec, tmp_path / "r", "--set", "optimizer=adam,rmsprop", "--set",
                       "beta1=uniform(0.8, 0.95)", "--set", "nesterov=true,false", capsys=capsys)
    assert code == 1 and "has no option 'nesterov'" in out.err and "optimizers with it: sgd" in out.err


# ---- real searches

def test_random_search_is_reproducible_and_resumable(spec, tmp_path, capsys):
    flags = ["--set", "lr=loguniform(1e-4, 1)", "--set", "weight_decay=loguniform(1e-5, 1e-1)", "--seed", "3"]
    a, b = tmp_path / "a", tmp_path / "b"
    assert search(spec, a, *flags, trials=3, capsys=capsys)[0] == 0
    assert search(spec, b, *flags, trials=3, capsys=capsys)[0] == 0
    ta, tb = finished(study(a)), finished(study(b))
    assert [t.params for t in ta] == [t.params for t in tb] and [t.value for t in ta] == [t.value for t in tb]
    assert len({t.params["lr"] for t in ta}) == 3
    other = tmp_path / "c"
    search(spec, other, *flags[:-1], "4", trials=3, capsys=capsys)
    assert [t.params for t in finished(study(other))] != [t.params for t in ta]

    # the same command with more trials continues the study: 2 new trials, the first 3 kept
    code, out = search(spec, a, *flags, trials=5, capsys=capsys)
    assert code == 0
    lines = [x for x in out.out.splitlines() if x.startswith("val acc")]
    assert [x.split("(")[-1] for x in lines] == ["4 / 5)", "5 / 5)"]
    st = finished(study(a))
    assert len(st) == 5 and [t.params for t in st[:3]] == [t.params for t in ta]
    assert sorted(p.name for p in (a / "trials").iterdir()) == ["0000", "0001", "0002", "0003", "0004"]
    # and once the study is complete the same command trains nothing
    code, out = search(spec, a, *flags, trials=5, capsys=capsys)
    assert code == 0 and "val acc 0." not in out.out.split("trials:")[0] and len(finished(study(a))) == 5
    assert "5 trials: 5 complete, 0 failed" in out.out
    # a changed space is another search: refused, not mixed in
    code, out = search(spec, a, "--set", "lr=loguniform(1e-3, 1)", trials=5, capsys=capsys)
    assert code == 1 and "holds a search whose space was" in out.err


def test_each_trial_is_the_training_run_its_values_say(spec, tmp_path, capsys):
    """The objective is the best validation accuracy of an ordinary run: training the spec by
    hand with the best trial's settings gives exactly its number. And the notes' comparison:
    at the same learning rate (3e-3, one epoch of batches of 16) Adam is far ahead of plain SGD."""
    import nnspec
    run = tmp_path / "r"
    code, out = search(spec, run, "--set", "optimizer=sgd,adam", "--set", "lr=3e-3", "--set", "batch=16",
                       "--seed", "1",
                       trials=4, capsys=capsys)
    assert code == 0, out.err
    trials = finished(study(run))
    by = {}
    for t in trials:
        by.setdefault(t.params["optimizer"], []).append(t.value)
    assert set(by) == {"sgd", "adam"}, by
    assert min(by["adam"]) > max(by["sgd"]) + 0.2, by
    best = max(trials, key=lambda t: t.value)
    text = TINY.replace("optimizer sgd(lr=0.05)", f"optimizer {best.params['optimizer']}(lr=3e-3)") \
        .replace("batch 64", "batch 16")
    ref = nnspec.train(nnspec.loads(text, str(tmp_path / "ref.nn")), run=str(tmp_path / "ref"), health=False)
    assert max(h["val_accuracy"] for h in ref.history) == best.value
    assert f"optimizer {best.params['optimizer']}(lr=0.003)" in out.out  # the line to paste
    hist = [json.loads(x) for x in (run / "trials" / f"{best.number:04d}" / "log.jsonl").read_text().splitlines()]
    assert any(e["event"] == "epoch" for e in hist)  # the trial's own run directory, on disk


def test_a_diverging_trial_fails_with_its_reason_and_the_search_goes_on(spec, tmp_path, capsys):
    run = tmp_path / "r"
    code, out = search(spec, run, "--set", "lr=1e10,0.05", "--seed", "2", trials=4, capsys=capsys)
    assert code == 0
    trials = [t for t in study(run).get_trials()]
    failed = [t for t in trials if t.state.name == "FAIL"]
    done = [t for t in trials if t.state.name == "COMPLETE"]
    assert failed and done and len(failed) + len(done) == 4
    assert all(t.params["lr"] == 1e10 and t.user_attrs["failed"].startswith("non-finite loss at step")
               for t in failed)
    assert all(t.params["lr"] == 0.05 and t.value > 0.3 for t in done)
    assert "failed (non-finite loss at step" in out.out and "(non-finite loss ×" in out.out


def test_refine_narrows_the_ranges_to_the_best_k(spec, tmp_path, capsys):
    run = tmp_path / "r"
    flags = ["--set", "lr=loguniform(1e-4, 1)", "--set", "init=xavier,he,normal", "--refine", "3",
             "--refine-trials", "3"]
    code, out = search(spec, run, *flags, trials=6, capsys=capsys)
    assert code == 0, out.err
    coarse = study(run)
    best = sorted(finished(coarse), key=lambda t: -t.value)[:3]
    fine = coarse.user_attrs["fine"]
    assert sorted(fine["from"]) == sorted(t.number for t in best)
    dims = {d["name"]: space.Dim.from_json(d) for d in fine["space"]}
    lrs = [t.params["lr"] for t in best]
    assert (dims["lr"].kind, dims["lr"].low, dims["lr"].high) == ("loguniform", min(lrs), max(lrs))
    assert set(dims["init"].choices) == {t.params["init"] for t in best}
    ft = finished(study(run, "tiny.fine"))
    assert len(ft) == 3 and all(min(lrs) <= t.params["lr"] <= max(lrs) for t in ft)
    assert all(t.params["init"] in dims["init"].choices for t in ft)
    assert "fine stage from trials" in out.out and (run / "fine" / "0000" / "log.jsonl").exists()
    # resume knows the stage: the same command runs nothing more
    code, out = search(spec, run, *flags, trials=6, capsys=capsys)
    assert code == 0 and len(finished(study(run, "tiny.fine"))) == 3 and "9 trials: 9 complete" in out.out


def test_plot_and_json_summary(spec, tmp_path, capsys):
    run, png, db = tmp_path / "r", tmp_path / "s.png", tmp_path / "shared.db"
    flags = ["--set", "optimizer=sgd,momentum,adam", "--set", "lr=loguniform(1e-3, 1e-1)", "--format", "json",
             "--storage", f"sqlite:///{db}", "--study", "shared"]
    code, out = search(spec, run, *flags, "--plot", str(tmp_path / "no" / "s.png"), trials=3, capsys=capsys)
    assert code == 2 and "does not exist" in out.err and not db.exists()  # refused before any trial
    code, out = search(spec, run, *flags, "--plot", str(png), trials=3, capsys=capsys)
    assert code == 0, out.err
    assert not (run / "study.db").exists() and len(finished(optuna.load_study(
        study_name="shared", storage=f"sqlite:///{db}"))) == 3  # the study lives in the --storage database
    doc = json.loads(out.out)
    assert doc["complete"] == 3 and len(doc["trials"]) == 3 and doc["spec_lines"][0].startswith("optimizer ")
    assert doc["best"][0]["value"] == max(t["value"] for t in doc["trials"])
    assert out.err.count("val acc") == 3  # the live lines go to standard error with --format json
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 800 and height > 300
    losses = S.read_losses(doc["trials"][0]["run"])
    assert len(losses) >= 10 and all(math.isfinite(x) for _, x in losses)


def test_missing_optuna_names_the_extra(spec, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    code, out = search(spec, tmp_path / "r", "--set", "lr=loguniform(1e-4, 1)", capsys=capsys)
    assert code == 1 and 'pip install "nnspec[search]"' in out.err


# ---- several processes, killed and continued

@pytest.mark.slow
def test_jobs_2_killed_and_continued_completes_the_study(spec, tmp_path):
    run = tmp_path / "r"
    cmd = [sys.executable, "-m", "nnspec", "search", spec, "--trials", "20", "--epochs", "3", "--jobs", "2",
           "--set", "lr=loguniform(1e-4, 1)", "--set", "weight_decay=loguniform(1e-6, 1e-1)", "--run", str(run)]
    env = {**os.environ, "NO_COLOR": "1"}
    log = open(tmp_path / "first.out", "w")
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.time() + 240
    while time.time() < deadline:  # until a few trials finished
        time.sleep(1)
        if (run / "study.db").exists():
            try:
                if len(finished(study(run))) >= 3:
                    break
            except Exception:  # the study is not created yet
                pass
    workers = {t.user_attrs["pid"] for t in study(run).get_trials() if "pid" in t.user_attrs}
    p.send_signal(signal.SIGKILL)  # the coordinator dies without a word: its workers must notice
    p.wait()
    log.close()
    for pid in workers:  # they stop by themselves, checkpointing the trial they were running
        for _ in range(120):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.5)
        else:
            os.kill(pid, signal.SIGKILL)
            pytest.fail(f"worker {pid} outlived its coordinator")
    st = study(run)
    before = len(finished(st))
    assert 3 <= before < 20
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr
    st = study(run)
    done = finished(st)
    assert len(done) == 20 and all(t.state.name == "COMPLETE" for t in done)
    assert not [t for t in st.get_trials() if t.state.name in ("RUNNING", "WAITING")]
    assert "20 trials: 20 complete, 0 failed" in again.stdout
    best = max(done, key=lambda t: t.value)
    assert f"best: trial {best.number}, val acc {best.value:.3f}" in again.stdout
    # the interrupted trials were run again with the values they had drawn (one killed before
    # it drew them draws afresh)
    retried = [t for t in st.get_trials() if "retry_of" in t.user_attrs]
    assert retried and all(st.trials[t.user_attrs["retry_of"]].params.items() <= t.params.items()
                           for t in retried)


# ---- docs/experiments.md

def _make_search():
    import importlib.util
    spec = importlib.util.spec_from_file_location("make_search", ROOT / "docs" / "figures" / "make_search.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_experiments_page_shows_the_script_s_commands_outputs_and_figures():
    """docs/experiments.md shows the commands docs/figures/make_search.py runs, and what they
    printed when it ran (regenerate both with `python docs/figures/make_search.py`)."""
    mod = _make_search()
    page = (ROOT / "docs" / "experiments.md").read_text("utf-8")
    assert page.startswith("# Experiments from the lecture notes\n") and "\n## Hyperparameter search\n" in page
    for name, argv in mod.SEARCHES.items():
        assert f"<!-- make_search: command {name} -->\n    {mod.command_text(argv)}\n" in page, name
        out = (ROOT / "docs" / "figures" / f"{name}.out").read_text("utf-8")
        assert f"<!-- make_search: {name} -->\n```text\n{out}```\n<!-- end -->" in page, name
        assert re.search(r"^\d+ trials: \d+ complete", out, re.M) and "best: trial" in out
        png = ROOT / "docs" / "figures" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"](figures/{name}.png)" in page
        # the page's command is a valid search: it parses, with the ranges it claims
        args = cli.build_parser().parse_args(argv[1:])
        assert args.func.__name__ == "cmd_search" and args.trials == int(argv[argv.index("--trials") + 1])


def test_a_trial_of_a_dead_process_is_failed_and_queued_again(spec, tmp_path, capsys):
    """What the next command does with a trial whose process was killed mid-way: on this
    machine the pid is gone, so it is failed at once and queued with its values; the trial
    that runs it resumes the dead one's checkpoint and the stage ends complete."""
    import socket
    run = tmp_path / "r"
    assert search(spec, run, "--set", "lr=loguniform(1e-3, 1)", trials=1, capsys=capsys)[0] == 0
    st = study(run)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    t = st.ask({"lr": optuna.distributions.FloatDistribution(1e-3, 1, log=True)})
    t.set_user_attr("host", socket.gethostname())
    t.set_user_attr("pid", dead.pid)
    t.set_user_attr("run", str(run / "trials" / "0000"))  # a run directory with a checkpoint
    assert S.reap(st) == 1
    trials = st.get_trials()
    assert trials[t.number].state.name == "FAIL" and "failed" not in trials[t.number].user_attrs
    queued = trials[-1]
    assert queued.state.name == "WAITING" and queued.system_attrs["fixed_params"] == trials[t.number].params
    assert queued.user_attrs == {"retry_of": t.number, "resume": str(run / "trials" / "0000")}
    assert S.reap(st) == 0  # once
    # the same command, two trials now: runs the queued one, resuming that directory
    code, out = search(spec, run, "--set", "lr=loguniform(1e-3, 1)", trials=2, capsys=capsys)
    assert code == 0 and len(finished(study(run))) == 2
    assert study(run).get_trials()[-1].user_attrs["run"] == str(run / "trials" / "0000")


def test_tpe_starts_from_the_keyed_random_draws(spec, tmp_path, capsys):
    """TPE draws its first trials at random: with the sampler's start-up draws keyed like the
    random sampler's, its first trials are exactly those of a random search of the same seed."""
    flags = ["--set", "lr=loguniform(1e-3, 1)", "--set", "init=xavier,he", "--seed", "5"]
    assert search(spec, tmp_path / "t", *flags, "--sampler", "tpe", trials=2, capsys=capsys)[0] == 0
    assert search(spec, tmp_path / "r", *flags, trials=2, capsys=capsys)[0] == 0
    tpe, rnd = finished(study(tmp_path / "t")), finished(study(tmp_path / "r"))
    assert [t.params for t in tpe] == [t.params for t in rnd] and len({t.params["lr"] for t in tpe}) == 2


CLAIM = """\
import json, sys
import optuna
from nnspec.train import search as S
study = optuna.load_study(study_name="q", storage=S.storage(S.Search(spec="x.nn", dims=[], trials=1, run=sys.argv[1])))
got = []
for _ in range(10):
    t = study.ask()
    got.append(t.number)
    study.tell(t, 1.0)
print(json.dumps(got))
"""


def test_queued_trials_are_claimed_once_by_concurrent_processes(tmp_path):
    """Trials queued again (WAITING) are taken by whichever process asks first: with SQLite's
    deferred transactions two processes could both claim one and run it twice (Optuna then
    fails: "Cannot tell a COMPLETE trial"); each transaction begins IMMEDIATE, so they cannot."""
    import warnings
    run = tmp_path / "q"
    run.mkdir()
    st = optuna.create_study(study_name="q", storage=S.storage(S.Search(spec="x.nn", dims=[], trials=1, run=str(run))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(30):
            st.enqueue_trial({}, user_attrs={"i": i})
    script = tmp_path / "claim.py"
    script.write_text(CLAIM)
    procs = [subprocess.Popen([sys.executable, "-W", "ignore", str(script), str(run)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    got = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        got += json.loads(out)
    assert sorted(got) == list(range(30))  # every queued trial claimed exactly once


def test_space_docstring_example():
    import doctest
    assert doctest.testmod(space).failed == 0


def test_a_network_parameter_is_searched_through_the_spec(spec, tmp_path, capsys):
    """`width` is the spec's own parameter: each trial builds the network with its width (the
    run's manifest records the layer), and a width the spec refuses fails that trial only."""
    run = tmp_path / "r"
    code, out = search(spec, run, "--set", "width=0,8,24", "--seed", "4", trials=5, capsys=capsys)
    assert code == 0, out.err
    trials = finished(study(run))
    widths = {t.params["width"] for t in trials}
    assert widths == {0, 8, 24}, widths
    for t in trials:
        if t.params["width"] == 0:
            assert t.state.name == "FAIL" and t.user_attrs["failed"].startswith("the spec does not load with width 0")
            continue
        manifest = json.loads((run / "trials" / f"{t.number:04d}" / "manifest.json").read_text())
        fc1 = next(row for row in manifest["architecture"] if row[0] == "fc1")
        assert fc1[4] == [t.params["width"]]
    best = max((t for t in trials if t.state.name == "COMPLETE"), key=lambda t: t.value)
    assert f"network tiny(classes = 10, width = {best.params['width']})" in out.out
