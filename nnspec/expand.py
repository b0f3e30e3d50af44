"""Syntax tree -> graph: evaluates expressions, instantiates blocks, unrolls repeats,
names every node and infers every shape (blocks may read the incoming shape, `in.c`, so
shapes are known while expanding). All independent errors are collected.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from . import ast
from .errors import Collector, Diagnostic, Frame, Span, SpecError, did_you_mean
from .expr import (BLOCK_CALL_STEPS, MAX_NAME, MAX_VALUE, NODE_STEPS, Budget, BudgetError, Evaluator,
                   ExprError, label_text, names_in, shape_fields)
from .ir import Graph, Node
from .ops import OPS, USER_OPS, ArgError, ShapeError, shape_str
from .values import fmt

MAX_NODES = 200_000
MAX_BLOCK_DEPTH = 50  # block instances inside block instances
MAX_DEPTH = 150       # nested bodies (groups, repeats, ifs, merges, block instances) in all
MAX_USE_DEPTH = 20    # files reached through `use`

__all__ = ["Expander", "expand", "chain_labels", "shape_fields", "MAX_NODES", "MAX_VALUE"]


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
    def __init__(self, module: ast.Module, overrides: dict | None = None, budget: Budget | None = None):
        self.m = module
        self.errors = Collector()
        self.nodes: list[Node] = []
        self.names: dict[str, Span] = {}
        self.blocks: dict[str, ast.BlockDef] = {}
        self.sources: dict[str, str] = {module.file: module.source}  # every file read
        self.used: set[str] = set()  # files read through `use`
        self.overrides = dict(overrides or {})
        header = module.headers[0] if module.headers else None
        self.globals = frozenset(p.name for p in header.params) if header else frozenset()
        self.budget = budget if budget is not None else Budget()
        self.ev = _ExpandEval(self.budget)
        self.words = _ExpandEval(self.budget, bare_words=True)  # the train section's values
        self.depth = 0

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
        for b in self._used_blocks(m) + list(m.blocks):
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
            raise SpecError(self.errors.diagnostics, self.sources)
        if not m.inputs:
            library = bool(m.blocks) and not m.body and not m.headers
            self.errors.add("NN019", "the spec has no `input` declaration",
                            Span(m.file, 1, 1, 1, 1),
                            help="this file only defines blocks: `use` it from a spec that declares an "
                                 "input" if library else
                            "declare the input shape, e.g. `input 3x224x224` or `input 784`")
            raise SpecError(self.errors.diagnostics, self.sources)
        decl = m.inputs[0]
        in_shape = self._shape(decl.shape, env)
        if in_shape is None:
            raise SpecError(self.errors.diagnostics, self.sources)
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
            raise SpecError(self.errors.diagnostics, self.sources)
        return Graph(name, dict(env), tuple(self.nodes), out, m.file,
                     m.source, train, dict(self.blocks), module=m, sources=dict(self.sources))

    # ---- `use "file.nn"`
    def _used_blocks(self, m: ast.Module, seen: tuple = ()) -> list:
        """The block definitions of the files `m` uses (and those they use), in order."""
        from . import parser
        out: list = []
        here = (_resolve(m.file, ""),) + seen
        for u in m.uses:
            if "://" in u.path or u.path.startswith(("http:", "https:")):
                self.errors.add("NN002", f"`use` takes a file path, not a URL: \"{u.path}\"", u.span,
                                help="download the file next to the spec and use its path")
                continue
            path = _resolve(m.file, u.path)
            if path in here:
                cycle = " -> ".join(os.path.basename(p) for p in here[::-1] + (path,))
                self.errors.add("NN016", f"\"{u.path}\" is already being read: `use` goes round in a "
                                         f"circle ({cycle})", u.span,
                                help="move the shared blocks into a file that uses neither")
                continue
            if path in self.used:  # used before (twice, or through two files): its blocks are in
                continue
            if len(here) > MAX_USE_DEPTH:
                self.errors.add("NN002", f"`use` chains more than {MAX_USE_DEPTH} files deep", u.span)
                continue
            try:
                sub = parser.parse_file(path)
            except SpecError as e:
                self.sources.update(e.sources)
                for d in e.diagnostics:
                    if d.span is None:  # cannot read: say so at the `use` line
                        self.errors.add(d.code, d.message.replace(f"'{path}'", f"'{u.path}'"), u.span,
                                        help=d.help or f"the path is relative to the directory of "
                                                       f"{_shown(m.file)}")
                    else:
                        self.errors.diagnostics.append(d)
                continue
            self.sources[sub.file] = sub.source
            self.used.add(path)
            extra = [(what, item.span) for what, items in (("a `network` header", sub.headers),
                                                           ("an `input` declaration", sub.inputs),
                                                           ("layers", sub.body),
                                                           ("a `train` section", sub.trains))
                     for item in items[:1]]
            if extra:
                what, span = extra[0]
                self.errors.add("NN019", f"\"{u.path}\" has {what}; a used file may only define blocks",
                                u.span, notes=(f"{what} at {span}",),
                                help="move the network into its own file and `use` the blocks from it")
                continue
            out += self._used_blocks(sub, here)
            out += list(sub.blocks)
        return out

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
        failed: set = set()
        for p in params:
            if p.name in self.overrides:
                env[p.name] = self.overrides[p.name]
            elif p.default is None:
                self.errors.add("NN012", f"network parameter '{p.name}' has no default", p.span,
                                help=f"give it one: `{p.name} = …`")
            elif names_in(p.default) & failed:  # its error is reported where it starts
                failed.add(p.name)
            else:
                try:
                    env[p.name] = self.eval(p.default, env, None)
                except _Abort:
                    failed.add(p.name)
        return env

    # ---- statements
    def _body(self, stmts, current: int, ctx: _Ctx) -> int:
        self.depth += 1
        try:
            for s in stmts:
                current = self._stmt(s, current, ctx)
        finally:
            self.depth -= 1
        return current

    def _stmt(self, s: ast.Stmt, current: int, ctx: _Ctx) -> int:
        start = len(self.nodes)
        if start + len(s.items) > MAX_NODES:
            self.errors.add("NN017", f"a chain of {len(s.items):,} items would expand to more than "
                                     f"{MAX_NODES:,} layers", s.span, chain=ctx.chain)
            raise _TooBig
        if self.depth > MAX_DEPTH:
            self.errors.add("NN017", f"groups, repeats and blocks are nested more than {MAX_DEPTH} deep here",
                            s.span, chain=ctx.chain, help="flatten the structure: fewer nested `{ }`")
            raise _TooBig
        budget = self.budget
        budget.used += 1
        try:
            if budget.used > budget.limit:
                budget.spend(0)
            label = s.label
            if s.label_parts is not None:
                try:
                    label = label_text(s, self.ev, ctx.env, ctx.in_shape)
                except ExprError as err:
                    self.errors.add(err.code, err.message, err.span, help=err.help, chain=ctx.chain)
                    return self._broken(current)
                except _Abort:
                    return self._broken(current)
            if len(s.items) == 1:  # the common case, without the chain's names
                try:
                    current = self._item(s.items[0], label, s.label_span, current, ctx)
                except _Abort:
                    return self._broken(current)
            else:
                for i, (item, label) in enumerate(zip(s.items, chain_labels(s, label))):
                    label_span = s.label_span if i == 0 else s.span
                    try:
                        current = self._item(item, label, label_span, current, ctx)
                    except _Abort:
                        return self._broken(current)
        except BudgetError as e:
            self.errors.add("NN017", e.what, s.span, chain=ctx.chain, help=_WORK_HELP)
            raise _TooBig from None
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
        if len(name) > MAX_NAME:
            self.errors.add("NN017", f"the layer name '{name[:40]}…' is {len(name):,} characters long",
                            span, chain=ctx.chain, help=f"names are at most {MAX_NAME:,} characters")
            raise _TooBig
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
        self.budget.limit += NODE_STEPS  # work that makes layers is bounded by MAX_NODES
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
        self.budget.spend(BLOCK_CALL_STEPS)
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
        if not r.body:  # nothing to expand: only the work is counted
            self.budget.spend(count)
            return current
        budget = self.budget
        inner = ctx if not r.var else None  # without an index, every iteration sees the same names
        for i in range(count):
            budget.used += 1
            if budget.used > budget.limit:
                budget.spend(0, r.span)
            if inner is None or r.var:
                env = dict(ctx.env)
                env[r.var] = i
                inner = _Ctx(env, ctx.in_shape, ctx.scope, ctx.chain, ctx.stack)
            current = self._body(r.body, current, inner)
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
            return (self.words if symbols else self.ev).eval(e, env, in_shape)
        except ExprError as err:
            self.errors.add(err.code, err.message, err.span, help=err.help)
            raise _Abort


class _ExpandEval(Evaluator):
    """`in.*` after an error upstream stops silently: that error is already collected."""

    def field(self, e, shape):
        if shape is _UNKNOWN_SHAPE:
            raise _Abort
        return super().field(e, shape)


def chain_labels(s: ast.Stmt, label: str | None = None) -> list[str | None]:
    """The label of each item of a statement, None where its scope names it: `fc6: linear(4096)
    relu relu` -> fc6, fc6_relu, fc6_relu_2. `label` is the statement's label evaluated (for
    `{expressions}` in it); the torch emitter names modules by the same rule."""
    if label is None:
        label = s.label
    labels, seen = [label], {}
    for item in s.items[1:]:
        if label and isinstance(item, ast.Call):
            k = seen[item.name] = seen.get(item.name, 0) + 1
            labels.append(f"{label}_{item.name}" + (f"_{k}" if k > 1 else ""))
        else:
            labels.append(None)
    return labels


# The shape entering a block instance whose input failed (`in.*` there stops silently).
_UNKNOWN_SHAPE = object()


class _TooBig(Exception):
    """A limit was hit (layers, work): expansion stops altogether."""


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


_WORK_HELP = (f"each statement, repeat iteration and operation is a step, a block instance "
              f"{BLOCK_CALL_STEPS}, and each layer made allows {NODE_STEPS} more: check the repeat "
              f"counts, and blocks that instantiate other blocks several times (the work multiplies "
              f"at each level)")


def _resolve(file: str, path: str) -> str:
    """`path` relative to the directory of `file` (the current directory for text that has
    no file, such as `nnspec.loads`)."""
    base = os.path.dirname(file) if file and not file.startswith("<") else ""
    return os.path.normpath(os.path.join(base, path)) if path else os.path.normpath(file)


def _shown(file: str) -> str:
    return file if file and not file.startswith("<") else "the current directory"


def expand(module: ast.Module, overrides: dict | None = None) -> Graph:
    ex = Expander(module, overrides)
    try:
        return ex.run()
    except _TooBig:
        raise SpecError(ex.errors.diagnostics, ex.sources) from None
    except BudgetError as e:  # spent outside a statement: network arguments, shapes, train
        ex.errors.add("NN017", e.what, e.span, help=_WORK_HELP)
        raise SpecError(ex.errors.diagnostics, ex.sources) from None
    except RecursionError:  # the parser and the depth limits should make this unreachable
        raise SpecError([Diagnostic("NN002", "the spec is nested too deeply to expand",
                                    help="flatten deep groups and expressions into block definitions")],
                        ex.sources) from None
