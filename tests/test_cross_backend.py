"""The two training backends as one: the same random masks, checkpoints that resume in the
other backend on the same trajectory, and whole networks trained through the trainer to the
same weights (float64 1e-9, float32 1e-4)."""

from __future__ import annotations

import numpy as np
import pytest

import nnspec
from nnspec import rng
from nnspec.train.loop import TrainError
from nnspec.train.numpy_backend import NumpyBackend

torch = pytest.importorskip("torch")

from nnspec.backends.torch import use_random_streams  # noqa: E402
from nnspec.train.torch_backend import TorchBackend  # noqa: E402

RANDOM = """input 3x6x6
conv(4, 3, pad=1) relu
drop: dropout(0.3)
res: { conv(4, 3, pad=1) rrelu
       sd: stochastic_depth(0.4) }
sdb: stochastic_depth(0.5, mode="batch")
flatten
fc: linear(10)
"""

# ---- 1. the same masks ---------------------------------------------------------------------


def _random_layers(model):
    return {name: m for name, m in model.named_modules() if hasattr(m, "clock")}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("step", [0, 7, 2**40])
def test_dropout_stochastic_depth_and_rrelu_draw_the_same_numbers_in_both_backends(dtype, step):
    """Each random layer of both backends, given the same input at the same step, gives the
    same output bit for bit: the same masks (and rrelu slopes), scaled the same way."""
    from nnspec.backends.numpy import pair_for
    from nnspec.backends.numpy.layers import Context
    spec = nnspec.loads(RANDOM, "random.nn")
    theirs = nnspec.compile(spec).to(getattr(torch, dtype)).train()
    clock = use_random_streams(theirs, seed=11)
    clock.step = step
    layers = _random_layers(theirs)
    assert sorted(layers) == ["drop", "res.1", "res.sd", "sdb"]
    gen = np.random.default_rng(step % 97)
    for name, module in layers.items():
        nd = spec.graph.find(name)
        x = gen.standard_normal((16,) + spec.graph.in_shapes(nd)[0]).astype(dtype)
        ours, _ = pair_for(nd.op)[0](x, {}, nd.attrs, "train", Context(name, 11, step))
        assert ours.dtype == x.dtype
        assert np.array_equal(ours, module(torch.from_numpy(x)).numpy()), name
        if nd.op != "rrelu":   # and they are the stream's keep-mask, scaled by 1/(1-p)
            p = nd.attrs["p"]
            shape = ours.shape if nd.op == "dropout" else (
                (16, 1, 1, 1) if nd.attrs["mode"] == "row" else (1, 1, 1, 1))
            keep = rng.keep_mask(rng.stream(11, "dropout", name, step), shape, p)
            np.testing.assert_array_equal(ours, x * (keep.astype(dtype) * (1 / (1 - p))))
            assert 0 < (~keep).mean() < 1 or shape == (1, 1, 1, 1)
        else:
            neg = x < 0
            slope = ours[neg] / x[neg]
            assert 1 / 8 - 1e-6 <= slope.min() and slope.max() <= 1 / 3 + 1e-6 and slope.std() > 0.01
    theirs.eval()
    for name, module in layers.items():   # evaluation: no randomness
        nd = spec.graph.find(name)
        x = gen.standard_normal((4,) + spec.graph.in_shapes(nd)[0]).astype(dtype)
        ours, _ = pair_for(nd.op)[0](x, {}, nd.attrs, "eval", Context(name, 11, step))
        assert np.array_equal(ours, module(torch.from_numpy(x)).numpy()), name


def test_the_trainers_masks_follow_the_step_and_compile_keeps_torchs_modules():
    spec = nnspec.loads(RANDOM, "random.nn")
    plain = nnspec.compile(spec)
    assert type(plain.drop) is torch.nn.Dropout and type(plain.res[1]) is torch.nn.RReLU
    backend = TorchBackend(spec, seed=2)
    assert backend.model.state_dict().keys() == plain.state_dict().keys()
    seen = []
    backend.model.drop.register_forward_hook(lambda m, i, o: seen.append((i[0].detach().numpy().copy(), o.detach().numpy())))
    gen = np.random.default_rng(0)
    for _ in range(3):
        backend.step(gen.standard_normal((4, 3, 6, 6)).astype(np.float32), gen.integers(0, 10, 4), 0.01)
    assert backend.steps == 3 and len(seen) == 3
    for step, (x, out) in enumerate(seen):   # step k's mask is the stream's at step k
        keep = rng.keep_mask(rng.stream(2, "dropout", "drop", step), x.shape, 0.3)
        np.testing.assert_array_equal(out, x * (keep.astype(np.float32) * (1 / (1 - 0.3))))
    assert int(backend.state()["step"]) == 3


# ---- 2. checkpoints that resume in the other backend ---------------------------------------

TINY = """input 64
fc1: linear(24) relu
drop: dropout(0.2)
fc2: linear(10)
train {{
  data digits
  {optimizer}
  schedule {schedule}
  batch 100
  epochs 3
  seed 3
  clip norm=1.0
  l1 1e-5
  l2 1e-4
  weight_decay 1e-4
  augment noise(std=0.05)
}}
"""


def _tiny(optimizer, schedule):
    return nnspec.loads(TINY.format(optimizer=optimizer, schedule=schedule), file="tiny.nn")


def _weights(result) -> dict:
    sd = result.model.state_dict()
    return {k: (v.detach().numpy() if hasattr(v, "detach") else v).astype(np.float64) for k, v in sd.items()}


def _assert_close(a: dict, b: dict, tol: float):
    """Every tensor within `tol` of the other, relative to the tensor's largest value."""
    assert a.keys() == b.keys()
    for k in a:
        scale = max(1.0, float(np.abs(b[k]).max())) if b[k].size else 1.0
        np.testing.assert_allclose(a[k], b[k], rtol=tol, atol=tol * scale, err_msg=k)


@pytest.mark.parametrize("first, then", [("torch", "numpy"), ("numpy", "torch")])
@pytest.mark.parametrize("precision, tol", [("fp64", 1e-9), ("fp32", 1e-4)])
@pytest.mark.parametrize("optimizer, schedule", [
    ("optimizer sgd(lr=0.1, momentum=0.9, nesterov=true)", "step(every=1, gamma=0.5)"),
    ("optimizer adam(lr=0.01)", "warmup(epochs=1), cosine"),
])
def test_a_checkpoint_resumes_in_the_other_backend_on_the_same_trajectory(
        tmp_path, first, then, precision, tol, optimizer, schedule):
    spec = _tiny(optimizer, schedule)
    whole = nnspec.train(spec, backend=then, precision=precision, run=tmp_path / "whole")
    part = nnspec.train(spec, backend=first, precision=precision, run=tmp_path / "mixed", max_steps=16)
    assert part.stopped == "max_steps"     # mid epoch 2: dropout, augment, Adam/momentum state
    events = []
    rest = nnspec.train(spec, backend=then, precision=precision, run=tmp_path / "mixed", resume=True,
                        on_event=events.append)
    resumed = [e for e in events if e["event"] == "resume"][0]
    assert (resumed["step"], resumed["was"], resumed["backend"]) == (16, first, then)
    assert rest.backend == then and rest.epochs == whole.epochs == 3
    _assert_close(_weights(rest), _weights(whole), tol)
    np.testing.assert_allclose([h["train_loss"] for h in rest.history],
                               [h["train_loss"] for h in whole.history], rtol=tol)


def test_resume_still_refuses_another_seed_batch_or_data(tmp_path):
    spec = _tiny("optimizer adam(lr=0.01)", "constant")
    nnspec.train(spec, backend="torch", run=tmp_path / "r", max_steps=2)
    with pytest.raises(TrainError, match="seed was 3, now 4"):
        nnspec.train(spec, backend="numpy", run=tmp_path / "r", resume=True, seed=4)
    with pytest.raises(TrainError, match="batch was 100, now 50"):
        nnspec.train(spec, backend="numpy", run=tmp_path / "r", resume=True, batch=50)


@pytest.mark.parametrize("optimizer", ["sgd(lr=0.1, momentum=0.9)", "adagrad(lr=0.1)",
                                       "rmsprop(lr=0.01, momentum=0.5)", "adam(lr=0.01)",
                                       "adamw(lr=0.01)"])
def test_state_names_and_slots_are_the_same_in_both_backends(optimizer):
    """After the same steps the two backends' checkpoints hold the same names, shapes and
    (float64) values; each loads the other's and the next step agrees."""
    spec = _tiny(f"optimizer {optimizer}", "constant")
    a, b = NumpyBackend(spec, seed=3, precision="fp64"), TorchBackend(spec, seed=3, precision="fp64")
    gen = np.random.default_rng(1)
    batches = [(gen.standard_normal((8, 64)), gen.integers(0, 10, 8)) for _ in range(3)]
    for x, y in batches[:2]:
        a.step(x, y, 0.05), b.step(x, y, 0.05)
    sa, sb = a.state(), b.state()
    assert sorted(sa) == sorted(k for k in sb if k != "rng/torch")
    _assert_close({k: np.asarray(v, np.float64) for k, v in sa.items()},
                  {k: np.asarray(sb[k], np.float64) for k in sa}, 1e-9)
    a2, b2 = NumpyBackend(spec, seed=3, precision="fp64"), TorchBackend(spec, seed=3, precision="fp64")
    a2.load_state(sb)
    b2.load_state(sa)
    x, y = batches[2]
    for backend in (a, b, a2, b2):
        backend.step(x, y, 0.05)
    want = {k: np.asarray(v, np.float64) for k, v in a.state().items()}
    for other in (b, a2, b2):
        got = other.state()
        _assert_close(want, {k: np.asarray(got[k], np.float64) for k in want}, 1e-9)


# ---- 3. whole networks through the trainer, every optimizer ---------------------------------

NET = """input 1x8x8
conv1: conv(6, 3, pad=1, bias=false)
bn1: batchnorm relu
pool: maxpool(2)
res: {{ conv(6, 3, pad=1) rrelu
       sd: stochastic_depth(0.3) }}
gap: global_avgpool
fc1: linear(12, bias=false)   # a bias before batch norm has a zero gradient: adaptive
                              # optimizers would amplify its rounding noise
bn2: batchnorm relu
drop: dropout(0.25)
fc: linear(10)
train {{
  data npz("data.npz")
  optimizer {optimizer}
  schedule {schedule}
  batch {batch}
  epochs 100
  seed 5
{extra}}}
"""

OPTIMIZERS = [
    ("sgd(lr=0.05, momentum=0.9, nesterov=true)", "step(every=1, gamma=0.7)", "  weight_decay 1e-3\n"),
    ("sgd(lr=0.05, momentum=0.8, dampening=0.3)", "multistep(milestones=(1, 3), gamma=0.5)", "  l2 1e-3\n"),
    ("adagrad(lr=0.05)", "exponential(gamma=0.8)", "  l1 1e-4\n"),
    ("rmsprop(lr=0.005, decay=0.9, momentum=0.5)", "inv(k=0.5)", "  clip norm=0.5\n"),
    ("adam(lr=0.01)", "warmup(epochs=1), cosine", "  weight_decay 1e-3\n  clip value=0.1\n"),
    ("adamw(lr=0.01, weight_decay=0.05)", "restarts(period=2)", ""),
]


def _data(tmp_path, n):
    gen = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x=gen.standard_normal((n, 1, 8, 8)).astype(np.float32),
             y=np.arange(n) % 10)


def _train_both(tmp_path, source, precision, steps):
    path = tmp_path / "net.nn"
    path.write_text(source)
    return {backend: nnspec.train(str(path), backend=backend, precision=precision, max_steps=steps,
                                  run=tmp_path / backend, health=False)
            for backend in ("numpy", "torch")}


@pytest.mark.parametrize("optimizer, schedule, extra", OPTIMIZERS, ids=[o[0].split("(")[0] + str(i)
                                                                      for i, o in enumerate(OPTIMIZERS)])
def test_twenty_steps_of_every_optimizer_and_schedule_give_the_same_weights(tmp_path, optimizer, schedule,
                                                                              extra):
    _data(tmp_path, 40)   # batch 8: 5 steps an epoch, so the 20 steps cross 4 schedule changes
    r = _train_both(tmp_path, NET.format(optimizer=optimizer, schedule=schedule, batch=8, extra=extra),
                    "fp64", 20)
    a, b = _weights(r["numpy"]), _weights(r["torch"])
    start = nnspec.compile(nnspec.load(tmp_path / "net.nn"), backend="numpy").state_dict()
    assert not np.allclose(a["fc.weight"], start["fc.weight"], atol=1e-3)   # they did train
    _assert_close(a, b, 1e-9)
    assert [h["lr"] for h in r["numpy"].history] == [h["lr"] for h in r["torch"].history]
    assert len({h["lr"] for h in r["numpy"].history}) > 1


def test_float32_whole_network_agrees_to_1e_4(tmp_path):
    _data(tmp_path, 40)
    r = _train_both(tmp_path, NET.format(optimizer="adam(lr=0.01)", schedule="cosine", batch=8, extra=""),
                    "fp32", 20)
    _assert_close(_weights(r["numpy"]), _weights(r["torch"]), 1e-4)


def test_batch_norm_with_batch_2_keeps_the_unbiased_running_variance_in_both(tmp_path):
    """With 2 samples the unbiased variance of bn2 (after a linear layer: 2 values a channel)
    is twice the biased one: a backend that kept the biased one would be off by up to 2x."""
    _data(tmp_path, 10)
    r = _train_both(tmp_path, NET.format(optimizer="sgd(lr=0.05, momentum=0.9)", schedule="constant",
                                         batch=2, extra=""), "fp64", 20)
    a, b = _weights(r["numpy"]), _weights(r["torch"])
    _assert_close(a, b, 1e-9)
    assert int(a["bn2.num_batches_tracked"]) == 20
    assert not np.allclose(a["bn2.running_var"], 1.0, atol=1e-2)


C3D = __import__("pathlib").Path(__file__).parent / "data" / "c3d" / "c3d_tiny.nn"


def test_a_tiny_3d_network_trains_to_the_same_weights_in_both_backends(tmp_path):
    """3-D convolution (plain and depthwise), batch norm, max and average pooling (ceil mode,
    padding left out of the count), trilinear up-sampling: 6 steps, the same weights."""
    gen = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x=gen.standard_normal((12, 1, 4, 6, 6)).astype(np.float32),
             y=np.arange(12) % 10)
    r = _train_both(tmp_path, C3D.read_text("utf-8"), "fp64", 6)
    a, b = _weights(r["numpy"]), _weights(r["torch"])
    start = nnspec.compile(nnspec.load(tmp_path / "net.nn"), backend="numpy").state_dict()
    assert not np.allclose(a["conv1.weight"], start["conv1.weight"], atol=1e-4)   # they did train
    _assert_close(a, b, 1e-9)
    np.testing.assert_allclose([h["train_loss"] for h in r["numpy"].history],
                               [h["train_loss"] for h in r["torch"].history], rtol=1e-9)


# ---- parity traps of docs/numpy.md without a test elsewhere ---------------------------------

def test_a_non_finite_step_updates_nothing_in_either_backend():
    spec = _tiny("optimizer adam(lr=0.01)", "constant")
    for backend in (NumpyBackend(spec, seed=3), TorchBackend(spec, seed=3)):
        before = backend.weights()
        x = np.ones((8, 64), np.float32)
        x[0, 0] = np.nan
        assert np.isnan(backend.step(x, np.arange(8), 0.01))
        assert backend.steps == 0, backend.name
        for k, v in backend.weights().items():
            np.testing.assert_array_equal(v, before[k], err_msg=f"{backend.name} {k}")


POOLS = ["input 2x6x6\nmaxpool(2)", "input 2x7x7\nmaxpool(3, stride=2, pad=1)"]


def _pool_in_both(m, t, x, dout):
    """(output, input gradient) of the NumPy model m and the torch model t, float64."""
    out = m.forward(x)
    dx = m.backward(dout)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    ot = t(xt)
    ot.backward(torch.from_numpy(dout))
    return out, dx, ot.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize("source", POOLS)
def test_maxpool_ties_send_the_gradient_where_pytorch_sends_it(source):
    """Inputs of 0s and 1s: most windows hold several maxima; the gradient goes to one."""
    spec = nnspec.loads(source + "\n")
    gen = np.random.default_rng(0)
    x = gen.integers(0, 2, (3,) + spec.graph.input.shape).astype(np.float64)
    m, t = nnspec.compile(spec, backend="numpy", dtype="float64"), nnspec.compile(spec).double()
    dout = gen.standard_normal((3,) + spec.graph.nodes[-1].shape)
    _, dx, _, want = _pool_in_both(m, t, x, dout)
    assert dx.sum() == pytest.approx(dout.sum())     # each window's gradient lands once
    np.testing.assert_array_equal(dx != 0, want != 0)   # the same winners
    np.testing.assert_allclose(dx, want, rtol=1e-12)    # (overlaps sum in another order)


@pytest.mark.parametrize("source", POOLS)
def test_maxpool_sends_the_gradient_to_a_nan_as_pytorch_does(source):
    """A NaN wins its windows (PyTorch: `val > max || isnan(val)`): the output is NaN there
    and the NaN's cell takes the gradient; the other windows as without it. An infinite
    gradient reaches its window's winner only (no inf·0 = NaN elsewhere)."""
    spec = nnspec.loads(source + "\n")
    gen = np.random.default_rng(1)
    x = gen.integers(0, 3, (3,) + spec.graph.input.shape).astype(np.float64)
    x[0, 1, 2, 3] = x[2, 0, 0, 0] = np.nan
    m, t = nnspec.compile(spec, backend="numpy", dtype="float64"), nnspec.compile(spec).double()
    dout = gen.standard_normal((3,) + spec.graph.nodes[-1].shape)
    out, dx, out_t, want = _pool_in_both(m, t, x, dout)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(out_t))
    np.testing.assert_allclose(dx, want, rtol=1e-12)
    dout[0, 0, 0, 0] = np.inf
    _, dx, _, want = _pool_in_both(m, t, gen.standard_normal(x.shape), dout)
    np.testing.assert_allclose(dx, want, rtol=1e-12)


# ---- docs/numpy.md -------------------------------------------------------------------------

DOC = __import__("pathlib").Path(__file__).parent.parent / "docs" / "numpy.md"


def test_the_numpy_docs_example_prints_what_the_page_shows(capsys):
    import re
    blocks = re.findall(r"^```(\w*)\n(.*?)^```$", DOC.read_text("utf-8"), re.DOTALL | re.MULTILINE)
    kinds = [k for k, _ in blocks]
    i = kinds.index("python")
    assert kinds[i + 1] == "text"
    exec(compile(blocks[i][1], str(DOC), "exec"), {})   # our own documentation, not user input
    assert capsys.readouterr().out == blocks[i + 1][1]


def test_every_test_the_parity_table_cites_exists():
    import re
    root = DOC.parent.parent
    cited = set(re.findall(r"(tests/\w+\.py)::(\w+)", DOC.read_text("utf-8")))
    assert len(cited) >= 15
    for path, name in sorted(cited):
        assert re.search(rf"^def {name}\(", (root / path).read_text("utf-8"), re.MULTILINE), (path, name)


def test_the_cli_resumes_a_torch_run_in_numpy_and_says_so(tmp_path, capsys):
    from nnspec.cli import main
    path = tmp_path / "tiny.nn"
    path.write_text(TINY.format(optimizer="optimizer adam(lr=0.01)", schedule="constant"))
    run = str(tmp_path / "run")
    assert main(["train", str(path), "--epochs", "1", "--run", run]) == 0
    capsys.readouterr()
    assert main(["train", str(path), "--epochs", "2", "--run", run, "--resume", "--backend", "numpy"]) == 0
    out = capsys.readouterr().out
    assert "resuming" in out and "checkpointed by the torch backend, now numpy" in out
    assert "epoch 2/2" in out


def test_the_trainers_model_still_pickles_and_copies():
    import copy
    import io
    backend = TorchBackend(nnspec.loads(RANDOM, "random.nn"), seed=2)
    buf = io.BytesIO()
    torch.save(backend.model, buf)   # the stream layers hold a plain clock, nothing local
    clone = copy.deepcopy(backend.model)
    x = torch.randn(2, 3, 6, 6)
    assert torch.equal(clone.train()(x), backend.model.train()(x))   # the same step: the same masks
