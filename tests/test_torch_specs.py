"""Every shipped spec compiled with PyTorch agrees with the analyzer: parameters, buffers, and
the output shape of every node (forward hooks); the torchvision specs reproduce torchvision's
state_dict names and shapes exactly (the lists measured from torchvision are in
tests/data/torchvision/)."""

import functools
import json
import pathlib

import pytest

torch = pytest.importorskip("torch")

import nnspec  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHIPPED = sorted((ROOT / "specs").glob("*.nn"))
EXTRA = sorted((ROOT / "tests" / "data" / "torch").glob("*.nn"))
TORCHVISION = ROOT / "tests" / "data" / "torchvision"
# reference file -> spec
REFERENCES = {"alexnet": "alexnet_torchvision", "vgg16": "vgg16", "resnet18": "resnet18",
              "resnet50": "resnet50", "resnet152": "resnet152", "googlenet": "googlenet",
              "efficientnet_b0": "efficientnet_b0"}


@functools.lru_cache(maxsize=None)
def compiled(path: str):
    torch.manual_seed(0)
    return nnspec.compile(path).eval()


@pytest.mark.parametrize("path", SHIPPED + EXTRA, ids=lambda p: p.stem)
def test_counts_and_every_node_shape_agree_with_the_analyzer(path):
    spec = nnspec.load(path)
    totals = spec.analyze().totals
    model = compiled(str(path))
    assert sum(p.numel() for p in model.parameters()) == totals.params
    assert sum(b.numel() for n, b in model.named_buffers()
               if not n.endswith("num_batches_tracked")) == totals.buffers

    g = spec.graph
    batch = 1 if totals.macs > 50_000_000 else 2
    seen, handles = {}, []
    modules = dict(model.named_modules())
    for nd in g.layers:
        handles.append(modules[nd.name].register_forward_hook(
            lambda m, i, out, name=nd.name: seen.__setitem__(name, tuple(out.shape))))
    try:
        with torch.no_grad():
            out = model(torch.randn(batch, *g.input.shape))
    finally:
        for h in handles:
            h.remove()
    assert tuple(out.shape) == (batch,) + g.nodes[g.output].shape
    wrong = {nd.name: (seen.get(nd.name), (batch,) + nd.shape) for nd in g.layers
             if seen.get(nd.name) != (batch,) + nd.shape}
    assert not wrong


@pytest.mark.parametrize("path", SHIPPED + EXTRA, ids=lambda p: p.stem)
def test_every_group_and_block_instance_is_a_module_named_as_in_the_spec(path):
    g = nnspec.load(path).graph
    names = {n for n, _ in compiled(str(path)).named_modules()}
    for nd in g.layers:
        parts = nd.name.split(".")
        for k in range(1, len(parts) + 1):
            assert ".".join(parts[:k]) in names


@pytest.mark.parametrize("reference", sorted(REFERENCES))
def test_state_dict_names_and_shapes_are_torchvisions(reference):
    ref = json.loads((TORCHVISION / f"{reference}.json").read_text())
    model = compiled(str(ROOT / "specs" / f"{REFERENCES[reference]}.nn"))
    ours = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    assert ours == [(k, list(s)) for k, s in ref["state_dict"]]
    assert sum(p.numel() for p in model.parameters()) == ref["params"]
    # torchvision's own state dict (its names and shapes) loads strictly
    fake = {k: torch.zeros(s, dtype=torch.long if k.endswith("num_batches_tracked") else torch.float32)
            for k, s in ref["state_dict"]}
    model.load_state_dict(fake, strict=True)
    compiled.cache_clear()  # the zeros stay out of other tests
