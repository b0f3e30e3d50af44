"""`nnspec compile --emit torch`: the generated source imports no nnspec, builds the same
state-dict keys and shapes as `nnspec.compile`, and computes the same outputs with the same
weights; one class per block definition where the spec allows it."""

import ast
import importlib.util
import json
import pathlib
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

import nnspec  # noqa: E402
from nnspec.backends.torch_emit import camel, emit_torch  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.nn")) + sorted((ROOT / "tests" / "data" / "torch").glob("*.nn"))
BIG = {"vgg16", "alexnet", "alexnet_torchvision", "resnet152"}  # keys and shapes only: CPU time


def _load(source: str, tmp_path, name: str):
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"emitted_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_generated_source_round_trips(path, tmp_path):
    source = emit_torch(path)
    if path.parent.name == "specs":  # every shipped spec: one class per block definition
        assert "as instantiated at" not in source
    tree = ast.parse(source)
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                for a in n.names} | {n.module.split(".")[0] for n in ast.walk(tree)
                                     if isinstance(n, ast.ImportFrom)}
    assert imported <= {"torch", "collections"}
    g = nnspec.load(path).graph
    module = _load(source, tmp_path, path.stem)
    torch.manual_seed(0)
    emitted = getattr(module, camel(g.name))()
    compiled = nnspec.compile(path)
    assert [(k, v.shape) for k, v in emitted.state_dict().items()] == \
           [(k, v.shape) for k, v in compiled.state_dict().items()]
    if path.stem in BIG:
        return
    emitted.load_state_dict(compiled.state_dict(), strict=True)
    emitted.eval(), compiled.eval()
    x = torch.randn(2, *g.input.shape)
    with torch.no_grad():
        assert torch.allclose(emitted(x), compiled(x), atol=1e-5, rtol=1e-5)


def test_one_class_per_block_definition_with_its_parameters():
    source = emit_torch(ROOT / "specs" / "resnet50.nn")
    assert source.count("\nclass ") == 2  # Bottleneck and the network
    assert "class Bottleneck(nn.Module):" in source
    assert "def __init__(self, in_channels, width, stride=1):" in source
    assert "self.conv3 = nn.Conv2d(width, 4 * width, 1, bias=False)" in source
    assert "if stride != 1 or in_channels != 4 * width:" in source
    assert "            Bottleneck(256, 128, stride=2),\n" in source
    assert "def __init__(self, classes=1000):" in source and "nn.Linear(2048, classes)" in source
    assert "# layer1.0" in source  # the layer table, as comments
    forward = source.split("class Bottleneck")[1].split("def forward(self, x):")[1].split("\n\n")[0]
    assert [ln[8:] for ln in forward.strip("\n").splitlines()] == [
        "out = self.conv1(x)", "out = self.bn1(out)", "out = self.bn1_relu(out)",
        "out = self.conv2(out)", "out = self.bn2(out)", "out = self.bn2_relu(out)",
        "out = self.conv3(out)", "out = self.bn3(out)", "identity = x",
        "if self.downsample is not None:", "    identity = self.downsample(x)",
        "x = out + identity", "x = self.relu(x)", "return x"]


def test_network_parameters_stay_constructor_arguments(tmp_path):
    path = ROOT / "tests" / "data" / "torch" / "kitchen.nn"
    module = _load(emit_torch(path), tmp_path, "kitchen_args")
    emitted = module.Kitchen(classes=7, width=4)
    compiled = nnspec.compile(path, classes=7, width=4)
    assert [(k, v.shape) for k, v in emitted.state_dict().items()] == \
           [(k, v.shape) for k, v in compiled.state_dict().items()]


def test_blocks_that_cannot_be_written_generically_are_written_per_instance():
    source = emit_torch(ROOT / "tests" / "data" / "torch" / "kitchen_fallback.nn")
    assert "as instantiated at" in source
    assert "class Shifty(nn.Module):" in source and "class Shifty2(nn.Module):" in source


def test_a_repeat_count_parameter_becomes_a_loop(tmp_path):
    """torchvision's _make_layer, written as a spec block, comes back as a loop."""
    path = ROOT / "tests" / "data" / "torch" / "resnet18_stages.nn"
    source = emit_torch(path)
    assert """    def __init__(self, in_channels, blocks, c, stride):
        layers = []
        channels = in_channels
        for i in range(blocks):
            layers.append(Basic(channels, c, stride if i == 0 else 1))
            channels = c
        super().__init__(*layers)
""" in source
    assert "self.layer2 = Stage(64, 2, 128, 2)" in source
    module = _load(source, tmp_path, "stages")
    ref = json.loads((ROOT / "tests" / "data" / "torchvision" / "resnet18.json").read_text())
    assert [(k, list(v.shape)) for k, v in module.Resnet18Stages().state_dict().items()] == \
           [(k, list(s)) for k, s in ref["state_dict"]]


def test_the_output_is_formatted_as_black_formats_it(tmp_path):
    black = pytest.importorskip("black")
    for path in SPECS:
        source = emit_torch(path)
        assert black.format_str(source, mode=black.Mode()) == source, path.stem


def test_the_generated_file_runs_as_a_script(tmp_path):
    (tmp_path / "mlp.py").write_text(emit_torch(ROOT / "specs" / "mlp_digits.nn"))
    out = subprocess.run([sys.executable, str(tmp_path / "mlp.py")], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "torch.Size([1, 10])" in out.stdout


def test_emitting_needs_no_pytorch():
    code = (
        "import sys\n"
        "class NoTorch:\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ImportError('no torch')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "from nnspec.cli import main\n"
        f"raise SystemExit(main(['compile', {str(ROOT / 'tests' / 'data' / 'torch' / 'kitchen.nn')!r}, "
        "'--emit', 'torch']))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "class Maxout(nn.Module):" in out.stdout


def _same_function(text: str, tmp_path, name: str):
    """The emitted module, loaded with the compiled one's weights, computes the same outputs
    (eval) and input gradients (train); returns the source."""
    spec = nnspec.loads(text)
    source = emit_torch(spec)
    emitted = getattr(_load(source, tmp_path, name), camel(spec.graph.name))()
    compiled = nnspec.compile(spec)
    emitted.load_state_dict(compiled.state_dict(), strict=True)
    x = torch.randn(2, *spec.graph.input.shape)
    for model in (compiled, emitted):
        model.eval()
    with torch.no_grad():
        assert torch.allclose(emitted(x), compiled(x), atol=1e-6)
    grads = []
    for model in (compiled, emitted):
        xi = x.clone().requires_grad_(True)
        model.train()(xi).sum().backward()
        grads.append(xi.grad)
    assert torch.allclose(*grads, atol=1e-6)
    return source


@pytest.mark.parametrize("merge", ["add", "concat"])
def test_an_activation_next_to_a_path_that_reads_its_input_makes_a_new_tensor(merge, tmp_path):
    text = f"network inplace_{merge}\ninput 4x8x8\nc: conv(4, 3, pad=1)\n{merge} {{\n  relu\n  identity\n}}\n"
    source = _same_function(text, tmp_path, f"inplace_{merge}")
    assert "self.relu = nn.ReLU()\n" in source  # relu(c) + c, not 2·relu(c)
    spec = nnspec.loads(text)
    emitted = getattr(_load(source, tmp_path, f"again_{merge}"), camel(spec.graph.name))()
    emitted.load_state_dict(nnspec.compile(spec).state_dict())
    x = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        c = emitted.c(x)
        want = torch.relu(c) + c if merge == "add" else torch.cat([torch.relu(c), c], 1)
        assert torch.allclose(emitted(x), want)


def test_in_place_where_the_plan_allows_it(tmp_path):
    source = _same_function("network chain\ninput 4x8x8\nconv(4, 3, pad=1) relu\nadd {\n"
                            "  { conv(4, 1) relu }\n  identity\n}\nrelu\n", tmp_path, "chain")
    assert source.count("nn.ReLU(inplace=True)") == 3


def test_a_block_class_runs_in_place_only_if_every_instance_may(tmp_path):
    # b1's relu reads the conv (in place), b2's reads a sigmoid, whose backward keeps its output
    text = ("network differ\nblock b(sig) {\n  conv(4, 1)\n  if sig { sigmoid }\n  relu\n}\n"
            "input 4x8x8\nb1: b(false)\nb2: b(true)\n")
    compiled = nnspec.compile(nnspec.loads(text))
    assert compiled.b1[1].inplace and not compiled.b2[2].inplace
    source = _same_function(text, tmp_path, "differ")
    assert "class B(nn.Module)" in source and "self.relu = nn.ReLU()\n" in source


def test_a_default_that_reads_in_is_the_callers_and_passed_by_the_call(tmp_path):
    # The expander reads `in.c` in a default where the block is called: inner's c is outer's
    # entering depth (4), not the depth entering inner (6), so the last conv reads 4 channels.
    text = ("network sym\nblock inner(c = in.c) {\n  conv(c, 1)\n}\nblock outer(w) {\n"
            "  conv(w, 1)\n  inner\n  conv(8, 1)\n}\ninput 4x8x8\nouter(6)\n")
    assert nnspec.loads(text).graph.find("outer.1.0").shape[0] == 4
    source = _same_function(text, tmp_path, "sym")
    assert "Inner(w, c=in_channels)," in source and "nn.Conv2d(in_channels, 8, 1)" in source


def test_a_default_expression_of_a_parameter_is_computed_in_the_class(tmp_path):
    text = ("network expr\nblock b(c, w = 2 * c) {\n  conv(w, 1) relu\n  conv(c, 1)\n}\n"
            "input 3x8x8\nb(2)\nb(4, w = 3)\n")
    source = _same_function(text, tmp_path, "expr")
    assert "            w = 2 * c\n" in source and "nn.Conv2d(w, c, 1)" in source


def test_a_wrong_symbolic_depth_falls_back_to_the_graph(tmp_path, monkeypatch):
    """The depth entering each layer is checked against the graph for every instance, also
    where the emitter holds it as an expression of the block's parameters: a rule that goes
    wrong (here, made wrong on purpose) is caught, and the file is written from the graph."""
    from nnspec.backends import torch_generic
    from nnspec.backends.pysource import binop, is_sym
    text = "network wrong\nblock b(c) {\n  conv(c, 1) relu\n  conv(4, 1)\n}\ninput 3x8x8\nb(2)\nb(5)\n"
    assert "class B(nn.Sequential)" in emit_torch(nnspec.loads(text))
    right = torch_generic.Generic._shape_after

    def off_by_one(self, call, a, cur):
        c, rank = right(self, call, a, cur)
        return (binop("+", c, 1) if is_sym(c) else c), rank
    monkeypatch.setattr(torch_generic.Generic, "_shape_after", off_by_one)
    source = _same_function(text, tmp_path, "wrong")
    assert "class B(" not in source and "nn.Conv2d(5, 4, 1)" in source  # sizes written out
