"""The analyzer's training-memory figure against what PyTorch really keeps for backward.

The oracle: every tensor autograd saves during a training-mode forward pass, captured with
`torch.autograd.graph.saved_tensors_hooks`, counted once per storage, parameters and buffers
left out. The analyzer predicts it from each op's `keeps` in the registry, without torch.
"""

import math

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
    return (t.kept * 4 + t.kept_extra_bytes) * batch


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
