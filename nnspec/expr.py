"""The one expression evaluator: the expander evaluates spec expressions with it on
concrete values, the source emitter (`nnspec.backends.torch_generic`) on symbolic ones.

No code is ever executed: the syntax tree (`nnspec.ast`) is walked here. Values are ints,
floats, strings, booleans and tuples of them; the train section also meets bare words
(`values.Sym`) and calls (`values.CallValue`). An `Algebra` lets values stand for source
text (the emitter's `pysource.Sym`): where an operand is symbolic, the algebra builds the
result instead of Python arithmetic.

Every evaluation spends from a `Budget`, shared with the expander, so a spec cannot make
the checker work without bound (tuples doubled 27 times, repeats of empty repeats, blocks
that call the previous block twice, thirty deep): the step that overdraws it raises
`BudgetError` and the expander reports NN017 at that statement.

>>> from nnspec import parser
>>> e = parser.parse("input 8\\nlinear(ceil(7 / 2) + max(1, depths[-1]))").body[0].items[0].args[0]
>>> Evaluator().eval(e, {"depths": (2, 3)}, None)
7
"""

from __future__ import annotations

import math
import re

from . import ast
from .errors import Span, did_you_mean
from .values import CallValue, Sym, fmt

MAX_VALUE = 10 ** 18       # integers in a spec stay below this
MAX_STEPS = 1_000_000      # work of one expansion that makes no layers: statements, iterations,
                           # block calls, operations; every layer made adds NODE_STEPS to it
MAX_TUPLE = 10_000         # items of one tuple
MAX_STRING = 10_000        # characters of a label built from expressions
MAX_NAME = 1_000           # characters of a layer's full name (`layer4.1.conv2`)

# A block instance costs this many steps: binding its arguments, naming, a new scope.
BLOCK_CALL_STEPS = 10
NODE_STEPS = 10

BUILTINS = ("ceil", "floor", "len", "max", "min")


class ExprError(Exception):
    """An expression has no value: its diagnostic, not yet collected."""

    def __init__(self, code: str, message: str, span: Span | None, help: str | None = None):
        super().__init__(message)
        self.code, self.message, self.span, self.help = code, message, span, help


class BudgetError(Exception):
    """The work budget is spent; `what` is the message, `span` where (if the step knew)."""

    def __init__(self, what: str, span: Span | None = None):
        super().__init__(what)
        self.what, self.span = what, span


class Budget:
    """Steps of work left for one expansion (evaluating and expanding both spend)."""

    __slots__ = ("used", "limit", "base")

    def __init__(self, limit: int | None = None):
        limit = MAX_STEPS if limit is None else limit
        self.used, self.limit, self.base = 0, limit, limit

    def spend(self, n: int, span: Span | None = None) -> None:
        self.used += n
        if self.used > self.limit:
            raise BudgetError(f"expanding the spec takes more than {self.base:,} steps", span)


class Algebra:
    """How symbolic values combine (the emitter's `pysource` provides one). A method gets
    operands of which at least one is symbolic and returns the symbolic result."""

    def is_sym(self, v) -> bool:
        raise NotImplementedError

    def binary(self, op: str, a, b):
        raise NotImplementedError

    def unary(self, op: str, v):
        raise NotImplementedError

    def ifexp(self, test, a, b):
        raise NotImplementedError

    def call(self, name: str, args: tuple):
        raise NotImplementedError

    def index(self, obj, i):
        raise NotImplementedError


_CMP = ("==", "!=", "<", "<=", ">", ">=")


class Evaluator:
    """Evaluates `nnspec.ast` expressions. Override `lookup` (names) and `field` (`in.*`)
    for another notion of scope; set `algebra` for symbolic values; `bare_words` makes an
    undefined name a `values.Sym` (the train section: `loss cross_entropy`)."""

    algebra: Algebra | None = None

    def __init__(self, budget: Budget | None = None, bare_words: bool = False):
        self.budget = budget if budget is not None else Budget()
        self.bare_words = bare_words

    # ---- scope hooks
    def lookup(self, e: ast.Var, env):
        if e.name in env:
            return env[e.name]
        if self.bare_words:
            return Sym(e.name, e.span)
        raise ExprError("NN014", f"undefined name '{e.name}'", e.span, _undefined_help(e.name, env))

    def field(self, e: ast.Attr, shape):
        """`in.c` etc. from the shape entering the layers (None: there is none here)."""
        if e.obj != "in":
            raise ExprError("NN014", f"'{e.obj}.{e.attr}': only the incoming shape `in` has fields",
                            e.span, "use in.c, in.h, in.w, in.l, in.rank, in.features or in.shape")
        if shape is None:
            raise ExprError("NN014", f"'in.{e.attr}' has no value here: `in` is the shape entering "
                                     f"the layers", e.span,
                            "write the number; `in` can be read in layer arguments and blocks")
        fields = shape_fields(shape)
        if e.attr not in fields:
            from .ops import shape_str
            raise ExprError("NN014", f"the incoming shape {shape_str(shape)} has no field '{e.attr}'",
                            e.span, f"fields: {', '.join(sorted(fields))}")
        return fields[e.attr]

    # ---- evaluation
    def eval(self, e, env, shape):
        # One frame per level (no helper closures): deep expressions stay far from Python's
        # recursion limit (the parser caps the depth). Leaves cost nothing; every operation
        # costs a step, a tuple one per item.
        t = type(e)
        if t is ast.Const:
            return e.value
        if t is ast.Var:
            return self.lookup(e, env)
        b = self.budget
        b.used += 1
        if b.used > b.limit:
            b.spend(0, e.span)
        alg = self.algebra
        if t is ast.Binary:
            op = e.op
            a = self.eval(e.left, env, shape)
            if op == "and" or op == "or":
                if alg is None or not alg.is_sym(a):  # Python's short circuit
                    if (op == "and") != bool(a):
                        return a
                    return self.eval(e.right, env, shape)
                return alg.binary(op, a, self.eval(e.right, env, shape))
            r = self.eval(e.right, env, shape)
            if alg is not None and (alg.is_sym(a) or alg.is_sym(r)):
                return alg.binary(op, a, r)
            return binary(e, a, r, b)
        if t is ast.Attr:
            return self.field(e, shape)
        if t is ast.TupleExpr:
            b.spend(len(e.items), e.span)
            return tuple([self.eval(x, env, shape) for x in e.items])
        if t is ast.Index:
            return self._index(e, self.eval(e.obj, env, shape), self.eval(e.index, env, shape))
        if t is ast.CallExpr:
            return self._call(e, env, shape)
        if t is ast.IfExpr:
            test = self.eval(e.test, env, shape)
            if alg is not None and alg.is_sym(test):
                return alg.ifexp(test, self.eval(e.then, env, shape), self.eval(e.orelse, env, shape))
            return self.eval(e.then if test else e.orelse, env, shape)
        if t is ast.Unary:
            v = self.eval(e.operand, env, shape)
            if alg is not None and alg.is_sym(v):
                return alg.unary(e.op, v)
            if e.op == "not":
                return not v
            if not _number(v):
                raise ExprError("NN015", f"cannot negate {fmt(v)}", e.span)
            return -v
        raise AssertionError(e)

    def _index(self, e: ast.Index, obj, i):
        alg = self.algebra
        if alg is not None and (alg.is_sym(i) or (alg.is_sym(obj) and not isinstance(obj, tuple))):
            return alg.index(obj, i)
        if not isinstance(obj, (tuple, str)):
            raise ExprError("NN015", f"cannot index {fmt(obj)}: only tuples have items", e.obj.span,
                            "index a tuple: `depths[0]` with `depths = (2, 2, 2, 2)`")
        if isinstance(i, bool) or not isinstance(i, int):
            raise ExprError("NN015", f"an index is an integer, got {fmt(i)}", e.index.span)
        if not -len(obj) <= i < len(obj):
            what = f"a tuple of {len(obj)} item{'s' if len(obj) != 1 else ''}" if isinstance(obj, tuple) \
                else f"a string of {len(obj)} character{'s' if len(obj) != 1 else ''}"
            raise ExprError("NN015", f"index {i} is out of range for {what}", e.index.span,
                            f"indices run from 0 to {len(obj) - 1} (or -{len(obj)} to -1 from the end)"
                            if obj else "the tuple is empty")
        return obj[i]

    def _call(self, e: ast.CallExpr, env, shape):
        if e.name not in BUILTINS:
            if not self.bare_words:
                raise ExprError("NN015", f"'{e.name}(…)' is not a value here", e.span,
                                did_you_mean(e.name, BUILTINS) or
                                f"expressions may call {', '.join(BUILTINS)}; the train section "
                                f"takes calls such as `sgd(lr=0.1)`")
            return CallValue(e.name, tuple(self.eval(a, env, shape) for a in e.args),
                             tuple((k.name, self.eval(k.value, env, shape), k.span) for k in e.kwargs),
                             e.span)
        if e.kwargs:
            raise ExprError("NN015", f"{e.name}() takes no keyword arguments", e.kwargs[0].span)
        name = e.name
        if name in ("ceil", "floor"):
            if len(e.args) != 1:
                raise ExprError("NN015", f"{name}() takes one value, got {len(e.args)}", e.span,
                                f"`{name}(a / b)`")
            arg = e.args[0]
            if type(arg) is ast.Binary and arg.op == "/":  # exact for integers of any size
                a, b = self.eval(arg.left, env, shape), self.eval(arg.right, env, shape)
                alg = self.algebra
                if alg is not None and (alg.is_sym(a) or alg.is_sym(b)):
                    return alg.call(name, (a, b))
                if _int(a) and _int(b):
                    if b == 0:
                        raise ExprError("NN015", "division by zero", arg.span)
                    return a // b if name == "floor" else -(-a // b)
                v = binary(arg, a, b, self.budget)
            else:
                v = self.eval(arg, env, shape)
                if self.algebra is not None and self.algebra.is_sym(v):
                    return self.algebra.call(name, (v,))
            if not _number(v):
                raise ExprError("NN015", f"{name}() needs a number, got {fmt(v)}", arg.span)
            return math.floor(v) if name == "floor" else math.ceil(v)
        args = tuple(self.eval(a, env, shape) for a in e.args)
        if self.algebra is not None and any(self.algebra.is_sym(a) for a in args):
            return self.algebra.call(name, args)
        if name == "len":
            if len(args) != 1 or not isinstance(args[0], (tuple, str)):
                raise ExprError("NN015", "len() takes one tuple", e.span, "`len(depths)`")
            return len(args[0])
        if len(args) == 1 and isinstance(args[0], tuple):  # max(depths)
            args = args[0]
        if not args or not all(_number(a) for a in args):
            raise ExprError("NN015", f"{name}() takes numbers, got {', '.join(map(fmt, args)) or 'none'}",
                            e.span, f"`{name}(a, b)` or `{name}(a_tuple)`")
        return min(args) if name == "min" else max(args)


def names_in(e) -> set[str]:
    """The variable names an expression reads."""
    out, stack = set(), [e]
    while stack:
        x = stack.pop()
        if type(x) is ast.Var:
            out.add(x.name)
        elif type(x) is ast.Binary:
            stack += (x.left, x.right)
        elif type(x) is ast.Unary:
            stack.append(x.operand)
        elif type(x) is ast.TupleExpr:
            stack += x.items
        elif type(x) is ast.Index:
            stack += (x.obj, x.index)
        elif type(x) is ast.IfExpr:
            stack += (x.then, x.test, x.orelse)
        elif type(x) is ast.CallExpr:
            stack += list(x.args) + [k.value for k in x.kwargs]
    return out


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def binary(e: ast.Binary, a, b, budget: Budget | None = None):
    """`a <op> b` on concrete values, with the spec's rules: exact integer division where it
    divides, tuples join with +, results stay below 10^18 and finite."""
    op = e.op
    if op == "==" or op == "!=":
        return (a == b) == (op == "==")
    if not (_number(a) and _number(b)):
        if op == "+" and isinstance(a, tuple) and isinstance(b, tuple):
            n = len(a) + len(b)
            if n > MAX_TUPLE:
                raise ExprError("NN017", f"a tuple of {n:,} items is longer than {MAX_TUPLE:,}", e.span,
                                "tuples in a spec hold a few sizes, not thousands")
            if budget is not None:
                budget.spend(n, e.span)
            return a + b
        raise ExprError("NN015", f"cannot apply '{op}' to {fmt(a)} and {fmt(b)}", e.span)
    if op in ("<", "<=", ">", ">="):
        return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
    try:
        if op == "+":
            r = a + b
        elif op == "-":
            r = a - b
        elif op == "*":
            r = a * b
        elif op == "/":
            if b == 0:
                raise ExprError("NN015", "division by zero", e.span)
            r = a // b if isinstance(a, int) and isinstance(b, int) and a % b == 0 else a / b
        elif op == "//":
            if b == 0:
                raise ExprError("NN015", "division by zero", e.span)
            r = a // b
        elif op == "%":
            if b == 0:
                raise ExprError("NN015", "modulo by zero", e.span)
            r = a % b
        elif op == "**":
            if isinstance(a, int) and isinstance(b, int) and b > 64 and abs(a) > 1:
                raise ExprError("NN003", f"{a}**{b} is out of range", e.span,
                                "values in a spec must be below 10^18")
            r = a ** b
            if isinstance(r, complex):
                raise ExprError("NN015", f"{_paren(a)}**{fmt(b)} is not a real number", e.span)
        else:
            raise AssertionError(op)
    except OverflowError:
        raise ExprError("NN003", f"the result of '{op}' is out of range", e.span) from None
    except ZeroDivisionError:
        raise ExprError("NN015", "division by zero", e.span) from None
    if isinstance(r, int) and abs(r) >= MAX_VALUE:
        raise ExprError("NN003", f"the result of '{op}' is out of range", e.span,
                        "values in a spec must be below 10^18")
    if isinstance(r, float) and not math.isfinite(r):
        raise ExprError("NN003", f"the result of '{op}' is not finite", e.span)
    return r


def shape_fields(shape: tuple) -> dict:
    """What `in.*` reads from a shape: c, rank, features, shape, and h, w (CxHxW) or l (CxL)."""
    fields = {"shape": tuple(shape), "rank": len(shape), "c": shape[0], "features": math.prod(shape)}
    if len(shape) == 3:
        fields.update(h=shape[1], w=shape[2])
    if len(shape) == 2:
        fields.update(l=shape[1])
    return fields


def literal(text: str):
    """A value written outside a spec (`nnspec table --set depths=(2, 2, 2, 2)`): an
    expression without names, evaluated; raises SpecError if it is not one."""
    from . import parser
    from .errors import Diagnostic, SpecError
    e = parser.parse_expr(text)
    try:
        return Evaluator().eval(e, {}, None)
    except ExprError as err:
        raise SpecError([Diagnostic(err.code, err.message, err.span, help=err.help)], {"<value>": text}) from None
    except BudgetError as err:
        raise SpecError([Diagnostic("NN017", err.what)]) from None


# ---- labels built from expressions ---------------------------------------------------------

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def label_text(s: ast.Stmt, ev: Evaluator, env, shape) -> str | None:
    """The label of a statement with its `{expressions}` filled in (`denselayer{i + 1}` ->
    `denselayer3`); a plain label as written. Raises ExprError for a value that is not an
    integer ≥ 0 or a name, or a result that is not a name."""
    if s.label_parts is None:
        return s.label
    out = []
    for part in s.label_parts:
        if type(part) is str:
            out.append(part)
            continue
        v = ev.eval(part, env, shape)
        if ev.algebra is not None and ev.algebra.is_sym(v):
            raise ExprError("NN015", f"the label '{s.label}' depends on a parameter", part.span)
        if isinstance(v, bool) or not isinstance(v, (int, str)) or (isinstance(v, int) and v < 0):
            raise ExprError("NN013", f"a label takes integers ≥ 0 and names, got {fmt(v)}", part.span,
                            "e.g. `denselayer{i + 1}:` or `{kind}{i}:`")
        out.append(str(v))
    text = "".join(out)
    if len(text) > MAX_STRING:
        raise ExprError("NN017", f"the label '{s.label}' comes to {len(text):,} characters", s.label_span,
                        f"a label is at most {MAX_STRING:,} characters")
    if not _NAME.match(text):
        raise ExprError("NN013", f"the label '{s.label}' comes to '{text}', which is not a name", s.label_span,
                        "a name is a letter or '_' followed by letters, digits or '_'")
    return text


def _undefined_help(name: str, env) -> str | None:
    if name in ("True", "False", "yes", "no", "on", "off", "TRUE", "FALSE"):
        return "booleans are written true and false"
    if name in ("None", "none", "null"):
        return "leave the argument out to get its default"
    return did_you_mean(name, env) or (f"names in scope: {', '.join(sorted(env))}" if env else None)


def _paren(v) -> str:
    return f"({fmt(v)})" if _number(v) and v < 0 else fmt(v)
