"""Compiled models against hand-written PyTorch: training-step time and build time, on the CPU.

    python benchmarks/bench_torch.py [--repeat 15] [--size 112] [--batch 8]

1. forward + backward time of `nnspec.compile("specs/resnet18.nn")` over a torchvision-style
   hand-written ResNet-18 (same layers, same weights), and of the digits CNN over its
   hand-written twin: the ratio compiled / hand-written (target <= 1.02), the median over
   rounds of the two models timed back to back (alternating which goes first). The same
   measurement between two copies of the hand-written model is printed as the noise floor.
2. build time of ResNet-50: `nnspec.compile` on a loaded spec (its train section asks for He
   initialisation, fan_out, as torchvision's constructor does) against a torchvision-style
   constructor (PyTorch default init, then kaiming_normal_ on every conv); and the parse +
   check time of the spec on top.

The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import time

import torch
from torch import nn

import nnspec

ROOT = pathlib.Path(__file__).resolve().parent.parent


# ---- hand-written references (as torchvision writes them) -----------------------------------

class BasicBlock(nn.Module):
    expansion = 1

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
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != planes * 4:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes * 4))

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, block, layers, classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes, stages = 64, []
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            blocks = []
            for k in range(n):
                blocks.append(block(inplanes, planes, 2 if i > 0 and k == 0 else 1))
                inplanes = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class DigitsCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.pool = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(32, 64, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.pool(self.relu(self.bn2(self.conv2(x))))
        x = self.relu(self.bn3(self.conv3(x)))
        return self.fc(self.drop(x.mean((2, 3))))


# ---- measurements ---------------------------------------------------------------------------

def _step(model, x, y):
    model.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()


def _time(fn, inner: int) -> float:
    t = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t) / inner


def train_ratio(compiled, written, x, y, repeat: int, inner: int) -> dict:
    written.load_state_dict(compiled.state_dict())
    compiled.train(), written.train()
    for _ in range(2):  # warm-up: allocator, oneDNN primitives
        _step(compiled, x, y)
        _step(written, x, y)
    ratios, tc, tw = [], [], []
    for r in range(repeat):
        order = (compiled, written) if r % 2 == 0 else (written, compiled)
        times = {id(m): _time(lambda m=m: _step(m, x, y), inner) for m in order}
        tc.append(times[id(compiled)])
        tw.append(times[id(written)])
        ratios.append(tc[-1] / tw[-1])
    # Each round times both models back to back, so the ratio of a round compares like with
    # like; the median over rounds discards rounds that other work on the machine disturbed.
    return {"ratio": statistics.median(ratios), "compiled_ms": 1e3 * min(tc), "written_ms": 1e3 * min(tw)}


def control(make, x, y, repeat: int, inner: int) -> float:
    """The same measurement between two copies of the hand-written model: the noise floor."""
    a, b = make(), make()
    return train_ratio(a, b, x, y, repeat, inner)["ratio"]


def build_times(repeat: int) -> dict:
    spec = nnspec.load(ROOT / "specs" / "resnet50.nn")
    ours, theirs, parse = [], [], []
    for _ in range(repeat):
        t = time.perf_counter()
        nnspec.compile(spec)
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        ResNet(Bottleneck, (3, 4, 6, 3))
        theirs.append(time.perf_counter() - t)
        t = time.perf_counter()
        nnspec.load(ROOT / "specs" / "resnet50.nn")
        parse.append(time.perf_counter() - t)
    return {"compile_s": statistics.median(ours), "handwritten_s": statistics.median(theirs),
            "parse_check_s": statistics.median(parse)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15, help="rounds per comparison")
    ap.add_argument("--size", type=int, default=112, help="ResNet-18 input height and width")
    ap.add_argument("--batch", type=int, default=8, help="ResNet-18 batch size")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: steadier on a shared machine; the ratio does "
                         "not depend on it)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    out = {"torch": torch.__version__, "threads": torch.get_num_threads()}

    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.randint(0, 1000, (args.batch,))
    r18 = train_ratio(nnspec.compile(ROOT / "specs" / "resnet18.nn"), ResNet(BasicBlock, (2, 2, 2, 2)),
                      x, y, args.repeat, inner=1)
    r18["control"] = control(lambda: ResNet(BasicBlock, (2, 2, 2, 2)), x, y, args.repeat, inner=1)
    print(f"resnet18   forward+backward, batch {args.batch}, 3x{args.size}x{args.size}: "
          f"compiled {r18['compiled_ms']:.1f} ms, hand-written {r18['written_ms']:.1f} ms (best), "
          f"ratio {r18['ratio']:.3f}; hand-written against itself {r18['control']:.3f}")

    x = torch.randn(32, 1, 8, 8)
    y = torch.randint(0, 10, (32,))
    cnn = train_ratio(nnspec.compile(ROOT / "specs" / "cnn_digits.nn"), DigitsCNN(), x, y,
                      args.repeat, inner=100)
    cnn["control"] = control(DigitsCNN, x, y, args.repeat, inner=100)
    print(f"cnn_digits forward+backward, batch 32, 1x8x8: compiled {cnn['compiled_ms']:.3f} ms, "
          f"hand-written {cnn['written_ms']:.3f} ms (best), ratio {cnn['ratio']:.3f}; "
          f"hand-written against itself {cnn['control']:.3f}")

    b = build_times(max(3, args.repeat // 3))
    print(f"resnet50   build: nnspec.compile {b['compile_s']:.3f} s (He init from the train section), "
          f"hand-written constructor {b['handwritten_s']:.3f} s, ratio "
          f"{b['compile_s'] / b['handwritten_s']:.2f}; "
          f"parsing and checking the spec {b['parse_check_s']:.3f} s")

    out.update({"resnet18_train_ratio": round(r18["ratio"], 4),
                "resnet18_compiled_ms": round(r18["compiled_ms"], 2),
                "resnet18_handwritten_ms": round(r18["written_ms"], 2),
                "resnet18_noise_floor_ratio": round(r18["control"], 4),
                "cnn_digits_train_ratio": round(cnn["ratio"], 4),
                "cnn_digits_compiled_ms": round(cnn["compiled_ms"], 4),
                "cnn_digits_handwritten_ms": round(cnn["written_ms"], 4),
                "cnn_digits_noise_floor_ratio": round(cnn["control"], 4),
                "resnet50_build_s": round(b["compile_s"], 4),
                "resnet50_handwritten_build_s": round(b["handwritten_s"], 4),
                "resnet50_build_ratio": round(b["compile_s"] / b["handwritten_s"], 3),
                "resnet50_parse_check_s": round(b["parse_check_s"], 4)})
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
