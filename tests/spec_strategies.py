"""Hypothesis strategies for random specs, shared by the tests (no torch needed).

`emit_spec` draws networks built to exercise what the PyTorch emitter writes generically and
where in-place decisions matter: ReLU-like layers after convs inside add/concat paths (next
to an identity path, which still reads the input), chains, repeats, `if` on a block
parameter, blocks instantiated with different arguments (one class must be right for all),
channel counts that reach a conv through a parameter, `in.c` or an expression.
"""

from hypothesis import strategies as st

_ACTS = ["relu", "relu", "relu6", "hardtanh", "leaky_relu(0.1)", "sigmoid", "tanh", "elu"]


@st.composite
def _path_ops(draw, cur: str, depth: int, keep: bool):
    """Lines of one chain starting at channels `cur` (a spec expression); with `keep` it ends
    at `cur` again (a path of an add). Returns (lines, channels after)."""
    lines, c = [], cur
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["conv_act", "conv_act", "conv", "bn_act", "act", "merge", "repeat"]))
        if kind == "merge" and depth < 2:
            if draw(st.booleans()):  # a conv whose output the paths share: the in-place trap
                lines.append(f"conv({c}, 1)")
            ls, c = draw(_merge(c, depth + 1))
            lines += ls
            if draw(st.booleans()):
                lines.append(draw(st.sampled_from(_ACTS)))
        elif kind == "repeat" and depth < 2:
            var = draw(st.sampled_from(["", " as i"]))
            lines.append(f"repeat {draw(st.integers(1, 2))}{var} {{ conv({c}, 3, pad=1) "
                         f"{draw(st.sampled_from(_ACTS))} }}")
        elif kind in ("conv_act", "conv"):
            out = c if keep else draw(st.sampled_from([c, "3", "4", f"2 * ({c})"]))
            act = f" {draw(st.sampled_from(_ACTS))}" if kind == "conv_act" else ""
            lines.append(f"conv({out}, {draw(st.sampled_from(['1', '3, pad=1']))}){act}")
            c = out
        elif kind == "bn_act":
            lines.append(f"batchnorm {draw(st.sampled_from(_ACTS))}")
        else:
            lines.append(draw(st.sampled_from(_ACTS)))
    if keep and c != cur:
        lines.append(f"conv({cur}, 1)")
        c = cur
    return lines, c


@st.composite
def _merge(draw, cur: str, depth: int):
    kind = draw(st.sampled_from(["add", "concat"]))
    paths, outs = [], []
    for _ in range(draw(st.integers(2, 3))):
        shape = draw(st.sampled_from(["identity", "empty", "chain", "chain", "act"]))
        if shape == "identity":
            paths.append("identity")
            outs.append(cur)
        elif shape == "empty" and kind == "add" and not any(p == "" for p in paths):
            paths.append("")
            outs.append(cur)
        elif shape == "act":
            paths.append(draw(st.sampled_from(_ACTS)))
            outs.append(cur)
        else:
            ls, c = draw(_path_ops(cur, depth, kind == "add"))
            paths.append("{ " + "\n".join(ls) + " }")
            outs.append(c)
    body = "\n".join(p if p else "{ }" for p in paths)
    c = cur if kind == "add" else " + ".join(f"({o})" for o in outs)
    return [f"{kind} {{\n{body}\n}}"], c


@st.composite
def emit_spec(draw):
    """A network with zero to two blocks (parameter `c`, a flag `proj`, a default that reads
    `in.c`) instantiated with varying arguments."""
    lines = ["network rnd"]
    blocks = []
    for b in range(draw(st.integers(0, 2))):
        name = f"blk{b}"
        body, c = draw(_path_ops("c", 0, False))
        if draw(st.booleans()):  # a shortcut that depends on a parameter
            body = [f"add {{\n{{ {' '.join(body)} conv(w, 1) }}\nif proj {{ conv(w, 1) }}\n}}"]
        lines += [f"block {name}(c, w = in.c, proj = false) {{"] + body + ["}"]
        blocks.append(name)
    lines.append(f"input {draw(st.sampled_from([2, 3, 4]))}x6x6")
    for k in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["block"] * 3 + ["chain"] if blocks else ["chain"]))
        label = draw(st.sampled_from(["", f"s{k}: "]))
        if kind == "block":
            args = [str(draw(st.sampled_from([2, 3, 4])))]
            if draw(st.booleans()):
                args.append(f"w = {draw(st.sampled_from([2, 4]))}")
            if draw(st.booleans()):
                args.append("proj = true")
            lines.append(f"{label}{draw(st.sampled_from(blocks))}({', '.join(args)})")
        else:
            ls, _ = draw(_path_ops("in.c", 0, False))
            lines.append(label + "{ " + "\n".join(ls) + " }" if label else "\n".join(ls))
    if draw(st.booleans()):
        lines.append(draw(st.sampled_from(["global_avgpool linear(3) relu", "flatten linear(5)",
                                           "maxpool(2) relu"])))
    return "\n".join(lines) + "\n"
