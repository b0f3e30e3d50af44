"""The analysis and the report: golden tables, depth folding, the JSON contract, receptive
fields, the VGG argument, memory estimates, dtype and batch, freezing.

Expected numbers are computed here from the formulas of domain.md, not read back from the code.
"""

from __future__ import annotations

import csv
import io
import json

import pytest
from conftest import SPECS

import nnspec
from nnspec import report
from nnspec.analysis import DTYPE_BYTES
from nnspec.ops import OPS


def load(name: str, **kw) -> nnspec.Spec:
    return nnspec.load(SPECS / f"{name}.nn", **kw)


# ---- golden tables ------------------------------------------------------------------------------

def test_alexnet_text_table(golden):
    golden("tables/alexnet_text", report.to_text(load("alexnet").analyze()))


def test_alexnet_markdown_table(golden):
    golden("tables/alexnet_markdown", report.to_markdown(load("alexnet").analyze()))


def test_resnet18_folded_text_table(golden):
    golden("tables/resnet18_depth1_text", report.to_text(load("resnet18").analyze(batch=1), depth=1))


def test_text_table_is_fixed_width_and_plain():
    text = report.to_text(load("alexnet").analyze())
    lines = text.splitlines()
    header, rule = lines[1], lines[2]
    assert header.split() == ["name", "op", "output", "params", "MACs", "memory", "RF"]
    assert set(rule.replace(" ", "")) == {"-"}
    assert "\x1b" not in text  # no colour codes
    rows = lines[3:3 + len(load("alexnet").graph.layers)]
    for row in rows:  # right-aligned numeric columns end at the same place as the rule
        assert len(row) <= len(rule)


def test_markdown_table_is_a_valid_pipe_table():
    md = report.to_markdown(load("alexnet").analyze())
    table = [l for l in md.splitlines() if l.startswith("|")]
    assert table[1] == "|---|---|---|---:|---:|---:|---:|"
    assert all(l.count("|") == 8 for l in table)
    assert len(table) == 2 + len(load("alexnet").graph.layers)
    assert "| `conv1` | conv 11x11/4 | 96x55x55 | 34,944 | 105,415,200 |" in md


def test_csv_has_one_row_per_layer_and_plain_numbers():
    an = load("resnet18").analyze()
    rows = list(csv.DictReader(io.StringIO(report.to_csv(an))))
    assert len(rows) == len(an.graph.layers)
    assert sum(int(r["params"]) for r in rows) == an.totals.params
    assert rows[0] == {"name": "conv1", "op": "conv 7x7/2 p3", "shape": "64x112x112", "params": "9408",
                       "trainable": "9408", "buffers": "0", "macs": "118013952",
                       "activations": "802816", "rf": "7"}


def test_rich_table_renders():
    from rich.console import Console
    console = Console(record=True, width=200, color_system=None)
    console.print(report.to_rich(load("alexnet").analyze()))
    out = console.export_text()
    assert "conv1" in out and "96x55x55" in out and "34,944" in out


# ---- --depth folding ----------------------------------------------------------------------------

@pytest.mark.parametrize("depth", [1, 2, 3, None])
def test_depth_folding_keeps_the_sums(depth):
    an = load("resnet18").analyze()
    rows = report.rows(an, depth)
    assert sum(r.params for r in rows) == an.totals.params
    assert sum(r.macs for r in rows) == an.totals.macs
    assert sum(r.buffers for r in rows) == an.totals.buffers
    assert sum(r.layers for r in rows) == len(an.graph.layers)
    if depth is not None:
        assert all(r.name.count(".") < depth for r in rows)


def test_depth_1_folds_resnet18_into_its_stages():
    rows = report.rows(load("resnet18").analyze(), 1)
    assert [r.name for r in rows] == ["conv1", "bn1", "bn1_relu", "maxpool", "layer1", "layer2",
                                      "layer3", "layer4", "avgpool", "fc"]
    layer1 = rows[4]
    # two basic blocks of two 3x3 convs 64->64 without bias, each followed by batchnorm (2*64)
    assert layer1.params == 2 * (2 * (3 * 3 * 64 * 64) + 2 * (2 * 64))
    assert layer1.layers == 14 and layer1.shape == (64, 56, 56)
    layer2 = rows[5]
    # + the 1x1 stride-2 projection (64*128) and its batchnorm in the first block
    assert layer2.params == (3 * 3 * 64 * 128 + 3 * 3 * 128 * 128 + 2 * (2 * 128) + 64 * 128 + 2 * 128
                             + 2 * (3 * 3 * 128 * 128) + 2 * (2 * 128))


def test_depth_2_names_block_instances():
    rows = report.rows(load("resnet18").analyze(), 2)
    named = {r.name: r for r in rows}
    assert named["layer1.0"].op == "basic" and named["layer2.0"].layers == 9  # with downsample
    assert named["layer2.1"].layers == 7


# ---- the JSON contract --------------------------------------------------------------------------

LAYER_KEYS = {"name", "op", "shape", "params", "trainable", "macs", "activations", "rf"}
TOTAL_KEYS = {"params", "trainable", "buffers", "macs", "activations", "param_bytes",
              "forward_bytes", "train_bytes", "saved_bytes"}


@pytest.mark.parametrize("name", ["alexnet", "resnet18", "mlp_digits"])
def test_json_contract(name):
    spec = load(name)
    an = spec.analyze()
    doc = json.loads(report.to_json(an))
    assert set(doc) == {"network", "input", "batch", "dtype", "layers", "totals"}
    assert doc["network"] == spec.name and isinstance(doc["network"], str)
    assert doc["input"] == list(spec.graph.input.shape)
    assert doc["batch"] == an.batch and doc["dtype"] == "float32"
    # one entry per leaf op, in execution order
    assert [l["name"] for l in doc["layers"]] == [nd.name for nd in spec.graph.layers]
    for entry, node in zip(doc["layers"], spec.graph.layers):
        assert set(entry) == LAYER_KEYS
        assert entry["op"] == node.op and entry["op"] in OPS
        assert isinstance(entry["shape"], list) and all(type(x) is int for x in entry["shape"])
        for key in ("params", "trainable", "macs", "activations"):
            assert type(entry[key]) is int and entry[key] >= 0
        assert entry["rf"] is None or type(entry["rf"]) is int
    assert set(doc["totals"]) == TOTAL_KEYS
    assert all(type(v) is int for v in doc["totals"].values())
    assert doc["totals"]["params"] == sum(l["params"] for l in doc["layers"])
    assert doc["totals"]["macs"] == sum(l["macs"] for l in doc["layers"])


def test_json_of_a_feature_vector_network_has_no_receptive_fields():
    doc = report.to_dict(load("mlp_digits").analyze())
    assert doc["input"] == [64]
    assert {l["rf"] for l in doc["layers"]} == {None}


# ---- receptive fields and the VGG argument (domain.md) ------------------------------------------

def test_three_stacked_3x3_convs_see_7x7():
    an = nnspec.loads("input 64x32x32\nconv(64, 3, pad=1) relu\nconv(64, 3, pad=1) relu\n"
                      "conv(64, 3, pad=1) relu\n").analyze()
    convs = [s for s in an.layers if s.node.op == "conv"]
    assert [s.rf for s in convs] == [(3, 3), (5, 5), (7, 7)]
    assert convs[-1].jump == (1, 1)


def test_vgg_argument_three_3x3_vs_one_7x7():
    c = 64
    stack = nnspec.loads(f"input {c}x32x32\n" + f"conv({c}, 3, pad=1, bias=false) relu\n" * 3).analyze()
    single = nnspec.loads(f"input {c}x32x32\nconv({c}, 7, pad=3, bias=false) relu\n").analyze()
    assert stack.totals.params == 3 * 9 * c * c == 110_592
    assert single.totals.params == 49 * c * c == 200_704
    assert stack.layers[-1].rf == single.layers[-1].rf == (7, 7)
    # and more non-linearities: three ReLUs against one
    assert sum(s.node.op == "relu" for s in stack.layers) == 3


def test_receptive_field_recurrence_with_strides():
    # rf += (F-1)*jump; jump *= S:  conv 7/2 -> rf 7, jump 2; pool 3/2 -> 7 + 2*2 = 11, jump 4
    an = load("resnet18").analyze()
    assert an.layer("conv1").rf == (7, 7) and an.layer("conv1").jump == (2, 2)
    assert an.layer("maxpool").rf == (11, 11) and an.layer("maxpool").jump == (4, 4)


def test_merge_takes_the_widest_path():
    an = nnspec.loads("input 8x16x16\nadd {\n conv(8, 5, pad=2)\n identity\n}\n").analyze()
    assert an.layer("add").rf == (5, 5)


# ---- memory: dtype, batch, optimizer state, freezing --------------------------------------------

NET = "network n\ninput 3x32x32\nconv(8, 3) relu\nmaxpool(2)\nflatten\nfc: linear(10)\n"
# params: (3*3*3+1)*8 = 224 and (8*15*15+1)*10 = 18,010 -> 18,234
PARAMS = 224 + 18_010
# forward activations: input 3*32*32 + conv 8*30*30 + pool 8*15*15 + fc 10 (relu in place,
# flatten a view) = 3,072 + 7,200 + 1,800 + 10
FORWARD = 3_072 + 7_200 + 1_800 + 10
# kept for backward (each op's `keeps` in the registry): the conv's input, the ReLU's output
# (which max pooling reads too: kept once), the pool's output (linear reads it through the
# flatten view); the conv's own output is not needed (the in-place ReLU overwrites it), nor fc's
KEPT = 3_072 + 7_200 + 1_800
# max pooling also keeps the argmax of each output as an int64: 8 bytes x 8*15*15
INDEX_BYTES = 8 * 1_800
# the step's peak is the ReLU's backward: kept still alive the conv's input and the ReLU's
# output (the pool's output and indices are freed once the pool is back-propagated), the
# ReLU's output gradient and its input gradient being made; fc's gradients made, not yet conv's
AT_PEAK = 3_072 + 7_200 + 2 * 7_200
# ... unless the dtype is 2 bytes: then the pool's backward, with its int64 indices alive and
# the pool's input and output gradients (7,200 and 1,800 values: flatten's is a view), is higher
AT_POOL = 3_072 + 7_200 + 7_200 + 1_800
FC = 18_010


def with_train(train: str) -> nnspec.Spec:
    return nnspec.loads(NET + "train {\n" + train + "\n}\n")


def test_totals_of_a_small_network():
    t = nnspec.loads(NET).analyze().totals
    assert (t.params, t.trainable, t.buffers) == (PARAMS, PARAMS, 0)
    assert t.activations == FORWARD and t.kept == KEPT and t.kept_extra_bytes == INDEX_BYTES


@pytest.mark.parametrize("dtype", sorted(DTYPE_BYTES))
@pytest.mark.parametrize("batch", [1, 32])
def test_bytes_follow_dtype_and_batch(dtype, batch):
    size = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}[dtype]
    t = nnspec.loads(NET).analyze(batch=batch, dtype=dtype).totals
    assert t.param_bytes == PARAMS * size
    assert t.forward_bytes == FORWARD * batch * size
    assert t.saved_bytes == (KEPT * size + INDEX_BYTES) * batch
    # plain SGD keeps no state: params + the peak (fc's gradients, values alive x batch)
    relu, pool = AT_PEAK * size, AT_POOL * size + INDEX_BYTES
    assert t.train_bytes == PARAMS * size + FC * size + max(relu, pool) * batch
    assert t.peak_at == ("backward of relu" if relu > pool else "backward of maxpool")
    assert t.peak_at == ("backward of relu" if size >= 4 else "backward of maxpool")


def test_float16_halves_every_byte_count_but_the_int64_indices():
    a = nnspec.loads(NET).analyze(batch=8, dtype="float32").totals
    b = nnspec.loads(NET).analyze(batch=8, dtype="float16").totals
    indices = INDEX_BYTES * 8
    assert (b.param_bytes * 2, b.forward_bytes * 2, (b.saved_bytes - indices) * 2) == \
           (a.param_bytes, a.forward_bytes, a.saved_bytes - indices)


@pytest.mark.parametrize("optimizer, slots", [
    ("sgd", 0), ("sgd(momentum=0.9)", 1), ("sgd(nesterov=true, momentum=0.9)", 1),
    ("adam", 2), ("adamw(weight_decay=0.05)", 2), ("rmsprop", 1), ("rmsprop(momentum=0.9)", 2),
    ("adagrad", 1)])
def test_training_memory_counts_optimizer_state(optimizer, slots):
    t = with_train(f"optimizer {optimizer}\nbatch 16").analyze().totals
    assert t.optimizer_slots == slots
    # params + optimizer slots per trainable parameter + the peak (see AT_PEAK), fp32
    assert t.train_bytes == 4 * (PARAMS + PARAMS * slots + FC + AT_PEAK * 16)


def test_adam_needs_more_training_memory_than_sgd_by_two_slots():
    sgd = with_train("optimizer sgd").analyze().totals.train_bytes
    adam = with_train("optimizer adam").analyze().totals.train_bytes
    assert adam - sgd == 2 * PARAMS * 4


def test_train_batch_is_the_default_batch():
    spec = with_train("batch 64")
    assert spec.analyze().batch == 64
    assert spec.analyze(batch=2).batch == 2
    assert nnspec.loads(NET).analyze().batch == 1


@pytest.mark.parametrize("pattern", ['"fc"', '"fc*"', '"f?"'])
def test_freeze_reduces_trainable(pattern):
    spec = with_train(f"freeze {pattern}\noptimizer adam")
    an = spec.analyze()
    t = an.totals
    assert t.params == PARAMS and t.trainable == 224
    assert an.layer("fc").trainable == 0 and an.layer("fc").params == 18_010
    # frozen parameters need neither gradients nor optimizer state
    assert t.train_bytes == 4 * (PARAMS + 224 * 2 + AT_PEAK)


def test_freeze_a_named_group():
    an = load("resnet18").analyze()
    network = (SPECS / "resnet18.nn").read_text().split("\ntrain {")[0]  # its own train section, if any, out
    frozen = nnspec.loads(network + '\ntrain {\n  freeze "layer*", "conv1", "bn1"\n}\n')
    t = frozen.analyze().totals
    assert t.trainable == an.layer("fc").params == 513_000
    assert t.params == an.totals.params


def test_analyze_rejects_bad_batch_and_dtype():
    spec = nnspec.loads(NET)
    with pytest.raises(ValueError):
        spec.analyze(batch=0)
    with pytest.raises(ValueError):
        spec.analyze(dtype="int8")


# ---- numbers of any size (issue "Hostile specs, files and flags…") ---------------------------

def _sci_reference(x: int) -> str:
    """Decimal's own scientific notation, 3 significant figures, rounding half up."""
    import decimal
    with decimal.localcontext() as ctx:
        ctx.prec = 3
        ctx.rounding = decimal.ROUND_HALF_UP
        ctx.Emax = decimal.MAX_EMAX
        d = +decimal.Decimal(x)
    mantissa, exponent = f"{d:.2E}".split("E")
    return f"{mantissa}e+{int(exponent)}"


@pytest.mark.parametrize("x", [1000, 999_499, 999_500, 10 ** 21, 2 ** 1100, 3 ** 5000,
                               10 ** 400 - 1, 12_345_678_901_234_567_890_123])
def test_sci_is_exact_for_integers_beyond_floats(x):
    assert report.sci(x) == _sci_reference(x)


def test_sci_of_2_to_the_1100():
    assert report.sci(2 ** 1100) == "1.36e+331"  # 2^1100 = 1.3583e331
    assert report.sci(999) == "999" and report.sci(0) == "0"


def test_count_is_exact_below_10_to_the_21():
    assert report.count(10 ** 21 - 1) == "999,999,999,999,999,999,999"
    assert report.count(10 ** 21) == "1.00e+21"


@pytest.mark.parametrize("b,want", [(999, "999 B"), (1000, "1.0 KB"), (1023, "1.0 KB"),
                                    (1024, "1.0 KB"), (999 * 1024, "999.0 KB"),
                                    (1024 ** 2 - 1, "1.0 MB"), (5 * 1024 ** 4, "5.0 TB"),
                                    (3 * 1024 ** 5, "3.0 PB"), (7 * 1024 ** 6, "7.0 EB"),
                                    (1000 * 1024 ** 6, "1.15e+21 B"), (4 * 2 ** 1100, "5.43e+331 B")])
def test_human_bytes_never_overflows(b, want):
    assert report.human_bytes(b) == want


def test_clip_keeps_both_ends():
    assert report.clip("x" * 80) == "x" * 80
    clipped = report.clip("a" * 50 + "b" * 50)
    assert clipped == "a" * 40 + "…" + "b" * 39 and len(clipped) == report.MAX_CELL


def test_totals_lines_have_a_16_character_label():
    # the web page splits each line at 16 characters (nnspec/web/static/app.js, showTotals)
    for line in report.totals_lines(load("alexnet").analyze()):
        label = line[:16]
        assert label.strip() and label.endswith(" ") and line[16] != " ", line
