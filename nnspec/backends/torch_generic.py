"""Generic source emission: a spec's blocks re-evaluated from the syntax tree with their
parameters as symbols, so each block definition becomes one parametrised nn.Module class.
Used by `torch_emit`; raises `NotGeneric` when a block cannot be written that way.
"""

from __future__ import annotations

import ast as pyast
import keyword
import math
import operator
import re
from dataclasses import dataclass

from .. import ast
from ..expand import chain_labels
from ..expr import (MAX_STEPS, NODE_STEPS, Algebra, Budget, BudgetError, Evaluator, ExprError, label_text,
                    shape_fields)
from ..ir import Graph
from ..ops import OPS, Op
from ..plan import plan as make_plan
from .pysource import (ATOM, PREC, ClassDef, Ctor, Loop, NotGeneric, OrderedDictArg, Sym, binop, camel,
                       is_sym, pyname, wrap)
from .torch import TORCH, Layer, Unsupported, _reserved_names, attr, in_place_layer, py

# Ops written inline in a forward rather than as modules (no parameters, one-liners).
INLINE = frozenset({"flatten", "global_avgpool", "identity", "add", "concat"})
CUSTOM = frozenset({"GlobalAvgPool", "Maxout", "Add", "Concat", "Mul", "StochasticDepth",
                    "ChannelLayerNorm", "DropConnect", "FractionalMaxPool"})  # classes of torch_layers
_STATEFUL = frozenset(name for name, op in OPS.items() if type(op).tensors is not Op.tensors)


class _NotChain(Exception):
    """This group is not a plain chain of modules: it cannot be an nn.Sequential."""


def layer_ctor(layer: Layer) -> Ctor:
    return Ctor(layer.cls, layer.arguments())


# ---- generic emission from the syntax tree --------------------------------------------------

@dataclass
class _Val:
    var: str            # the forward variable that holds it
    c: object           # channels (features for vectors): int or Sym
    rank: int           # len(shape), batch axis excluded


@dataclass
class _In:
    """What `in.*` reads inside a block: the shape entering it."""
    c: object
    rank: int
    shapes: tuple = ()  # the concrete entering shapes of every instance (for in.h etc.)

    def field(self, name: str):
        if name == "c":
            return self.c
        if name == "rank":
            return self.rank
        if name == "features" and self.rank == 1:
            return self.c
        distinct = set(self.shapes)
        if len(distinct) != 1:
            raise NotGeneric(f"in.{name} differs between instances")
        return shape_fields(distinct.pop())[name]


class _ReadsIn(NotGeneric):
    """A block parameter's default reads `in.*`."""


class _NoIn(_In):
    """`in.*` in a block parameter's default. The expander reads it where the block is
    called (the caller's entering shape), so the class cannot compute it: calls pass it."""

    def field(self, name: str):
        raise _ReadsIn(f"a default reads in.{name}")


class _Scope:
    """Where fields go: a class (`self.x = …`), an nn.ModuleDict (`self.g["x"] = …`) or a
    Sequential's item list; names follow the expander's rules."""

    def __init__(self, kind: str, owner: str, prefix: bool, reserved=(), top_taken=None):
        self.kind, self.owner, self.prefix = kind, owner, prefix
        self.counter: int | None = 0
        self.items: list = []          # seq: [(name, Ctor | str)]
        self.fields: list[str] = []    # class/dict: field expressions assigned, in order
        self.used: set[str] = set(reserved)
        self.top_taken = top_taken     # the network scope: names claimed so far

    def name(self, label: str | None, hint: str) -> str:
        if self.counter is not None:
            self.counter += 1
        if label is not None:
            if self.top_taken is not None:
                self.top_taken.add(label)
            return label
        if not self.prefix:  # the network's own layers are named after their op
            own, k = hint, 1
            while own in self.top_taken:
                own, k = f"{hint}_{k}", k + 1
            self.top_taken.add(own)
            return own
        if self.counter is None:
            return "?"
        return str(self.counter - 1)

    def field(self, local: str, stateful: bool, hint: str) -> tuple[str, str | None]:
        """(expression to read the field, the key `add_module` needs, or None)"""
        ref, key = self._field(local, stateful, hint)
        self.fields.append((ref, key))
        return ref, key

    def _field(self, local: str, stateful: bool, hint: str) -> tuple[str, str | None]:
        if self.kind == "dict":
            if local == "?":
                if stateful:
                    raise NotGeneric("a layer's position depends on a parameter")
                local = self._fresh(hint)
            return f'{self.owner}["{local}"]', None
        if local.isidentifier() and not keyword.iskeyword(local):
            self.used.add(local)
            return f"{self.owner}.{local}", None
        if stateful:
            if local == "?":
                raise NotGeneric("a layer's position depends on a parameter")
            return attr(local, self.owner), local
        return f"{self.owner}.{self._fresh(hint)}", None

    def _fresh(self, hint: str) -> str:
        own, k = hint, 1
        while own in self.used:
            own, k = f"{hint}_{k}", k + 1
        self.used.add(own)
        return own


class Generic:
    def __init__(self, g: Graph):
        self.g = g
        if g.module is None:
            raise NotGeneric("the graph carries no syntax tree")
        self.module = g.module
        self.blocks = dict(g.blocks)  # with those of used files
        # the expander's allowance: its base, and NODE_STEPS for each layer it made
        self.evaluator = _SymbolicEval(Budget(MAX_STEPS + NODE_STEPS * len(g.nodes)))
        self.classes: dict[str, ClassDef] = {}   # block name -> class (in dependency order)
        self.info: dict[str, dict] = {}
        self.custom: set[str] = set()
        self.by_span: dict = {}
        self.in_place_ids = make_plan(g).in_place
        for nd in g.layers:
            self.by_span.setdefault(nd.span, []).append(nd)
        self.instance_in: dict[str, list] = {}
        seen = set()
        for nd in g.layers:
            for fr in nd.chain:
                if fr.instance not in seen:
                    seen.add(fr.instance)
                    self.instance_in.setdefault(fr.block, []).append(g.nodes[nd.inputs[0]].shape)
        self.entering: dict[str, int] = {}  # block instance -> depth entering it
        self.calls: dict = {}  # call span -> [(caller's instance Frame or None, depth entering)]
        for nd in g.layers:
            for j, fr in enumerate(nd.chain):
                if fr.instance not in self.entering:
                    self.entering[fr.instance] = g.nodes[nd.inputs[0]].shape[0]
                    self.calls.setdefault(fr.call, []).append((nd.chain[j - 1] if j else None,
                                                               self.entering[fr.instance]))
        self.reserved = _reserved_names()
        self.init: list[str] = []
        self.fwd: list[str] = []
        self.indent_i = 8
        self.indent_f = 8
        self.live: set[str] = set()
        self.dry = 0
        self.locals: set[str] = {"self", "x"} | set(g.args)

    # ---- expressions: nnspec.expr with the parameters as symbols
    def ev(self, e, env: dict, blk: _In | None):
        try:
            return self.evaluator.eval(e, env, blk)
        except ExprError as err:
            raise NotGeneric(err.message) from None
        except BudgetError as err:
            raise NotGeneric(err.what) from None

    def label(self, s: ast.Stmt, env: dict, blk: _In | None) -> str | None:
        """A statement's label with its `{expressions}` evaluated."""
        try:
            return label_text(s, self.evaluator, env, blk)
        except ExprError as err:
            raise NotGeneric(err.message) from None

    def attrs(self, call: ast.Call, env, blk) -> dict:
        op = OPS[call.name]
        out = {}
        for a, v in zip(op.args, call.args):
            out[a.name] = self.ev(v, env, blk)
        for k in call.kwargs:
            out[k.name] = self.ev(k.value, env, blk)
        for a in op.args:
            out.setdefault(a.name, a.default)
        for a in op.args:  # as the registry normalises them
            if a.kind.startswith("enum:"):
                out[a.name] = getattr(out[a.name], "name", out[a.name])
            if a.kind in ("float", "posfloat", "prob") and isinstance(out[a.name], int) \
                    and not isinstance(out[a.name], bool):
                out[a.name] = float(out[a.name])
        return out

    # ---- output
    def put_init(self, lines: list[str]) -> None:
        if not self.dry:
            self.init.extend(lines)

    def put_fwd(self, line: str) -> None:
        if not self.dry:
            self.fwd.append(" " * self.indent_f + line)

    def fresh_var(self, base: str) -> str:
        base = pyname(base)
        own, k = base, 1
        while own in self.live:
            k += 1
            own = f"{base}{k}"
        return own

    # ---- statements in a class or ModuleDict scope
    def stmts(self, body, sc: _Scope, cur: _Val, target: str, env, blk) -> _Val:
        for s in body:
            cur = self.stmt(s, sc, cur, target, env, blk)
        return cur

    def stmt(self, s: ast.Stmt, sc, cur, target, env, blk) -> _Val:
        for item, label in zip(s.items, chain_labels(s, self.label(s, env, blk))):
            cur = self.item(item, label, sc, cur, target, env, blk)
        return cur

    def item(self, item, label, sc, cur, target, env, blk) -> _Val:
        if isinstance(item, ast.Call):
            if item.name in self.blocks:
                return self.instance(item, label, sc, cur, target, env, blk)
            return self.op(item, label, sc, cur, target, env, blk)
        if label is not None:
            return self.group(item, label, sc, cur, target, env, blk)
        if isinstance(item, ast.Group):
            return self.stmts(item.body, sc, cur, target, env, blk)
        if isinstance(item, ast.Merge):
            return self.merge(item, sc, cur, target, env, blk)
        if isinstance(item, ast.Repeat):
            count = self.ev(item.count, env, blk)
            if is_sym(count):
                raise NotGeneric("a repeat count depends on a parameter")
            for i in range(count):
                inner = dict(env)
                if item.var:
                    inner[item.var] = i
                cur = self.stmts(item.body, sc, cur, target, inner, blk)
            return cur
        if isinstance(item, ast.Cond):
            test = self.ev(item.test, env, blk)
            if not is_sym(test):
                return self.stmts(item.then if test else (item.orelse or ()), sc, cur, target, env, blk)
            return self.cond(item, test, sc, cur, target, env, blk)
        raise AssertionError(item)

    def op(self, call, label, sc, cur, target, env, blk) -> _Val:
        a = self.attrs(call, env, blk)
        local = sc.name(label, call.name)
        out = self.shape_after(call, a, cur)
        if call.name in INLINE:
            expr = {"flatten": f"torch.flatten({cur.var}, 1)",
                    "global_avgpool": f"{cur.var}.mean({_mean_dims(cur.rank)})",
                    "identity": cur.var}[call.name]
            if expr != target:
                self.put_fwd(f"{target} = {expr}")
            return _Val(target, out[0], out[1])
        layer = self.layer(call, a, cur)
        ref, key = sc.field(local, call.name in _STATEFUL, call.name)
        self.assign(sc, ref, key, layer_ctor(layer))
        self.put_fwd(f"{target} = {ref}({cur.var})")
        return _Val(target, out[0], out[1])

    def layer(self, call: ast.Call, a: dict, cur: _Val) -> Layer:
        self.check_depth(call, cur.c, [(nd.chain[-1] if nd.chain else None,
                                        self.g.nodes[nd.inputs[0]].shape[0])
                                       for nd in self.by_span.get(call.span, ())])
        try:
            layer = TORCH[call.name]((_pseudo_shape(cur),), a)
        except Unsupported as e:
            raise NotGeneric(str(e)) from None
        if layer.custom:
            self.custom.add(layer.cls)
        return in_place_layer(layer) if self.in_place(call) else layer

    def check_depth(self, call: ast.Call, c, where) -> None:
        """The depth entering a layer or block instance (its in_channels), as the emitter
        tracks it, against the graph at every instance that line stands for: a number
        directly, an expression with that instance's arguments. `where`: [(the instance Frame,
        or None at the top level; the graph's depth at one node or instance)]. One line may
        stand for several depths in one instance (the rounds of a repeat, unrolled): the
        value must be one of them. A disagreement (a rule that is wrong here) falls back to
        writing from the graph, never to wrong code."""
        if self.dry:
            return
        wants: dict = {}
        for frame, want in where:
            wants.setdefault(frame.instance if frame else None, (frame, set()))[1].add(want)
        for frame, depths in wants.values():
            got = _value(c.src, self.names_at(frame)) if is_sym(c) else c
            if got is not None and got not in depths:
                raise NotGeneric(f"{call.name}: the emitter reads a depth of {py(c)} = {got} "
                                 f"where the graph has {sorted(depths)}")

    def names_at(self, frame) -> dict:
        """The values of the names a class's expressions use, in one block instance."""
        names = {pyname(k): v for k, v in self.g.args.items()}
        if frame is not None:
            names.update({pyname(k): getattr(v, "name", v) for k, v in frame.args})
            names["in_channels"] = self.entering[frame.instance]
        return names

    def in_place(self, call: ast.Call) -> bool:
        """Whether the layer this call writes may overwrite its input: the plan's decision
        (the one `nnspec.compile` follows) for every node the call makes. One line of source
        stands for all of them (each instance of a block, each round of a repeat), so where
        they differ, or no node stands behind it, the layer makes a new tensor: always right."""
        nodes = self.by_span.get(call.span, ())
        return bool(nodes) and all(nd.id in self.in_place_ids for nd in nodes)

    def shape_after(self, call, a, cur: _Val) -> tuple:
        """(channels, rank) after an op. Where the channels come out as a number outside a
        dry run, every node of this call must agree: a rule that is wrong here (an op added
        to the registry and not to this list) falls back to the graph, never to wrong code."""
        out = self._shape_after(call, a, cur)
        if not self.dry and not is_sym(out[0]):
            if any((nd.shape[0], len(nd.shape)) != out for nd in self.by_span.get(call.span, ())):
                raise NotGeneric(f"{call.name}: the emitter's shape rule disagrees with the graph")
        return out

    def _shape_after(self, call, a, cur: _Val) -> tuple:
        op = call.name
        if op in ("conv", "conv_transpose", "linear", "dropconnect"):
            return a["out"], cur.rank
        if op == "maxout":
            return a["units"], 1
        if op == "global_avgpool":
            return cur.c, 1
        if op == "flatten":
            if cur.rank == 1:
                return cur.c, 1
            sizes = {tuple(self.g.in_shapes(nd)[0][1:]) for nd in self.by_span.get(call.span, ())}
            if len(sizes) != 1:
                raise NotGeneric("the size of a flatten differs between instances")
            return cur.c * math.prod(sizes.pop()), 1
        return cur.c, cur.rank

    def assign(self, sc: _Scope, ref: str, key: str | None, ctor: Ctor) -> None:
        if key is not None:  # a child named by position: nn.Module attributes cannot be digits
            self.put_init(Ctor(f"{sc.owner}.add_module", [f'"{key}"', ctor]).lines("", self.indent_i))
        else:
            self.put_init(ctor.lines(f"{ref} = ", self.indent_i))

    def instance(self, call, label, sc, cur, target, env, blk) -> _Val:
        cls = self.block_class(call.name)
        args = self.call_args(call, cls, cur, env, blk)
        local = sc.name(label, call.name)
        ref, key = sc.field(local, True, call.name)
        self.assign(sc, ref, key, Ctor(cls["name"], args))
        self.put_fwd(f"{target} = {ref}({cur.var})")
        c, rank = self.block_out(call, cur, env, blk)
        return _Val(target, c, rank)

    def group(self, item, label, sc, cur, target, env, blk) -> _Val:
        body = _body(item)
        local = sc.name(label, "group")
        try:
            seq = self.try_seq(body, cur, env, blk)
        except _NotChain:
            seq = None
        if seq is not None:
            ctor, out, pre = seq
            self.put_init([" " * self.indent_i + ln for ln in pre])
            ref, key = sc.field(local, True, label)
            self.assign(sc, ref, key, ctor)
            self.put_fwd(f"{target} = {ref}({cur.var})")
            return _Val(target, out.c, out.rank)
        if local == "?":
            raise NotGeneric("a group's position depends on a parameter")
        ref, key = sc.field(local, True, label)
        self.assign(sc, ref, key, Ctor("nn.ModuleDict"))
        inner = _Scope("dict", ref, True)
        return self.stmts(body, inner, cur, target, env, blk)

    def merge(self, mg: ast.Merge, sc, cur, target, env, blk) -> _Val:
        outs = []
        self.live.add(cur.var)
        added = []
        for k, path in enumerate(mg.paths):
            own = self.label(path, env, blk)
            base = own if own else (
                ("out" if k == 0 else "identity" if len(mg.paths) == 2 else f"out{k + 1}")
                if mg.kind == "add" else f"branch{k + 1}")
            var = self.fresh_var(base)
            self.live.add(var)
            added.append(var)
            outs.append(self.stmt(path, sc, cur, var, env, blk))
        for var in added:
            self.live.discard(var)
        sc.name(None, mg.kind)
        vars_ = [o.var for o in outs]
        if mg.kind == "add":
            self.put_fwd(f"{target} = {' + '.join(vars_)}")
            c = outs[0].c
        elif mg.kind == "mul":  # broadcasting: the channels are those of the paths not of 1
            self.put_fwd(f"{target} = {' * '.join(vars_)}")
            cs = {o.c for o in outs} - {1}
            if len(cs) > 1:
                raise NotGeneric("the paths of a mul differ in channels")
            c = cs.pop() if cs else 1
        elif mg.kind != "concat":
            raise NotGeneric(f"no generic source for the merge {mg.kind}")
        else:
            self.put_fwd(f"{target} = torch.cat([{', '.join(vars_)}], 1)")
            c = outs[0].c
            for o in outs[1:]:
                c = c + o.c
        return _Val(target, c, outs[0].rank)

    def cond(self, item: ast.Cond, test, sc, cur, target, env, blk) -> _Val:
        if sc.kind == "seq":
            raise _NotChain
        start_counter, start_fields = sc.counter, len(sc.fields)
        init0, fwd0 = len(self.init), len(self.fwd)
        self.indent_i += 4
        self.indent_f += 4
        then = self.stmts(item.then, sc, cur, target, env, blk)
        then_fields = sc.fields[start_fields:]
        then_counter = sc.counter
        then_init, then_fwd = self.init[init0:], self.fwd[fwd0:]
        del self.init[init0:], self.fwd[fwd0:]
        sc.counter = start_counter
        else_start = len(sc.fields)
        other = self.stmts(item.orelse or (), sc, cur, target, env, blk)
        else_fields = sc.fields[else_start:]
        else_init, else_fwd = self.init[init0:], self.fwd[fwd0:]
        del self.init[init0:], self.fwd[fwd0:]
        self.indent_i -= 4
        self.indent_f -= 4
        if then.rank != other.rank:
            raise NotGeneric("the branches of an if end at different ranks")
        sc.counter = then_counter if then_counter == sc.counter else None
        pad_i, pad_f = " " * self.indent_i, " " * self.indent_f
        then_init += [f"{pad_i}    {_none(sc, f)}" for f in else_fields if f not in then_fields]
        else_init += [f"{pad_i}    {_none(sc, f)}" for f in then_fields if f not in else_fields]
        self.put_init([f"{pad_i}if {test!r}:"] + (then_init or [f"{pad_i}    pass"]))
        if else_init:
            self.put_init([f"{pad_i}else:"] + else_init)
        if then.var != target and then_fwd:
            then_fwd.append(f"{pad_f}    {target} = {then.var}")
        if other.var != target and else_fwd:
            else_fwd.append(f"{pad_f}    {target} = {other.var}")
        # forward tells the branches apart by a module only one of them makes
        only_then = [f for f in then_fields if f not in else_fields]
        only_else = [f for f in else_fields if f not in then_fields]
        if then_fwd == else_fwd and then_fields:  # branches differ in construction only
            if not self.dry:
                self.fwd.extend(ln[:len(pad_f)] + ln[len(pad_f) + 4:] for ln in then_fwd)
            return _Val(target, self._either(then, other, test), then.rank)
        if only_then:
            check, when, otherwise = f"{only_then[0][0]} is not None", then_fwd, else_fwd
            empty_other = not else_fwd
            alias = other.var
        elif only_else:
            check, when, otherwise = f"{only_else[0][0]} is not None", else_fwd, then_fwd
            empty_other = not then_fwd
            alias = then.var
        elif then_fields:
            raise NotGeneric("both branches of an if make the same modules but call them differently")
        else:
            if then_fwd or else_fwd:
                raise NotGeneric("an if around layers without modules")
            return _Val(cur.var, cur.c, cur.rank)
        if not self.dry:
            if empty_other:
                if alias != target:
                    self.fwd.append(f"{pad_f}{target} = {alias}")
                self.fwd.append(f"{pad_f}if {check}:")
                self.fwd.extend(when)
            else:
                self.fwd.append(f"{pad_f}if {check}:")
                self.fwd.extend(when)
                self.fwd.append(f"{pad_f}else:")
                self.fwd.extend(otherwise)
        return _Val(target, self._either(then, other, test), then.rank)

    @staticmethod
    def _either(then: _Val, other: _Val, test):
        """The channels after an if: the same either way, or a conditional expression."""
        if then.c == other.c and type(then.c) is type(other.c):
            return then.c
        p = PREC["if"]
        return Sym(f"{wrap(then.c, p + 1)} if {wrap(test, p + 1)} else {wrap(other.c, p)}", p)

    # ---- Sequential groups
    def try_seq(self, body, cur: _Val, env, blk, base: str = "nn.Sequential"):
        """(constructor, value after it, lines to run before the constructor), or raise
        _NotChain. A repeat whose count is a parameter becomes a loop that fills a list."""
        sc = _Scope("seq", "", True)
        out = self.seq_stmts(body, sc, _Val("", cur.c, cur.rank), env, blk)
        loops = [c for name, c in sc.items if name == "loop"]
        if not loops:
            if any(not name.isdigit() for name, _ in sc.items):
                return Ctor(base, [OrderedDictArg(sc.items)]), out, []
            return Ctor(base, [c for _, c in sc.items], explode=True), out, []
        if any(not (name.isdigit() or name in ("loop", "?")) for name, _ in sc.items):
            raise _NotChain  # labels and loops: positions unknown
        lst = self.fresh_local("layers")
        pre, head, k = [], [], 0
        while k < len(sc.items) and sc.items[k][0] != "loop":
            head.append(sc.items[k][1])
            k += 1
        pre += Ctor("", head, explode=bool(head)).lines(f"{lst} = ", 0)
        pre[0] = pre[0].replace("= (", "= [", 1)
        pre[-1] = pre[-1][:-1] + "]" if pre[-1].endswith(")") else pre[-1]
        for name, item in sc.items[k:]:
            if name == "loop":
                pre += item.lines(lst)
            else:
                pre += Ctor(f"{lst}.append", [item]).lines("", 0)
        return Ctor(base, [f"*{lst}"]), out, pre

    def fresh_local(self, base: str) -> str:
        own, k = base, 1
        while own in self.locals:
            k += 1
            own = f"{base}{k}"
        self.locals.add(own)
        return own

    def seq_loop(self, item: ast.Repeat, count, sc, cur: _Val, env, blk) -> _Val:
        """`for i in range(n):` appending the body's layers, the depth carried in a variable."""
        chan = self.fresh_local("channels")
        var = pyname(item.var) if item.var else "_"
        inner = dict(env)
        if item.var:
            inner[item.var] = Sym(var)
        body = _Scope("seq", "", True)
        body.counter = None
        out = self.seq_stmts(item.body, body, _Val("", Sym(chan), cur.rank), inner, blk)
        if out.rank != cur.rank or any(name != "?" for name, _ in body.items):
            raise _NotChain
        sc.items.append(("loop", Loop(chan, py(cur.c), var, py(count), [c for _, c in body.items],
                                       None if out.c == Sym(chan) else py(out.c))))
        sc.counter = None
        if not self.dry:
            return _Val("", Sym(chan), cur.rank)
        if out.c == Sym(chan):
            return _Val("", cur.c, cur.rank)
        if chan in py(out.c) or (item.var and re.search(rf"\b{var}\b", py(out.c))):
            raise NotGeneric("the depth after a loop depends on the iteration")
        p = PREC["if"]
        c = Sym(f"{wrap(out.c, p + 1)} if {wrap(count, p + 1)} > 0 else {wrap(cur.c, p)}", p)
        return _Val("", c, cur.rank)

    def seq_stmts(self, body, sc, cur, env, blk) -> _Val:
        for s in body:
            for item, label in zip(s.items, chain_labels(s, self.label(s, env, blk))):
                cur = self.seq_item(item, label, sc, cur, env, blk)
        return cur

    def seq_item(self, item, label, sc, cur, env, blk) -> _Val:
        if isinstance(item, ast.Call):
            local = sc.name(label, item.name)
            if label is not None and sc.counter is None:
                raise _NotChain
            if item.name in self.blocks:
                cls = self.block_class(item.name)
                sc.items.append((local, Ctor(cls["name"], self.call_args(item, cls, cur, env, blk))))
                c, rank = self.block_out(item, cur, env, blk)
                return _Val("", c, rank)
            a = self.attrs(item, env, blk)
            out = self.shape_after(item, a, cur)
            layer = self.layer(item, a, cur)
            sc.items.append((local, layer_ctor(layer)))
            return _Val("", out[0], out[1])
        if label is not None:
            body = _body(item)
            local = sc.name(label, "group")
            ctor, out, pre = self.try_seq(body, cur, env, blk)
            if pre or sc.counter is None:
                raise _NotChain
            sc.items.append((local, ctor))
            return _Val("", out.c, out.rank)
        if isinstance(item, ast.Group):
            return self.seq_stmts(item.body, sc, cur, env, blk)
        if isinstance(item, ast.Repeat):
            count = self.ev(item.count, env, blk)
            if is_sym(count):
                return self.seq_loop(item, count, sc, cur, env, blk)
            for i in range(count):
                inner = dict(env)
                if item.var:
                    inner[item.var] = i
                cur = self.seq_stmts(item.body, sc, cur, inner, blk)
            return cur
        if isinstance(item, ast.Cond):
            test = self.ev(item.test, env, blk)
            if is_sym(test):
                raise _NotChain
            return self.seq_stmts(item.then if test else (item.orelse or ()), sc, cur, env, blk)
        raise _NotChain  # a merge

    # ---- blocks
    def call_args(self, call: ast.Call, cls: dict, cur: _Val, env, blk) -> list[str]:
        self.check_depth(call, cur.c, self.calls.get(call.span, ()))
        b = self.blocks[call.name]
        names = [p.name for p in b.params]
        given = {p: self.ev(a, env, blk) for p, a in zip(names, call.args)}
        kw = {k.name: self.ev(k.value, env, blk) for k in call.kwargs}
        out = [py(cur.c)] if cls["uses_in"] else []
        out += [py(given[p]) for p in names if p in given]
        for k, v in kw.items():
            d = cls["defaults"].get(k, _NO)
            if d is not _NO and not is_sym(v) and not is_sym(d) and type(v) is type(d) and v == d:
                continue
            out.append(f"{pyname(k)}={py(v)}")
        caller = [p for p in names if cls["defaults"].get(p) is _CALLER and p not in given and p not in kw]
        if caller:
            inner = self.block_env(b, call, env, blk)
            out += [f"{pyname(p)}={py(inner[p])}" for p in caller]
        for gname in cls["globals"]:
            v = self.ev(ast.Var(gname, call.span), env, blk)
            out.append(f"{pyname(gname)}={py(v)}")
        return out

    def block_out(self, call: ast.Call, cur: _Val, env, blk) -> tuple:
        """Channels and rank after a block instance: its body walked without output."""
        b = self.blocks[call.name]
        entering = _In(cur.c, cur.rank, tuple(self.instance_in.get(b.name, ())))
        inner = self.block_env(b, call, env, blk)
        self.dry += 1
        saved = (self.indent_i, self.indent_f, set(self.live))
        try:
            sc = _Scope("class", "self", True, self.reserved)
            out = self.stmts(b.body, sc, _Val("x", cur.c, cur.rank), "x", inner, entering)
        finally:
            self.dry -= 1
            self.indent_i, self.indent_f, self.live = saved
        return out.c, out.rank

    def block_env(self, b: ast.BlockDef, call: ast.Call, env, blk) -> dict:
        """The names inside a block instance: its arguments and its defaults, both read where
        the block is called (`in.*` in a default is the caller's, as the expander reads it)."""
        genv = {k: v for k, v in env.items() if isinstance(v, _Global) or k == "__globals__"}
        inner = dict(genv)
        names = [p.name for p in b.params]
        for p, a in zip(names, call.args):
            inner[p] = self.ev(a, env, blk)
        for k in call.kwargs:
            inner[k.name] = self.ev(k.value, env, blk)
        for p in b.params:
            if p.name not in inner:
                inner[p.name] = self.ev(p.default, inner, blk)
        return inner

    def block_class(self, name: str) -> dict:
        if name in self.info:
            return self.info[name]
        b = self.blocks[name]
        shapes = self.instance_in.get(name, [])
        ranks = {len(s) for s in shapes}
        if len(ranks) != 1:
            raise NotGeneric(f"block {name} is used at several ranks")
        rank = ranks.pop()
        used_globals: set = set()
        env = {"__globals__": used_globals}
        for k in self.g.args:
            env[k] = _Global(Sym(pyname(k)))
        params, defaults = [], {}
        prologue = []
        guards: dict[str, list[str]] = {}  # parameter -> the lines that insist it is passed
        for p in b.params:
            env[p.name] = Sym(pyname(p.name))
            if p.default is None:
                params.append(pyname(p.name))
                continue
            try:
                d = self.ev(p.default, {"__globals__": set()}, _NoIn(None, rank))
            except _ReadsIn:
                d = _CALLER
            except NotGeneric:
                d = _NO
            if d is _NO:
                try:
                    self.ev(p.default, {**env, "__globals__": set()}, _NoIn(None, rank))
                except _ReadsIn:
                    d = _CALLER
                except NotGeneric:
                    pass
            if d is _CALLER:  # the expander reads `in` in a default where the block is called:
                params.append(f"{pyname(p.name)}=None")  # so every call passes the value
                guards[pyname(p.name)] = [
                    f"        if {pyname(p.name)} is None:",
                    f"            raise TypeError(\"pass {pyname(p.name)}: its default reads the "
                    f"caller's input\")"]
                defaults[p.name] = _CALLER
            elif d is _NO or is_sym(d):
                dv = self.ev(p.default, env, _In(Sym("in_channels"), rank, tuple(shapes)))
                params.append(f"{pyname(p.name)}=None")
                prologue.append(f"        if {pyname(p.name)} is None:")
                prologue.append(f"            {pyname(p.name)} = {py(dv)}")
                defaults[p.name] = _NO
            else:
                params.append(f"{pyname(p.name)}={py(d)}")
                defaults[p.name] = d
        blk = _In(Sym("in_channels"), rank, tuple(shapes))
        saved = (self.init, self.fwd, self.indent_i, self.indent_f, self.live, self.dry, self.locals)
        self.init, self.fwd, self.indent_i, self.indent_f, self.live, self.dry = [], [], 8, 8, set(), 0
        self.locals = {"in_channels", "self", "x"} | {pyname(p.name) for p in b.params} | set(self.g.args)
        labels = _labels(b.body)
        try:
            seq = None
            if not labels:
                try:
                    seq = self.try_seq(b.body, _Val("x", blk.c, rank), env, blk)
                except _NotChain:
                    seq = None
            if seq is not None:
                ctor, _, pre = seq
                init, fwd, items = [" " * 8 + ln for ln in pre], None, ctor.args
            else:
                sc = _Scope("class", "self", True, self.reserved | labels)
                out = self.stmts(b.body, sc, _Val("x", blk.c, rank), "x", env, blk)
                init, fwd, items = self.init, self.fwd + [f"        return {out.var}"], None
        finally:
            self.init, self.fwd, self.indent_i, self.indent_f, self.live, self.dry, self.locals = saved
        text = "\n".join(prologue + init + (fwd or []) + [repr(a) for a in items or []])
        prologue = [ln for p, lines in guards.items() if re.search(rf"\b{p}\b", text) for ln in lines] + prologue
        uses_in = bool(re.search(r"\bin_channels\b", text + "".join(
            a.render(0) if hasattr(a, "render") else a for a in items or [])))
        glob = sorted(used_globals)
        sig = (["in_channels"] if uses_in else []) + params
        if glob:  # network parameters the block reads: keyword-only
            sig += ["*"] + [pyname(x) for x in glob]
        doc = _block_doc(self.g, b)
        cls = ClassDef(self._class_name(name), "nn.Sequential" if items is not None else "nn.Module",
                     doc, sig, prologue + init, fwd, items)
        self.classes[name] = cls
        self.info[name] = {"name": cls.name, "uses_in": uses_in, "defaults": defaults, "globals": glob}
        return self.info[name]

    def _class_name(self, block: str) -> str:
        base = camel(block)
        taken = {c.name for c in self.classes.values()} | {camel(self.g.name)} | {"OrderedDict"}
        own, k = base, 1
        while own in taken or own in CUSTOM:
            k += 1
            own = f"{base}{k}"
        return own

    # ---- the network
    def network(self) -> ClassDef:
        env: dict = {"__globals__": set()}
        for k in self.g.args:
            env[k] = _Global(Sym(pyname(k)))
        decl = self.module.inputs[0]
        dims = tuple(self.ev(d, env, None) for d in decl.shape.dims)
        if len(dims) == 1 and isinstance(dims[0], tuple):
            dims = dims[0]
        blk = _In(dims[0], len(dims), (self.g.input.shape,))
        sc = _Scope("class", "self", False, self.reserved | _labels(self.module.body), set())
        out = self.stmts(self.module.body, sc, _Val("x", dims[0], len(dims)), "x", env, blk)
        params = [f"{pyname(k)}={py(v)}" for k, v in self.g.args.items()]
        cls = ClassDef(camel(self.g.name), "nn.Module", _network_doc(self.g), params, self.init,
                     self.fwd + [f"        return {out.var}"])
        return cls


_NO = object()
_CALLER = object()  # a default that reads `in.*`: computed at each call


class _PyAlgebra(Algebra):
    """Symbolic values are Python source (`pysource.Sym`): operations write source."""

    def is_sym(self, v) -> bool:
        return is_sym(v)

    def binary(self, op: str, a, b):
        if op in ("and", "or"):
            p = PREC[op]
            return Sym(f"{wrap(a, p)} {op} {wrap(b, p, True)}", p)
        if op in ("==", "!=", "<", "<=", ">", ">="):
            p = PREC["cmp"]
            return Sym(f"{wrap(a, p + 1)} {op} {wrap(b, p + 1)}", p)
        return binop(op, a, b)

    def unary(self, op: str, v):
        if op == "not":
            return Sym(f"not {wrap(v, PREC['not'])}", PREC["not"])
        return -v

    def ifexp(self, test, a, b):
        p = PREC["if"]
        return Sym(f"{wrap(a, p + 1)} if {wrap(test, p + 1)} else {wrap(b, p)}", p)

    def call(self, name: str, args: tuple):
        if name in ("ceil", "floor"):
            if len(args) != 2:  # of a value that is not a division: would need `import math`
                raise NotGeneric(f"{name}() of a parameter")
            a, b = args
            if name == "floor":
                return binop("//", a, b)
            q = binop("//", -a, b)  # ceil(a / b) == -(-a // b), exactly
            return Sym("-" + wrap(q, PREC["neg"]), PREC["neg"])
        return Sym(f"{name}({', '.join(py_arg(a) for a in args)})", ATOM)

    def index(self, obj, i):
        if isinstance(obj, tuple):
            if obj and all(type(x) is type(obj[0]) and x == obj[0] for x in obj):
                return obj[0]  # every item is the same
            return Sym(f"({', '.join(py_arg(x) for x in obj)}{',' if len(obj) == 1 else ''})[{py_arg(i)}]", ATOM)
        return Sym(f"{wrap(obj, ATOM)}[{py_arg(i)}]", ATOM)


def py_arg(v) -> str:
    """A value as source, tuples written out (py() collapses (2, 2) to 2, as torch takes either)."""
    if isinstance(v, tuple):
        return "(" + ", ".join(py_arg(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    return py(v)


class _SymbolicEval(Evaluator):
    """nnspec.expr's evaluator with the emitter's scope: network parameters seen from a block
    (`_Global`) are recorded as the block's keyword arguments; `in.*` reads an `_In`."""

    algebra = _PyAlgebra()

    def lookup(self, e: ast.Var, env):
        if e.name in env:
            v = env[e.name]
            if isinstance(v, _Global):
                env["__globals__"].add(e.name)
                return v.value
            return v
        raise NotGeneric(f"undefined name {e.name}")

    def field(self, e: ast.Attr, blk):
        if blk is None or e.obj != "in":
            raise NotGeneric(f"{e.obj}.{e.attr} has no value here")
        return blk.field(e.attr)


@dataclass(frozen=True)
class _Global:
    """A network parameter seen from inside a block: passed to the block's class."""
    value: object


def _body(item) -> tuple:
    """The statements of a labelled compound item: a group's, or the item alone."""
    return item.body if isinstance(item, ast.Group) else (ast.Stmt(None, None, (item,), None, item.span),)


def _none(sc: _Scope, field: tuple) -> str:
    ref, key = field
    return f'{sc.owner}.add_module("{key}", None)' if key is not None else f"{ref} = None"


def _labels(body) -> set:
    out = set()
    for s in body:
        out.update(label for label in chain_labels(s) if label)
        for item in s.items:
            for sub in ("body", "then", "orelse", "paths"):
                inner = getattr(item, sub, None)
                if inner:
                    out |= _labels(inner)
    return out


def _mean_dims(rank: int) -> str:
    dims = tuple(range(2, rank + 1))
    return f"dim={dims[0]}" if len(dims) == 1 else f"dim={dims}"


_OPS = {pyast.Add: operator.add, pyast.Sub: operator.sub, pyast.Mult: operator.mul,
        pyast.Div: operator.truediv, pyast.FloorDiv: operator.floordiv, pyast.Mod: operator.mod,
        pyast.Eq: operator.eq, pyast.NotEq: operator.ne, pyast.Lt: operator.lt,
        pyast.LtE: operator.le, pyast.Gt: operator.gt, pyast.GtE: operator.ge,
        pyast.USub: operator.neg, pyast.UAdd: operator.pos, pyast.Not: operator.not_}


def _value(src: str, names: dict):
    """The value a generated Python expression (arithmetic, comparisons, `and`/`or`/`not`,
    `a if t else b` over names and numbers) has with these names, as Python computes it; None
    where it reads an unknown name (a loop's variable) or anything else. Walks the syntax
    tree: never runs code.

    >>> _value("4 * width if stride != 1 else in_channels", {"width": 2, "stride": 2, "in_channels": 3})
    8
    """
    def ev(n):
        if isinstance(n, pyast.Constant) and isinstance(n.value, (int, float, bool, str)):
            return n.value
        if isinstance(n, pyast.Name) and n.id in names:
            return names[n.id]
        if isinstance(n, pyast.BinOp) and type(n.op) in _OPS:
            return _OPS[type(n.op)](ev(n.left), ev(n.right))
        if isinstance(n, pyast.BinOp) and isinstance(n.op, pyast.Pow):
            base, exp = ev(n.left), ev(n.right)
            if abs(exp) > 64:
                raise _Unknown
            return base ** exp
        if isinstance(n, pyast.UnaryOp) and type(n.op) in _OPS:
            return _OPS[type(n.op)](ev(n.operand))
        if isinstance(n, pyast.BoolOp):
            v = ev(n.values[0])
            for x in n.values[1:]:
                if bool(v) == isinstance(n.op, pyast.Or):
                    return v
                v = ev(x)
            return v
        if isinstance(n, pyast.Compare):
            left = ev(n.left)
            for op, right in zip(n.ops, n.comparators):
                if type(op) not in _OPS:
                    raise _Unknown
                right = ev(right)
                if not _OPS[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(n, pyast.IfExp):
            return ev(n.body) if ev(n.test) else ev(n.orelse)
        if isinstance(n, pyast.Tuple):
            return tuple(ev(x) for x in n.elts)
        raise _Unknown

    try:
        return ev(pyast.parse(src, mode="eval").body)
    except (_Unknown, SyntaxError, TypeError, ValueError, ArithmeticError):
        return None


class _Unknown(Exception):
    pass


def _pseudo_shape(v: _Val) -> tuple:
    return (v.c,) + (1,) * (v.rank - 1)


def _comment_lines_above(source: str, line: int) -> list[str]:
    lines = source.split("\n")
    out = []
    k = line - 2
    while k >= 0 and lines[k].lstrip().startswith("#"):
        out.append(lines[k].lstrip()[1:].strip())
        k -= 1
    return out[::-1]


def _block_doc(g: Graph, b: ast.BlockDef) -> str:
    source = g.sources.get(b.span.file, g.source)  # a used file's block: that file's text
    header = source.split("\n")[b.span.line - 1].strip().rstrip("{").strip()
    about = _comment_lines_above(source, b.span.line)
    return "\n".join(about + ([""] if about else []) + [f"`{header}` in {g.file}:{b.span.line}."])


def _network_doc(g: Graph) -> str:
    lines = g.source.split("\n")
    about = []
    for ln in lines:
        if ln.lstrip().startswith("#"):
            about.append(ln.lstrip()[1:].strip())
        elif ln.strip():
            break
    return "\n".join(about or [f"The network {g.name}."])


