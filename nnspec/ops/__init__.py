"""The op registry: the single source of truth for every layer kind.

- `base`         Op, Arg, Tensor, Example, traits, the `OPS` dict and `register`
- `windows`      conv and pooling: the sliding-window arithmetic; transposed conv, upsample
- `layers`       linear, batch norm, reshapes, regularisers, merges, the input
- `norms`        layer, group and instance normalisation
- `regularizers` DropConnect and fractional max pooling (random in training)
- `activations`  one table of activation rows: f, f′, what backward keeps, traits

Everything that needs a fact about an op (the expander, analysis, lint, init, the backends,
the docs) reads it from here.

>>> OPS["conv"].infer(((3, 227, 227),), OPS["conv"].bind((96, 11), {"stride": 4}))
(96, 55, 55)
"""

from .base import (KEEPS, OPS, REQUIRED, TRAITS, Arg, ArgError, Example, Op, OpsWith, Shape,
                   ShapeError, Tensor, _check, _lit, n, register, shape_str, with_trait)
from .windows import _window_out, window_axes
from . import layers as _layers  # noqa: F401  (registers)
from . import norms as _norms  # noqa: F401  (registers)
from . import regularizers as _regularizers  # noqa: F401  (registers)
from .activations import ACTIVATIONS, NUMPY, Activation, is_formula, torch_xp

__all__ = ["ACTIVATIONS", "KEEPS", "NUMPY", "OPS", "REQUIRED", "TRAITS", "Activation", "Arg",
           "ArgError", "Example", "is_formula", "Op", "OpsWith", "Shape", "ShapeError", "Tensor", "n", "register",
           "shape_str", "torch_xp", "user_ops", "window_axes", "with_trait"]


def user_ops() -> tuple[str, ...]:
    """The ops a spec can call by name (every op but the merges and the input), sorted."""
    return tuple(sorted(k for k, op in OPS.items() if op.category not in ("merge", "input")))


USER_OPS = user_ops()
