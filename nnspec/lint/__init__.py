"""`nnspec lint`: architecture and training-configuration bugs found before anything runs.

Rules are data (nnspec/lint/catalogue.py): a stable code, a kebab-case name, a default
severity, the why, a bad and a good example, the fix. They read the typed graph, the op
registry, the analysis and the train section — never layer names.

>>> from nnspec.lint import lint_source
>>> [d.code for d in lint_source("input 3x7x7\\nconv(8, 3, stride=3)\\n").findings]
['NN201']
"""

from . import registry  # noqa: F401  (imports every rule module: the catalogue is complete)
from .catalogue import RULES, Rule, find_rule, ordered
from .engine import LintResult, Selection, lint_file, lint_source

__all__ = ["RULES", "Rule", "LintResult", "Selection", "find_rule", "lint_file", "lint_source",
           "ordered"]
