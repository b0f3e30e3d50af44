"""nnspec.plan, the backend-neutral plan: last uses, in-place decisions, the variables of each
scope's forward and the state names, checked against hand-worked small graphs, torchvision's
own state dicts (tests/data/torchvision) and an executor simulated over every shipped spec and
random specs."""

import doctest
import json
import pathlib

import pytest
from hypothesis import HealthCheck, given, settings

import nnspec
import nnspec.plan as nnplan
from nnspec.plan import Scope, io, last_use, may_run_in_place, plan, registers, scopes, walk
from spec_strategies import emit_spec

ROOT = pathlib.Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.nn")) + sorted((ROOT / "tests" / "data" / "torch").glob("*.nn"))
TORCHVISION = ROOT / "tests" / "data" / "torchvision"
REFERENCES = {"resnet18": "resnet18", "resnet50": "resnet50", "resnet152": "resnet152",
              "vgg16": "vgg16", "alexnet_torchvision": "alexnet", "googlenet": "googlenet"}


def _graph(text: str):
    return nnspec.loads(text).graph


def _in_place(text: str) -> list[str]:
    return [s.node.name for s in plan(_graph(text)).steps if s.in_place]


def test_docstring_examples():
    assert doctest.testmod(nnplan).failed == 0


# ---- in place ----------------------------------------------------------------------------------

def test_an_activation_after_a_conv_overwrites_the_conv_output():
    assert _in_place("input 4x8x8\nconv(4, 3, pad=1) relu\n") == ["relu"]


def test_dropout_after_a_conv_may_overwrite_it():  # dropout keeps only its mask
    assert _in_place("input 4x8x8\nconv(4, 3, pad=1) dropout(0.5)\n") == ["dropout"]


@pytest.mark.parametrize("text, why", [
    ("input 4x8x8\nrelu\n", "the network input is the caller's tensor"),
    ("input 4x8x8\nconv(4, 3, pad=1) sigmoid relu\n", "the sigmoid's backward keeps its output"),
    ("input 4x8x8\nconv(4, 3, pad=1) relu relu\n", "a ReLU's backward keeps its output"),
    ("input 4x8x8\nflatten relu\n", "flatten's output is a view of the input"),
    ("input 4x8x8\nconv(4, 3, pad=1) identity relu\n", "identity's output is a view"),
    ("input 4x8x8\nconv(4, 3, pad=1) leaky_relu(0.1)\n", "its own backward keeps its input"),
    ("input 4x8x8\nconv(4, 3, pad=1) relu6\n", "its own backward keeps its input"),
    ("input 4x8x8\nconv(4, 3, pad=1) batchnorm\n", "batch norm makes a new tensor"),
    ("input 4x8x8\nc: conv(4, 3, pad=1)\nadd {\n  relu\n  identity\n}\n",
     "the identity path still reads the conv's output"),
    ("input 4x8x8\nc: conv(4, 3, pad=1)\nconcat {\n  relu\n  { conv(2, 1) }\n}\n",
     "the other branch still reads the conv's output"),
    ("input 4x8x8\nc: conv(4, 3, pad=1)\nadd {\n  relu\n  { }\n}\n",
     "an empty path is the identity: the add reads the conv's output"),
])
def test_no_in_place_where_it_would_lose_a_value(text, why):
    g = _graph(text)
    act = g.nodes[g.output] if g.nodes[g.output].op not in ("add", "concat") else g.find("relu")
    assert not may_run_in_place(g, act), why


def test_after_a_merge_the_activation_runs_in_place():
    assert _in_place("input 4x8x8\nc: conv(4, 3, pad=1)\nadd {\n  { conv(4, 1) relu }\n"
                     "  identity\n}\nrelu\n") == ["relu", "relu_1"]


def test_every_relu_of_resnet18_runs_in_place_as_in_torchvision():
    # torchvision's BasicBlock and stem share one nn.ReLU(inplace=True): after each batch
    # norm and after each residual add
    p = plan(nnspec.load(ROOT / "specs" / "resnet18.nn").graph)
    relus = [s for s in p.steps if s.node.op == "relu"]
    assert len(relus) == 1 + 8 * 2 and all(s.in_place for s in relus)


# ---- last use and the steps --------------------------------------------------------------------

def test_last_use_by_hand():
    g = _graph("input 4x8x8\nc: conv(4, 3, pad=1)\nadd {\n  { conv(4, 1) relu }\n  identity\n}\nflatten\n")
    names = {nd.id: nd.name for nd in g.nodes}
    pos = {nd.name: k for k, nd in enumerate(g.layers)}
    got = {names[v]: k for v, k in last_use(g).items()}
    # layers: c, conv, relu, identity, add, flatten
    assert got == {"input": pos["c"], "c": pos["identity"], "conv": pos["relu"],
                   "relu": pos["add"], "identity": pos["add"], "add": pos["flatten"],
                   "flatten": len(g.layers)}
    assert plan(g).last_use == last_use(g)


def _simulate(p):
    """Run the steps as an executor would, with value ids for tensors: every value read is
    alive; one written in place is never read again; nothing is dropped twice; at the end
    only the output is alive."""
    live = {0}
    dropped = set()
    for k, s in enumerate(p.steps):
        assert set(s.inputs) <= live, (k, s.node.name)
        if s.in_place:
            assert s.inputs[0] in s.frees, s.node.name  # overwritten: no later reader
        live.add(s.output)
        for v in s.frees:
            assert v in live and v not in dropped, (s.node.name, v)
            live.discard(v)
            dropped.add(v)
    assert live == {p.graph.output}


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_an_executor_following_the_steps_never_reads_a_dropped_or_overwritten_value(path):
    _simulate(plan(nnspec.load(path).graph))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(emit_spec())
def test_the_executor_invariants_hold_on_random_specs(text):
    try:
        g = nnspec.loads(text).graph
    except nnspec.SpecError:
        return
    _simulate(plan(g))


# ---- the module tree and the forward's variables -----------------------------------------------

@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_each_scope_forward_reads_each_value_from_the_variable_that_holds_it(path):
    g = nnspec.load(path).graph
    root = scopes(g)
    seen = []
    for sc in walk(root):
        calls, result = registers(sc)
        holds = {"x": sc.input}
        for c in calls:
            ins, out = io(c.child)
            assert tuple(holds[a] for a in c.args) == ins, (sc.path, c.name)
            holds[c.out] = out
        assert holds[result] == sc.last
        seen += [child.id for _, child in sc.children if not isinstance(child, Scope)]
    assert sorted(seen) == [nd.id for nd in g.layers]  # every node in exactly one scope


def test_forward_variables_by_hand():
    g = _graph("input 4x8x8\nc: conv(4, 3, pad=1)\nadd {\n  relu\n  identity\n}\n")
    calls, result = plan(g).forward()
    assert [(c.out, c.args) for c in calls] == [("x", ("x",)), ("x1", ("x",)), ("x", ("x",)),
                                                ("x", ("x1", "x"))] and result == "x"


# ---- state names -------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, reference", sorted(REFERENCES.items()))
def test_state_is_torchvisions_state_dict(spec, reference):
    ref = json.loads((TORCHVISION / f"{reference}.json").read_text())
    state = plan(nnspec.load(ROOT / "specs" / f"{spec}.nn").graph).state
    assert [(k, list(t.shape)) for k, t in state.items()] == [(k, list(s)) for k, s in ref["state_dict"]]
    assert all(t.name == k for k, t in state.items())
    assert sum(t.numel for t in state.values() if t.role == "param") == ref["params"]


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_state_names_are_the_compiled_state_dict_keys(path):
    torch = pytest.importorskip("torch")
    from nnspec.backends import torch as tb
    g = nnspec.load(path).graph
    with torch.device("meta"):  # names and shapes only: no memory, no init
        model = tb.build(tb.plan(g))
    assert [(k, tuple(t.shape)) for k, t in plan(g).state.items()] == \
           [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
