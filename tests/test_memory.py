"""The analyzer's training-memory figures against what PyTorch really does.

Two oracles:
- what backward keeps (`totals.saved_bytes`): every tensor autograd saves during a
  training-mode forward pass, captured with `torch.autograd.graph.saved_tensors_hooks`,
  counted once per storage, parameters and buffers left out;
- the peak of a training step (`totals.train_bytes`): the bytes of the storages alive at
  every moment of a forward + loss + backward, counted from every tensor an op returns
  (a `TorchDispatchMode`; a storage lives while a tensor on it does, autograd's saved ones
  included) — the parameters, and the input batch (held by the caller throughout), added.
The analyzer predicts both from the plan's order and each op's `keeps` in the registry,
without torch.
"""

import gc
import math
import pathlib
import re
import weakref

import pytest

torch = pytest.importorskip("torch")

import nnspec  # noqa: E402
from nnspec.backends.torch import compile_torch  # noqa: E402


def saved_bytes(spec, batch: int) -> int:
    model = compile_torch(spec)
    model.train()
    state = {t.untyped_storage().data_ptr() for t in list(model.parameters()) + list(model.buffers())}
    seen: dict[int, int] = {}

    def pack(t):
        st = t.untyped_storage()
        # batch-sized tensors only: batch norm's per-channel statistics are not activations
        if st.data_ptr() not in state and t.dim() >= 1 and t.shape[0] == batch:
            seen[st.data_ptr()] = st.nbytes()
        return t

    torch.manual_seed(0)
    x = torch.randn((batch,) + spec.graph.input.shape)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return sum(seen.values())


def predicted_bytes(spec, batch: int) -> int:
    t = spec.analyze(batch=batch).totals
    assert t.saved_bytes == (t.kept * 4 + t.kept_extra_bytes) * batch
    return t.saved_bytes


@pytest.mark.parametrize("name", ["mlp_digits", "lenet5", "resnet18"])
def test_kept_activations_equal_what_autograd_saves(name):
    spec = nnspec.load(f"specs/{name}.nn")
    assert predicted_bytes(spec, 3) == saved_bytes(spec, 3)


@pytest.mark.parametrize("name", ["cnn_digits", "googlenet"])
def test_kept_activations_with_dropout_within_one_percent(name):
    # PyTorch's CPU dropout keeps a float mask (4 bytes per value); the estimate counts the
    # 1-byte boolean mask that PyTorch's fused kernels and the NumPy executor keep.
    spec = nnspec.load(f"specs/{name}.nn")
    got, want = predicted_bytes(spec, 2), saved_bytes(spec, 2)
    assert got <= want
    assert math.isclose(got, want, rel_tol=0.01)


def test_inplace_relu_shares_its_producers_storage():
    # conv -> relu (in place, keeps its output) -> conv: one stored value per conv input
    spec = nnspec.loads("input 2x6x6\nconv(3, 3, pad=1) relu\nconv(4, 3, pad=1)\n")
    t = spec.analyze().totals
    assert t.kept == 2 * 36 + 3 * 36      # the input (conv 1) and relu's output (relu, conv 2)
    assert predicted_bytes(spec, 2) == saved_bytes(spec, 2)


def test_maxpool_keeps_its_input_and_int64_indices():
    # (a layer with weights first: autograd records nothing before the first parameter)
    spec = nnspec.loads("input 2x6x6\nconv(2, 1)\nmaxpool(2)\nflatten\nlinear(3)\n")
    t = spec.analyze().totals
    assert t.kept == 2 * 36 + 2 * 36 + 2 * 9   # conv input, pool input, flatten's view of the pool output
    assert t.kept_extra_bytes == 8 * 2 * 9
    assert predicted_bytes(spec, 2) == saved_bytes(spec, 2)


def test_nothing_is_kept_before_the_first_trainable_parameter():
    spec = nnspec.loads("input 2x6x6\nmaxpool(2) relu\nflatten\nlinear(3)\n")
    t = spec.analyze().totals
    assert (t.kept, t.kept_extra_bytes) == (2 * 9, 0)   # only linear's input
    assert predicted_bytes(spec, 2) == saved_bytes(spec, 2)
    frozen = nnspec.loads("input 2x6x6\nc: conv(2, 1) relu\nflatten\nlinear(3)\n"
                          "train {\n  freeze \"c\"\n}\n")
    assert predicted_bytes(frozen, 2) == saved_bytes(frozen, 2)


def test_relu_after_dropout_never_overwrites_a_value_another_path_reads():
    # at evaluation nn.Dropout returns its input itself: an in-place ReLU after it would
    # overwrite the identity path's value
    from nnspec.plan import may_run_in_place
    spec = nnspec.loads("input 4x5x5\nconv(4, 1)\nadd {\n  { dropout relu }\n  identity\n}\n")
    g = spec.graph
    assert not any(may_run_in_place(g, nd) for nd in g.layers if nd.op == "relu")
    model = compile_torch(spec).eval()
    x = torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        c = model.get_submodule("conv")(x)
        assert torch.allclose(model(x), torch.relu(c) + c)


# ---- the peak of a training step ----------------------------------------------------------


def step_peak(spec, batch: int) -> int:
    """Peak bytes alive during forward + cross-entropy + backward (plain SGD: no optimizer
    state), parameters and buffers included; the step starts without gradients."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    model = compile_torch(spec).train()
    torch.manual_seed(0)
    x = torch.randn((batch,) + spec.graph.input.shape)
    y = torch.randint(0, 2, (batch,))
    state = list(model.parameters()) + list(model.buffers())
    known = {t.untyped_storage().data_ptr() for t in state + [x]}

    class Live(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.refs, self.nbytes, self.now, self.peak = {}, {}, 0, 0

        def drop(self, key):
            self.refs[key] -= 1
            if not self.refs[key]:
                del self.refs[key]
                self.now -= self.nbytes.pop(key)

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_flatten(out)[0]:
                if not isinstance(t, torch.Tensor):
                    continue
                st = t.untyped_storage()
                key = st.data_ptr()
                if key in known or st.nbytes() == 0:
                    continue
                if key not in self.refs:
                    self.refs[key], self.nbytes[key] = 0, st.nbytes()
                    self.now += st.nbytes()
                    self.peak = max(self.peak, self.now)
                self.refs[key] += 1
                weakref.finalize(t, self.drop, key)
            return out

    live = Live()
    with live:
        torch.nn.functional.cross_entropy(model(x), y).backward()
    gc.collect()
    grads = sum(p.grad.nbytes for p in model.parameters() if p.grad is not None)
    assert live.now == grads   # the oracle saw every activation die: only the gradients remain
    return live.peak + x.nbytes + sum(t.nbytes for t in state)


ROOT = pathlib.Path(__file__).resolve().parent.parent


def resnet18_at(size: int):
    text = (ROOT / "specs" / "resnet18.nn").read_text().replace("input 3x224x224", f"input 3x{size}x{size}")
    return nnspec.loads(re.sub(r"->\s*\S+", "", text), "resnet18_small.nn", classes=10)


@pytest.mark.parametrize("name, batch", [("mlp", 16), ("lenet5_28", 16), ("small_vgg", 4), ("resnet18", 2)])
def test_train_bytes_is_the_peak_of_a_training_step(name, batch):
    spec = resnet18_at(32) if name == "resnet18" else nnspec.load(ROOT / "benchmarks" / "specs" / f"{name}.nn")
    t = spec.analyze(batch=batch).totals
    assert t.optimizer_slots == 1   # these specs train with momentum: the oracle's step has none
    want = step_peak(spec, batch)
    got = t.train_bytes - t.trainable * 4 * t.optimizer_slots
    # what the estimate leaves out: the loss's values (log-softmax, batch x classes) and
    # batch norm's per-channel saved mean and inverse deviation: a few KiB
    assert 0 <= want - got <= 4 * batch * 10 + 64 + 8 * 4 * 512, (got, want, t.peak_at)


def test_the_peak_is_composed_of_its_parts():
    spec = nnspec.load(ROOT / "benchmarks" / "specs" / "lenet5_28.nn")
    t = spec.analyze(batch=16).totals
    assert t.train_bytes == t.param_bytes + t.trainable * 4 * t.optimizer_slots + t.peak_bytes
    assert t.peak_bytes == sum(t.peak_parts)
    assert t.peak_at == "backward of c1_tanh"
    saved, act_grads, param_grads = t.peak_parts
    # the input and tanh's output (kept for c1's and tanh's backward); tanh's output gradient
    # and its input gradient being made; every parameter gradient but c1's
    assert saved == 16 * (784 + 6 * 784) * 4
    assert act_grads == 2 * 16 * 6 * 784 * 4
    assert param_grads == (t.trainable - (6 * 25 + 6)) * 4


def test_an_mlp_peaks_where_the_big_weight_gradient_is_made():
    # hand count: input 784 -> fc1 256 -> relu -> fc2 10, batch 8, float32
    spec = nnspec.loads("input 784\nfc1: linear(256) relu\nfc2: linear(10)\n")
    t = spec.analyze(batch=8).totals
    assert t.peak_at == "backward of fc1"
    # fc1's input (kept), fc1's output gradient, every parameter gradient
    assert t.peak_bytes == 4 * (8 * 784 + 8 * 256 + (784 * 256 + 256) + (256 * 10 + 10))
    assert 0 <= step_peak(spec, 8) - t.train_bytes <= 8   # the loss's scalars


def test_explain_shows_the_peak_at_its_layer():
    from nnspec.explain import explain
    from nnspec.report import human_bytes
    an = nnspec.load(ROOT / "benchmarks" / "specs" / "lenet5_28.nn").analyze(batch=16)
    t = an.totals
    here = explain(an, "c1_tanh")
    assert "its backward keeps its output" in here
    assert f"the step's peak is this layer's backward: {human_bytes(t.train_bytes)}" in here
    assert f"activation gradients {human_bytes(2 * 16 * 6 * 784 * 4)}" in here
    assert "the step's peak, " in explain(an, "c3") and "is at the backward of c1_tanh" in explain(an, "c3")
