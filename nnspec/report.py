"""Analysis -> table rows and totals (plain data), and the formats: rich, markdown, json, csv.

The JSON form is a contract other tools parse (docs/json.md):
{"network", "input", "batch", "dtype", "layers": [{"name", "op", "shape", "params",
"trainable", "macs", "activations", "rf"}, …], "totals": {"params", "trainable", "buffers",
"macs", "activations", "param_bytes", "forward_bytes", "train_bytes"}}
"""

from __future__ import annotations

import csv
import io
import json
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
                   "forward_bytes": t.forward_bytes, "train_bytes": t.train_bytes},
    }


def to_json(an: Analysis) -> str:
    return json.dumps(to_dict(an), indent=2)


def human_bytes(b: int) -> str:
    if b >= 10 ** 18:  # beyond 1 EB, and past the float range at 1e308: digits, not floats
        digits = str(int(b))
        return f"{digits[0]}.{digits[1]}e{len(digits) - 1} B"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if b < 999.95 or unit == "TB":  # 1000 KB reads as 1.0 MB, not "1000.0 KB"
            return f"{b:.0f} {unit}" if unit == "B" else f"{b:.1f} {unit}"
        b /= 1024
    raise AssertionError


def human_count(x: int) -> str:
    for unit, size in (("G", 10 ** 9), ("M", 10 ** 6), ("K", 10 ** 3)):
        if x >= size:
            return f"{x / size:.1f}{unit}"
    return str(x)


COLUMNS = ("name", "op", "output", "params", "MACs", "memory", "RF")


def _cells(r: Row, an: Analysis) -> tuple[str, ...]:
    mem = r.activations * an.batch * DTYPE_BYTES[an.dtype]
    return (r.name, r.op + (f" ({r.layers} layers)" if r.layers > 1 else ""), shape_str(r.shape),
            f"{r.params:,}" if r.params else "-", f"{r.macs:,}" if r.macs else "-",
            human_bytes(mem), "-" if r.rf is None else str(r.rf))


def totals_lines(an: Analysis) -> list[str]:
    t = an.totals
    size = DTYPE_BYTES[an.dtype]
    lines = [
        f"parameters      {t.params:,} ({human_count(t.params)}), trainable {t.trainable:,}"
        + (f", plus {t.buffers:,} buffer values (running statistics, not trained)" if t.buffers else ""),
        f"MACs            {t.macs:,} per sample (FLOPs = 2 x MACs = {2 * t.macs:,}); "
        f"conv/linear multiply-accumulates, bias excluded",
        f"parameter size  {human_bytes(t.param_bytes)} ({an.dtype}, {size} bytes per value)",
        f"forward memory  {human_bytes(t.forward_bytes)} for batch {an.batch} "
        f"({t.activations:,} activation values per sample, input included)",
        f"training memory {human_bytes(t.train_bytes)} estimated: parameters + gradients + "
        f"{t.optimizer} state ({t.optimizer_slots} per parameter) + activations kept for backward "
        f"({t.kept:,} per sample) x batch {an.batch}",
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
    w.writerow(["name", "op", "shape", "params", "trainable", "buffers", "macs", "activations", "rf"])
    for r in rows(an, depth):
        w.writerow([r.name, r.op, shape_str(r.shape), r.params, r.trainable, r.buffers, r.macs,
                    r.activations, "" if r.rf is None else r.rf])
    return out.getvalue()


def to_text(an: Analysis, depth: int | None = None) -> str:
    """Fixed-width plain text (no colour): what golden tests compare."""
    table = [COLUMNS] + [_cells(r, an) for r in rows(an, depth)]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    right = {3, 4, 5, 6}
    lines = [f"{an.graph.name} — input {shape_str(an.graph.input.shape)}, batch {an.batch}, {an.dtype}"]
    for k, row in enumerate(table):
        lines.append("  ".join(c.rjust(w) if i in right else c.ljust(w)
                               for i, (c, w) in enumerate(zip(row, widths))).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    lines.extend(totals_lines(an))
    return "\n".join(lines) + "\n"


def to_rich(an: Analysis, depth: int | None = None):
    """A rich Table renderable (rich is imported here only)."""
    from rich import box
    from rich.table import Table

    table = Table(title=f"{an.graph.name} — input {shape_str(an.graph.input.shape)}, "
                        f"batch {an.batch}, {an.dtype}", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    for i, c in enumerate(COLUMNS):  # never wrap or cut a cell: a number must be read whole
        table.add_column(c, justify="right" if i >= 3 else "left", no_wrap=True)
    for r in rows(an, depth):
        table.add_row(*_cells(r, an), style="dim" if not r.params and not r.macs else None)
    return table
