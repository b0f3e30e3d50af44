"""The up-sampling, normalisation, merge and regularisation ops added for encoder–decoder
networks and EfficientNet: each compiled layer computes what the hand-written PyTorch layer
computes with the same weights, the analyzer's shapes and MACs follow the documented rules,
and misuse is a clean spec error."""

import math

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import nnspec  # noqa: E402
from conftest import example_spec  # noqa: E402
from nnspec.explain import explain  # noqa: E402
from nnspec.ops import OPS  # noqa: E402

NEW = ("conv_transpose", "upsample", "layernorm", "groupnorm", "instancenorm", "mul",
       "stochastic_depth")


def build(text: str):
    spec = nnspec.loads(text)
    torch.manual_seed(0)
    return spec, nnspec.compile(spec)


def randomise(model) -> None:
    """Non-default values in every parameter and running statistic."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=g) + 0.5 if "var" in name
                        else torch.randn(t.shape, generator=g))


def same_weights(ours, ref) -> None:
    """Copy the compiled layer's state into the reference module by position."""
    a, b = ours.state_dict(), ref.state_dict()
    assert [v.shape for v in a.values()] == [v.shape for v in b.values()]
    ref.load_state_dict(dict(zip(b, a.values())))


# ---- transposed convolution ---------------------------------------------------------------------

CONVT = [  # input shape, spec arguments, torch arguments
    ((4, 5, 5), "6, 3, stride=2, pad=1, output_pad=1", dict(stride=2, padding=1, output_padding=1)),
    ((4, 5, 5), "8, 2, stride=2", dict(stride=2)),
    ((6, 4, 7), "4, (3, 2), stride=(2, 3), groups=2, bias=false", dict(stride=(2, 3), groups=2, bias=False)),
    ((4, 6, 6), "4, 3, stride=2, pad=2, dilation=2, output_pad=1",
     dict(stride=2, padding=2, dilation=2, output_padding=1)),
    ((3, 9), "5, 4, stride=3, pad=1", dict(stride=3, padding=1)),
    ((2, 3, 4, 4), "3, 3, stride=2", dict(stride=2)),
]


@pytest.mark.parametrize("shape,args,kw", CONVT)
def test_conv_transpose_computes_pytorchs_deconvolution(shape, args, kw):
    spec, model = build(f"input {'x'.join(map(str, shape))}\nup: conv_transpose({args})\n")
    node = spec.graph.nodes[-1]
    cls = {2: nn.ConvTranspose1d, 3: nn.ConvTranspose2d, 4: nn.ConvTranspose3d}[len(shape)]
    ref = cls(shape[0], node.shape[0], node.opdef.axes((shape,), node.attrs)[1], **kw)
    same_weights(model.up, ref)
    x = torch.randn(2, *shape)
    with torch.no_grad():
        y = model(x)
        assert torch.allclose(y, ref(x), atol=1e-6)
    assert tuple(y.shape[1:]) == node.shape
    # O = (N − 1)·S − 2P + D·(F − 1) + output_pad + 1, per axis
    sizes, k, s, p, d, op = node.opdef.axes((shape,), node.attrs)
    assert node.shape[1:] == tuple((N - 1) * S - 2 * P + D * (K - 1) + O + 1
                                   for N, K, S, P, D, O in zip(sizes, k, s, p, d, op))
    assert spec.analyze().totals.params == sum(t.numel() for t in ref.parameters())


@pytest.mark.parametrize("shape,args,kw", CONVT)
def test_conv_transpose_macs_are_those_of_the_convolution_it_transposes(shape, args, kw):
    """A transposed conv is the gradient of a conv (C_out -> C_in) with respect to its input,
    so it performs exactly that conv's multiply-accumulates: C_in·N_in·(C_out/groups)·F."""
    spec, model = build(f"input {'x'.join(map(str, shape))}\nup: conv_transpose({args})\n")
    node = spec.graph.nodes[-1]
    a = node.attrs
    fwd = nnspec.loads(f"input {'x'.join(map(str, node.shape))}\n"
                       f"conv({shape[0]}, {a['kernel']}, stride={a['stride']}, pad={a['pad']}, "
                       f"dilation={a['dilation']}, groups={a['groups']})\n")
    assert fwd.graph.nodes[-1].shape == shape  # the adjoint conv maps the output back
    assert spec.analyze().totals.macs == fwd.analyze().totals.macs
    # and it is that adjoint: <convT(x), y> = <x, conv(y)> with the same weight
    x, y = torch.randn(1, *shape), torch.randn(1, *node.shape)
    w = model.up.weight.detach()
    conv = {2: F.conv1d, 3: F.conv2d, 4: F.conv3d}[len(shape)]
    with torch.no_grad():
        bias = model.up.bias.view(1, -1, *[1] * (len(shape) - 1)) if model.up.bias is not None else 0
        lhs = model.up(x) - bias
        rhs = conv(y, w, stride=a["stride"], padding=a["pad"], dilation=a["dilation"], groups=a["groups"])
    assert torch.allclose((lhs * y).sum(), (x * rhs).sum(), rtol=1e-4, atol=1e-4)


def test_conv_transpose_rejects_what_pytorch_rejects():
    for text, code in [("input 4x5x5\nconv_transpose(4, 3, stride=2, output_pad=2)", "NN013"),
                       ("input 4x5x5\nconv_transpose(4, 3, pad=\"same\")", "NN013"),
                       ("input 4x5x5\nconv_transpose(6, 3, groups=4)", "NN025"),
                       ("input 4x1x1\nconv_transpose(4, 1, pad=1)", "NN020"),
                       ("input 12\nconv_transpose(4, 3)", "NN021")]:
        with pytest.raises(nnspec.SpecError) as e:
            nnspec.loads(text)
        assert e.value.diagnostics[0].code == code, text


# ---- up-sampling ----------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,scale,mode,torch_mode", [
    ((3, 4, 5), "2", "nearest", "nearest"), ((3, 4, 5), "(2, 3)", "bilinear", "bilinear"),
    ((3, 7), "3", "bilinear", "linear"), ((2, 3, 3, 2), "2", "bilinear", "trilinear"),
    ((2, 3, 3, 2), "(1, 2, 3)", "nearest", "nearest")])
def test_upsample_interpolates_as_pytorch_with_align_corners_false(shape, scale, mode, torch_mode):
    spec, model = build(f"input {'x'.join(map(str, shape))}\nupsample({scale}, mode=\"{mode}\")\n")
    x = torch.randn(2, *shape)
    s = eval(scale) if "(" in scale else int(scale)  # a literal of this test
    s = s if isinstance(s, tuple) else (s,) * (len(shape) - 1)
    kw = {} if torch_mode == "nearest" else {"align_corners": False}
    ref = F.interpolate(x, scale_factor=tuple(float(v) for v in s), mode=torch_mode, **kw)
    y = model(x)
    assert torch.allclose(y, ref, atol=1e-6)
    assert spec.graph.nodes[-1].shape == (shape[0],) + tuple(n * f for n, f in zip(shape[1:], s))
    assert tuple(y.shape[1:]) == spec.graph.nodes[-1].shape


# ---- normalisation --------------------------------------------------------------------------------

class TorchvisionLayerNorm2d(nn.LayerNorm):
    """torchvision.models.convnext.LayerNorm2d, written out."""

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


@pytest.mark.parametrize("line,ref", [
    ("layernorm", lambda: nn.LayerNorm((4, 5, 6))),
    ("layernorm(eps=1e-3, affine=false)", lambda: nn.LayerNorm((4, 5, 6), eps=1e-3, elementwise_affine=False)),
    ("layernorm(over=\"channels\", eps=1e-6)", lambda: TorchvisionLayerNorm2d(4, eps=1e-6)),
    ("groupnorm(2)", lambda: nn.GroupNorm(2, 4)),
    ("groupnorm(4, eps=1e-3, affine=false)", lambda: nn.GroupNorm(4, 4, eps=1e-3, affine=False)),
    ("instancenorm", lambda: nn.InstanceNorm2d(4)),
    ("instancenorm(affine=true, track_running_stats=true, momentum=0.2)",
     lambda: nn.InstanceNorm2d(4, affine=True, track_running_stats=True, momentum=0.2)),
])
def test_normalisation_layers_equal_pytorchs_with_the_same_weights(line, ref):
    spec, model = build(f"input 4x5x6\nnorm: {line}\n")
    ref = ref()
    assert list(model.norm.state_dict()) == list(ref.state_dict())  # PyTorch's names
    randomise(model)
    same_weights(model.norm, ref)
    x = torch.randn(3, 4, 5, 6) * 3 + 1
    for mode in ("train", "eval"):
        getattr(model, mode)(), getattr(ref, mode)()
        assert torch.allclose(model(x), ref(x), atol=1e-5), mode
    assert torch.equal(model.norm.state_dict().get("running_mean", torch.zeros(1)),
                       ref.state_dict().get("running_mean", torch.zeros(1)))
    totals = spec.analyze().totals
    assert totals.params == sum(p.numel() for p in ref.parameters())
    assert totals.buffers == sum(b.numel() for n, b in ref.named_buffers() if "num_batches" not in n)


def test_layernorm_normalises_what_its_documentation_says():
    spec, model = build("input 4x5x6\nlayernorm(affine=false)\nlayernorm(over=\"channels\", affine=false)\n")
    x = torch.randn(2, 4, 5, 6) * 5 + 3
    y = model.layernorm(x)
    assert torch.allclose(y.mean(dim=(1, 2, 3)), torch.zeros(2), atol=1e-5)   # per sample
    z = model.layernorm_1(x)
    assert torch.allclose(z.mean(dim=1), torch.zeros(2, 5, 6), atol=1e-5)     # per position
    assert [t.shape for t in OPS["layernorm"].tensors(((4, 5, 6),), OPS["layernorm"].bind((), {}))] \
        == [(4, 5, 6), (4, 5, 6)]


def test_normalisation_misuse_is_a_spec_error():
    for text, code in [("input 6x4x4\ngroupnorm(4)", "NN025"), ("input 6\ninstancenorm", "NN021"),
                       ("input 6x4x4\nlayernorm(over=\"rows\")", "NN013")]:
        with pytest.raises(nnspec.SpecError) as e:
            nnspec.loads(text)
        assert e.value.diagnostics[0].code == code, text


# ---- mul: squeeze-and-excitation --------------------------------------------------------------

class SqueezeExcitation(nn.Module):
    """torchvision.ops.SqueezeExcitation, written out."""

    def __init__(self, c, squeeze):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1, self.fc2 = nn.Conv2d(c, squeeze, 1), nn.Conv2d(squeeze, c, 1)
        self.activation, self.scale_activation = nn.ReLU(), nn.Sigmoid()

    def forward(self, x):
        s = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return s * x


SE = """input 8x6x5
se: mul {
  { avgpool: adaptive_avgpool(1)
    fc1: conv(2, 1)
    activation: relu
    fc2: conv(in.c, 1)
    scale_activation: sigmoid }
  identity
}
"""


def test_mul_is_squeeze_and_excitation_with_torchvisions_names():
    spec, model = build(SE)
    ref = SqueezeExcitation(8, 2)
    assert [k for k in model.state_dict()] == [f"se.{k}" for k in ref.state_dict()]
    ref.load_state_dict({k[3:]: v for k, v in model.state_dict().items()})
    x = torch.randn(3, 8, 6, 5)
    assert torch.allclose(model(x), ref(x), atol=1e-6)
    node = spec.graph.find("se")
    assert node is None or node.op != "mul"  # `se` is a group; its last node is the mul
    assert spec.graph.nodes[-1].op == "mul" and spec.graph.nodes[-1].shape == (8, 6, 5)
    assert spec.analyze().totals.macs == 8 * 2 + 2 * 8  # the two 1x1 convs; the product is free


def test_mul_broadcasts_axes_of_size_one_and_names_the_paths_that_do_not():
    g = nnspec.loads("input 4x6x6\nmul {\n  identity\n  { conv(1, 1) }\n}\n").graph
    assert g.nodes[-1].shape == (4, 6, 6)  # a 1x6x6 spatial gate
    with pytest.raises(nnspec.SpecError) as e:
        nnspec.loads("input 4x6x6\nmul {\n  identity\n  { conv(3, 1) adaptive_avgpool(1) }\n}\n",
                     file="se.nn")
    d = e.value.diagnostics[0]
    assert d.code == "NN022" and "broadcast" in d.message and "4x6x6, 3x1x1" in d.message
    assert (d.span.line, d.span.column) == (2, 1)
    assert any("path 2" in note and "3x1x1" in note for note in d.notes)


def test_mul_needs_a_body_like_the_other_merges():
    with pytest.raises(nnspec.SpecError) as e:
        nnspec.loads("input 4x6x6\nrelu mul\n")
    assert e.value.diagnostics[0].code == "NN010"
    with pytest.raises(nnspec.SpecError):
        nnspec.loads("input 4x6x6\nmul(2) {\n  identity\n}\n")


# ---- stochastic depth ---------------------------------------------------------------------------

def torchvision_stochastic_depth(x, p, mode, training):
    """torchvision.ops.stochastic_depth, written out."""
    if not training or p == 0.0:
        return x
    survival = 1.0 - p
    size = [x.shape[0]] + [1] * (x.ndim - 1) if mode == "row" else [1] * x.ndim
    noise = torch.empty(size, dtype=x.dtype).bernoulli_(survival)
    if survival > 0.0:
        noise.div_(survival)
    return x * noise


@pytest.mark.parametrize("p,mode", [(0.3, "row"), (0.5, "batch"), (0.0, "row"), (1.0, "row")])
def test_stochastic_depth_is_torchvisions(p, mode):
    spec, model = build(f"input 4x3x3\nsd: stochastic_depth({p}, mode=\"{mode}\")\n")
    x = torch.randn(64, 4, 3, 3)
    model.train()
    torch.manual_seed(5)
    y = model(x)
    torch.manual_seed(5)
    assert torch.equal(y, torchvision_stochastic_depth(x, p, mode, True))
    model.eval()
    assert torch.equal(model(x), x)


def test_stochastic_depth_drops_whole_samples_and_scales_survivors():
    _, model = build("input 4x3x3\nstochastic_depth(0.25)\n")
    model.train()
    torch.manual_seed(0)
    x = torch.rand(4000, 4, 3, 3) + 1
    y = model(x)
    kept = (y != 0).flatten(1)
    assert torch.equal(kept.all(1), kept.any(1))  # per sample: all kept or all dropped
    survivors = kept.all(1)
    assert torch.allclose(y[survivors], x[survivors] / 0.75)
    assert abs(1 - survivors.float().mean().item() - 0.25) < 0.03


def test_the_new_ops_have_the_traits_and_keeps_the_analyzer_and_lint_read():
    assert OPS["stochastic_depth"].traits >= {"random", "train_only"}
    assert OPS["conv_transpose"].traits >= {"weighted"}
    assert {"normalizes"} <= OPS["layernorm"].traits & OPS["groupnorm"].traits & OPS["instancenorm"].traits
    assert "batch_stats" not in OPS["layernorm"].traits | OPS["groupnorm"].traits
    assert OPS["mul"].traits >= {"merge"} and OPS["mul"].keeps == {"input"}
    assert OPS["upsample"].keeps == frozenset()


@pytest.mark.parametrize("op", NEW)
def test_explain_derives_every_number_of_the_example(op):
    spec = nnspec.loads(example_spec(op))
    node = spec.graph.nodes[-1]
    text = explain(spec.analyze(), node.name)
    a = spec.analyze().layers[node.id]
    assert "x".join(map(str, node.shape)) in text
    assert f"{a.params:,}" in text and f"{a.macs:,}" in text


@pytest.mark.parametrize("op", NEW)
def test_lint_reads_specs_with_the_new_ops(op):
    from nnspec.lint.engine import lint_source
    r = lint_source(example_spec(op), "ex.nn")
    assert not r.fatal


# ---- random transposed convolutions and up-samplings: PyTorch as the oracle -------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@st.composite
def upsampling_case(draw):
    """(input shape, spec line, the torch module written directly)"""
    rank = draw(st.sampled_from([1, 2]))
    c = draw(st.sampled_from([2, 4]))
    shape = (c,) + (draw(st.integers(1, 6)),) * rank
    if draw(st.booleans()):
        g = draw(st.sampled_from([1, 2]))
        k, s, d = draw(st.integers(1, 4)), draw(st.integers(1, 3)), draw(st.integers(1, 2))
        p, op = draw(st.integers(0, 3)), draw(st.integers(0, 2))
        line = f"conv_transpose({2 * g}, {k}, stride={s}, pad={p}, output_pad={op}, dilation={d}, groups={g})"
        cls = nn.ConvTranspose1d if rank == 1 else nn.ConvTranspose2d
        return shape, line, lambda: cls(c, 2 * g, k, stride=s, padding=p, output_padding=op,
                                        dilation=d, groups=g)
    mode, f = draw(st.sampled_from(["nearest", "bilinear"])), draw(st.integers(1, 3))
    torch_mode = mode if mode == "nearest" else ("linear" if rank == 1 else "bilinear")
    kw = {} if mode == "nearest" else {"align_corners": False}
    return shape, f"upsample({f}, mode=\"{mode}\")", \
        lambda: nn.Upsample(scale_factor=float(f), mode=torch_mode, **kw)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(upsampling_case())
def test_up_sampling_shapes_and_refusals_agree_with_pytorch(case):
    shape, line, module = case
    text = f"input {'x'.join(map(str, shape))}\nup: {line}\n"
    x = torch.randn(2, *shape)
    try:
        spec = nnspec.loads(text)
    except nnspec.SpecError:  # refused statically: PyTorch refuses it, or outputs nothing
        try:
            y = module()(x)
        except (RuntimeError, ValueError):
            return
        assert y.numel() == 0, text
        return
    model = nnspec.compile(spec)
    ref = module()
    same_weights(model.up, ref)
    with torch.no_grad():
        y = model(x)
        assert torch.allclose(y, ref(x), atol=1e-5), text
    assert tuple(y.shape[1:]) == spec.graph.nodes[-1].shape, text
    assert spec.analyze().totals.params == sum(p.numel() for p in ref.parameters())


def test_train_section_initialisation_covers_the_new_layers():
    """Transposed convs are drawn by fan like convs (fans as torch.nn.init reads the weight);
    normalisation layers start at γ = 1, β = 0."""
    text = """input 16x8x8
up: conv_transpose(32, 4, stride=2, pad=1)
ln: layernorm(over="channels")
gn: groupnorm(4)
inorm: instancenorm(affine=true)
train {
  init he(dist=normal, mode=fan_in)
  seed 3
}
"""
    model = nnspec.compile(nnspec.loads(text))
    w = model.up.weight.detach()
    fan_in, _ = nn.init._calculate_fan_in_and_fan_out(w)
    assert fan_in == 32 * 4 * 4
    assert abs(w.std().item() / math.sqrt(2 / fan_in) - 1) < 0.05
    assert torch.all(model.up.bias == 0)
    for name in ("ln", "gn", "inorm"):
        m = getattr(model, name)
        assert torch.all(m.weight == 1) and torch.all(m.bias == 0), name
    default = nnspec.compile(nnspec.loads(text.replace("init he(dist=normal, mode=fan_in)", "init default")))
    w = default.up.weight.detach()
    bound = 1 / math.sqrt(fan_in)  # torch's own ConvTranspose2d.reset_parameters bound
    assert w.abs().max().item() <= bound and w.abs().max().item() > 0.95 * bound


def test_nothing_overwrites_what_stochastic_depth_passes_through_at_evaluation():
    """At evaluation stochastic depth returns its input itself; a ReLU after it must not run in
    place when another path (here the residual's identity) reads that input."""
    spec, model = build("input 4x5x5\nc: conv(4, 3, pad=1)\nadd {\n  { stochastic_depth(0.2) relu }\n"
                        "  identity\n}\n")
    model.eval()
    x = torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        c = model.c(x)
        assert torch.allclose(model(x), torch.relu(c) + c)


@pytest.mark.parametrize("shape,line,ref", [
    ((10,), "layernorm", lambda: nn.LayerNorm(10)),
    ((10,), "layernorm(over=\"channels\")", lambda: nn.LayerNorm(10)),
    ((6,), "groupnorm(3)", lambda: nn.GroupNorm(3, 6)),
    ((4, 9), "layernorm(over=\"channels\")", lambda: ChannelsLastLayerNorm1d(4)),
    ((4, 9), "instancenorm(affine=true)", lambda: nn.InstanceNorm1d(4, affine=True)),
    ((4, 3, 3, 3), "instancenorm", lambda: nn.InstanceNorm3d(4)),
    ((4, 3, 3, 3), "groupnorm(2)", lambda: nn.GroupNorm(2, 4)),
])
def test_normalisation_of_vectors_sequences_and_volumes(shape, line, ref):
    spec, model = build(f"input {'x'.join(map(str, shape))}\nnorm: {line}\n")
    ref = ref()
    randomise(model)
    same_weights(model.norm, ref)
    x = torch.randn(3, *shape) * 2 + 1
    assert torch.allclose(model(x), ref(x), atol=1e-5)
    assert spec.analyze().totals.params == sum(p.numel() for p in ref.parameters())


class ChannelsLastLayerNorm1d(nn.LayerNorm):
    """Channels-last layer norm of a CxL sequence, written out."""

    def forward(self, x):
        return F.layer_norm(x.transpose(1, 2), self.normalized_shape, self.weight, self.bias,
                            self.eps).transpose(1, 2)
