"""Hyperparameter search on Optuna (the optional extra `nnspec[search]`): each trial is an
ordinary training run (`Trainer`) with a train section changed by the trial's values
(nnspec/train/space.py), ranked by its best validation accuracy.

    DIR/study.db            the Optuna study (SQLite; or any database URL: `--storage`)
    DIR/trials/0007/        trial 7's run directory (manifest, checkpoints, log.jsonl, losses.json)
    DIR/fine/0003/          the fine stage's trials (`--refine K`)

The study holds everything: a search continues where it stopped when the same command runs
again, and several processes (`--jobs N`) or machines (one `--storage` URL) join it. A trial
left running by a process that died is failed and queued again with the same values; it
resumes from its last checkpoint. A trial whose loss became non-finite, or that could not
train, is a failed trial with its reason (user attribute `failed`): the search goes on.

Random draws are keyed like every other random number of nnspec (nnspec.rng, purpose
"search", name = the hyperparameter, step = the trial number): trial 7 of seed 0 draws the
same values whichever process runs it, so a random search is reproducible under --jobs.

The library never prints: finished trials reach the caller as `TrialReport`s. Optuna is
imported inside the functions that need it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .. import rng
from . import space as spacemod
from .space import Dim

STUDY_FILE = "study.db"
LOSSES = "losses.json"
STAGES = {1: "trials", 2: "fine"}
HEARTBEAT_S = 10          # a running trial writes a heartbeat this often ...
GRACE_S = 60              # ... and is failed as stale (then queued again) after this long without
TPE_STARTUP = 10          # TPE draws its first trials at random (optuna's default)


class SearchError(Exception):
    """A search that cannot start or continue, in one line (exit 1)."""


class TrialFailed(Exception):
    """A trial that cannot give a validation accuracy: failed, with its reason; the search goes on."""


class Stopped(Exception):
    """A trial interrupted by a signal (its checkpoint written); the worker ends."""


@dataclass
class Search:
    """What a search is: the same in every process that works on it (picklable)."""
    spec: str
    dims: list[Dim]
    trials: int
    run: str
    epochs: int | None = None
    storage: str | None = None
    study: str | None = None
    sampler: str = "random"
    seed: int = 0
    refine: int | None = None
    refine_trials: int | None = None
    refine_epochs: int | None = None
    data: str | None = None
    backend: str = "torch"
    device: str = "cpu"
    precision: str = "fp32"
    health: bool = False
    network_args: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.study or Path(self.spec).stem or "search"

    def study_name(self, stage: int) -> str:
        return self.name if stage == 1 else f"{self.name}.fine"

    def target(self, stage: int) -> int:
        return self.trials if stage == 1 else (self.refine_trials or self.trials)

    def stage_epochs(self, stage: int) -> int | None:
        return self.epochs if stage == 1 else (self.refine_epochs or self.epochs)

    def stages(self) -> tuple[int, ...]:
        return (1, 2) if self.refine else (1,)

    def trial_dir(self, stage: int, number: int) -> Path:
        return Path(self.run) / STAGES[stage] / f"{number:04d}"

    def url(self) -> str:
        return self.storage or f"sqlite:///{(Path(self.run) / STUDY_FILE).resolve()}"

    def definition(self) -> dict:
        """What must not change when the search continues (--trials may grow)."""
        return {"space": [d.to_json() for d in self.dims], "epochs": self.epochs, "data": self.data,
                "sampler": self.sampler, "seed": self.seed, "backend": self.backend,
                "refine": self.refine, "refine_epochs": self.refine_epochs}


@dataclass
class TrialReport:
    """A finished trial, as the trial lines and the table show it."""
    stage: int
    number: int
    state: str                      # complete | failed
    value: float | None             # the best validation accuracy
    params: dict[str, Any]          # the values it drew, in --set order
    reason: str | None = None       # why it failed
    run: str | None = None
    epochs: int | None = None
    best_epoch: int | None = None
    seconds: float | None = None
    done: int = 0                   # finished trials of its stage, this one included
    target: int = 0

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


# ---- Optuna, lazily

def _optuna():
    try:
        import optuna
    except ImportError:
        raise SearchError('nnspec search needs Optuna: pip install "nnspec[search]"') from None
    import warnings
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the trial lines are ours
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats
    return optuna


def _draw_seed(seed: int, name: str, number: int) -> int:
    return int(rng.key(seed, "search", name, number).generate_state(1)[0])


def sampler(kind: str, seed: int):
    """Optuna's random or TPE sampler, with every draw keyed by (seed, name, trial number)."""
    optuna = _optuna()

    class KeyedRandom(optuna.samplers.RandomSampler):
        def sample_independent(self, study, trial, name, distribution):
            return optuna.samplers.RandomSampler(seed=_draw_seed(seed, name, trial.number)) \
                .sample_independent(study, trial, name, distribution)

    if kind == "random":
        return KeyedRandom(seed)

    class KeyedTPE(optuna.samplers.TPESampler):
        """TPE whose random start and candidate draws are keyed by the trial number, so the
        processes of a search do not all start from the same draws."""

        def __init__(self):
            super().__init__(seed=seed, n_startup_trials=TPE_STARTUP, constant_liar=True)
            self._random_sampler = KeyedRandom(seed)  # optuna's start-up draws

        def before_trial(self, study, trial):
            self._rng.rng.seed(_draw_seed(seed, "tpe", trial.number))
            super().before_trial(study, trial)

    return KeyedTPE()


def storage(s: Search):
    optuna = _optuna()
    url = s.url()
    sqlite = url.startswith("sqlite")
    kwargs = {}
    if sqlite:
        from sqlalchemy.pool import NullPool
        kwargs = {"connect_args": {"timeout": 60}, "poolclass": NullPool}
    try:
        try:
            st = optuna.storages.RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_S,
                                            grace_period=GRACE_S, heartbeat_stale_trial_callback=_requeue)
        except TypeError:  # Optuna before 4.9 names the callback failed_trial_callback
            st = optuna.storages.RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_S,
                                            grace_period=GRACE_S, failed_trial_callback=_requeue)
    except Exception as e:  # sqlalchemy's errors: a bad URL, a database that cannot be opened
        raise SearchError(f"--storage {url}: cannot open the study database ({type(e).__name__}: {e})") from None
    if sqlite:
        _immediate_transactions(st.engine)
    return st


def _immediate_transactions(engine) -> None:
    """Every SQLite transaction takes the write lock when it begins (BEGIN IMMEDIATE, the
    SQLAlchemy recipe for serializable SQLite). Without it two processes can both read a queued
    trial as WAITING and both run it: Optuna's claim is a read, then a write, and SQLite's
    deferred transactions let both reads through before either write."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, record):
        dbapi_connection.isolation_level = None  # the driver's own BEGIN off: ours below

    @event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def open_study(s: Search, stage: int, create: bool = False):
    optuna = _optuna()
    st = storage(s)
    name = s.study_name(stage)
    if create:
        return optuna.create_study(study_name=name, storage=st, direction="maximize",
                                   sampler=sampler(s.sampler, s.seed), load_if_exists=True)
    return optuna.load_study(study_name=name, storage=st, sampler=sampler(s.sampler, s.seed))


# ---- setting up

def prepare(s: Search):
    """Check the spec, the space and the data before any trial; create the run directory and
    the study, or check that the one there is this search; fail the trials of dead processes.
    Returns the spec's base train config."""
    from ..spec import load
    from .loop import Options, TrainError, Trainer
    _optuna()
    spec = load(s.spec, **s.network_args)  # a SpecError is rendered by the CLI
    base = spec.graph.train
    try:
        spacemod.check(s.dims, base)
    except spacemod.SpaceError as e:
        raise SearchError(e.message + (f" ({e.help})" if e.help else "")) from None
    if s.refine is not None and s.refine < 2:
        raise SearchError("--refine K narrows the ranges to the values of the best K trials: K is 2 or more")
    if s.refine is not None and s.refine > s.trials:
        raise SearchError(f"--refine {s.refine}: more than the {s.trials} trials of the coarse stage")
    try:
        splits = Trainer(spec, Options(data=s.data, seed=None))._data()
    except TrainError as e:
        raise SearchError(str(e)) from None
    if splits.val is None or len(splits.val.x) == 0:
        raise SearchError(f"{s.spec}: the search ranks trials by validation accuracy: add `validation 0.2` "
                          f"to the train section (or use a source with its own validation split)")
    try:
        Path(s.run).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SearchError(f"{s.run}: cannot create the search directory ({e.strerror or e})") from None
    study = open_study(s, 1, create=True)
    was = study.user_attrs.get("nnspec")
    now = json.loads(json.dumps(s.definition()))
    if was is None:
        study.set_user_attr("nnspec", now)
    elif was != now:
        key = next(k for k in now if was.get(k) != now.get(k))
        raise SearchError(f"{s.run}: holds a search whose {key} was {json.dumps(was.get(key))}, now "
                          f"{json.dumps(now.get(key))}: run the same command to continue it, or "
                          f"choose another --run")
    return base


# ---- the trials left by processes that died

def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (ended, not yet collected by its parent) is not running a trial
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


def reap(study) -> int:
    """Fail the running trials of this machine's dead processes and queue them again (other
    machines' dead trials go stale by their missing heartbeat). A trial that never recorded
    its process (killed between Optuna's ask and the objective's first line, before its first
    heartbeat too) is failed once it has run for the grace period. Returns how many."""
    import datetime
    optuna = _optuna()
    host, n = socket.gethostname(), 0
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        pid = t.user_attrs.get("pid")
        if pid is None:
            started = t.datetime_start or datetime.datetime.now()
            if (datetime.datetime.now() - started).total_seconds() < GRACE_S:
                continue
        elif t.user_attrs.get("host") != host or not isinstance(pid, int) or _alive(pid):
            continue
        if _fail(study, t.number):
            n += 1
    return n


def _fail(study, number: int) -> bool:
    """Fail a running trial and queue it again; False if it was no longer running."""
    optuna = _optuna()
    try:
        study.tell(number, state=optuna.trial.TrialState.FAIL)
    except (ValueError, RuntimeError):  # finished meanwhile (by its process, or another reaper)
        return False
    _requeue(study, next(t for t in study.get_trials(deepcopy=False) if t.number == number))
    return True


def _requeue(study, trial) -> None:
    """Run an interrupted trial again with its values, from its last checkpoint if it has one."""
    attrs = {"retry_of": trial.number}
    if trial.user_attrs.get("run"):
        attrs["resume"] = trial.user_attrs["run"]
    study.enqueue_trial(dict(trial.params), user_attrs=attrs)


def _interrupted(t) -> bool:
    return t.state.name == "FAIL" and "failed" not in t.user_attrs


def counts(study) -> tuple[int, int, int]:
    """(finished, running, waiting) trials of a stage: finished = complete or failed for a
    reason (interrupted ones are queued again, not counted); waiting = queued again."""
    finished = running = waiting = 0
    for t in study.get_trials(deepcopy=False):
        if t.state.name == "COMPLETE" or (t.state.name == "FAIL" and not _interrupted(t)):
            finished += 1
        elif t.state.name == "RUNNING":
            running += 1
        elif t.state.name == "WAITING":
            waiting += 1
    return finished, running, waiting


# ---- working

def space_of(s: Search, stage: int) -> list[Dim]:
    if stage == 1:
        return s.dims
    fine = open_study(s, 1).user_attrs.get("fine")
    if fine is None:
        raise SearchError("the fine stage has no ranges yet: the coarse stage is not finished")
    return [Dim.from_json(d) for d in fine["space"]]


def work(s: Search, stage: int, on_trial: Callable[[TrialReport], None] = lambda r: None,
         stop=None) -> None:
    """Run trials of `stage` until it has its target (one process of --jobs). Raises Stopped
    when a signal interrupted a trial (the trial is queued again), or arrived as one ended, or
    `stop` (a threading.Event) is set: no new trial starts."""
    import threading
    stop = stop if stop is not None else threading.Event()
    study = open_study(s, stage)
    reap(study)
    dims = space_of(s, stage)
    base = _base_train(s)
    target = s.target(stage)
    current: dict = {}

    def objective(trial):
        current["number"] = trial.number
        return _objective(s, stage, dims, base, trial, target, stop)

    def report(study, frozen):
        if frozen.state.name not in ("COMPLETE", "FAIL") or _interrupted(frozen):
            return
        on_trial(_report(stage, frozen, dims, counts(study)[0], target))

    while True:
        if stop.is_set():
            raise Stopped()
        finished, running, waiting = counts(study)
        if not waiting and finished + running >= target:
            return
        try:
            study.optimize(objective, n_trials=1, catch=(TrialFailed,), callbacks=[report],
                           gc_after_trial=False)
        except (Stopped, KeyboardInterrupt):
            number = current.get("number")
            if number is not None:
                t = next((t for t in study.get_trials(deepcopy=False) if t.number == number), None)
                if t is not None and t.state.name == "RUNNING":  # interrupted outside the trainer
                    _fail(study, number)
                elif t is not None and _interrupted(t):
                    _requeue(study, t)
            raise Stopped() from None


def _base_train(s: Search):
    from ..spec import load
    return load(s.spec, **s.network_args).graph.train


def _suggest(trial, d: Dim):
    if d.kind in ("loguniform", "uniform"):
        return trial.suggest_float(d.name, d.low, d.high, log=d.log)
    if d.kind == "int":
        return trial.suggest_int(d.name, d.low, d.high)
    return trial.suggest_categorical(d.name, list(d.choices))


def _objective(s: Search, stage: int, dims, base, trial, target: int, stop) -> float:
    import shutil

    from ..errors import SpecError
    from ..spec import Spec, load
    from . import runs
    from .loop import Interrupted, Options, TrainError, Trainer
    optuna = _optuna()
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("pid", os.getpid())
    ahead = [t for t in trial.study.get_trials(deepcopy=False) if t.number < trial.number and
             (t.state.name in ("COMPLETE", "RUNNING", "WAITING") or (t.state.name == "FAIL" and not _interrupted(t)))]
    if len(ahead) >= target:  # another process took the last trial first
        trial.set_user_attr("surplus", True)
        raise optuna.TrialPruned()

    def fail(reason: str):
        trial.set_user_attr("failed", reason)
        raise TrialFailed(reason)

    values = spacemod.draw(dims, lambda d: _suggest(trial, d), base)
    cfg, network = spacemod.configure(dims, values, base)
    resume = trial.user_attrs.get("resume")
    resuming = bool(resume) and (Path(resume) / runs.LAST).exists()
    run_dir = Path(resume) if resuming else s.trial_dir(stage, trial.number)
    if not resuming and (run_dir / runs.MANIFEST).exists():
        shutil.rmtree(run_dir)  # a trial of this number from a study that was deleted
    trial.set_user_attr("run", str(run_dir))
    try:
        spec = load(s.spec, **{**s.network_args, **network})
    except SpecError as e:
        fail(f"the spec does not load with {_values_text(dims, values)}: {e.diagnostics[0].message}")
    spec = Spec(dataclasses.replace(spec.graph, train=cfg))
    losses = _Losses(run_dir, stop)
    epochs = s.stage_epochs(stage) if not any(d.name == "epochs" for d in dims) else None
    opts = Options(data=s.data, epochs=epochs, run=run_dir, resume=resuming, backend=s.backend,
                   device=s.device, precision=s.precision, health=s.health, handle_signals=True)
    try:
        result = Trainer(spec, opts, losses.event).run()
    except Interrupted:
        raise Stopped() from None
    except TrainError as e:
        fail(str(e))
    trial.set_user_attr("epochs", len(result.history))
    trial.set_user_attr("best_epoch", result.best_epoch)
    trial.set_user_attr("seconds", round(result.seconds, 3))
    if result.stopped == "non-finite loss":
        fail(f"non-finite loss at step {losses.nonfinite[0]} (loss {losses.nonfinite[1]})")
    accs = [h["val_accuracy"] for h in result.history if h.get("val_accuracy") is not None]
    if not accs:
        fail("no validation accuracy (a regression loss, or no validation split)")
    return max(accs)


class _Losses:
    """Every step's training loss of a trial, kept in its run directory (losses.json, rewritten
    at each epoch end) for the loss curves of `--plot`; a resumed trial continues its file."""

    def __init__(self, run_dir: Path, stop=None):
        self.path = run_dir / LOSSES
        self.stop = stop  # set when a signal reached the trainer: the trial is the last one
        self.steps: list[list] = []
        self.nonfinite = (None, None)

    def event(self, e: dict) -> None:
        kind = e["event"]
        if kind == "step":
            self.steps.append([e["step"], e["loss"]])
        elif kind == "resume":
            self.steps = [r for r in read_losses(self.path.parent) if r[0] <= e["step"]]
        elif kind == "nonfinite":
            self.nonfinite = (e["step"], e["loss"])
            self.steps.append([e["step"], e["loss"]])
            self.write()
        elif kind == "epoch":
            self.write()
        elif kind == "interrupt" and self.stop is not None:
            self.stop.set()

    def write(self) -> None:
        from ..checkpoint import atomic_write
        with atomic_write(self.path, "w") as f:
            json.dump({"steps": self.steps}, f, allow_nan=True)


def read_losses(run_dir) -> list[list]:
    try:
        return json.loads((Path(run_dir) / LOSSES).read_text("utf-8"))["steps"]
    except (OSError, ValueError, KeyError, TypeError):
        return []


# ---- stages

def wait_for(s: Search, stage: int, poll_s: float = 2.0) -> bool:
    """Wait until no trial of the stage runs anywhere (other processes or machines may still
    be finishing theirs); one whose process died is failed and queued again. True when some
    trial waits in the queue: the caller runs the stage again."""
    optuna = _optuna()
    study = open_study(s, stage)
    while True:
        reap(study)
        optuna.storages.fail_stale_trials(study)
        _, running, waiting = counts(study)
        if waiting:
            return True
        if not running:
            return False
        time.sleep(poll_s)


def refine(s: Search) -> dict:
    """The fine stage's space: each range narrowed to the values the best K trials of the
    coarse stage drew (recorded once in the coarse study's user attribute `fine`)."""
    study = open_study(s, 1)
    fine = study.user_attrs.get("fine")
    if fine is not None:
        return fine
    best = sorted((t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"),
                  key=lambda t: (-t.value, t.number))[:s.refine]
    if len(best) < s.refine:
        raise SearchError(f"--refine {s.refine}: only {len(best)} coarse trials completed")
    dims = [spacemod.narrow(d, [t.params[d.name] for t in best if d.name in t.params]) for d in s.dims]
    fine = {"from": [t.number for t in best], "space": [d.to_json() for d in dims]}
    open_study(s, 2, create=True)
    study.set_user_attr("fine", fine)
    return fine


# ---- reading a study back

def _report(stage: int, t, dims, done: int, target: int) -> TrialReport:
    order = [d.name for d in dims]
    params = {k: t.params[k] for k in sorted(t.params, key=lambda k: order.index(k) if k in order else len(order))}
    a = t.user_attrs
    return TrialReport(stage, t.number, "complete" if t.state.name == "COMPLETE" else "failed",
                       t.value if t.state.name == "COMPLETE" else None, params, a.get("failed"), a.get("run"),
                       a.get("epochs"), a.get("best_epoch"), a.get("seconds"), done, target)


def trials(s: Search) -> list[TrialReport]:
    """The finished trials of every stage (interrupted and surplus ones left out)."""
    out = []
    for stage in s.stages():
        try:
            study = open_study(s, stage)
        except KeyError:
            continue
        dims = space_of(s, stage)
        done = 0
        for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
            if t.state.name == "COMPLETE" or (t.state.name == "FAIL" and not _interrupted(t)):
                done += 1
                out.append(_report(stage, t, dims, done, s.target(stage)))
    return out


def summary(s: Search, top: int = 10) -> dict:
    """The search as JSON: every finished trial, the best ones, and the spec lines of the best
    (of the last stage: the fine stage refines the coarse one)."""
    every = trials(s)
    last = max(s.stages()) if any(r.stage == max(s.stages()) for r in every) else 1
    complete = [r for r in every if r.state == "complete"]
    ranked = sorted(complete, key=lambda r: (r.stage != last, -r.value, r.stage, r.number))
    base = _base_train(s)
    from ..spec import load
    graph = load(s.spec, **s.network_args).graph
    best = ranked[0] if ranked else None
    lines = spacemod.spec_lines(space_of(s, best.stage), best.params, base, graph) if best else []
    fine = open_study(s, 1).user_attrs.get("fine") if s.refine else None
    return {"study": s.name, "storage": s.url(), "run": str(s.run), "sampler": s.sampler, "seed": s.seed,
            "space": {d.name: d.text() for d in s.dims},
            "fine_space": {d["name"]: Dim.from_json(d).text() for d in fine["space"]} if fine else None,
            "fine_from": fine["from"] if fine else None,
            "trials": [r.to_json() for r in every],
            "complete": len(complete), "failed": sum(r.state == "failed" for r in every),
            "best": [r.to_json() for r in ranked[:top]], "spec_lines": lines}


def _values_text(dims, values) -> str:
    by = {d.name: d for d in dims}
    return ", ".join(f"{k} {spacemod.value_text(by[k], v)}" for k, v in values.items())


def trial_line(r: TrialReport, dims) -> str:
    """`val acc 0.412, lr 1.41e-04, weight_decay 4.79e-01 (1 / 100)`, as the notes print a
    trial; a failed trial says why."""
    head = f"val acc {r.value:.3f}" if r.state == "complete" else f"failed ({r.reason})"
    vals = _values_text(dims, r.params)
    return f"{head}{', ' + vals if vals else ''} ({r.done} / {r.target})"


__all__ = ["Search", "SearchError", "TrialReport", "prepare", "work", "refine", "summary", "trials",
           "trial_line", "wait_for", "read_losses", "STUDY_FILE"]
