"""Generic tests over the op registry: every op, from its own example call, in every backend;
every activation row's f and f′ against PyTorch and finite differences; and the proof that
one new table row is all an activation needs."""

from __future__ import annotations

import math

import numpy as np
import pytest

import nnspec
from nnspec.lint import lint_source
from conftest import example_call, example_ranks, example_spec
from nnspec.ops import ACTIVATIONS, KEEPS, NUMPY, OPS, TRAITS, Activation, OpsWith, user_ops
from nnspec.ops import activations as acts

torch = pytest.importorskip("torch")

from nnspec.backends import numpy as numpy_backend  # noqa: E402
from nnspec.backends import torch as torch_backend  # noqa: E402

# Every backend's answer to "can you build this op?": a new backend adds one entry.
BACKENDS = {"torch": (torch_backend.implemented, torch_backend.UNSUPPORTED),
            "numpy": (numpy_backend.implemented, numpy_backend.UNSUPPORTED)}
SPEC_OPS = sorted(set(OPS) - {"input"})


@pytest.mark.parametrize("op", sorted(OPS))
def test_every_op_declares_known_traits_keeps_and_a_valid_example(op):
    o = OPS[op]
    assert set(o.traits) <= set(TRAITS) and set(o.keeps) <= set(KEEPS)
    assert o.doc, f"{op} has no doc"
    if op == "input":
        return
    o.bind(tuple(o.example.pos), dict(o.example.kw))  # arguments valid as written
    spec = nnspec.loads(example_spec(op))
    assert spec.graph.nodes[spec.graph.output].op == op


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_every_op_is_implemented_or_listed_as_unsupported(backend):
    implemented, unsupported = BACKENDS[backend]
    for op in OPS:
        assert implemented(op) != (op in unsupported), (backend, op)


@pytest.mark.parametrize("op, rank", [(op, r) for op in SPEC_OPS for r in example_ranks(op)])
def test_torch_builds_every_op_from_its_example_with_the_registrys_shapes_and_tensors(op, rank):
    spec = nnspec.loads(example_spec(op, rank))
    an = spec.analyze()
    model = nnspec.compile(spec)
    node = spec.graph.nodes[spec.graph.output]   # `layer`, or the merge inside group `layer`
    want = {f"{node.name}.{t.name}": t.shape for t in an.layer(node.name).tensors if t.role != "counter"}
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()
           if k.startswith(node.name + ".") and not k.endswith("num_batches_tracked")}
    assert got == want
    assert sum(p.numel() for p in model.parameters()) == an.totals.params
    x = torch.randn((3,) + spec.graph.input.shape)
    for mode in (model.train, model.eval):
        mode()
        seen = {}
        h = model.get_submodule(node.name).register_forward_hook(
            lambda m, i, o: seen.setdefault("shape", tuple(o.shape[1:])))
        with torch.no_grad():
            model(x)
        h.remove()
        assert seen["shape"] == node.shape


# ---- activation rows: f against torch's own modules, f′ against autograd and differences ----

ROW_OPS = sorted(op for op in ACTIVATIONS if op in OPS)
POINTS = np.concatenate([np.linspace(-8, 8, 161), [-3.0001, -2.9999, 2.9999, 3.0001, 5.9999, 6.0001, 20.5]])


def defaults(row) -> dict:
    return {a.name: a.default for a in OPS[row.name].args} | dict(OPS[row.name].example.kw)


@pytest.mark.parametrize("op", ROW_OPS)
def test_row_f_equals_the_torch_module_the_backend_builds(op):
    row = ACTIVATIONS[op]
    spec = nnspec.loads(f"input 4\nlayer: {example_call(op)}\n")
    module = nnspec.compile(spec).get_submodule("layer").double().eval()
    x = torch.from_numpy(POINTS.copy())
    with torch.no_grad():
        want = module(x.reshape(-1, 1).expand(-1, 4))[:, 0].numpy()
    np.testing.assert_allclose(row.f(POINTS.copy(), defaults(row), NUMPY), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("op", ROW_OPS)
def test_row_df_equals_autograd_of_the_torch_module(op):
    row = ACTIVATIONS[op]
    spec = nnspec.loads(f"input 4\nlayer: {example_call(op)}\n")
    module = nnspec.compile(spec).get_submodule("layer").double().eval()  # rrelu: the mean slope
    x = torch.tensor(POINTS, requires_grad=True)
    y = module(x.reshape(-1, 1).expand(-1, 4).clone())[:, 0]
    (g,) = torch.autograd.grad(y.sum(), x)
    a = defaults(row)
    kept = row.f(POINTS.copy(), a, NUMPY) if row.keeps == "output" else POINTS.copy()
    np.testing.assert_allclose(row.df(kept, a, NUMPY), g.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("op", ROW_OPS)
def test_row_df_equals_centred_finite_differences(op):
    row = ACTIVATIONS[op]
    a = defaults(row)
    # away from the kinks of the piecewise-linear rows, where the derivative jumps
    x = np.linspace(-7.05, 7.05, 95)
    x = x[np.min(np.abs(x[:, None] - np.array([0.0, -3.0, 3.0, 6.0, -1.0, 1.0])), axis=1) > 1e-3]
    h = 1e-6
    fd = (row.f(x + h, a, NUMPY) - row.f(x - h, a, NUMPY)) / (2 * h)
    kept = row.f(x, a, NUMPY) if row.keeps == "output" else x
    np.testing.assert_allclose(row.df(kept, a, NUMPY), fd, rtol=1e-6, atol=1e-8)


def test_numpy_erf_equals_math_erf_and_torch_over_a_wide_range():
    """GELU's Φ over NumPy: Cody's rational erf (`activations.cody_erf`) against math.erf
    (the C library's) and torch.erf: every branch and its edges, tiny, huge, signed zeros,
    ±inf, NaN; more values than one block of the blocked evaluation; float32 keeps its dtype."""
    x = np.concatenate([np.linspace(-30, 30, 140001), np.logspace(-300, 1.5, 3000),
                        -np.logspace(-300, 1.5, 3000),
                        [0.0, -0.0, 0.46875, np.nextafter(0.46875, 1), 4.0, np.nextafter(4.0, 5),
                         26.543, 27.0, 1e300, -1e300]])
    want = np.array([math.erf(v) for v in x])
    got = NUMPY.erf(x)
    assert got.dtype == np.float64 and got.shape == x.shape
    np.testing.assert_allclose(got, want, rtol=5e-16, atol=0)
    np.testing.assert_allclose(got, torch.erf(torch.from_numpy(x)).numpy(), rtol=5e-16, atol=0)
    np.testing.assert_array_equal(np.signbit(got[x == 0]), np.signbit(x[x == 0]))
    special = NUMPY.erf(np.array([np.inf, -np.inf, np.nan]))
    assert special[0] == 1 and special[1] == -1 and np.isnan(special[2])
    x32 = np.linspace(-6, 6, 1001, dtype=np.float32)
    got32 = NUMPY.erf(x32)
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, [math.erf(v) for v in x32.astype(float)], rtol=0, atol=3e-7)


# ---- one row is all a new activation needs ------------------------------------------------------

@pytest.fixture
def cube_row():
    row = Activation("cube_test", "x³ (a test row)", lambda x, a, xp: x * x * x,
                     lambda x, a, xp: 3 * x * x, "input", frozenset({"elementwise", "saturating"}))
    acts.add_row(row)
    yield row
    del OPS["cube_test"], ACTIVATIONS["cube_test"]


def test_a_new_activation_row_works_in_analysis_lint_docs_and_torch(cube_row):
    text = "input 8\nfc1: linear(6) cube_test\nfc2: linear(6) cube_test\nfc3: linear(6) cube_test\n" \
           "fc4: linear(6) cube_test\nfc5: linear(6) cube_test\nfc6: linear(6) cube_test\nfc: linear(3)\n"
    spec = nnspec.loads(text)
    assert spec.analyze().totals.params == 9 * 6 + 5 * 7 * 6 + 7 * 3
    assert "cube_test" in user_ops() and "cube_test" in OpsWith("saturating")
    from test_docs import ops_table  # the generated ops table of docs/language.md
    assert "| `cube_test` | `cube_test` | activation | x³ (a test row) |" in ops_table()
    # lint reads the row: its traits (a run of saturating layers) and its f in the variance pass
    result = lint_source(text)
    assert any("cube_test" in d.message or d.code == "NN313" for d in result.findings)
    from nnspec.lint.variance import expect
    z = np.random.default_rng(0).standard_normal(400_000)
    assert math.isclose(expect("cube_test", {}, 1.0), float(np.mean(z ** 6)), rel_tol=0.02)  # E[z⁶] = 15
    # torch: the generic module runs the row's f; autograd agrees with the row's f′
    model = nnspec.compile(spec)
    layer = model.get_submodule("fc1_cube_test")
    x = torch.linspace(-2, 2, 9, dtype=torch.float64, requires_grad=True)
    y = layer(x)
    assert torch.allclose(y, x.detach() ** 3)
    (g,) = torch.autograd.grad(y.sum(), x)
    assert torch.allclose(g, 3 * x.detach() ** 2)
    out = model(torch.randn(2, 8))
    assert tuple(out.shape) == (2, 3)
