"""The one list of modules that register lint rules with the catalogue.

Importing this module imports each of them once; each registers its rules as it is imported
(`@rule` for checks, `document` for codes another stage reports). The catalogue imports none
of them. A `rules_*.py` module, or any module here that registers a rule, missing from
`RULE_MODULES` is a test failure (tests/test_lint_catalogue.py), not a silently absent rule.
"""

from __future__ import annotations

import importlib

RULE_MODULES = (
    "rules_graph",            # NN1xx
    "rules_spatial",          # NN2xx
    "rules_activation",       # NN3xx
    "rules_init",             # NN4xx
    "rules_regularization",   # NN5xx
    "rules_design",           # NN6xx
    "rules_training",         # NN7xx
    "rules_memory",           # NN8xx
    "rules_run",              # NN108-109, NN210, NN316, NN514-515, NN720: the whole run
    "suppress",               # NN90x
    "nnspec.train.health",    # NN91x: found by the trainer at run time
)

for _name in RULE_MODULES:
    importlib.import_module(_name if "." in _name else f"{__package__}.{_name}")
del _name
