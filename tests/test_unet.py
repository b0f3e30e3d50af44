"""specs/unet_small.nn, an encoder–decoder with skip concatenations, transposed convolution and
bilinear up-sampling: it compiles, PyTorch agrees with the analyzer on every node's shape and
on the parameter counts, its forward equals a hand-written U-Net with the same weights, and it
trains (SGD on a fixed random batch lowers the per-pixel cross-entropy)."""

import pathlib

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import nnspec  # noqa: E402

SPEC = pathlib.Path(__file__).resolve().parent.parent / "specs" / "unet_small.nn"


def double(cin, c):
    return nn.Sequential(nn.Conv2d(cin, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
                         nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU())


class UNet(nn.Module):
    """The same network written by hand, its modules named as the spec names its layers."""

    def __init__(self, w=16, classes=2):
        super().__init__()
        self.enc1, self.pool1, self.enc2 = double(3, w), nn.MaxPool2d(2), double(w, 2 * w)
        self.pool2, self.bottom = nn.MaxPool2d(2), double(2 * w, 4 * w)
        self.up2 = nn.ConvTranspose2d(4 * w, 2 * w, 2, stride=2)
        self.dec2 = double(4 * w, 2 * w)
        self.up1 = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.up1_conv = nn.Conv2d(2 * w, w, 1)
        self.dec1, self.head = double(2 * w, w), nn.Conv2d(w, classes, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool1(e1))
        d2 = self.dec2(torch.cat([e2, self.up2(self.bottom(self.pool2(e2)))], 1))
        d1 = self.dec1(torch.cat([e1, self.up1_conv(self.up1(d2))], 1))
        return self.head(d1)


def compiled(**kw):
    torch.manual_seed(0)
    return nnspec.compile(SPEC, **kw)


def test_compiled_shapes_and_counts_are_the_analyzers():
    spec = nnspec.load(SPEC)
    model = compiled()
    totals = spec.analyze().totals
    assert sum(p.numel() for p in model.parameters()) == totals.params == 115_842
    assert sum(b.numel() for n, b in model.named_buffers() if "num_batches" not in n) == totals.buffers
    analyzer_keys = [f"{s.node.name}.{t.name}" for s in spec.analyze().layers for t in s.tensors]
    assert list(model.state_dict()) == analyzer_keys
    seen = {}
    modules = dict(model.named_modules())
    for nd in spec.graph.layers:
        modules[nd.name].register_forward_hook(
            lambda m, i, out, name=nd.name: seen.__setitem__(name, tuple(out.shape[1:])))
    with torch.no_grad():
        out = model.eval()(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 2, 64, 64)
    assert {nd.name: nd.shape for nd in spec.graph.layers} == seen


def test_forward_equals_a_hand_written_unet_with_the_same_weights():
    model = compiled()
    ref = UNet()
    ref.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    for mode in ("train", "eval"):
        getattr(model, mode)(), getattr(ref, mode)()
        assert torch.allclose(model(x), ref(x), atol=1e-5), mode


def test_other_sizes_through_network_arguments():
    spec = nnspec.load(SPEC, width=8, classes=5)
    assert spec.graph.nodes[spec.graph.output].shape == (5, 64, 64)
    model = compiled(width=8, classes=5)
    assert sum(p.numel() for p in model.parameters()) == spec.analyze().totals.params


def test_sgd_steps_lower_the_loss_on_a_fixed_batch():
    model = compiled().train()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, 64, 64, generator=g)
    y = torch.randint(0, 2, (4, 64, 64), generator=g)  # a label per pixel
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    losses = []
    for _ in range(6):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert losses[-1] < losses[0] * 0.95, losses
