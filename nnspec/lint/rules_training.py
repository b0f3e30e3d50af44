"""NN7xx: the training configuration — optimizer settings, schedules, early stopping,
freezing, the data split and augmentation."""

from __future__ import annotations

from ..config import matching_nothing
from .catalogue import rule
from .context import REGRESSION, Context, num, power

# Sensible learning-rate ranges per optimizer (inclusive): outside them training usually
# diverges (too high) or barely moves (too low).
LR_RANGE = {"sgd": (1e-4, 1.0), "adam": (1e-5, 1e-2), "adamw": (1e-5, 1e-2),
            "rmsprop": (1e-5, 1e-2), "adagrad": (1e-3, 1.0)}


def _train(cx: Context):
    return cx.train


@rule(
    "NN701", "learning-rate-out-of-range", "warning",
    summary="A learning rate outside the sensible range of its optimizer (SGD 1e-4–1, "
            "Adam/AdamW/RMSProp 1e-5–1e-2, AdaGrad 1e-3–1).",
    why="Too high and the loss diverges to NaN in the first steps; too low and nothing is "
        "learned in the epochs given. Adaptive optimizers normalise the step, so their range "
        "is lower than SGD's.",
    bad="""
        input 64
        linear(10)
        train {
          optimizer sgd(lr=5)
        }
    """,
    good="""
        input 64
        linear(10)
        train {
          optimizer sgd(lr=0.1)
        }
    """,
    fix="Start from the optimizer's usual rate: SGD 0.01–0.1 (with momentum), Adam 1e-3 or "
        "3e-4.",
    false_positives="A rate above the range is not reported when it is the linear scaling "
                    "rule of a large-batch recipe (Goyal et al. 2017): batch above 256, the rate "
                    "per 256 samples inside the range, and a warm-up in the schedule.",
)
def lr_range(cx: Context):
    opt = cx.optimizer
    if opt is None or opt.name not in LR_RANGE:
        return
    lo, hi = LR_RANGE[opt.name]
    lr = opt.options["lr"]
    if lo <= lr <= hi:
        return
    batch = cx.train.batch or 0
    per256 = lr * 256 / batch if batch > 256 else None
    warm = any(c.name == "warmup" for c in cx.train.schedule or ())
    if lr > hi and per256 is not None and lo <= per256 <= hi:
        if warm:
            return  # the linear scaling rule with a warm-up: a documented large-batch recipe
        yield cx.hit(opt.span, f"{opt.name} learning rate {num(lr)} is outside "
                               f"[{num(lo)}, {num(hi)}]: the linear scaling of {num(per256)} per "
                               f"256 samples to batch {batch:,}, without a warm-up",
                     help="add a warm-up (`schedule warmup(epochs=5), …`): large-batch "
                          "recipes ramp up to the scaled rate")
        return
    yield cx.hit(opt.span, f"{opt.name} learning rate {num(lr)} is outside "
                           f"[{num(lo)}, {num(hi)}]")


_UNIT = {"sgd": ("momentum",), "rmsprop": ("momentum", "decay"), "adam": ("beta1", "beta2"),
         "adamw": ("beta1", "beta2")}


@rule(
    "NN702", "momentum-out-of-range", "error",
    summary="Momentum, RMSProp's decay or Adam's betas outside [0, 1) (SGD's dampening "
            "outside [0, 1]).",
    why="A momentum of 1 or more makes the velocity grow without bound (the update never "
        "forgets), negative values oscillate: training diverges.",
    bad="""
        input 64
        linear(10)
        train {
          optimizer sgd(lr=0.01, momentum=1.2)
        }
    """,
    good="""
        input 64
        linear(10)
        train {
          optimizer sgd(lr=0.01, momentum=0.9)
        }
    """,
    fix="Use momentum 0.9 (0.9–0.99), Adam betas 0.9 and 0.999.",
)
def momentum_range(cx: Context):
    opt = cx.optimizer
    if opt is None:
        return
    for key in _UNIT.get(opt.name, ()):
        v = opt.options.get(key)
        if v is not None and not 0 <= v < 1:
            yield cx.hit(opt.span, f"{opt.name} {key}={num(v)} is outside [0, 1)")
    d = opt.options.get("dampening")
    if d is not None and not 0 <= d <= 1:
        yield cx.hit(opt.span, f"sgd dampening={num(d)} is outside [0, 1]")


@rule(
    "NN703", "nesterov-without-momentum", "error",
    summary="SGD with nesterov=true but no momentum (or with dampening).",
    why="Nesterov's look-ahead needs a velocity; PyTorch rejects the combination "
        "('Nesterov momentum requires a momentum and zero dampening').",
    bad="""
        input 64
        linear(10)
        train {
          optimizer sgd(lr=0.01, nesterov=true)
        }
    """,
    good="""
        input 64
        linear(10)
        train {
          optimizer sgd(lr=0.01, momentum=0.9, nesterov=true)
        }
    """,
    fix="Add momentum=0.9 (and leave dampening at 0).",
)
def nesterov(cx: Context):
    opt = cx.optimizer
    if opt is None or opt.name != "sgd" or not opt.options.get("nesterov"):
        return
    if not opt.options.get("momentum"):
        yield cx.hit(opt.span, "nesterov=true without momentum")
    elif opt.options.get("dampening"):
        yield cx.hit(opt.span, f"nesterov=true with dampening={num(opt.options['dampening'])}")


def _schedules(cx: Context, *names):
    t = cx.train
    return [s for s in (t.schedule if t else ()) if not names or s.name in names]


@rule(
    "NN704", "schedule-beyond-epochs", "warning",
    summary="A schedule step that training never reaches: multistep milestones or a step "
            "period ≥ epochs, warm-up or restart period ≥ epochs, cosine t_max > epochs.",
    why="The decay the author planned never happens (the learning rate stays high to the "
        "end), or the warm-up never finishes.",
    bad="""
        input 64
        linear(10)
        train {
          schedule multistep(milestones=(30, 60, 90), gamma=0.1)
          epochs 90
        }
    """,
    good="""
        input 64
        linear(10)
        train {
          schedule multistep(milestones=(30, 60), gamma=0.1)
          epochs 90
        }
    """,
    fix="Express the schedule in epochs below the `epochs` setting.",
)
def schedule_beyond_epochs(cx: Context):
    t = cx.train
    if t is None or not t.epochs:
        return
    E = t.epochs
    for s in _schedules(cx):
        o = s.options
        if s.name == "multistep":
            late = [m for m in o["milestones"] if m >= E]
            if late:
                yield cx.hit(s.span, f"milestone{'s' if len(late) > 1 else ''} "
                                     f"{', '.join(map(str, late))} never reached in {E} epochs")
        elif s.name == "step" and o["every"] >= E:
            yield cx.hit(s.span, f"step every {o['every']} epochs never decays in {E} epochs")
        elif s.name == "warmup" and o["epochs"] >= E:
            yield cx.hit(s.span, f"the warm-up of {o['epochs']} epochs does not end within "
                                 f"{E} epochs")
        elif s.name == "restarts" and o["period"] >= E:
            yield cx.hit(s.span, f"the restart period {o['period']} is not shorter than the "
                                 f"{E} epochs: no restart happens")
        elif s.name == "cosine" and o.get("t_max") and o["t_max"] > E:
            yield cx.hit(s.span, f"cosine t_max={o['t_max']} > {E} epochs: the rate stops at "
                                 f"{num(_cosine_left(o['t_max'], E))} of its start, not at min_lr")


def _cosine_left(t_max: int, E: int) -> float:
    import math
    return (1 + math.cos(math.pi * E / t_max)) / 2


@rule(
    "NN705", "milestones-not-increasing", "warning",
    summary="multistep milestones that are not strictly increasing.",
    why="The scheduler counts each milestone separately: a repeated one decays twice at once, "
        "and an out-of-order list usually hides a typo.",
    bad="""
        input 64
        linear(10)
        train {
          schedule multistep(milestones=(60, 30), gamma=0.1)
          epochs 90
        }
    """,
    good="""
        input 64
        linear(10)
        train {
          schedule multistep(milestones=(30, 60), gamma=0.1)
          epochs 90
        }
    """,
    fix="List the milestones in increasing order, each once.",
)
def milestones_order(cx: Context):
    for s in _schedules(cx, "multistep"):
        ms = s.options["milestones"]
        if any(b <= a for a, b in zip(ms, ms[1:])):
            yield cx.hit(s.span, f"milestones {ms} are not strictly increasing")


@rule(
    "NN706", "schedule-never-decays", "warning",
    summary="A step, multistep or exponential schedule with gamma ≥ 1.",
    why="gamma = 1 leaves the rate constant (the schedule does nothing); gamma > 1 makes it "
        "grow geometrically until training diverges.",
    bad="""
        input 64
        linear(10)
        train {
          schedule step(every=10, gamma=1.5)
          epochs 30
        }
    """,
    good="""
        input 64
        linear(10)
        train {
          schedule step(every=10, gamma=0.1)
          epochs 30
        }
    """,
    fix="Use gamma < 1 (0.1 for step decay, 0.9–0.99 per epoch for exponential).",
)
def never_decays(cx: Context):
    E = cx.train.epochs if cx.train else None
    for s in _schedules(cx, "step", "multistep", "exponential"):
        g = s.options["gamma"]
        if g < 1:
            continue
        if g == 1:
            yield cx.hit(s.span, f"{s.name} with gamma=1 never changes the learning rate")
            continue
        if E:
            if s.name == "step":
                k = (E - 1) // s.options["every"]
            elif s.name == "multistep":
                k = sum(1 for m in s.options["milestones"] if m < E)
            else:
                k = E - 1
            factor = f": ×{num(power(g, k))} by epoch {E}"
        else:
            factor = ""
        yield cx.hit(s.span, f"{s.name} with gamma={num(g)} increases the learning rate{factor}")


_LONG_RUN = 50


@rule(
    "NN707", "adagrad-long-run", "info",
    summary="AdaGrad for 50 or more epochs.",
    why="AdaGrad divides by the root of the sum of all past squared gradients, so its step "
        "size decays towards zero and long runs stop learning (RMSProp and Adam fix this with "
        "a moving average).",
    bad="""
        input 64
        linear(10)
        train {
          optimizer adagrad(lr=0.01)
          epochs 100
        }
    """,
    good="""
        input 64
        linear(10)
        train {
          optimizer adam(lr=1e-3)
          epochs 100
        }
    """,
    fix="Use RMSProp or Adam for long runs.",
    false_positives="Sparse features (AdaGrad's intended use) benefit from the decay.",
)
def adagrad_long(cx: Context):
    opt = cx.optimizer
    t = cx.train
    if opt is not None and opt.name == "adagrad" and t.epochs and t.epochs >= _LONG_RUN:
        yield cx.hit(opt.span, f"adagrad for {t.epochs} epochs: its step size keeps shrinking "
                               f"as squared gradients accumulate")


@rule(
    "NN708", "adaptive-optimizer-with-step-schedule", "info",
    summary="Adam, AdamW, RMSProp or AdaGrad combined with an SGD-style step/multistep "
            "schedule.",
    why="Adaptive optimizers already scale each step; step decay recipes were tuned for SGD. "
        "Cosine decay or a short warm-up are the usual companions of Adam.",
    bad="""
        input 64
        linear(10)
        train {
          optimizer adam(lr=1e-3)
          schedule step(every=10, gamma=0.5)
          epochs 30
        }
    """,
    good="""
        input 64
        linear(10)
        train {
          optimizer adam(lr=1e-3)
          schedule cosine
          epochs 30
        }
    """,
    fix="Use `schedule cosine` (optionally with `warmup`).",
    false_positives="Many published recipes (e.g. transformer fine-tuning with step decay) "
                    "work well this way.",
)
def adaptive_step(cx: Context):
    opt = cx.optimizer
    if opt is None or opt.name not in ("adam", "adamw", "rmsprop", "adagrad"):
        return
    for s in _schedules(cx, "step", "multistep"):
        yield cx.hit(s.span, f"{opt.name} with a {s.name} schedule")


def _es(cx: Context):
    t = cx.train
    return t.early_stopping if t is not None else None


@rule(
    "NN709", "early-stopping-patience-exceeds-epochs", "warning",
    summary="Early stopping whose patience is not smaller than the number of epochs.",
    why="It can never trigger: the run ends before the patience runs out.",
    bad="""
        input 64
        linear(10)
        train {
          epochs 10
          validation 0.2
          early_stopping patience=10
        }
    """,
    good="""
        input 64
        linear(10)
        train {
          epochs 10
          validation 0.2
          early_stopping patience=3
        }
    """,
    fix="Use a patience well below the epochs (5–10 % of them), or remove early stopping.",
)
def patience(cx: Context):
    es = _es(cx)
    t = cx.train
    if es and t.epochs and es["patience"] >= t.epochs:
        yield cx.hit(cx.span("early_stopping"), f"patience {es['patience']} ≥ {t.epochs} epochs: "
                                                f"early stopping can never trigger")


@rule(
    "NN710", "early-stopping-without-validation", "error",
    summary="Early stopping on a validation metric (val_loss, val_accuracy) with no "
            "validation split.",
    why="The monitored value is never computed, so early stopping either fails or never "
        "triggers.",
    bad="""
        input 64
        linear(10)
        train {
          epochs 30
          early_stopping patience=5
        }
    """,
    good="""
        input 64
        linear(10)
        train {
          epochs 30
          validation 0.2
          early_stopping patience=5
        }
    """,
    fix="Hold out data with `validation 0.2`, or monitor the training loss.",
)
def es_without_validation(cx: Context):
    es = _es(cx)
    # (with `folds` the held-out fold is every run's validation split)
    if es and es["monitor"].startswith("val_") and not cx.train.validation and not cx.train.folds:
        yield cx.hit(cx.span("early_stopping"), f"early stopping monitors {es['monitor']} but "
                                                f"there is no validation split")


@rule(
    "NN711", "early-stopping-metric-not-produced", "error",
    summary="Early stopping on accuracy for a regression loss (mse, l1, huber).",
    why="A regression run computes no accuracy, so the monitored metric does not exist.",
    bad="""
        input 8
        linear(1)
        train {
          loss mse
          validation 0.2
          early_stopping monitor=val_accuracy
        }
    """,
    good="""
        input 8
        linear(1)
        train {
          loss mse
          validation 0.2
          early_stopping monitor=val_loss
        }
    """,
    fix="Monitor val_loss (or loss).",
)
def es_metric(cx: Context):
    es = _es(cx)
    if es and es["monitor"].endswith("accuracy") and cx.loss in REGRESSION:
        yield cx.hit(cx.span("early_stopping"), f"early stopping monitors {es['monitor']}, which "
                                                f"the {cx.loss} regression loss does not produce")


def _with_params(cx: Context):
    return [s.node for s in cx.analysis.layers[1:] if s.params]


@rule(
    "NN712", "freeze-pattern-matches-nothing", "warning",
    summary="A `freeze` pattern that matches no layer with parameters.",
    why="The layers the author meant to freeze are trained anyway (a renamed layer, a typo, "
        "another network's naming).",
    bad="""
        input 64
        fc1: linear(32) relu
        fc2: linear(10)
        train {
          freeze "features.*"
        }
    """,
    good="""
        input 64
        fc1: linear(32) relu
        fc2: linear(10)
        train {
          freeze "fc1"
        }
    """,
    fix="Use a pattern that matches the names `nnspec table` shows.",
)
def freeze_nothing(cx: Context):
    t = cx.train
    if t is None or not t.freeze:
        return
    names = [nd.name for nd in _with_params(cx)]
    prefixes = None
    for p in matching_nothing(t.freeze, names):
        prefixes = prefixes if prefixes is not None else _prefixes(names)
        yield cx.hit(cx.span("freeze"), f"freeze pattern \"{p}\" matches no layer with parameters",
                     help=closest_prefix(p, names, prefixes))


def _prefixes(names) -> frozenset:
    return frozenset(".".join(n.split(".")[:k]) for n in names for k in range(1, n.count(".") + 2))


def closest_prefix(pattern: str, names, prefixes: frozenset | None = None) -> str | None:
    """'did you mean …' among the names and their group prefixes (`features`, `layer1.0`)."""
    from ..errors import did_you_mean
    return did_you_mean(pattern.rstrip(".*"), prefixes if prefixes is not None else _prefixes(names))


@rule(
    "NN713", "everything-frozen", "error",
    summary="`freeze` patterns that freeze every parameter of the network.",
    why="Nothing is left to train: the optimizer has no parameters and the run changes nothing.",
    bad="""
        input 64
        fc1: linear(32) relu
        fc2: linear(10)
        train {
          freeze "*"
        }
    """,
    good="""
        input 64
        fc1: linear(32) relu
        fc2: linear(10)
        train {
          freeze "fc1"
        }
    """,
    fix="Freeze the pretrained feature layers only, and train the new head.",
)
def everything_frozen(cx: Context):
    t = cx.train
    tot = cx.analysis.totals
    if t is not None and t.freeze and tot.params and tot.trainable == 0:
        yield cx.hit(cx.span("freeze"), f"every one of the {tot.params:,} parameters is frozen")


@rule(
    "NN714", "head-frozen", "warning",
    summary="`freeze` patterns that freeze the last weighted layer (the classifier head).",
    why="In transfer learning the head is the new layer that must be trained; frozen, it keeps "
        "its random (or the old task's) weights.",
    bad="""
        input 64
        fc1: linear(32) relu
        fc2: linear(10)
        train {
          freeze "fc2"
        }
    """,
    good="""
        input 64
        fc1: linear(32) relu
        fc2: linear(10)
        train {
          freeze "fc1"
        }
    """,
    fix="Freeze the feature layers and leave the head trainable.",
)
def head_frozen(cx: Context):
    t = cx.train
    if t is None or not t.freeze or not cx.weighted or cx.analysis.totals.trainable == 0:
        return
    head = cx.weighted[-1]
    s = cx.analysis.layers[head.id]
    if s.params and not s.trainable:
        yield cx.hit(cx.span("freeze"), f"the head {head.name} is frozen",
                     notes=(f"{head.name} is at {head.span}",))


@rule(
    "NN715", "batch-larger-than-dataset", "warning",
    summary="A batch size larger than the number of training samples.",
    why="Every epoch is one partial batch: the batch size the recipe was tuned for never "
        "happens and batch statistics are those of the whole set.",
    bad="""
        input 64
        linear(10)
        train {
          data digits
          batch 4096
        }
    """,
    good="""
        input 64
        linear(10)
        train {
          data digits
          batch 64
        }
    """,
    fix="Use a batch a small fraction of the training set (32–256).",
)
def batch_vs_data(cx: Context):
    t = cx.train
    n = cx.train_samples
    if t is not None and t.batch and n and t.batch > n:
        yield cx.hit(cx.span("batch"), f"batch {t.batch:,} is larger than the {n:,} training "
                                       f"samples of {cx.data.name}")


@rule(
    "NN716", "empty-training-split", "error",
    summary="A validation split that leaves no training data (validation 1.0, or every "
            "sample of a small dataset).",
    why="There is nothing to train on.",
    bad="""
        input 64
        linear(10)
        train {
          validation 1.0
        }
    """,
    good="""
        input 64
        linear(10)
        train {
          validation 0.2
        }
    """,
    fix="Hold out a fraction such as 0.1–0.2.",
)
def empty_split(cx: Context):
    t = cx.train
    if t is None:
        return
    if t.validation >= 1 or cx.train_samples == 0:
        yield cx.hit(cx.span("validation"), f"validation {num(t.validation)} leaves no training "
                                            f"samples")


@rule(
    "NN717", "label-smoothing-too-high", "warning",
    summary="cross_entropy label smoothing above 0.3.",
    why="Smoothing moves that much probability from the true class to the others; at "
        "(C − 1)/C the target is uniform and carries no information (0.1 is the usual value).",
    bad="""
        input 64
        linear(10)
        train {
          loss cross_entropy(label_smoothing=0.5)
        }
    """,
    good="""
        input 64
        linear(10)
        train {
          loss cross_entropy(label_smoothing=0.1)
        }
    """,
    fix="Use label_smoothing=0.1.",
)
def label_smoothing(cx: Context):
    t = cx.train
    if t is None or t.loss is None or t.loss.name != "cross_entropy":
        return
    e = t.loss.options.get("label_smoothing") or 0
    if e > 0.3:
        c = cx.output.shape[0]
        uniform = (c - 1) / c if c > 1 else 0
        share = 1 - e + e * (1 / c)  # 1/c in integers first: c may be 2^1100, past a float
        yield cx.hit(t.loss.span, f"label_smoothing={num(e)} gives the true class only "
                                  f"{num(share)} of the target"
                                  + (f" (uniform at {num(uniform)})" if c > 1 else ""))


_SPATIAL_AUGMENTS = frozenset({"hflip", "crop", "rotate", "translate", "cutout", "cutmix"})


@rule(
    "NN718", "label-changing-augmentation", "warning",
    summary="An augmentation that changes the label of the data source: horizontal flips or "
            "rotations of 90° or more on handwritten digits.",
    why="A flipped 2 or 5 is no longer that digit and a 6 rotated by 180° is a 9: the "
        "augmented samples teach wrong labels.",
    bad="""
        input 1x8x8
        conv(8, 3, pad=1) relu
        flatten
        linear(10)
        train {
          data digits
          augment hflip
        }
    """,
    good="""
        input 1x8x8
        conv(8, 3, pad=1) relu
        flatten
        linear(10)
        train {
          data digits
          augment translate(pixels=1)
        }
    """,
    fix="Use label-preserving augmentations (small translations, small rotations).",
)
def label_changing(cx: Context):
    d = cx.data
    if d is None or d.name != "digits":
        return
    for a in cx.train.augment:
        if a.name == "hflip":
            yield cx.hit(a.span, "hflip mirrors digits: a flipped 2, 3, 5 or 7 is no longer a digit")
        elif a.name == "rotate" and a.options["degrees"] >= 90:
            yield cx.hit(a.span, f"rotate by up to {num(a.options['degrees'])}° turns 6 into 9")


@rule(
    "NN719", "augmentation-exceeds-input", "warning",
    summary="A spatial augmentation as large as the image (crop padding or translation of half "
            "the image or more, a cutout covering it), or one applied to a non-image input.",
    why="The augmented samples show mostly padding or nothing at all; on a feature-vector "
        "input there are no rows or columns to flip or shift.",
    bad="""
        input 1x8x8
        conv(8, 3, pad=1) relu
        flatten
        linear(10)
        train {
          data digits
          augment cutout
        }
    """,
    good="""
        input 1x8x8
        conv(8, 3, pad=1) relu
        flatten
        linear(10)
        train {
          data digits
          augment cutout(size=3)
        }
    """,
    fix="Scale the augmentation to the image (a few pixels on 8x8 digits).",
)
def augmentation_size(cx: Context):
    t = cx.train
    if t is None or not t.augment:
        return
    shape = cx.nodes[0].shape
    for a in t.augment:
        if a.name not in _SPATIAL_AUGMENTS:
            continue
        if len(shape) < 3:
            yield cx.hit(a.span, f"{a.name} needs an image, but the input is "
                                 f"{'x'.join(map(str, shape))}")
            continue
        h, w = shape[-2], shape[-1]
        small = min(h, w)
        o = a.options
        if a.name == "crop" and 2 * o["pad"] >= small:
            yield cx.hit(a.span, f"crop pads {o['pad']} pixels around a {h}x{w} image: a crop "
                                 f"can be mostly padding")
        elif a.name == "translate" and 2 * o["pixels"] >= small:
            yield cx.hit(a.span, f"translate by up to {o['pixels']} pixels moves half of the "
                                 f"{h}x{w} image out of view")
        elif a.name == "cutout" and o["size"] >= small:
            yield cx.hit(a.span, f"cutout of {o['size']}x{o['size']} erases the whole {h}x{w} image")


@rule(
    "NN730", "lbfgs-on-minibatches", "error",
    summary="optimizer lbfgs with a batch smaller than the training set.",
    why="L-BFGS builds its curvature estimate from differences of gradients and searches "
        "along a line assuming the same function at every evaluation: on mini-batches each "
        "step sees another function, the pairs (s, y) describe no Hessian and the line search "
        "fails. It is a full-batch method (the trainer refuses to start).",
    bad="""
        input 2
        linear(16) tanh
        linear(3)
        train {
          data spirals(samples=500)
          optimizer lbfgs
          batch 64
        }
    """,
    good="""
        input 2
        linear(16) tanh
        linear(3)
        train {
          data spirals(samples=500)
          optimizer lbfgs
          batch 400
        }
    """,
    fix="Set `batch` to the number of training samples (or more), or use a first-order "
        "optimizer (adam) for mini-batches.",
    false_positives="None expected; it may miss some: lint knows the data's sample count "
                    "before the source sets its test share aside, so it reports batches below "
                    "half of that count only. `nnspec train` checks the exact count.",
)
def lbfgs_minibatches(cx: Context):
    opt = cx.optimizer
    n = cx.train_samples
    if opt is None or opt.name != "lbfgs" or not n:
        return
    batch = cx.train.batch or 32  # the trainer's default
    if batch < n / 2:
        yield cx.hit(cx.span("batch") if cx.train.batch else opt.span,
                     f"optimizer lbfgs needs full-batch training, but batch {batch:,} < the "
                     f"{n:,} training samples of {cx.data.name}",
                     help=f"use batch {n}")
