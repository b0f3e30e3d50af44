"""The backend-neutral training loop: data, schedule, evaluation, early stopping, checkpoints,
logging and health checks. A backend (torch_backend.TorchBackend) builds the model and runs
one step; everything here is NumPy and plain Python.

Random numbers come from named streams (nnspec.rng) keyed by (seed, purpose, name, step): the
epoch's sample order from ("shuffle", "train", epoch), a step's augmentation from
("augment", "train", step), and in the backends a layer's dropout mask from ("dropout",
layer, step). Nothing else draws from them, so evaluating more often, running health checks
or plotting never changes the trained weights, and a resumed run needs only its step counter
to continue the same sequence — in either backend: a run checkpointed by one resumes in the
other (`--resume --backend numpy`).

The library never prints: progress reaches the caller as events (`on_event`), and the same
events go to the run's log.jsonl.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import rng
from . import runs
from .schedule import lr_at

KEEP_RECENT = 3


class TrainError(Exception):
    """A run that cannot start or continue, said in one line (the CLI prints it, exit 1)."""


class Interrupted(Exception):
    """Raised after the first Ctrl-C/SIGTERM once the step finished and a checkpoint was written."""

    def __init__(self, run_dir: Path, command: str):
        super().__init__(f"interrupted; resume with: {command}")
        self.run_dir, self.command = run_dir, command


@dataclass
class Result:
    """What `nnspec.train` returns; `report()` is the JSON of `--report`."""
    backend: str
    run_dir: Path
    epochs: int
    best_epoch: int | None
    train_loss: float | None
    val_loss: float | None
    val_accuracy: float | None
    test_accuracy: float | None
    seconds: float
    history: list[dict] = field(default_factory=list)
    health: list[dict] = field(default_factory=list)
    stopped: str = "epochs"
    model: Any = None  # the backend's model (torch: nn.Module), best weights restored
    class_weights: list[float] | None = None   # the effective weights of `class_weights`
    snapshots: dict | None = None               # the snapshot ensemble (`snapshots M`)

    def report(self) -> dict:
        return {"backend": self.backend, "run": str(self.run_dir), "epochs": self.epochs,
                "best_epoch": self.best_epoch, "train_loss": self.train_loss, "val_loss": self.val_loss,
                "val_accuracy": self.val_accuracy, "test_accuracy": self.test_accuracy,
                "seconds": round(self.seconds, 3), "stopped": self.stopped,
                "history": self.history, "health": self.health, "class_weights": self.class_weights,
                "snapshots": self.snapshots}


@dataclass
class Options:
    """Everything that can override the train section, from the CLI or `nnspec.train(**…)`."""
    data: str | None = None
    epochs: int | None = None
    batch: int | None = None
    lr: float | None = None
    seed: int | None = None
    run: str | os.PathLike | None = None
    runs_root: str | os.PathLike = "runs"
    resume: bool = False
    init_from: str | os.PathLike | None = None
    backend: str = "torch"
    device: str = "cpu"
    precision: str = "fp32"
    health: bool = True
    checkpoint_every: int = 0          # also checkpoint every N steps (0: at epoch ends only)
    max_steps: int | None = None       # stop after this many steps in total (tests, sanity)
    handle_signals: bool = False       # the CLI turns this on: Ctrl-C writes a checkpoint
    command: str | None = None         # how the run was started, for the resume hint
    folds: int | None = None           # k-fold cross-validation (overrides `folds`): members.py
    bootstrap: int | None = None       # M models on resamples, and their bagged ensemble


def effective_config(graph, o: Options):
    """The train section with the overrides applied."""
    from ..config import Choice, TrainConfig
    t = graph.train if graph.train is not None else TrainConfig()
    changes: dict[str, Any] = {}
    if o.epochs is not None:
        changes["epochs"] = o.epochs
    if o.batch is not None:
        changes["batch"] = o.batch
    if o.seed is not None:
        changes["seed"] = o.seed
    if o.lr is not None:
        opt = t.optimizer or Choice("sgd", {"lr": 0.01, "momentum": 0.0, "nesterov": False,
                                            "dampening": 0.0}, None)
        changes["optimizer"] = Choice(opt.name, {**opt.options, "lr": o.lr}, opt.span)
    return dataclasses.replace(t, **changes)


class Trainer:
    def __init__(self, spec, options: Options | None = None, on_event: Callable[[dict], None] | None = None,
                 splits=None):
        """`splits` (data.Splits): train on these instead of the data the spec or --data names
        (a fold or a resample of it: nnspec/train/members.py)."""
        self.o = options or Options()
        self._given_splits = splits
        self.on_event = on_event or (lambda e: None)
        self.spec = spec
        self.graph = spec.graph
        self.cfg = effective_config(self.graph, self.o)
        self.seed = self.cfg.seed if self.cfg.seed is not None else 0
        self.epochs = self.cfg.epochs or 10
        self.batch = self.cfg.batch or 32
        self._stop_requested = 0
        self.log: runs.EventLog | None = None

    # ---- events
    def emit(self, kind: str, **data) -> None:
        event = {"event": kind, **data}
        if self.log is not None and self.rank == 0 and kind != "step":  # steps: the live view only
            self.log.write(event)
        self.on_event(event)

    # ---- setup
    def _data(self):
        from . import data as datamod
        source = self.o.data if self.o.data is not None else self.cfg.data
        if self._given_splits is not None:
            source = self._given_splits
        if source is None:
            raise TrainError(f"{self.graph.file}: no data to train on: add `data digits` (or "
                             f"`data npz(\"train.npz\")`) to the train section, or pass --data")
        try:
            splits = source if self._given_splits is not None else load_data(self.graph, self.cfg, self.o, seed=self.seed)
            head = self.graph.nodes[self.graph.output].shape
            splits = datamod.check_against(splits, self.graph.input.shape, head[0] if len(head) == 1 else None)
            if self.cfg.augment:
                from . import augment
                augment.check(self.cfg.augment, splits.train.sample_shape, splits.classes)
        except datamod.DataError as e:
            raise TrainError(str(e)) from None
        return splits

    def _backend(self):
        if self.o.backend == "torch":
            from .torch_backend import TorchBackend
            try:
                return TorchBackend(self.spec, seed=self.seed, device=self.o.device,
                                    precision=self.o.precision, config=self.cfg)
            except RuntimeError as e:
                raise TrainError(str(e)) from None
        if self.o.backend == "numpy":
            from .numpy_backend import NumpyBackend
            try:
                return NumpyBackend(self.spec, seed=self.seed, device=self.o.device,
                                    precision=self.o.precision, config=self.cfg)
            except RuntimeError as e:
                raise TrainError(str(e)) from None
        raise TrainError(f"--backend {self.o.backend}: not available (backends: torch, numpy)")

    @property
    def rank(self) -> int:
        return getattr(self, "_rank", 0)

    # ---- the run
    def run(self) -> Result:
        t0 = time.perf_counter()
        self._rank, self._world = _distributed()
        splits = self._data()
        self.splits = splits
        self._check_full_batch(len(splits.train.x))
        backend = self.backend = self._backend()
        if self._world > 1:
            backend.distribute()
        run_dir = self._run_dir()
        state = self._start(run_dir)
        self.class_weights = self._class_weights()
        monitor = self._monitor_health(state)
        n = len(splits.train.x)
        steps_per_epoch = max(1, n // self.batch + (1 if n % self.batch > 1 else 0))
        base_lr = self._base_lr()
        previous = self._install_signals()
        stopped = "epochs"
        try:
            while state["epoch"] < self.epochs:
                epoch = state["epoch"]
                lr = lr_at(self.cfg.schedule, base_lr, epoch, self.epochs)
                order = self._order(epoch, n)
                while state["batch"] < steps_per_epoch:
                    b = state["batch"]
                    idx = order[b * self.batch:(b + 1) * self.batch]
                    if self._world > 1:
                        idx = idx[self._rank::self._world]
                    x, y = splits.train.x[idx], splits.train.y[idx]
                    if self.cfg.augment:
                        x, y = self._augment(x, y, state["step"])
                    if monitor is not None:  # keeps the weights only before a probed step
                        monitor.before_step(state["step"] + 1, last_in_epoch=b == steps_per_epoch - 1)
                    loss = backend.step(x, y, lr)
                    loss = self._all_mean(loss)
                    state["step"] += 1
                    state["batch"] += 1
                    state["loss_sum"] += loss * len(idx)
                    state["loss_n"] += len(idx)
                    if not math.isfinite(loss) or not math.isfinite(backend.last_grad_norm):
                        stopped = "non-finite loss"
                        self.emit("nonfinite", epoch=epoch, step=state["step"], loss=loss)
                        if monitor is not None:
                            self._report_health(state, monitor.nonfinite(x, y, loss))
                        self._restore_last_good(run_dir)
                        break
                    self.emit("step", epoch=epoch, batch=b + 1, batches=steps_per_epoch, step=state["step"],
                              loss=loss, lr=lr)
                    if monitor is not None:
                        self._report_health(state, monitor.after_step(state["step"], lr))
                    if self._stop_requested:
                        self._checkpoint(run_dir, state, status="interrupted")
                        raise Interrupted(run_dir, self._resume_command(run_dir))
                    if self.o.checkpoint_every and state["step"] % self.o.checkpoint_every == 0:
                        self._checkpoint(run_dir, state)
                    if self.o.max_steps is not None and state["step"] >= self.o.max_steps:
                        stopped = "max_steps"
                        break
                if stopped != "epochs":
                    if stopped == "max_steps":
                        self._checkpoint(run_dir, state)
                    break
                self._end_epoch(run_dir, state, lr, monitor)
                if state.get("stop"):
                    stopped = state["stop"]
                    break
        finally:
            self._restore_signals(previous)
        result = self._finish(run_dir, state, stopped, time.perf_counter() - t0)
        if self.log is not None:
            self.log.close()
        if self._world > 1:
            self.backend.close()
        return result

    def _order(self, epoch: int, n: int) -> np.ndarray:
        """The epoch's sample order, from the stream ("shuffle", "train", epoch) alone (so a
        resumed run draws it again): a permutation, or with `sampler balanced` n draws with
        replacement, sample i with probability ∝ 1 / (training samples of its class), as
        torch's WeightedRandomSampler(replacement=True) draws."""
        gen = rng.stream(self.seed, "shuffle", "train", epoch)
        if self.cfg.sampler is None or self.cfg.sampler.name == "shuffle":
            return rng.permutation(gen, n)
        y = self.splits.train.y
        p = 1.0 / np.bincount(y)[y]
        return gen.choice(n, size=n, replace=True, p=p / p.sum()).astype(np.int64)

    def _class_weights(self) -> list[float] | None:
        """The loss's class weights, handed to the backend and reported (event `class_weights`):
        `balanced` = n_samples / (n_classes · count_c) over the training samples (scikit-learn's
        rule), or the spec's own tuple."""
        cw, sampler = self.cfg.class_weights, self.cfg.sampler
        if cw is None and (sampler is None or sampler.name == "shuffle"):
            return None
        key = "class_weights" if cw is not None else "sampler"
        where = self._where(key)
        y = self.splits.train.y
        if y.dtype.kind not in "iu" or y.ndim != 1:
            raise TrainError(f"{where}: '{key}' needs class labels; the data {self.splits.name} has "
                             f"float targets")
        classes = int(self.splits.classes or int(y.max()) + 1)
        counts = np.bincount(y, minlength=classes)
        empty = [c for c in range(classes) if counts[c] == 0]
        if empty:
            raise TrainError(f"{where}: class {empty[0]} has no training samples: '{key} balanced' "
                             f"needs every class (counts: {', '.join(map(str, counts))})")
        if cw is None:
            return None
        if cw == "balanced":
            weights = [len(y) / (classes * int(c)) for c in counts]
        else:
            weights = list(cw)
            if len(weights) != classes:
                raise TrainError(f"{where}: class_weights gives {len(weights)} weights for "
                                 f"{classes} classes")
        self.backend.set_class_weights(np.array(weights))
        self.emit("class_weights", rule=cw if isinstance(cw, str) else "given", weights=weights,
                  counts=counts.tolist())
        return weights

    def _where(self, key: str) -> str:
        span = self.cfg.spans.get(key)
        return f"{span.file}:{span.line}:{span.column}" if span is not None else self.graph.file

    def _check_full_batch(self, n: int) -> None:
        """L-BFGS is a full-batch method (its line search and curvature pairs assume the same
        function at every evaluation): refuse minibatches, and the settings it has no place
        for, before anything is built."""
        opt = self.cfg.optimizer
        if opt is None or opt.name != "lbfgs":
            return
        where = f"{self.graph.file}:{opt.span.line}" if opt.span is not None else self.graph.file
        if self.batch < n:
            raise TrainError(f"{where}: optimizer lbfgs needs full-batch training, but batch "
                             f"{self.batch} < {n} training samples; set `batch {n}` (or larger) "
                             f"in the train section or pass --batch {n}")
        for key, why in (("clip", "its line search needs the true gradient"),
                         ("weight_decay", "write it as `l2` (a penalty in the loss it minimises)")):
            if getattr(self.cfg, key):
                raise TrainError(f"{where}: optimizer lbfgs does not take `{key}`: {why}")
        if self._world > 1:
            raise TrainError(f"{where}: optimizer lbfgs runs in one process only")

    def _base_lr(self) -> float:
        opt = self.cfg.optimizer
        return opt.options["lr"] if opt is not None else 0.01

    def _augment(self, x, y, step):
        from . import augment
        gen = rng.stream(self.seed, "augment", "train", step)
        return augment.apply(self.cfg.augment, x, y, gen, self.splits.classes)

    def _all_mean(self, value: float) -> float:
        if self._world <= 1:
            return value
        return self.backend.all_mean(value)

    # ---- epochs, evaluation, early stopping
    def _evaluate(self, dataset):
        if dataset is None or len(dataset.x) == 0:
            return None, None
        from .torch_backend import accuracy_of
        out = self.backend.evaluate(dataset.x)
        return self.backend.loss_numpy(out, dataset.y), accuracy_of(out, dataset.y, self.backend.loss_name)

    def _end_epoch(self, run_dir: Path, state: dict, lr: float, monitor=None) -> None:
        epoch = state["epoch"]
        train_loss = state["loss_sum"] / max(1, state["loss_n"])
        val_loss, val_acc = self._evaluate(self.splits.val)
        row = {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss,
               "val_accuracy": val_acc, "lr": lr}
        state["history"].append(row)
        improved = self._track(state, row)
        if monitor is not None:
            self._report_health(state, monitor.end_epoch(row, state["history"], first_epoch=epoch == 0))
        state["epoch"] += 1
        state["batch"] = 0
        state["loss_sum"] = 0.0
        state["loss_n"] = 0
        if improved and self.rank == 0:
            runs.save_checkpoint(run_dir / runs.BEST, {f"model/{k}": v for k, v in self.backend.weights().items()},
                                 {"epoch": epoch + 1, "kind": "best"})
        if self.cfg.snapshots and state["epoch"] in self._cycle_ends() and self.rank == 0:
            i = self._cycle_ends().index(state["epoch"]) + 1
            runs.save_checkpoint(run_dir / snapshot_name(i),
                                 {f"model/{k}": v for k, v in self.backend.weights().items()},
                                 {"epoch": state["epoch"], "kind": "snapshot", "cycle": i})
            self.emit("snapshot", cycle=i, epoch=state["epoch"], path=str(run_dir / snapshot_name(i)))
        self._checkpoint(run_dir, state)
        self.emit("epoch", **row, best_epoch=state["best_epoch"], epochs=self.epochs)

    def _cycle_ends(self) -> list[int]:
        from .schedule import cycle_ends
        return cycle_ends(self.cfg.schedule, self.epochs)

    def _snapshot_ensemble(self, run_dir: Path) -> dict | None:
        """The last `snapshots` cycle-end snapshots, each evaluated alone and as an ensemble
        (the mean of their predicted probabilities), on the validation and test splits."""
        from . import ensemble
        taken = [i for i in range(1, len(self._cycle_ends()) + 1) if (run_dir / snapshot_name(i)).exists()]
        chosen = taken[-self.cfg.snapshots:]
        if not chosen:
            return {"wanted": self.cfg.snapshots, "cycles": [], "splits": {}}
        final = self.backend.weights()
        members = []
        for i in chosen:
            arrays = runs.load_checkpoint(run_dir / snapshot_name(i)).arrays
            self.backend.load_weights({k[6:]: v for k, v in arrays.items() if k.startswith("model/")})
            members.append({name: self.backend.evaluate(ds.x) for name, ds in self._scored_splits()})
        self.backend.load_weights(final)
        out = {"wanted": self.cfg.snapshots, "cycles": chosen,
               "files": [snapshot_name(i) for i in chosen], "splits": {}}
        for name, ds in self._scored_splits():
            out["splits"][name] = ensemble.score([m[name] for m in members], ds.y, self.backend.loss_name,
                                                 [snapshot_name(i) for i in chosen])
        return out

    def _scored_splits(self):
        for name in ("val", "test"):
            ds = getattr(self.splits, name, None)
            if ds is not None and len(ds.x):
                yield name, ds

    def _monitor(self) -> tuple[str, float, int | None]:
        es = self.cfg.early_stopping
        if es:
            return es.get("monitor", "val_loss"), es.get("min_delta", 0.0), es.get("patience", 10)
        return ("val_loss" if self.splits.val is not None and len(self.splits.val.x) else "loss"), 0.0, None

    def _track(self, state: dict, row: dict) -> bool:
        monitor, min_delta, patience = self._monitor()
        key = {"loss": "train_loss", "accuracy": "val_accuracy"}.get(monitor, monitor)
        value = row.get(key)
        if value is None:
            value = row["train_loss"]
        sign = 1.0 if "accuracy" in monitor else -1.0
        best = state["best_value"]
        if best is None or sign * (value - best) > min_delta:
            state["best_value"], state["best_epoch"], state["bad_epochs"] = value, row["epoch"], 0
            return True
        state["bad_epochs"] += 1
        if patience is not None and state["bad_epochs"] >= patience:
            state["stop"] = "early stopping"
        return False

    # ---- health checks (nnspec/train/health.py): findings go to state["health"] and as events
    def _monitor_health(self, state: dict):
        from . import health
        try:
            settings = health.settings(self.cfg.health, self.o.health)
        except health.HealthConfigError as e:
            raise TrainError(f"{self.graph.file}: {e}") from None
        if not settings.enabled or self.backend.name != "torch":
            return None
        monitor = health.Monitor(self.backend, self.splits, settings, seed=self.seed,
                                 base_lr=self._base_lr(), config=self.cfg)
        monitor.seen.update((f["code"], f["layer"]) for f in state.setdefault("health", []))
        self._report_health(state, monitor.start(fresh=state["step"] == 0))
        return monitor

    def _report_health(self, state: dict, found) -> None:
        from . import health
        from ..errors import render
        for d, layer in found:
            f = health.finding(d, layer, state["step"], state["epoch"])
            state["health"].append(f)
            self.emit("health", **f, rendered=render(d, self.graph.source))

    # ---- checkpoints and resume
    def _run_dir(self) -> Path:
        if self.o.run is not None:
            path = Path(self.o.run).expanduser()
        elif self.o.resume:
            raise TrainError("--resume needs --run DIR (the run directory to continue)")
        else:
            path = runs.new_run_dir(self.graph.file, self.o.runs_root)
        if self._world > 1:  # every process writes to (rank 0) or reads from the same folder
            path = Path(self.backend.broadcast(str(path)))
        if self.rank == 0:
            try:
                runs.prepare(path)
            except runs.RunError as e:
                raise TrainError(str(e)) from None
        self.log = runs.EventLog(path / runs.LOG) if self.rank == 0 else None
        return path

    def _fresh_state(self) -> dict:
        return {"epoch": 0, "batch": 0, "step": 0, "loss_sum": 0.0, "loss_n": 0, "history": [],
                "best_value": None, "best_epoch": None, "bad_epochs": 0, "health": []}

    def _start(self, run_dir: Path) -> dict:
        if self.o.resume:
            return self._resume(run_dir)
        if (run_dir / runs.MANIFEST).exists():
            raise TrainError(f"{run_dir}: already holds a run; add --resume to continue it, or choose "
                             f"another --run")
        if self.o.init_from is not None:
            self._init_from(Path(self.o.init_from))
        state = self._fresh_state()
        self.emit("start", run=str(run_dir), backend=self.backend.name, epochs=self.epochs,
                  batch=self.batch, seed=self.seed, samples=len(self.splits.train.x),
                  data=self.splits.source)
        self._write_manifest(run_dir, state, "running")
        return state

    def _resume(self, run_dir: Path) -> dict:
        try:
            manifest = runs.read_manifest(run_dir)
            ck = runs.load_checkpoint(run_dir / manifest.get("last", runs.LAST))
        except runs.RunError as e:
            raise TrainError(str(e)) from None
        changed = runs.first_difference(manifest.get("architecture", []), self.graph)
        if changed:
            raise TrainError(f"cannot resume {run_dir}: {changed}; start a new run, or use "
                             f"--init-from {run_dir / runs.BEST} to start from its weights")
        # the backend may change: both write the same checkpoint names with the same meanings
        # (model/…, optim/<param>/<slot>, step), so a run continues on its trajectory
        for key in ("seed", "batch", "data"):
            was, now = manifest.get(key), self._manifest_fields()[key]
            if was != now:
                raise TrainError(f"cannot resume {run_dir}: {key} was {was!r}, now {now!r} "
                                 f"(pass the same settings, or start a new run)")
        try:
            self.backend.load_state(ck.arrays)
        except (KeyError, ValueError, RuntimeError) as e:
            raise TrainError(f"{run_dir / runs.LAST}: does not fit this network ({e})") from None
        state = ck.state
        if "step" not in ck.arrays:  # a checkpoint from before the backends kept their step
            self.backend.steps = state["step"]
        self.emit("resume", run=str(run_dir), epoch=state["epoch"], batch=state["batch"], step=state["step"],
                  backend=self.backend.name, was=manifest.get("backend"))
        return state

    def _init_from(self, path: Path) -> None:
        """Weights only (transfer learning): tensors whose name and shape match are loaded; the
        rest keep their initial values; the optimizer and trackers start fresh."""
        from .. import checkpoint
        try:
            arrays = checkpoint.load(path)
        except checkpoint.CheckpointError as e:
            raise TrainError(str(e)) from None
        arrays = {k[6:] if k.startswith("model/") else k: v for k, v in arrays.items()}
        own = self.backend.weights()
        loaded = {k: v for k, v in arrays.items() if k in own and tuple(v.shape) == own[k].shape}
        skipped = sorted(k for k in arrays if k not in loaded)
        new = sorted(k for k in own if k not in loaded)
        self.backend.load_weights(loaded, strict=False)
        frozen = sorted(self.backend.frozen())
        self.init_report = {"loaded": sorted(loaded), "skipped": skipped, "new": new, "frozen": frozen}
        self.emit("init_from", path=str(path), **self.init_report)

    def _manifest_fields(self) -> dict:
        return {"seed": self.seed, "batch": self.batch, "data": self.splits.source, "backend": self.backend.name}

    def _write_manifest(self, run_dir: Path, state: dict, status: str) -> None:
        if self.rank != 0:
            return
        from .. import __version__
        m = {"nnspec": __version__, "status": status, "spec": self.graph.file,
             "fingerprint": runs.fingerprint(self.graph), "architecture": runs.architecture(self.graph),
             **self._manifest_fields(), "epochs": self.epochs, "epoch": state["epoch"],
             "batch_in_epoch": state["batch"], "step": state["step"], "last": runs.LAST,
             "best": runs.BEST if (run_dir / runs.BEST).exists() else None,
             "recent": state.get("recent", []), "resume": self._resume_command(run_dir)}
        runs.write_manifest(run_dir, m)

    def _checkpoint(self, run_dir: Path, state: dict, status: str = "running") -> None:
        self._barrier()
        if self.rank == 0:
            arrays = self.backend.state()
            snapshot = {k: v for k, v in state.items() if k != "recent"}
            name = f"step-{state['step']:08d}.safetensors"
            runs.save_checkpoint(run_dir / runs.LAST, arrays, snapshot)
            runs.keep_copy(run_dir / runs.LAST, run_dir / name)
            recent = [r for r in state.get("recent", []) if r != name] + [name]
            for old in recent[:-KEEP_RECENT]:
                (run_dir / old).unlink(missing_ok=True)
            state["recent"] = recent[-KEEP_RECENT:]
            self._write_manifest(run_dir, state, status)
        self._barrier()

    def _restore_last_good(self, run_dir: Path) -> None:
        last = run_dir / runs.LAST
        if last.exists():
            self.backend.load_state(runs.load_checkpoint(last).arrays)

    def _finish(self, run_dir: Path, state: dict, stopped: str, seconds: float) -> Result:
        best = run_dir / runs.BEST
        self.final_weights = runs.LAST  # the file whose weights the run ends with
        if (self.cfg.early_stopping or stopped == "non-finite loss") and best.exists():
            self.final_weights = runs.BEST
            weights = runs.load_checkpoint(best).arrays
            self.backend.load_weights({k[6:]: v for k, v in weights.items() if k.startswith("model/")})
        test = getattr(self.splits, "test", None)
        _, test_acc = self._evaluate(test) if test is not None else (None, None)
        hist = state["history"]
        last = hist[-1] if hist else {}
        result = Result(self.backend.name, run_dir, len(hist), state["best_epoch"],
                        last.get("train_loss"), last.get("val_loss"), last.get("val_accuracy"), test_acc,
                        seconds, hist, state.get("health", []), stopped, self.backend.model,
                        self.class_weights)
        if self.cfg.snapshots and self.rank == 0:
            result.snapshots = self._snapshot_ensemble(run_dir)
            self.emit("snapshots", **result.snapshots)
        self._write_manifest(run_dir, state, "finished")
        self.emit("end", **{k: v for k, v in result.report().items() if k not in ("history", "health")})
        return result

    def _resume_command(self, run_dir: Path) -> str:
        base = self.o.command or f"nnspec train {self.graph.file}"
        if "--run" not in base:
            base += f" --run {run_dir}"
        if "--resume" not in base:
            base += " --resume"
        return base

    # ---- distributed
    def _barrier(self) -> None:
        if getattr(self, "_world", 1) > 1:
            self.backend.barrier()

    # ---- signals: first Ctrl-C finishes the step and checkpoints; a second one exits at once
    def _install_signals(self):
        if not self.o.handle_signals:
            return None

        def handler(signum, frame):
            self._stop_requested += 1
            if self._stop_requested >= 2:
                os._exit(130)  # the last good checkpoint is untouched: writes are atomic
            self.emit("interrupt", signal=signal.Signals(signum).name)

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        return previous

    @staticmethod
    def _restore_signals(previous) -> None:
        if previous:
            for s, h in previous.items():
                signal.signal(s, h)


def snapshot_name(cycle: int) -> str:
    return f"snapshot-{cycle}.safetensors"


def load_data(graph, cfg, o: Options, *, seed: int | None = None):
    """The data the spec's train section (or --data) names, split and normalised: data.Splits."""
    from . import data as datamod
    source = o.data if o.data is not None else cfg.data
    return datamod.load(source, validation=cfg.validation or 0.0,
                        seed=seed if seed is not None else (cfg.seed or 0),
                        root=(Path(graph.file).parent if o.data is None and _is_file(graph.file) else None),
                        input_shape=graph.input.shape)


def _is_file(name: str) -> bool:
    return bool(name) and not name.startswith("<") and Path(name).is_file()


def _distributed() -> tuple[int, int]:
    """(rank, world size) under torchrun; (0, 1) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return 0, 1
    return int(os.environ.get("RANK", "0")), world


def train(spec, **overrides) -> Result:
    """Train a spec (a Spec or a path to a .nn file) as its train section says; keyword
    arguments override it (data, epochs, batch, lr, seed, run, resume, init_from, backend,
    device, precision, health, …: see `Options`)."""
    from ..backends.torch import as_spec
    network_args = overrides.pop("set", None) or {}
    on_event = overrides.pop("on_event", None)
    spec = as_spec(spec, network_args)
    unknown = set(overrides) - {f.name for f in dataclasses.fields(Options)}
    if unknown:
        raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
    options = Options(**overrides)
    if options.folds or options.bootstrap or (spec.graph.train is not None and spec.graph.train.folds):
        from .members import run_members
        return run_members(spec, options, on_event)
    return Trainer(spec, options, on_event).run()


__all__ = ["Interrupted", "Options", "Result", "TrainError", "Trainer", "train"]
