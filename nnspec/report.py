"""Analysis -> table rows and totals (plain data), and the formats: rich, markdown, json, csv.

The JSON form is a contract other tools parse (docs/json.md):
{"network", "input", "batch", "dtype", "layers": [{"name", "op", "shape", "params",
"trainable", "macs", "activations", "rf"}, …], "totals": {"params", "trainable", "buffers",
"macs", "activations", "param_bytes", "forward_bytes", "train_bytes", "saved_bytes"}}
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import sys
from dataclasses import dataclass

from .analysis import DTYPE_BYTES, Analysis, LayerStats
from .ops import shape_str

JSON_VERSION = 1


@dataclass(frozen=True, slots=True)
class Row:
    name: str
    op: str          # summary such as "conv 3x3/1 p1", or the block name of a collapsed group
    shape: tuple
    params: int
    trainable: int
    buffers: int
    macs: int
    activations: int  # output elements per sample (a collapsed group: the sum of its layers)
    rf: int | None
    layers: int = 1   # leaf layers in this row


def _rf(s: LayerStats) -> int | None:
    return max(s.rf) if s.rf else None


def rows(an: Analysis, depth: int | None = None) -> list[Row]:
    """One row per layer; with `depth`, layers deeper than `depth` name levels are folded
    into one row per group (`layer1` for depth 1, `layer1.0` for depth 2)."""
    out: list[Row] = []
    for s in an.layers[1:]:
        nd = s.node
        label = nd.opdef.label(nd.attrs)
        row = Row(nd.name, label, nd.shape, s.params, s.trainable, s.buffers, s.macs,
                  s.activations, _rf(s))
        parts = nd.name.split(".")
        if depth is None or len(parts) <= depth:
            out.append(row)
            continue
        prefix = ".".join(parts[:depth])
        block = next((f.block for f in nd.chain if f.instance == prefix), "group")
        if out and out[-1].name == prefix and out[-1].layers > 0 and out[-1].op == block:
            g = out[-1]
            out[-1] = Row(prefix, block, nd.shape, g.params + s.params, g.trainable + s.trainable,
                          g.buffers + s.buffers, g.macs + s.macs, g.activations + s.activations,
                          row.rf, g.layers + 1)
        else:
            out.append(Row(prefix, block, nd.shape, s.params, s.trainable, s.buffers, s.macs,
                           s.activations, row.rf, 1))
    return out


def to_dict(an: Analysis) -> dict:
    t = an.totals
    return {
        "network": an.graph.name,
        "input": list(an.graph.input.shape),
        "batch": an.batch,
        "dtype": an.dtype,
        "layers": [{"name": s.node.name, "op": s.node.op, "shape": list(s.node.shape),
                    "params": s.params, "trainable": s.trainable, "macs": s.macs,
                    "activations": s.activations, "rf": _rf(s)} for s in an.layers[1:]],
        "totals": {"params": t.params, "trainable": t.trainable, "buffers": t.buffers,
                   "macs": t.macs, "activations": t.activations, "param_bytes": t.param_bytes,
                   "forward_bytes": t.forward_bytes, "train_bytes": t.train_bytes,
                   "saved_bytes": t.saved_bytes},
    }


def to_json(an: Analysis) -> str:
    """Exact integers however large (docs/json.md)."""
    with all_digits():
        return json.dumps(to_dict(an), indent=2)


@contextlib.contextmanager
def all_digits():
    """Lift Python's 4,300-digit guard on int -> str while exact figures are written: a
    spec's numbers are bounded by its layer count (2^1100 channels has 332 digits)."""
    old = sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else None
    if old is not None:
        sys.set_int_max_str_digits(0)
    try:
        yield
    finally:
        if old is not None:
            sys.set_int_max_str_digits(old)


# ---- numbers for people: exact integers, huge ones in scientific notation -----------------

EXACT_BELOW = 10 ** 21  # counts up to 999,999,999,999,999,999,999 are written out in full


def sci(x: int, digits: int = 2) -> str:
    """A non-negative integer of any size in scientific notation, without floats (which
    overflow past 1.8e+308): sci(2**1100) == '1.36e+331'."""
    if x < 0:
        return "-" + sci(-x, digits)
    if x < 10 ** (digits + 1):
        return str(x)
    e = int(math.log10(x))  # may be one off for huge x: corrected below
    while 10 ** e > x:
        e -= 1
    while 10 ** (e + 1) <= x:
        e += 1
    scale = 10 ** (e - digits)
    m = (x + scale // 2) // scale  # rounded to digits + 1 significant figures
    if m >= 10 ** (digits + 1):
        m, e = m // 10, e + 1
    text = str(m)
    return f"{text[0]}.{text[1:]}e+{e}"


def count(x: int) -> str:
    """34944 -> '34,944'; past EXACT_BELOW, '1.36e+331' (the JSON keeps every digit)."""
    return f"{x:,}" if abs(x) < EXACT_BELOW else sci(x)


_BYTE_UNITS = ("B", "KB", "MB", "GB", "TB", "PB", "EB")


def human_bytes(b: int) -> str:
    """Powers of 1024, one decimal: '137.6 KB', '1.0 MB' (not '1000.0 KB'); beyond 1000 EB,
    the exact count of bytes in scientific notation. Integer arithmetic until the unit is
    chosen, so no size overflows a float."""
    b = int(b)
    for k, unit in enumerate(_BYTE_UNITS):
        # b / 1024**k < 999.95, in integers: 20·b < 19999·1024**k
        if 20 * b < 19999 * 1024 ** k:
            return f"{b} B" if k == 0 else f"{b / 1024 ** k:.1f} {unit}"
    return f"{sci(b)} B"


def human_count(x: int) -> str:
    for unit, size in (("G", 10 ** 9), ("M", 10 ** 6), ("K", 10 ** 3)):
        if x >= size:
            return f"{x / size:.1f}{unit}" if x < 1000 * 10 ** 12 else sci(x)
    return str(x)


MAX_CELL = 80  # characters of a name, op or shape shown in a table; the middle is elided


def clip(text: str, width: int = MAX_CELL) -> str:
    """'a_very…_long_name': table cells stay bounded whatever a spec names its layers."""
    if len(text) <= width:
        return text
    keep = width - 1
    return text[:keep - keep // 2] + "…" + text[len(text) - keep // 2:]


def shape_cell(shape) -> str:
    return "?" if shape is None else "x".join(str(d) if d < EXACT_BELOW else sci(d) for d in shape)


COLUMNS = ("name", "op", "output", "params", "MACs", "memory", "RF")


def _cells(r: Row, an: Analysis) -> tuple[str, ...]:
    mem = r.activations * an.batch * DTYPE_BYTES[an.dtype]
    return (clip(r.name), clip(r.op) + (f" ({r.layers} layers)" if r.layers > 1 else ""),
            clip(shape_cell(r.shape)), count(r.params) if r.params else "-",
            count(r.macs) if r.macs else "-", human_bytes(mem),
            "-" if r.rf is None else count(r.rf))


def totals_lines(an: Analysis) -> list[str]:
    t = an.totals
    size = DTYPE_BYTES[an.dtype]
    lines = [
        f"parameters      {count(t.params)}"
        + (f" ({human_count(t.params)})" if t.params < EXACT_BELOW else "") + f", trainable {count(t.trainable)}"
        + (f", plus {count(t.buffers)} buffer values (running statistics, not trained)" if t.buffers else ""),
        f"MACs            {count(t.macs)} per sample (FLOPs = 2 x MACs = {count(2 * t.macs)}); "
        f"conv/linear multiply-accumulates, bias excluded",
        f"parameter size  {human_bytes(t.param_bytes)} ({an.dtype}, {size} bytes per value)",
        f"forward memory  {human_bytes(t.forward_bytes)} for batch {an.batch} "
        f"({count(t.activations)} activation values per sample, input included)",
        f"training memory {human_bytes(t.train_bytes)} estimated, the step's peak (at the {clip(t.peak_at, MAX_CELL + 12)})",
        f"peak made of    parameters {human_bytes(t.param_bytes)} + {t.optimizer} state "
        f"{human_bytes(t.train_bytes - t.param_bytes - t.peak_bytes)} ({t.optimizer_slots} per parameter) + "
        f"gradients so far {human_bytes(t.peak_parts[2])} + kept activations still alive "
        f"{human_bytes(t.peak_parts[0])} + activation gradients {human_bytes(t.peak_parts[1])}",
        f"backward keeps  {human_bytes(t.saved_bytes)} in all for batch {an.batch} "
        f"({count(t.kept)} activation values per sample)",
    ]
    return lines


def to_markdown(an: Analysis, depth: int | None = None) -> str:
    out = io.StringIO()
    out.write(f"**{an.graph.name}** — input {shape_str(an.graph.input.shape)}, batch {an.batch}, "
              f"{an.dtype}\n\n")
    out.write("| " + " | ".join(COLUMNS) + " |\n")
    out.write("|" + "|".join(["---", "---", "---", "---:", "---:", "---:", "---:"]) + "|\n")
    for r in rows(an, depth):
        cells = list(_cells(r, an))
        cells[0] = f"`{cells[0]}`"
        out.write("| " + " | ".join(cells) + " |\n")
    out.write("\n" + "\n".join(f"- {line}" for line in totals_lines(an)) + "\n")
    return out.getvalue()


def to_csv(an: Analysis, depth: int | None = None) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    with all_digits():
        _csv_rows(w, an, depth)
    return out.getvalue()


def _csv_rows(w, an: Analysis, depth: int | None) -> None:
    w.writerow(["name", "op", "shape", "params", "trainable", "buffers", "macs", "activations", "rf"])
    for r in rows(an, depth):
        w.writerow([r.name, r.op, shape_str(r.shape), r.params, r.trainable, r.buffers, r.macs,
                    r.activations, "" if r.rf is None else r.rf])


def title(an: Analysis) -> str:
    return f"{an.graph.name} — input {shape_str(an.graph.input.shape)}, batch {an.batch}, {an.dtype}"


def to_text(an: Analysis, depth: int | None = None) -> str:
    """Fixed-width plain text (no colour): what golden tests compare."""
    table = [COLUMNS] + [_cells(r, an) for r in rows(an, depth)]
    widths = [max(map(len, column)) for column in zip(*table)]
    line = "  ".join(f"{{:{'>' if i >= 3 else '<'}{w}}}" for i, w in enumerate(widths)).format
    lines = [title(an), line(*COLUMNS).rstrip(), "  ".join("-" * w for w in widths)]
    lines += [line(*row).rstrip() for row in table[1:]]
    lines.append("")
    lines.extend(totals_lines(an))
    return "\n".join(lines) + "\n"


RICH_MAX_ROWS = 1000  # rich lays out ~1 ms a row: above this, the plain text table (see cli)


def rich_width(an: Analysis, depth: int | None = None) -> int:
    """Columns the rich table needs so that no cell is cut or wrapped."""
    widths = [len(c) for c in COLUMNS]
    for r in rows(an, depth):
        for i, c in enumerate(_cells(r, an)):
            if len(c) > widths[i]:
                widths[i] = len(c)
    return sum(widths) + 2 * len(COLUMNS)


def to_rich(an: Analysis, depth: int | None = None):
    """A rich Table renderable (rich is imported here only). Cells are plain Text, never
    markup: a name is shown as written."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(title(an)), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for i, c in enumerate(COLUMNS):  # never wrap or cut a cell: a number must be read whole
        table.add_column(c, justify="right" if i >= 3 else "left", no_wrap=True)
    for r in rows(an, depth):
        table.add_row(*map(Text, _cells(r, an)), style="dim" if not r.params and not r.macs else None)
    return table
