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
from lark import Lark, Token, Transformer, Tree
from lark.lark import PostLex
from lark.exceptions import (UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken,
                             VisitError)

from . import ast
from .errors import Diagnostic, Span, SpecError

MAX_SOURCE_BYTES = 2_000_000
MAX_NESTING = 100      # brackets
MAX_TREE_DEPTH = 330   # parse-tree levels: 100 nested groups take 303; operator chains count too
MAX_INT_DIGITS = 18

_OPTIONS = dict(parser="lalr", lexer="contextual", propagate_positions=False, maybe_placeholders=True,
                start=["start", "expr"])
_VERSION = "2"  # of the post-lexer and options: part of the cache key


class _Continuation(PostLex):
    """A line break inside `( )` or `[ ]` continues the statement, as in Python: the _NL
    tokens there (with the comments they carry) are dropped."""

    always_accept = ("_NL",)

    def process(self, stream):
        depth = 0
        for tok in stream:
            t = tok.type
            if t == "LPAR" or t == "LSQB":
                depth += 1
            elif t == "RPAR" or t == "RSQB":
                depth = depth - 1 if depth else 0
            elif t == "_NL" and depth:
                continue
            yield tok


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
    key = hashlib.sha256((text + lark.__version__ + json.dumps(_OPTIONS) + _VERSION).encode()).hexdigest()[:16]
    path = _cache_dir() / f"parser-{key}.json"
    try:
        blob = _decode(json.loads(path.read_text("utf-8")))
        return Lark._load_from_dict(blob["data"], blob["memo"], postlex=_Continuation())
    except Exception:  # no cache yet, or unreadable: build the tables (about 70 ms) and save them
        pass
    parser = Lark(text, postlex=_Continuation(), **_OPTIONS)
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
    if b"\0" in raw:
        raise SpecError([Diagnostic("NN002", f"'{name}' is a binary file, not a .nn spec")])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        before = raw[:e.start]
        line = before.count(b"\n") + 1
        column = e.start - (before.rfind(b"\n") + 1) + 1
        span = Span(name, line, column, line, column + 1)
        raise SpecError([Diagnostic("NN002", f"invalid UTF-8 byte 0x{raw[e.start]:02x}", span,
                                    help="save the file as UTF-8")],
                        {name: raw.decode("utf-8", "replace")}) from None


def parse(source: str, file: str = "<string>") -> ast.Module:
    """Parse spec text into a syntax tree, or raise SpecError (the first syntax error)."""
    if len(source) > MAX_SOURCE_BYTES:
        raise SpecError([Diagnostic("NN002", f"'{file}' is longer than {MAX_SOURCE_BYTES:,} characters",
                                    help="a network spec is a few kilobytes; is this the right file?")])
    if "\0" in source:
        raise SpecError([Diagnostic("NN002", f"'{file}' contains NUL characters; it is not a .nn spec")])
    if source.startswith("\ufeff"):  # a byte-order mark, as some editors write: not part of the text
        source = source[1:]
    _check_nesting(source, file)
    try:
        tree = _parser().parse(source, start="start")
    except UnexpectedInput as e:
        raise SpecError([_syntax_diagnostic(e, source, file)], {file: source}) from None
    _check_depth(tree, source, file)
    try:
        return _ToAst(file, source).transform(tree)
    except VisitError as e:  # lark wraps what a callback raises
        if isinstance(e.orig_exc, SpecError):
            e.orig_exc.sources.setdefault(file, source)
            raise e.orig_exc from None
        if isinstance(e.orig_exc, RecursionError):
            raise SpecError([_too_deep(Span(file, 1, 1, 1, 1))], {file: source}) from None
        raise
    except RecursionError:
        raise SpecError([_too_deep(Span(file, 1, 1, 1, 1))], {file: source}) from None


def parse_expr(source: str, file: str = "<value>"):
    """One expression on its own (a `--set` value such as `(2, 2, 2, 2)`), or SpecError."""
    if len(source) > 10_000 or "\0" in source or "\n" in source:
        raise SpecError([Diagnostic("NN015", "a value is one short line of text")])
    _check_nesting(source, file)
    try:
        tree = _parser().parse(source, start="expr")
    except UnexpectedInput as e:
        raise SpecError([_syntax_diagnostic(e, source, file)], {file: source}) from None
    _check_depth(tree, source, file)
    try:
        return _ToAst(file, source).transform(tree)
    except VisitError as e:
        if isinstance(e.orig_exc, SpecError):
            raise e.orig_exc from None
        raise


def parse_file(path: str | os.PathLike) -> ast.Module:
    return parse(read_source(path), str(path))


# ---- hostile input guards ------------------------------------------------------------------

_OPEN = {"{": "}", "(": ")", "[": "]"}
_SCAN = re.compile(r'#[^\n]*|"[^"\n]*"|\'[^\'\n]*\'|[{}()\[\]\n]')


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
        elif ch in ")}]":
            depth = max(0, depth - 1)


def _too_deep(span: Span) -> Diagnostic:
    return Diagnostic("NN002", f"the spec is nested more than {MAX_TREE_DEPTH} levels deep", span,
                      help="split long expressions and deep groups into block definitions")


def _check_depth(tree: Tree, source: str, file: str) -> None:
    """Long operator chains (`-----1`, `1+1+…+1`) nest the tree without brackets; the
    transformation and the expander recurse, so refuse them here, iteratively."""
    stack = [(tree, 1)]
    while stack:
        t, d = stack.pop()
        if d > MAX_TREE_DEPTH:
            tok = next(t.scan_values(lambda v: isinstance(v, Token)), None)
            line, col = (tok.line, tok.column) if tok is not None else (1, 1)
            raise SpecError([_too_deep(Span(file, line, col, line, col + 1))], {file: source})
        for c in t.children:
            if type(c) is Tree:
                stack.append((c, d + 1))


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

def _describe_expected(expected) -> str:
    words = sorted({_TOKEN_WORDS.get(t, f"'{t.lower()}'" if t.isalpha() else t) for t in expected})
    if len(words) > 6:
        words = words[:6] + ["…"]
    return ", ".join(words)


def _syntax_diagnostic(e: UnexpectedInput, source: str, file: str) -> Diagnostic:
    line = max(1, getattr(e, "line", 1) or 1)
    column = max(1, getattr(e, "column", 1) or 1)
    expected = set(getattr(e, "expected", None) or getattr(e, "allowed", None) or ())
    if isinstance(e, UnexpectedCharacters):
        pos = e.pos_in_stream
        ch = source[pos] if 0 <= pos < len(source) else "?"
        message = f"unexpected character {ch!r}"
        span = Span(file, line, column, line, column + 1)
        if len(expected) > 6:  # after a stray character, a long list of tokens helps no one
            expected = set()
        hint = _char_hint(ch, source, pos)
        late = _late_label(ch, source, pos)
        if late is not None:  # `conv(8, 3) b: conv(8, 3)`: a label after other items
            name = late
            span = Span(file, line, column - len(name), line, column + 1)
            return Diagnostic("NN001", f"the label '{name}:' is not at the start of a statement", span,
                              help=f"a label names the first item of its statement; start a new line "
                                   f"before `{name}:`")
    elif isinstance(e, UnexpectedEOF) or (isinstance(e, UnexpectedToken) and e.token.type == "$END"):
        lines = source.split("\n")  # one line model everywhere: only \n ends a line
        if len(lines) > 1 and not lines[-1]:
            lines.pop()
        line, column = len(lines), len(lines[-1].rstrip("\r")) + 1
        span = Span(file, line, column, line, column + 1)
        message = "unexpected end of file"
        opener = _unclosed(source)
        hint = f"the '{opener[0]}' opened at {opener[1]}:{opener[2]} is never closed" if opener else None
    else:
        tok = e.token
        text = str(tok)
        pos = tok.start_pos if tok.start_pos is not None else 0
        if tok.type == "LSQB" and "LSQB" not in expected:  # `[3, 5]`: brackets only index
            return Diagnostic("NN001", "unexpected character '['", Span(file, line, column, line, column + 1),
                              help=_char_hint("[", source, pos))
        if tok.type == "_NL":
            message = "unexpected end of line"
            span = Span(file, line, column, line, column + 1)
        else:
            message = f"unexpected {text!r}"
            span = Span(file, line, column, line, column + max(1, len(text.splitlines()[0] if text else "")))
        hint = _token_hint(tok, expected, source, pos)
    # LALR merges look-aheads: don't offer a closing bracket that nothing opened, nor a
    # line break at the start of a line
    at = _offset(source, line, column)
    if not _line_before(source, at).strip():
        expected.discard("_NL")
    opened = {o for o, *_ in _open_stack(source[:at])}
    expected -= {c for o, c in (("{", "RBRACE"), ("(", "RPAR")) if o not in opened}
    if expected:
        message += f"; expected {_describe_expected(expected)}"
    return Diagnostic("NN001", message, span, help=hint)


def _offset(source: str, line: int, column: int) -> int:
    pos = 0
    for _ in range(line - 1):
        nl = source.find("\n", pos)
        if nl < 0:
            return len(source)
        pos = nl + 1
    return min(len(source), pos + column - 1)


def _line_before(source: str, pos: int) -> str:
    return source[source.rfind("\n", 0, pos) + 1:pos]


def _in_train(source: str, pos: int) -> bool:
    stack = _open_stack(source[:pos])
    braces = [o for o in stack if o[0] == "{"]
    if not braces:
        return False
    _, line, col = braces[0]
    start = _offset(source, line, col)
    return _line_before(source, start).strip() == "train"


def _token_hint(tok: Token, expected: set, source: str, pos: int) -> str | None:
    before = _line_before(source, pos)
    text = str(tok)
    if tok.type == "EQUAL" and re.fullmatch(r"\s*[A-Za-z_]\w*\s*", before):
        if _in_train(source, pos):
            return f"train settings are written `key value`, e.g. `{before.strip()} …` without '='"
        return f"name a layer with 'name:', not '=': `{before.strip()}: {source[pos + 1:].split(chr(10))[0].strip()}`"
    if tok.type in ("NAME", "INT") and re.fullmatch(r"x\d*", text) and re.search(r"\d\s+$", before):
        return "write shapes without spaces, e.g. `3x224x224`"
    if tok.type in ("INT", "SHAPE") and re.search(r"\d\s*x\s+$", before):
        return "write shapes without spaces, e.g. `3x224x224`"
    if {"COMMA", "RPAR"} <= expected and tok.type not in ("COMMA", "RPAR"):
        opener = _open_stack(source[:pos])
        where = f" opened at {opener[-1][1]}:{opener[-1][2]}" if opener and opener[-1][0] == "(" else ""
        if tok.type == "_NL":
            return f"close the '('{where} with ')'"
        return f"separate arguments with ',', or close the '('{where} with ')'"
    if tok.type == "RBRACE" and not any(o == "{" for o, *_ in _open_stack(source[:pos])):
        return "this '}' closes nothing"
    if tok.type == "RPAR" and not any(o == "(" for o, *_ in _open_stack(source[:pos])):
        return "this ')' closes nothing"
    return None


def _char_hint(ch: str, source: str, pos: int) -> str | None:
    if ch in "[]":
        return "use parentheses for tuples: `kernel=(3, 5)`"
    if ch == ":":
        if _in_train(source, pos):
            return "train settings are written `key value`, without ':'"
        return "a layer name is a letter or '_' followed by letters, digits or '_'"
    if ch == "\r":
        return "use \\n or \\r\\n line endings"
    if ch.isalpha() or ch.isdigit():
        return "names use ASCII letters, digits and '_'"
    return None


_LATE_LABEL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*(?:\{[^{}\n]*\}[A-Za-z0-9_]*)*)[ \t]*$")


def _late_label(ch: str, source: str, pos: int) -> str | None:
    """The label before a ':' that follows other items of its statement, else None."""
    if ch != ":" or _in_train(source, pos):
        return None
    before = _line_before(source, pos)
    m = _LATE_LABEL.search(before)
    if m is None:
        return None
    rest = before[:m.start()].rstrip()
    if not rest or rest.endswith("{") or rest.endswith("(") or rest.endswith(","):
        return None
    return m.group(1)


def _open_stack(source: str) -> list:
    """The brackets still open at the end of `source`: (char, line, column), outermost first."""
    stack = []
    line, line_start = 1, 0
    for m in _SCAN.finditer(source):
        ch = m.group()
        if ch == "\n":
            line, line_start = line + 1, m.end()
        elif ch in _OPEN:
            stack.append((ch, line, m.start() - line_start + 1))
        elif ch in ")}]" and stack:
            stack.pop()
    return stack


def _unclosed(source: str):
    stack = _open_stack(source)
    return stack[-1] if stack else None


# ---- parse tree -> syntax tree -------------------------------------------------------------

class _Seq(tuple):
    """A parenthesised or braced list, remembering where its brackets are (for spans)."""
    span: Span


def _seq(items, span: Span) -> _Seq:
    out = _Seq(i for i in items if i is not None)
    out.span = span
    return out


def _merges(items: list, join) -> list:
    """`mul { … }`: a merge op of the registry (category "merge") called without arguments and
    followed by a group is that merge of the group's statements. (`add` and `concat` are also
    keywords of the grammar; any other merge the registry defines needs no grammar change.)"""
    from .ops import OPS
    out = []
    for item in items:
        prev = out[-1] if out else None
        if (isinstance(item, ast.Group) and isinstance(prev, ast.Call) and not prev.args
                and not prev.kwargs and prev.span == prev.name_span
                and getattr(OPS.get(prev.name), "category", None) == "merge"):
            out[-1] = ast.Merge(prev.name, item.body, join(prev, item))
        else:
            out.append(item)
    return out


class _ToAst(Transformer):
    """Parse tree -> `nnspec.ast`. Spans come from the tokens: keywords and brackets are kept
    in the tree for that (see the grammar), and every callback joins its first and last part."""

    def __init__(self, file: str, source: str):
        super().__init__(visit_tokens=False)  # no token callbacks: skip lark's per-token lookup
        self.file = file
        self.source = source

    def _join(self, first, last) -> Span:
        """The span from the start of `first` to the end of `last` (tokens or AST nodes)."""
        a = first if type(first) in (Token, Span) else first.span
        b = last if type(last) in (Token, Span) else last.span
        return Span(self.file, a.line, a.column, b.end_line, b.end_column)

    def _tok(self, tok: Token) -> Span:
        return Span(self.file, tok.line, tok.column, tok.end_line, tok.end_column)

    def _error(self, message: str, span: Span, help: str | None = None, code: str = "NN003"):
        raise SpecError([Diagnostic(code, message, span, help=help)], {self.file: self.source})

    # top level
    def start(self, items):
        items = [i for i in items if i is not None]
        kinds = {k: tuple(i for i in items if isinstance(i, k))
                 for k in (ast.Header, ast.InputDecl, ast.BlockDef, ast.Stmt, ast.Train, ast.Use)}
        return ast.Module(self.file, self.source, kinds[ast.Header], kinds[ast.InputDecl],
                          kinds[ast.BlockDef], kinds[ast.Stmt], kinds[ast.Train], kinds[ast.Use])

    def use(self, c):
        return ast.Use(str(c[1])[1:-1], self._join(c[0], c[1]))

    def header(self, c):
        kw, name, params = c
        return ast.Header(str(name), tuple(params or ()), self._join(kw, params if params is not None else name))

    def params(self, c):
        return _seq(c[1:-1], self._join(c[0], c[-1]))

    def param(self, c):
        name, default = c
        return ast.Param(str(name), default, self._join(name, default if default is not None else name))

    def input_decl(self, c):
        return ast.InputDecl(c[1], self._join(c[0], c[1]))

    def block_def(self, c):
        kw, name, params, body = c
        return ast.BlockDef(str(name), tuple(params or ()), tuple(body), self._join(kw, body))

    def body(self, c):
        return _seq(c[1:-1], self._join(c[0], c[-1]))

    # statements
    def stmt(self, c):
        label, *items, expect = c
        items = _merges(items, self._join)
        label_span = parts = None
        if label is not None:
            name = str(label).rstrip(" \t:")
            label_span = Span(self.file, label.line, label.column, label.line, label.column + len(name))
            if "{" in name:
                parts = self._label_parts(name, label)
            label = name
        first = label_span or items[0].span
        last = (expect or items[-1]).span
        span = Span(self.file, first.line, first.column, last.end_line, last.end_column)
        return ast.Stmt(label, label_span, tuple(items), expect, span, parts)

    def _label_parts(self, name: str, tok: Token) -> tuple:
        """`denselayer{i + 1}` -> ("denselayer", <i + 1>): each `{…}` parsed as an expression,
        its spans placed where it is written."""
        parts, at = [], 0
        for m in re.finditer(r"\{([^{}]*)\}", name):
            if m.start() > at:
                parts.append(name[at:m.start()])
            at = m.end()
            inner = m.group(1)
            col0 = tok.column + m.start(1) - 1  # columns of the inner text start at col0 + 1
            here = Span(self.file, tok.line, col0, tok.line, col0 + len(inner) + 2)
            if not inner.strip():
                self._error("empty `{}` in a label", here, "write an expression inside: `layer{i + 1}:`",
                            code="NN001")
            try:
                tree = _parser().parse(inner, start="expr")
            except UnexpectedInput as e:
                d = _syntax_diagnostic(e, inner, self.file)
                span = Span(self.file, tok.line, col0 + d.span.column, tok.line, col0 + d.span.end_column)
                self._error(f"in the label '{name}': {d.message}", span, d.help, code="NN001")
            _check_depth(tree, self.source, self.file)
            parts.append(_ShiftedAst(self.file, self.source, tok.line - 1, col0).transform(tree))
        if at < len(name):
            parts.append(name[at:])
        return tuple(parts)

    def call(self, c):
        name, args = c
        if args is None:
            return ast.Call(str(name), (), (), self._tok(name), self._tok(name))
        pos, kw, span = args
        return ast.Call(str(name), pos, kw, self._join(name, span), self._tok(name))

    def group(self, c):
        return ast.Group(tuple(c[0]), c[0].span)

    def add(self, c):
        return ast.Merge("add", tuple(c[1]), self._join(c[0], c[1]))

    def concat(self, c):
        return ast.Merge("concat", tuple(c[1]), self._join(c[0], c[1]))

    def repeat(self, c):
        kw, count, var, body = c
        return ast.Repeat(count, str(var) if var is not None else None, tuple(body), self._join(kw, body))

    def cond(self, c):
        kw, test, then, orelse = c
        span = self._join(kw, orelse if orelse is not None else then)
        if isinstance(orelse, ast.Cond):
            orelse = (ast.Stmt(None, None, (orelse,), None, orelse.span),)
        elif orelse is not None:
            orelse = tuple(orelse)
        return ast.Cond(test, tuple(then), orelse, span)

    def args(self, c):
        items = c[1:-1]
        pos = tuple(a for a in items if a is not None and not isinstance(a, ast.Kwarg))
        kw = tuple(a for a in items if isinstance(a, ast.Kwarg))
        seen_kw = False
        for a in items:
            if isinstance(a, ast.Kwarg):
                seen_kw = True
            elif a is not None and seen_kw:
                self._error("positional argument after a keyword argument", a.span,
                            "put positional arguments first: `conv(64, 3, pad=1)`", code="NN001")
        return pos, kw, self._join(c[0], c[-1])

    def kwarg(self, c):
        return ast.Kwarg(str(c[0]), c[1], self._join(c[0], c[1]))

    def shape(self, c):
        if c[0].type == "NAME":
            name, field = c
            if field is None:
                span = self._tok(name)
                return ast.ShapeExpr((ast.Var(str(name), span),), span)
            span = self._join(name, field)
            return ast.ShapeExpr((ast.Attr(str(name), str(field), span),), span)
        if len(c) == 1:
            tok = c[0]
            span = self._tok(tok)
            dims = tuple(ast.Const(self._int(d, span), span) for d in str(tok).split("x"))
            return ast.ShapeExpr(dims, span)
        return ast.ShapeExpr(tuple(d for d in c[1:-1] if d is not None), self._join(c[0], c[-1]))

    def train(self, c):
        return ast.Train(tuple(e for e in c[2:-1] if e is not None), self._join(c[0], c[-1]))

    def entry(self, c):
        key, *rest = c
        rest = [a for a in rest if a is not None]
        pos = tuple(a for a in rest if not isinstance(a, ast.Kwarg))
        kw = tuple(a for a in rest if isinstance(a, ast.Kwarg))
        return ast.TrainEntry(str(key), pos, kw, self._join(key, rest[-1] if rest else key), self._tok(key))

    # expressions
    def _int(self, text: str, span: Span) -> int:
        if len(text.lstrip("0")) > MAX_INT_DIGITS:
            self._error(f"integer literal with {len(text)} digits is out of range", span,
                        "numbers in a spec must be below 10^18")
        return int(text)

    def int_(self, c):
        span = self._tok(c[0])
        return ast.Const(self._int(str(c[0]), span), span)

    def float_(self, c):
        span = self._tok(c[0])
        text = str(c[0])
        if len(text) > 64:
            self._error("number literal is too long", span)
        value = float(text)
        if value == float("inf"):
            self._error(f"number {text} is out of range", span)
        return ast.Const(value, span)

    def string(self, c):
        return ast.Const(str(c[0])[1:-1], self._tok(c[0]))

    def true(self, c):
        return ast.Const(True, self._tok(c[0]))

    def false(self, c):
        return ast.Const(False, self._tok(c[0]))

    def var(self, c):
        return ast.Var(str(c[0]), self._tok(c[0]))

    def attr(self, c):
        return ast.Attr(str(c[0]), str(c[1]), self._join(c[0], c[1]))

    def call_expr(self, c):
        name, args = c
        pos, kw, span = args
        return ast.CallExpr(str(name), pos, kw, self._join(name, span))

    def index(self, c):
        return ast.Index(c[0], c[2], self._join(c[0], c[3]))

    def tuple_(self, c):
        return ast.TupleExpr(tuple(x for x in c[1:-1] if x is not None), self._join(c[0], c[-1]))

    def sign(self, c):
        if str(c[0]) == "+":
            return c[1]
        return ast.Unary("-", c[1], self._join(c[0], c[1]))

    def not_(self, c):
        return ast.Unary("not", c[1], self._join(c[0], c[1]))

    def binop(self, c):
        return ast.Binary(str(c[1]), c[0], c[2], self._join(c[0], c[2]))

    compare = binop

    def pow_(self, c):
        return ast.Binary("**", c[0], c[1], self._join(c[0], c[1]))

    def or_(self, c):
        return ast.Binary("or", c[0], c[1], self._join(c[0], c[1]))

    def and_(self, c):
        return ast.Binary("and", c[0], c[1], self._join(c[0], c[1]))

    def ifexp(self, c):
        then, _if, test, orelse = c
        return ast.IfExpr(then, test, orelse, self._join(then, orelse))


class _ShiftedAst(_ToAst):
    """For an expression parsed on its own (inside a label): token positions are moved by
    `line0` lines and, on the first line, `col0` columns."""

    def __init__(self, file: str, source: str, line0: int, col0: int):
        super().__init__(file, source)
        self.line0, self.col0 = line0, col0

    def _tok(self, tok: Token) -> Span:
        return Span(self.file, tok.line + self.line0, tok.column + (self.col0 if tok.line == 1 else 0),
                    tok.end_line + self.line0, tok.end_column + (self.col0 if tok.end_line == 1 else 0))

    def _join(self, first, last) -> Span:
        return super()._join(self._tok(first) if type(first) is Token else first,
                             self._tok(last) if type(last) is Token else last)
