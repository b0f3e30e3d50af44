"""`nnspec evaluate`: accuracy, per-class accuracy (recall) and the confusion matrix of a
checkpoint on a data split, as the lecture code prints them."""

from __future__ import annotations

import numpy as np


class EvaluateError(Exception):
    pass


def evaluate(spec, weights, *, data=None, split: str = "test", backend: str = "torch") -> dict:
    from .. import checkpoint
    from . import data as datamod
    from .loop import Options, TrainError, Trainer
    from .torch_backend import predictions

    trainer = Trainer(spec, Options(data=data))
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
        arrays = checkpoint.load(weights)
    except checkpoint.CheckpointError as e:
        raise EvaluateError(str(e)) from None
    arrays = {k[6:] if k.startswith("model/") else k: v for k, v in arrays.items()}
    from .torch_backend import TorchBackend
    b = TorchBackend(spec, seed=trainer.seed, config=trainer.cfg)
    own = b.weights()
    missing = [k for k in own if k not in arrays]
    wrong = [k for k in own if k in arrays and tuple(arrays[k].shape) != own[k].shape]
    if missing or wrong:
        what = (f"lacks {', '.join(missing[:3])}" if missing else
                f"has {wrong[0]} of shape {tuple(arrays[wrong[0]].shape)}, the spec {own[wrong[0]].shape}")
        raise EvaluateError(f"{weights}: does not fit {spec.graph.file}: it {what}")
    b.load_weights(arrays)
    out = b.evaluate(ds.x)
    pred = predictions(out, b.loss_name)
    classes = int(splits.classes or (max(int(ds.y.max()), int(pred.max())) + 1))
    confusion = np.zeros((classes, classes), np.int64)
    np.add.at(confusion, (ds.y, np.clip(pred, 0, classes - 1)), 1)
    support = confusion.sum(axis=1)
    per_class = [float(confusion[c, c] / support[c]) if support[c] else None for c in range(classes)]
    return {"spec": spec.graph.file, "weights": str(weights), "data": splits.source, "split": split,
            "samples": int(len(ds.y)), "accuracy": float((pred == ds.y).mean()),
            "loss": b.loss_numpy(out, ds.y), "per_class_accuracy": per_class,
            "support": support.tolist(), "confusion": confusion.tolist()}


def render(ev: dict) -> str:
    lines = [f"{ev['split']} accuracy {ev['accuracy']:.4f} on {ev['samples']:,} samples "
             f"({ev['data']}), loss {ev['loss']:.4f}", "", "per-class accuracy:"]
    for c, (acc, n) in enumerate(zip(ev["per_class_accuracy"], ev["support"])):
        lines.append(f"  class {c:>3}: " + ("   -   " if acc is None else f"{acc:.4f}") + f"  ({n} samples)")
    conf = ev["confusion"]
    width = max(3, len(str(max(max(r) for r in conf))))
    lines += ["", "confusion matrix (rows: true class, columns: predicted):",
              "       " + " ".join(f"{c:>{width}}" for c in range(len(conf)))]
    for c, row in enumerate(conf):
        lines.append(f"  {c:>3}: " + " ".join(f"{v:>{width}}" for v in row))
    return "\n".join(lines) + "\n"
