"""The torch backend's table covers the op registry; what it cannot build is reported at build
time with the spec location; initialisation, freezing, pickling, torch.compile, CUDA."""

import copy
import pickle

import pytest

torch = pytest.importorskip("torch")

import nnspec  # noqa: E402
from nnspec.backends import torch as tb  # noqa: E402
from nnspec.backends.init import initial_weights  # noqa: E402
from nnspec.ops import OPS  # noqa: E402
from conftest import example_spec  # noqa: E402


def test_every_op_is_in_the_table_or_explicitly_unsupported():
    assert set(OPS) == set(tb.TORCH) | set(tb.UNSUPPORTED)
    assert not set(tb.TORCH) & set(tb.UNSUPPORTED)


@pytest.mark.parametrize("op", sorted(set(OPS) - {"input"}))
def test_every_op_builds_and_runs_on_its_registry_example(op):
    """Each op on its registry example (`Example`): the module builds, runs, and its output
    shape and parameter count are the registry's."""
    spec = nnspec.loads(example_spec(op))
    model = nnspec.compile(spec).eval()
    with torch.no_grad():
        out = model(torch.randn(2, *spec.graph.input.shape))
    assert tuple(out.shape[1:]) == spec.graph.nodes[-1].shape
    assert spec.graph.nodes[-1].op == op
    assert sum(p.numel() for p in model.parameters()) == spec.analyze().totals.params


def test_an_unsupported_op_is_reported_at_build_time_with_its_location(monkeypatch):
    monkeypatch.setitem(tb.UNSUPPORTED, "lrn", "not in this backend (a test)")
    spec = nnspec.loads("input 3x8x8\nconv(4, 3)\nnorm: lrn(3)\nrelu", file="net.nn")
    with pytest.raises(nnspec.SpecError) as e:
        nnspec.compile(spec)
    d, = e.value.diagnostics
    assert d.code == "NN040" and "norm" in d.message and "a test" in d.message
    assert (d.span.file, d.span.line, d.span.column) == ("net.nn", 3, 7)
    assert "^^^" in e.value.render()


def test_arguments_torch_cannot_express_are_reported_with_the_block_chain():
    # the registry measures pooling padding against the dilated window, torch against the kernel
    text = "input 3x16x16\nblock b {\n  maxpool(3, dilation=2, pad=2)\n}\nx: b\ny: b"
    with pytest.raises(nnspec.SpecError) as e:
        nnspec.compile(nnspec.loads(text))
    assert [d.code for d in e.value.diagnostics] == ["NN040", "NN040"]  # both instances
    assert "half the kernel" in e.value.diagnostics[0].message
    assert e.value.diagnostics[1].chain[0].instance == "y"


def test_a_layer_named_like_an_nn_module_attribute_is_refused():
    with pytest.raises(nnspec.SpecError, match="attribute of torch.nn.Module"):
        nnspec.compile(nnspec.loads("input 4\nforward: linear(2)"))


def test_compile_takes_paths_specs_and_network_arguments(tmp_path):
    path = tmp_path / "mlp.nn"
    path.write_text("network mlp(hidden = 8, classes = 3)\ninput 4\n"
                    "linear(hidden) relu\nout: linear(classes)\n")
    assert nnspec.compile(str(path)).out.out_features == 3
    assert nnspec.compile(path, classes=7).out.out_features == 7
    spec = nnspec.load(path, hidden=5)
    model = nnspec.compile(spec, classes=2)  # overrides combine
    assert (model.linear.out_features, model.out.out_features) == (5, 2)
    with pytest.raises(ValueError, match="unknown backend"):
        nnspec.compile(spec, backend="jax")


def test_residual_blocks_are_modules_with_readable_generated_forwards():
    model = nnspec.compile("specs/resnet18.nn")
    assert type(model.layer1).__name__ == "Sequential"          # a chain of blocks
    assert model.layer2[0]._get_name() == "basic"                # a block with a shortcut
    src = tb.module_source(model.layer2[0])
    assert "self.downsample(x)" in src and src.startswith("def forward(self, x):")
    # the shortcut reads the block input, which the main path must not overwrite in place
    assert model.layer2[0].bn1_relu.inplace and not isinstance(model.layer2[0].downsample[1], torch.nn.ReLU)


def test_in_place_relu_only_where_nothing_else_reads_the_input():
    spec = nnspec.loads("input 3x8x8\nconv(4, 3)\nadd {\n  relu\n  identity\n}\nsigmoid relu")
    model = nnspec.compile(spec)
    relus = [m for m in model.modules() if isinstance(m, torch.nn.ReLU)]
    assert [r.inplace for r in relus] == [False, False]  # shared input; after a sigmoid


SEEDED = """network net
input 3x8x8
conv1: conv(4, 3) batchnorm relu
fc: { flatten linear(10) }
out: prelu
train {
  init he(mode=fan_out)
  init "fc*" xavier(dist=uniform)
  init "conv1_batchnorm" constant(0.5)
  seed 7
}
"""


def test_initialisation_is_seeded_and_follows_the_train_section():
    a, b = nnspec.compile(nnspec.loads(SEEDED)), nnspec.compile(nnspec.loads(SEEDED))
    for (n, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), n
    sd = a.state_dict()
    assert torch.all(sd["conv1.bias"] == 0) and torch.all(sd["fc.1.bias"] == 0)
    assert torch.all(sd["conv1_batchnorm.weight"] == 0.5)
    assert torch.all(sd["conv1_batchnorm.running_var"] == 1) and torch.all(sd["out.weight"] == 0.25)
    fan_out = 4 * 3 * 3
    assert abs(sd["conv1.weight"].std().item() - (2 / fan_out) ** 0.5) < 0.1
    bound = (6 / (144 + 10)) ** 0.5
    assert sd["fc.1.weight"].abs().max() <= bound and sd["fc.1.weight"].abs().max() > 0.8 * bound
    # the same numbers the framework-free init gives every backend
    arrays = initial_weights(nnspec.loads(SEEDED).graph, 7)
    assert all(torch.equal(torch.from_numpy(arrays[k]), sd[k]) for k in arrays)
    other = nnspec.compile(nnspec.loads(SEEDED.replace("seed 7", "seed 8")))
    assert not torch.equal(other.conv1.weight, a.conv1.weight)


def test_without_init_or_seed_layers_keep_pytorchs_defaults():
    torch.manual_seed(3)
    a = nnspec.compile(nnspec.loads("input 5\nlinear(4)"))
    torch.manual_seed(3)
    ref = torch.nn.Linear(5, 4)
    assert torch.equal(a.linear.weight, ref.weight) and torch.equal(a.linear.bias, ref.bias)


def test_an_init_that_cannot_apply_is_a_spec_error():
    text = "input 4\nbn: batchnorm\ntrain {\n  init \"bn\" he\n}"
    with pytest.raises(nnspec.SpecError, match="fan-in") as e:
        nnspec.compile(nnspec.loads(text))
    assert e.value.diagnostics[0].span.line == 4


def test_frozen_layers_do_not_require_gradients():
    text = "input 4\nbody: { linear(8) relu }\nhead: linear(2)\ntrain {\n  freeze \"body\"\n}"
    spec = nnspec.loads(text)
    model = nnspec.compile(spec)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == spec.analyze().totals.trainable == 18


def test_compiled_models_pickle_and_deepcopy():
    model = nnspec.compile("tests/data/torch/kitchen.nn").eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        y = model(x)
        for clone in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
            assert torch.equal(clone(x), y)


def test_torch_compile_traces_the_whole_graph():
    model = nnspec.compile("tests/data/torch/kitchen.nn").eval()
    x = torch.randn(2, 3, 16, 16)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        assert torch.allclose(compiled(x), model(x), atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_runs_on_cuda():
    model = nnspec.compile("tests/data/torch/kitchen.nn").eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        y = model(x)
        z = model.to("cuda")(x.to("cuda"))
    assert torch.allclose(z.cpu(), y, atol=1e-4)


def test_without_a_seed_the_rules_are_drawn_with_torchs_generator():
    text = "input 3x8x8\nconv(64, 3)\ntrain {\n  init he(mode=fan_out)\n}"
    torch.manual_seed(5)
    a = nnspec.compile(nnspec.loads(text))
    torch.manual_seed(5)
    b = nnspec.compile(nnspec.loads(text))
    assert torch.equal(a.conv.weight, b.conv.weight) and torch.all(a.conv.bias == 0)
    assert abs(a.conv.weight.std().item() / (2 / (64 * 9)) ** 0.5 - 1) < 0.05


@pytest.mark.parametrize("module", ["torch", "torch_emit", "pysource", "init"])
def test_docstring_examples(module):
    import doctest
    import importlib
    mod = importlib.import_module(f"nnspec.backends.{module}")
    assert doctest.testmod(mod).failed == 0
