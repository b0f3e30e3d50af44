"""specs/efficientnet_b0.nn is torchvision's efficientnet_b0: the same state_dict (keys, shapes,
order; tests/data/torchvision/efficientnet_b0.json, dumped from torchvision), the same MACs
(measured there by forward hooks), and the same outputs as an independent hand-written PyTorch
EfficientNet-B0 (torchvision's structure and names; torchvision itself cannot be imported
here) with the compiled model's weights loaded strictly."""

import json
import pathlib
from functools import lru_cache

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import nnspec  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "efficientnet_b0.nn"
REF = json.loads((ROOT / "tests" / "data" / "torchvision" / "efficientnet_b0.json").read_text())


# ---- torchvision's EfficientNet-B0, written out (torchvision/models/efficientnet.py) ---------

class ConvNormActivation(nn.Sequential):
    def __init__(self, cin, cout, k, stride=1, groups=1, act=True):
        layers = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
                  nn.BatchNorm2d(cout)]
        if act:
            layers.append(nn.SiLU(inplace=True))
        super().__init__(*layers)


class SqueezeExcitation(nn.Module):
    def __init__(self, c, squeeze):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1, self.fc2 = nn.Conv2d(c, squeeze, 1), nn.Conv2d(squeeze, c, 1)
        self.activation, self.scale_activation = nn.SiLU(inplace=True), nn.Sigmoid()

    def forward(self, x):
        return self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x))))) * x


class StochasticDepth(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        noise = torch.empty([x.shape[0], 1, 1, 1], dtype=x.dtype).bernoulli_(1 - self.p)
        return x * noise.div_(1 - self.p)


class MBConv(nn.Module):
    def __init__(self, expand, k, stride, cin, cout, p):
        super().__init__()
        self.use_res_connect = stride == 1 and cin == cout
        mid = cin * expand
        layers = [ConvNormActivation(cin, mid, 1)] if mid != cin else []
        layers += [ConvNormActivation(mid, mid, k, stride, groups=mid),
                   SqueezeExcitation(mid, max(1, cin // 4)),
                   ConvNormActivation(mid, cout, 1, act=False)]
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(p)

    def forward(self, x):
        out = self.block(x)
        if self.use_res_connect:
            out = self.stochastic_depth(out) + x
        return out


SETTING = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
           (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1)]


class EfficientNetB0(nn.Module):
    def __init__(self, classes=1000, stochastic_depth_prob=0.2, dropout=0.2):
        super().__init__()
        layers = [ConvNormActivation(3, 32, 3, 2)]
        total, block_id = sum(s[-1] for s in SETTING), 0
        for expand, k, stride, cin, cout, n in SETTING:
            stage = []
            for i in range(n):
                stage.append(MBConv(expand, k, stride if i == 0 else 1, cin if i == 0 else cout, cout,
                                    stochastic_depth_prob * block_id / total))
                block_id += 1
            layers.append(nn.Sequential(*stage))
        layers.append(ConvNormActivation(320, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout, inplace=True), nn.Linear(1280, classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


@lru_cache(maxsize=1)
def compiled():
    torch.manual_seed(0)
    model = nnspec.compile(SPEC)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # batch-norm statistics away from 0 and 1, so that they matter
        for name, t in model.named_buffers():
            if name.endswith("running_mean"):
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
            elif name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
    return model.eval()


def test_the_hand_written_reference_is_torchvisions_state_dict():
    ref = EfficientNetB0()
    assert [(k, list(v.shape)) for k, v in ref.state_dict().items()] == \
           [(k, list(s)) for k, s in REF["state_dict"]]
    assert sum(p.numel() for p in ref.parameters()) == REF["params"] == 5_288_548


def test_compiled_state_dict_is_torchvisions_and_loads_strictly_into_the_reference():
    model = compiled()
    assert [(k, list(v.shape)) for k, v in model.state_dict().items()] == \
           [(k, list(s)) for k, s in REF["state_dict"]]
    ref = EfficientNetB0()
    ref.load_state_dict(model.state_dict(), strict=True)


def test_outputs_equal_the_reference_with_the_same_weights():
    model = compiled()
    ref = EfficientNetB0().eval()
    ref.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        ours, theirs = model(x), ref(x)
    assert ours.shape == (2, 1000)
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=1e-5), (ours - theirs).abs().max()


def test_training_mode_drops_residual_branches_as_the_reference_does():
    """Same seed, same random draws: stochastic depth and dropout agree in training mode too."""
    model = compiled()
    ref = EfficientNetB0()
    ref.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(8))
    try:
        model.train(), ref.train()
        outs = []
        for m in (model, ref):
            torch.manual_seed(11)
            outs.append(m(x))
        assert torch.allclose(outs[0], outs[1], atol=1e-4, rtol=1e-4)
    finally:
        compiled.cache_clear()  # training updated the running statistics


def macs_by_hooks(model) -> int:
    """Multiply-accumulates of every Conv2d and Linear, bias excluded, on one image."""
    total = 0

    def hook(m, inputs, out):
        nonlocal total
        if isinstance(m, nn.Conv2d):
            total += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        else:
            total += m.in_features * m.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            model(torch.randn(1, *REF["input"]))
    finally:
        for h in handles:
            h.remove()
    return total


def test_macs_measured_by_hooks_equal_torchvisions_and_the_analyzers():
    assert macs_by_hooks(compiled()) == REF["macs"] == 385_814_752
    assert nnspec.load(SPEC).analyze().totals.macs == REF["macs"]
    assert macs_by_hooks(EfficientNetB0().eval()) == REF["macs"]


def test_stochastic_depth_probabilities_grow_linearly_with_block_index():
    g = nnspec.load(SPEC).graph
    ps = [nd.attrs["p"] for nd in g.layers if nd.op == "stochastic_depth"]
    ref = EfficientNetB0()
    want = [m.stochastic_depth.p for m in ref.modules() if isinstance(m, MBConv) and m.use_res_connect]
    assert ps == pytest.approx(want)
    # 9 blocks keep their shape; the last of them is block 14 of 0..15
    assert len(ps) == 9 and max(ps) == pytest.approx(0.2 * 14 / 16)
