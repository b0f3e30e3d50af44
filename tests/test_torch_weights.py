"""Weights in and out: .safetensors (read without the safetensors package) and .pt/.pth
(torch.load(weights_only=True)); name matching, prefix maps, mismatch reports; hostile files."""

import json
import os
import pathlib
import struct

import pytest

torch = pytest.importorskip("torch")

import nnspec  # noqa: E402
from nnspec.backends.weights import (  # noqa: E402
    WeightsError,
    load_weights,
    read_safetensors,
    read_weights,
    save_weights,
)

SPEC = "input 4\nbody: { linear(8) relu }\nhead: linear(3)"


def _model(text=SPEC):
    return nnspec.compile(nnspec.loads(text))


def test_safetensors_round_trip_in_every_dtype(tmp_path):
    state = {"a": torch.randn(3, 4), "b": torch.arange(6, dtype=torch.int64).reshape(2, 3),
             "c": torch.randn(5).to(torch.bfloat16), "d": torch.tensor(7), "e": torch.zeros(0, 3),
             "f": torch.randn(2, 2).half(), "g": torch.tensor([True, False])}
    path = tmp_path / "w.safetensors"
    save_weights(state, path)
    back = read_safetensors(path)
    assert back.keys() == state.keys()
    for k in state:
        assert back[k].dtype == state[k].dtype and torch.equal(back[k], state[k]), k


def test_a_hand_written_safetensors_file_is_read(tmp_path):
    """The format, written out by hand: u64 header size, JSON header, raw little-endian data."""
    data = struct.pack("<3f", 1.0, 2.0, 3.0) + struct.pack("<2q", -1, 5)
    header = {"x": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]},
              "y": {"dtype": "I64", "shape": [2, 1], "data_offsets": [12, 28]},
              "__metadata__": {"format": "pt"}}
    text = json.dumps(header).encode()
    path = tmp_path / "hand.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    t = read_weights(path)
    assert t["x"].tolist() == [1.0, 2.0, 3.0] and t["y"].tolist() == [[-1], [5]]


@pytest.mark.parametrize("header, message", [
    ({"x": {"dtype": "F32", "shape": [3], "data_offsets": [0, 400]}}, "reaches past the 12-byte data"),
    ({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 12]}},
     r"data_offsets: 12 bytes for shape \[4\] of F32 \(needs 16\)"),
    ({"x": {"dtype": "F99", "shape": [3], "data_offsets": [0, 12]}}, "dtype: unknown dtype 'F99'"),
    ({"x": {"dtype": "F32", "shape": [-3], "data_offsets": [0, 12]}}, "shape: .* non-negative integers"),
    ([1, 2], "header: a JSON array, not an object"),
])
def test_damaged_safetensors_files_are_clean_errors(tmp_path, header, message):
    text = json.dumps(header).encode()
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"\0" * 12)
    with pytest.raises(WeightsError, match=message):
        read_weights(path)


def test_a_header_size_larger_than_the_file_is_refused(tmp_path):
    path = tmp_path / "huge.safetensors"
    path.write_bytes(struct.pack("<Q", 2 ** 62) + b"{}")
    with pytest.raises(WeightsError, match="not a safetensors file"):
        read_weights(path)


def test_safetensors_files_match_the_reference_implementation(tmp_path):
    st = pytest.importorskip("safetensors.torch")
    state = {"w": torch.randn(4, 3), "n": torch.tensor(3)}
    st.save_file(state, str(tmp_path / "theirs.safetensors"))
    assert all(torch.equal(read_safetensors(tmp_path / "theirs.safetensors")[k], state[k]) for k in state)
    save_weights(state, tmp_path / "ours.safetensors")
    theirs = st.load_file(str(tmp_path / "ours.safetensors"))
    assert all(torch.equal(theirs[k], state[k]) for k in state)


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".safetensors"])
def test_weights_saved_from_one_model_load_into_another(tmp_path, suffix):
    a, b = _model(), _model()
    save_weights(a, tmp_path / f"w{suffix}")
    report = nnspec.load_weights(b, tmp_path / f"w{suffix}")
    assert report.ok and len(report.loaded) == 4
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_training_checkpoints_are_unwrapped(tmp_path):
    a = _model()
    torch.save({"epoch": 3, "model_state_dict": a.state_dict(), "lr": 0.1}, tmp_path / "ckpt.pt")
    assert nnspec.load_weights(_model(), tmp_path / "ckpt.pt").ok


def test_transfer_learning_report_prefix_map_and_table(tmp_path):
    """A trunk trained with 5 classes and saved from DataParallel ("module." prefix), loaded
    into a 3-class model: the head does not fit; the report says so instead of raising."""
    donor = _model(SPEC.replace("linear(3)", "linear(5)") + "\nextra: linear(2)")
    torch.save({f"module.{k}": v for k, v in donor.state_dict().items()}, tmp_path / "dp.pth")
    model = _model()
    before = model.head.weight.clone()
    report = load_weights(model, tmp_path / "dp.pth", map={"module.": ""})
    assert report.loaded == ("body.0.weight", "body.0.bias")
    assert report.mismatched == (("head.weight", (3, 8), (5, 8)), ("head.bias", (3,), (5,)))
    assert report.unexpected == ("extra.weight", "extra.bias") and not report.ok
    assert torch.equal(model.body[0].weight, donor.body[0].weight)
    assert torch.equal(model.head.weight, before)  # a mismatch is skipped, not half-loaded
    table = report.table()
    assert table.splitlines()[0].startswith("2 of 4 model tensors loaded from")
    assert table.splitlines()[1:] == [
        "status      name          model  file",
        "----------  ------------  -----  ----",
        "mismatch    head.weight   3x8    5x8",
        "mismatch    head.bias     3      5",
        "unexpected  extra.weight  -      2x5",
        "unexpected  extra.bias    -      2",
    ]
    # dropping the head by prefix: the rest is an exact fit but for the missing head
    report = load_weights(_model(), tmp_path / "dp.pth", map={"module.": "", "module.head.": None,
                                                                "module.extra.": None})
    assert report.missing == ("head.weight", "head.bias") and not report.mismatched


def test_strict_loading_changes_nothing_when_anything_is_off(tmp_path):
    donor = _model(SPEC.replace("linear(3)", "linear(5)"))
    save_weights(donor, tmp_path / "w.safetensors")
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(WeightsError) as e:
        load_weights(model, tmp_path / "w.safetensors", strict=True)
    assert e.value.report.mismatched and "mismatch" in str(e.value)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


class _Exploit:
    """Unpickling this calls os.system: what a malicious "checkpoint" does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pt_file_that_tries_to_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"fc.weight": torch.zeros(2, 2), "payload": _Exploit(marker)}, tmp_path / "evil.pt")
    with pytest.raises(WeightsError, match="refused") as e:
        nnspec.load_weights(_model(), tmp_path / "evil.pt")
    assert "weights_only" in str(e.value)
    assert not marker.exists()


def test_unreadable_files_are_clean_errors(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(WeightsError, match="not a readable PyTorch file"):
        read_weights(tmp_path / "junk.pt")
    with pytest.raises(WeightsError, match="no such file"):
        read_weights(tmp_path / "missing.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(WeightsError, match="expected a state dict"):
        read_weights(tmp_path / "list.pt")


def test_a_state_dict_in_memory_loads_directly():
    a, b = _model(), _model()
    assert load_weights(b, a.state_dict()).ok
    assert torch.equal(a.head.bias, b.head.bias)


def test_torchvision_named_weights_load_into_resnet18(tmp_path):
    """torchvision's resnet18 state dict (names and shapes from the reference list), saved as
    .safetensors, loads strictly: the transfer-learning path with real names."""
    ref = json.loads((pathlib.Path(__file__).parent / "data" / "torchvision" / "resnet18.json").read_text())
    state = {k: torch.full(s, 0.5) if not k.endswith("num_batches_tracked") else torch.tensor(4)
             for k, s in ref["state_dict"]}
    save_weights(state, tmp_path / "r18.safetensors")
    model = nnspec.compile("specs/resnet18.nn")
    assert load_weights(model, tmp_path / "r18.safetensors", strict=True).ok
    assert torch.all(model.layer4[1].bn2.running_var == 0.5)
    ten = nnspec.loads(pathlib.Path("specs/resnet18.nn").read_text().replace("-> 1000", ""), classes=10)
    report = load_weights(nnspec.compile(ten), tmp_path / "r18.safetensors")
    assert [m[0] for m in report.mismatched] == ["fc.weight", "fc.bias"]


def test_totals_agree_with_and_without_a_map(tmp_path, capsys):
    """Every model tensor counts once in the total, whether it loads, is missing, mismatched
    or a batch-norm counter the file lacks: resnet18 has 122 state-dict tensors (62
    parameters; running mean, variance and counter of 20 batch norms: torchvision's list)."""
    from nnspec.cli import main
    ref = json.loads((pathlib.Path(__file__).parent / "data" / "torchvision" / "resnet18.json").read_text())
    n = len(ref["state_dict"])
    assert n == 122
    model = nnspec.compile("specs/resnet18.nn")
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, tmp_path / "dp.pth")
    plain = load_weights(nnspec.compile("specs/resnet18.nn"), tmp_path / "dp.pth")
    mapped = load_weights(nnspec.compile("specs/resnet18.nn"), tmp_path / "dp.pth", map={"module.": ""})
    assert plain.total == mapped.total == n
    assert (len(plain.loaded), len(plain.missing), len(plain.counters), len(plain.unexpected)) == (0, 102, 20, 122)
    assert (len(mapped.loaded), len(mapped.missing), len(mapped.counters)) == (122, 0, 0) and mapped.ok
    assert main(["weights", "specs/resnet18.nn", str(tmp_path / "dp.pth")]) == 1
    assert main(["weights", "specs/resnet18.nn", str(tmp_path / "dp.pth"), "--map", "module.="]) == 0
    out = capsys.readouterr().out
    assert f"0 of {n} model tensors loaded" in out and f"{n} of {n} model tensors loaded" in out
    # an older checkpoint without counters: everything that matters loads; the counters are counted
    old = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    report = load_weights(nnspec.compile("specs/resnet18.nn"), old)
    assert report.ok and report.total == n and len(report.loaded) == 102 and len(report.counters) == 20
    assert report.summary() == (f"102 of {n} model tensors loaded from <state dict>, "
                                "20 batch-norm counters not in the file (kept)")


def test_a_refused_pickle_is_one_line_of_ours(tmp_path):
    torch.save({"fc.weight": torch.zeros(2), "p": print}, tmp_path / "x.pth")
    with pytest.raises(WeightsError) as e:
        read_weights(tmp_path / "x.pth")
    assert str(e.value) == (f"{tmp_path / 'x.pth'}: refused: the file contains pickled code (global print), "
                            "not only tensors; nnspec reads tensors only (torch.load weights_only=True)")


def test_a_legacy_pt_file_still_loads(tmp_path):
    """The pre-zip format cannot be memory-mapped; it is read the ordinary way."""
    a = _model()
    torch.save(a.state_dict(), tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    b = _model()
    assert load_weights(b, tmp_path / "old.pt").ok and torch.equal(a.head.weight, b.head.weight)


def test_float8_tensors_round_trip(tmp_path):
    state = {"q": torch.tensor([1.0, -2.0, 0.5]).to(torch.float8_e4m3fn),
             "r": torch.tensor([4.0]).to(torch.float8_e5m2)}
    save_weights(state, tmp_path / "f8.safetensors")
    back = read_safetensors(tmp_path / "f8.safetensors")
    assert back["q"].dtype == torch.float8_e4m3fn and back["q"].float().tolist() == [1.0, -2.0, 0.5]
    assert back["r"].dtype == torch.float8_e5m2 and back["r"].float().tolist() == [4.0]


def test_a_real_training_checkpoint_passes_the_pickle_checks(tmp_path):
    """Model, Adam state after a step, scheduler, epoch and RNG state: nested dicts, lists and
    shared tensors, all well within the pickle limits; the model part loads."""
    a = _model()
    opt = torch.optim.Adam(a.parameters(), lr=0.1)
    a(torch.randn(2, 4)).sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.StepLR(opt, 3)
    torch.save({"epoch": 3, "model": a.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "rng": torch.get_rng_state(),
                "history": [{"loss": 1.0, "acc": [0.5, 0.6]}] * 100}, tmp_path / "ckpt.pt")
    b = _model()
    assert load_weights(b, tmp_path / "ckpt.pt").ok and torch.equal(a.head.weight, b.head.weight)
