"""`nnspec explain`: every number of one table row, with its derivation."""

from __future__ import annotations

from .analysis import DTYPE_BYTES, Analysis, entering, kept_pass
from .errors import Diagnostic, SpecError, did_you_mean
from .ops import n, shape_str
from .report import all_digits, human_bytes


def explain(an: Analysis, name: str) -> str:
    """The derivation of every number of the row of layer (or group) `name`. A derivation
    is exact: numbers past Python's 4,300-digit guard are written out in full too."""
    with all_digits():
        return _explain(an, name)


def _explain(an: Analysis, name: str) -> str:
    g = an.graph
    node = g.find(name)
    if node is None or node.op == "input":
        members = [s for s in an.layers[1:] if s.node.name.startswith(name + ".")]
        if members:
            return _explain_group(an, name, members)
        raise SpecError([Diagnostic("NN014", f"no layer named '{name}' in {g.name}",
                                    help=did_you_mean(name, [nd.name for nd in g.nodes[1:]])
                                    or "`nnspec table FILE` lists the layer names")])
    s = an.layers[node.id]
    op = node.opdef
    ins = g.in_shapes(node)
    out = [f"{node.name}: {op.label(node.attrs)}   ({node.span})"]
    for f in node.chain[::-1]:
        out.append(f"  {f.describe()}")
    out.append(f"  input   {', '.join(shape_str(x) for x in ins)}"
               + (f" (from {', '.join(g.nodes[i].name for i in node.inputs)})" if node.inputs else ""))
    out.append(f"\noutput shape {shape_str(node.shape)}")
    out += [f"  {line}" for line in op.explain_shape(ins, node.shape, node.attrs)]
    out.append(f"\nparameters {n(s.params)}" + (f" (+{n(s.buffers)} buffer values)" if s.buffers else "")
               + ("" if s.trainable == s.params else " — frozen by the train section"))
    out += [f"  {line}" for line in op.explain_params(ins, node.shape, node.attrs)]
    out.append(f"\nMACs {n(s.macs)}")
    out += [f"  {line}" for line in op.explain_macs(ins, node.shape, node.attrs)]
    size = DTYPE_BYTES[an.dtype]
    out.append(f"\nactivations {n(s.activations)} values per sample")
    out.append(f"  {'·'.join(map(str, node.shape))} = {n(s.activations)}; "
               f"x batch {an.batch} x {size} bytes ({an.dtype}) = "
               f"{human_bytes(s.activations * an.batch * size)}"
               + ("" if op.stores == "new" else
                  f" — counted as {'in place' if op.stores == 'inplace' else 'a view'} in forward memory"))
    out += _explain_rf(an, node, ins)
    out += _explain_memory(an, node)
    return "\n".join(out) + "\n"


def _explain_memory(an: Analysis, node) -> list[str]:
    """What the layer's backward keeps, and whether the step's peak is at its backward."""
    t = an.totals
    grads = kept_pass(an.graph, {"tensors": tuple(s.tensors for s in an.layers)})[node.id][3]
    keeps = node.opdef.keeps_for(node.attrs)
    out = [f"\ntraining memory (batch {an.batch}, {an.dtype})"]
    if not grads:
        out.append("  no gradient reaches this layer (no trainable parameter before it): its "
                   "backward keeps nothing")
    else:
        out.append(f"  its backward keeps {', '.join(f'its {k}' for k in keeps) if keeps else 'nothing'} "
                   f"(the registry's `keeps`; a value is kept once, whoever needs it)")
    saved, act_grads, param_grads = t.peak_parts
    fixed = t.train_bytes - t.peak_bytes
    if t.peak_at == f"backward of {node.name}":
        out.append(f"  the step's peak is this layer's backward: {human_bytes(t.train_bytes)} = "
                   f"parameters and optimizer state {human_bytes(fixed)} + parameter gradients "
                   f"made so far {human_bytes(param_grads)} + activations kept and still alive "
                   f"{human_bytes(saved)} + activation gradients {human_bytes(act_grads)}")
    else:
        out.append(f"  the step's peak, {human_bytes(t.train_bytes)}, is at the {t.peak_at}")
    return out


def _explain_rf(an: Analysis, node, ins) -> list[str]:
    s = an.layers[node.id]
    if s.rf is None:
        return []
    rf_in, j_in = entering(an.graph, node, [(x.rf, x.jump) for x in an.layers])
    head = f"\nreceptive field {'x'.join(map(str, s.rf))} input pixels, cumulative stride " \
           f"{'x'.join(map(str, s.jump))}"
    if rf_in == s.rf and j_in == s.jump:
        return [head, "  unchanged: this layer has no spatial window"]
    lines = [head]
    window = node.opdef.window(ins, node.shape, node.attrs) if len(ins[0]) > 1 else None
    if window == "global":
        window = tuple((N, N) for N in ins[0][1:])
    axes = ("H", "W") if len(s.rf) == 2 else ("L",) if len(s.rf) == 1 else ("D", "H", "W")
    for ax, r, j, (k, st), r2, j2 in zip(axes, rf_in, j_in, window, s.rf, s.jump):
        lines.append(f"  {ax}: rf = {r} + ({k} − 1)·{j} = {r2}; stride = {j}·{st} = {j2}")
    return lines


def _explain_group(an: Analysis, name: str, members) -> str:
    params = sum(s.params for s in members)
    macs = sum(s.macs for s in members)
    out = [f"{name}: a group of {len(members)} layers"]
    out.append(f"  output shape {shape_str(members[-1].node.shape)}")
    out.append(f"  parameters {n(params)} = " + " + ".join(n(s.params) for s in members if s.params))
    out.append(f"  MACs {n(macs)}")
    out.append("  layers: " + ", ".join(s.node.name for s in members))
    return "\n".join(out) + "\n"
