"""Shared test helpers.

Golden files: `golden(name, text)` compares `text` with tests/golden/<name>.out (a name may
contain folders, e.g. "errors/missing_paren"; a name that already has a suffix, such as
"tables/alexnet.md", is used as is). Regenerate every golden file a run touches with

    NNSPEC_UPDATE_GOLDEN=1 python -m pytest tests/

and review the diff before committing it: a golden file is what a person reads.
"""

from __future__ import annotations

import difflib
import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
SPECS = ROOT / "specs"
UPDATE = os.environ.get("NNSPEC_UPDATE_GOLDEN") == "1"


def golden_path(name: str) -> pathlib.Path:
    path = GOLDEN / name
    return path if path.suffix else path.with_name(path.name + ".out")


def check_golden(name: str, text: str) -> None:
    """Assert that `text` equals the golden file `name` (or rewrite it under NNSPEC_UPDATE_GOLDEN=1)."""
    path = golden_path(name)
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text("utf-8") != text:
            path.write_text(text, "utf-8")
        return
    if not path.exists():
        pytest.fail(f"golden file {path.relative_to(ROOT)} is missing: run with NNSPEC_UPDATE_GOLDEN=1")
    want = path.read_text("utf-8")
    if text != want:
        diff = "".join(difflib.unified_diff(want.splitlines(True), text.splitlines(True),
                                            f"{path.relative_to(ROOT)} (golden)", "actual"))
        pytest.fail(f"output differs from {path.relative_to(ROOT)}; review, then regenerate with "
                    f"NNSPEC_UPDATE_GOLDEN=1\n{diff}", pytrace=False)


@pytest.fixture
def golden():
    """The golden-file comparison as a fixture: `golden("errors/x", text)`."""
    return check_golden


def example_spec(op: str, rank: int | None = None) -> str:
    """A spec running one op on its registry example (`nnspec.ops.Example`): `input` and the
    call for a one-input op; for a merge, one path per example input, each made from a common
    input by a 1x1 conv to its channels (and pooling to 1x1 where the example is 1x1).
    `rank`: the example moved to that many spatial axes (`at_rank`)."""
    from nnspec.ops import OPS
    from nnspec.ops.base import _lit, shape_str
    opdef = OPS[op]
    ex = opdef.example
    call = example_call(op, rank)
    if opdef.category != "merge":
        shape = ex.inputs[0] if rank is None else ex.inputs[0][:1] + at_rank(ex.inputs[0][1:], rank)
        return f"input {shape_str(shape)}\n{call}\n"
    first = ex.inputs[0]
    lines = [f"input {shape_str(first)}", f"{op} {{"]
    for shape in ex.inputs:
        path = f"conv({shape[0]}, 1)"
        if len(shape) > 1 and shape[1:] != first[1:]:
            path += f" adaptive_avgpool({_lit(shape[1:])})"
        lines.append(f"  {{ {path} }}")
    return "\n".join(lines + ["}", ""])


def at_rank(sizes: tuple, rank: int) -> tuple:
    """Per-axis values moved to `rank` axes: the last one repeated, or the first `rank` kept."""
    return tuple(sizes[:rank]) + (sizes[-1],) * (rank - len(sizes))


def example_call(op: str, rank: int | None = None) -> str:
    """The op called with its registry example's arguments: `conv(6, 3, stride=2, pad=1)`;
    at `rank`, an argument given per spatial axis of the example has one per axis of that rank."""
    from nnspec.ops import OPS
    from nnspec.ops.base import _lit
    ex = OPS[op].example
    r0 = len(ex.inputs[0]) - 1

    def lit(v):
        return _lit(at_rank(v, rank) if rank is not None and isinstance(v, tuple) and len(v) == r0 else v)
    parts = [lit(v) for v in ex.pos] + [f"{k}={lit(v)}" for k, v in ex.kw.items()]
    return op + (f"({', '.join(parts)})" if parts else "")


def example_ranks(op: str) -> tuple[int, ...]:
    """The spatial ranks (1-D, 2-D, 3-D) an op is tested at: its example's own, and, for an op
    with a per-axis window in the registry (`Op.window`: conv, pooling, up-sampling), every
    other rank at which the registry accepts the example moved there (`example_spec(op, rank)`).
    None stands for the example as written."""
    import nnspec
    from nnspec.errors import SpecError
    from nnspec.ops import OPS
    opdef = OPS[op]
    ex = opdef.example
    if op == "input" or opdef.category == "merge" or len(ex.inputs[0]) < 2:
        return (None,)
    a = opdef.bind(tuple(ex.pos), dict(ex.kw))
    if not isinstance(opdef.window(ex.inputs, opdef.infer(ex.inputs, a), a), tuple):
        return (None,)
    ranks = [None]
    for r in (1, 2, 3):
        if r == len(ex.inputs[0]) - 1:
            continue
        try:
            nnspec.loads(example_spec(op, r))
        except SpecError:
            continue
        ranks.append(r)
    return tuple(ranks)
