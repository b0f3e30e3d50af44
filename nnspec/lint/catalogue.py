"""The rule catalogue: one `Rule` per code, each one a record of data plus (for lint rules) a
check function.

A rule states, once: its stable code, a kebab-case name that says what is wrong, a default
severity, what it does, why that is bad, a bad and a good `.nn` example (both run as tests:
the bad one must trigger exactly this rule, the good one must not), the fix, and, for
heuristics, when it is a false positive. `nnspec rules`, `nnspec lint --explain`,
docs/lint-rules.md and the SARIF rule table are all generated from these records.

This module is data and imports no rule module. The NN0xx records come from the checker's
own code table (`nnspec.errors.CODES`); the lint rules register themselves when their
modules are imported (`@rule`, `document`), and nnspec/lint/registry.py holds the one list
of those modules.

Codes: NN0xx are the checker's errors (a spec that fails them cannot be analysed further),
NN1xx graph, NN2xx spatial arithmetic, NN3xx activations and losses, NN4xx initialisation,
NN5xx normalisation, dropout and regularisation, NN6xx design (info), NN7xx training
configuration, NN8xx memory, NN90x the suppression comments themselves, NN91x the trainer's
runtime health checks (nnspec/train/health.py: found while training, on the same spec lines).

>>> RULES["NN201"].name
'window-does-not-tile'
>>> find_rule("window-does-not-tile").code
'NN201'
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

from ..errors import CODES

SEVERITIES = ("error", "warning", "info")
RANK = {"info": 0, "warning": 1, "error": 2}

CATEGORIES = {  # first digit of the number -> category
    "0": "checker",
    "1": "graph",
    "2": "spatial",
    "3": "activations-and-losses",
    "4": "initialisation",
    "5": "normalisation-and-regularisation",
    "6": "design",
    "7": "training",
    "8": "memory",
    "9": "suppression",
}

CATEGORY_TITLES = {
    "checker": "Checker errors (the spec cannot be analysed until they are fixed)",
    "graph": "Graph",
    "spatial": "Spatial arithmetic",
    "activations-and-losses": "Activations and losses",
    "initialisation": "Initialisation (specs with a `train` section)",
    "normalisation-and-regularisation": "Normalisation, dropout and regularisation",
    "design": "Design (info)",
    "training": "Training configuration (the `train` section)",
    "memory": "Memory (with `--memory-budget`)",
    "suppression": "Suppression comments",
    "health": "Runtime health checks (found by `nnspec train`, not by `nnspec lint`)",
}


@dataclass(frozen=True)
class Rule:
    code: str
    name: str
    severity: str
    summary: str                 # what it does, one sentence
    why: str                     # why it is bad
    bad: str                     # a .nn spec that triggers exactly this rule
    good: str                    # the same spec fixed
    fix: str                     # the default `help:` line
    false_positives: str = ""    # when a heuristic is wrong (info rules say so)
    options: Mapping[str, object] = field(default_factory=dict)  # lint options the examples need
    check: Callable | None = None  # Context -> Iterable[Hit]; None: reported by the checker/engine
    found_by: str = "lint"       # "lint", "checker" or "torch backend" (NN0xx: errors.CODES)

    @property
    def category(self) -> str:
        if self.found_by == "trainer":
            return "health"
        return CATEGORIES[self.code[2]]

    @property
    def heuristic(self) -> bool:
        """A rule of thumb (info level, says when it is wrong) rather than a sound check."""
        return self.severity == "info" and bool(self.false_positives)


RULES: dict[str, Rule] = {}
_BY_NAME: dict[str, Rule] = {}  # kebab-case name -> rule (suppression comments name rules)


def _clean(text: str) -> str:
    return textwrap.dedent(text).strip("\n") + ("\n" if text.strip() else "")


def _register(code: str, name: str, severity: str, check, found_by: str = "lint", **docs) -> Rule:
    assert code not in RULES, f"duplicate rule code {code}"
    assert severity in SEVERITIES, severity
    assert len(code) == 5 and code.startswith("NN") and code[2:].isdigit(), code
    assert name == name.lower() and " " not in name and "_" not in name, name
    assert name not in _BY_NAME, f"duplicate rule name {name}"
    for key in ("summary", "why", "fix", "false_positives"):
        if key in docs:
            docs[key] = " ".join(docs[key].split())
    docs["bad"] = _clean(docs["bad"])
    docs["good"] = _clean(docs["good"])
    r = Rule(code, name, severity, check=check, found_by=found_by, **docs)
    RULES[code] = _BY_NAME[name] = r
    return r


def rule(code: str, name: str, severity: str, **docs):
    """Decorator: the function below is the rule's check, `Context -> Iterable[Hit]`."""
    def deco(fn: Callable[..., Iterable]):
        _register(code, name, severity, fn, **docs)
        return fn
    return deco


def document(code: str, name: str, severity: str, **docs) -> Rule:
    """A rule found by another stage (the checker, the suppression scanner)."""
    return _register(code, name, severity, None, **docs)


def find_rule(key: str) -> Rule | None:
    """A rule by code (`NN201`, `nn201`) or name (`window-does-not-tile`)."""
    k = key.strip()
    return RULES.get(k.upper()) or _BY_NAME.get(k.lower())


def matches(selector: str, r: Rule) -> bool:
    """`--select`/`--ignore` entries: a code prefix (`NN2`, `NN20`, `NN201`), a name, or ALL."""
    s = selector.strip()
    return s.upper() == "ALL" or r.code.startswith(s.upper()) or r.name == s.lower()


def valid_selector(selector: str) -> bool:
    return any(matches(selector, r) for r in RULES.values())


def ordered() -> list[Rule]:
    """Every registered rule by code (importing `nnspec.lint` registers them all)."""
    return [RULES[c] for c in sorted(RULES)]


for _c in CODES.values():  # the checker's codes, documented where they are raised
    _register(_c.code, _c.name, _c.severity, None, found_by=_c.found_by, summary=_c.summary,
              why=_c.why, bad=_c.bad, good=_c.good, fix=_c.fix)
del _c
