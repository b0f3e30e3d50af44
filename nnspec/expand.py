"""Syntax tree -> graph: evaluates expressions, instantiates blocks, unrolls repeats,
names every node and infers every shape (blocks may read the incoming shape, `in.c`, so
shapes are known while expanding). All independent errors are collected.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from . import ast
from .errors import Collector, Diagnostic, Frame, Span, SpecError, did_you_mean
from .ir import Graph, Node
from .ops import OPS, USER_OPS, ArgError, ShapeError, shape_str
from .values import CallValue, Sym, fmt

MAX_NODES = 200_000
MAX_VALUE = 10 ** 18
MAX_BLOCK_DEPTH = 50  # block instances inside block instances


class _Abort(Exception):
    """Expansion of one item stops; its diagnostic is already collected."""


@dataclass
class _Scope:
    prefix: str
    counter: int = 0
    suffixes: dict | None = None  # hint -> next `_k` to try (top level), so naming stays O(1)

    def name(self, label: str | None, hint: str = "", taken=()) -> str:
        """The label; else the position (as nn.Sequential numbers children); at the top level,
        where positions would read badly in tables, the op's name (`flatten`, `add_2`)."""
        self.counter += 1
        if label is not None:
            return f"{self.prefix}.{label}" if self.prefix else label
        if self.prefix:
            return f"{self.prefix}.{self.counter - 1}"
        own = hint or str(self.counter - 1)
        if own not in taken:
            return own
        if self.suffixes is None:
            self.suffixes = {}
        k = self.suffixes.get(own, 1)
        while f"{own}_{k}" in taken:
            k += 1
        self.suffixes[own] = k + 1
        return f"{own}_{k}"


@dataclass(frozen=True)
class _Ctx:
    env: dict
    in_shape: tuple | None  # what `in.*` reads; _UNKNOWN_SHAPE after an error upstream
    scope: _Scope
    chain: tuple[Frame, ...]
    stack: tuple[str, ...]  # blocks being expanded, for recursion


class Expander:
    def __init__(self, module: ast.Module, overrides: dict | None = None):
        self.m = module
        self.errors = Collector()
        self.nodes: list[Node] = []
        self.names: dict[str, Span] = {}
        self.blocks: dict[str, ast.BlockDef] = {}
        self.overrides = dict(overrides or {})
        header = module.headers[0] if module.headers else None
        self.globals = frozenset(p.name for p in header.params) if header else frozenset()

    # ---- entry
    def run(self) -> Graph:
        m = self.m
        for extra in m.headers[1:]:
            self.errors.add("NN019", "a second `network` header", extra.span,
                            help="one file describes one network")
        for extra in m.inputs[1:]:
            self.errors.add("NN019", "a second `input` declaration", extra.span)
        for extra in m.trains[1:]:
            self.errors.add("NN019", "a second `train` section", extra.span,
                            help="put all training settings in one `train { … }`")
        for b in m.blocks:
            if b.name in self.blocks:
                self.errors.add("NN019", f"block '{b.name}' is defined twice", b.span,
                                notes=(f"first defined at {self.blocks[b.name].span}",))
            elif b.name in OPS:
                self.errors.add("NN019", f"block '{b.name}' has the name of a built-in op", b.span,
                                help="rename the block")
            else:
                self.blocks[b.name] = b

        header = m.headers[0] if m.headers else None
        name = header.name if header else _stem(m.file)
        env = self._network_args(header)
        if self.errors:  # a network parameter without a value: everything that uses it would fail too
            raise SpecError(self.errors.diagnostics, {m.file: m.source})
        if not m.inputs:
            self.errors.add("NN019", "the spec has no `input` declaration",
                            Span(m.file, 1, 1, 1, 1),
                            help="declare the input shape, e.g. `input 3x224x224` or `input 784`")
            raise SpecError(self.errors.diagnostics, {m.file: m.source})
        decl = m.inputs[0]
        in_shape = self._shape(decl.shape, env)
        if in_shape is None:
            raise SpecError(self.errors.diagnostics, {m.file: m.source})
        self._add_node("input", "input", {"shape": in_shape}, (), in_shape, decl.span, ())
        ctx = _Ctx(env, in_shape, _Scope(""), (), ())
        out = self._body(m.body, 0, ctx)
        if len(self.nodes) == 1 and not self.errors:
            self.errors.add("NN019", "the network has no layers", decl.span,
                            help="add layers after the `input` line, one per line")
        train = None
        if m.trains:
            from .config import Unevaluable, build_train_config

            def evaluate(x):
                try:
                    return self.eval(x, env, None, symbols=True)
                except _Abort:
                    raise Unevaluable from None
            train = build_train_config(m.trains[0], evaluate, self.errors)
        if self.errors:
            raise SpecError(self.errors.diagnostics, {m.file: m.source})
        return Graph(name, dict(env), tuple(self.nodes), out, m.file,
                     m.source, train, dict(self.blocks))

    def _network_args(self, header) -> dict:
        env: dict = {}
        params = header.params if header else ()
        known = {p.name for p in params}
        for k in self.overrides:
            if k not in known:
                self.errors.add("NN011", f"the network has no parameter '{k}'",
                                header.span if header else None,
                                help=did_you_mean(k, known) or
                                (f"parameters: {', '.join(sorted(known))}" if known else "it takes none"))
        for p in params:
            if p.name in self.overrides:
                env[p.name] = self.overrides[p.name]
            elif p.default is None:
                self.errors.add("NN012", f"network parameter '{p.name}' has no default", p.span,
                                help=f"give it one: `{p.name} = …`")
            else:
                try:
                    env[p.name] = self.eval(p.default, env, None)
                except _Abort:
                    pass
        return env

    # ---- statements
    def _body(self, stmts, current: int, ctx: _Ctx) -> int:
        for s in stmts:
            current = self._stmt(s, current, ctx)
        return current

    def _stmt(self, s: ast.Stmt, current: int, ctx: _Ctx) -> int:
        start = len(self.nodes)
        if start + len(s.items) > MAX_NODES:
            self.errors.add("NN017", f"a chain of {len(s.items):,} items would expand to more than "
                                     f"{MAX_NODES:,} layers", s.span, chain=ctx.chain)
            raise _TooBig
        for i, (item, label) in enumerate(zip(s.items, chain_labels(s))):
            label_span = s.label_span if i == 0 else s.span
            try:
                current = self._item(item, label, label_span, current, ctx)
            except _Abort:
                return self._broken(current)
        if s.expect is not None:
            self._check_expect(s, start, current, ctx)
        return current

    def _broken(self, current: int) -> int:
        """After an error the tensor is unknown; later ops on it report nothing more."""
        return -1

    def _item(self, item, label, label_span, current, ctx: _Ctx) -> int:
        if isinstance(item, ast.Call):
            if item.name in self.blocks:
                return self._instance(item, label, label_span, current, ctx)
            return self._op(item, label, label_span, current, ctx)
        if label is not None:  # a labelled compound item is a named scope
            name = self._claim(ctx.scope.name(label), label_span, ctx)
            ctx = _Ctx(ctx.env, ctx.in_shape, _Scope(name), ctx.chain, ctx.stack)
        if isinstance(item, ast.Group):
            return self._body(item.body, current, ctx)
        if isinstance(item, ast.Merge):
            return self._merge(item, current, ctx)
        if isinstance(item, ast.Repeat):
            return self._repeat(item, current, ctx)
        if isinstance(item, ast.Cond):
            test = self.eval(item.test, ctx.env, ctx.in_shape)
            if test:
                return self._body(item.then, current, ctx)
            return self._body(item.orelse or (), current, ctx)
        raise AssertionError(item)

    def _claim(self, name: str, span: Span | None, ctx: _Ctx) -> str:
        if name in self.names:
            self.errors.add("NN018", f"the name '{name}' is used twice", span, chain=ctx.chain,
                            notes=(f"first used at {self.names[name]}",))
            raise _Abort
        self.names[name] = span
        return name

    def _add_node(self, name, op, attrs, inputs, shape, span, chain) -> int:
        if len(self.nodes) >= MAX_NODES:
            self.errors.add("NN017", f"the network expands to more than {MAX_NODES:,} layers", span,
                            chain=chain, help="check the repeat counts")
            raise _TooBig
        nid = len(self.nodes)
        self.nodes.append(Node(nid, name, op, attrs, inputs, shape, span, chain))
        return nid

    def _op(self, call: ast.Call, label, label_span, current, ctx: _Ctx) -> int:
        opdef = OPS.get(call.name)
        if opdef is None or opdef.category == "input":
            cands = set(USER_OPS) | set(self.blocks)
            self.errors.add("NN010", f"unknown op or block '{call.name}'", call.name_span,
                            chain=ctx.chain, help=did_you_mean(call.name, cands) or
                            "see `nnspec ops` for the built-in ops")
            raise _Abort
        if opdef.category == "merge":
            self.errors.add("NN010", f"'{call.name}' takes a body of parallel paths", call.span,
                            chain=ctx.chain, help=f"write `{call.name} {{ path1 \\n path2 }}`")
            raise _Abort
        env, block_in = ctx.env, ctx.in_shape
        pos = tuple([self.eval(a, env, block_in) for a in call.args]) if call.args else ()
        kw = {}
        for k in call.kwargs:
            if k.name in kw:
                self.errors.add("NN012", f"argument '{k.name}' of {call.name} given twice", k.span,
                                chain=ctx.chain, help=opdef.usage())
                raise _Abort
            kw[k.name] = self.eval(k.value, env, block_in)
        try:
            attrs = opdef.bind(pos, kw)
        except ArgError as e:
            self.errors.add(e.code, e.message, _arg_span(opdef, call, e.arg), chain=ctx.chain, help=e.help)
            raise _Abort
        name = self._claim(ctx.scope.name(label, call.name, self.names), label_span or call.span, ctx)
        if current < 0:
            return self._broken(current)
        in_shape = self.nodes[current].shape
        try:
            shape = opdef.infer((in_shape,), attrs)
        except ShapeError as e:
            span = _arg_span(opdef, call, e.arg)
            if e.about_input:  # "input to conv6 is 256x6x6; a 7x7 kernel does not fit"
                self.errors.add(e.code, f"input to {name} is {shape_str(in_shape)}; {e.message}", span,
                                chain=ctx.chain, help=e.help)
            else:
                self.errors.add(e.code, f"{name}: {e.message}", span, chain=ctx.chain, help=e.help,
                                notes=(f"input to {name} is {shape_str(in_shape)}",))
            raise _Abort
        return self._add_node(name, call.name, attrs, (current,), shape, call.span, ctx.chain)

    def _instance(self, call: ast.Call, label, label_span, current, ctx: _Ctx) -> int:
        b = self.blocks[call.name]
        if b.name in ctx.stack:
            cycle = " -> ".join(ctx.stack[ctx.stack.index(b.name):] + (b.name,))
            self.errors.add("NN016", f"block '{b.name}' instantiates itself ({cycle})", call.span,
                            chain=ctx.chain, help="a block cannot contain itself; use `repeat`")
            raise _Abort
        if len(ctx.stack) >= MAX_BLOCK_DEPTH:
            self.errors.add("NN016", f"blocks are nested more than {MAX_BLOCK_DEPTH} deep", call.span,
                            chain=ctx.chain, help="flatten the hierarchy of blocks")
            raise _Abort
        genv = {k: v for k, v in ctx.env.items() if k in self.globals}  # blocks see network args only
        args = self._bind_block(b, call, genv, ctx)
        env = {**genv, **args}
        name = self._claim(ctx.scope.name(label, call.name, self.names), label_span or call.span, ctx)
        frame = Frame(name, b.name, b.span, call.span, tuple(args.items()))
        in_shape = self.nodes[current].shape if current >= 0 else _UNKNOWN_SHAPE
        inner = _Ctx(env, in_shape, _Scope(name), ctx.chain + (frame,), ctx.stack + (b.name,))
        return self._body(b.body, current, inner)

    def _bind_block(self, b: ast.BlockDef, call: ast.Call, genv: dict, ctx: _Ctx) -> dict:
        names = [p.name for p in b.params]
        if len(call.args) > len(names):
            self.errors.add("NN012", f"block {b.name} takes {len(names)} argument"
                                     f"{'s' if len(names) != 1 else ''}, got {len(call.args)}",
                            call.span, chain=ctx.chain, help=_block_usage(b))
            raise _Abort
        given = {p.name: self.eval(a, ctx.env, ctx.in_shape) for p, a in zip(b.params, call.args)}
        for k in call.kwargs:
            if k.name not in names:
                self.errors.add("NN011", f"block {b.name} has no parameter '{k.name}'", k.span,
                                chain=ctx.chain, help=did_you_mean(k.name, names) or _block_usage(b))
                raise _Abort
            if k.name in given:
                self.errors.add("NN012", f"argument '{k.name}' given twice", k.span, chain=ctx.chain)
                raise _Abort
            given[k.name] = self.eval(k.value, ctx.env, ctx.in_shape)
        out = {}
        for p in b.params:
            if p.name in given:
                out[p.name] = given[p.name]
            elif p.default is not None:
                out[p.name] = self.eval(p.default, {**genv, **out}, ctx.in_shape)
            else:
                self.errors.add("NN012", f"block {b.name} needs argument '{p.name}'", call.span,
                                chain=ctx.chain, help=_block_usage(b))
                raise _Abort
        return out

    def _merge(self, mg: ast.Merge, current, ctx: _Ctx) -> int:
        outs, labels = [], []
        for i, path in enumerate(mg.paths):
            try:
                out = self._stmt(path, current, ctx)
            except _Abort:
                out = -1
            outs.append(out)
            labels.append((i + 1, path.span.line, self.nodes[out].name if out >= 0 else "?"))
        if not mg.paths:
            self.errors.add("NN010", f"{mg.kind} has no paths", mg.span, chain=ctx.chain,
                            help=f"list one path per line inside `{mg.kind} {{ }}`")
            raise _Abort
        name = self._claim(ctx.scope.name(None, mg.kind, self.names), mg.span, ctx)
        if any(o < 0 for o in outs):
            return -1
        ins = tuple(self.nodes[o].shape for o in outs)
        try:
            shape = OPS[mg.kind].infer(ins, {})
        except ShapeError as e:
            notes = tuple(f"path {k} (line {line}, ends at {nm}): {shape_str(s)}"
                          for (k, line, nm), s in zip(labels, ins))
            self.errors.add(e.code, e.message, mg.span, chain=ctx.chain, help=e.help, notes=notes)
            raise _Abort
        return self._add_node(name, mg.kind, {}, tuple(outs), shape, mg.span, ctx.chain)

    def _repeat(self, r: ast.Repeat, current, ctx: _Ctx) -> int:
        count = self.eval(r.count, ctx.env, ctx.in_shape)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            self.errors.add("NN013", f"repeat needs a count ≥ 0, got {fmt(count)}", r.count.span,
                            chain=ctx.chain)
            raise _Abort
        if count > MAX_NODES:
            self.errors.add("NN017", f"repeat {count:,} would expand to more than {MAX_NODES:,} layers",
                            r.count.span, chain=ctx.chain, help="check the repeat count")
            raise _Abort
        before = len(self.nodes)
        for i in range(count):
            env = dict(ctx.env)
            if r.var:
                env[r.var] = i
            current = self._body(r.body, current, _Ctx(env, ctx.in_shape, ctx.scope, ctx.chain, ctx.stack))
            if current < 0:
                break
            if i == 0:  # refuse a huge expansion from its first iteration, not after 200,000 nodes
                per = len(self.nodes) - before
                if per and before + per * count > MAX_NODES:
                    self.errors.add("NN017", f"repeat {count:,} of {per:,} layer{'s' if per != 1 else ''}"
                                             f" would expand to more than {MAX_NODES:,} layers",
                                    r.count.span, chain=ctx.chain, help="check the repeat count")
                    raise _TooBig
        return current

    def _check_expect(self, s: ast.Stmt, start: int, current: int, ctx: _Ctx) -> None:
        if current < 0:
            return
        want = self._shape(s.expect, ctx.env, ctx.in_shape)
        got = self.nodes[current].shape
        if want is not None and tuple(want) != tuple(got):
            # point `explain` at the layer of this statement that last changed the shape
            culprit = next((nd for nd in reversed(self.nodes[start:])
                            if nd.inputs and nd.shape != self.nodes[nd.inputs[0]].shape), self.nodes[current])
            file = self.m.file if self.m.file and not self.m.file.startswith("<") else "FILE"
            self.errors.add("NN024", f"{self.nodes[current].name} outputs {shape_str(got)}, "
                                     f"the spec expects {shape_str(want)}",
                            s.expect.span, chain=ctx.chain,
                            help=f"`nnspec explain {file} {culprit.name}` shows how its shape is computed")

    def _shape(self, se: ast.ShapeExpr, env, in_shape=None):
        try:
            dims = tuple(self.eval(d, env, in_shape) for d in se.dims)
        except _Abort:
            return None
        if len(dims) == 1 and isinstance(dims[0], tuple):
            dims = dims[0]
        if not dims or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dims):
            self.errors.add("NN013", f"a shape needs positive integers, got {fmt(dims)}", se.span)
            return None
        if len(dims) > 4:
            self.errors.add("NN013", f"shapes have at most 4 axes (CxDxHxW), got {len(dims)}", se.span)
            return None
        return dims

    # ---- expressions
    def eval(self, e, env: dict, in_shape, symbols: bool = False) -> Any:
        try:
            return self._eval(e, env, in_shape, symbols)
        except _ExprError as err:
            self.errors.add(err.code, err.message, err.span, help=err.help)
            raise _Abort

    def _eval(self, e, env, in_shape, symbols):
        # Recursion is one frame per level (no helper closures): deep expressions stay far
        # from Python's recursion limit (the parser caps the depth).
        t = type(e)
        if t is ast.Const:
            return e.value
        if t is ast.Var:
            if e.name in env:
                return env[e.name]
            if symbols:
                return Sym(e.name, e.span)
            raise _ExprError("NN014", f"undefined name '{e.name}'", e.span, _undefined_help(e.name, env))
        if t is ast.Binary:
            if e.op == "and":
                return self._eval(e.left, env, in_shape, symbols) and self._eval(e.right, env, in_shape, symbols)
            if e.op == "or":
                return self._eval(e.left, env, in_shape, symbols) or self._eval(e.right, env, in_shape, symbols)
            return _binary(e, self._eval(e.left, env, in_shape, symbols),
                           self._eval(e.right, env, in_shape, symbols))
        if t is ast.Attr:
            return self._attr(e, in_shape)
        if t is ast.TupleExpr:
            return tuple(self._eval(x, env, in_shape, symbols) for x in e.items)
        if t is ast.CallExpr:
            if not symbols:
                raise _ExprError("NN015", f"'{e.name}(…)' is not a value here", e.span,
                                 "only the train section takes calls such as `sgd(lr=0.1)`")
            return CallValue(e.name, tuple(self._eval(a, env, in_shape, symbols) for a in e.args),
                             tuple((k.name, self._eval(k.value, env, in_shape, symbols), k.span)
                                   for k in e.kwargs), e.span)
        if t is ast.IfExpr:
            test = self._eval(e.test, env, in_shape, symbols)
            return self._eval(e.then if test else e.orelse, env, in_shape, symbols)
        if t is ast.Unary:
            v = self._eval(e.operand, env, in_shape, symbols)
            if e.op == "not":
                return not v
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise _ExprError("NN015", f"cannot negate {fmt(v)}", e.span)
            return -v
        raise AssertionError(e)

    def _attr(self, e: ast.Attr, in_shape):
        if e.obj != "in":
            raise _ExprError("NN014", f"'{e.obj}.{e.attr}': only the incoming shape `in` has fields",
                             e.span, "use in.c, in.h, in.w, in.l, in.rank, in.features or in.shape")
        if in_shape is _UNKNOWN_SHAPE:  # the block's input failed: that error is already collected
            raise _Abort
        if in_shape is None:
            raise _ExprError("NN014", f"'in.{e.attr}' has no value here: `in` is the shape entering "
                                      f"the layers", e.span,
                             "write the number; `in` can be read in layer arguments and blocks")
        fields = shape_fields(in_shape)
        if e.attr not in fields:
            raise _ExprError("NN014", f"the incoming shape {shape_str(in_shape)} has no field '{e.attr}'",
                             e.span, f"fields: {', '.join(sorted(fields))}")
        return fields[e.attr]


def chain_labels(s: ast.Stmt) -> list[str | None]:
    """The label of each item of a statement, None where its scope names it: `fc6: linear(4096)
    relu relu` -> fc6, fc6_relu, fc6_relu_2. The torch emitter names modules by the same rule."""
    labels, seen = [s.label], {}
    for item in s.items[1:]:
        if s.label and isinstance(item, ast.Call):
            k = seen[item.name] = seen.get(item.name, 0) + 1
            labels.append(f"{s.label}_{item.name}" + (f"_{k}" if k > 1 else ""))
        else:
            labels.append(None)
    return labels


def shape_fields(shape: tuple) -> dict:
    """What `in.*` reads from a shape: c, rank, features, shape, and h, w (CxHxW) or l (CxL)."""
    fields = {"shape": tuple(shape), "rank": len(shape), "c": shape[0], "features": math.prod(shape)}
    if len(shape) == 3:
        fields.update(h=shape[1], w=shape[2])
    if len(shape) == 2:
        fields.update(l=shape[1])
    return fields


# The shape entering a block instance whose input failed (`in.*` there stops silently).
_UNKNOWN_SHAPE = object()


class _TooBig(Exception):
    """The node limit was hit: expansion stops altogether."""


class _ExprError(Exception):
    def __init__(self, code, message, span, help=None):
        super().__init__(message)
        self.code, self.message, self.span, self.help = code, message, span, help


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _binary(e: ast.Binary, a, b):
    op = e.op
    if op in ("==", "!="):
        return (a == b) == (op == "==")
    if not (_number(a) and _number(b)):
        if op == "+" and isinstance(a, tuple) and isinstance(b, tuple):
            return a + b
        raise _ExprError("NN015", f"cannot apply '{op}' to {fmt(a)} and {fmt(b)}", e.span)
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
                raise _ExprError("NN015", "division by zero", e.span)
            r = a // b if isinstance(a, int) and isinstance(b, int) and a % b == 0 else a / b
        elif op == "//":
            if b == 0:
                raise _ExprError("NN015", "division by zero", e.span)
            r = a // b
        elif op == "%":
            if b == 0:
                raise _ExprError("NN015", "modulo by zero", e.span)
            r = a % b
        elif op == "**":
            if isinstance(a, int) and isinstance(b, int) and b > 64 and abs(a) > 1:
                raise _ExprError("NN003", f"{a}**{b} is out of range", e.span,
                                 "values in a spec must be below 10^18")
            r = a ** b
            if isinstance(r, complex):
                raise _ExprError("NN015", f"{_paren(a)}**{fmt(b)} is not a real number", e.span)
        else:
            raise AssertionError(op)
    except OverflowError:
        raise _ExprError("NN003", f"the result of '{op}' is out of range", e.span) from None
    except ZeroDivisionError:
        raise _ExprError("NN015", "division by zero", e.span) from None
    if isinstance(r, int) and abs(r) >= MAX_VALUE:
        raise _ExprError("NN003", f"the result of '{op}' is out of range", e.span,
                         "values in a spec must be below 10^18")
    if isinstance(r, float) and not math.isfinite(r):
        raise _ExprError("NN003", f"the result of '{op}' is not finite", e.span)
    return r


_BOOLEAN_WORDS = {"True", "False", "yes", "no", "on", "off", "TRUE", "FALSE"}


def _undefined_help(name: str, env) -> str | None:
    if name in _BOOLEAN_WORDS:
        return "booleans are written true and false"
    if name in ("None", "none", "null"):
        return "leave the argument out to get its default"
    return did_you_mean(name, env) or (f"names in scope: {', '.join(sorted(env))}" if env else None)


def _paren(v) -> str:
    return f"({fmt(v)})" if _number(v) and v < 0 else fmt(v)


def _arg_span(opdef, call: ast.Call, arg: str | None) -> Span:
    """Where the argument an error is about was written: its keyword, its position, else the call."""
    if arg is not None:
        for k in call.kwargs:
            if k.name == arg:
                return k.span
        names = [a.name for a in opdef.args]
        if arg in names and names.index(arg) < len(call.args):
            return call.args[names.index(arg)].span
    return call.span


def _block_usage(b: ast.BlockDef) -> str:
    return f"usage: {b.name}({', '.join(p.name if p.default is None else p.name + '=…' for p in b.params)})"


def _stem(file: str) -> str:
    return os.path.splitext(os.path.basename(file))[0] or "network"


def expand(module: ast.Module, overrides: dict | None = None) -> Graph:
    ex = Expander(module, overrides)
    try:
        return ex.run()
    except _TooBig:
        raise SpecError(ex.errors.diagnostics, {module.file: module.source}) from None
    except RecursionError:  # the parser and the block-depth limit should make this unreachable
        raise SpecError([Diagnostic("NN002", "the spec is nested too deeply to expand",
                                    help="flatten deep groups and expressions into block definitions")],
                        {module.file: module.source}) from None
