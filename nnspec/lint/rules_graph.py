"""NN1xx: the graph — in-place ops on shared tensors, degenerate merges, dead definitions.

(Undefined references, duplicate names, cycles, unknown ops/arguments/enums, add/concat
shape mismatches, rank mismatches and bad groups are the checker's NN010–NN025. A dangling
branch cannot be written: every statement's result flows into the next one or into its
merge.)
"""

from __future__ import annotations

from .. import ast
from .catalogue import rule
from .context import Context, plural


@rule(
    "NN101", "inplace-op-on-shared-tensor", "info",
    summary="An op that may overwrite its input in place (ReLU-like activations, dropout — the "
            "registry's `stores = \"inplace\"`) whose input tensor is also read by another layer.",
    why="Run in place, as hand-written PyTorch often does (`nn.ReLU(inplace=True)`), the other "
        "reader sees the modified tensor (a shortcut that silently carries relu(x) instead of "
        "x), or autograd fails with 'a variable needed for gradient computation has been "
        "modified by an inplace operation'. nnspec's torch backend detects the case and copies "
        "instead, so there it costs memory: the analysis, which counts such ops as in place, "
        "under-estimates the activations by that tensor.",
    bad="""
        input 16x8x8
        add {
          { relu conv(16, 3, pad=1) }
          identity
        }
    """,
    good="""
        input 16x8x8
        relu
        add {
          conv(16, 3, pad=1)
          identity
        }
    """,
    fix="Apply the activation before the branch point (then every path sees it), or start "
        "the path with a layer that makes a new tensor.",
    false_positives="Harmless in nnspec's own backends (they copy); it matters when the spec is "
                    "translated by hand or to a framework that runs the op in place, and "
                    "pre-activation designs may want exactly this order.",
)
def inplace_on_shared(cx: Context):
    for nd in cx.nodes[1:]:
        if nd.opdef.stores != "inplace":
            continue
        src = cx.source(nd)
        others = [u for u in cx.users(src) if u.id != nd.id]
        if others:
            o = others[0]
            yield cx.hit(nd, f"{nd.name}: {nd.op} overwrites its input in place, but that tensor "
                             f"({src.name if src.op != 'input' else 'the input'}) is also read by "
                             f"{o.name} (line {o.span.line})")


@rule(
    "NN102", "merge-with-one-path", "warning",
    summary="An `add { }` or `concat { }` with a single path.",
    why="Summing or concatenating one tensor does nothing: usually the shortcut or a second "
        "branch was forgotten.",
    bad="""
        input 16x8x8
        add {
          conv(16, 3, pad=1)
        }
    """,
    good="""
        input 16x8x8
        add {
          conv(16, 3, pad=1)
          identity
        }
    """,
    fix="Add the missing path (an empty path or `identity` is the shortcut), or drop the merge.",
)
def merge_one_path(cx: Context):
    for nd in cx.layers("merge"):
        if len(nd.inputs) == 1:
            yield cx.hit(nd, f"{nd.name}: {nd.op} of a single path is the identity")


@rule(
    "NN103", "merge-of-same-tensor", "warning",
    summary="An `add`/`concat` whose paths carry the very same tensor (two identity paths).",
    why="`add` then computes 2·x and `concat` duplicates channels: no layer was applied on "
        "one of the paths, almost always a mistake.",
    bad="""
        input 16x8x8
        add {
          identity
          identity
        }
    """,
    good="""
        input 16x8x8
        add {
          conv(16, 3, pad=1)
          identity
        }
    """,
    fix="Put the layers of the residual branch on one of the paths.",
)
def merge_same_tensor(cx: Context):
    for nd in cx.layers("merge"):
        seen: dict[int, int] = {}
        for k, i in enumerate(nd.inputs, 1):
            cur = cx.nodes[i]
            while cur.op == "identity":
                cur = cx.source(cur)
            if cur.id in seen:
                what = "2·x" if nd.op == "add" else "the same channels twice"
                yield cx.hit(nd, f"{nd.name}: paths {seen[cur.id]} and {k} both carry "
                                 f"{cur.name if cur.op != 'input' else 'the input'} unchanged, so "
                                 f"{nd.op} gives {what}")
                break
            seen[cur.id] = k


# ---- what was written but never used (reads the syntax tree) ------------------------------

def _stmts(stmts):
    for s in stmts:
        yield s
        for item in s.items:
            yield from _item_stmts(item)


def _item_stmts(item):
    if isinstance(item, ast.Group):
        yield from _stmts(item.body)
    elif isinstance(item, ast.Merge):
        yield from _stmts(item.paths)
    elif isinstance(item, ast.Repeat):
        yield from _stmts(item.body)
    elif isinstance(item, ast.Cond):
        yield from _stmts(item.then)
        yield from _stmts(item.orelse or ())


def _calls(stmts):
    for s in _stmts(stmts):
        for item in s.items:
            if isinstance(item, ast.Call):
                yield item


def _exprs_of_stmts(stmts):
    for s in _stmts(stmts):
        if s.expect is not None:
            yield from s.expect.dims
        for item in s.items:
            if isinstance(item, ast.Call):
                yield from item.args
                yield from (k.value for k in item.kwargs)
            elif isinstance(item, ast.Repeat):
                yield item.count
            elif isinstance(item, ast.Cond):
                yield item.test


def _names(e):
    """Every variable name an expression reads."""
    if isinstance(e, ast.Var):
        yield e.name
    elif isinstance(e, ast.CallExpr):
        for a in e.args:
            yield from _names(a)
        for k in e.kwargs:
            yield from _names(k.value)
    elif isinstance(e, ast.TupleExpr):
        for a in e.items:
            yield from _names(a)
    elif isinstance(e, ast.Unary):
        yield from _names(e.operand)
    elif isinstance(e, ast.Binary):
        yield from _names(e.left)
        yield from _names(e.right)
    elif isinstance(e, ast.IfExpr):
        for x in (e.then, e.test, e.orelse):
            yield from _names(x)


def _read(exprs) -> set[str]:
    return {n for e in exprs for n in _names(e)}


@rule(
    "NN104", "unused-block", "warning",
    summary="A `block` that is defined but never instantiated.",
    why="Dead code in a spec usually means the network is not the one intended (a block "
        "was renamed, or its call was dropped).",
    bad="""
        input 64
        block mlp(n) {
          linear(n) relu
        }
        linear(10)
    """,
    good="""
        input 64
        block mlp(n) {
          linear(n) relu
        }
        mlp(32)
        linear(10)
    """,
    fix="Instantiate the block or delete it.",
)
def unused_block(cx: Context):
    m = cx.module
    called = {c.name for c in _calls(m.body)}
    for b in m.blocks:
        called |= {c.name for c in _calls(b.body) if c.name != b.name}
    for b in m.blocks:
        if b.name not in called and cx.graph.blocks.get(b.name) is b:
            yield cx.hit(b.span, f"block '{b.name}' is never used")


@rule(
    "NN105", "unused-network-parameter", "warning",
    summary="A network parameter (`network net(classes = 10)`) that no expression reads.",
    why="`--set classes=100` would then change nothing: the head width was probably written "
        "as a literal by mistake.",
    bad="""
        network net(classes = 10)
        input 64
        linear(32) relu
        linear(10)
    """,
    good="""
        network net(classes = 10)
        input 64
        linear(32) relu
        linear(classes)
    """,
    fix="Use the parameter where it was meant (often the head: `linear(classes)`), or remove it.",
)
def unused_network_parameter(cx: Context):
    m = cx.module
    if not m.headers:
        return
    header = m.headers[0]
    used = _read(_exprs_of_stmts(m.body))
    used |= _read(p.default for p in header.params if p.default is not None)
    used |= _read(d for i in m.inputs for d in i.shape.dims)
    for t in m.trains:
        used |= _read(a for e in t.entries for a in e.args)
        used |= _read(k.value for e in t.entries for k in e.kwargs)
    for b in m.blocks:  # a block reads a global unless one of its own parameters shadows it
        own = {p.name for p in b.params}
        used |= _read(_exprs_of_stmts(b.body)) - own
        used |= _read(p.default for p in b.params if p.default is not None) - own
    for p in header.params:
        if p.name not in used:
            yield cx.hit(p.span, f"network parameter '{p.name}' is never used")


@rule(
    "NN106", "unused-block-parameter", "warning",
    summary="A block parameter that the block's body never reads.",
    why="Every instance then builds the same layers whatever it is called with "
        "(`mlp(128)` and `mlp(256)` are identical): a literal was written where the "
        "parameter was meant.",
    bad="""
        input 64
        block mlp(n) {
          linear(32) relu
        }
        mlp(128)
        linear(10)
    """,
    good="""
        input 64
        block mlp(n) {
          linear(n) relu
        }
        mlp(128)
        linear(10)
    """,
    fix="Use the parameter in the body, or remove it from the block's signature.",
)
def unused_block_parameter(cx: Context):
    for b in cx.module.blocks:
        if cx.graph.blocks.get(b.name) is not b:
            continue
        used = _read(_exprs_of_stmts(b.body)) | _read(p.default for p in b.params if p.default)
        for p in b.params:
            if p.name not in used:
                yield cx.hit(p.span, f"parameter '{p.name}' of block '{b.name}' is never used",
                             notes=(f"{plural(sum(1 for _ in _instances(cx, b.name)), 'instance')} "
                                    f"of '{b.name}' are therefore identical",))


def _instances(cx: Context, block: str):
    seen = set()
    for nd in cx.nodes:
        for f in nd.chain:
            if f.block == block and f.instance not in seen:
                seen.add(f.instance)
                yield f


@rule(
    "NN107", "redundant-flatten", "info",
    summary="`flatten` applied to a tensor that is already a feature vector.",
    why="It does nothing (`global_avgpool` already returns a vector); harmless, but it suggests "
        "the shapes are not what the author had in mind.",
    bad="""
        input 64
        flatten
        linear(10)
    """,
    good="""
        input 64
        linear(10)
    """,
    fix="Remove the `flatten`.",
    false_positives="None known; it is info only because it changes no number.",
)
def redundant_flatten(cx: Context):
    for nd in cx.nodes[1:]:
        if nd.op == "flatten" and len(cx.source(nd).shape) == 1:
            yield cx.hit(nd, f"{nd.name}: the input is already a vector of "
                             f"{cx.source(nd).shape[0]:,} features")
