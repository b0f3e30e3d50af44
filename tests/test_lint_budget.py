"""The false-positive budget: clean, well-designed specs (every shipped spec and the realistic
set in tests/data/lint_clean/, written independently of the catalogue's examples) lint with no
warning or error, and with at most one info finding per spec on average."""

from __future__ import annotations

from pathlib import Path

import pytest

from nnspec.lint import lint_file

ROOT = Path(__file__).resolve().parent.parent
CLEAN = sorted((ROOT / "tests" / "data" / "lint_clean").glob("*.nn"))
SHIPPED = sorted((ROOT / "specs").glob("*.nn"))
ALL = SHIPPED + CLEAN


def test_the_budget_covers_enough_specs():
    assert len(CLEAN) >= 20
    assert len(SHIPPED) >= 10


@pytest.mark.parametrize("path", ALL, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_clean_spec_has_no_warning_or_error(path):
    r = lint_file(path)
    loud = [f"{d.code} {d.message}" for d in r.findings if d.severity != "info"]
    assert loud == []


def test_at_most_one_info_per_spec_on_average():
    infos = {p.name: [d.code for d in lint_file(p).findings if d.severity == "info"] for p in ALL}
    total = sum(len(v) for v in infos.values())
    assert total <= len(ALL), infos


# ---- the planted-mistake set: one mistake each, written as users write them ----------------------

PLANTED = sorted((ROOT / "tests" / "data" / "lint_planted").glob("*.nn"))


def test_the_planted_set_is_large_enough():
    assert len(PLANTED) >= 40


@pytest.mark.parametrize("path", PLANTED, ids=lambda p: p.name)
def test_planted_mistake_is_caught_at_warning_or_above(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# planted: ")
    want = first.split()[-1]
    loud = {d.code for d in lint_file(path).findings if d.severity in ("warning", "error")}
    assert want in loud, sorted(loud)


# ---- exact messages --------------------------------------------------------------------------------

from nnspec.lint import lint_source  # noqa: E402


def _msgs(text: str, code: str, **options):
    return [d for d in lint_source(text, "m.nn", options=options).findings if d.code == code]


def test_batch_norm_per_process_batch_under_data_parallel():
    text = ("input 3x8x8\nconv(16, 3, pad=1, bias=false) batchnorm relu\nmaxpool(2)\n"
            "conv(16, 3, pad=1, bias=false) batchnorm relu\nglobal_avgpool\nlinear(10)\n"
            "train {\n  batch 32\n}\n")
    assert _msgs(text, "NN514") == []                      # 32 in one process
    (d,) = _msgs(text, "NN514", processes=8)               # 32 / 8 = 4 per process
    assert "batch 32 over 8 processes gives each 4 samples" in d.message
    (d,) = _msgs(text, "NN514", processes=32)              # one sample each
    assert "each 1 sample:" in d.message


def test_keras_momentum_names_the_pytorch_value():
    (d,) = _msgs("input 3x8x8\nconv(16, 3, pad=1, bias=false)\nbatchnorm(momentum=0.99) relu\n", "NN515")
    assert "PyTorch's 0.01" in d.message and "batchnorm(momentum=0.01)" in d.help


def test_lr_trajectory_reports_the_epoch_it_collapses():
    # 0.1·0.5^e < 1e-4 first at e = 10 (0.5^10 = 9.8e-4 < 1e-3): epochs 11..60 are wasted
    text = "input 64\nlinear(10)\ntrain {\n  optimizer sgd(lr=0.1)\n  schedule exponential(gamma=0.5)\n  epochs 60\n}\n"
    (d,) = _msgs(text, "NN720")
    assert "at epoch 11 (9.8e-05)" in d.message and "50 of the 60 epochs" in d.message


def test_sgdr_cut_mid_cycle_names_the_cycle_ends():
    text = ("input 64\nlinear(10)\ntrain {\n  optimizer sgd(lr=0.1)\n"
            "  schedule restarts(period=10, mult=2)\n  epochs 40\n}\n")
    (d,) = _msgs(text, "NN720")
    assert "cycles end at epochs 10, 30, next 70" in d.message and "train 30 or 70 epochs" in d.help
    assert _msgs(text.replace("epochs 40", "epochs 30"), "NN720") == []


def test_channels_last_suggests_the_channels_first_shape():
    (d,) = _msgs("input 32x32x3\nconv(16, 3, pad=1) relu\nglobal_avgpool\nlinear(10)\n", "NN210")
    assert "did you mean `input 3x32x32`" in d.help


def test_add_of_three_paths_shows_them():
    text = "input 64\nadd {\n  linear(64, bias=false)\n  batchnorm\n  identity\n}\nlinear(10)\n"
    (d,) = _msgs(text, "NN109")
    assert "adds 3 paths" in d.message and "path 3 ends at" in d.notes[0]


def test_parameter_concentration_help_fits_the_layer():
    # a flattened 64x8x8 map into a 4096-wide layer: global pooling fits
    flat = "input 3x8x8\nconv(64, 3, pad=1) relu\nflatten\nlinear(4096) relu\nlinear(10)\n"
    (d,) = _msgs(flat, "NN601")
    assert "global average pooling" in d.help and "64x8x8" in d.help
    # after global pooling the same advice would be wrong
    pooled = "input 3x8x8\nconv(256, 3, pad=1) relu\nglobal_avgpool\nlinear(4096) relu\nlinear(10)\n"
    (d,) = _msgs(pooled, "NN601")
    assert "global average pooling" not in d.help


def test_fully_connected_after_global_pooling_is_not_on_the_image():
    text = "input 3x8x8\nglobal_avgpool\nlinear(10)\n"
    assert _msgs(text, "NN606") == []
    (d,) = _msgs("input 3x8x8\nmaxpool(2)\nflatten\nlinear(32) relu\nlinear(10)\n", "NN606")
    assert "the 3x4x4 map made from the 3x8x8 input" in d.message


def test_parameter_budget_points_at_the_largest_layer_not_the_batch():
    text = "input 1000\nlinear(1000) relu\nbig: linear(100000) relu\nlinear(10)\ntrain {\n  batch 64\n}\n"
    (d,) = _msgs(text, "NN802", memory_budget="64MB")
    assert d.span.line == 3 and "big" in d.notes[0]


def test_one_dimensional_kernels_and_articles():
    (d,) = _msgs("input 16x1\nconv(16, 5, pad=2)\n", "NN205")
    assert "4 of the 5 taps of the 5-wide kernel" in d.message
    (d,) = _msgs("input 16x64x64\nconv(16, 3, pad=1) relu\nconv(16, 11, pad=5) relu\n", "NN605")
    assert "an 11x11 conv" in d.message


def test_one_root_cause_one_finding():
    # conv 3/2 on 64 gives 31x31 (one row lost); every later 2x2 pool then halves an odd size
    text = ("input 3x64x64\nconv(16, 3, stride=2) relu\nmaxpool(2)\nconv(32, 3, pad=1) relu\n"
            "maxpool(2)\nconv(64, 3, pad=1) relu\nmaxpool(2)\nglobal_avgpool\nlinear(10)\n")
    (d,) = _msgs(text, "NN201")
    assert d.span.line == 2 and "pad=1" in d.help
    assert [n.split(":")[0] for n in d.notes] == ["then maxpool", "then maxpool_1", "then maxpool_2"]
    # with the root fixed (pad=1: 32, 16, 8, 4) nothing is left
    assert _msgs(text.replace("stride=2)", "stride=2, pad=1)"), "NN201") == []
