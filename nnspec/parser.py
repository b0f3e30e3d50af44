"""Text -> syntax tree (`nnspec.ast`). The only module that imports lark.

The LALR tables are built once per grammar version and cached as JSON (never pickle) in
the user's cache directory; a damaged or foreign cache file is ignored and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

import lark
from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from . import ast
from .errors import Diagnostic, Span, SpecError

MAX_SOURCE_BYTES = 2_000_000
MAX_NESTING = 100
MAX_INT_DIGITS = 18

_OPTIONS = dict(parser="lalr", lexer="contextual", propagate_positions=True, maybe_placeholders=True)


# ---- the grammar and its parser ------------------------------------------------------------

def grammar_text() -> str:
    try:
        return resources.files("nnspec.grammar").joinpath("nnspec.lark").read_text("utf-8")
    except (ModuleNotFoundError, FileNotFoundError):  # running from a source tree without install
        return (Path(__file__).resolve().parent.parent / "grammar" / "nnspec.lark").read_text("utf-8")


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nnspec"


@lru_cache(maxsize=1)
def _parser() -> Lark:
    text = grammar_text()
    key = hashlib.sha256((text + lark.__version__ + json.dumps(_OPTIONS)).encode()).hexdigest()[:16]
    path = _cache_dir() / f"parser-{key}.json"
    try:
        blob = _decode(json.loads(path.read_text("utf-8")))
        return Lark._load_from_dict(blob["data"], blob["memo"])
    except Exception:  # no cache yet, or unreadable: build the tables (about 70 ms) and save them
        pass
    parser = Lark(text, **_OPTIONS)
    try:
        data, memo = parser.memo_serialize([lark.lexer.TerminalDef, lark.grammar.Rule])
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(_encode({"data": data, "memo": memo})), "utf-8")
        os.replace(tmp, path)
    except (OSError, TypeError, ValueError):
        pass  # a read-only home only costs the 70 ms next time
    return parser


def _encode(x):
    """JSON keeps neither tuples nor integer keys; the parse tables have both."""
    if isinstance(x, dict):
        if all(isinstance(k, str) for k in x):
            return {k: _encode(v) for k, v in x.items()}
        return {"#items": [[_encode(k), _encode(v)] for k, v in x.items()]}
    if isinstance(x, tuple):
        return {"#tuple": [_encode(v) for v in x]}
    if isinstance(x, list):
        return [_encode(v) for v in x]
    return x


def _decode(x):
    if isinstance(x, dict):
        if "#items" in x:
            return {_decode(k): _decode(v) for k, v in x["#items"]}
        if "#tuple" in x:
            return tuple(_decode(v) for v in x["#tuple"])
        return {k: _decode(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_decode(v) for v in x]
    return x


# ---- entry points --------------------------------------------------------------------------

def read_source(path: str | os.PathLike) -> str:
    """The text of a spec file, or a SpecError saying why it cannot be read."""
    name = str(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_SOURCE_BYTES + 1)
    except OSError as e:
        raise SpecError([Diagnostic("NN002", f"cannot read '{name}': {e.strerror or e}")]) from None
    return decode_source(raw, name)


def decode_source(raw: bytes, name: str) -> str:
    if len(raw) > MAX_SOURCE_BYTES:
        raise SpecError([Diagnostic("NN002", f"'{name}' is larger than {MAX_SOURCE_BYTES:,} bytes",
                                    help="a network spec is a few kilobytes; is this the right file?")])
    if b"\0" in raw[:8192] or b"\0" in raw:
        raise SpecError([Diagnostic("NN002", f"'{name}' is a binary file, not a .nn spec")])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        before = raw[:e.start]
        line = before.count(b"\n") + 1
        column = e.start - (before.rfind(b"\n") + 1) + 1
        span = Span(name, line, column, line, column + 1)
        raise SpecError([Diagnostic("NN002", f"invalid UTF-8 byte 0x{raw[e.start]:02x}", span,
                                    help="save the file as UTF-8")]) from None


def parse(source: str, file: str = "<string>") -> ast.Module:
    """Parse spec text into a syntax tree, or raise SpecError (the first syntax error)."""
    _check_nesting(source, file)
    try:
        tree = _parser().parse(source)
    except UnexpectedInput as e:
        raise SpecError([_syntax_diagnostic(e, source, file)], {file: source}) from None
    try:
        return _ToAst(file, source).transform(tree)
    except SpecError as e:
        e.sources.setdefault(file, source)
        raise


def parse_file(path: str | os.PathLike) -> ast.Module:
    return parse(read_source(path), str(path))


# ---- hostile input guards ------------------------------------------------------------------

_OPEN = {"{": "}", "(": ")"}
_SCAN = re.compile(r'#[^\n]*|"[^"\n]*"|\'[^\'\n]*\'|[{}()\n]')


def _check_nesting(source: str, file: str) -> None:
    """Refuse absurd nesting before the (recursive) tree transformation sees it."""
    depth, line, line_start = 0, 1, 0
    for m in _SCAN.finditer(source):
        ch = m.group()
        if ch == "\n":
            line, line_start = line + 1, m.end()
        elif ch in _OPEN:
            depth += 1
            if depth > MAX_NESTING:
                col = m.start() - line_start + 1
                raise SpecError([Diagnostic(
                    "NN002", f"brackets nested more than {MAX_NESTING} deep",
                    Span(file, line, col, line, col + 1),
                    help="flatten the structure with block definitions")], {file: source})
        elif ch in ")}":
            depth = max(0, depth - 1)


# ---- syntax errors -------------------------------------------------------------------------

_TOKEN_WORDS = {
    "NAME": "a name", "INT": "an integer", "FLOAT": "a number", "STRING": "a string",
    "SHAPE": "a shape such as 3x224x224", "LABEL": "a layer name followed by ':'",
    "_NL": "a new line", "$END": "the end of the file", "LPAR": "'('", "RPAR": "')'",
    "LBRACE": "'{'", "RBRACE": "'}'", "COMMA": "','", "EQUAL": "'='", "_ARROW": "'->'",
    "COMP_OP": "a comparison", "ADD_OP": "'+' or '-'", "MUL_OP": "'*', '/', '//' or '%'",
    "_POW": "'**'", "DOT": "'.'", "MINUS": "'-'", "PLUS": "'+'", "_ELSE": "'else'",
    "IF": "'if'", "AS": "'as'", "OR": "'or'", "AND": "'and'", "NOT": "'not'",
}

_EXAMPLES = {
    "name a layer with 'name:', not '='  (e.g. `conv1: conv(64, 3)`)": [
        "x = conv(3, 3)\n", "network n\ninput 3x8x8\nx = conv(3, 3)\n"],
    "write shapes without spaces, e.g. `3x224x224`": [
        "input 3 x 224 x 224\n", "conv(8, 3) -> 8 x 6 x 6\n"],
    "separate arguments with ','": ["conv(96 11)\n", "conv(96, 11 stride=4)\n"],
    "keyword arguments come after positional ones: `conv(64, 3, pad=1)`": [
        "conv(out=64, 3)\n"],
}


def _describe_expected(expected) -> str:
    words = sorted({_TOKEN_WORDS.get(t, f"'{t.lower()}'" if t.isalpha() else t) for t in expected})
    if len(words) > 6:
        words = words[:6] + ["…"]
    return ", ".join(words)


def _syntax_diagnostic(e: UnexpectedInput, source: str, file: str) -> Diagnostic:
    line = max(1, getattr(e, "line", 1) or 1)
    column = max(1, getattr(e, "column", 1) or 1)
    hint = None
    try:
        hint = e.match_examples(_parser().parse, _EXAMPLES, use_accepts=True)
    except Exception:  # match_examples re-parses the examples; a failure there is no hint
        hint = None
    if isinstance(e, UnexpectedCharacters):
        ch = source[e.pos_in_stream] if 0 <= e.pos_in_stream < len(source) else "?"
        message = f"unexpected character {ch!r}"
        span = Span(file, line, column, line, column + 1)
        if ch in "[]":
            hint = hint or "use parentheses for tuples: `kernel=(3, 5)`"
        elif ch == ":":
            hint = hint or "a layer name is a letter or '_' followed by letters, digits or '_'"
    elif isinstance(e, UnexpectedEOF) or (isinstance(e, UnexpectedToken) and e.token.type == "$END"):
        lines = source.splitlines() or [""]
        line, column = len(lines), len(lines[-1]) + 1
        span = Span(file, line, column, line, column + 1)
        message = "unexpected end of file"
        opener = _unclosed(source)
        if opener:
            hint = f"the '{opener[0]}' opened at {opener[1]}:{opener[2]} is never closed"
    else:
        tok = e.token
        text = str(tok)
        if tok.type == "_NL":
            message = "unexpected end of line"
            span = Span(file, line, column, line, column + 1)
        else:
            message = f"unexpected {text!r}"
            span = Span(file, line, column, line, column + max(1, len(text.splitlines()[0] if text else "")))
    expected = getattr(e, "expected", None) or getattr(e, "allowed", None)
    if expected:
        message += f"; expected {_describe_expected(expected)}"
    return Diagnostic("NN001", message, span, help=hint)


def _unclosed(source: str):
    stack = []
    line, line_start = 1, 0
    for m in _SCAN.finditer(source):
        ch = m.group()
        if ch == "\n":
            line, line_start = line + 1, m.end()
        elif ch in _OPEN:
            stack.append((ch, line, m.start() - line_start + 1))
        elif ch in ")}" and stack:
            stack.pop()
    return stack[-1] if stack else None


# ---- parse tree -> syntax tree -------------------------------------------------------------

def _tok_span(file: str, tok: Token) -> Span:
    return Span(file, tok.line, tok.column, tok.end_line, tok.end_column)


@v_args(meta=True)
class _ToAst(Transformer):
    def __init__(self, file: str, source: str):
        super().__init__()
        self.file = file
        self.source = source

    def _span(self, meta) -> Span:
        if getattr(meta, "empty", True):
            return Span(self.file, 1, 1, 1, 1)
        return Span(self.file, meta.line, meta.column, meta.end_line, meta.end_column)

    def _error(self, message: str, span: Span, help: str | None = None):
        raise SpecError([Diagnostic("NN003", message, span, help=help)], {self.file: self.source})

    # top level
    def start(self, meta, items):
        items = [i for i in items if i is not None]
        kinds = {k: tuple(i for i in items if isinstance(i, k))
                 for k in (ast.Header, ast.InputDecl, ast.BlockDef, ast.Stmt, ast.Train)}
        return ast.Module(self.file, self.source, kinds[ast.Header], kinds[ast.InputDecl],
                          kinds[ast.BlockDef], kinds[ast.Stmt], kinds[ast.Train])

    def header(self, meta, c):
        return ast.Header(str(c[0]), c[1] or (), self._span(meta))

    def params(self, meta, c):
        return tuple(p for p in c if p is not None)

    def param(self, meta, c):
        return ast.Param(str(c[0]), c[1], self._span(meta))

    def input_decl(self, meta, c):
        return ast.InputDecl(c[0], self._span(meta))

    def block_def(self, meta, c):
        return ast.BlockDef(str(c[0]), c[1] or (), c[2], self._span(meta))

    def body(self, meta, c):
        return tuple(s for s in c if s is not None)

    # statements
    def stmt(self, meta, c):
        label, *items, expect = c
        label_span = None
        if label is not None:
            label_span = _tok_span(self.file, label)
            name = str(label).rstrip(" \t:")
            label_span = Span(self.file, label.line, label.column, label.line, label.column + len(name))
            label = name
        return ast.Stmt(label, label_span, tuple(items), expect, self._span(meta))

    def call(self, meta, c):
        name, args = c
        pos, kw = args if args is not None else ((), ())
        return ast.Call(str(name), pos, kw, self._span(meta), _tok_span(self.file, name))

    def group(self, meta, c):
        return ast.Group(c[0], self._span(meta))

    def add(self, meta, c):
        return ast.Merge("add", c[0], self._span(meta))

    def concat(self, meta, c):
        return ast.Merge("concat", c[0], self._span(meta))

    def repeat(self, meta, c):
        count, var, body = c
        return ast.Repeat(count, str(var) if var is not None else None, body, self._span(meta))

    def cond(self, meta, c):
        test, then, orelse = c
        if isinstance(orelse, ast.Cond):
            orelse = (ast.Stmt(None, None, (orelse,), None, orelse.span),)
        return ast.Cond(test, then, orelse, self._span(meta))

    def args(self, meta, c):
        pos = tuple(a for a in c if a is not None and not isinstance(a, ast.Kwarg))
        kw = tuple(a for a in c if isinstance(a, ast.Kwarg))
        seen_kw = False
        for a in c:
            if isinstance(a, ast.Kwarg):
                seen_kw = True
            elif a is not None and seen_kw:
                self._error("positional argument after a keyword argument", a.span,
                            "put positional arguments first: `conv(64, 3, pad=1)`")
        return pos, kw

    def kwarg(self, meta, c):
        return ast.Kwarg(str(c[0]), c[1], self._span(meta))

    def shape(self, meta, c):
        span = self._span(meta)
        if len(c) == 1 and isinstance(c[0], Token):
            tok = c[0]
            dims = tuple(ast.Const(self._int(d, span), span) for d in str(tok).split("x"))
            return ast.ShapeExpr(dims, span)
        return ast.ShapeExpr(tuple(d for d in c if d is not None), span)

    def train(self, meta, c):
        return ast.Train(tuple(e for e in c if e is not None), self._span(meta))

    def entry(self, meta, c):
        key, *rest = c
        pos = tuple(a for a in rest if a is not None and not isinstance(a, ast.Kwarg))
        kw = tuple(a for a in rest if isinstance(a, ast.Kwarg))
        return ast.TrainEntry(str(key), pos, kw, self._span(meta), _tok_span(self.file, key))

    # expressions
    def _int(self, text: str, span: Span) -> int:
        if len(text.lstrip("0")) > MAX_INT_DIGITS:
            self._error(f"integer literal with {len(text)} digits is out of range", span,
                        "numbers in a spec must be below 10^18")
        return int(text)

    def int_(self, meta, c):
        span = self._span(meta)
        return ast.Const(self._int(str(c[0]), span), span)

    def float_(self, meta, c):
        span = self._span(meta)
        text = str(c[0])
        if len(text) > 64:
            self._error("number literal is too long", span)
        value = float(text)
        if value in (float("inf"),):
            self._error(f"number {text} is out of range", span)
        return ast.Const(value, span)

    def string(self, meta, c):
        return ast.Const(str(c[0])[1:-1], self._span(meta))

    def true(self, meta, c):
        return ast.Const(True, self._span(meta))

    def false(self, meta, c):
        return ast.Const(False, self._span(meta))

    def var(self, meta, c):
        return ast.Var(str(c[0]), self._span(meta))

    def attr(self, meta, c):
        return ast.Attr(str(c[0]), str(c[1]), self._span(meta))

    def call_expr(self, meta, c):
        pos, kw = c[1] if c[1] is not None else ((), ())
        return ast.CallExpr(str(c[0]), pos, kw, self._span(meta))

    def tuple_(self, meta, c):
        return ast.TupleExpr(tuple(x for x in c if x is not None), self._span(meta))

    def neg(self, meta, c):
        return ast.Unary("-", c[0], self._span(meta))

    def not_(self, meta, c):
        return ast.Unary("not", c[0], self._span(meta))

    def binop(self, meta, c):
        return ast.Binary(str(c[1]), c[0], c[2], self._span(meta))

    compare = binop

    def pow_(self, meta, c):
        return ast.Binary("**", c[0], c[1], self._span(meta))

    def or_(self, meta, c):
        return ast.Binary("or", c[0], c[1], self._span(meta))

    def and_(self, meta, c):
        return ast.Binary("and", c[0], c[1], self._span(meta))

    def ifexp(self, meta, c):
        return ast.IfExpr(c[0], c[1], c[2], self._span(meta))
