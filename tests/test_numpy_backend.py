"""The NumPy backend against PyTorch and finite differences.

Parametrized over the op registry: every op the backend implements is run from its own
registry example (tests/conftest.py `example_spec`), so a new op is tested with no new test
code. Oracles: the torch-compiled model with the same weights (forward, every gradient by
autograd, the running statistics), and centred finite differences in float64."""

from __future__ import annotations

import numpy as np
import pytest

import nnspec
from conftest import example_ranks, example_spec
from nnspec import rng
from nnspec.backends import numpy as npb
from nnspec.errors import SpecError
from nnspec.ops import OPS

torch = pytest.importorskip("torch")

RUNNABLE = sorted(op for op in OPS if op != "input" and npb.implemented(op))
DETERMINISTIC = [op for op in RUNNABLE if "random" not in OPS[op].traits]
# every op at evaluation; in training those that draw no random numbers (tested below); the
# windowed ops at every spatial rank the registry accepts (`example_ranks`)
CASES = [(op, mode, rank) for op in RUNNABLE for mode in ("train", "eval") for rank in example_ranks(op)
         if mode == "eval" or op in DETERMINISTIC]


def _randomise(model, gen):
    """Every parameter and running statistic to random values (constant inits such as batch
    norm's gamma = 1 would hide errors), the same in the NumPy model and, loaded, in torch."""
    state = model.state_dict()
    for k, v in state.items():
        if k.endswith("num_batches_tracked"):
            continue
        r = gen.standard_normal(v.shape)
        state[k] = (0.5 + np.abs(r)) if k.endswith("running_var") else r * 0.5
    model.load_state_dict(state)


def _pair(spec, dtype="float64", seed=0):
    m = nnspec.compile(spec, backend="numpy", dtype=dtype, seed=seed)
    _randomise(m, np.random.default_rng(seed))
    t = nnspec.compile(spec).to(torch.float64 if dtype == "float64" else torch.float32)
    t.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in m.state_dict().items()})
    return m, t


def _torch_run(t, x, dout):
    t.zero_grad(set_to_none=True)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    out = t(xt)
    out.backward(torch.from_numpy(dout))
    grads = {k: p.grad.numpy() for k, p in t.named_parameters()}
    return out.detach().numpy(), xt.grad.numpy(), grads


def _compare(m, t, x, gen, rtol=1e-9, atol=1e-12, of_max=False):
    """Output, input gradient, every parameter gradient and the state after the step equal
    torch's. `of_max`: each array's tolerance is also rtol·max|value| (deep networks sum
    many terms: an element much smaller than the largest loses digits to cancellation)."""
    def close(a, b, msg=""):
        b = np.asarray(b)
        tol = max(atol, rtol * float(np.abs(b).max(initial=0))) if of_max else atol
        np.testing.assert_allclose(a, b, rtol=rtol, atol=tol, err_msg=msg)

    out = m.forward(x)
    dout = gen.standard_normal(out.shape)
    dx = m.backward(dout)
    t_out, t_dx, t_grads = _torch_run(t, x, dout)
    close(out, t_out)
    close(dx, t_dx)
    assert set(m.grads) == set(t_grads)
    for k in t_grads:
        close(m.grads[k], t_grads[k], k)
    for k, v in t.state_dict().items():  # running statistics after the step
        close(m.state_dict()[k], v.numpy(), k)


@pytest.mark.parametrize("op, mode, rank", CASES)
def test_forward_and_every_gradient_equal_torch_float64(op, mode, rank):
    spec = nnspec.loads(example_spec(op, rank))
    m, t = _pair(spec)
    m.train(mode == "train")
    t.train(mode == "train")
    gen = np.random.default_rng(1)
    x = gen.standard_normal((3,) + spec.graph.input.shape)
    _compare(m, t, x, gen)


@pytest.mark.parametrize("op, mode, rank", CASES)
def test_forward_equals_torch_float32(op, mode, rank):
    spec = nnspec.loads(example_spec(op, rank))
    m, t = _pair(spec, dtype="float32")
    m.train(mode == "train")
    t.train(mode == "train")
    x = np.random.default_rng(2).standard_normal((3,) + spec.graph.input.shape).astype(np.float32)
    out = m.forward(x)
    assert out.dtype == np.float32
    with torch.no_grad():
        np.testing.assert_allclose(out, t(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-5)


def _finite_differences(m, x, dout, target, coords, h=1e-6):
    """d(Σ out·dout)/d target[c], centred, for each coordinate c."""
    out = []
    for c in coords:
        old = target[c]
        target[c] = old + h
        plus = float((m.forward(x) * dout).sum())
        target[c] = old - h
        minus = float((m.forward(x) * dout).sum())
        target[c] = old
        out.append((plus - minus) / (2 * h))
    return np.array(out)


@pytest.mark.parametrize("op, mode, rank", CASES)
def test_gradients_equal_centred_finite_differences(op, mode, rank):
    spec = nnspec.loads(example_spec(op, rank))
    m = nnspec.compile(spec, backend="numpy", dtype="float64", seed=0)
    _randomise(m, np.random.default_rng(0))
    m.train(mode == "train")
    gen = np.random.default_rng(3)
    x = gen.standard_normal((3,) + spec.graph.input.shape)
    out = m.forward(x)
    dout = gen.standard_normal(out.shape)
    dx = m.backward(dout)
    grads = dict(m.grads)
    targets = [("input", x, dx)] + [(k, v, grads[k]) for k, v in m.parameters().items()]
    for name, arr, analytic in targets:
        coords = [tuple(int(i) for i in np.unravel_index(j, arr.shape))
                  for j in gen.choice(arr.size, min(5, arr.size), replace=False)]
        fd = _finite_differences(m, x, dout, arr, coords)
        want = np.array([analytic[c] for c in coords])
        err = np.abs(fd - want) / np.maximum(1e-3, np.abs(fd) + np.abs(want))
        assert err.max() < 1e-6, (name, fd, want)


# ---- arguments beyond the registry examples -------------------------------------------------

LAYERS = [
    "input 4x9x10\nconv(6, (3, 2), stride=(2, 1), pad=(1, 0), dilation=2, groups=2)",
    "input 4x9x9\nconv(8, 3, pad=\"same\", groups=4, bias=false)",   # depthwise x2
    "input 4x9x9\nconv(4, 3, stride=2, groups=4)",                   # depthwise
    "input 4x9x10\nconv(8, (3, 2), stride=(1, 2), pad=(2, 1), dilation=(2, 1), groups=4)",
    "input 3x12\nconv(6, 3, pad=1, groups=3)",                       # depthwise 1-D
    "input 3x11\nconv(5, 3, stride=2, pad=1)",                        # 1-D
    "input 2x9x10\nconv(5, (3, 2), stride=(2, 1), pad=(1, 2), dilation=(2, 1))",  # channels-first
    "input 8x9x10\nconv(6, 3, stride=2, pad=1, dilation=2)",         # channels-last, per offset
    "input 8x9x10\nconv(6, (2, 3), stride=(1, 2), pad=(0, 1))",      # channels-last, per row
    "input 8x9x10\nconv(6, (3, 3), pad=(1, 2), dilation=(1, 2))",    # dx as a correlation
    "input 8x6x6\nconv(4, 2, pad=2, bias=false)",                    # pad > D(K-1): added
    "input 3x10x10\nmaxpool(3, stride=2, pad=1, ceil_mode=true)",
    "input 3x10x11\nmaxpool((2, 3), stride=(2, 2), dilation=2)",
    "input 3x11\nmaxpool(2)",
    "input 3x10x10\navgpool(3, stride=2, pad=1, ceil_mode=true)",
    "input 3x10x10\navgpool(3, stride=2, pad=1, ceil_mode=true, count_include_pad=false)",
    "input 3x9x9\navgpool((2, 3), stride=(3, 2), pad=(1, 1), count_include_pad=false)",
    "input 3x7x5\nadaptive_avgpool((3, 4))",
    "input 3x10\nadaptive_avgpool(4)",
    "input 3x4x4\nprelu",
    "input 5x3x3\nsoftmax",
    "input 3x5\nbatchnorm(momentum=0.3, affine=false)",
    "input 6x4x4\nlayernorm",
    "input 6\nlayernorm(eps=0.1)",
    "input 6x4x4\ngroupnorm(3, affine=false)",
    "input 6x5\ngroupnorm(2)",
    "input 4x6\ninstancenorm",
    "input 4x6\ninstancenorm(momentum=0.2, track_running_stats=true)",
    "input 4x5x6\nconv_transpose(6, (3, 2), stride=(2, 3), pad=(1, 0), output_pad=(1, 2), groups=2)",
    "input 4x5x5\nconv_transpose(4, 3, dilation=2, output_pad=1, bias=false)",
    "input 4x5\nconv_transpose(3, 4, stride=2)",
    "input 3x4x5\nupsample((2, 3))",
    "input 3x4x5\nupsample((3, 2), mode=\"bilinear\")",
    "input 3x5\nupsample(3, mode=\"bilinear\")",
    # 3-D (CxDxHxW): per-axis arguments, groups, depthwise, ceil mode, padding not counted
    "input 4x5x6x7\nconv(6, (3, 2, 2), stride=(2, 1, 1), pad=(1, 0, 1), dilation=(1, 2, 1), groups=2)",
    "input 4x5x5x5\nconv(8, 3, pad=\"same\", groups=4, bias=false)",
    "input 3x5x6x5\nconv(4, (3, 2, 3), stride=(1, 2, 1), pad=(1, 1, 0), dilation=(2, 1, 1))",
    "input 3x6x7x6\nmaxpool(3, stride=2, pad=1, ceil_mode=true)",
    "input 3x6x7x6\nmaxpool((2, 3, 2), stride=(2, 2, 1), dilation=2)",
    "input 3x6x6x6\navgpool(3, stride=2, pad=1, ceil_mode=true, count_include_pad=false)",
    "input 3x5x7x5\nadaptive_avgpool((2, 3, 4))",
    "input 3x3x4x5\nupsample((2, 1, 3))",
    "input 3x3x4x5\nupsample((2, 3, 2), mode=\"bilinear\")",
    "input 4x3x4x5\nconv_transpose(6, (3, 2, 2), stride=(2, 3, 1), pad=(1, 0, 0), output_pad=(1, 2, 0), groups=2)",
    "input 4x3x3x3\nconv_transpose(4, 3, dilation=2, output_pad=1, bias=false)",
    "input 7x3x3\nlrn(4, alpha=0.5, beta=0.6, k=2.0)",
    "input 5x4\nlrn(3)",
]


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("source", LAYERS)
def test_layer_variants_equal_torch(source, mode):
    spec = nnspec.loads(source + "\n")
    m, t = _pair(spec)
    m.train(mode == "train")
    t.train(mode == "train")
    gen = np.random.default_rng(4)
    _compare(m, t, gen.standard_normal((2,) + spec.graph.input.shape), gen)


@pytest.mark.parametrize("source", [s for s in LAYERS if "conv(" in s and "groups" not in s])
def test_conv_in_many_chunks_equals_torch(source, monkeypatch):
    """Chunks of one image (`ROWS`, `COLS` made tiny): the chunk loop's bounds and the
    accumulated weight gradient."""
    monkeypatch.setattr(npb.windows, "ROWS", 1)
    monkeypatch.setattr(npb.windows, "COLS", 1)
    spec = nnspec.loads(source + "\n")
    m, t = _pair(spec)
    gen = np.random.default_rng(6)
    _compare(m, t, gen.standard_normal((3,) + spec.graph.input.shape), gen)


@pytest.mark.parametrize("shape", ["6", "3x4x4"])
def test_batchnorm_with_batch_2_keeps_the_unbiased_running_variance(shape):
    spec = nnspec.loads(f"input {shape}\nbn: batchnorm\n")
    m, t = _pair(spec)
    gen = np.random.default_rng(5)
    for _ in range(3):  # three steps: the running statistics compound
        _compare(m, t, gen.standard_normal((2,) + spec.graph.input.shape), gen)
    m.eval()
    t.eval()
    _compare(m, t, gen.standard_normal((2,) + spec.graph.input.shape), gen)
    assert int(m.state_dict()["bn.num_batches_tracked"]) == 3


def test_dropout_masks_come_from_the_named_stream_and_scale_survivors():
    spec = nnspec.loads("input 50\nd: dropout(0.3)\n")
    m = nnspec.compile(spec, backend="numpy", dtype="float64", seed=7)
    x = np.random.default_rng(0).standard_normal((4, 50))
    m.step = 12
    out = m.forward(x)
    keep = rng.keep_mask(rng.stream(7, "dropout", "d", 12), (4, 50), 0.3)
    np.testing.assert_allclose(out, np.where(keep, x / 0.7, 0.0), rtol=1e-15)
    np.testing.assert_allclose(m.backward(np.ones_like(out)), np.where(keep, 1 / 0.7, 0.0))
    m.step = 13
    assert not np.array_equal(m.forward(x), out)   # a fresh mask each step
    m.eval()
    assert np.array_equal(m.forward(x), x)


@pytest.mark.parametrize("mode", ["row", "batch"])
def test_stochastic_depth_masks_come_from_the_named_stream(mode):
    spec = nnspec.loads(f"input 3x2x2\nsd: stochastic_depth(0.5, mode=\"{mode}\")\n")
    m = nnspec.compile(spec, backend="numpy", dtype="float64", seed=2)
    x = np.random.default_rng(0).standard_normal((16, 3, 2, 2))
    m.step = 5
    out = m.forward(x)
    shape = (16, 1, 1, 1) if mode == "row" else (1, 1, 1, 1)
    keep = rng.keep_mask(rng.stream(2, "dropout", "sd", 5), shape, 0.5)
    np.testing.assert_allclose(out, np.where(keep, x / 0.5, 0.0), rtol=1e-15)
    np.testing.assert_allclose(m.backward(np.ones_like(out)), np.broadcast_to(np.where(keep, 2.0, 0.0), x.shape))
    m.eval()
    assert np.array_equal(m.forward(x), x)


def test_rrelu_slopes_in_training_come_from_the_named_stream():
    spec = nnspec.loads("input 40\nr: rrelu(lower=0.1, upper=0.4)\n")
    m = nnspec.compile(spec, backend="numpy", dtype="float64", seed=4)
    x = np.random.default_rng(0).standard_normal((3, 40))
    m.step = 2
    out = m.forward(x)
    slope = rng.uniform(rng.stream(4, "dropout", "r", 2), (3, 40), 0.1, 0.4).astype(np.float64)
    assert 0.1 <= slope.min() and slope.max() < 0.4
    np.testing.assert_allclose(out, np.where(x > 0, x, slope * x), rtol=1e-15)
    np.testing.assert_allclose(m.backward(np.ones_like(out)), np.where(x > 0, 1.0, slope), rtol=1e-15)


def test_an_op_the_backend_cannot_run_is_NN040_at_build_with_its_line(monkeypatch):
    monkeypatch.setitem(npb.UNSUPPORTED, "relu", "a reason given by the table")
    spec = nnspec.loads("input 4x8x8\nconv(4, 3)\nr: relu\nflatten\n")
    with pytest.raises(SpecError) as e:
        nnspec.compile(spec, backend="numpy")
    (d,) = e.value.diagnostics
    assert d.code == "NN040" and d.span.line == 3 and "a reason given by the table" in d.message


def test_backward_needs_a_forward_that_kept_its_caches():
    m = nnspec.compile(nnspec.loads("input 4\nlinear(3) relu\n"), backend="numpy")
    x = np.ones((2, 4), np.float32)
    with pytest.raises(RuntimeError):
        m.backward(np.ones((2, 3), np.float32))
    out = m.forward(x, grad=False)
    with pytest.raises(RuntimeError):
        m.backward(np.ones_like(out))
    np.testing.assert_array_equal(m.forward(x), out)
    m.backward(np.ones_like(out))
    with pytest.raises(RuntimeError):   # once per forward
        m.backward(np.ones_like(out))


def test_same_seed_gives_torch_and_numpy_the_same_initial_weights():
    spec = nnspec.load("specs/cnn_digits.nn")   # seed 0, init he
    m = nnspec.compile(spec, backend="numpy")
    t = nnspec.compile(spec)
    for k, v in t.state_dict().items():
        np.testing.assert_array_equal(m.state_dict()[k], v.numpy(), err_msg=k)


# ---- whole networks --------------------------------------------------------------------------

class _FixedScale(torch.nn.Module):
    """torch's dropout replaced by the NumPy model's mask, so training steps compare."""

    def __init__(self, scale):
        super().__init__()
        self.scale = torch.from_numpy(scale)

    def forward(self, x):
        return x * self.scale


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("path", ["specs/mlp_digits.nn", "specs/lenet5.nn", "specs/cnn_digits.nn"])
def test_whole_networks_equal_torch(path, mode):
    spec = nnspec.load(path)
    m, t = _pair(spec)
    m.train(mode == "train")
    t.train(mode == "train")
    gen = np.random.default_rng(6)
    x = gen.standard_normal((4,) + spec.graph.input.shape)
    if mode == "train":
        for nd in spec.graph.layers:
            if nd.op == "dropout":
                shape = (4,) + spec.graph.in_shapes(nd)[0]
                keep = rng.keep_mask(rng.stream(m.seed, "dropout", nd.name, m.step), shape, nd.attrs["p"])
                parent, _, leaf = nd.name.rpartition(".")
                setattr(t.get_submodule(parent) if parent else t, leaf,
                        _FixedScale(keep / (1 - nd.attrs["p"])))
    _compare(m, t, x, gen)



def test_the_backends_docstring_examples_run():
    import doctest

    from nnspec.backends.numpy import layers, model, norms, windows
    for module in (npb, layers, model, norms, windows):
        assert doctest.testmod(module).failed == 0, module.__name__


@pytest.mark.parametrize("path, args, mode, batch", [
    ("specs/unet_small.nn", {}, "train", 2),      # concat, upsampling, batch norm
    pytest.param("specs/resnet18.nn", {"classes": 10}, "train", 2, marks=pytest.mark.slow),
    pytest.param("specs/googlenet.nn", {"classes": 10}, "eval", 1, marks=pytest.mark.slow),
    pytest.param("specs/efficientnet_b0.nn", {"classes": 10}, "eval", 1, marks=pytest.mark.slow),
])
def test_shipped_networks_equal_torch(path, args, mode, batch):
    """Residual adds, concatenation, depthwise convolution, squeeze-and-excitation (mul),
    stochastic depth and dropout (identities at evaluation)."""
    spec = nnspec.load(path, **args)
    m, t = _pair(spec)
    m.train(mode == "train")
    t.train(mode == "train")
    gen = np.random.default_rng(8)
    _compare(m, t, gen.standard_normal((batch,) + spec.graph.input.shape), gen, of_max=True)

