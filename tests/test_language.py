"""The .nn language, construct by construct: header and parameters, input shapes, statements,
chains and labels, `-> shape` assertions, blocks with defaults, expressions, repeat with an
index, if/else, `in.*`, add/concat, named groups and the naming rules, MLPs, 1-D convs,
maxout, prelu, pad="same", ceil_mode, and the train section (every key and choice).
"""

from __future__ import annotations

import pytest

import nnspec
from nnspec import config
from nnspec.ops import REQUIRED


def load(text: str, **kw) -> nnspec.Spec:
    return nnspec.loads(text, **kw)


def names(text: str, **kw) -> list[str]:
    return [nd.name for nd in load(text, **kw).graph.layers]


def shapes(text: str) -> dict[str, tuple]:
    return {nd.name: nd.shape for nd in load(text).graph.layers}


def error_codes(text: str) -> list[str]:
    with pytest.raises(nnspec.SpecError) as info:
        load(text)
    return [d.code for d in info.value.diagnostics]


# ---- header, input, statements -------------------------------------------------------------------

def test_header_parameters_defaults_and_overrides():
    text = "network mlp(hidden = 100, classes = 10)\ninput 784\nlinear(hidden) relu\nlinear(classes)\n"
    spec = load(text)
    assert spec.name == "mlp" and dict(spec.graph.args) == {"hidden": 100, "classes": 10}
    assert spec.analyze().totals.params == (784 + 1) * 100 + (100 + 1) * 10
    spec = load(text, hidden=20)
    assert spec.analyze().totals.params == (784 + 1) * 20 + (20 + 1) * 10


def test_header_defaults_may_use_earlier_parameters():
    spec = load("network n(width = 8, wide = width * 4)\ninput 3x8x8\nconv(wide, 1)\n")
    assert spec.graph.nodes[1].shape == (32, 8, 8)


def test_network_parameter_without_default_must_be_given():
    assert error_codes("network n(width)\ninput 3x8x8\nconv(width, 1)\n") == ["NN012"]
    assert load("network n(width)\ninput 3x8x8\nconv(width, 1)\n", width=5).graph.nodes[1].shape == (5, 8, 8)


def test_without_a_header_the_name_comes_from_the_file():
    assert nnspec.loads("input 8\nrelu\n", file="specs/tiny_net.nn").name == "tiny_net"


@pytest.mark.parametrize("decl, shape", [
    ("3x224x224", (3, 224, 224)), ("4x100", (4, 100)), ("784", (784,)), ("2x8x8x8", (2, 8, 8, 8)),
    ("(3, 32, 32)", (3, 32, 32)), ("(c, 2 * c)", (3, 6)), ("c", (3,))])
def test_input_shapes(decl, shape):
    assert load(f"network n(c = 3)\ninput {decl}\nidentity\n").graph.input.shape == shape


def test_chains_and_labels_name_the_ops():
    # a label names the first op of its line; the ops chained after it are <label>_<op>
    assert names("input 9216\nfc6: linear(4096) relu dropout(0.5)\nfc8: linear(10)\n") == \
        ["fc6", "fc6_relu", "fc6_dropout", "fc8"]


def test_unlabelled_top_level_ops_are_named_after_their_op():
    assert names("input 3x8x8\nconv(4, 3) relu\nconv(4, 3) relu\nflatten\n") == \
        ["conv", "relu", "conv_1", "relu_1", "flatten"]


def test_shape_assertions():
    text = ("network n(classes = 10)\ninput 3x32x32\nconv(16, 3, pad=1) -> 16x32x32\n"
            "maxpool(2) -> (16, in.h // 2, in.w // 2)\nflatten -> 4096\nlinear(classes) -> classes\n")
    assert load(text).graph.nodes[-1].shape == (10,)
    assert error_codes("input 3x32x32\nconv(16, 3) -> 16x32x32\n") == ["NN024"]
    assert error_codes("input 3x32x32\nconv(16, 3) -> 16x0x30\n") == ["NN013"]


def test_a_shape_assertion_checks_the_last_op_of_the_line():
    load("input 3x32x32\nc1: conv(16, 3) relu maxpool(2) -> 16x15x15\n")


def test_comments_blank_lines_and_continuations():
    text = ("# a comment\n\nnetwork n   # trailing\n\n\ninput 3x8x8 # here too\n"
            "block b() {   # in a block\n  # alone\n  relu\n}\n"
            "conv(4,   \\\n     3)\n\nb()\ntrain {\n  # in train\n  batch 8  # batch\n}\n")
    spec = load(text)
    assert [nd.op for nd in spec.graph.layers] == ["conv", "relu"]
    assert spec.train.batch == 8


# ---- expressions ---------------------------------------------------------------------------------

@pytest.mark.parametrize("expr, value", [
    ("2 + 3 * 4", 14), ("(2 + 3) * 4", 20), ("17 // 5", 3), ("17 % 5", 2), ("2 ** 3 ** 2", 512),
    ("-2 ** 2 + 8", 4), ("12 / 4", 3), ("10 - 2 - 3", 5), ("+4", 4), ("- -4", 4),
    ("4 if true else 5", 4), ("4 if 1 > 2 else 5", 5), ("6 if not false and 2 >= 2 else 1", 6),
    ("3 if 1 == 2 or 2 != 2 else 7", 7), ("c * 4", 32), ("c // 3 + c % 3", 4)])
def test_arithmetic_and_conditional_expressions(expr, value):
    spec = load(f"network n(c = 8)\ninput 1x4x4\nconv({expr}, 1)\n")
    assert spec.graph.nodes[1].attrs["out"] == value


def test_tuples_and_floats():
    spec = load("input 3x16x16\nconv(8, (3, 5), stride=(1, 2), pad=(1, 2))\ndropout(0.25 * 2)\n")
    conv, drop = spec.graph.layers
    assert conv.shape == (8, 16, 8) and drop.attrs["p"] == 0.5


def test_expression_errors():
    assert error_codes("input 3x8x8\nconv(4 / 0, 1)\n") == ["NN015"]
    assert error_codes("input 3x8x8\nconv(\"a\" * 2, 1)\n") == ["NN015"]
    assert error_codes("input 3x8x8\nconv(sgd(lr=1), 1)\n") == ["NN015"]
    assert error_codes("input 3x8x8\nconv(7 / 2, 1)\n") == ["NN013"]  # 3.5 channels


# ---- blocks --------------------------------------------------------------------------------------

BASIC = """
block basic(c, stride = 1) {
  add {
    { conv1: conv(c, 3, stride=stride, pad=1, bias=false)
      bn1: batchnorm relu
      conv2: conv(c, 3, pad=1, bias=false)
      bn2: batchnorm }
    if stride != 1 or in.c != c {
      downsample: { conv(c, 1, stride=stride, bias=false) batchnorm }
    }
  }
  relu
}
"""


def test_block_with_defaults_and_projection_shortcut_from_in_c():
    text = ("input 64x56x56\n" + BASIC + "layer1: repeat 2 { basic(64) }\n"
            "layer2: repeat 2 as i { basic(128, stride=2 if i == 0 else 1) }\n")
    got = names(text)
    # an identity shortcut in layer1 (shape unchanged): no downsample nodes
    assert [n for n in got if n.startswith("layer1.0")] == [
        "layer1.0.conv1", "layer1.0.bn1", "layer1.0.bn1_relu", "layer1.0.conv2", "layer1.0.bn2",
        "layer1.0.5", "layer1.0.6"]
    # the first block of layer2 changes channels and stride: a 1x1 projection, torchvision-named
    assert "layer2.0.downsample.0" in got and "layer2.0.downsample.1" in got
    assert not any(n.startswith("layer2.1.downsample") for n in got)
    sh = shapes(text)
    assert sh["layer2.0.downsample.0"] == (128, 28, 28) and sh["layer2.1.6"] == (128, 28, 28)


def test_block_arguments_positional_keyword_and_defaults():
    text = "input 4x8x8\nblock b(c, k = 3, s = 1) { conv(c, k, stride=s) }\nb(2)\nb(2, 1)\nb(k=1, c=5, s=2)\n"
    sh = [nd.shape for nd in load(text).graph.layers]
    assert sh == [(2, 6, 6), (2, 6, 6), (5, 3, 3)]


def test_block_defaults_see_network_parameters_and_earlier_arguments():
    text = ("network n(width = 6)\ninput 3x8x8\nblock b(c = width, d = c * 2) { conv(c, 1) conv(d, 1) }\n"
            "b()\nb(2)\n")
    assert [nd.shape[0] for nd in load(text).graph.layers] == [6, 12, 2, 4]


def test_blocks_do_not_see_the_callers_local_names():
    text = "input 3x8x8\nblock b() { conv(i + 1, 1) }\nrepeat 2 as i { b() }\n"
    assert error_codes(text) == ["NN014"]


def test_block_instances_and_labelled_groups_are_scopes():
    text = ("input 3x8x8\nblock b() { conv(3, 3, pad=1) relu }\n"
            "g: {\n  b()\n  x: b()\n}\nb()\nb()\n")
    assert names(text) == ["g.0.0", "g.0.1", "g.x.0", "g.x.1", "b.0", "b.1", "b_1.0", "b_1.1"]


def test_nested_block_instance_chain():
    text = "input 3x8x8\nblock inner() { relu }\nblock outer() { a: inner() }\ntop: outer()\n"
    node = load(text).graph.layers[0]
    assert node.name == "top.a.0"
    assert [(f.instance, f.block) for f in node.chain] == [("top", "outer"), ("top.a", "inner")]


# ---- repeat and if -------------------------------------------------------------------------------

def test_repeat_with_index():
    text = "input 1x32x32\nstages: repeat 3 as i { conv(8 * 2 ** i, 3, pad=1) maxpool(2) }\n"
    sh = shapes(text)
    assert [sh[f"stages.{k}"] for k in (0, 2, 4)] == [(8, 32, 32), (16, 16, 16), (32, 8, 8)]


def test_repeat_zero_times_and_nested_indices():
    assert names("input 4\nrepeat 0 { relu }\nidentity\n") == ["identity"]
    text = "input 1x8x8\nrepeat 2 as i { repeat 3 as j { conv(1 + i * 10 + j, 1) } }\n"
    assert [nd.shape[0] for nd in load(text).graph.layers] == [1, 2, 3, 11, 12, 13]


def test_repeat_is_transparent_for_names():
    assert names("input 4\nrepeat 2 { relu }\n") == ["relu", "relu_1"]
    assert names("input 4\nhead: { repeat 2 { linear(4) relu } }\n") == [
        "head.0", "head.1", "head.2", "head.3"]


def test_if_else_and_else_if():
    text = ("network n(kind = 2)\ninput 8\n"
            "if kind == 1 { relu } else if kind == 2 { tanh } else { sigmoid }\n")
    assert [nd.op for nd in load(text).graph.layers] == ["tanh"]
    assert [nd.op for nd in load(text, kind=1).graph.layers] == ["relu"]
    assert [nd.op for nd in load(text, kind=7).graph.layers] == ["sigmoid"]


# ---- in.* ----------------------------------------------------------------------------------------

def test_in_fields():
    text = ("input 6x10x12\nblock probe() {\n"
            "  conv(in.c + in.h + in.w + in.rank, 1)\n  flatten\n  linear(in.features)\n}\nprobe()\n")
    conv, _, fc = load(text).graph.layers
    assert conv.attrs["out"] == 6 + 10 + 12 + 3
    assert fc.attrs["out"] == 6 * 10 * 12  # in.* is the shape entering the block, not the current one
    spec = load("input 4x100\nblock p() { conv(in.l, 1) }\np()\n")
    assert spec.graph.layers[0].attrs["out"] == 100
    spec = load("input 2x3x4\nblock p() { conv(in.c, 1) -> in.shape }\np()\n")
    assert spec.graph.layers[0].shape == (2, 3, 4)


def test_in_at_the_top_level_reads_the_network_input():
    assert load("input 3x8x8\nconv(in.c * 2, 1)\n").graph.layers[0].shape == (6, 8, 8)


@pytest.mark.parametrize("text", [
    "input in.c\nrelu\n",
    "network n(c = in.c)\ninput 3\nlinear(c)\n",
    "input 3\nlinear(2)\ntrain {\n  batch in.c\n}\n",
])
def test_in_outside_the_layers_is_an_error(text):
    assert error_codes(text) == ["NN014"]


# ---- add and concat ------------------------------------------------------------------------------

def test_add_with_identity_and_an_empty_path():
    text = "input 8x4x4\nadd {\n  conv(8, 3, pad=1)\n  identity\n}\nadd {\n  relu\n  if false { relu }\n}\n"
    g = load(text).graph
    add1, add2 = [nd for nd in g.layers if nd.op == "add"]
    assert len(add1.inputs) == 2 and g.nodes[add1.inputs[1]].op == "identity"
    assert g.nodes[add2.inputs[1]].id == add1.id  # the empty path is the block's input itself


def test_concat_sums_channels_like_inception():
    text = ("input 192x28x28\nconcat {\n  conv(64, 1)\n  { conv(96, 1) conv(128, 3, pad=1) }\n"
            "  { conv(16, 1) conv(32, 5, pad=2) }\n  { maxpool(3, stride=1, pad=1) conv(32, 1) }\n}\n")
    g = load(text).graph
    assert g.nodes[g.output].shape == (64 + 128 + 32 + 32, 28, 28)
    assert len(g.nodes[g.output].inputs) == 4


def test_concat_of_sequences():
    spec = load("input 4x20\nconcat {\n  conv(8, 3, pad=1)\n  conv(2, 5, pad=2)\n}\n")
    assert spec.graph.nodes[spec.graph.output].shape == (10, 20)


def test_merge_nodes_take_the_next_position_in_a_group():
    text = "input 4x8x8\nblock r() {\n  add {\n    conv(4, 3, pad=1)\n    identity\n  }\n  relu\n}\nx: r()\n"
    assert names(text) == ["x.0", "x.1", "x.2", "x.3"]


# ---- naming rules --------------------------------------------------------------------------------

def test_named_groups_number_their_unlabelled_ops():
    text = ("input 3x16x16\nfeatures: {\n  conv(8, 3)\n  c: conv(8, 3) relu\n  maxpool(2)\n}\n"
            "classifier: { flatten linear(10) }\n")
    assert names(text) == ["features.0", "features.c", "features.c_relu", "features.3",
                           "classifier.0", "classifier.1"]


def test_anonymous_groups_are_transparent():
    assert names("input 4\n{ relu relu }\nrelu\n") == ["relu", "relu_1", "relu_2"]


def test_names_are_unique():
    assert names("input 4\nrelu_1: relu\nrelu\nrelu\n") == ["relu_1", "relu", "relu_2"]
    assert error_codes("input 4\na: relu\nb: { a: relu }\na: relu\n") == ["NN018"]


# ---- ops on every kind of input --------------------------------------------------------------------

def test_mlp_on_feature_vectors():
    text = "input 784\nlinear(256) relu dropout(0.2)\nlinear(64) tanh\nlinear(10) softmax\n"
    an = load(text).analyze()
    assert an.totals.params == 785 * 256 + 257 * 64 + 65 * 10
    assert an.graph.nodes[-1].shape == (10,)
    assert {s.rf for s in an.layers} == {None}


def test_one_dimensional_convolution_on_c_by_l():
    text = ("input 4x100\nconv(8, 5, stride=2) relu\nmaxpool(2)\nconv(8, 3, pad=\"same\")\n"
            "adaptive_avgpool(10)\nglobal_avgpool\n")
    an = load(text).analyze()
    assert [s.node.shape for s in an.layers[1:]] == [(8, 48), (8, 48), (8, 24), (8, 24), (8, 10), (8,)]
    assert an.layers[1].params == (5 * 4 + 1) * 8
    assert an.layers[1].rf == (5,) and an.layers[3].rf == (7,) and an.layers[3].jump == (4,)


def test_three_dimensional_convolution():
    an = load("input 2x8x8x8\nconv(4, 3)\nmaxpool(2)\n").analyze()
    assert an.layers[1].node.shape == (4, 6, 6, 6) and an.layers[1].params == (27 * 2 + 1) * 4
    assert an.layers[2].node.shape == (4, 3, 3, 3)


def test_maxout():
    an = load("input 100\nmaxout(20, pieces=3)\nmaxout(5)\n").analyze()
    assert [s.node.shape for s in an.layers[1:]] == [(20,), (5,)]
    assert [s.params for s in an.layers[1:]] == [101 * 20 * 3, 21 * 5 * 2]  # maxout doubles with 2 pieces
    assert [s.macs for s in an.layers[1:]] == [100 * 20 * 3, 20 * 5 * 2]


def test_prelu_per_channel_or_shared():
    an = load("input 16x8x8\nprelu\nprelu(per_channel=true)\n").analyze()
    assert [s.params for s in an.layers[1:]] == [1, 16]


@pytest.mark.parametrize("k, d, pad", [(1, 1, 0), (3, 1, 1), (5, 1, 2), (7, 1, 3), (3, 2, 2), (3, 3, 3)])
def test_same_padding(k, d, pad):
    node = load(f"input 3x17x17\nconv(4, {k}, dilation={d}, pad=\"same\")\n").graph.layers[0]
    assert node.shape == (4, 17, 17)


def test_same_padding_needs_an_odd_extent():
    assert error_codes("input 3x8x8\nconv(4, 2, pad=\"same\")\n") == ["NN013"]


def test_ceil_mode_pooling():
    assert shapes("input 8x112x112\nmaxpool(3, stride=2, ceil_mode=true)\n")["maxpool"] == (8, 56, 56)
    assert shapes("input 8x112x112\nmaxpool(3, stride=2)\n")["maxpool"] == (8, 55, 55)
    # GoogLeNet: 28 -> 14 with a 3x3/2 ceil-mode pool; 7x7 -> 4 with 2x2/2 ceil
    assert shapes("input 8x28x28\nmaxpool(3, stride=2, ceil_mode=true)\n")["maxpool"] == (8, 14, 14)
    assert shapes("input 8x7x7\nmaxpool(2, ceil_mode=true)\n")["maxpool"] == (8, 4, 4)


def test_pooling_stride_defaults_to_the_kernel():
    assert shapes("input 3x32x32\nmaxpool(2)\navgpool(4)\n") == {"maxpool": (3, 16, 16), "avgpool": (3, 4, 4)}


@pytest.mark.parametrize("op", ["relu", "leaky_relu(0.2)", "rrelu", "elu(a=0.5)", "gelu", "sigmoid",
                                "tanh", "softmax", "log_softmax", "identity", "dropout(0.1)", "lrn(5)"])
def test_shape_preserving_ops_have_no_parameters(op):
    an = load(f"input 16x8x8\n{op}\n").analyze()
    assert an.layers[1].node.shape == (16, 8, 8) and an.layers[1].params == 0


def test_batchnorm_and_flatten():
    an = load("input 16x8x8\nbatchnorm\nflatten\n").analyze()
    assert an.layers[1].params == 32 and an.layers[1].buffers == 32
    assert an.layers[2].node.shape == (1024,)


# ---- the train section ---------------------------------------------------------------------------

def sample(arg) -> str:
    """A valid value for an argument of the given kind, as spec text."""
    if arg.default is not REQUIRED and arg.default is not None:
        v = arg.default
        return ("true" if v else "false") if isinstance(v, bool) else (f'"{v}"' if isinstance(v, str) else str(v))
    kind = arg.kind
    if kind.startswith("enum:"):
        return f'"{kind[5:].split("|")[0]}"'
    return {"count": "3", "nonneg": "1", "posfloat": "0.5", "float": "0.1", "prob": "0.5",
            "ints": "(10, 20)", "str": '"data.npz"', "bool": "true"}[kind]


def choice_text(name: str, args) -> str:
    inner = ", ".join(f"{a.name}={sample(a)}" for a in args)
    return f"{name}({inner})" if inner else name


def train(body: str) -> config.TrainConfig:
    return load("network n\ninput 8\nfc: linear(4)\ntrain {\n" + body + "\n}\n").train


@pytest.mark.parametrize("key, table", [("loss", config.LOSSES), ("optimizer", config.OPTIMIZERS),
                                        ("data", config.DATA)])
def test_every_choice_key_and_choice(key, table):
    for name, args in table.items():
        cfg = train(f"{key} {choice_text(name, args)}")
        choice = getattr(cfg, key)
        assert choice.name == name and set(choice.options) == {a.name for a in args}
        assert train(f"{key} {name}" if all(a.default is not REQUIRED for a in args)
                     else f"{key} {choice_text(name, args)}").spans[key].line == 5


@pytest.mark.parametrize("key, table", [("schedule", config.SCHEDULES), ("augment", config.AUGMENTS)])
def test_every_list_key_and_choice(key, table):
    text = ", ".join(choice_text(name, args) for name, args in table.items())
    cfg = train(f"{key} {text}")
    assert [c.name for c in getattr(cfg, key)] == list(table)


def test_every_init_scheme_and_per_layer_overrides():
    for name, args in config.INITS.items():
        assert train(f"init {choice_text(name, args)}").init.name == name
    cfg = train('init he(mode="fan_out")\ninit "fc*" zeros\ninit "head.0" normal(std=0.001)')
    assert cfg.init.name == "he" and cfg.init.options["mode"] == "fan_out"
    assert [(p, c.name) for p, c in cfg.init_overrides] == [("fc*", "zeros"), ("head.0", "normal")]


def test_scalar_keys():
    cfg = train("weight_decay 5e-4\nl1 1e-5\nl2 0.01\nbatch 256\nepochs 90\nvalidation 0.1\nseed 42\n"
                "classes 4")
    assert (cfg.weight_decay, cfg.l1, cfg.l2, cfg.batch, cfg.epochs, cfg.validation, cfg.seed, cfg.classes) \
        == (5e-4, 1e-5, 0.01, 256, 90, 0.1, 42, 4)


def test_keyword_keys():
    cfg = train("early_stopping patience=5, min_delta=0.001\nclip norm=1.0\nelastic_net l1=0.1, l2=0.2")
    assert cfg.early_stopping == {"patience": 5, "min_delta": 0.001, "monitor": "val_loss"}
    assert cfg.clip == {"norm": 1.0, "value": None}
    assert (cfg.l1, cfg.l2) == (0.1, 0.2)


def test_freeze_patterns():
    cfg = train('freeze "features", "layer1.*", "fc?"')
    assert cfg.freeze == ("features", "layer1.*", "fc?")
    assert config.is_frozen("features.0", cfg.freeze) and config.is_frozen("features", cfg.freeze)
    assert config.is_frozen("layer1.0.conv1", cfg.freeze) and config.is_frozen("fc8", cfg.freeze)
    assert not config.is_frozen("layer2.0.conv1", cfg.freeze) and not config.is_frozen("features_x", cfg.freeze)


def test_every_train_key_is_known_and_tested():
    tested = {"loss", "optimizer", "data", "schedule", "augment", "init", "weight_decay", "l1", "l2",
              "batch", "epochs", "validation", "seed", "classes", "early_stopping", "clip",
              "elastic_net", "freeze", "health", "noise", "folds", "snapshots", "class_weights",
              "sampler"}  # health: tests/test_health.py; noise: test_regops.py;
    # folds, snapshots: test_members.py; class_weights, sampler: test_imbalance.py
    assert set(config.KEYS) == tested


def test_train_section_uses_network_parameters():
    spec = load("network n(bs = 64)\ninput 8\nlinear(2)\ntrain {\n  batch bs * 2\n}\n")
    assert spec.train.batch == 128


@pytest.mark.parametrize("body", [
    "optimizer adam(lr=-1)", "loss hinge(margin=0)", "batch 2.5", "validation 1.5", "epochs -3",
    "schedule multistep(milestones=(3, -1))", "augment hflip(p=2)", "init he(dist=\"wide\")",
    "clip norm=1, norm=2", "optimizer sgd(0.1, 0.9, true, 0.0, 5)", "loss", "freeze 3", "init \"a\" \"b\" c",
    "data npz", "elastic_net l1=0.1", "optimizer sgd, adam", "schedule step"])
def test_bad_train_settings(body):
    assert set(error_codes("input 8\nlinear(2)\ntrain {\n" + body + "\n}\n")) == {"NN030"}


def test_a_repeated_op_chained_after_a_label_gets_a_numbered_name():
    g = nnspec.loads("input 8\nhead: linear(32) relu relu\n").graph
    assert [n.name for n in g.layers] == ["head", "head_relu", "head_relu_2"]


# ---- line breaks inside brackets ------------------------------------------------------------------

def test_a_line_break_inside_parentheses_continues_the_statement():
    spec = load("network n(widths = (8,\n                   16),\n          classes = 10)\ninput 3x8x8\n"
                "conv(widths[1],   # channels\n     3,\n\n     pad=1,\n) relu\n"
                "conv(widths[\n  0], 1)\n")
    assert [(nd.name, nd.shape) for nd in spec.graph.layers] == [
        ("conv", (16, 8, 8)), ("relu", (16, 8, 8)), ("conv_1", (8, 8, 8))]
    assert spec.graph.args["classes"] == 10


def test_outside_brackets_a_line_break_still_ends_the_statement():
    # `relu` on its own line is a new statement, not an argument of the chain before it
    spec = load("input 3x8x8\nconv(8, 3)\nrelu\n")
    assert [nd.name for nd in spec.graph.layers] == ["conv", "relu"]
    assert error_codes("input 3x8x8\nconv(8, 3) +\n 1\n") == ["NN001"]


# ---- tuples as data, indexing, built-in functions ------------------------------------------------

def test_tuples_as_network_parameters_and_indexing():
    text = ("network resnet(depths = (2, 1, 3))\ninput 3x8x8\n"
            "repeat len(depths) as s { repeat depths[s] { conv(8, 3, pad=1) } }\n"
            "conv(depths[-1] + depths[0], 1)\n")
    spec = load(text)
    assert len(spec.graph.layers) == 2 + 1 + 3 + 1
    assert spec.graph.layers[-1].attrs["out"] == 5
    assert len(load(text, depths=(1, 1)).graph.layers) == 3


@pytest.mark.parametrize("text, code, message", [
    ("repeat depths[4] { relu }", "NN015", "index 4 is out of range for a tuple of 4 items"),
    ("repeat depths[-5] { relu }", "NN015", "index -5 is out of range for a tuple of 4 items"),
    ("conv(width[0], 3)", "NN015", "cannot index 64: only tuples have items"),
    ("conv(depths[1.0], 3)", "NN015", "an index is an integer, got 1"),
    ("conv(depths[true], 3)", "NN015", "an index is an integer, got true"),
    ("conv(depths, 3)", "NN013", None),
])
def test_index_errors_are_clean_diagnostics(text, code, message):
    with pytest.raises(nnspec.SpecError) as info:
        load(f"network n(depths = (2, 2, 2, 2), width = 64)\ninput 3x8x8\n{text}\n")
    [d] = info.value.diagnostics
    assert d.code == code and d.span.line == 3
    if message:
        assert d.message == message


@pytest.mark.parametrize("expr, value", [
    ("min(3, 8)", 3), ("max(3, 8)", 8), ("min(9, 4, 6)", 4), ("max(sizes)", 7), ("min(sizes)", 2),
    ("ceil(7 / 2)", 4), ("floor(7 / 2)", 3), ("ceil(8 / 2)", 4), ("ceil(-7 / 2) + 10", 7),
    ("floor(-7 / 2) + 10", 6), ("ceil(2.5)", 3), ("floor(2.5)", 2), ("len(sizes)", 3),
    ("max(1, min(5, 9)) * 2", 10), ("sizes[1] + (1, 2)[0]", 8)])
def test_builtin_functions(expr, value):
    spec = load(f"network n(sizes = (2, 7, 5))\ninput 1x4x4\nconv({expr}, 1)\n")
    assert spec.graph.nodes[1].attrs["out"] == value


def test_ceil_and_floor_of_a_division_are_exact_for_large_integers():
    # 10**17 + 1 is not exactly representable as a float: a float division would be wrong
    spec = load("network n(a = 10 ** 17 + 1)\ninput 1x4x4\nconv(ceil(a / 2) - 5 * 10 ** 16, 1)\n"
                "conv(floor(a / 2) - 5 * 10 ** 16 + 1, 1)\n")
    assert [nd.attrs["out"] for nd in spec.graph.layers] == [1, 1]  # 5*10**16 + 1 and 5*10**16


# ---- labels built from expressions ---------------------------------------------------------------

def test_labels_from_expressions_name_layers_as_torchvision_does():
    text = ("network n(layers = 3)\ninput 3x8x8\n"
            "denseblock1: { repeat layers as i { denselayer{i + 1}: conv(4, 3, pad=1) relu } }\n"
            "repeat 2 as s { stage{s}_{s * 2 + 1}x: { conv(4, 1) } }\n")
    assert names(text) == ["denseblock1.denselayer1", "denseblock1.denselayer1_relu",
                           "denseblock1.denselayer2", "denseblock1.denselayer2_relu",
                           "denseblock1.denselayer3", "denseblock1.denselayer3_relu",
                           "stage0_1x.0", "stage1_3x.0"]


def test_a_label_expression_is_located_where_it_is_written():
    with pytest.raises(nnspec.SpecError) as info:
        load("input 3x8x8\nrepeat 2 as i {\n    block{i + k}: relu\n}\n")
    [d] = info.value.diagnostics
    assert (d.code, d.message) == ("NN014", "undefined name 'k'")
    assert (d.span.line, d.span.column, d.span.end_column) == (3, 15, 16)


def test_labels_from_expressions_must_come_to_distinct_names():
    assert error_codes("input 3x8x8\nrepeat 2 as i { layer{i // 2}: relu }\n") == ["NN018"]
    assert error_codes("input 3x8x8\nx{}: relu\n") == ["NN001"]
    assert error_codes("input 3x8x8\nx{1 +}: relu\n") == ["NN001"]
    assert error_codes("input 3x8x8\nx{1.5}: relu\n") == ["NN013"]


def test_a_label_in_the_middle_of_a_statement_says_so():
    for text in ("input 3x8x8\nf: { a: conv(8, 3) b: conv(8, 3) }\n", "input 3x8x8\nconv(8, 3) relu b: relu\n"):
        with pytest.raises(nnspec.SpecError) as info:
            load(text)
        [d] = info.value.diagnostics
        assert d.code == "NN001"
        assert d.message == "the label 'b:' is not at the start of a statement"
        assert "a layer name is a letter" not in (d.help or "")


# ---- use "file" ----------------------------------------------------------------------------------

def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, "utf-8")
    return path


def test_use_brings_block_definitions_into_scope(tmp_path):
    write(tmp_path / "lib" / "convs.nn", "# shared\nblock cbr(c) {\n  conv(c, 3, pad=1)\n  bn: batchnorm\n  relu\n}\n")
    write(tmp_path / "lib" / "blocks.nn", 'use "convs.nn"\nblock pair(c) {\n  a: cbr(c)\n  b: cbr(c)\n}\n')
    spec = nnspec.load(write(tmp_path / "net.nn", 'network net\nuse "lib/blocks.nn"\ninput 3x8x8\n'
                                                  "p: pair(4)\n"))
    assert [nd.name for nd in spec.graph.layers] == [
        "p.a.0", "p.a.bn", "p.a.2", "p.b.0", "p.b.bn", "p.b.2"]
    assert set(spec.graph.blocks) == {"cbr", "pair"}
    assert spec.graph.layers[0].chain[-1].defined.file.endswith("convs.nn")


def test_errors_inside_a_used_file_point_into_that_file(tmp_path):
    write(tmp_path / "blocks.nn", "block b(c) {\n  conv(c, 3, strde=2)\n}\n")
    path = write(tmp_path / "net.nn", 'use "blocks.nn"\ninput 3x8x8\nb(4)\n')
    with pytest.raises(nnspec.SpecError) as info:
        nnspec.load(path)
    [d] = info.value.diagnostics
    assert d.code == "NN011" and d.span.file.endswith("blocks.nn") and d.span.line == 2
    assert "2 |   conv(c, 3, strde=2)" in info.value.render()


@pytest.mark.parametrize("files, code, message, where", [
    ({"a.nn": 'use "b.nn"\nblock x() { relu }\n', "b.nn": 'use "a.nn"\nblock y() { relu }\n'},
     "NN016", '"a.nn" is already being read: `use` goes round in a circle (net.nn -> a.nn -> b.nn -> a.nn)',
     ("b.nn", 1)),
    ({"a.nn": 'use "a.nn"\n'}, "NN016", None, ("a.nn", 1)),
    ({}, "NN002", "cannot read 'a.nn'", ("net.nn", 1)),
    ({"a.nn": "input 3x8x8\nrelu\n"}, "NN019",
     '"a.nn" has an `input` declaration; a used file may only define blocks', ("net.nn", 1)),
    ({"a.nn": "block x() { relu }\ntrain {\n  batch 8\n}\n"}, "NN019",
     '"a.nn" has a `train` section; a used file may only define blocks', ("net.nn", 1)),
    ({"a.nn": "\nblock x( { relu }\n"}, "NN001", None, ("a.nn", 2)),
    ({"a.nn": "block relu() { conv(3, 1) }\n"}, "NN019", "block 'relu' has the name of a built-in op",
     ("a.nn", 1)),
])
def test_use_misuse_is_a_clean_error(tmp_path, files, code, message, where):
    for name, text in files.items():
        write(tmp_path / name, text)
    path = write(tmp_path / "net.nn", 'use "a.nn"\ninput 3x8x8\nrelu\n')
    with pytest.raises(nnspec.SpecError) as info:
        nnspec.load(path)
    d = info.value.diagnostics[0]
    assert d.code == code
    if message:
        assert d.message.startswith(message)
    assert (d.span.file, d.span.line) == (str(tmp_path / where[0]), where[1])
    text = info.value.render()
    assert f"{where[1]} | " in text, "the line is shown from the file the error is in"


def test_a_file_used_twice_is_read_once(tmp_path):
    write(tmp_path / "base.nn", "block x() { relu }\n")
    write(tmp_path / "a.nn", 'use "base.nn"\nblock ya() { x() }\n')
    write(tmp_path / "b.nn", 'use "base.nn"\nblock yb() { x() }\n')
    path = write(tmp_path / "net.nn", 'use "a.nn"\nuse "b.nn"\nuse "a.nn"\ninput 3x8x8\nya()\nyb()\n')
    assert [nd.name for nd in nnspec.load(path).graph.layers] == ["ya.0.0", "yb.0.0"]


def test_a_block_defined_in_two_files_is_an_error(tmp_path):
    write(tmp_path / "a.nn", "block x() { relu }\n")
    path = write(tmp_path / "net.nn", 'use "a.nn"\ninput 3x8x8\nblock x() { tanh }\nx()\n')
    with pytest.raises(nnspec.SpecError) as info:
        nnspec.load(path)
    [d] = info.value.diagnostics
    assert d.code == "NN019" and d.span.file == str(path) and d.span.line == 3
    assert d.notes == (f"first defined at {tmp_path / 'a.nn'}:1:1",)


def test_use_is_refused_for_urls():
    assert error_codes('use "http://example.com/a.nn"\ninput 3x8x8\nrelu\n') == ["NN002"]


def test_the_emitter_writes_the_new_expressions_as_python():
    """One evaluator (nnspec.expr) with symbolic values: min/max, ceil/floor of a division,
    tuple items and labels from expressions become source, not numbers written out
    (tests/test_torch_emit.py runs the file and compares it with nnspec.compile)."""
    from conftest import ROOT

    from nnspec.backends.torch_emit import emit_torch
    source = emit_torch(ROOT / "tests" / "data" / "torch" / "expressions.nn")
    assert "as instantiated at" not in source  # one class per block definition
    for written in ("self.conv1 = nn.Conv2d(in_channels, max(c, 4), k, padding=k // 2)",
                    "self.squeeze = nn.Conv2d(max(c, 8), -(-c // 3), 1)",
                    "self.stem = nn.Conv2d(3, widths[0], 3, padding=1)",
                    "self.stage2 = Unit(-(-widths[0] // 3), min(widths[1], widths[-1] + 1), k=5)"):
        assert written in source


def test_a_tuple_parameter_can_be_set_from_the_command_line(tmp_path, capsys):
    from nnspec.cli import main
    from nnspec.expr import literal
    path = write(tmp_path / "stages.nn", "network stages(depths = (2, 2))\ninput 3x8x8\n"
                                         "repeat len(depths) as s { repeat depths[s] { relu } }\n")
    assert main(["check", str(path), "--set", "depths=(1, 2, 3)"]) == 0
    assert "6 layers" in capsys.readouterr().out
    assert literal("(1, (2, 3), -4, 2 ** 3, \"a\", true)") == (1, (2, 3), -4, 8, "a", True)
    with pytest.raises(nnspec.SpecError):
        literal("(1, x)")
