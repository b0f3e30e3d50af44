"""Health checks: the runtime half of lint. While a spec trains, these records watch the loss,
the gradients, the activations and the weights, and report what they find as `Diagnostic`s in
the lint catalogue's form: a code, a severity, a message with the measured value and the
threshold, the spec line of the layer concerned, and a suggested edit.

Cheap checks run every step (the loss and the global gradient norm are finite). Heavier ones
run on a fixed probe batch (`PROBE` training samples, drawn once from the named random stream
("split", "health-probe")) every `every` steps and at each epoch end. Probes run in evaluation mode
under `torch.random.fork_rng()` and take gradients with `torch.autograd.grad` (nothing is
accumulated into `.grad`, no running statistic moves, no random number is drawn), so a run
with checks on ends with the same weights, bit for bit, as a run with checks off.

Configured in the train section:

    health off                                        no checks at all
    health on(every=20, ignore="NN916 NN919")         probe every 20 steps; silence two checks

`ignore` takes codes or names, separated by spaces or commas. Each finding is reported once
per layer and run.

The records (`RULES`) are `nnspec.lint.catalogue.Rule`s. They are kept in this table rather
than in the lint catalogue's, because the catalogue runs every record's `bad` example through
the static linter, and these findings need a training run: tests/test_health.py trains every
`bad` example (a planted-bug spec under tests/data/health/) and checks it triggers its code.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from .. import rng
from ..errors import Diagnostic, did_you_mean, render
from ..lint import catalogue
from ..lint.catalogue import Rule
from ..ops import OpsWith

WEIGHTED = OpsWith("weighted")
RECTIFIERS = OpsWith("relu_like")
SATURATING = OpsWith("saturating")

PROBE = 256                 # samples in the probe batch
EVERY = 50                  # steps between probes (and at every epoch end)

# Thresholds: one place, quoted by the messages and by docs/train.md.
INIT_LOSS_RATIO = 2.0       # NN910: initial loss above 2·ln C
GRAD_VANISH = 1e-3          # NN912: a layer's |∇W|/|W| below 1e-3 x the output layer's
GRAD_EXPLODE = 1e2          # NN913: a layer's |∇W|/|W| above 100
DEAD = 0.5                  # NN914: more than half the units of a rectifier output 0 on every probe sample
SATURATED = 0.5             # NN915: more than half the outputs in the flat parts (f′ < 5 % of its peak)
FLAT = 0.05
UPDATE_LOW, UPDATE_HIGH = 1e-5, 1e-1   # NN916: |ΔW|/|W| per step, at the base learning rate
NOT_DECREASING = 0.95       # NN917: probe loss after an epoch above 95 % of the initial one
MAJORITY_SHARE = 0.95       # NN918: one class predicted for ≥ 95 % of the probe batch …
MAJORITY_MARGIN = 0.02      # … and accuracy within 2 points of that class's share of the labels
OVERFIT_EPOCHS = 3          # NN919: the train/validation gap grew 3 epochs in a row …
OVERFIT_GAP = 0.1           # … to more than 0.1 and at least twice what it was


PLANTED: dict[str, tuple[str, str]] = {}  # code -> (planted-bug spec, healthy spec) in tests/data/health


def _rule(code, name, severity, bad, good, **docs) -> Rule:
    """A record of the lint catalogue (`nnspec rules`, `nnspec lint --explain NN910`), found by
    the trainer. Its bad and good examples are specs under tests/data/health/ (a planted bug,
    and the healthy spec), not text run through the linter: they need data and a training run."""
    PLANTED[code] = (bad, good)
    for key in ("summary", "why", "fix"):
        docs[key] = " ".join(docs[key].split())
    return catalogue.find_rule(code) or catalogue.document(
        code, name, severity, found_by="trainer",
        bad=f"# found by `nnspec train` on a planted bug: tests/data/health/{bad}\n",
        good=f"# the same network trained without the bug: tests/data/health/{good}\n", **docs)


RULES: dict[str, Rule] = {r.code: r for r in (
    _rule("NN910", "initial-loss-off-chance", "warning", "init_loss.nn", "mlp_ok.nn",
          summary="The loss before training is above 2·ln C; ln C is the loss of uniform guesses "
                  "over C classes (softmax cross-entropy only).",
          why="A network that starts confidently wrong has output weights far too large; the first "
              "steps are spent undoing them, or the loss overflows.",
          fix="start the output layer small, e.g. `init \"fc*\" normal(std=0.01)`"),
    _rule("NN911", "non-finite-loss", "error", "nonfinite.nn", "mlp_ok.nn",
          summary="The loss or the gradient norm became NaN or infinite. Training stops, the batch "
                  "is replayed on the weights before the step to name the first layer whose output "
                  "was not finite, and the last good checkpoint is kept.",
          why="One non-finite value spreads to every weight at the next update.",
          fix="lower the learning rate, or add `clip norm=1.0`"),
    _rule("NN912", "vanishing-gradients", "warning", "vanishing.nn", "mlp_ok.nn",
          summary="A layer's relative gradient |∇W|/|W| is below 1e-3 times the output layer's.",
          why="That layer learns a thousand times slower than the head: in practice not at all.",
          fix="use ReLU-like activations, He initialisation (`init he`), batch norm, or residual "
              "connections"),
    _rule("NN913", "exploding-gradients", "warning", "exploding.nn", "mlp_ok.nn",
          summary="A layer's relative gradient |∇W|/|W| is above 100: one plain SGD step at a "
                  "learning rate of 0.01 would change its weights by more than their own size.",
          why="The updates overshoot and the loss overflows within a few steps.",
          fix="initialise with `init he` (ReLU) or `init xavier` (tanh), add batch norm, or "
              "`clip norm=1.0`"),
    _rule("NN914", "dead-relus", "warning", "dead_relu.nn", "mlp_ok.nn",
          summary="More than half the units of a rectifier output zero for every probe sample.",
          why="A unit that is never positive gets no gradient and never recovers.",
          fix="lower the learning rate, use `init he`, or use `leaky_relu`"),
    _rule("NN915", "saturated-activations", "warning", "saturated.nn", "mlp_ok.nn",
          summary="More than half the outputs of a sigmoid-like activation sit where its slope is "
                  "below 5 % of its peak.",
          why="Saturated units pass almost no gradient back.",
          fix="scale the inputs down: `init xavier`, or batch norm before the activation"),
    _rule("NN916", "update-ratio-off", "warning", "update_ratio.nn", "mlp_ok.nn",
          summary="The size of one update relative to the weights, |ΔW|/|W|, is outside 1e-5 to "
                  "1e-1 (about 1e-3 is healthy), measured at the base learning rate.",
          why="Far below, the weights hardly move (the learning rate is too low); far above, each "
              "step rewrites them (too high).",
          fix="scale the learning rate towards a ratio of 1e-3"),
    _rule("NN917", "loss-not-decreasing", "warning", "update_ratio.nn", "mlp_ok.nn",
          summary="After an epoch the loss on the probe batch is above 95 % of its initial value.",
          why="The network is not learning: the learning rate, the data or the labels are wrong.",
          fix="raise the learning rate, and run `nnspec train --sanity`"),
    _rule("NN918", "stuck-at-majority-class", "warning", "majority.nn", "mlp_ok.nn",
          summary="The network predicts one class for 95 % of the validation samples (the probe batch "
                  "without a validation split) and is no more "
                  "accurate than that class's share of the labels.",
          why="With imbalanced classes, predicting the majority is an easy local minimum; the "
              "accuracy looks good and means nothing.",
          fix="balance the classes (resample the data), or watch per-class accuracy with "
              "`nnspec evaluate`"),
    _rule("NN919", "overfitting-gap-growing", "warning", "overfit.nn", "mlp_ok.nn",
          summary="The gap between validation and training loss grew 3 epochs in a row, to more "
                  "than 0.1 and twice what it was (checked when the run has no early stopping, "
                  "which handles this by keeping the best weights).",
          why="The network is memorising the training set.",
          fix="add `early_stopping patience=3`, dropout, weight decay or augmentation, or more data"),
    _rule("NN920", "parameters-never-change", "warning", "frozen.nn", "mlp_ok.nn",
          summary="A trainable parameter is bitwise equal to its initial value after an epoch.",
          why="Something stops its gradient (a zero initialisation in front of a rectifier, a "
              "dead path); the layer is frozen by mistake.",
          fix="initialise the layer randomly (`init he`), or `freeze` it on purpose"),
)}


# ---- configuration ---------------------------------------------------------------------------

class HealthConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    enabled: bool = True
    every: int = EVERY
    ignore: frozenset = frozenset()

    def wants(self, code: str) -> bool:
        return self.enabled and code not in self.ignore


def settings(choice, enabled: bool = True) -> Settings:
    """The train section's `health` entry (a config.Choice, or None) as Settings."""
    if not enabled or (choice is not None and choice.name == "off"):
        return Settings(enabled=False)
    if choice is None:
        return Settings()
    ignore = set()
    for word in re.split(r"[\s,]+", choice.options.get("ignore") or ""):
        if not word:
            continue
        r = RULES.get(word.upper()) or next((x for x in RULES.values() if x.name == word.lower()), None)
        if r is None:
            hint = did_you_mean(word, list(RULES) + [x.name for x in RULES.values()])
            raise HealthConfigError(f"health: '{word}' is not a health check"
                                    + (f" ({hint})" if hint else f" (checks: {', '.join(RULES)})"))
        ignore.add(r.code)
    return Settings(True, choice.options.get("every") or EVERY, frozenset(ignore))


# ---- findings --------------------------------------------------------------------------------

def diagnostic(code: str, message: str, node=None, help: str | None = None) -> Diagnostic:
    r = RULES[code]
    return Diagnostic(code, message, node.span if node is not None else None, r.severity,
                      help or r.fix, chain=node.chain if node is not None else (), name=r.name)


def finding(d: Diagnostic, layer: str | None, step: int, epoch: int) -> dict:
    """A diagnostic as the JSON record of Result.health and log.jsonl."""
    return {"code": d.code, "name": d.name, "severity": d.severity, "message": d.message,
            "layer": layer, "file": d.span.file if d.span is not None else None,
            "line": d.span.line if d.span is not None else None,
            "columns": [d.span.column, d.span.end_column] if d.span is not None else None, "help": d.help,
            "step": step, "epoch": epoch}


def as_diagnostic(f: dict) -> Diagnostic:
    """A finding record back as a Diagnostic (to render it from a report)."""
    from ..errors import Span
    if f.get("line"):
        column, end = f.get("columns") or (1, 1)
        span = Span(f["file"], f["line"], column, f["line"], end)
    else:
        span = None
    return Diagnostic(f["code"], f["message"], span, f["severity"], f.get("help"), name=f.get("name", ""))


def _fmt(v: float) -> str:
    return f"{v:.3g}" if math.isfinite(v) else str(v)


# ---- the monitor -----------------------------------------------------------------------------

class Monitor:
    """Runs the checks for one training run (torch backend). The loop calls `start`,
    `before_step`, `after_step`, `nonfinite` and `end_epoch`; each returns the new findings
    as (Diagnostic, layer) pairs, already filtered by the settings and de-duplicated."""

    def __init__(self, backend, splits, settings: Settings, *, seed: int, base_lr: float, config):
        import torch
        self.torch = torch
        self.backend = backend
        self.graph = backend.graph
        self.model = backend.model
        self.s = settings
        self.base_lr = base_lr
        self.cfg = config
        self.seen: set[tuple[str, str | None]] = set()
        n = len(splits.train.x)
        # the probe batch is a split of its own: the stream ("split", "health-probe") is drawn from
        # by nothing else, so choosing it changes no other draw
        idx = np.sort(rng.permutation(rng.stream(seed, "split", "health-probe", 0), n)[:PROBE])
        self.px, self.py = splits.train.x[idx], splits.train.y[idx]
        self.classification = self.py.dtype.kind in "iu"
        val = splits.val if splits.val is not None and len(splits.val.x) else None
        # the majority check looks at held-out samples when there are some: a network can
        # memorise the few minority samples of the training set and still predict one class
        self.vx, self.vy = (val.x[:PROBE], val.y[:PROBE]) if val is not None else (self.px, self.py)
        self.modules = dict(self.model.named_modules())
        self.weighted = [nd for nd in self.graph.layers if nd.op in WEIGHTED
                         and isinstance(getattr(self.modules.get(nd.name), "weight", None), torch.nn.Parameter)
                         and self.modules[nd.name].weight.requires_grad]
        self.params = list(backend.params)
        self.before: list | None = None
        self.lr = base_lr
        self.initial: list | None = None
        self.initial_loss: float | None = None
        self.early_stopping = bool(config.early_stopping)

    # ---- hooks called by the loop
    def start(self, fresh: bool = True) -> list:
        """Before the first step (`fresh`) or on resuming: the initial loss and the probe."""
        torch = self.torch
        if fresh:
            with torch.no_grad():
                self.initial = [p.detach().clone() for _, p in self.params]
        out = []
        probe = self._probe()
        self.initial_loss = probe["loss"]
        if fresh and self.backend.loss_name == "cross_entropy" and self.classification:
            c = self.graph.nodes[self.graph.output].shape[0]
            expected = math.log(c)
            if c > 1 and probe["loss"] > INIT_LOSS_RATIO * expected:
                head = self.weighted[-1] if self.weighted else self.graph.nodes[self.graph.output]
                out += self._add("NN910", f"the loss before training is {_fmt(probe['loss'])}, above "
                                          f"{INIT_LOSS_RATIO:g}·ln {c} = {_fmt(INIT_LOSS_RATIO * expected)} "
                                          f"(uniform guesses give ln {c} = {expected:.3f})", head,
                                 help=f"start the output layer small: `init \"{head.name}\" normal(std=0.01)`")
        out += self._probe_findings(probe)
        return out

    def before_step(self, step: int, last_in_epoch: bool = False) -> None:
        """Before a step that will be probed (every `every` steps, and the last of an epoch),
        keep the weights: |ΔW|/|W| needs them. Other steps copy nothing. (A non-finite step
        needs no copy: the backend does not update on one.)"""
        if step % self.s.every and not last_in_epoch:
            return
        torch = self.torch
        with torch.no_grad():
            if self.before is None:
                self.before = [p.detach().clone() for _, p in self.params]
            else:
                torch._foreach_copy_(self.before, [p.detach() for _, p in self.params])

    def after_step(self, step: int, lr: float) -> list:
        self.lr = lr
        if step % self.s.every:
            return []
        out = self._update_ratio(lr)
        out += self._probe_findings(self._probe())
        return out

    def nonfinite(self, x: np.ndarray, y: np.ndarray, loss: float) -> list:
        """Replay the batch on the weights before the step, in training mode (as the step ran),
        and name the first layer whose output is not finite."""
        torch = self.torch
        first: list = []
        saved = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

        def hook(name):
            def fn(module, inputs, output):
                if not first and torch.is_tensor(output) and not bool(torch.isfinite(output).all()):
                    first.append(name)
            return fn

        handles = [self.modules[nd.name].register_forward_hook(hook(nd.name))
                   for nd in self.graph.layers if nd.name in self.modules]
        try:
            with torch.random.fork_rng(devices=[]), torch.no_grad():
                self.model.train()  # on the weights of the failed step: it made no update
                self.model(self.backend.tensor(x))
        finally:
            for h in handles:
                h.remove()
            with torch.no_grad():
                for k, v in self.model.state_dict().items():
                    v.copy_(saved[k])
        if first:
            nd = self.graph.find(first[0])
            msg = (f"the loss is {loss}{self._grad_note(loss)}: the output of '{nd.name}' ({nd.op}) is the first to become "
                   f"non-finite when the batch is replayed")
        else:
            nd = self.graph.nodes[self.graph.output]
            msg = (f"the loss is {loss}{self._grad_note(loss)}, but every layer's output is finite when the batch is "
                   f"replayed: the loss itself ({self.backend.loss_name}) or the update overflowed")
        return self._add("NN911", msg, nd)

    @staticmethod
    def _grad_note(loss: float) -> str:
        return "" if not math.isfinite(loss) else " and the gradient norm is not finite"

    def end_epoch(self, row: dict, history: list[dict], first_epoch: bool) -> list:
        probe = self._probe()
        out = self._probe_findings(probe)
        if self.initial_loss is not None and math.isfinite(self.initial_loss) \
                and probe["loss"] > NOT_DECREASING * self.initial_loss:
            out += self._add("NN917", f"after epoch {row['epoch']} the probe loss is {_fmt(probe['loss'])}, "
                                      f"above {NOT_DECREASING:.0%} of its initial {_fmt(self.initial_loss)}",
                             self._head(), help=self._lr_help(10))
        out += self._update_ratio(self.lr)
        out += self._majority()
        out += self._overfitting(history)
        if first_epoch and self.initial is not None:
            out += self._unchanged()
            self.initial = None
        return out

    # ---- the probe
    def _probe(self) -> dict:
        """Loss, per-layer gradient RMS, dead and saturated fractions and predictions on the
        probe batch, in evaluation mode, drawing nothing from any random stream."""
        torch = self.torch
        acts: dict[str, tuple] = {}
        from ..ops.activations import ACTIVATIONS

        def hook(nd):
            def fn(module, inputs, output):
                with torch.no_grad():
                    if nd.op in RECTIFIERS:
                        o = output.detach()
                        alive = (o > 0).reshape(o.shape[0], o.shape[1], -1).any(dim=2).any(dim=0) \
                            if o.dim() > 2 else (o > 0).any(dim=0)
                        acts[nd.name] = ("dead", float(1 - alive.float().mean()), int(alive.numel()))
                    elif nd.op in SATURATING and nd.op in ACTIVATIONS:
                        row = ACTIVATIONS[nd.op]
                        kept = (output if row.keeps == "output" else inputs[0]).detach().double().cpu().numpy()
                        acts[nd.name] = ("saturated", flat_fraction(row, nd.attrs, kept), int(kept.size))
            return fn

        handles = [self.modules[nd.name].register_forward_hook(hook(nd)) for nd in self.graph.layers
                   if nd.name in self.modules and (nd.op in RECTIFIERS or nd.op in SATURATING)]
        was_training = self.model.training
        try:
            with torch.random.fork_rng(devices=[]):
                self.model.eval()
                out = self.model(self.backend.tensor(self.px))
                loss = self.backend.loss_of(out, self.backend.tensor(self.py))
                ws = [self.modules[nd.name].weight for nd in self.weighted]
                grads = torch.autograd.grad(loss, ws, allow_unused=True) if ws and loss.requires_grad else []
        finally:
            for h in handles:
                h.remove()
            self.model.train(was_training)
        rel = {}
        for nd, w, g in zip(self.weighted, ws, grads):
            norm = float(w.detach().double().norm())
            rel[nd.name] = float(g.detach().double().norm()) / norm if g is not None and norm > 0 else 0.0
        return {"loss": float(loss.detach()), "rel": rel, "acts": acts,
                }

    def _probe_findings(self, probe: dict) -> list:
        out = []
        rel = probe["rel"]
        for nd in self.weighted:
            if rel[nd.name] > GRAD_EXPLODE:
                out += self._add("NN913", f"the gradient of '{nd.name}' is {_fmt(rel[nd.name])} times the size "
                                          f"of its weights (|∇W|/|W|; threshold {GRAD_EXPLODE:g})", nd)
        if len(rel) >= 2:
            head = self.weighted[-1]
            ref = rel[head.name]
            if ref > 0 and math.isfinite(ref):
                for nd in self.weighted[:-1]:
                    ratio = rel[nd.name] / ref
                    if ratio < GRAD_VANISH:
                        out += self._add("NN912", f"the relative gradient |∇W|/|W| of '{nd.name}' is "
                                                  f"{_fmt(rel[nd.name])}, {_fmt(ratio)} times the output "
                                                  f"layer's ({_fmt(ref)}; threshold {GRAD_VANISH:g})", nd)
        for name, (kind, frac, units) in probe["acts"].items():
            nd = self.graph.find(name)
            if kind == "dead" and frac > DEAD:
                out += self._add("NN914", f"{frac:.0%} of the {units} units of '{name}' ({nd.op}) output "
                                          f"zero for all {len(self.px)} probe samples (threshold "
                                          f"{DEAD:.0%})", nd)
            elif kind == "saturated" and frac > SATURATED:
                out += self._add("NN915", f"{frac:.0%} of the outputs of '{name}' ({nd.op}) are saturated "
                                          f"(slope below {FLAT:.0%} of its peak; threshold {SATURATED:.0%})", nd)
        return out

    # ---- epoch-level checks
    def _update_ratio(self, lr: float) -> list:
        torch = self.torch
        if self.before is None or lr <= 0:
            return []
        out = []
        index = {id(p): i for i, (_, p) in enumerate(self.params)}
        for nd in self.weighted:
            w = self.modules[nd.name].weight
            prev = self.before[index[id(w)]]
            with torch.no_grad():
                norm = float(prev.double().norm())
                if norm == 0:
                    continue
                ratio = float((w.detach().double() - prev.double()).norm()) / norm * (self.base_lr / lr)
            if not math.isfinite(ratio):
                continue
            if ratio < UPDATE_LOW or ratio > UPDATE_HIGH:
                side = "below" if ratio < UPDATE_LOW else "above"
                factor = 1e-3 / ratio if ratio > 0 else 1e3
                out += self._add("NN916", f"one step changes the weights of '{nd.name}' by |ΔW|/|W| = "
                                          f"{_fmt(ratio)} at the base learning rate, {side} the range "
                                          f"{UPDATE_LOW:g} to {UPDATE_HIGH:g} (about 1e-3 is healthy)",
                                 nd, help=self._lr_help(factor))
        return out

    def _lr_help(self, factor: float) -> str:
        opt = self.cfg.optimizer
        if opt is None or not math.isfinite(factor) or factor <= 0:
            return RULES["NN916"].fix
        return f"try `optimizer {opt.name}(lr={self.base_lr * factor:.1g})` (keeping its other options)"

    def _head(self):
        return self.weighted[-1] if self.weighted else self.graph.nodes[self.graph.output]

    def _majority(self) -> list:
        if not self.classification or self.vy.dtype.kind not in "iu":
            return []
        from .torch_backend import predictions
        out = self.backend.evaluate(self.vx)  # evaluation mode, no gradient, no random draw
        if out.ndim != 2:
            return []
        pred = predictions(out, self.backend.loss_name)
        counts = np.bincount(pred)
        top = int(counts.argmax())
        share = counts[top] / len(pred)
        majority = np.bincount(self.vy).max() / len(self.vy)
        acc = float((pred == self.vy).mean())
        where = "validation samples" if self.vx is not self.px else "probe batch"
        if share >= MAJORITY_SHARE and acc <= majority + MAJORITY_MARGIN:
            return self._add("NN918", f"the network predicts class {top} for {share:.0%} of the {where}; "
                                      f"its accuracy {acc:.3f} is no better than the largest class's share "
                                      f"of the labels ({majority:.3f}; thresholds {MAJORITY_SHARE:.0%} and "
                                      f"{MAJORITY_MARGIN:g})", self._head())
        return []

    def _overfitting(self, history: list[dict]) -> list:
        if self.early_stopping or len(history) < OVERFIT_EPOCHS + 1:
            return []
        rows = history[-(OVERFIT_EPOCHS + 1):]
        if any(r.get("val_loss") is None for r in rows):
            return []
        gaps = [r["val_loss"] - r["train_loss"] for r in rows]
        growing = all(b > a for a, b in zip(gaps, gaps[1:]))
        rising = all(b["val_loss"] > a["val_loss"] for a, b in zip(rows, rows[1:]))
        if growing and rising and gaps[-1] > OVERFIT_GAP and gaps[-1] > 2 * gaps[0]:
            return self._add("NN919", f"the validation loss rose {OVERFIT_EPOCHS} epochs in a row while the "
                                      f"gap to the training loss grew from {gaps[0]:.3f} to {gaps[-1]:.3f} "
                                      f"(thresholds: {OVERFIT_GAP:g}, and twice the gap "
                                      f"{OVERFIT_EPOCHS} epochs before)", self._head())
        return []

    def _unchanged(self) -> list:
        torch = self.torch
        by_layer: dict[str, list[str]] = {}
        for (name, p), init in zip(self.params, self.initial):
            if torch.equal(p.detach(), init):
                by_layer.setdefault(name.rsplit(".", 1)[0], []).append(name)
        out = []
        for layer, names in by_layer.items():
            what = " and ".join(f"'{n}'" for n in names)
            out += self._add("NN920", f"{what} {'is' if len(names) == 1 else 'are'} exactly "
                                      f"{'its' if len(names) == 1 else 'their'} initial value after an "
                                      f"epoch of training (threshold: any change)", self.graph.find(layer),
                             layer=layer)
        return out

    def _add(self, code: str, message: str, node, help: str | None = None, layer: str | None = None) -> list:
        layer = layer or (node.name if node is not None else None)
        if not self.s.wants(code) or (code, layer) in self.seen:
            return []
        self.seen.add((code, layer))
        return [(diagnostic(code, message, node, help), layer)]


def _np():
    from ..ops.activations import NUMPY
    return NUMPY


def flat_fraction(row, attrs, kept) -> float:
    """The share of values where an activation is flat, |f′| below FLAT of its peak slope
    (NN915's test; `nnspec histograms` counts the same); `kept` is the row's input or output
    as its `keeps` says, as NumPy."""
    slope = np.abs(row.df(np.asarray(kept, np.float64), dict(attrs), _np()))
    return float((slope < FLAT * _peak(row, attrs)).mean()) if slope.size else 0.0


def _peak(row, attrs) -> float:
    """The largest slope of an activation, from its own f and f′ over [-10, 10]."""
    x = np.linspace(-10.0, 10.0, 4001)
    kept = row.f(x, dict(attrs), _np()) if row.keeps == "output" else x
    return float(np.abs(row.df(kept, dict(attrs), _np())).max())


def render_finding(f: dict, source: str | None) -> str:
    return render(as_diagnostic(f), source)




def markdown() -> str:
    """The checks as the Markdown table of docs/train.md (tests keep the two in sync)."""
    rows = ["| code | name | severity | what it measures, and the threshold | planted bug |",
            "|---|---|---|---|---|"]
    for r in RULES.values():
        rows.append(f"| {r.code} | `{r.name}` | {r.severity} | {r.summary.replace('|', chr(92) + '|')} "
                    f"| [`{PLANTED[r.code][0]}`](../tests/data/health/{PLANTED[r.code][0]}) |")
    return "\n".join(rows) + "\n"


__all__ = ["RULES", "Monitor", "Settings", "HealthConfigError", "as_diagnostic", "diagnostic",
           "finding", "markdown", "render_finding", "settings"]
