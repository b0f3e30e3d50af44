"""Python source as data: symbolic values and black-style layout, for the source emitter.

`Sym` is a value known only as Python source (`4 * width`): arithmetic on it builds source
with the parentheses Python needs, so the backend's table can compute constructor arguments
from symbols as it does from numbers. Truth-testing a Sym raises `NotGeneric`: a structure
that depends on a parameter's value cannot be written generically. The layout functions
write calls as black would (one line, or arguments on their own line, or one per line
with a trailing comma).

>>> width = Sym("width")
>>> py(4 * width + 1), py((width - 1) // 2), py((3, 3))
('4 * width + 1', '(width - 1) // 2', '3')
"""

from __future__ import annotations

import json
import keyword
import re
from dataclasses import dataclass, field

LINE = 88  # black's line length


class NotGeneric(Exception):
    """The value of a symbol decides the structure: write the code from concrete values."""


def py(v) -> str:
    """A value as Python source; tuples of equal entries collapse (torch takes either)."""
    if isinstance(v, tuple):
        v = one(v)
        if isinstance(v, tuple):
            return "(" + ", ".join(py(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, str):
        return json.dumps(v)  # double quotes, as black writes them
    return repr(v)


def one(v):
    """(3, 3) -> 3; (3, 1) stays."""
    if isinstance(v, tuple) and v and all(_eq(x, v[0]) for x in v[1:]):
        return v[0]
    return v


def _eq(a, b) -> bool:
    return type(a) is type(b) and a == b


# ---- symbolic values ------------------------------------------------------------------------

PREC = {"if": 1, "or": 2, "and": 3, "not": 4, "cmp": 5, "+": 10, "-": 10, "*": 11, "/": 11,
         "//": 11, "%": 11, "neg": 12, "**": 13}
ATOM = 14


class Sym:
    """A value known only as Python source, e.g. `4 * width`; arithmetic builds source."""

    __slots__ = ("src", "prec")

    def __init__(self, src: str, prec: int = ATOM):
        self.src, self.prec = src, prec

    def __repr__(self) -> str:
        return self.src

    def __eq__(self, other):
        return isinstance(other, Sym) and other.src == self.src

    def __hash__(self):
        return hash(self.src)

    def __bool__(self):
        raise NotGeneric(f"the value of '{self.src}' decides the structure")

    def __add__(self, o): return binop("+", self, o)
    def __radd__(self, o): return binop("+", o, self)
    def __sub__(self, o): return binop("-", self, o)
    def __rsub__(self, o): return binop("-", o, self)
    def __mul__(self, o): return binop("*", self, o)
    def __rmul__(self, o): return binop("*", o, self)
    def __floordiv__(self, o): return binop("//", self, o)
    def __rfloordiv__(self, o): return binop("//", o, self)
    def __truediv__(self, o): return binop("/", self, o)
    def __mod__(self, o): return binop("%", self, o)
    def __pow__(self, o): return binop("**", self, o)
    def __neg__(self): return Sym("-" + wrap(self, PREC["neg"]), PREC["neg"])


def is_sym(v) -> bool:
    return isinstance(v, Sym) or (isinstance(v, tuple) and any(is_sym(x) for x in v))


def wrap(v, prec: int, right: bool = False) -> str:
    if isinstance(v, Sym):
        p = v.prec
    elif isinstance(v, (int, float)) and not isinstance(v, bool) and v < 0:
        p = PREC["neg"]
    else:
        p = ATOM
    s = py(v)
    return f"({s})" if p < prec or (right and p == prec) else s


def binop(op: str, a, b):
    if not (is_sym(a) or is_sym(b)):
        raise AssertionError("binop on concrete values")
    if op == "*" and (a == 1 and not is_sym(a)):
        return b
    if op in ("*", "//", "/") and (b == 1 and not is_sym(b)):
        return a
    if op in ("+", "-") and (b == 0 and not is_sym(b)):
        return a
    if op == "+" and (a == 0 and not is_sym(a)):
        return b
    prec = PREC.get(op, PREC["cmp"])
    if op == "**":  # right-associative
        return Sym(f"{wrap(a, prec + 1)} ** {wrap(b, prec)}", prec)
    return Sym(f"{wrap(a, prec)} {op} {wrap(b, prec, right=True)}", prec)


# ---- layout -----------------------------------------------------------------------

def call_lines(head: str, fn: str, args: list[str], indent: int, explode: bool = False,
                tail: str = "") -> list[str]:
    """`head + fn(args) + tail` as black writes it: on one line if it fits, else the arguments
    on their own line, else one argument per line with a trailing comma."""
    pad = " " * indent
    explode = explode or any("\n" in a for a in args)
    flat = f"{pad}{head}{fn}({', '.join(args)}){tail}"
    if not explode and len(flat) <= LINE:
        return [flat]
    inner = " " * (indent + 4)
    joined = f"{inner}{', '.join(args)}"
    if not explode and len(joined) <= LINE and args:
        return [f"{pad}{head}{fn}(", joined, f"{pad}){tail}"]
    lines = [f"{pad}{head}{fn}("]
    for a in args:
        if "\n" in a:  # a nested call already laid out
            sub = a.split("\n")
            lines.append(inner + sub[0])
            lines.extend(sub[1:-1])
            lines.append(sub[-1] + ",")
        else:
            lines.append(f"{inner}{a},")
    lines.append(f"{pad}){tail}")
    return lines


def expr_lines(fn: str, args: list[str], indent: int, explode: bool = False) -> str:
    """A call used as an argument: one line or a block (joined with newlines, first line
    without indentation)."""
    lines = call_lines("", fn, args, indent, explode)
    lines[0] = lines[0].lstrip()
    return "\n".join(lines)


@dataclass
class Ctor:
    """A constructor call to place in __init__ or in a Sequential: fn(args)."""
    fn: str
    args: list = field(default_factory=list)  # str or Ctor
    explode: bool = False

    def render(self, indent: int) -> str:
        return expr_lines(self.fn, _args(self.args, indent), indent, self.explode)

    def lines(self, head: str, indent: int) -> list[str]:
        return call_lines(head, self.fn, _args(self.args, indent), indent, self.explode)


def _args(args, indent: int) -> list[str]:
    return [a.render(indent + 4) if hasattr(a, "render") else a for a in args]


def camel(name: str) -> str:
    s = "".join(p[:1].upper() + p[1:] for p in re.split(r"[_\W]+", name) if p)
    if not s or not s[0].isalpha():
        s = "Net" + s
    return s


def pyname(name: str) -> str:
    return name + "_" if keyword.iskeyword(name) or name in ("self", "nn", "torch") else name


@dataclass
class ClassDef:
    name: str
    base: str
    doc: str
    params: list[str]
    init: list[str]
    forward: list[str] | None
    seq_items: list | None = None  # a Sequential subclass: its items
    kind: str = ""

    def text(self) -> str:
        out = [f"class {self.name}({self.base}):"]
        out += docstring(self.doc, 4)
        out.append("")
        out += call_lines("def ", "__init__", ["self"] + self.params, 4, tail=":")
        if self.seq_items is not None:  # the items may need lines that build them first
            out += self.init
            explode = not (len(self.seq_items) == 1 and str(self.seq_items[0]).startswith("*"))
            out += Ctor("super().__init__", self.seq_items, explode=explode).lines("", 8)
        else:
            out.append("        super().__init__()")
            out += self.init
        if self.forward is not None:
            out.append("")
            out += ["    def forward(self, x):"] + self.forward
        return "\n".join(out) + "\n"


def docstring(text: str, indent: int) -> list[str]:
    pad = " " * indent
    lines = text.strip().replace('"""', "'''").splitlines() or [""]
    if len(lines) == 1:
        return [f'{pad}"""{lines[0]}"""']
    return [f'{pad}"""{lines[0]}'] + [f"{pad}{ln}".rstrip() for ln in lines[1:]] + [f'{pad}"""']


@dataclass
class Loop:
    """`for i in range(n):` appending layers to a list, the depth carried in `chan`."""
    chan: str
    start: str
    var: str
    count: str
    items: list
    after: str | None

    def lines(self, lst: str) -> list[str]:
        body = []
        for it in self.items:
            body += Ctor(f"{lst}.append", [it]).lines("", 4)
        uses = any(re.search(rf"\b{self.chan}\b", ln) for ln in body)
        out = [f"{self.chan} = {self.start}"] if uses else []
        out += [f"for {self.var} in range({self.count}):"] + body
        if uses and self.after is not None:
            out.append(f"    {self.chan} = {self.after}")
        return out


class OrderedDictArg:
    """nn.Sequential(OrderedDict([...])) for a group whose layers have labels."""

    def __init__(self, items):
        self.items = items

    def render(self, indent: int) -> str:
        inner = " " * (indent + 4)
        rows = []
        for name, ctor in self.items:
            c = ctor.render(indent + 8) if isinstance(ctor, Ctor) else ctor
            rows.append(f'{inner}("{name}", {c}),')
        return "OrderedDict(\n" + f"{' ' * indent}    [\n" + "\n".join(
            " " * 4 + r for r in rows) + f"\n{' ' * indent}    ]\n{' ' * indent})"


