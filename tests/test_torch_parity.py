"""Compiled models compute what a hand-written nn.Module with the same weights computes:
ResNet-18 (written here the way torchvision writes it), an inception block, the digits CNN
and the digits MLP; outputs in evaluation mode and gradients in training mode."""

import pathlib

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import nnspec  # noqa: E402

SPECS = pathlib.Path(__file__).resolve().parent.parent / "specs"


class BasicBlock(nn.Module):
    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    def __init__(self, classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes, layers = 64, []
        for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers.append(nn.Sequential(BasicBlock(inplanes, planes, stride), BasicBlock(planes, planes)))
            inplanes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class BasicConv2d(nn.Module):
    def __init__(self, cin, cout, **kw):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kw)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


class Inception(nn.Module):
    def __init__(self, cin, c1, c3r, c3, c5r, c5, pp):
        super().__init__()
        self.branch1 = BasicConv2d(cin, c1, kernel_size=1)
        self.branch2 = nn.Sequential(BasicConv2d(cin, c3r, kernel_size=1),
                                     BasicConv2d(c3r, c3, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(cin, c5r, kernel_size=1),
                                     BasicConv2d(c5r, c5, kernel_size=3, padding=1))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                                     BasicConv2d(cin, pp, kernel_size=1))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class DigitsCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.conv3 = nn.Conv2d(32, 64, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(64)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        x = nn.functional.max_pool2d(x, 2)
        x = torch.relu(self.bn3(self.conv3(x)))
        return self.fc(self.drop(x.mean((2, 3))))


class DigitsMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(64, 128), nn.Linear(128, 64), nn.Linear(64, 10)

    def forward(self, x):
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def _pair(spec, reference: nn.Module):
    torch.manual_seed(0)
    model = nnspec.compile(spec)
    reference.load_state_dict(model.state_dict(), strict=True)
    return model, reference


def _same_outputs(a, b, x, tol=1e-5):
    a.eval(), b.eval()
    with torch.no_grad():
        ya, yb = a(x), b(x)
    assert ya.shape == yb.shape
    assert torch.allclose(ya, yb, atol=tol, rtol=tol), (ya - yb).abs().max()


def _same_gradients(a, b, x, tol=1e-4):
    a.train(), b.train()
    grads = []
    for m in (a, b):
        m.zero_grad()
        m(x).square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in m.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for n in grads[0]:
        assert torch.allclose(grads[0][n], grads[1][n], atol=tol, rtol=1e-3), n


def test_resnet18_matches_a_torchvision_style_module():
    model, ref = _pair(SPECS / "resnet18.nn", ResNet18())
    _same_outputs(model, ref, torch.randn(2, 3, 64, 64))


def test_googlenet_inception_block_matches_a_hand_written_one():
    torch.manual_seed(0)
    model = nnspec.compile(SPECS / "googlenet.nn")
    ref = Inception(192, 64, 96, 128, 16, 32, 32)
    ref.load_state_dict(model.inception3a.state_dict(), strict=True)
    _same_outputs(model.inception3a, ref, torch.randn(2, 192, 14, 14))


def test_digits_cnn_matches_in_outputs_and_gradients():
    model, ref = _pair(SPECS / "cnn_digits.nn", DigitsCNN())
    x = torch.randn(8, 1, 8, 8)
    _same_outputs(model, ref, x)
    torch.manual_seed(1)  # dropout draws the same mask in both
    _same_gradients_seeded(model, ref, x)


def _same_gradients_seeded(a, b, x):
    a.train(), b.train()
    grads = []
    for m in (a, b):
        torch.manual_seed(1)
        m.zero_grad()
        m(x).square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in m.named_parameters()})
    for n in grads[0]:
        assert torch.allclose(grads[0][n], grads[1][n], atol=1e-5, rtol=1e-4), n


def test_digits_mlp_matches_in_outputs_and_gradients():
    model, ref = _pair(SPECS / "mlp_digits.nn", DigitsMLP())
    x = torch.randn(16, 64)
    _same_outputs(model, ref, x)
    _same_gradients(model, ref, x)
