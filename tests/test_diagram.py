"""`nnspec diagram` and nnspec.diagram.render_svg.

- Golden structure files (tests/golden/diagram/*.out): the boxes (name, line, category, text),
  frames and edges of shipped specs, read back from the SVG, not pixels.
- Every node of the graph is exactly one box and every edge of the graph is one drawn edge
  (shipped specs and random specs); folded, the boxes are exactly `nnspec table --depth` rows
  and the edges those between different boxes.
- Geometry: no two boxes overlap, every box lies inside the frames of the scopes it belongs to,
  Inception's branches side by side, ResNet's shortcut beside its body.
- Lint findings on the layers they name; hostile text escaped; the CLI (SVG, PNG or its
  error, paths, stdin, folders).
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nnspec
from conftest import ROOT, SPECS
from nnspec import diagram, report
from nnspec.cli import main
from nnspec.ops import OPS
from spec_strategies import emit_spec

NS = "{http://www.w3.org/2000/svg}"
SHIPPED = sorted(SPECS.glob("*.nn")) + [ROOT / "docs" / "examples" / "densenet_small.nn"]


def run(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


# ---- reading a drawing back -------------------------------------------------------------------

def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # well-formed XML, or this raises


def of_class(root, cls):
    return [el for el in root.iter() if el.get("class") == cls]


def nodes(root) -> list[ET.Element]:
    return of_class(root, "nn-node")


def edges(root) -> list[tuple[str, str]]:
    return [(p.get("data-from"), p.get("data-to")) for p in of_class(root, "nn-edge")]


def rect(el) -> tuple[float, float, float, float]:
    r = el.find(NS + "rect")
    return tuple(float(r.get(k)) for k in ("x", "y", "width", "height"))


def texts(el) -> list[str]:
    return [t.text or "" for t in el.findall(NS + "text") if t.get("class") != "nn-finding"]


def structure(svg: str) -> str:
    """What a golden file holds: header lines, frames, boxes and edges, in drawing order."""
    root = parse(svg)
    lines = []
    for el in root:
        cls = el.get("class")
        if el.tag == NS + "text":
            lines.append(f"text {el.text}")
        elif cls == "nn-legend":
            lines.append(f"legend {texts(el)[0]}")
        elif cls == "nn-frame":
            lines.append(f"frame {el.get('data-name')} line {el.get('data-line')} | {texts(el)[0]}")
        elif cls == "nn-edge":
            lines.append(f"edge {el.get('data-from')} -> {el.get('data-to')}")
        elif cls == "nn-node":
            kind = "folded" if el.get("data-folded") else el.get("data-category")
            marks = [t.text for t in el.findall(NS + "text") if t.get("class") == "nn-finding"]
            lines.append(f"node {el.get('data-name')} line {el.get('data-line')} {kind} | "
                         + " | ".join(texts(el)) + (f" [{marks[0]}]" if marks else ""))
    return "\n".join(lines) + "\n"


def graph_edges(graph) -> list[tuple[str, str]]:
    return [(graph.nodes[i].name, nd.name) for nd in graph.nodes for i in nd.inputs]


# ---- golden structure ---------------------------------------------------------------------------

GOLDEN = [("lenet5", None), ("resnet18", None), ("googlenet", None), ("resnet152", 2),
          ("efficientnet_b0", 3)]


@pytest.mark.parametrize("name, depth", GOLDEN, ids=[f"{n}-{d}" for n, d in GOLDEN])
def test_golden_structure(name, depth, golden):
    spec = nnspec.load(SPECS / f"{name}.nn")
    svg = diagram.render_svg(spec, depth=depth)
    golden(f"diagram/{name}" + (f"_depth{depth}" if depth else ""), structure(svg))


def test_golden_structure_densenet(golden):
    spec = nnspec.load(ROOT / "docs" / "examples" / "densenet_small.nn")
    golden("diagram/densenet_small", structure(diagram.render_svg(spec)))


# ---- every node once, every edge drawn ----------------------------------------------------------

def check_complete(spec, depth=None):
    svg = diagram.render_svg(spec, depth=depth, findings=())
    root = parse(svg)
    names = [el.get("data-name") for el in nodes(root)]
    g = spec.graph
    if depth is None:
        assert collections.Counter(names) == collections.Counter(nd.name for nd in g.nodes)
        assert collections.Counter(edges(root)) == collections.Counter(graph_edges(g))
    else:  # the boxes are the table's rows, folded alike; the edges join different boxes
        rows = [r.name for r in report.rows(spec.analyze(), depth)]
        assert names == ["input"] + rows or sorted(names) == sorted(["input"] + rows)
        box = {}
        for nd in g.nodes:
            parts = nd.name.split(".")
            box[nd.name] = nd.name if len(parts) <= depth else ".".join(parts[:depth])
        want = {(box[a], box[b]) for a, b in graph_edges(g) if box[a] != box[b]}
        assert set(edges(root)) == want
        assert len(edges(root)) == len(want)
    check_geometry(root)
    return root


def check_geometry(root):
    """No two boxes overlap; each box lies inside the frame of every scope its name is in."""
    boxes = sorted((rect(el), el.get("data-name")) for el in nodes(root))
    for k, ((x, y, w, h), name) in enumerate(boxes):  # sorted by x: compare with later ones only
        for (x2, y2, w2, h2), other in boxes[k + 1:]:
            if x2 >= x + w:
                break
            assert y2 >= y + h or y >= y2 + h2, f"boxes {name} and {other} overlap"
    frames = {el.get("data-name"): rect(el) for el in of_class(root, "nn-frame")}
    for (x, y, w, h), name in boxes:
        parts = name.split(".")
        for d in range(1, len(parts)):
            f = frames.get(".".join(parts[:d]))
            if f is not None:
                fx, fy, fw, fh = f
                assert fx <= x and x + w <= fx + fw and fy <= y and y + h <= fy + fh, (name, f)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_node_once_and_every_edge_drawn(path):
    check_complete(nnspec.load(path))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_folded_boxes_are_the_table_rows(path, depth):
    check_complete(nnspec.load(path), depth)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(emit_spec(), st.sampled_from([None, None, 1, 2]))
def test_random_specs_every_node_once_every_edge_drawn(text, depth):
    try:
        spec = nnspec.loads(text)
    except nnspec.SpecError:
        return
    check_complete(spec, depth)


# ---- the layout a person sees -------------------------------------------------------------------

def boxes_of(root):
    return {el.get("data-name"): rect(el) for el in nodes(root)}


def test_inception_branches_side_by_side_joining_at_the_concat():
    root = parse(diagram.render_svg(nnspec.load(SPECS / "googlenet.nn"), findings=()))
    b = boxes_of(root)
    spans = []
    for k in range(1, 5):
        mine = [r for n, r in b.items() if n.startswith(f"inception3a.branch{k}.")]
        spans.append((min(x for x, _, _, _ in mine), max(x + w for x, _, w, _ in mine),
                      min(y for _, y, _, _ in mine)))
    for (l1, r1, _), (l2, r2, _) in zip(spans, spans[1:]):
        assert r1 < l2, "branches drawn left to right, apart"
    frames = {el.get("data-name"): rect(el) for el in of_class(root, "nn-frame")}
    tops = {frames[f"inception3a.branch{k}"][1] for k in range(1, 5)}
    assert len(tops) == 1, "every branch starts at the same height"
    concat = b["inception3a.4"]
    assert all(concat[1] > y for n, (x, y, w, h) in b.items() if n.startswith("inception3a.branch"))
    assert spans[0][0] < concat[0] + concat[2] / 2 < spans[-1][1]
    assert {(f, t) for f, t in edges(root) if t == "inception3a.4"} == {
        ("inception3a.branch1.bn_relu", "inception3a.4"), ("inception3a.branch2.1.bn_relu", "inception3a.4"),
        ("inception3a.branch3.1.bn_relu", "inception3a.4"), ("inception3a.branch4.1.bn_relu", "inception3a.4")}


def numbers(d: str) -> list[float]:
    return [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", d)]


def test_resnet_shortcut_runs_beside_the_body_straight_down_the_body():
    root = parse(diagram.render_svg(nnspec.load(SPECS / "resnet18.nn"), findings=()))
    b = boxes_of(root)
    body = [r for n, r in b.items() if n.startswith("layer1.0.") and n not in ("layer1.0.5", "layer1.0.6")]
    centres = {round(x + w / 2, 1) for x, _, w, _ in body}
    assert len(centres) == 1, "the body of the residual block is one straight column"
    (short,) = [p for p in of_class(root, "nn-edge") if (p.get("data-from"), p.get("data-to")) == ("maxpool", "layer1.0.5")]
    xs = numbers(short.get("d"))[::2]
    assert max(xs) > max(x + w for x, _, w, _ in body), "the identity passes right of the body"
    # with a projection, the downsample path stands beside the body, starting at the same height
    down = b["layer2.0.downsample.0"]
    conv1 = b["layer2.0.conv1"]
    frame = next(rect(el) for el in of_class(root, "nn-frame") if el.get("data-name") == "layer2.0.downsample")
    assert down[0] > conv1[0] + conv1[2] and frame[1] == conv1[1]


def test_a_plain_chain_is_one_column():
    root = parse(diagram.render_svg(nnspec.load(SPECS / "lenet5.nn"), findings=()))
    b = boxes_of(root)
    assert len({round(x + w / 2, 1) for x, _, w, _ in b.values()}) == 1
    ys = [y for _, y, _, _ in b.values()]
    assert ys == sorted(ys)  # drawn top to bottom in execution order


def test_frames_title_block_instances_and_groups():
    root = parse(diagram.render_svg(nnspec.load(SPECS / "resnet18.nn"), findings=()))
    frames = {el.get("data-name"): el for el in of_class(root, "nn-frame")}
    assert set(frames) == {"layer1", "layer2", "layer3", "layer4", "layer2.0.downsample",
                           "layer3.0.downsample", "layer4.0.downsample"} | {
        f"layer{i}.{j}" for i in range(1, 5) for j in range(2)}
    assert frames["layer1.0"].get("data-block") == "basic" and texts(frames["layer1.0"]) == ["0 · basic"]
    assert frames["layer1"].get("data-block") is None  # a labelled group, not a block


def test_the_module_examples_run():
    import doctest
    assert doctest.testmod(diagram).failed == 0


def test_layers_from_a_used_file_name_that_file(monkeypatch):
    monkeypatch.chdir(ROOT)
    spec = nnspec.load("docs/examples/densenet_small.nn")
    root = parse(diagram.render_svg(spec, findings=()))
    by = {el.get("data-name"): el for el in nodes(root)}
    conv1 = by["features.denseblock1.denselayer1.conv1"]  # line 11 of the block library
    assert (conv1.get("data-file"), conv1.get("data-line")) == ("docs/examples/densenet_blocks.nn", "11")
    assert by["features.conv0"].get("data-file") is None and by["features.conv0"].get("data-line") == "8"


# ---- colours ------------------------------------------------------------------------------------

@pytest.mark.parametrize("op", sorted(OPS))
def test_every_op_category_has_a_colour(op):
    assert OPS[op].category in diagram.CATEGORY_COLOURS


def test_boxes_are_coloured_by_their_ops_category():
    spec = nnspec.load(SPECS / "googlenet.nn")
    root = parse(diagram.render_svg(spec, findings=()))
    for el in nodes(root):
        nd = spec.graph.find(el.get("data-name"))
        assert el.get("data-category") == nd.opdef.category
        assert el.find(NS + "rect").get("fill") == diagram.CATEGORY_COLOURS[nd.opdef.category][0]


# ---- lint findings --------------------------------------------------------------------------------

NOT_TILING = """input 4x16x16
block b(s) {
  conv(4, 3, stride=s) relu
}
one: b(1)
two: b(3)
global_avgpool
linear(3)
"""


def marked(root) -> dict[str, str]:
    return {el.get("data-name"): el.find(NS + "title").text for el in nodes(root)
            if any(t.get("class") == "nn-finding" for t in el.findall(NS + "text"))}


def test_a_finding_marks_the_instance_it_names():
    # 16 -> 14 after one (3x3, stride 1); (14 - 3) mod 3 = 2: `two`'s conv leaves 2 rows unseen
    spec = nnspec.loads(NOT_TILING)
    root = parse(diagram.render_svg(spec))
    m = marked(root)
    assert "two.0" in m and "NN201" in m["two.0"] and "one.0" not in m
    conv = next(el for el in nodes(root) if el.get("data-name") == "two.0")
    assert conv.find(NS + "rect").get("stroke") == diagram.SEVERITY_COLOURS["warning"]
    assert not marked(parse(diagram.render_svg(spec, findings=())))


def test_folded_findings_of_the_engine_name_the_instances_the_diagram_marks():
    """lint's text output folds a finding repeated in several block instances into one, naming
    the others in a note; the diagram marks each of them."""
    from nnspec.lint.engine import lint_source
    spec = nnspec.load(SPECS / "efficientnet_b0.nn")
    folded = lint_source(spec.graph.source, spec.graph.file).findings
    m = marked(parse(diagram.render_svg(spec)))
    checked = 0
    for d in folded:
        if not d.chain:
            continue
        named = [d.chain[-1].instance]
        for note in d.notes:
            if note.startswith("also in "):
                named += [w for w in re.split(r", ", note[len("also in "):]) if not w.startswith("…")]
        for inst in named:  # a node of that instance made by the finding's line is marked
            hits = [n for n in m if n.startswith(inst + ".") and d.code in m[n]]
            assert hits, (d.code, inst)
            checked += 1
    assert checked >= 4


def test_a_finding_repeated_by_a_repeat_marks_each_layer_once():
    # relu after relu: NN302 for the 2nd and 3rd relu; one line made all three (same span and
    # chain), so a finding cannot tell them apart: the three are marked, each once
    spec = nnspec.loads("input 4x8x8\nrepeat 3 { relu }\nglobal_avgpool\nlinear(3)\n")
    assert [d.code for d in diagram.lint_findings(spec)].count("NN302") == 2
    m = marked(parse(diagram.render_svg(spec)))
    assert {n for n in m if "NN302" in m[n]} == {"relu", "relu_1", "relu_2"}
    assert all(m[n].count("NN302") == 1 for n in ("relu", "relu_1", "relu_2"))


def test_findings_that_name_no_layer_are_listed_under_the_title():
    spec = nnspec.load(SPECS / "efficientnet_b0.nn")  # NN402 is about the train section's init
    root = parse(diagram.render_svg(spec))
    listed = [t.text for t in root.findall(NS + "text") if t.get("class") == "nn-finding"]
    assert any(t.startswith("NN402 ") for t in listed)


def test_a_folded_box_carries_the_findings_inside_it():
    spec = nnspec.loads(NOT_TILING)
    m = marked(parse(diagram.render_svg(spec, depth=1)))
    assert "NN201" in m["two"] and "one" not in m


# ---- hostile text -------------------------------------------------------------------------------

def test_text_from_the_spec_and_its_path_is_escaped():
    file = 'we"ird <&> \'name\'.nn'
    spec = nnspec.loads("network n_1\ninput 3x8x8\nconv(4, 3)\n", file=file)
    root = parse(diagram.render_svg(spec))
    conv = next(el for el in nodes(root) if el.get("data-name") == "conv")
    assert conv.find(NS + "title").text.endswith(f"{file}:3")
    assert diagram._attr('a"\n<\x01b>') == '"a&quot;&#10;&lt;b&gt;"'
    assert diagram._text("x\x00\x1b]0;\ud800&") == "x]0;&amp;"


def test_long_names_are_clipped_in_the_box_and_kept_whole_in_data_name():
    name = "a" * 300
    spec = nnspec.loads(f"input 3x8x8\n{name}: conv(4, 3)\n")
    root = parse(diagram.render_svg(spec, findings=()))
    el = next(el for el in nodes(root) if el.get("data-name") == name)
    assert len(texts(el)[0]) == diagram.MAX_SHOWN and "…" in texts(el)[0]
    assert rect(el)[2] < 400


# ---- the command ----------------------------------------------------------------------------------

def test_cli_writes_the_svg_atomically(capsys, tmp_path):
    out = tmp_path / "r18.svg"
    code, _, err = run(capsys, "diagram", str(SPECS / "resnet18.nn"), "-o", str(out))
    assert code == 0 and err == f"wrote {out}: resnet18 as SVG\n"
    assert out.read_text("utf-8") == diagram.render_svg(nnspec.load(SPECS / "resnet18.nn"))
    assert os.listdir(tmp_path) == ["r18.svg"]  # no temporary file left behind


def test_cli_depth_set_and_stdout(capsys):
    code, out, _ = run(capsys, "diagram", str(SPECS / "resnet18.nn"), "--depth", "1", "--set", "classes=7")
    assert code == 0
    root = parse(out)
    names = [el.get("data-name") for el in nodes(root)]
    assert "layer1" in names and not any(n.startswith("layer1.") for n in names)
    fc = next(el for el in nodes(root) if el.get("data-name") == "fc")
    assert texts(fc)[2].startswith("7 · ")


def test_cli_reads_standard_input(capsys, monkeypatch):
    import io
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"input 3x8x8\nc: conv(4, 3)\n")))
    code, out, _ = run(capsys, "diagram", "-", "--no-lint")
    assert code == 0 and [el.get("data-name") for el in nodes(parse(out))] == ["input", "c"]


@pytest.mark.parametrize("argv, code, message", [
    (["diagram", "specs"], 1, "error[NN002]: cannot read 'specs': Is a directory; this command reads one .nn file"),
    (["diagram", "specs/lenet5.nn", "-o", "nowhere/x.svg"], 2,
     "nnspec: error: cannot write 'nowhere/x.svg': the folder 'nowhere' does not exist"),
    (["diagram", "specs/lenet5.nn", "-o", "specs"], 2, "nnspec: error: cannot write 'specs': Is a directory; give a file name"),
    (["diagram", "specs/lenet5.nn", "--depth", "0"], 2, "depth must be from 1 to 1,000, got '0'"),
    (["diagram", "specs/missing.nn"], 1, "error[NN002]: cannot read 'specs/missing.nn'"),
])
def test_cli_bad_paths_are_one_line_errors(capsys, monkeypatch, argv, code, message):
    monkeypatch.chdir(ROOT)
    got, out, err = run(capsys, *argv)
    assert got == code and out == "" and message in err and "Traceback" not in err


def test_cli_png_with_cairosvg(capsys, tmp_path):
    try:
        if diagram.png_converter() != "cairosvg":
            pytest.skip("cairosvg is not installed")
    except diagram.ConverterMissing:
        pytest.skip("cairosvg is not installed")
    out = tmp_path / "g.png"  # the suffix picks the format
    code, _, err = run(capsys, "diagram", str(SPECS / "lenet5.nn"), "-o", str(out))
    assert code == 0 and err.endswith("as PNG\n")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    root = parse(diagram.render_svg(nnspec.load(SPECS / "lenet5.nn")))
    assert (width, height) == (round(float(root.get("width"))), round(float(root.get("height"))))


def _no_cairosvg(monkeypatch):
    monkeypatch.setitem(sys.modules, "cairosvg", None)  # import cairosvg -> ImportError


def test_cli_png_without_a_converter_says_what_to_install(capsys, monkeypatch, tmp_path):
    _no_cairosvg(monkeypatch)
    monkeypatch.setenv("PATH", str(tmp_path))  # no rsvg-convert
    out = tmp_path / "x.png"
    code, _, err = run(capsys, "diagram", str(SPECS / "lenet5.nn"), "--format", "png", "-o", str(out))
    assert code == 2 and not out.exists()
    assert err == f"nnspec: error: {diagram.INSTALL_HINT}\n" and len(err.splitlines()) == 1
    assert 'pip install "nnspec[diagram]"' in err and "rsvg-convert" in err


def test_cli_png_through_rsvg_convert(capsys, monkeypatch, tmp_path):
    """Without cairosvg, rsvg-convert on PATH is run with the SVG on standard input."""
    _no_cairosvg(monkeypatch)
    fake = tmp_path / "rsvg-convert"
    fake.write_text(f"#!{sys.executable}\nimport sys\nsvg = sys.stdin.buffer.read()\n"
                    "assert sys.argv[1:3] == ['--format', 'png'] and svg.startswith(b'<svg ')\n"
                    "sys.stdout.buffer.write(b'\\x89PNG\\r\\n\\x1a\\n' + str(len(svg)).encode())\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    out = tmp_path / "x.png"
    code, _, _ = run(capsys, "diagram", str(SPECS / "lenet5.nn"), "-o", str(out))
    svg = diagram.render_svg(nnspec.load(SPECS / "lenet5.nn"))
    assert code == 0 and out.read_bytes() == b"\x89PNG\r\n\x1a\n" + str(len(svg.encode())).encode()


def test_png_with_the_real_rsvg_convert():
    import shutil
    exe = shutil.which("rsvg-convert")
    if exe is None:
        pytest.skip("rsvg-convert is not on PATH (apt install librsvg2-bin)")
    svg = diagram.render_svg(nnspec.load(SPECS / "lenet5.nn"))
    data = diagram.to_png(svg, exe)
    root = parse(svg)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(data[16:20], "big") == round(float(root.get("width")))


def test_cli_png_is_not_written_to_a_terminal(capsys, monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    code, out, err = run(capsys, "diagram", str(SPECS / "lenet5.nn"), "--format", "png")
    assert code == 2 and "give -o FILE.png" in err


def test_tall_drawings_shrink_to_what_cairo_can_hold():
    svg = diagram.render_svg(nnspec.load(SPECS / "resnet152.nn"), findings=())
    height = float(parse(svg).get("height"))
    assert height > diagram.PNG_MAX_SIDE  # 514 layers unfolded
    assert diagram._png_scale(svg) == pytest.approx(diagram.PNG_MAX_SIDE / height)


def test_the_command_imports_no_torch():
    code = ("import sys\nfrom nnspec.cli import main\n"
            "import tempfile, os\nd = tempfile.mkdtemp()\nassert main(['diagram', 'specs/resnet18.nn', '-o', os.path.join(d, 'x.svg')]) == 0\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


# ---- docs/diagram.md: its drawings are what its commands draw ------------------------------------

DOC = ROOT / "docs" / "diagram.md"
DRAWN = re.findall(r"<!-- drawn by: (nnspec diagram [^>]*?) -->\n!\[[^]]*\]\(([^)]+)\)", DOC.read_text("utf-8"))


@pytest.mark.parametrize("command, image", DRAWN, ids=[i for _, i in DRAWN])
def test_doc_drawings_are_what_their_command_draws(command, image, capsys, monkeypatch, tmp_path):
    from conftest import UPDATE
    argv = command.split()[1:]
    target = argv[argv.index("-o") + 1]
    assert ROOT / "docs" / image == ROOT / target
    monkeypatch.chdir(ROOT)
    argv[argv.index("-o") + 1] = str(tmp_path / "d.svg")
    assert run(capsys, *argv)[0] == 0
    drawn = (tmp_path / "d.svg").read_text("utf-8")
    if UPDATE:
        (ROOT / target).write_text(drawn, "utf-8")
    assert (ROOT / target).read_text("utf-8") == drawn, f"regenerate with NNSPEC_UPDATE_GOLDEN=1: {target}"


def test_the_doc_draws_examples():
    assert len(DRAWN) >= 3
