"""Runs of several members: k-fold cross-validation (`folds K`, `--folds K`) and bagging
(`--bootstrap M`). Each member is a normal, resumable run in a folder of its own:

    DIR/summary.json        what the runs are, each finished member's numbers, mean ± std
    DIR/fold-1/ … fold-K/   (or bootstrap-1/ … bootstrap-M/) a run directory each (runs.py),
                            plus result.json once the member finished

Running the same command again skips the finished members (their result.json) and resumes
the interrupted one from its last checkpoint; nothing else is retrained.

Cross-validation deals the non-test samples (the training and validation splits together)
into K stratified folds: within each class, in the order of one raw draw per sample from the
stream ("split", "folds") of the run seed, the samples go round-robin to folds 1..K (the
round continues from class to class), so every fold holds each class's share to within one
sample. Fold k trains on the other K−1 folds and validates on fold k (its "held-out" numbers:
the final model's, after early stopping restored the best weights if it is on).

Bagging trains member m on n draws with replacement from the n training samples (the stream
("split", "bootstrap", m)); the validation and test splits are the source's, so the members'
bagged ensemble (the mean of their predicted probabilities) is scored beside each member on
the same samples. Each member's out-of-bag samples (never drawn) give its out-of-bag accuracy.

Member k's seed (its initial weights, dropout, order) is drawn from ("split", "<kind>.seed",
k) of the run seed. Each member is normalised with the statistics of its own training samples.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .. import rng
from . import runs
from .loop import Options, Trainer, TrainError, effective_config

SUMMARY = "summary.json"
RESULT = "result.json"


@dataclass
class MembersResult:
    """What `nnspec.train` returns for folds or bootstrap; `report()` is summary.json."""
    kind: str                      # "folds" | "bootstrap"
    run_dir: Path
    summary: dict
    results: list = field(default_factory=list)   # the loop.Result of members trained now

    def report(self) -> dict:
        return self.summary


def member_seed(seed: int, kind: str, k: int) -> int:
    """Member k's seed, derived from the run seed."""
    return int(rng.stream(seed, "split", f"{kind}.seed", k).integers(0, 2 ** 31))


def fold_of(y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """The fold (0..k-1) of every sample: stratified by class (see the module docstring)."""
    keys = rng.stream(seed, "split", "folds").bit_generator.random_raw(len(y))
    groups = ([np.flatnonzero(y == c) for c in np.unique(y)] if y.dtype.kind in "iu" and y.ndim == 1
              else [np.arange(len(y))])
    fold = np.empty(len(y), np.int64)
    start = 0
    for idx in groups:
        idx = idx[np.argsort(keys[idx], kind="stable")]
        fold[idx] = (start + np.arange(len(idx))) % k
        start += len(idx)
    return fold


def resample(n: int, seed: int, m: int) -> np.ndarray:
    """Member m's bootstrap sample: n indices drawn uniformly with replacement from 0..n-1."""
    return rng.stream(seed, "split", "bootstrap", m).integers(0, n, size=n, dtype=np.int64)


def mean_std(values) -> tuple[float | None, float | None]:
    """Mean and standard deviation (population: divided by the count, as numpy.std) of the
    values that are not None."""
    v = [x for x in values if x is not None]
    if not v:
        return None, None
    a = np.asarray(v, np.float64)
    return float(a.mean()), float(a.std())


class Members:
    def __init__(self, spec, options: Options, on_event: Callable[[dict], None] | None):
        self.spec, self.o = spec, options
        self.on_event = on_event or (lambda e: None)
        self.graph = spec.graph
        self.cfg = effective_config(self.graph, options)
        self.seed = self.cfg.seed if self.cfg.seed is not None else 0
        folds = options.folds or self.cfg.folds
        if options.folds is not None and options.folds < 2:
            raise TrainError(f"--folds {options.folds}: cross-validation needs at least 2 folds")
        if options.bootstrap is not None and options.bootstrap < 2:
            raise TrainError(f"--bootstrap {options.bootstrap}: bagging needs at least 2 models")
        if folds and options.bootstrap:
            raise TrainError("folds and --bootstrap are two ways to resample: choose one")
        self.kind, self.count = ("folds", folds) if folds else ("bootstrap", options.bootstrap)
        self.prefix = "fold" if self.kind == "folds" else "bootstrap"

    def emit(self, event: str, **data) -> None:
        self.on_event({"event": event, **data})

    # ---- data
    def _pool(self):
        from . import data as datamod
        from .loop import _is_file
        source = self.o.data if self.o.data is not None else self.cfg.data
        if source is None:
            raise TrainError(f"{self.graph.file}: no data to train on: add `data digits` to the train "
                             f"section, or pass --data")
        try:
            return datamod.load_pool(source, validation=self.cfg.validation or 0.0, seed=self.seed,
                                     root=(Path(self.graph.file).parent
                                           if self.o.data is None and _is_file(self.graph.file) else None),
                                     input_shape=self.graph.input.shape)
        except datamod.DataError as e:
            raise TrainError(str(e)) from None

    def member_indices(self, pool, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(train, validation, out-of-bag) indices into the pool of member k (1-based)."""
        if self.kind == "folds":
            fold = self._folds
            return np.flatnonzero(fold != k - 1), np.flatnonzero(fold == k - 1), np.zeros(0, np.int64)
        train = resample(pool.n_train, self.seed, k)
        oob = np.setdiff1d(np.arange(pool.n_train), train)
        return train, np.arange(pool.n_train, len(pool.y)), oob

    def member_splits(self, pool, k: int):
        train, val, _ = self.member_indices(pool, k)
        what = "fold" if self.kind == "folds" else "bootstrap sample"
        return pool.splits(train, val, f"{what} {k} of {self.count} (seed {self.seed})")

    # ---- the run
    def run(self) -> MembersResult:
        pool = self._pool()
        if self.kind == "folds":
            if len(pool.y) < self.count:
                raise TrainError(f"{self.count} folds of {len(pool.y)} samples: some fold would be empty")
            self._folds = fold_of(pool.y, self.count, self.seed)
        run_dir = self._run_dir()
        summary = self._open_summary(run_dir, pool)
        self.emit("members", kind=self.kind, count=self.count, run=str(run_dir), seed=self.seed)
        trained = []
        for k in range(1, self.count + 1):
            done = self._read_result(run_dir, k)
            if done is not None:
                self.emit("member", kind=self.kind, index=k, count=self.count, status="done",
                          seed=done["seed"])
                summary["members"][k - 1] = done
                continue
            result, record = self._train_member(run_dir, pool, k)
            trained.append(result)
            summary["members"][k - 1] = record
            self._write_summary(run_dir, summary)
        self._conclude(run_dir, pool, summary)
        summary["status"] = "finished"
        self._write_summary(run_dir, summary)
        self.emit("members_end", **summary)
        return MembersResult(self.kind, run_dir, summary, trained)

    def _run_dir(self) -> Path:
        if self.o.run is not None:
            path = Path(self.o.run).expanduser()
        elif self.o.resume:
            raise TrainError(f"--resume needs --run DIR (the folder of the {self.kind} to continue)")
        else:
            path = runs.new_run_dir(self.graph.file, self.o.runs_root)
        try:
            runs.prepare(path)
        except runs.RunError as e:
            raise TrainError(str(e)) from None
        if (path / runs.MANIFEST).exists():
            raise TrainError(f"{path}: holds a single run; choose another --run for {self.kind}")
        return path

    def _plan(self) -> dict:
        return {"kind": self.kind, "count": self.count, "seed": self.seed, "spec": self.graph.file,
                "fingerprint": runs.fingerprint(self.graph)}

    def _open_summary(self, run_dir: Path, pool) -> dict:
        plan = self._plan()
        file = run_dir / SUMMARY
        if file.exists():
            try:
                old = json.loads(file.read_text("utf-8"))
            except (OSError, ValueError) as e:
                raise TrainError(f"{file}: unreadable ({e})") from None
            for key in ("kind", "count", "seed", "fingerprint"):
                if old.get(key) != plan[key]:
                    raise TrainError(f"{run_dir}: was started with {key} {old.get(key)!r}, now "
                                     f"{plan[key]!r}; run the same command again, or choose another --run")
        summary = {**plan, "status": "running", "data": pool.source, "samples": int(len(pool.y)),
                   "members": [None] * self.count}
        self._write_summary(run_dir, summary)
        return summary

    def _write_summary(self, run_dir: Path, summary: dict) -> None:
        with runs.checkpoint.atomic_write(run_dir / SUMMARY, "w") as f:
            json.dump(summary, f, indent=2, allow_nan=True)
            f.write("\n")

    def member_dir(self, run_dir: Path, k: int) -> Path:
        return run_dir / f"{self.prefix}-{k}"

    def _read_result(self, run_dir: Path, k: int) -> dict | None:
        file = self.member_dir(run_dir, k) / RESULT
        if not file.exists():
            return None
        try:
            return json.loads(file.read_text("utf-8"))
        except (OSError, ValueError) as e:
            raise TrainError(f"{file}: unreadable ({e}); delete it to train member {k} again") from None

    def _train_member(self, run_dir: Path, pool, k: int):
        folder = self.member_dir(run_dir, k)
        resume = (folder / runs.MANIFEST).exists()
        seed = member_seed(self.seed, self.kind, k)
        splits = self.member_splits(pool, k)
        base = self.o.command or f"nnspec train {self.graph.file}"
        if "--run" not in base:
            base += f" --run {run_dir}"
        opts = dataclasses.replace(self.o, run=folder, resume=resume, seed=seed, folds=None, bootstrap=None,
                                   command=base)
        self.emit("member", kind=self.kind, index=k, count=self.count, seed=seed,
                  status="resume" if resume else "start", samples=len(splits.train.x))
        label = f"{self.prefix} {k}/{self.count}"
        trainer = Trainer(self.spec, opts, lambda e: self.on_event({**e, "member": label}), splits=splits)
        result = trainer.run()
        held_loss, held_acc = trainer._evaluate(trainer.splits.val)
        y = trainer.splits.train.y
        counts = (np.bincount(y, minlength=int(trainer.splits.classes or 0)).tolist()
                  if y.dtype.kind in "iu" and y.ndim == 1 else None)
        record = {"index": k, "seed": seed, "run": folder.name, "weights": trainer.final_weights,
                  "samples": int(len(y)), "held_out": int(len(trainer.splits.val.y)) if trainer.splits.val else 0,
                  "class_counts": counts, "epochs": result.epochs, "best_epoch": result.best_epoch,
                  "stopped": result.stopped, "train_loss": result.train_loss,
                  "val_loss": held_loss, "val_accuracy": held_acc, "test_accuracy": result.test_accuracy,
                  "class_weights": result.class_weights}
        with runs.checkpoint.atomic_write(folder / RESULT, "w") as f:
            json.dump(record, f, indent=2, allow_nan=True)
            f.write("\n")
        return result, record

    # ---- the summary
    def _conclude(self, run_dir: Path, pool, summary: dict) -> None:
        members = summary["members"]
        stats = {}
        for key in ("val_loss", "val_accuracy", "test_accuracy"):
            mean, std = mean_std(m[key] for m in members)
            stats[key] = {"mean": mean, "std": std}
        summary["mean_std"] = stats
        if self.kind == "bootstrap":
            summary["bagging"] = self._bag(run_dir, pool, members)

    def _bag(self, run_dir: Path, pool, members) -> dict:
        """Every member scored on the source's validation and test splits (each normalised as
        its member was trained) and on its out-of-bag samples; the bagged ensemble beside them."""
        from . import ensemble
        backend = Trainer(self.spec, dataclasses.replace(self.o, folds=None, bootstrap=None))._backend()
        outputs: dict[str, list] = {"val": [], "test": []}
        ys = {}
        for k, m in enumerate(members, 1):
            splits = self.member_splits(pool, k)
            arrays = runs.load_checkpoint(self.member_dir(run_dir, k) / m["weights"]).arrays
            backend.load_weights({a[6:]: v for a, v in arrays.items() if a.startswith("model/")})
            for name in outputs:
                ds = getattr(splits, name)
                if ds is not None and len(ds.x):
                    outputs[name].append(backend.evaluate(_fit(ds.x, self.graph)))
                    ys[name] = ds.y
            _, _, oob = self.member_indices(pool, k)
            if len(oob) and pool.y.dtype.kind in "iu":
                x = splits.normalize(pool.x[oob])
                p = ensemble.probabilities(backend.evaluate(_fit(x, self.graph)), backend.loss_name)
                m["oob_accuracy"] = float((p.argmax(axis=1) == pool.y[oob]).mean())
                m["oob_samples"] = int(len(oob))
        names = [f"{self.prefix}-{k}" for k in range(1, len(members) + 1)]
        try:
            return {name: ensemble.score(outs, ys[name], backend.loss_name, names)
                    for name, outs in outputs.items() if outs}
        except ensemble.EnsembleError as e:
            raise TrainError(str(e)) from None


def _fit(x: np.ndarray, graph) -> np.ndarray:
    """Samples in the layout of the spec's input (digits 1x8x8 -> 64)."""
    shape = tuple(graph.input.shape)
    return x if x.shape[1:] == shape else x.reshape((len(x),) + shape)


def run_members(spec, options: Options, on_event=None) -> MembersResult:
    return Members(spec, options, on_event).run()


def table(summary: dict) -> str:
    """The per-member table and mean ± std of summary.json (and the bagged ensemble)."""
    prefix = "fold" if summary["kind"] == "folds" else "model"
    rows = [(f"{prefix} {m['index']}", f"{m['samples']:,}", str(m["epochs"]), _f(m["val_loss"]),
             _f(m["val_accuracy"]), _f(m["test_accuracy"]), _f(m.get("oob_accuracy")))
            for m in summary["members"]]
    head = (prefix, "train samples", "epochs",
            "held-out loss" if summary["kind"] == "folds" else "val loss",
            "held-out acc" if summary["kind"] == "folds" else "val acc", "test acc", "out-of-bag acc")
    keep = [i for i in range(len(head)) if i != 6 or summary["kind"] == "bootstrap"]
    st = summary.get("mean_std", {})
    rows.append(("mean ± std", "", "", *(_pm(st.get(k)) for k in ("val_loss", "val_accuracy", "test_accuracy")),
                 ""))
    rows = [head] + rows
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(r[i].rjust(widths[i]) if i else r[i].ljust(widths[i]) for i in keep).rstrip()
             for r in rows]
    out = "\n".join(lines) + "\n"
    if summary.get("bagging"):
        from .ensemble import table as etable
        for name, scored in summary["bagging"].items():
            out += f"\nbagged ensemble on the {name} split ({scored['samples']:,} samples):\n" + etable(scored)
    return out


def _f(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def _pm(s) -> str:
    if not s or s.get("mean") is None:
        return "-"
    return f"{s['mean']:.4f} ± {s['std']:.4f}"
