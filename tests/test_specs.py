"""The shipped specs reproduce the published numbers.

Every expected value below is a literal taken from docs (domain.md's reference tables),
from torchvision's own state_dict (tests/data/torchvision/*.json, dumped from torchvision)
or worked out by hand in the comment next to it; none is computed by the code under test.
"""

from __future__ import annotations

import functools
import json
import pathlib

import pytest

import nnspec

ROOT = pathlib.Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
TORCHVISION = pathlib.Path(__file__).resolve().parent / "data" / "torchvision"

# name -> parameters (with biases), MACs (conv/linear/maxout, bias excluded), buffers
# (running mean/var; num_batches_tracked not counted), output shape.
EXPECTED = {
    # CS231n single-stream AlexNet (domain.md: 62,378,344). MACs by hand, C_out*O*O*(C_in*F*F):
    # 96*55*55*363 + 256*27*27*2400 + 384*13*13*2304 + 384*13*13*3456 + 256*13*13*3456
    # + 9216*4096 + 4096*4096 + 4096*1000 = 1,135,256,096
    "alexnet": (62_378_344, 1_135_256_096, 0, (1000,)),
    "alexnet_torchvision": (61_100_840, 714_188_480, 0, (1000,)),
    "vgg16": (138_357_544, 15_470_264_320, 0, (1000,)),
    "resnet18": (11_689_512, 1_814_073_344, 9_600, (1000,)),
    "resnet50": (25_557_032, 4_089_184_256, 53_120, (1000,)),
    "resnet152": (60_192_808, 11_513_626_624, 151_424, (1000,)),
    "googlenet": (6_624_904, 1_498_376_192, 14_560, (1000,)),
    # torchvision's efficientnet_b0: params, MACs (forward hooks) and buffers measured there
    # (tests/data/torchvision/efficientnet_b0.json)
    "efficientnet_b0": (5_288_548, 385_814_752, 42_016, (1000,)),
    # U-Net, width 16: enc1 432+32+2,304+32, enc2 4,608+64+9,216+64, bottom 18,432+128+36,864
    # +128, up2 (transposed) 64·32·2·2+32, dec2 18,432+64+9,216+64, up1_conv 32·16+16,
    # dec1 4,608+32+2,304+32, head 16·2+2 = 115,842. MACs 64²·(16·27+16·144) + 32²·(32·144
    # +32·288) + 16²·(64·288+64·576) + 64·16²·32·4 (C_in·H_in·W_in·C_out·F²) + 32²·(32·576
    # +32·288) + 64²·16·32 + 64²·(16·288+16·144) + 64²·2·16 = 100,466,688
    "unet_small": (115_842, 100_466_688, 640, (2, 64, 64)),
    # LeNet-5: 156 + 2,416 + 48,120 + 10,164 + 850 = 61,706 (domain.md);
    # MACs 6*28*28*25 + 16*10*10*150 + 400*120 + 120*84 + 84*10 = 416,520
    "lenet5": (61_706, 416_520, 0, (10,)),
    # 64-128-64-10: (64+1)*128 + (128+1)*64 + (64+1)*10 = 17,226; MACs 8,192 + 8,192 + 640
    "mlp_digits": (17_226, 17_024, 0, (10,)),
    # 2-32-32-3: (2+1)*32 + (32+1)*32 + (32+1)*3 = 1,251; MACs 64 + 1,024 + 96 = 1,184
    "mlp_spirals_lbfgs": (1_251, 1_184, 0, (3,)),
    # convs without bias + BN: 144 + 32 + 4,608 + 64 + 18,432 + 128 + (64+1)*10 = 24,058;
    # MACs 16*8*8*9 + 32*8*8*144 + 64*4*4*288 + 64*10 = 599,680; buffers 2*(16+32+64) = 224
    "cnn_digits": (24_058, 599_680, 224, (10,)),
}

# spec -> torchvision reference dump (model, params, buffers_numel, state_dict [(key, shape)])
PARITY = {
    "alexnet_torchvision": "alexnet",
    "vgg16": "vgg16",
    "resnet18": "resnet18",
    "resnet50": "resnet50",
    "resnet152": "resnet152",
    "googlenet": "googlenet",
    "efficientnet_b0": "efficientnet_b0",
}


@functools.lru_cache(maxsize=None)
def analysis(name: str) -> nnspec.Analysis:
    return nnspec.load(SPECS / f"{name}.nn").analyze(batch=1)


def test_every_shipped_spec_has_expected_numbers():
    shipped = {p.stem for p in SPECS.glob("*.nn")}
    assert shipped == set(EXPECTED), (
        f"specs without expected numbers here: {sorted(shipped - set(EXPECTED))}; "
        f"expected specs missing: {sorted(set(EXPECTED) - shipped)}")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_spec_numbers(name):
    params, macs, buffers, out = EXPECTED[name]
    a = analysis(name)
    assert a.graph.name == name
    assert a.totals.params == params
    assert a.totals.macs == macs
    assert a.totals.buffers == buffers
    assert a.graph.nodes[a.graph.output].shape == out
    assert a.totals.trainable == params  # no shipped spec freezes layers
    assert a.graph.train is not None and a.graph.train.optimizer is not None


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_spec_layer_names_are_unique_and_tensors_named(name):
    a = analysis(name)
    names = [layer.node.name for layer in a.layers]
    assert len(names) == len(set(names))
    keys = [f"{layer.node.name}.{t.name}" for layer in a.layers for t in layer.tensors]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize("name", ["mlp_digits", "cnn_digits"])
def test_digits_specs_train_on_the_embedded_digits(name):
    train = analysis(name).graph.train
    assert train.data is not None and train.data.name == "digits"
    assert train.optimizer.name == "adam"
    assert train.batch == 32
    assert train.validation == 0.2
    assert train.early_stopping is not None
    assert analysis(name).graph.input.shape == {"mlp_digits": (64,), "cnn_digits": (1, 8, 8)}[name]


def _reference(ref: str) -> dict:
    return json.loads((TORCHVISION / f"{ref}.json").read_text())


@pytest.mark.parametrize("name", sorted(PARITY))
def test_torchvision_state_dict_parity(name):
    ref = _reference(PARITY[name])
    a = analysis(name)
    ours = [(f"{layer.node.name}.{t.name}", list(t.shape)) for layer in a.layers for t in layer.tensors]
    theirs = [(key, list(shape)) for key, shape in ref["state_dict"]]
    assert [k for k, _ in ours] == [k for k, _ in theirs]  # same keys, same order
    assert ours == theirs                                    # and the same shapes
    assert a.totals.params == ref["params"]
    assert a.totals.buffers == ref["buffers_numel"]
    roles = {f"{layer.node.name}.{t.name}": t.role for layer in a.layers for t in layer.tensors}
    for key, role in roles.items():
        leaf = key.rsplit(".", 1)[1]
        want = {"num_batches_tracked": "counter", "running_mean": "buffer",
                "running_var": "buffer"}.get(leaf, "param")
        assert role == want, key


def test_reference_data_is_complete():
    for ref in PARITY.values():
        data = _reference(ref)
        assert data["model"] == f"torchvision.models.{ref}"
        assert data["state_dict"]


# ---- CS231n AlexNet, row by row (domain.md; shapes there are H x W x C) -----------------------

ALEXNET_ROWS = [
    ("conv1", (55, 55, 96)),
    ("pool1", (27, 27, 96)),
    ("norm1", (27, 27, 96)),
    ("conv2", (27, 27, 256)),
    ("pool2", (13, 13, 256)),
    ("norm2", (13, 13, 256)),
    ("conv3", (13, 13, 384)),
    ("conv4", (13, 13, 384)),
    ("conv5", (13, 13, 256)),
    ("pool3", (6, 6, 256)),
    ("fc6", (4096,)),
    ("fc7", (4096,)),
    ("fc8", (1000,)),
]


def _chw(hwc: tuple) -> tuple:
    return hwc if len(hwc) == 1 else (hwc[2], hwc[0], hwc[1])


@pytest.mark.parametrize("row, hwc", ALEXNET_ROWS)
def test_cs231n_alexnet_rows(row, hwc):
    layer = analysis("alexnet").layer(row)
    assert layer is not None, row
    assert layer.node.shape == _chw(hwc)


def test_cs231n_alexnet_conv1_and_total():
    a = analysis("alexnet")
    assert a.graph.input.shape == (3, 227, 227)
    conv1 = {t.name: t for t in a.layer("conv1").tensors}
    assert conv1["weight"].numel == 34_848  # 11*11*3*96
    assert conv1["weight"].shape == (96, 3, 11, 11)
    assert conv1["bias"].numel == 96
    assert a.layer("conv1").params == 34_944
    assert a.totals.params == 62_378_344
    # the table's rows are the layers that carry numbers; every one of them is in the spec
    order = [name for name, _ in ALEXNET_ROWS]
    positions = [a.graph.find(name).id for name in order]
    assert positions == sorted(positions)


# ---- CS231n VGG-16, row by row (domain.md): output, memory (elements), params without biases ----

VGG_ROWS = [  # (torchvision name, H x W x C, memory as quoted, params without biases as quoted)
    ("features.0", (224, 224, 64), 3.2e6, 1_728),
    ("features.2", (224, 224, 64), 3.2e6, 36_864),
    ("features.4", (112, 112, 64), 800e3, 0),
    ("features.5", (112, 112, 128), 1.6e6, 73_728),
    ("features.7", (112, 112, 128), 1.6e6, 147_456),
    ("features.9", (56, 56, 128), 400e3, 0),
    ("features.10", (56, 56, 256), 800e3, 294_912),
    ("features.12", (56, 56, 256), 800e3, 589_824),
    ("features.14", (56, 56, 256), 800e3, 589_824),
    ("features.16", (28, 28, 256), 200e3, 0),
    ("features.17", (28, 28, 512), 400e3, 1_179_648),
    ("features.19", (28, 28, 512), 400e3, 2_359_296),
    ("features.21", (28, 28, 512), 400e3, 2_359_296),
    ("features.23", (14, 14, 512), 100e3, 0),
    ("features.24", (14, 14, 512), 100e3, 2_359_296),
    ("features.26", (14, 14, 512), 100e3, 2_359_296),
    ("features.28", (14, 14, 512), 100e3, 2_359_296),
    ("features.30", (7, 7, 512), 25e3, 0),
    ("classifier.0", (4096,), 4096, 102_760_448),
    ("classifier.3", (4096,), 4096, 16_777_216),
    ("classifier.6", (1000,), 1000, 4_096_000),
]


def _weights(layer) -> int:
    return sum(t.numel for t in layer.tensors if t.role == "param" and t.name != "bias")


@pytest.mark.parametrize("row, hwc, memory, weights", VGG_ROWS)
def test_cs231n_vgg16_rows(row, hwc, memory, weights):
    layer = analysis("vgg16").layer(row)
    assert layer is not None, row
    assert layer.node.shape == _chw(hwc)
    exact = 1
    for d in hwc:
        exact *= d
    assert layer.activations == exact
    assert abs(layer.activations - memory) / memory < 0.03  # the table rounds (3.2M, 800K, 25K)
    assert _weights(layer) == weights
    assert layer.node.op == ("maxpool" if weights == 0 else "conv" if len(hwc) == 3 else "linear")


def test_cs231n_vgg16_totals():
    a = analysis("vgg16")
    assert a.graph.input.shape == (3, 224, 224)
    # every conv, pool and FC layer of the spec is a row of the table, in the table's order
    rows = [layer.node.name for layer in a.layers if layer.node.op in ("conv", "maxpool", "linear")]
    assert rows == [name for name, *_ in VGG_ROWS]
    # memory: input 224*224*3 = 150,528 plus the rows = 15,237,608 activation elements per image
    assert 224 * 224 * 3 + sum(a.layer(name).activations for name, *_ in VGG_ROWS) == 15_237_608
    assert a.totals.activations == 15_237_608
    assert a.totals.forward_bytes == 15_237_608 * 4  # ~61 MB per image in float32
    # params without biases sum to 138,344,128; with the 13,416 biases, 138,357,544
    assert sum(_weights(a.layer(name)) for name, *_ in VGG_ROWS) == 138_344_128
    assert a.totals.params == 138_357_544
    # most parameters are in FC6: 102,764,544 / 138,357,544 = 74.3%
    share = a.layer("classifier.0").params / a.totals.params
    assert 0.74 <= share < 0.75
    # most memory is in the early convs: the first two hold 6.4M of the 15.2M values
    early = a.layer("features.0").activations + a.layer("features.2").activations
    assert early == 6_422_528
    assert max(a.layers[1:], key=lambda s: s.activations).node.name == "features.0"


def test_cli_check_accepts_every_shipped_spec(capsys):
    from nnspec.cli import main

    assert main(["check", *sorted(str(p) for p in SPECS.glob("*.nn"))]) == 0
