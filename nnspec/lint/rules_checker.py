"""NN0xx: the checker's errors (parser and expander), documented in the catalogue so that
`nnspec lint` reports them as findings and `--explain NN022` works. They are found while
the spec is read (nnspec/parser.py, nnspec/expand.py, nnspec/config.py), not by a rule here.
"""

from __future__ import annotations

from .catalogue import document

_NESTED = "{ " * 101 + "relu" + " }" * 101

document(
    "NN001", "syntax-error", "error",
    summary="The file is not valid .nn syntax; parsing stops at the first error.",
    why="Nothing after a syntax error can be checked. `nnspec lint` exits with status 2.",
    bad="""
        input 3x32x32
        conv(16 3)
    """,
    good="""
        input 3x32x32
        conv(16, 3)
    """,
    fix="Follow the `expected …` list in the message; arguments are separated by commas, "
        "shapes are written `3x224x224`, layers are named `name: op(…)`.",
)

document(
    "NN002", "unreadable-source", "error",
    summary="The file cannot be read as a spec: missing, binary, not UTF-8, larger than 2 MB, "
            "or brackets nested more than 100 deep.",
    why="The parser refuses hostile or accidental input before it spends time on it.",
    bad=f"""
        input 8
        {_NESTED}
    """,
    good="""
        input 8
        relu
    """,
    fix="Check the path and the encoding (UTF-8); flatten deep nesting with block definitions.",
)

document(
    "NN003", "number-out-of-range", "error",
    summary="A literal or computed number is too large (integers must stay below 10^18, "
            "results must be finite).",
    why="Layer sizes that large are always a typo or a runaway expression.",
    bad="""
        input 3x32x32
        conv(2 ** 100, 3)
    """,
    good="""
        input 3x32x32
        conv(2 ** 6, 3)
    """,
    fix="Check the expression; values in a spec must be below 10^18.",
)

document(
    "NN010", "unknown-op", "error",
    summary="An op or block name that is neither a built-in op nor a block of this file.",
    why="The layer cannot be built; the message suggests the closest known name.",
    bad="""
        input 3x32x32
        cnov(16, 3)
    """,
    good="""
        input 3x32x32
        conv(16, 3)
    """,
    fix="Use a built-in op (`nnspec ops` lists them) or define the block.",
)

document(
    "NN011", "unknown-argument", "error",
    summary="A keyword argument that the op, block or network does not take.",
    why="A misspelt argument would otherwise be silently ignored (`strides=2` leaves stride 1).",
    bad="""
        input 3x32x32
        conv(16, 3, strides=2)
    """,
    good="""
        input 3x32x32
        conv(16, 3, stride=2, pad=1)
    """,
    fix="Use the argument name the help line suggests; `nnspec ops` shows every signature.",
)

document(
    "NN012", "wrong-argument-count", "error",
    summary="A required argument is missing, an argument is given twice, or there are too "
            "many positional arguments.",
    why="The layer's size is undefined.",
    bad="""
        input 3x32x32
        conv(16)
    """,
    good="""
        input 3x32x32
        conv(16, 3)
    """,
    fix="Give every required argument once: `conv(out, kernel, stride=1, pad=0, …)`.",
)

document(
    "NN013", "invalid-argument-value", "error",
    summary="An argument of the wrong type or outside its domain (a kernel of 0, a "
            "probability above 1, an unknown enum value).",
    why="The layer cannot exist with that value.",
    bad="""
        input 64
        linear(32) relu dropout(1.5)
        linear(10)
    """,
    good="""
        input 64
        linear(32) relu dropout(0.5)
        linear(10)
    """,
    fix="Use a value in the domain the message names.",
)

document(
    "NN014", "undefined-name", "error",
    summary="An expression reads a name that is not a network parameter, block parameter or "
            "repeat index in scope (or a field `in.x` the incoming shape lacks).",
    why="The value is unknown; blocks see only their own parameters and the network's.",
    bad="""
        input 3x32x32
        conv(width, 3)
    """,
    good="""
        network net(width = 16)
        input 3x32x32
        conv(width, 3)
    """,
    fix="Declare the name as a network or block parameter, or fix its spelling.",
)

document(
    "NN015", "invalid-expression", "error",
    summary="An expression that cannot be evaluated: division by zero, arithmetic on a "
            "string, a call where a value is needed.",
    why="The value is undefined.",
    bad="""
        input 3x32x32
        conv(16 / 0, 3)
    """,
    good="""
        input 3x32x32
        conv(16 / 2, 3)
    """,
    fix="Rewrite the expression; `//` is integer division.",
)

document(
    "NN016", "recursive-block", "error",
    summary="A block that instantiates itself, directly or through other blocks "
            "(the language's only way to write a cycle).",
    why="The expansion would never end; networks are acyclic graphs.",
    bad="""
        input 64
        block mlp(n) {
          linear(n) relu
          mlp(n)
        }
        mlp(32)
    """,
    good="""
        input 64
        block mlp(n) {
          linear(n) relu
        }
        repeat 2 { mlp(32) }
    """,
    fix="Use `repeat N { … }` to stack a block.",
)

document(
    "NN017", "network-too-large", "error",
    summary="The network expands to more than 200,000 layers.",
    why="Almost always a wrong repeat count; the limit keeps the tools responsive.",
    bad="""
        input 64
        repeat 300000 { relu }
    """,
    good="""
        input 64
        repeat 3 { linear(64) relu }
    """,
    fix="Check the repeat counts.",
)

document(
    "NN018", "duplicate-name", "error",
    summary="Two layers, groups or block instances with the same name in the same scope.",
    why="Names are the PyTorch module paths of the layers; a state_dict needs them unique.",
    bad="""
        input 64
        fc: linear(32) relu
        fc: linear(10)
    """,
    good="""
        input 64
        fc1: linear(32) relu
        fc2: linear(10)
    """,
    fix="Rename one of them.",
)

document(
    "NN019", "invalid-structure", "error",
    summary="The file's structure is wrong: no `input`, two `network` headers, two `train` "
            "sections, a block defined twice or named like an op, or no layers.",
    why="One file describes one network with one input.",
    bad="""
        conv(16, 3)
    """,
    good="""
        input 3x32x32
        conv(16, 3)
    """,
    fix="Declare the input shape first (`input 3x224x224`); one header, one train section.",
)

document(
    "NN020", "window-does-not-fit", "error",
    summary="A conv or pooling window larger than its padded input, so the output would have "
            "size ≤ 0 (a too-large kernel, or too many downsamplings before it).",
    why="O = ⌊(N − F + 2P)/S⌋ + 1 must be at least 1; PyTorch raises at run time.",
    bad="""
        input 3x4x4
        conv(16, 7)
    """,
    good="""
        input 3x4x4
        conv(16, 3)
    """,
    fix="Use a smaller kernel, add padding, or remove a downsampling layer earlier.",
)

document(
    "NN021", "rank-mismatch", "error",
    summary="An op applied to a tensor of the wrong rank: `linear` on a CxHxW map without "
            "`flatten`, `conv` or pooling on a feature vector.",
    why="The op is undefined on that input.",
    bad="""
        input 3x32x32
        conv(16, 3) relu
        linear(10)
    """,
    good="""
        input 3x32x32
        conv(16, 3) relu
        flatten
        linear(10)
    """,
    fix="Add `flatten` (or `global_avgpool`) before `linear`; spatial layers go before it.",
)

document(
    "NN022", "add-shape-mismatch", "error",
    summary="`add { … }` paths that end in different shapes; the message names each path.",
    why="An element-wise sum needs equal shapes.",
    bad="""
        input 64x16x16
        add {
          conv(128, 3, pad=1)
          identity
        }
    """,
    good="""
        input 64x16x16
        add {
          conv(128, 3, pad=1)
          conv(128, 1, bias=false)
        }
    """,
    fix="Project the shortcut: `conv(C, 1, stride=S, bias=false) batchnorm`.",
)

document(
    "NN023", "concat-shape-mismatch", "error",
    summary="`concat { … }` paths with different spatial sizes; the message names each path.",
    why="Concatenation along channels needs equal height and width.",
    bad="""
        input 64x16x16
        concat {
          conv(32, 3, pad=1)
          conv(32, 3, stride=2, pad=1)
        }
    """,
    good="""
        input 64x16x16
        concat {
          conv(32, 3, pad=1)
          conv(32, 1)
        }
    """,
    fix="Give every branch the same stride and 'same' padding.",
)

document(
    "NN024", "shape-assertion-failed", "error",
    summary="A `-> shape` assertion that does not match the inferred shape.",
    why="The spec and the paper's table disagree; one of them is wrong.",
    bad="""
        input 3x32x32
        conv(16, 3) -> 16x32x32
    """,
    good="""
        input 3x32x32
        conv(16, 3, pad=1) -> 16x32x32
    """,
    fix="Run `nnspec explain FILE LAYER` to see the arithmetic.",
)

document(
    "NN025", "groups-do-not-divide-channels", "error",
    summary="A grouped conv whose `groups` does not divide its input and output channels.",
    why="Each group must get the same number of channels.",
    bad="""
        input 6x32x32
        conv(16, 3, groups=4)
    """,
    good="""
        input 6x32x32
        conv(16, 3, groups=2)
    """,
    fix="Choose groups among the common divisors of the two channel counts.",
)

document(
    "NN030", "invalid-train-setting", "error",
    summary="A train-section entry with an unknown key, loss, optimizer, schedule, init or "
            "data source, an unknown option, or a value of the wrong type.",
    why="The training configuration cannot be built.",
    bad="""
        input 64
        linear(10)
        train {
          optimizer sgdd(lr=0.1)
        }
    """,
    good="""
        input 64
        linear(10)
        train {
          optimizer sgd(lr=0.1)
        }
    """,
    fix="Use the suggested name; docs/language.md lists every train setting.",
)
