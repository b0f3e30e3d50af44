"""The search space of `nnspec search`: what each `--set NAME=VALUE` may be, checked against
the schema tables of nnspec/config.py, and how one trial's values become a train section.

    --set "lr=loguniform(1e-6, 1e-2)"     a number drawn uniformly in log space
    --set "momentum=uniform(0.5, 0.99)"   a number
    --set "width=int(16, 128)"            an integer, both ends included
    --set optimizer=sgd,nesterov,adam     a choice: the schema's names, config.OPTIMIZER_PRESETS
                                          (momentum, nesterov) or calls (`sgd(momentum=0.5)`)
    --set batch=32,64,128                 a choice of values
    --set validation=0.25                 one value, the same in every trial

A name is, in this order: a parameter of the network (`network mlp(width = 64)`), a train
setting with one value (weight_decay, batch, epochs, …: config's scalars), a choice key
(optimizer, init, loss), or an option of an optimizer (lr, momentum, beta1, …), which a trial
draws only when its optimizer has that option. Values are the spec's own expressions, read by
the one evaluator (nnspec.expr). No optuna here: nnspec/train/search.py drives the study.

>>> dims = parse(["lr=loguniform(1e-4, 1e-1)", "optimizer=sgd,adam"], network_args={})
>>> [d.text() for d in dims]
['loguniform(1.0e-04, 1.0e-01)', 'sgd, adam']
>>> cfg, net = configure(dims, {"lr": 3e-3, "optimizer": "adam"}, None)
>>> str(cfg.optimizer)
'adam(lr=0.003, beta1=0.9, beta2=0.999, eps=1e-08)'
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .. import config
from ..errors import SpecError, did_you_mean
from ..values import CallValue, Sym, fmt

DISTRIBUTIONS = {"loguniform": "a number, uniform in log space: loguniform(1e-5, 1e-1)",
                 "uniform": "a number: uniform(0.5, 0.99)",
                 "int": "an integer, both ends included: int(16, 128)"}
CHOICE_KEYS = ("optimizer", "init", "loss")
_INTEGER_KINDS = ("count", "nonneg", "dim")
_NUMBER_KINDS = ("float", "posfloat", "prob")


class SpaceError(ValueError):
    """A `--set` the search cannot use: the message names it; `help` suggests a fix."""

    def __init__(self, message: str, help: str | None = None):
        super().__init__(message)
        self.message, self.help = message, help


@dataclass(frozen=True)
class Dim:
    """One hyperparameter: where it goes (`role`) and how it is drawn (`kind`).

    role: network (a network parameter), scalar (a one-value train setting), choice (optimizer,
    init, loss; choices kept as written, e.g. "sgd(momentum=0.5)"), option (of the optimizer).
    kind: loguniform, uniform, int (between `low` and `high`), choice (`choices`), fixed
    (`choices[0]` in every trial)."""
    name: str
    role: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    choices: tuple = ()
    arg_kind: str | None = None  # the schema's Arg kind (None: a network parameter)

    @property
    def searched(self) -> bool:
        return self.kind != "fixed"

    @property
    def log(self) -> bool:
        return self.kind == "loguniform"

    def text(self) -> str:
        if self.kind in ("loguniform", "uniform"):
            return f"{self.kind}({self.low:.1e}, {self.high:.1e})" if self.log else \
                f"uniform({self.low:.4g}, {self.high:.4g})"
        if self.kind == "int":
            return f"int({self.low}, {self.high})"
        return ", ".join(map(_written, self.choices))

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), "choices": list(self.choices)}

    @classmethod
    def from_json(cls, d: Mapping) -> "Dim":
        return cls(**{**d, "choices": tuple(d.get("choices", ()))})


# ---- reading --set

def parse(pairs, network_args: Mapping[str, Any]) -> list[Dim]:
    """Every `NAME=VALUE` as a Dim, in order; raises SpaceError for an unknown name, a value
    the schema refuses, a malformed distribution or a name given twice."""
    dims: list[Dim] = []
    for p in pairs or ():
        if "=" not in p:
            raise SpaceError(f"--set expects NAME=VALUE, got {p!r}",
                             'e.g. --set "lr=loguniform(1e-6, 1e-2)"')
        name, text = (s.strip() for s in p.split("=", 1))
        if any(d.name == name for d in dims):
            raise SpaceError(f"--set {name}: given twice")
        dims.append(_dim(name, text, network_args))
    return dims


def _role(name: str, network_args) -> tuple[str, str | None]:
    if name in network_args:
        return "network", None
    if name in config._SCALARS:
        return "scalar", config._SCALARS[name]
    if name in CHOICE_KEYS:
        return "choice", None
    arg = _option_arg(name)
    if arg is not None:
        return "option", arg.kind
    known = [*network_args, *config._SCALARS, *CHOICE_KEYS, *_option_names()]
    raise SpaceError(f"--set {name}: not a network parameter, train setting or optimizer option",
                     did_you_mean(name, known) or f"names: {', '.join(dict.fromkeys(known))}")


def _option_names() -> list[str]:
    return list(dict.fromkeys(a.name for args in config.OPTIMIZERS.values() for a in args))


def _option_arg(name: str):
    return next((a for args in config.OPTIMIZERS.values() for a in args if a.name == name), None)


def _dim(name: str, text: str, network_args) -> Dim:
    role, kind = _role(name, network_args)
    if not text:
        raise SpaceError(f"--set {name}: no value", _example(role, kind))
    value = _read(name, f"({text})" if _top_level_comma(text) else text)
    if isinstance(value, CallValue) and value.name in DISTRIBUTIONS:
        return _distribution(name, role, kind, value)
    values = value if isinstance(value, tuple) else (value,)
    if not values:
        raise SpaceError(f"--set {name}: no value", _example(role, kind))
    checked = tuple(_checked(name, role, kind, v) for v in values)
    if len(set(map(repr, checked))) != len(checked):
        raise SpaceError(f"--set {name}: a choice is listed twice")
    return Dim(name, role, "choice" if isinstance(value, tuple) else "fixed", choices=checked, arg_kind=kind)


def _top_level_comma(text: str) -> bool:
    depth = 0
    for ch in text:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            return True
    return False


def _read(name: str, text: str):
    """A value as the train section reads one: bare words are names, calls are kept."""
    from ..expr import BudgetError, Evaluator, ExprError
    from ..parser import parse_expr
    try:
        return Evaluator(bare_words=True).eval(parse_expr(text), {}, None)
    except SpecError as e:
        d = e.diagnostics[0]
        raise SpaceError(f"--set {name}: cannot read {text!r}: {d.message}", d.help) from None
    except (ExprError, BudgetError) as e:
        raise SpaceError(f"--set {name}: cannot read {text!r}: {getattr(e, 'message', e)}") from None


def _distribution(name: str, role: str, kind: str | None, call: CallValue) -> Dim:
    how = call.name
    if role == "choice":
        raise SpaceError(f"--set {name}: {name} is a choice, not a number",
                         f"list the choices: --set {name}={','.join(_table(name))}")
    if call.kwargs or len(call.args) != 2:
        raise SpaceError(f"--set {name}: {how}(…) takes two values, low and high", DISTRIBUTIONS[how])
    low, high = call.args
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high)):
        raise SpaceError(f"--set {name}: {how}(…) takes two finite numbers, got {fmt(low)}, {fmt(high)}",
                         DISTRIBUTIONS[how])
    if how == "int":
        if not (isinstance(low, int) and isinstance(high, int)):
            raise SpaceError(f"--set {name}: int(…) takes integers, got {fmt(low)}, {fmt(high)}",
                             "for numbers use uniform(a, b) or loguniform(a, b)")
        if kind is not None and kind not in _INTEGER_KINDS + _NUMBER_KINDS:
            raise SpaceError(f"--set {name}: {name} is not a number", _example(role, kind))
    else:
        if kind is not None and kind not in _NUMBER_KINDS:
            raise SpaceError(f"--set {name}: {name} takes integers",
                             f"use int(a, b) or a list: --set {name}=16,32,64")
        low, high = float(low), float(high)
        if how == "loguniform" and low <= 0:
            raise SpaceError(f"--set {name}: loguniform(…) needs a positive low end, got {fmt(low)}",
                             "log-scale ranges cover positive numbers: loguniform(1e-5, 1e-1)")
    if not low < high:
        raise SpaceError(f"--set {name}: the low end {fmt(low)} is not below the high end {fmt(high)}")
    for v in (low, high):
        _checked(name, role, kind, v)
    return Dim(name, role, how, low, high, arg_kind=kind)


def _checked(name: str, role: str, kind: str | None, v):
    """One value, as the schema checks it; choices come back as written (`sgd(momentum=0.5)`)."""
    from ..ops import Arg, ArgError, _check
    if role == "choice":
        if not isinstance(v, (Sym, CallValue)):
            raise SpaceError(f"--set {name}: expected one of {', '.join(_table(name))}, got {fmt(v)}")
        resolve_choice(name, str(v))
        return str(v)
    if isinstance(v, CallValue):
        raise SpaceError(f"--set {name}: '{v.name}(…)' is not a distribution",
                         did_you_mean(v.name, DISTRIBUTIONS) or f"distributions: {', '.join(DISTRIBUTIONS)}")
    if isinstance(v, Sym):
        if role != "network":
            raise SpaceError(f"--set {name}: expected a value, got {v}", _example(role, kind))
        return v.name  # a word for a network parameter: as `nnspec train --set` passes one
    if kind is None:
        return v
    try:
        return _check(name, Arg(name, kind), v)
    except ArgError as e:
        raise SpaceError(f"--set {name}: " + e.message.replace(f"{name}: argument '{name}' ", "", 1)) from None


def _table(key: str) -> list[str]:
    names = list(config.INITS if key == "init" else config._CHOICE[key])
    return names + list(config.OPTIMIZER_PRESETS) if key == "optimizer" else names


def _example(role: str, kind: str | None) -> str:
    if role == "choice":
        return "a comma-separated list: --set optimizer=sgd,nesterov,adam"
    if kind in _INTEGER_KINDS:
        return "int(a, b), a list (16,32,64) or one integer"
    return "loguniform(a, b), uniform(a, b), int(a, b), a list (0.1,0.5) or one value"


def resolve_choice(key: str, written: str) -> config.Choice:
    """A written choice (`adam`, `nesterov`, `sgd(momentum=0.5)`) as the schema's Choice."""
    value = _read(key, written)
    if key == "optimizer" and isinstance(value, Sym) and value.name in config.OPTIMIZER_PRESETS:
        base, options = config.OPTIMIZER_PRESETS[value.name]
        c = config.choice(key, Sym(base, None))
        return config.Choice(c.name, {**c.options, **options}, None)
    try:
        return config.choice(key, value)
    except config.ChoiceError as e:
        help = e.help
        if key == "optimizer" and e.message.startswith("unknown"):
            help = did_you_mean(str(getattr(value, "name", value)), _table(key)) or \
                f"choices: {', '.join(_table(key))}"
        raise SpaceError(f"--set {key}: {e.message}", help) from None


def check(dims: list[Dim], base) -> None:
    """The space as a whole: an optimizer option must belong to an optimizer some trial uses."""
    names = _optimizer_names(dims, base)
    for d in dims:
        if d.role == "option" and not any(d.name in _options_of(n) for n in names):
            raise SpaceError(f"--set {d.name}: the optimizer ({', '.join(names)}) has no option '{d.name}'",
                             f"optimizers with it: {', '.join(n for n in config.OPTIMIZERS if d.name in _options_of(n))}")


def _optimizer_names(dims, base) -> list[str]:
    opt = next((d for d in dims if d.name == "optimizer"), None)
    if opt is not None:
        return list(dict.fromkeys(resolve_choice("optimizer", c).name for c in opt.choices))
    return [_base_optimizer(base).name]


def _options_of(optimizer: str) -> set[str]:
    return {a.name for a in config.OPTIMIZERS[optimizer]}


def _base_optimizer(base) -> config.Choice:
    if base is not None and base.optimizer is not None:
        return base.optimizer
    return config.choice("optimizer", Sym("sgd", None))  # the trainer's default


# ---- one trial

def draw(dims: list[Dim], pick: Callable[[Dim], Any], base) -> dict[str, Any]:
    """A trial's values: `pick(dim)` draws each searched dim (choices first: the optimizer
    decides which options apply; an option its optimizer lacks is not drawn); fixed dims
    are left to `configure`. Returned in --set order."""
    values: dict[str, Any] = {}
    for d in sorted((d for d in dims if d.searched), key=lambda d: d.role != "choice"):
        if d.role == "option" and d.name not in _options_of(_optimizer(dims, values, base).name):
            continue
        values[d.name] = pick(d)
    return {d.name: values[d.name] for d in dims if d.name in values}


def _optimizer(dims, values, base) -> config.Choice:
    fixed = {d.name: d.choices[0] for d in dims if not d.searched}
    written = values.get("optimizer", fixed.get("optimizer"))
    return resolve_choice("optimizer", written) if written is not None else _base_optimizer(base)


def configure(dims: list[Dim], values: Mapping[str, Any], base) -> tuple[config.TrainConfig, dict]:
    """The train section of a trial (the spec's, `base`, with the values applied) and its
    network arguments. A searched optimizer starts from its schema defaults (its own usual
    learning rate), else the spec's optimizer is kept; options drawn or fixed apply on top."""
    every = {**{d.name: d.choices[0] for d in dims if not d.searched}, **values}
    by_name = {d.name: d for d in dims}
    cfg = base if base is not None else config.TrainConfig()
    changes: dict[str, Any] = {}
    network: dict[str, Any] = {}
    opt = _optimizer(dims, every, base)
    options = dict(opt.options)
    for name, v in every.items():
        role = by_name[name].role
        if role == "network":
            network[name] = v
        elif role == "scalar":
            changes[name] = v
        elif role == "choice" and name != "optimizer":
            changes[name] = resolve_choice(name, v)
        elif role == "option" and name in _options_of(opt.name):
            options[name] = float(v) if by_name[name].arg_kind in _NUMBER_KINDS else v
    changes["optimizer"] = config.Choice(opt.name, options, opt.span)
    return dataclasses.replace(cfg, **changes), network


# ---- words

def value_text(d: Dim, v) -> str:
    """A drawn value as the trial lines print it: 1.41e-04 for a log-scale number."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return _written(v)
    if d.log or (isinstance(v, float) and v != 0 and not 1e-3 <= abs(v) < 1e4):
        return f"{v:.2e}"
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _written(v) -> str:
    return v if isinstance(v, str) else fmt(v)


def spec_lines(dims: list[Dim], values: Mapping[str, Any], base, graph=None) -> list[str]:
    """The lines to paste into the spec for these values: the train settings (the optimizer
    with the options that differ from its defaults, and its learning rate) and, for network
    parameters, the `network` line."""
    cfg, network = configure(dims, values, base)
    lines = []
    roles = {d.role for d in dims}
    if "option" in roles or any(d.name == "optimizer" for d in dims):
        defaults = {a.name: a.default for a in config.OPTIMIZERS[cfg.optimizer.name]}
        opts = [f"{k}={_number(v)}" for k, v in cfg.optimizer.options.items()
                if k == "lr" or (v is not None and v != defaults.get(k))]
        lines.append(f"optimizer {cfg.optimizer.name}({', '.join(opts)})")
    for d in dims:
        if d.role == "scalar":
            lines.append(f"{d.name} {_number(getattr(cfg, d.name))}")
        elif d.role == "choice" and d.name != "optimizer":
            c = getattr(cfg, d.name)
            defaults = {a.name: a.default for a in (config.INITS if d.name == "init" else config.LOSSES)[c.name]}
            opts = [f"{k}={_number(v)}" for k, v in c.options.items() if v is not None and v != defaults.get(k)]
            lines.append(f"{d.name} {c.name}({', '.join(opts)})" if opts else f"{d.name} {c.name}")
    if network:
        args = {**(graph.args if graph is not None else {}), **network}
        name = graph.name if graph is not None and graph.name else "net"
        lines.insert(0, f"network {name}({', '.join(f'{k} = {_number(v)}' for k, v in args.items())})")
    return lines


def _number(v) -> str:
    if isinstance(v, float) and not isinstance(v, bool):
        return f"{v:.2e}" if v != 0 and not 1e-3 <= abs(v) < 1e4 else f"{v:.4g}"
    return _written(v)


# ---- the fine stage

def narrow(d: Dim, seen: list) -> Dim:
    """`d` narrowed to the values the best trials drew (`seen`): the min to the max of
    numbers (still log-scale for loguniform), the choices they made (in the original order).
    A dim none of them drew (an option of optimizers they did not use) stays as it was; one
    they all drew alike becomes fixed."""
    if not d.searched or not seen:
        return d
    if d.kind == "choice":
        kept = tuple(c for c in d.choices if c in seen)
        return dataclasses.replace(d, choices=kept) if len(kept) > 1 else \
            dataclasses.replace(d, kind="fixed", choices=kept)
    low, high = min(seen), max(seen)
    if low == high:
        return dataclasses.replace(d, kind="fixed", low=None, high=None, choices=(low,))
    return dataclasses.replace(d, low=low, high=high)
