"""The `train { … }` section: its schema, validation (names, types) and the typed result.

Ranges that are legal but unwise (a learning rate of 10, momentum 1.0) are the linter's
business; this module rejects only what cannot be meant (unknown keys, wrong types,
negative batch sizes).
"""

from __future__ import annotations

import fnmatch
import functools
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from . import ast
from .errors import Collector, Span, did_you_mean
from .ops import REQUIRED, Arg, ArgError, _check
from .values import CallValue, Sym, fmt

_DIST = "enum:normal|uniform"

LOSSES = {
    "cross_entropy": (Arg("label_smoothing", "prob", 0.0),),
    "nll": (),
    "bce": (),          # expects probabilities (a sigmoid head)
    "bce_logits": (),   # applies the sigmoid itself
    "mse": (),
    "l1": (),
    "huber": (Arg("delta", "posfloat", 1.0),),
    "hinge": (Arg("margin", "posfloat", 1.0),),
}

OPTIMIZERS = {
    "sgd": (Arg("lr", "posfloat", 0.01), Arg("momentum", "float", 0.0),
            Arg("nesterov", "bool", False), Arg("dampening", "float", 0.0)),
    "adagrad": (Arg("lr", "posfloat", 0.01), Arg("eps", "posfloat", 1e-10)),
    "rmsprop": (Arg("lr", "posfloat", 0.01), Arg("decay", "float", 0.99), Arg("eps", "posfloat", 1e-8),
                Arg("momentum", "float", 0.0)),
    "adam": (Arg("lr", "posfloat", 1e-3), Arg("beta1", "float", 0.9), Arg("beta2", "float", 0.999),
             Arg("eps", "posfloat", 1e-8)),
    "adamw": (Arg("lr", "posfloat", 1e-3), Arg("beta1", "float", 0.9), Arg("beta2", "float", 0.999),
              Arg("eps", "posfloat", 1e-8), Arg("weight_decay", "float", 0.01)),
    # full-batch only (the trainer refuses a batch smaller than the training set);
    # torch.optim.LBFGS's defaults; tolerance_grad 1e-7, tolerance_change 1e-9, max_eval 1.25·max_iter
    "lbfgs": (Arg("lr", "posfloat", 1.0), Arg("history", "count", 100), Arg("max_iter", "count", 20),
              Arg("line_search", "enum:none|strong_wolfe", "none")),
}

# Named settings of the optimizers above that a search may compare by name
# (`nnspec search --set optimizer=sgd,momentum,nesterov,adam`): SGD with momentum and with
# Nesterov's look-ahead, rho = 0.9 (the lower end of the usual 0.9-0.99).
OPTIMIZER_PRESETS = {
    "momentum": ("sgd", {"momentum": 0.9}),
    "nesterov": ("sgd", {"momentum": 0.9, "nesterov": True}),
}

# Per-optimizer state kept for each trainable parameter (for the training-memory estimate).
def optimizer_slots(name: str, options: Mapping[str, Any]) -> int:
    if name == "sgd":
        return 1 if options.get("momentum", 0) or options.get("nesterov") else 0
    if name == "rmsprop":
        return 2 if options.get("momentum", 0) else 1
    if name in ("adam", "adamw"):
        return 2
    if name == "lbfgs":  # `history` pairs (s, y), the direction and the previous gradient
        return 2 * options.get("history", 100) + 2
    return 1  # adagrad


SCHEDULES = {
    "constant": (),
    "step": (Arg("every", "count"), Arg("gamma", "posfloat", 0.1)),
    "multistep": (Arg("milestones", "ints"), Arg("gamma", "posfloat", 0.1)),
    "exponential": (Arg("gamma", "posfloat"),),          # lr·gamma^epoch = lr·e^(−k·epoch)
    "inv": (Arg("k", "posfloat"),),                       # lr / (1 + k·epoch)
    "cosine": (Arg("t_max", "count", None), Arg("min_lr", "float", 0.0)),
    "restarts": (Arg("period", "count"), Arg("mult", "count", 1), Arg("min_lr", "float", 0.0)),
    "warmup": (Arg("epochs", "count"), Arg("start", "prob", 0.1)),
}

INITS = {
    "default": (),
    "xavier": (Arg("dist", _DIST, "normal"),),
    "he": (Arg("dist", _DIST, "normal"), Arg("mode", "enum:fan_in|fan_out", "fan_in")),
    "normal": (Arg("std", "posfloat", 0.01), Arg("mean", "float", 0.0)),
    "uniform": (Arg("a", "posfloat", 0.05),),
    "zeros": (),
    "constant": (Arg("value", "float"),),
}

DATA = {  # the sources live in nnspec/train/data.py (docs/data.md)
    "digits": (Arg("classes", "ints", None),),         # the embedded 8x8 handwritten digits
    "synthetic": (Arg("samples", "count", 1024), Arg("classes", "count", 10)),
    "npz": (Arg("path", "str"),),                      # arrays x, y (x_val/y_val, x_test/y_test)
    "mnist": (Arg("path", "str"),),                    # a folder of IDX files
    "fashion": (Arg("path", "str"),),
    "cifar10": (Arg("path", "str"),),                  # a folder of binary batches
    "spirals": (Arg("samples", "count", 1024), Arg("classes", "count", 3), Arg("noise", "float", 0.2)),
    "moons": (Arg("samples", "count", 1024), Arg("noise", "float", 0.1)),
    "circles": (Arg("samples", "count", 1024), Arg("noise", "float", 0.05), Arg("factor", "prob", 0.5)),
}

AUGMENTS = {
    "hflip": (Arg("p", "prob", 0.5),),
    "crop": (Arg("pad", "nonneg", 4),),
    "noise": (Arg("std", "posfloat", 0.1),),
    "jitter": (Arg("strength", "prob", 0.4),),
    "rotate": (Arg("degrees", "posfloat", 15.0),),
    "translate": (Arg("pixels", "nonneg", 2),),
    "cutout": (Arg("size", "count", 8),),
    "mixup": (Arg("alpha", "posfloat", 0.2),),
    "cutmix": (Arg("alpha", "posfloat", 1.0),),
}

HEALTH = {  # the health checks while training (nnspec/train/health.py, docs/train.md)
    "on": (Arg("every", "count", 50), Arg("ignore", "str", "")),
    "off": (),
}

SAMPLERS = {  # the order of the training samples each epoch (nnspec/train/loop.py)
    "shuffle": (),      # a permutation of the training samples
    "balanced": (),     # as many draws, with replacement, each class equally likely (oversampling)
}

# `class_weights balanced` (scikit-learn's n_samples / (n_classes · count_c), counted on the
# training samples) or `class_weights (w1, …, wC)`; the losses that take them (PyTorch's weight=)
CLASS_WEIGHTS = {"balanced": ()}
WEIGHTED_LOSSES = ("cross_entropy", "nll")

EARLY_STOPPING = (Arg("patience", "count", 10), Arg("min_delta", "float", 0.0),
                  Arg("monitor", "enum:val_loss|val_accuracy|loss|accuracy", "val_loss"))
CLIP = (Arg("norm", "posfloat", None), Arg("value", "posfloat", None))
ELASTIC = (Arg("l1", "float", REQUIRED), Arg("l2", "float", REQUIRED))
# Gaussian noise on the weights (Graves 2011): drawn per step, added for that step's forward
# and backward, removed before the update. Input noise is the augmentation `augment noise(std)`.
NOISE = (Arg("weights", "posfloat", REQUIRED),)


@dataclass(frozen=True)
class Choice:
    """One named choice with its options, e.g. sgd with {lr: 0.01, momentum: 0.9}."""
    name: str
    options: Mapping[str, Any]
    span: Span

    def __str__(self) -> str:
        opts = ", ".join(f"{k}={fmt(v)}" for k, v in self.options.items() if v is not None)
        return f"{self.name}({opts})" if opts else self.name


@dataclass(frozen=True)
class TrainConfig:
    loss: Choice | None = None
    optimizer: Choice | None = None
    schedule: tuple[Choice, ...] = ()
    weight_decay: float = 0.0
    l1: float = 0.0
    l2: float = 0.0
    init: Choice | None = None
    init_overrides: tuple[tuple[str, Choice], ...] = ()
    batch: int | None = None
    epochs: int | None = None
    validation: float = 0.0
    early_stopping: Mapping[str, Any] | None = None
    clip: Mapping[str, Any] | None = None
    freeze: tuple[str, ...] = ()
    seed: int | None = None
    data: Choice | None = None
    augment: tuple[Choice, ...] = ()
    classes: int | None = None
    health: Choice | None = None
    folds: int | None = None                     # k-fold cross-validation (nnspec/train/members.py)
    snapshots: int | None = None                 # snapshot ensemble of the last M restart cycles
    class_weights: str | tuple[float, ...] | None = None   # "balanced" or one weight per class
    sampler: Choice | None = None
    noise: Mapping[str, Any] | None = None   # {"weights": σ}
    spans: Mapping[str, Span] = field(default_factory=dict)  # entry key -> where it was written

    def init_override(self, name: str) -> Choice | None:
        """The scheme of the last `init "pattern" …` whose pattern matches the layer `name`."""
        chosen = None
        for pattern, choice in self.init_overrides:
            if matches(pattern, name):
                chosen = choice
        return chosen


_SCALARS = {  # key -> Arg kind of its single value
    "weight_decay": "float", "l1": "float", "l2": "float", "batch": "count", "epochs": "count",
    "validation": "prob", "seed": "nonneg", "classes": "count", "folds": "count", "snapshots": "count",
}
_CHOICE = {"loss": LOSSES, "optimizer": OPTIMIZERS, "data": DATA, "health": HEALTH, "sampler": SAMPLERS}
_LISTS = {"schedule": SCHEDULES, "augment": AUGMENTS}
_KWARGS = {"early_stopping": EARLY_STOPPING, "clip": CLIP, "elastic_net": ELASTIC, "noise": NOISE}
KEYS = tuple(sorted(set(_SCALARS) | set(_CHOICE) | set(_LISTS) | set(_KWARGS) | {"init", "freeze", "class_weights"}))


def is_frozen(name: str, patterns) -> bool:
    """`freeze "features"` or `freeze "features.*"` both freeze features.0, features.3, …"""
    return _compiled(tuple(patterns))(name)


def matches(pattern: str, name: str) -> bool:
    """A layer name matches a pattern: equal to it, inside the group it names (`features`
    matches features.0), or matching it as a shell wildcard (`layer*.conv?`)."""
    return _compiled((pattern,))(name)


def matching_nothing(patterns, names) -> list[str]:
    """The patterns that match none of the names, in near-linear time (hundreds of patterns
    over thousands of layers): literal patterns are looked up among the names and the groups
    they sit in; only real wildcards are tried name by name."""
    names = [n for n in names if n and "\n" not in n]  # what a line of the joined text can be
    exact = set(names)
    groups = {n[:i] for n in names for i, ch in enumerate(n) if ch == "."}
    lines = None  # every name on a line of its own: one regex scan per wildcard pattern
    out = []
    for p in patterns:
        base, wild = _split(p)
        if p in exact or base in groups:
            continue
        if wild:
            rx = _line_regex(p)
            if rx is None:
                if any(map(_compiled((p,)), names)):
                    continue
            else:
                lines = lines if lines is not None else "\n".join(names)
                if names and rx.search(lines):
                    continue
        out.append(p)
    return out


def _line_regex(pattern: str):
    """fnmatch's regex for `pattern`, matching whole lines of a text (names never hold a line
    break: `.` no longer matches one, nor does a negated class); None where fnmatch's output
    is not in the form this relies on."""
    full = fnmatch.translate(pattern)
    if not (full.startswith("(?s:") and full.endswith(")\\Z")):
        return None
    inner = re.sub(r"(?<!\\)\[\^", "[^\\n", full[4:-3])
    try:
        return re.compile(f"(?m)^(?:{inner})$")
    except re.error:
        return None


class _Patterns:
    """Patterns compiled once: a name costs a few set look-ups (one per '.' in it) and, when
    some pattern has a real wildcard, one match of a single combined regex."""

    def __init__(self, patterns: tuple):
        self.exact = set(patterns)
        self.groups = set()
        wild = []
        for p in patterns:
            base, is_wild = _split(p)
            self.groups.add(base)
            if is_wild:
                wild.append(f"(?:{fnmatch.translate(p)})")
        self.regex = re.compile("|".join(wild)) if wild else None

    def __call__(self, name: str) -> bool:
        if name in self.exact:
            return True
        groups = self.groups
        i = name.find(".")
        while i >= 0:
            if name[:i] in groups:
                return True
            i = name.find(".", i + 1)
        return self.regex is not None and self.regex.match(name) is not None


def _split(pattern: str) -> tuple[str, bool]:
    """(the group a pattern names, whether shell matching can add names to that group's):
    `features.*` and `features` name the group features, and `.*` adds nothing to it;
    `layer*` and `fc?` are real wildcards."""
    base = pattern.rstrip(".*")
    tail = pattern[len(base):]
    return base, any(c in base for c in "*?[") or tail.startswith("*")


@functools.lru_cache(maxsize=256)
def _compiled(patterns: tuple) -> _Patterns:
    return _Patterns(patterns)


class _Bad(Exception):
    pass


class Unevaluable(Exception):
    """An expression could not be evaluated; its diagnostic is already collected."""


def build_train_config(train: ast.Train, evaluate, errors: Collector) -> TrainConfig | None:
    """Validate every entry; collect all problems in `errors`. `evaluate(expr)` gives an
    expression's value (bare words as `Sym`, calls as `CallValue`) or raises Unevaluable."""

    values: dict[str, Any] = {}
    spans: dict[str, Span] = {}
    overrides: list = []
    for e in train.entries:
        def fail(msg, span=e.span, help=None):
            errors.add("NN030", msg, span, help=help)
            raise _Bad

        try:
            key = e.key
            if key not in KEYS:
                fail(f"unknown train setting '{key}'", e.key_span,
                     did_you_mean(key, KEYS) or f"settings: {', '.join(KEYS)}")
            if key in spans and key not in ("init",):
                fail(f"'{key}' is set twice", e.key_span)
            spans.setdefault(key, e.span)
            try:
                args = [evaluate(a) for a in e.args]
                kwargs = [(k.name, evaluate(k.value), k.span) for k in e.kwargs]
            except Unevaluable:
                raise _Bad from None
            if key in _SCALARS:
                if len(args) != 1 or kwargs:
                    fail(f"'{key}' takes one value", e.span)
                values[key] = _typed(key, _SCALARS[key], args[0], e.args[0].span, fail)
            elif key in _CHOICE:
                if len(args) != 1 or kwargs:
                    fail(f"'{key}' takes one choice, e.g. `{key} {next(iter(_CHOICE[key]))}`", e.span)
                values[key] = _choice(key, _CHOICE[key], args[0], e.args[0].span, fail)
            elif key in _LISTS:
                if kwargs or not args:
                    fail(f"'{key}' takes a comma-separated list, e.g. `{key} "
                         f"{', '.join(list(_LISTS[key])[:2])}`", e.span)
                values[key] = tuple(_choice(key, _LISTS[key], a, x.span, fail)
                                    for a, x in zip(args, e.args))
            elif key in _KWARGS:
                if args:
                    fail(f"'{key}' takes named values, e.g. `{key} "
                         f"{_KWARGS[key][0].name}=…`", e.span)
                values[key] = _options(key, _KWARGS[key], kwargs, e.span, fail)
            elif key == "class_weights":
                values[key] = _class_weights(args, kwargs, e, fail)
            elif key == "freeze":
                if kwargs or not args or not all(isinstance(a, str) for a in args):
                    fail("'freeze' takes layer-name patterns in quotes, e.g. `freeze \"features.*\"`")
                values[key] = tuple(args)
            elif key == "init":
                if kwargs or not 1 <= len(args) <= 2:
                    fail("'init' takes a scheme, or a quoted layer pattern and a scheme: "
                         "`init he` or `init \"fc*\" zeros`")
                if len(args) == 2:
                    if not isinstance(args[0], str):
                        fail("the layer pattern of a per-layer init is a quoted string",
                             e.args[0].span)
                    overrides.append((args[0], _choice(key, INITS, args[1], e.args[1].span, fail)))
                else:
                    if "init" in values:
                        fail("the default 'init' is set twice", e.key_span)
                    values["init"] = _choice(key, INITS, args[0], e.args[0].span, fail)
        except _Bad:
            continue
    _check_members(values, spans, errors)
    es = values.pop("elastic_net", None)
    if es:
        values.setdefault("l1", es["l1"])
        values.setdefault("l2", es["l2"])
    return TrainConfig(init_overrides=tuple(overrides), spans=spans, **values)


def _class_weights(args, kwargs, e, fail):
    """`class_weights balanced` or `class_weights (w1, …, wC)`: positive numbers, one per class."""
    usage = "'class_weights' takes `balanced` or one weight per class in parentheses, e.g. `class_weights (1, 10)`"
    if kwargs or len(args) != 1:
        fail(usage, e.span)
    v, span = args[0], e.args[0].span
    if isinstance(v, (Sym, CallValue)):
        if v.name not in CLASS_WEIGHTS or isinstance(v, CallValue):
            fail(f"unknown class_weights '{v.name}'", span, did_you_mean(v.name, CLASS_WEIGHTS) or usage)
        return v.name
    items = v if isinstance(v, tuple) else (v,)
    if any(isinstance(w, bool) or not isinstance(w, (int, float)) or not w > 0 or w == float("inf")
           for w in items):
        fail(f"class weights must be positive numbers, got {fmt(v)}", span, usage)
    return tuple(float(w) for w in items)


def _check_members(values: dict, spans: Mapping[str, Span], errors: Collector) -> None:
    """What the keys of cross-validation and ensembles need from the rest of the section."""
    if values.get("folds") == 1:
        errors.add("NN030", "'folds' needs at least 2 folds (one held out, the rest trained on)",
                   spans["folds"], help="`folds 5` (or remove it)")
        values.pop("folds")
    if values.get("snapshots") and not any(s.name == "restarts" for s in values.get("schedule", ())):
        errors.add("NN030", f"'snapshots {values['snapshots']}' takes one snapshot at the end of each "
                            "warm-restart cycle, and the schedule has no restarts", spans["snapshots"],
                   help="add `schedule restarts(period=10)` (cosine cycles of 10 epochs), or remove 'snapshots'")
        values.pop("snapshots")
    loss = values.get("loss")
    if values.get("class_weights") is not None and loss is not None and loss.name not in WEIGHTED_LOSSES:
        errors.add("NN030", f"'class_weights' weighs the classes of {' or '.join(WEIGHTED_LOSSES)}; "
                            f"loss {loss.name} takes no class weights", spans["class_weights"],
                   help="use `loss cross_entropy`, or `sampler balanced` (oversampling works with any loss)")
        values.pop("class_weights")


class ChoiceError(ValueError):
    """A value given outside a spec (a search's `--set optimizer=…`) that the schema refuses."""

    def __init__(self, message: str, help: str | None = None):
        super().__init__(message)
        self.message, self.help = message, help


def choice(key: str, value) -> Choice:
    """One value of a choice key (`optimizer`, `loss`, `init`, …) checked as the train
    section checks it: a bare word (`values.Sym`) or a call (`values.CallValue`), with every
    option filled in. Raises ChoiceError."""
    table = INITS if key == "init" else _CHOICE[key]

    def fail(msg, span=None, help=None):
        raise ChoiceError(msg, help)
    return _choice(key, table, value, None, fail)


def _typed(key, kind, v, span, fail):
    try:
        return _check(key, Arg(key, kind), v)
    except ArgError as err:
        fail(err.message.replace(f"{key}: argument '{key}'", f"'{key}'"), span)


def _choice(key: str, table: dict, v, span, fail) -> Choice:
    if isinstance(v, Sym):
        name, args, kwargs = v.name, (), ()
    elif isinstance(v, CallValue):
        name, args, kwargs = v.name, v.args, v.kwargs
    else:
        fail(f"'{key}' expects one of {', '.join(table)}; got {fmt(v)}", span)
    if name not in table:
        fail(f"unknown {key} '{name}'", span, did_you_mean(name, table) or f"choices: {', '.join(table)}")
    spec = table[name]
    if len(args) > len(spec):
        fail(f"{name} takes at most {len(spec)} positional values, got {len(args)}", span)
    given = list(zip((a.name for a in spec), args, [span] * len(args))) + list(kwargs)
    return Choice(name, _options(name, spec, given, span, fail), span)


def _options(owner: str, spec: tuple, given, span, fail) -> dict:
    names = {a.name: a for a in spec}
    out = {}
    for k, v, s in given:
        if k not in names:
            fail(f"{owner} has no option '{k}'", s, did_you_mean(k, names) or
                 (f"options: {', '.join(names)}" if names else f"{owner} takes no options"))
        if k in out:
            fail(f"option '{k}' given twice", s)
        try:
            out[k] = _check(owner, names[k], v)
        except ArgError as err:
            fail(err.message, s)
    for a in spec:
        if a.name not in out:
            if a.default is REQUIRED:
                fail(f"{owner} needs option '{a.name}'", span)
            out[a.name] = a.default
    return out
