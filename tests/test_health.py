"""Health checks while training (nnspec/train/health.py): every record's planted-bug spec
(tests/data/health/) triggers its finding at the layer's line, the healthy spec and the shipped
digits specs trigger none, the checks leave the trained weights bitwise unchanged, the
non-finite replay names the layer and keeps the last good checkpoint, and the `health` train
key configures and silences them."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import nnspec  # noqa: E402
from nnspec import checkpoint  # noqa: E402
from nnspec.cli import main  # noqa: E402
from nnspec.train import health  # noqa: E402
from nnspec.train.loop import TrainError  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "health"

_RUNS: dict[str, object] = {}


def trained(name: str, tmp_path_factory, **overrides):
    """Train tests/data/health/<name> once per test session (several records share a spec)."""
    key = name + repr(sorted(overrides.items()))
    if key not in _RUNS:
        run = tmp_path_factory.mktemp("health") / "run"
        _RUNS[key] = nnspec.train(str(DATA / name), run=run, **overrides)
    return _RUNS[key]


def line_of(path: Path, label: str) -> int:
    for no, text in enumerate(path.read_text("utf-8").splitlines(), 1):
        if text.startswith(f"{label}:"):
            return no
    raise AssertionError(label)


@pytest.mark.parametrize("rule", list(health.RULES.values()), ids=lambda r: f"{r.code}-{r.name}")
def test_planted_bug_triggers_its_finding(rule, tmp_path_factory):
    r = trained(health.PLANTED[rule.code][0], tmp_path_factory)
    found = [f for f in r.health if f["code"] == rule.code]
    assert found, f"{health.PLANTED[rule.code][0]} should trigger {rule.code}; found {[f['code'] for f in r.health]}"
    for f in found:
        assert f["severity"] == rule.severity and f["name"] == rule.name and f["help"]
        nd = r.model.nnspec_graph.find(f["layer"])
        assert nd is not None and f["line"] == nd.span.line, "the finding points at the layer's spec line"
        assert re.search(r"threshold|range|above|below|non-finite", f["message"]), "the message states the threshold"
    assert r.report()["health"] == r.health


def test_healthy_spec_triggers_nothing(tmp_path_factory):
    r = trained("mlp_ok.nn", tmp_path_factory)
    assert r.health == [] and r.val_accuracy > 0.85


def test_the_shipped_mlp_trains_without_a_warning(tmp_path):
    # 4 of its 30 epochs (the full run, 24 epochs to early stopping, is clean too: docs/train.md);
    # every check runs: the probes, the update ratio, the epoch-end checks
    r = nnspec.train("specs/mlp_digits.nn", epochs=4, run=tmp_path / "run", health=True)
    assert r.val_accuracy > 0.9
    assert r.health == []


@pytest.mark.slow
def test_the_shipped_cnn_trains_without_a_warning(tmp_path):
    # 1 epoch to keep the suite fast (all 30 were clean too: docs/train.md). The thresholds are
    # the shipped ones; every probe and epoch-end check runs, except NN919 (it needs 4 epochs,
    # and is off under early stopping)
    r = nnspec.train("specs/cnn_digits.nn", epochs=1, run=tmp_path / "run")
    assert r.val_accuracy > 0.5
    assert r.health == []


def test_findings_point_at_the_right_layer_with_measured_values(tmp_path_factory):
    dead = trained("dead_relu.nn", tmp_path_factory)
    (f,) = [f for f in dead.health if f["code"] == "NN914"]
    # fc2's inputs are ReLU outputs (≥ 0) and its weights all negative (mean -0.5, std 0.01,
    # bias 0): every pre-activation is ≤ 0, so all 64 units are dead
    assert f["layer"] == "fc2_relu" and f["line"] == line_of(DATA / "dead_relu.nn", "fc2")
    assert "100% of the 64 units" in f["message"]
    init = trained("init_loss.nn", tmp_path_factory)
    (f,) = [f for f in init.health if f["code"] == "NN910"]
    assert f["layer"] == "fc2" and f"ln 10 = {math.log(10):.3f}" in f["message"]
    assert 'init "fc2" normal(std=0.01)' in f["help"]
    # dropout(1.0) zeroes fc1's path while training: fc1 gets no gradient, nor does fc2's
    # weight (its input is zero); fc2's bias does learn
    frozen = trained("frozen.nn", tmp_path_factory)
    msgs = {f["layer"]: f["message"] for f in frozen.health if f["code"] == "NN920"}
    assert msgs.keys() == {"fc1", "fc2"}
    assert msgs["fc1"].startswith("'fc1.weight' and 'fc1.bias' are exactly their initial value")
    assert msgs["fc2"].startswith("'fc2.weight' is exactly its initial value")


def test_nonfinite_replay_names_the_layer_and_keeps_the_last_good_checkpoint(tmp_path):
    r = nnspec.train(str(DATA / "nonfinite.nn"), run=tmp_path / "run", checkpoint_every=1)
    assert r.stopped == "non-finite loss"
    (f,) = [f for f in r.health if f["code"] == "NN911"]
    assert f["severity"] == "error" and f["layer"] in ("fc1", "fc1_relu", "fc2")
    assert "first to become non-finite" in f["message"] and f["line"] == line_of(DATA / "nonfinite.nn", f["layer"].split("_")[0])
    # the weights in memory and in last.safetensors are the last good ones: all finite
    assert all(torch.isfinite(v).all() for v in r.model.state_dict().values())
    last = checkpoint.load(tmp_path / "run" / "last.safetensors")
    assert all(np.isfinite(v).all() for k, v in last.items() if k.startswith("model/"))


def test_the_replay_finds_where_the_forward_pass_overflows(tmp_path):
    # A spec whose first layer's output is infinite for any input (weights 1e38 in float32):
    # the replay must name fc1, not the loss
    spec = nnspec.loads("network inf(classes = 10)\ninput 64\nfc1: linear(64) relu\nfc2: linear(classes)\n"
                        "train {\n  data digits\n  loss cross_entropy\n  optimizer sgd(lr=0.01)\n"
                        "  init constant(value=1e38)\n  batch 64\n  epochs 1\n  seed 0\n}\n", file="inf.nn")
    r = nnspec.train(spec, run=tmp_path / "run", health=True)
    (f,) = [f for f in r.health if f["code"] == "NN911"]
    assert f["layer"] == "fc1" and f["line"] == 3


DROPOUT_BN = """network db(classes = 10)
input 64
fc1: linear(32)
bn: batchnorm relu
drop: dropout(0.5)
fc2: linear(classes)
train {{
  data digits
  loss cross_entropy
  optimizer sgd(lr=0.05, momentum=0.9)
  batch 64
  epochs 1
  validation 0.2
  seed 5
  {health}
}}
"""


def test_checks_never_change_the_trained_weights(tmp_path):
    # dropout draws from torch's global generator and batch norm keeps running statistics:
    # probing every other step (every=2) and at the epoch end must touch neither
    on = nnspec.train(nnspec.loads(DROPOUT_BN.format(health="health on(every=2)"), file="db.nn"),
                      run=tmp_path / "on")
    off = nnspec.train(nnspec.loads(DROPOUT_BN.format(health="health off"), file="db.nn"), run=tmp_path / "off")
    a, b = on.model.state_dict(), off.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert off.health == []


def test_health_off_and_ignore_silence_findings(tmp_path):
    src = (DATA / "init_loss.nn").read_text("utf-8")

    def run(entry, name):
        spec = nnspec.loads(src.replace("  seed 0\n", f"  seed 0\n  {entry}\n"), file=str(DATA / "init_loss.nn"))
        return nnspec.train(spec, run=tmp_path / name, epochs=1, max_steps=2)

    assert "NN910" in {f["code"] for f in run("health on(every=1)", "on").health}
    assert run("health off", "off").health == []
    assert "NN910" not in {f["code"] for f in run('health on(ignore="NN910, loss-not-decreasing")', "ig").health}
    assert nnspec.train(str(DATA / "init_loss.nn"), run=tmp_path / "kw", max_steps=1, health=False).health == []


def test_unknown_codes_and_bad_entries_are_clear_errors(tmp_path):
    src = (DATA / "mlp_ok.nn").read_text("utf-8")
    spec = nnspec.loads(src.replace("  seed 0\n", '  seed 0\n  health on(ignore="NN991")\n'), file="x.nn")
    with pytest.raises(TrainError, match=r"health: 'NN991' is not a health check"):
        nnspec.train(spec, run=tmp_path / "r")
    with pytest.raises(nnspec.SpecError, match="unknown health 'maybe'"):
        nnspec.loads(src.replace("  seed 0\n", "  seed 0\n  health maybe\n"), file="x.nn")
    with pytest.raises(nnspec.SpecError, match="every"):
        nnspec.loads(src.replace("  seed 0\n", "  seed 0\n  health on(every=0)\n"), file="x.nn")


def test_the_cli_renders_findings_as_diagnostics(tmp_path, capsys):
    spec = DATA / "init_loss.nn"
    rel = spec.relative_to(ROOT)
    import os
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        rc = main(["train", str(rel), "--run", str(tmp_path / "run"), "--epochs", "1",
                   "--report", str(tmp_path / "report.json")])
    finally:
        os.chdir(cwd)
    out = capsys.readouterr().out
    assert rc == 0
    line = line_of(spec, "fc2")
    assert "warning[NN910] initial-loss-off-chance: the loss before training is" in out
    assert f" --> {rel}:{line}:" in out
    assert f"{line} | fc2: linear(classes)" in out
    assert '   = help: start the output layer small: `init "fc2" normal(std=0.01)`' in out
    report = json.loads((tmp_path / "report.json").read_text())
    assert [f["code"] for f in report["health"]] == ["NN910"]
    assert {"code", "severity", "message", "layer", "line"} <= set(report["health"][0])
    logged = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert any(e["event"] == "health" and e["code"] == "NN910" for e in logged)


def test_records_are_in_the_lint_catalogue_and_complete():
    from nnspec.lint import RULES as LINT
    for r in health.RULES.values():
        assert LINT[r.code] is r and r.found_by == "trainer" and r.category == "health"
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)+", r.name) and r.summary and r.why and r.fix
        bad, good = health.PLANTED[r.code]
        assert (DATA / bad).is_file() and (DATA / good).is_file()


# ---- docs/train.md is produced by the code ---------------------------------------------------

TRAIN_DOC = ROOT / "docs" / "train.md"


def _blocks(info: str) -> list[str]:
    return re.findall(rf"^```{info}\n(.*?)^```$", TRAIN_DOC.read_text("utf-8"), re.DOTALL | re.MULTILINE)


def test_the_docs_table_is_generated_from_the_records():
    text = TRAIN_DOC.read_text("utf-8")
    start = text.index("<!-- generated: nnspec.train.health.markdown() -->\n")
    end = text.index("<!-- end generated -->")
    assert text[text.index("\n", start) + 1:end] == health.markdown()


def test_the_docs_example_finding_is_what_the_code_renders(tmp_path_factory):
    r = trained("init_loss.nn", tmp_path_factory)
    (f,) = [f for f in r.health if f["code"] == "NN910"]
    rendered = health.render_finding({**f, "file": "tests/data/health/init_loss.nn"},
                                     (DATA / "init_loss.nn").read_text("utf-8"))
    assert rendered in _blocks("text")


def test_the_docs_spec_examples_load():
    for body in _blocks("nn"):
        g = nnspec.loads(body).graph
        assert health.settings(g.train.health).ignore == {"NN916", "NN917"}
