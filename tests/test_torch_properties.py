"""Random specs, PyTorch as the oracle: whatever the analyzer accepts, the compiled model runs,
every node's output shape equals the analyzer's, and parameter and buffer counts agree.
Edge cases of the window arithmetic (dilation, padding, ceil_mode, odd sizes, grouped convs,
1-D inputs) are where a static rule and the framework most easily drift apart."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

import nnspec  # noqa: E402
from conftest import example_call  # noqa: E402
from nnspec.ops import OPS, ArgError, ShapeError  # noqa: E402


# Every one-input op of the registry whose example keeps a CxL or CxHxW input's rank, called
# with its example's arguments (read from the registry: an op added there is fuzzed here too).
# A call that does not fit the drawn shape is refused statically, which the test accepts.
def _keeps_rank(op) -> bool:
    ex = op.example
    if op.category in ("merge", "input") or len(ex.inputs) != 1 or len(ex.inputs[0]) not in (2, 3):
        return False
    return len(op.infer(ex.inputs, op.bind(ex.pos, dict(ex.kw)))) == len(ex.inputs[0])


REGISTRY_SPATIAL = sorted(name for name, op in OPS.items() if _keeps_rank(op))


def _channels_after(op: str, channels: int) -> int:
    opdef, ex = OPS[op], OPS[op].example
    try:
        return opdef.infer(((channels,) + ex.inputs[0][1:],), opdef.bind(ex.pos, dict(ex.kw)))[0]
    except (ShapeError, ArgError):
        return channels
from spec_strategies import emit_spec  # noqa: E402


@st.composite
def spatial_layer(draw, channels):
    kind = draw(st.sampled_from(["conv", "conv", "maxpool", "avgpool", "batchnorm", "act", "lrn",
                                 "registry"]))
    if kind == "registry":
        op = draw(st.sampled_from(REGISTRY_SPATIAL))
        return example_call(op), _channels_after(op, channels)
    k = draw(st.integers(1, 4))
    s = draw(st.integers(1, 3))
    if kind == "conv":
        g = draw(st.sampled_from([d for d in (1, 2, 4) if channels % d == 0]))
        out = g * draw(st.integers(1, 4))
        d = draw(st.integers(1, 2))
        p = draw(st.integers(0, 2))
        bias = draw(st.booleans())
        return (f"conv({out}, {k}, stride={s}, pad={p}, dilation={d}, groups={g}, "
                f"bias={'true' if bias else 'false'})"), out
    if kind in ("maxpool", "avgpool"):
        p = draw(st.integers(0, k // 2))
        ceil = draw(st.booleans())
        extra = f", dilation={draw(st.integers(1, 2))}" if kind == "maxpool" and p == 0 else ""
        return f"{kind}({k}, stride={s}, pad={p}, ceil_mode={'true' if ceil else 'false'}{extra})", channels
    if kind == "batchnorm":
        return "batchnorm", channels
    if kind == "lrn":
        return f"lrn({draw(st.integers(1, 5))})", channels
    act = draw(st.sampled_from(["relu", "leaky_relu(0.1)", "elu", "gelu", "tanh", "sigmoid",
                                "prelu(per_channel=true)", "identity", "dropout(0.3)"]))
    return act, channels


@st.composite
def random_spec(draw):
    rank = draw(st.sampled_from([2, 3]))  # CxL sequences or CxHxW images
    c = draw(st.sampled_from([1, 2, 4]))
    size = draw(st.integers(5, 20))
    lines = [f"input {c}x" + "x".join([str(size)] * (rank - 1))]
    for _ in range(draw(st.integers(1, 5))):
        text, c = draw(spatial_layer(c))
        lines.append(text)
    if draw(st.booleans()):
        lines.append(draw(st.sampled_from(["flatten", "global_avgpool"])))
        for _ in range(draw(st.integers(0, 2))):
            lines.append(draw(st.sampled_from(
                ["linear(7)", "linear(3, bias=false)", "maxout(3, pieces=2)", "relu", "batchnorm",
                 "softmax", "log_softmax", "dropout"])))
    return "\n".join(lines) + "\n"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_spec())
def test_compiled_model_agrees_with_the_analyzer_on_random_specs(text):
    try:
        spec = nnspec.loads(text)
    except nnspec.SpecError:
        return  # rejected statically (a window that does not fit): nothing to compile
    totals = spec.analyze().totals
    model = nnspec.compile(spec).eval()
    assert sum(p.numel() for p in model.parameters()) == totals.params, text
    assert sum(b.numel() for n, b in model.named_buffers()
               if not n.endswith("num_batches_tracked")) == totals.buffers, text
    seen = {}
    modules = dict(model.named_modules())
    for nd in spec.graph.layers:
        modules[nd.name].register_forward_hook(
            lambda m, i, out, name=nd.name: seen.__setitem__(name, tuple(out.shape)))
    with torch.no_grad():
        model(torch.randn(2, *spec.graph.input.shape))
    wrong = {nd.name: (seen.get(nd.name), (2,) + nd.shape) for nd in spec.graph.layers
             if seen.get(nd.name) != (2,) + nd.shape}
    assert not wrong, text


# ---- the emitted source computes what nnspec.compile computes ----------------------------------
# Random networks (spec_strategies.emit_spec) built to exercise what the emitter writes
# generically and where in-place decisions matter.

def _emitted(spec):
    import importlib.util
    import tempfile

    from nnspec.backends.torch_emit import camel, emit_torch
    source = emit_torch(spec)
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/emitted.py"
        with open(path, "w") as f:
            f.write(source)
        mod_spec = importlib.util.spec_from_file_location("emitted_rnd", path)
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
    return getattr(module, camel(spec.graph.name))(), source


def _run(model, x, train: bool):
    model.train(train)
    x = x.clone().requires_grad_(train)
    out = model(x)
    if not train:
        return out.detach(), None
    weight = torch.linspace(-1, 1, out.numel()).reshape(out.shape)
    (out * weight).sum().backward()
    return out.detach(), x.grad


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(emit_spec())
def test_emitted_source_computes_what_compile_builds(text):
    try:
        spec = nnspec.loads(text)
    except nnspec.SpecError:
        return  # e.g. an add whose paths end at different depths: nothing to compile
    compiled = nnspec.compile(spec)
    emitted, source = _emitted(spec)
    emitted.load_state_dict(compiled.state_dict(), strict=True)
    x = torch.randn(2, *spec.graph.input.shape)
    for train in (False, True):
        a, ga = _run(compiled, x, train)
        b, gb = _run(emitted, x, train)
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4), (text, source)
        if train:
            assert torch.allclose(ga, gb, atol=1e-5, rtol=1e-4), (text, source)
            grads = {n: p.grad for n, p in emitted.named_parameters()}
            for n, p in compiled.named_parameters():
                assert torch.allclose(p.grad, grads[n], atol=1e-5, rtol=1e-4), (n, text, source)
    compiled_modules = dict(compiled.named_modules())
    for name, m in emitted.named_modules():  # in place only where the plan says so (layers
        if getattr(m, "inplace", False) and name in compiled_modules:  # without state may be named apart)
            assert compiled_modules[name].inplace, (name, text, source)
