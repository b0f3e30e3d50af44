"""A drawing of a network, top to bottom: `render_svg(spec) -> str` (an SVG document).

One box per layer (or per folded block instance, `depth=` as `nnspec table --depth` folds),
showing its name, op, output shape and parameters; the parallel paths of a merge (`add`,
`concat`, `mul`) side by side, joining at the merge; block instances and labelled groups as
titled frames; boxes coloured by the registry's op category; lint findings marked on the
layers they name (severity colour, codes in the box's tooltip).

Specs are series-parallel by construction (a merge's paths all start from the value entering
the merge statement and nest), so the layout follows that nesting: a chain is a column of
items, a merge puts its paths' columns side by side above the merge box, a frame pads its
chain. No graph-layout engine, no system packages: positions are arithmetic on the nesting.

Structure (a contract for `nnspec serve`/`html` and the tests), everything else is styling:

- every box: `<g class="nn-node" data-name="NAME" data-line="LINE" ...>`, NAME the node's
  hierarchical name (as in `nnspec table` rows and `nnspec explain NAME`) or, folded, the
  block instance's; LINE its line in the spec (`data-file` when it comes from a `use`d file);
- every edge: `<path class="nn-edge" data-from="NAME" data-to="NAME">`, one per graph edge
  between two boxes (unfolded: exactly the graph's edges, with multiplicity);
- every unfolded block instance or labelled group: `<g class="nn-frame" data-name="PATH">`.

>>> import nnspec
>>> svg = render_svg(nnspec.loads("input 3x8x8\\nc: conv(4, 3, pad=1) relu\\n"), findings=())
>>> svg.count('class="nn-node"'), svg.count('class="nn-edge"')
(3, 2)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from .ir import Graph, Node
from .plan import scopes, walk
from .report import Row, clip, count, human_count, rows, shape_cell

# ---- colours: keyed by the registry's op category (Op.category), never by op name --------------

CATEGORY_COLOURS: dict[str, tuple[str, str]] = {   # category -> (fill, stroke)
    "input": ("#f1f5f9", "#0f172a"),
    "conv": ("#dbeafe", "#2563eb"),
    "linear": ("#ede9fe", "#7c3aed"),
    "pool": ("#dcfce7", "#16a34a"),
    "upsample": ("#cffafe", "#0891b2"),
    "norm": ("#fef9c3", "#a16207"),
    "activation": ("#ffedd5", "#ea580c"),
    "regularization": ("#fce7f3", "#db2777"),
    "reshape": ("#f5f5f4", "#78716c"),
    "merge": ("#e2e8f0", "#334155"),
    "layer": ("#f5f5f4", "#57534e"),   # Op's default category
}
FOLDED_COLOUR = ("#e0e7ff", "#4338ca")  # a folded block instance: not an op
SEVERITY_COLOURS = {"error": "#dc2626", "warning": "#d97706", "info": "#0284c7"}
_SEVERITY_RANK = {"info": 0, "warning": 1, "error": 2}

# ---- geometry (px) ----------------------------------------------------------------------------

FONT = "DejaVu Sans, Verdana, Helvetica, Arial, sans-serif"
CHAR_W = 0.62           # average advance of a character, in font sizes (errs wide: text fits)
BOX_MIN_W, BOX_H = 128, 50
BOX_PAD_X = 9
V_GAP = 22              # between consecutive items of a chain (an edge with its arrow)
H_GAP = 16              # between paths side by side
FORK_GAP = 16           # from the top of a merge's paths area to the paths' first boxes
MERGE_GAP = 30          # from the bottom of the longest path to the merge box
LANE_W = 30             # an empty path (the identity): a lane for its edge
FRAME_PAD, FRAME_TITLE = 8, 18
MARGIN = 16
MAX_SHOWN = 48          # characters of a name or label drawn in a box (the tooltip has all)
MAX_LISTED = 12         # findings that name no layer, listed under the title


# ---- the structure: items of a chain --------------------------------------------------------

@dataclass
class Box:
    """A layer, or a folded block instance (`nodes` are the layers it stands for)."""
    name: str
    shown: str                  # name relative to the frame around it
    lines: tuple[str, str]      # op (or block), then output shape and parameters
    category: str | None        # op category; None for a folded block
    line: int
    file: str
    nodes: tuple[int, ...]
    tip: str
    findings: list = field(default_factory=list)
    w: float = 0.0
    size: tuple | None = None


@dataclass
class Par:
    """Parallel paths from one value joined by a merge node; an empty path is the identity."""
    merge: Box
    paths: list                 # [list of items]
    size: tuple | None = None
    layout: tuple | None = None


@dataclass
class Frame:
    """A block instance or labelled group drawn unfolded around its items."""
    path: str
    kind: str                   # block name, or "group"
    line: int
    items: list
    shown: str = ""             # path relative to the frame around it
    size: tuple | None = None


# ---- series-parallel decomposition of the graph ----------------------------------------------

class _Forks:
    """The value each merge's paths start from (the value entering the merge statement): walk
    the paths back, always stepping the latest value, until they meet. A value's step back is
    its node's input, or for a merge that merge's own fork (memoised), so nested merges are
    crossed in one step each and every path is walked once."""

    def __init__(self, graph: Graph):
        self.nodes = graph.nodes
        self.memo: dict[int, int] = {}

    def parallel(self, nd: Node) -> bool:
        return len(nd.inputs) > 1

    def back(self, v: int) -> int:
        nd = self.nodes[v]
        return self.fork(nd) if self.parallel(nd) else nd.inputs[0]

    def fork(self, nd: Node) -> int:
        f = self.memo.get(nd.id)
        if f is None:
            frontier = set(nd.inputs)
            while len(frontier) > 1:
                v = max(frontier)
                frontier.discard(v)
                frontier.add(self.back(v))
            f = self.memo[nd.id] = frontier.pop()
        return f


def _chain(forks: _Forks, end: int, start: int) -> list:
    """Items (Node | (merge Node, [paths])) from the value after `start` up to `end`."""
    out: list = []
    v = end
    nodes = forks.nodes
    while v != start:
        nd = nodes[v]
        if forks.parallel(nd):
            f = forks.fork(nd)
            out.append((nd, [_chain(forks, i, f) for i in nd.inputs]))
            v = f
        else:
            out.append(nd)
            v = nd.inputs[0]
    out.reverse()
    return out


def _scope_of(item) -> str:
    nd = item[0] if isinstance(item, tuple) else item
    return nd.name.rpartition(".")[0]


class _Builder:
    """Graph + table rows -> the nested items (boxes, merges, frames) to draw."""

    def __init__(self, graph: Graph, table: dict[str, Row], depth: int | None, kinds, marks):
        self.graph, self.table, self.depth, self.kinds, self.marks = graph, table, depth, kinds, marks
        self.box_of: dict[int, str] = {}   # node id -> name of the box that shows it

    def items(self, raw: list, scope: str) -> list:
        """Group consecutive items of a deeper scope into frames (folded at `depth`)."""
        level = scope.count(".") + 1 if scope else 0
        out: list = []
        k = 0
        while k < len(raw):
            sc = _scope_of(raw[k])
            inner = _prefix(sc, level + 1) if sc and sc.count(".") + 1 > level else None
            if inner is None or (scope and not sc.startswith(scope + ".") and sc != scope):
                out.append(self.item(raw[k], scope))
                k += 1
                continue
            j = k
            while j < len(raw) and _within(_scope_of(raw[j]), inner):
                j += 1
            group = raw[k:j]
            if self.depth is not None and level + 1 >= self.depth:
                out.append(self.folded(inner, group, scope))
            else:
                out.append(Frame(inner, self.kinds.get(inner, "group"), _group_line(group, inner),
                                 self.items(group, inner), _relative(inner, scope)))
            k = j
        return out

    def item(self, it, scope: str):
        if isinstance(it, tuple):
            nd, paths = it
            return Par(self.box(nd, scope), [self.items(p, scope) for p in paths])
        return self.box(it, scope)

    def box(self, nd: Node, scope: str) -> Box:
        r = self.table.get(nd.name)
        label = nd.opdef.label(nd.attrs) if r is None else r.op
        params = r.params if r is not None else 0
        b = Box(nd.name, _relative(nd.name, scope), (label, _figures(nd.shape, params)),
                nd.opdef.category, nd.span.line, nd.span.file, (nd.id,), "")
        b.tip = _tip(nd.name, label, nd.shape, params, r.macs if r else 0, nd.span)
        self.box_of[nd.id] = nd.name
        b.findings = list(self.marks.get(nd.id, ()))
        return b

    def folded(self, path: str, group: list, scope: str) -> Box:
        ids = tuple(nd.id for nd in _flatten(group))
        r = self.table.get(path)
        last = self.graph.nodes[ids[-1]] if ids else None
        kind = r.op if r is not None else self.kinds.get(path, "group")
        layers = r.layers if r is not None else len(ids)
        shape = r.shape if r is not None else (last.shape if last else None)
        params = r.params if r is not None else 0
        what = f"{kind} ({layers} layer{'s' * (layers != 1)})"
        line = _group_line(group, path)
        first = self.graph.nodes[ids[0]] if ids else None
        b = Box(path, _relative(path, scope), (what, _figures(shape, params)), None, line,
                first.span.file if first else self.graph.file, ids, "")
        b.tip = _tip(path, what, shape, params, r.macs if r else 0, None, line)
        for i in ids:
            self.box_of[i] = path
            b.findings += self.marks.get(i, ())
        b.findings = list(dict.fromkeys(b.findings))
        return b


def _prefix(path: str, parts: int) -> str:
    return ".".join(path.split(".")[:parts])


def _within(path: str, scope: str) -> bool:
    return path == scope or path.startswith(scope + ".")


def _relative(name: str, scope: str) -> str:
    return name[len(scope) + 1:] if scope and name.startswith(scope + ".") else name


def _flatten(items: list):
    for it in items:
        if isinstance(it, tuple):
            for p in it[1]:
                yield from _flatten(p)
            yield it[0]
        else:
            yield it


def _group_line(group: list, path: str) -> int:
    """The line where a block instance is called (or the group's first layer's line)."""
    first = next(_flatten(group), None)
    if first is None:
        return 0
    for fr in first.chain:
        if _within(fr.instance, path):
            return fr.call.line
    return first.span.line


def _figures(shape, params: int) -> str:
    text = shape_cell(shape)
    return text + (f" · {count(params)} params" if params else "")


def _tip(name, label, shape, params, macs, span, line=None) -> str:
    where = f"{span.file}:{span.line}" if span is not None else f"line {line}"
    parts = [name, f"{label} -> {shape_cell(shape)}", f"{count(params)} parameters"]
    if macs:
        parts.append(f"{count(macs)} MACs")
    parts.append(where)
    return "\n".join(parts)


# ---- findings -> the layers they name ---------------------------------------------------------

def _marks(graph: Graph, findings) -> tuple[dict[int, list], list]:
    """node id -> findings naming it (the same span and block-instance chain), and the
    findings that name no layer. Findings a rule repeats at one position (a `repeat` of one
    line makes layers that share span and chain) mark those layers once."""
    at: dict = {}
    by_span: dict = {}
    for nd in graph.nodes:
        at.setdefault((nd.span, nd.chain), []).append(nd.id)
        by_span.setdefault(nd.span, []).append(nd.id)
    marks: dict[int, list] = {}
    loose, seen = [], set()
    for d in findings:
        key = (d.span, d.chain)
        # a finding placed at a layer's span without its chain names every layer made there
        ids = at.get(key) or (by_span.get(d.span) if not d.chain else None)
        if ids is None:
            loose.append(d)
        elif (d.code,) + key not in seen:
            seen.add((d.code,) + key)
            for i in ids:
                marks.setdefault(i, []).append(d)
    return marks, loose


def lint_findings(spec) -> list:
    """Every lint finding of a spec, one per layer it names (not folded into one per source
    position as `nnspec lint` reports them), so that each block instance a rule flags is
    marked."""
    from .lint.engine import lint_source
    g = spec.graph
    return lint_source(g.source, g.file, network_args=g.args, fold=False).findings


# ---- layout ------------------------------------------------------------------------------------

def _text_w(text: str, size: float) -> float:
    return len(text) * size * CHAR_W


def _measure(it) -> tuple[float, float, float]:
    """(extent left of the item's axis, extent right of it, height), computed once."""
    if it.size is None:
        it.size = _size(it)
    return it.size


def _size(it) -> tuple[float, float, float]:
    if isinstance(it, Box):
        w = max(BOX_MIN_W, _text_w(clip(it.shown, MAX_SHOWN), 12) + 2 * BOX_PAD_X,
                _text_w(clip(it.lines[0], MAX_SHOWN), 11) + 2 * BOX_PAD_X,
                _text_w(it.lines[1], 10) + 2 * BOX_PAD_X)
        it.w = w
        return w / 2, w / 2, BOX_H
    if isinstance(it, Frame):
        l, r, h = _measure_chain(it.items)
        l, r = l + FRAME_PAD, r + FRAME_PAD
        need = _text_w(_frame_title(it), 10.5) + 12
        if l + r < need:
            r = need - l
        return l, r, FRAME_TITLE + h + FRAME_PAD
    lay = _par_layout(it)
    return lay[0], lay[1], lay[2]


def _measure_chain(items: list) -> tuple[float, float, float]:
    if not items:
        return LANE_W / 2, LANE_W / 2, 0
    sizes = [_measure(it) for it in items]
    return (max(s[0] for s in sizes), max(s[1] for s in sizes),
            sum(s[2] for s in sizes) + V_GAP * (len(sizes) - 1))


def _par_layout(p: Par):
    """(left, right, height, [(path axis offset from the merge axis, path extents)])."""
    if p.layout is None:
        p.layout = _par_size(p)
    return p.layout


def _par_size(p: Par):
    ext = [_measure_chain(path) for path in p.paths]
    widths = [l + r for l, r, _ in ext]
    total = sum(widths) + H_GAP * (len(ext) - 1)
    lefts, x = [], 0.0
    for w in widths:
        lefts.append(x)
        x += w + H_GAP
    axes = [lefts[k] + ext[k][0] for k in range(len(ext))]
    # A path taller than every other by a box or more (a residual block's body beside its
    # shortcut, DenseNet's new features beside the identity) runs straight down, the merge
    # under it; paths of similar length (Inception's branches) are centred over the merge.
    heights = sorted((h for _, _, h in ext), reverse=True)
    tallest = max(range(len(ext)), key=lambda k: ext[k][2])
    alone = len(ext) == 1 or heights[0] - heights[1] >= BOX_H
    axis = axes[tallest] if alone else total / 2
    ml, mr, mh = _measure(p.merge)
    left, right = max(axis, ml), max(total - axis, mr)
    height = FORK_GAP + max(h for _, _, h in ext) + MERGE_GAP + mh
    return left, right, height, [(a - axis, e) for a, e in zip(axes, ext)]


def _frame_title(f: Frame) -> str:
    return clip(f.shown or f.path, MAX_SHOWN) + ("" if f.kind == "group" else f" · {clip(f.kind, MAX_SHOWN)}")


class _Canvas:
    """Drawing primitives collected in layers: frames under edges under boxes."""

    def __init__(self):
        self.frames: list[str] = []
        self.edges: list[str] = []
        self.boxes: list[str] = []
        self.rects: list[tuple] = []   # (name, x, y, w, h) of every box: for tests

    def edge(self, src, dst: str, d: str) -> None:
        self.edges.append(f'<path class="nn-edge" data-from={_attr(src[0])} data-to={_attr(dst)} '
                          f'd="{d}" fill="none" stroke="#64748b" stroke-width="1.3" '
                          f'marker-end="url(#nn-arrow)"/>')


def _curve(x1, y1, x2, y2) -> str:
    """An S-curve from (x1, y1) down to (x2, y2); straight when aligned."""
    if abs(x1 - x2) < 0.5:
        return f"L{_n(x2)},{_n(y2)}"
    m = (y1 + y2) / 2
    return f"C{_n(x1)},{_n(m)} {_n(x2)},{_n(m)} {_n(x2)},{_n(y2)}"


def _n(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".")


def _place(it, ax: float, top: float, src, cv: _Canvas):
    """Draw `it` with its axis at x = ax, its top at `top`; `src` (box name, x, y) is where the
    value it reads leaves. Returns where its own value leaves."""
    if isinstance(it, Box):
        if src is not None:
            cv.edge(src, it.name, f"M{_n(src[1])},{_n(src[2])} " + _curve(src[1], src[2], ax, top))
        _draw_box(it, ax - it.w / 2, top, cv)
        return (it.name, ax, top + BOX_H)
    if isinstance(it, Frame):
        l, r, h = _measure(it)
        cv.frames.append(_frame_svg(it, ax - l, top, l + r, h))
        return _place_chain(it.items, ax, top + FRAME_TITLE, src, cv)
    left, right, height, paths = _par_layout(it)
    merge_top = top + height - BOX_H
    k = len(paths)
    spread = min(14.0, (it.merge.w - 24) / (k - 1)) if k > 1 else 0
    for i, (off, (l, r, h)) in enumerate(paths):
        port = ax + (i - (k - 1) / 2) * spread
        x = ax + off
        if it.paths[i]:
            end = _place_chain(it.paths[i], x, top + FORK_GAP, src, cv)
            d = f"M{_n(end[1])},{_n(end[2])} "
            bend = merge_top - MERGE_GAP + 8
            if end[2] < bend:
                d += f"L{_n(end[1])},{_n(bend)} "
            cv.edge(end, it.merge.name, d + _curve(end[1], max(end[2], bend), port, merge_top))
        elif src is not None:  # the identity: down its lane, beside the other paths
            lane_top, bend = top + FORK_GAP, merge_top - MERGE_GAP + 8
            d = (f"M{_n(src[1])},{_n(src[2])} " + _curve(src[1], src[2], x, lane_top)
                 + f" L{_n(x)},{_n(bend)} " + _curve(x, bend, port, merge_top))
            cv.edge(src, it.merge.name, d)
    _draw_box(it.merge, ax - it.merge.w / 2, merge_top, cv)
    return (it.merge.name, ax, merge_top + BOX_H)


def _place_chain(items: list, ax: float, top: float, src, cv: _Canvas):
    y = top
    for it in items:
        h = _measure(it)[2]
        src = _place(it, ax, y, src, cv)
        y += h + V_GAP
    return src


# ---- SVG text ----------------------------------------------------------------------------------

_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


def _text(s: str) -> str:
    """Text content: characters XML 1.0 cannot hold are dropped, markup escaped."""
    s = _NOT_XML.sub("", str(s))
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _attr(s) -> str:
    """A quoted attribute value (newlines and tabs kept as character references)."""
    s = _text(s).replace('"', "&quot;").replace("\n", "&#10;").replace("\t", "&#9;")
    return f'"{s}"'


def _draw_box(b: Box, x: float, y: float, cv: _Canvas) -> None:
    fill, stroke = FOLDED_COLOUR if b.category is None else CATEGORY_COLOURS.get(
        b.category, CATEGORY_COLOURS["layer"])
    width, tip, badge = "1.2", b.tip, ""
    if b.findings:
        worst = max(b.findings, key=lambda d: _SEVERITY_RANK.get(d.severity, 0))
        stroke, width = SEVERITY_COLOURS.get(worst.severity, stroke), "2.6"
        tip += "\n" + "\n".join(f"{d.code} {d.name or d.severity}: {d.message}" for d in b.findings)
        codes = ", ".join(dict.fromkeys(d.code for d in b.findings))
        bw = _text_w(clip(codes, 24), 9) + 10
        badge = (f'<rect x="{_n(x + b.w - bw + 4)}" y="{_n(y - 7)}" width="{_n(bw)}" height="14" '
                 f'rx="7" fill="{stroke}"/><text class="nn-finding" x="{_n(x + b.w - bw / 2 + 4)}" '
                 f'y="{_n(y + 3)}" font-size="9" fill="#ffffff" text-anchor="middle" '
                 f'font-weight="bold">{_text(clip(codes, 24))}</text>')
    cx = x + b.w / 2
    folded = ' data-folded="true"' if b.category is None else ""
    cat = f' data-category={_attr(b.category)}' if b.category else ""
    file = "" if b.file == cv.file else f" data-file={_attr(b.file)}"
    rx = 12 if b.category == "merge" else 5
    extra = (f'<rect x="{_n(x + 3)}" y="{_n(y + 3)}" width="{_n(b.w - 6)}" height="{BOX_H - 6}" '
             f'rx="3" fill="none" stroke="{stroke}" stroke-width="0.8"/>' if b.category is None else "")
    cv.boxes.append(
        f'<g class="nn-node" data-name={_attr(b.name)} data-line="{b.line}"{file}{cat}{folded}>'
        f'<title>{_text(tip)}</title>'
        f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(b.w)}" height="{BOX_H}" rx="{rx}" fill="{fill}" '
        f'stroke="{stroke}" stroke-width="{width}"/>{extra}'
        f'<text x="{_n(cx)}" y="{_n(y + 16)}" font-size="12" font-weight="bold" fill="#0f172a" '
        f'text-anchor="middle">{_text(clip(b.shown, MAX_SHOWN))}</text>'
        f'<text x="{_n(cx)}" y="{_n(y + 30)}" font-size="11" fill="#1e293b" '
        f'text-anchor="middle">{_text(clip(b.lines[0], MAX_SHOWN))}</text>'
        f'<text x="{_n(cx)}" y="{_n(y + 43)}" font-size="10" fill="#475569" '
        f'text-anchor="middle">{_text(b.lines[1])}</text>{badge}</g>')
    cv.rects.append((b.name, x, y, b.w, BOX_H))


def _frame_svg(f: Frame, x: float, y: float, w: float, h: float) -> str:
    kind = "" if f.kind == "group" else f" data-block={_attr(f.kind)}"
    return (f'<g class="nn-frame" data-name={_attr(f.path)}{kind} data-line="{f.line}">'
            f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(w)}" height="{_n(h)}" rx="7" '
            f'fill="#94a3b8" fill-opacity="0.07" stroke="#94a3b8" stroke-dasharray="4 3"/>'
            f'<text x="{_n(x + 6)}" y="{_n(y + 13)}" font-size="10.5" fill="#475569">'
            f'{_text(_frame_title(f))}</text></g>')


# ---- the document ------------------------------------------------------------------------------

def render_svg(spec, *, depth: int | None = None, findings=None) -> str:
    """The SVG drawing of `spec` (an nnspec.Spec). `depth` folds every block instance or group
    deeper than `depth` name levels into one box, as `nnspec table --depth` folds rows;
    `findings` are lint Diagnostics to mark (None: run lint, `lint_findings`; (): none)."""
    graph: Graph = spec.graph
    an = spec.analyze()
    table = {r.name: r for r in rows(an, depth)}
    if findings is None:
        findings = lint_findings(spec)
    marks, loose = _marks(graph, findings)
    kinds = {sc.path: sc.kind for sc in walk(scopes(graph))}
    b = _Builder(graph, table, depth, kinds, marks)
    items = [b.box(graph.input, "")] + b.items(_chain(_Forks(graph), graph.output, 0), "")

    cv = _Canvas()
    cv.file = graph.file
    left, right, height = _measure_chain(items)
    body_w = left + right
    head, head_h, head_w = _header(spec, an, items, loose, findings, max(body_w, 640))
    width = math.ceil(max(body_w, head_w) + 2 * MARGIN)  # whole pixels: converters agree on the size
    top = MARGIN + head_h + 12
    _place_chain(items, MARGIN + max(left, (width - 2 * MARGIN) / 2 - (right - left) / 2)
                 if body_w < head_w else MARGIN + left, top, None, cv)
    total_h = math.ceil(top + height + MARGIN)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="nn-diagram" width="{_n(width)}" '
           f'height="{_n(total_h)}" viewBox="0 0 {_n(width)} {_n(total_h)}" font-family="{FONT}" '
           f'data-network={_attr(graph.name)}>',
           '<defs><marker id="nn-arrow" viewBox="0 0 8 8" refX="7.5" refY="4" markerWidth="7" '
           'markerHeight="7" orient="auto"><path d="M0,0.8 L8,4 L0,7.2 z" fill="#64748b"/></marker></defs>',
           '<rect width="100%" height="100%" fill="#ffffff"/>']
    out += head + cv.frames + cv.edges + cv.boxes
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _header(spec, an, items, loose, findings, width: float) -> tuple[list[str], float, float]:
    """Title, totals, the colour legend (categories drawn) and the findings that name no
    layer: (SVG elements, height, width they need)."""
    t = an.totals
    g = spec.graph
    out: list[str] = []
    y, need = MARGIN + 12, 0.0

    def line(text, size, attrs):
        nonlocal y, need
        out.append(f'<text x="{MARGIN}" y="{_n(y)}" font-size="{size}"{attrs}>{_text(text)}</text>')
        need = max(need, _text_w(text, size))
        y += size + 8

    line(clip(g.name, 80), 15, ' font-weight="bold" fill="#0f172a"')
    line(f"input {shape_cell(g.input.shape)} · {count(t.params)} parameters · "
         f"{human_count(t.macs)} MACs · {len(g.nodes) - 1} layers"
         + (f" · {len(findings)} lint finding{'s' * (len(findings) != 1)}" if findings else ""),
         11, ' fill="#334155"')
    seen = set(_categories(items))
    x = MARGIN
    legend = [(c, CATEGORY_COLOURS[c]) for c in CATEGORY_COLOURS if c in seen]
    legend += [(c, CATEGORY_COLOURS["layer"]) for c in sorted(seen - set(CATEGORY_COLOURS) - {None})]
    if None in seen:
        legend.append(("folded block", FOLDED_COLOUR))
    y -= 4
    for name, (fill, stroke) in legend:
        w = 16 + len(name) * 10 * 0.56 + 14  # lower-case labels: narrower than CHAR_W
        if x + w > MARGIN + width and x > MARGIN:
            x, y = MARGIN, y + 16
        out.append(f'<g class="nn-legend"><rect x="{_n(x)}" y="{_n(y - 9)}" width="12" height="12" '
                   f'rx="2" fill="{fill}" stroke="{stroke}"/><text x="{_n(x + 16)}" y="{_n(y + 1)}" '
                   f'font-size="10" fill="#475569">{_text(name)}</text></g>')
        x += w
        need = max(need, x - MARGIN)
    y += 20 if legend else 4
    for d in loose[:MAX_LISTED]:
        where = f" (line {d.span.line})" if d.span else ""
        line(clip(f"{d.code} {d.severity}: {d.message}", 140) + where, 10,
             f' class="nn-finding" fill="{SEVERITY_COLOURS.get(d.severity, "#334155")}"')
    if len(loose) > MAX_LISTED:
        line(f"… {len(loose) - MAX_LISTED} more findings (nnspec lint)", 10, ' fill="#334155"')
    return out, y - MARGIN - 12, need


def _categories(items):
    for it in items:
        if isinstance(it, Box):
            yield it.category
        elif isinstance(it, Frame):
            yield from _categories(it.items)
        else:
            yield from _categories([it.merge])
            for p in it.paths:
                yield from _categories(p)


# ---- PNG ---------------------------------------------------------------------------------------

PNG_MAX_SIDE = 32_000   # cairo refuses surfaces past 32,767 pixels a side: taller drawings shrink
INSTALL_HINT = ('--format png needs a converter: pip install "nnspec[diagram]" (cairosvg), or put '
                'rsvg-convert on PATH (Debian/Ubuntu: apt install librsvg2-bin); the SVG needs none')


class ConverterMissing(Exception):
    """Neither cairosvg nor rsvg-convert is available (the message says what to install)."""


class ConversionError(Exception):
    """The converter failed on this drawing."""


def png_converter() -> str:
    """"cairosvg" when the package imports (with its cairo library), else the path of
    rsvg-convert on PATH; ConverterMissing otherwise."""
    try:
        import cairosvg  # noqa: F401
        return "cairosvg"
    except (ImportError, OSError):  # OSError: cairocffi found no libcairo
        pass
    import shutil
    exe = shutil.which("rsvg-convert")
    if exe:
        return exe
    raise ConverterMissing(INSTALL_HINT)


def _png_scale(svg: str) -> float:
    m = re.search(r'<svg [^>]*?width="([0-9.]+)" height="([0-9.]+)"', svg)
    side = max(float(m.group(1)), float(m.group(2))) if m else 0.0
    return min(1.0, PNG_MAX_SIDE / side) if side else 1.0


def to_png(svg: str, converter: str | None = None) -> bytes:
    """The PNG of an SVG drawing (shrunk to at most PNG_MAX_SIDE pixels a side)."""
    converter = converter or png_converter()
    scale = _png_scale(svg)
    if converter == "cairosvg":
        import cairosvg
        try:
            return cairosvg.svg2png(bytestring=svg.encode("utf-8"), scale=scale)
        except Exception as e:  # cairo's errors (and MemoryError) have no common base class
            raise ConversionError(f"cairosvg could not convert the drawing: {str(e)[:200]}") from None
    import subprocess
    try:
        r = subprocess.run([converter, "--format", "png", "--zoom", f"{scale:.6f}"],
                           input=svg.encode("utf-8"), capture_output=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ConversionError(f"rsvg-convert failed: {e}") from None
    if r.returncode != 0 or not r.stdout.startswith(b"\x89PNG"):
        why = r.stderr.decode("utf-8", "replace").strip().splitlines()[:1]
        raise ConversionError(f"rsvg-convert failed (exit {r.returncode})" + (f": {why[0][:200]}" if why else ""))
    return r.stdout
