"""Editing a spec file in place, one value at a time, keeping every other byte: what
`nnspec lr-find --write` uses to put the chosen rate into the train section's optimizer.

The edit is located from the syntax tree's spans (lines and columns of the parsed text, only
`\\n` ending a line), applied to the text the file holds, checked by parsing the result (the
optimizer must now have exactly that rate, nothing else may have changed in the train
section), and written atomically (a temporary file in the same folder, renamed over the
spec, its permissions kept).

>>> import nnspec
>>> text = "input 4\\nlinear(2)\\ntrain {\\n  optimizer sgd(lr=0.1, momentum=0.9)  # tuned\\n}\\n"
>>> print(with_lr(nnspec.loads(text).graph, 0.03), end="")
input 4
linear(2)
train {
  optimizer sgd(lr=0.03, momentum=0.9)  # tuned
}
"""

from __future__ import annotations

import dataclasses
import re

from .. import ast
from ..errors import line_starts

BOM = "\ufeff"


class EditError(Exception):
    """An edit that cannot be made safely, in one line."""


def format_lr(x: float) -> str:
    """A rate with two significant digits, as a spec writes it.

    >>> format_lr(0.024201), format_lr(1.23e-5), format_lr(3.0)
    ('0.024', '1.2e-5', '3')
    """
    text = f"{x:.2g}"
    return re.sub(r"e([+-])0*(\d)", lambda m: "e" + ("-" if m.group(1) == "-" else "") + m.group(2), text)


def _offset(source: str, span, end: bool = False) -> int:
    starts = line_starts(source)
    line, col = (span.end_line, span.end_column) if end else (span.line, span.column)
    return starts[line - 1] + col - 1


def lr_edit(graph, value: str) -> tuple[int, int, str]:
    """(start, end, replacement) in `graph.source` that makes the train section's optimizer
    run at the rate `value` (a number's text): the lr argument replaced where it is written
    as a number, inserted where the optimizer has none, or an `optimizer sgd(lr=…)` line
    added (the trainer's default optimizer) where the train section has no optimizer."""
    from ..config import OPTIMIZERS
    m = graph.module
    source = graph.source
    if not m.trains:
        raise EditError(f"{graph.file} has no train section to write the rate into; add "
                        f"`train {{ optimizer sgd(lr={value}) }}` (one entry per line)")
    train = m.trains[0]
    if train.span.file != graph.file:
        raise EditError(f"the train section is in {train.span.file}, not {graph.file}")
    entry = next((e for e in train.entries if e.key == "optimizer"), None)
    if entry is None:
        if not train.entries:
            raise EditError(f"{graph.file}:{train.span.line}: the train section is empty; add "
                            f"`optimizer sgd(lr={value})` to it")
        last = train.entries[-1]
        first = train.entries[0]
        starts = line_starts(source)
        indent_start = starts[first.span.line - 1]
        indent = source[indent_start:_offset(source, first.span)]
        if indent.strip() or last.span.end_line == train.span.end_line:
            raise EditError(f"{graph.file}:{train.span.line}: the train section is not one entry per "
                            f"line; add `optimizer sgd(lr={value})` by hand")
        eol = source.find("\n", _offset(source, last.span, end=True))
        newline = "\r\n" if source[eol - 1:eol] == "\r" else "\n"  # the file's own line ends
        return eol + 1, eol + 1, f"{indent}optimizer sgd(lr={value}){newline}"
    if len(entry.args) != 1 or entry.kwargs:
        raise EditError(f"{entry.span}: the optimizer entry is not one choice")
    choice = entry.args[0]
    where = f"{choice.span.file}:{choice.span.line}:{choice.span.column}"
    if isinstance(choice, ast.Var):
        end = _offset(source, choice.span, end=True)
        return end, end, f"(lr={value})"
    if not isinstance(choice, ast.CallExpr) or choice.name not in OPTIMIZERS:
        raise EditError(f"{where}: the optimizer is not written as a choice like adam(lr=…)")
    names = [a.name for a in OPTIMIZERS[choice.name]]
    lr_expr = next((k.value for k in choice.kwargs if k.name == "lr"), None)
    if lr_expr is None and "lr" in names and names.index("lr") < len(choice.args):
        lr_expr = choice.args[names.index("lr")]
    if lr_expr is not None:
        if not (isinstance(lr_expr, ast.Const) and isinstance(lr_expr.value, (int, float))
                and not isinstance(lr_expr.value, bool)):
            raise EditError(f"{lr_expr.span}: the learning rate is an expression, not a number; "
                            f"--write replaces only a number (edit it, or pass --set for the "
                            f"network parameter it reads)")
        return _offset(source, lr_expr.span), _offset(source, lr_expr.span, end=True), value
    start = _offset(source, choice.span)
    paren = source.find("(", start + len(choice.name))
    sep = ", " if choice.args or choice.kwargs else ""
    if choice.args:
        raise EditError(f"{where}: the optimizer has positional values but no learning rate")
    at = paren + 1
    while source[at] in " \t":  # `sgd( momentum=0.9 )` -> `sgd( lr=…, momentum=0.9 )`
        at += 1
    return at, at, f"lr={value}{sep}"


def with_lr(graph, lr: float) -> str:
    """The spec's text with the optimizer's rate set to `lr` (two significant digits),
    every other character unchanged; checked by parsing it again."""
    from ..errors import SpecError
    from ..spec import loads
    value = format_lr(lr)
    start, end, text = lr_edit(graph, value)
    new = graph.source[:start] + text + graph.source[end:]
    try:
        after = loads(new, graph.file, **graph.args).graph.train
    except SpecError as e:  # our edit broke the spec: never write it
        raise EditError(f"the edited spec does not parse ({e.diagnostics[0].message}); not written") from None
    before = graph.train
    want = float(value)
    got = after.optimizer.options.get("lr") if after.optimizer is not None else None
    same_rest = (dataclasses.replace(after, optimizer=None, spans={})
                 == dataclasses.replace(before, optimizer=None, spans={}))
    same_opt = before.optimizer is None or (after.optimizer.name == before.optimizer.name and {
        k: v for k, v in after.optimizer.options.items() if k != "lr"} == {
        k: v for k, v in before.optimizer.options.items() if k != "lr"})
    if got != want or not same_rest or not same_opt:
        raise EditError("the edit would change more than the learning rate; not written")
    return new


def write_lr(graph, lr: float) -> str:
    """Set the optimizer's rate in the spec file itself (atomically, permissions kept);
    returns the rate as written. The file must still hold the text that was parsed."""
    from ..backends.commands import write_atomic
    path = graph.file
    if path.startswith("<"):
        raise EditError(f"{path}: --write needs a spec file, not standard input")
    new = with_lr(graph, lr)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise EditError(f"cannot read '{path}' again: {e.strerror or e}") from None
    text = raw.decode("utf-8", "replace")
    bom = BOM if text.startswith(BOM) and text[1:] == graph.source else ""
    if text[len(bom):] != graph.source:
        raise EditError(f"'{path}' changed while the sweep ran; not written")
    write_atomic(path, (bom + new).encode("utf-8"))  # keeps the file's permissions
    return format_lr(lr)


__all__ = ["EditError", "format_lr", "lr_edit", "with_lr", "write_lr"]
