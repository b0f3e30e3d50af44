"""`nnspec evaluate`: accuracy, per-class recall and the confusion matrix of a checkpoint on
a data split, as the lecture code prints them; of several checkpoints, each model's accuracy
beside their ensemble's (the mean of the predicted probabilities, nnspec/train/ensemble.py)."""

from __future__ import annotations

import numpy as np


class EvaluateError(Exception):
    pass


def evaluate(spec, weights, *, data=None, split: str = "test", backend: str = "torch") -> dict:
    """Accuracy, per-class recall and the confusion matrix of one checkpoint, or of several
    (`weights` a list): then each model's accuracy and log loss, and the ensemble's (the mean
    of their predicted probabilities), whose predictions the per-class numbers describe."""
    from .. import checkpoint
    from . import ensemble
    from .loop import Options, TrainError, Trainer
    from .torch_backend import predictions

    files = [weights] if isinstance(weights, (str, bytes)) or hasattr(weights, "__fspath__") else list(weights)
    trainer = Trainer(spec, Options(data=data, backend=backend))
    try:
        splits = trainer._data()
    except TrainError as e:
        raise EvaluateError(str(e)) from None
    ds = {"test": splits.test, "val": splits.val, "train": splits.train}[split]
    if ds is None or len(ds.x) == 0:
        raise EvaluateError(f"the {splits.name} data has no {split} split"
                            + (" (set `validation` in the train section)" if split == "val" else ""))
    if ds.y.dtype.kind not in "iu":
        raise EvaluateError("evaluate reports classification accuracy; these targets are not class labels")
    try:
        b = trainer._backend()
    except TrainError as e:
        raise EvaluateError(str(e)) from None
    own = b.weights()
    outs = []
    for file in files:
        try:
            arrays = checkpoint.load(file)
        except checkpoint.CheckpointError as e:
            raise EvaluateError(str(e)) from None
        arrays = {k[6:] if k.startswith("model/") else k: v for k, v in arrays.items()}
        missing = [k for k in own if k not in arrays]
        wrong = [k for k in own if k in arrays and tuple(arrays[k].shape) != own[k].shape]
        if missing or wrong:
            what = (f"lacks {', '.join(missing[:3])}" if missing else
                    f"has {wrong[0]} of shape {tuple(arrays[wrong[0]].shape)}, the spec {own[wrong[0]].shape}")
            raise EvaluateError(f"{file}: does not fit {spec.graph.file}: it {what}")
        b.load_weights(arrays)
        outs.append(b.evaluate(ds.x))
    classes = int(splits.classes or (int(ds.y.max()) + 1))
    models = None
    if len(files) == 1:
        out = outs[0]
        pred = predictions(out, b.loss_name)
        loss = b.loss_numpy(out, ds.y)
    else:
        try:
            scored = ensemble.score(outs, ds.y, b.loss_name, [str(f) for f in files])
            p = np.mean([ensemble.probabilities(o, b.loss_name) for o in outs], axis=0)
        except ensemble.EnsembleError as e:
            raise EvaluateError(str(e)) from None
        models, pred, loss = scored["models"], p.argmax(axis=1), scored["ensemble"]["nll"]
        classes = max(classes, p.shape[1])
    confusion = np.zeros((classes, classes), np.int64)
    np.add.at(confusion, (ds.y, np.clip(pred, 0, classes - 1)), 1)
    support = confusion.sum(axis=1)
    recall = [float(confusion[c, c] / support[c]) if support[c] else None for c in range(classes)]
    ev = {"spec": spec.graph.file, "weights": str(files[0]) if len(files) == 1 else [str(f) for f in files],
          "data": splits.source, "split": split, "backend": b.name,
          "samples": int(len(ds.y)), "accuracy": float((pred == ds.y).mean()),
          "loss": loss, "per_class_recall": recall, "per_class_accuracy": recall,
          "support": support.tolist(), "confusion": confusion.tolist()}
    if models is not None:
        ev["models"] = models
        ev["best_member"] = max(m["accuracy"] for m in models)
    return ev


def render(ev: dict) -> str:
    lines = []
    if ev.get("models"):
        from .ensemble import table
        ens = {"models": ev["models"], "ensemble": {"accuracy": ev["accuracy"], "nll": ev["loss"]}}
        lines += [f"{len(ev['models'])} models on the {ev['split']} split ({ev['samples']:,} samples, "
                  f"{ev['data']}); the ensemble averages their predicted probabilities:", "",
                  *table(ens, "weights").splitlines(), ""]
        what = "ensemble "
    else:
        what = ""
    lines += [f"{what}{ev['split']} accuracy {ev['accuracy']:.4f} on {ev['samples']:,} samples "
              f"({ev['data']}), {'log ' if what else ''}loss {ev['loss']:.4f}", "",
              "per-class recall (the share of each class predicted as itself):"]
    for c, (acc, n) in enumerate(zip(ev["per_class_recall"], ev["support"])):
        lines.append(f"  class {c:>3}: " + ("   -   " if acc is None else f"{acc:.4f}") + f"  ({n} samples)")
    conf = ev["confusion"]
    width = max(3, len(str(max(max(r) for r in conf))))
    lines += ["", "confusion matrix (rows: true class, columns: predicted):",
              "       " + " ".join(f"{c:>{width}}" for c in range(len(conf)))]
    for c, row in enumerate(conf):
        lines.append(f"  {c:>3}: " + " ".join(f"{v:>{width}}" for v in row))
    return "\n".join(lines) + "\n"
