"""Ensembles of classifiers: the mean of their predicted class probabilities (NumPy only).

Used by the snapshot ensemble at the end of a run (`snapshots M`), by bagging
(`--bootstrap M`, nnspec/train/members.py) and by `nnspec evaluate --weights a b c`.

>>> import numpy as np
>>> a = np.log(np.array([[0.9, 0.1], [0.4, 0.6]]))      # logits of two models
>>> b = np.log(np.array([[0.2, 0.8], [0.3, 0.7]]))
>>> s = score([a, b], np.array([0, 1]), "cross_entropy", ["a", "b"])
>>> [m["accuracy"] for m in s["models"]], s["ensemble"]["accuracy"]
([1.0, 0.5], 1.0)
>>> round(s["ensemble"]["nll"], 4)                      # -(ln 0.55 + ln 0.65) / 2
0.5143
"""

from __future__ import annotations

import numpy as np

# What the network's output is, by loss: logits (softmax), log-probabilities (exp), one
# probability (bce) or one logit (bce_logits) of class 1. Other losses give scores.
_PROBABILISTIC = ("cross_entropy", "nll", "bce", "bce_logits")


class EnsembleError(ValueError):
    """Outputs that cannot be averaged as probabilities (one line)."""


def probabilities(out: np.ndarray, loss: str = "cross_entropy") -> np.ndarray:
    """(N, C) class probabilities from a network's outputs, as its loss reads them."""
    if loss not in _PROBABILISTIC:
        raise EnsembleError(f"an ensemble averages predicted probabilities; the outputs of a network "
                            f"trained with loss {loss} are scores, not probabilities (use one of "
                            f"{', '.join(_PROBABILISTIC)})")
    out = np.asarray(out, np.float64)
    if out.ndim != 2:
        raise EnsembleError(f"an ensemble needs one row of class outputs per sample, got shape {out.shape}")
    if out.shape[1] == 1:
        p1 = out[:, 0] if loss == "bce" else 1.0 / (1.0 + np.exp(-out[:, 0]))
        return np.stack([1.0 - p1, p1], axis=1)
    if loss == "nll":
        return np.exp(out)
    if loss in ("bce", "bce_logits"):   # independent labels: normalised to sum to 1
        p = out if loss == "bce" else 1.0 / (1.0 + np.exp(-out))
        return p / p.sum(axis=1, keepdims=True)
    z = np.exp(out - out.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def metrics(p: np.ndarray, y: np.ndarray) -> dict:
    """Accuracy and the mean negative log-likelihood of the true class (log loss)."""
    pred = p.argmax(axis=1)
    nll = float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None)).mean())
    return {"accuracy": float((pred == y).mean()), "nll": nll}


def score(outputs, y: np.ndarray, loss: str, names) -> dict:
    """Each model's accuracy and log loss, and those of their ensemble (mean probability)."""
    probs = [probabilities(o, loss) for o in outputs]
    models = [{"name": str(n), **metrics(p, y)} for n, p in zip(names, probs)]
    return {"samples": int(len(y)), "models": models, "ensemble": metrics(np.mean(probs, axis=0), y),
            "best_member": max(m["accuracy"] for m in models)}


def table(scored: dict, title: str = "model") -> str:
    """The text table of `score`: one line per model, then the ensemble."""
    width = max([len(title), len("ensemble")] + [len(m["name"]) for m in scored["models"]])
    lines = [f"{title:<{width}}  accuracy  log loss"]
    for m in scored["models"]:
        lines.append(f"{m['name']:<{width}}  {m['accuracy']:>8.4f}  {m['nll']:>8.4f}")
    e = scored["ensemble"]
    lines.append(f"{'ensemble':<{width}}  {e['accuracy']:>8.4f}  {e['nll']:>8.4f}")
    return "\n".join(lines) + "\n"
