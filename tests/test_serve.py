"""`nnspec serve`'s API and `nnspec html`, without a browser (tests/test_serve_browser.py
drives the page itself). One server for the module, on a free port, stopped by its object."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

import nnspec
from nnspec.cli import main
from nnspec.explain import explain
from nnspec.report import to_dict, to_json

from conftest import SPECS
from serve_util import request, running

RESNET50 = (SPECS / "resnet50.nn").read_text()
LENET = (SPECS / "lenet5.nn").read_text()


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("serve") / "lenet5.nn"
    path.write_text(LENET)
    return path


@pytest.fixture(scope="module")
def app(spec_file):
    with running(spec_file) as a:
        yield a


def analyze(app, text, **opts):
    status, doc = request(app, "POST", "/api/analyze", {"text": text, **opts})
    assert status == 200, doc
    return doc


def test_analysis_is_the_table_json_and_lint(app, spec_file):
    doc = analyze(app, RESNET50)
    assert doc["ok"] and doc["diagnostics"] == []
    # the same object `nnspec table --format json` prints, and domain.md's reference figures
    assert doc["table"] == to_dict(nnspec.loads(RESNET50, str(spec_file)).analyze())
    assert doc["table"]["totals"]["params"] == 25_557_032
    assert doc["table"]["totals"]["macs"] == 4_089_184_256
    assert len(doc["rows"]) == len(doc["table"]["layers"]) == 174
    conv2 = next(r for r in doc["rows"] if r["name"] == "layer1.0.conv2")
    assert conv2["cells"][3] == "36,864" and conv2["line"] == 13  # 3·3·64·64, written on line 13
    assert doc["totals"][0].startswith("parameters      25,557,032")
    assert doc["params"] == [{"name": "classes", "default": "1000"}]


def test_lint_findings_carry_their_location(app):
    doc = analyze(app, "input 64\nlinear(32)\nlinear(10)\n")
    assert [(d["code"], d["name"]) for d in doc["lint"]] == [("NN301", "linear-layers-collapse")]
    assert doc["lint"][0]["location"]["line"] >= 2


def test_an_error_is_a_diagnostic_at_its_line_and_column(app):
    doc = analyze(app, "input 3x32x32\nconv(6, 5 relu\n")
    assert not doc["ok"] and doc["table"] is None
    [d] = doc["diagnostics"]
    assert d["code"] == "NN001" and d["message"] == "unexpected 'relu'; expected ')', ','"
    assert {k: d["location"][k] for k in ("line", "column", "end_line", "end_column")} == \
        {"line": 2, "column": 11, "end_line": 2, "end_column": 15}


def test_controls_batch_dtype_depth_and_network_arguments(app, spec_file):
    doc = analyze(app, RESNET50, batch=8, dtype="float16", depth=1, args={"classes": "10"})
    want = nnspec.loads(RESNET50, str(spec_file), classes=10).analyze(8, "float16")
    assert doc["table"] == to_dict(want)
    assert doc["table"]["totals"]["params"] == 25_557_032 - 2048 * 990 - 990  # fc: 2048x1000 -> 2048x10
    assert [r["name"] for r in doc["rows"]][:5] == ["conv1", "bn1", "bn1_relu", "maxpool", "layer1"]
    status, err = request(app, "POST", "/api/analyze", {"text": RESNET50, "args": {"classes": "1e999"}})
    assert status == 400 and err["field"] == "args.classes" and "finite" in err["error"]
    status, err = request(app, "POST", "/api/analyze", {"text": RESNET50, "args": {"clases": "10"}})
    assert status == 200 and err["diagnostics"][0]["code"] == "NN011"  # the checker's own error
    for bad in ({"batch": 0}, {"batch": "x"}, {"dtype": "int8"}, {"depth": -1}, {"args": [1]}):
        status, err = request(app, "POST", "/api/analyze", {"text": LENET, **bad})
        assert status == 400, bad
        assert err["field"] == next(iter(bad))


def test_explain_is_what_nnspec_explain_prints(app, spec_file, capsys):
    status, doc = request(app, "POST", "/api/explain", {"text": LENET, "name": "c3"})
    assert status == 200
    assert main(["explain", str(spec_file), "c3"]) == 0
    assert doc["text"] == capsys.readouterr().out
    status, doc = request(app, "POST", "/api/explain", {"text": LENET, "name": "c9"})
    assert status == 200 and "no layer named 'c9'" in doc["error"]


def test_export_json_is_what_table_prints(app, spec_file):
    status, doc = request(app, "POST", "/api/export", {"text": LENET, "format": "json"})
    assert status == 200
    assert doc["content"] == to_json(nnspec.load(spec_file).analyze()) + "\n"
    status, doc = request(app, "POST", "/api/export", {"text": LENET, "format": "exe"})
    assert status == 400
    pytest.importorskip("nnspec.diagram")
    from nnspec.diagram import render_svg
    status, doc = request(app, "POST", "/api/export", {"text": LENET, "format": "svg"})
    assert status == 200 and doc["content"] == render_svg(nnspec.load(spec_file))  # it runs lint itself
    assert doc["content"] == analyze(app, LENET)["svg"]  # what the page shows


def test_identical_requests_are_answered_from_the_cache(app):
    text = LENET + "\n# cache test\n"
    before = app.cache.hits
    first = analyze(app, text)
    assert analyze(app, text) == first
    assert app.cache.hits == before + 1


def test_save_writes_the_file_and_refuses_a_stale_version(app, spec_file):
    status, f = request(app, "GET", "/api/file")
    assert status == 200 and f["text"] == spec_file.read_text()
    new = f["text"].replace("conv(16, 5)", "conv(32, 5)")
    status, saved = request(app, "POST", "/api/file", {"text": new, "version": f["version"]})
    assert status == 200 and spec_file.read_text() == new
    assert request(app, "GET", "/api/file/version")[1]["version"] == saved["version"] != f["version"]
    # an edit made on disk: the page's old version is refused, the new one is served
    time.sleep(0.01)
    spec_file.write_text(LENET)
    status, err = request(app, "POST", "/api/file", {"text": new, "version": saved["version"]})
    assert status == 409 and spec_file.read_text() == LENET
    status, f2 = request(app, "GET", "/api/file")
    assert f2["text"] == LENET and f2["version"] == err["version"]
    assert not [p for p in spec_file.parent.iterdir() if p.name.endswith(".tmp")]


# ---- refused requests: clean JSON errors ------------------------------------------------------

def raw_http(app, data: bytes) -> tuple[int, dict]:
    with socket.create_connection(("127.0.0.1", app.port), timeout=30) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:  # the server answered and closed first (a refusal): its answer is read
            pass
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    data = b"".join(chunks)
    if not data.startswith(b"HTTP/"):  # http.server answers a request line it cannot read as HTTP/0.9: no head
        doc = json.loads(data)
        return doc["status"], doc
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


@pytest.mark.parametrize("path", ["/static/../../etc/passwd", "/static/%2e%2e/%2e%2e/etc/passwd",
                                  "/static/..%2fserver.py", "/static//etc/passwd", "/../pyproject.toml",
                                  "/static/analyze.py", "/nnspec/web/server.py"])
def test_path_traversal_is_not_found(app, path):
    status, doc = raw_http(app, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{app.port}\r\n\r\n".encode())
    assert status == 404 and doc["error"] == "not found"


def test_the_page_and_its_assets_are_served(app):
    status, page = request(app, "GET", "/")
    assert status == 200 and '<script src="/static/app.js">' in page
    assert request(app, "GET", "/static/app.js")[0] == 200


@pytest.mark.parametrize("headers, status", [
    ({"Host": "evil.example:80"}, 403),                       # DNS rebinding
    ({"Origin": "http://evil.example"}, 403),                 # another site's page
    ({"Content-Type": "text/plain"}, 415),                    # a form post needs no preflight
])
def test_foreign_requests_are_refused(app, headers, status):
    code, doc = request(app, "POST", "/api/analyze", {"text": LENET}, headers=headers)
    assert code == status and doc["status"] == status and doc["error"]


def test_oversize_and_malformed_bodies(app):
    from nnspec.parser import MAX_SOURCE_BYTES
    from nnspec.web.server import MAX_BODY
    h = f"Host: 127.0.0.1:{app.port}\r\nContent-Type: application/json\r\n"
    # refused from its Content-Length, before the body is read
    status, doc = raw_http(app, f"POST /api/analyze HTTP/1.1\r\n{h}Content-Length: {MAX_BODY + 1}\r\n\r\n".encode())
    assert status == 413
    status, doc = raw_http(app, f"POST /api/analyze HTTP/1.1\r\n{h}\r\n".encode())
    assert status == 411
    status, doc = request(app, "POST", "/api/analyze", {"text": "#" * (MAX_SOURCE_BYTES + 1)})
    assert status == 413 and "larger than" in doc["error"]
    for raw in (b"{not json", b"[1, 2]", b"\xff\xfe", b"[" * 100_000, b'{"text": 5}'):
        code, doc = request(app, "POST", "/api/analyze", raw=raw, headers={"Content-Type": "application/json"})
        assert code == 400, raw[:10]
    status, doc = raw_http(app, b"GARBAGE\r\n\r\n")
    assert status == 400
    status, doc = raw_http(app, f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{app.port}\r\nX: {'a' * 70_000}\r\n\r\n".encode())
    assert status == 431
    status, doc = raw_http(app, f"DELETE /api/file HTTP/1.1\r\nHost: 127.0.0.1:{app.port}\r\n\r\n".encode())
    assert status == 405


HOSTILE = [
    "input 3x8x8\n" + "(" * 50_000,
    "input 3x8x8\n" + "{ " * 20_000 + "relu" + " }" * 20_000,
    "input 3x8x8\nconv(2 ** 1100, 3)\n",
    "network n(a = 2 ** 2 ** 2 ** 2 ** 2)\ninput 3x8x8\nconv(a, 3)\n",
    "block b(n) { b(n) }\ninput 3x8x8\nb(1)\n",
    "input 3x8x8\nrepeat 10 ** 15 { relu }\n",
    'use "/etc/passwd"\ninput 3x8x8\nrelu\n',
    "input 3x8x8\n\x00\ud800\u2028relu\n",
    "",
]


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_a_hostile_spec_yields_its_diagnostics(app, text):
    status, doc = request(app, "POST", "/api/analyze", {"text": text})
    assert status == 200, doc
    assert doc["ok"] or doc["diagnostics"], doc
    for d in doc["diagnostics"]:
        assert d["code"].startswith("NN0") and d["message"]


# ---- the worker pool: time limit, superseding ---------------------------------------------------

SLOW = "input 8x16x16\nrepeat 5000 { conv(8, 3, pad=1) relu }\n"


def _payload(text):
    from nnspec.web.analyze import Options
    return {"text": text, "file": "<editor>", "options": Options()}


def test_a_job_past_the_time_limit_is_stopped_and_its_worker_replaced():
    from nnspec.web.pool import JobError, Pool
    pool = Pool(1, timeout=0.1)
    try:
        pool.submit("analyze", _payload("input 4\nlinear(2)\n"))  # the worker is ready
        before = pool.pids
        with pytest.raises(JobError) as e:
            pool.submit("analyze", _payload(SLOW))
        assert e.value.status == 504 and "longer than 0.1 s" in str(e.value)
        assert pool.killed == 1 and pool.pids != before
        doc = json.loads(pool.submit("analyze", _payload("input 4\nlinear(2)\n")))
        assert doc["table"]["totals"]["params"] == 10
    finally:
        pool.close()


def test_a_clients_stale_request_is_superseded():
    from nnspec.web.pool import SUPERSEDED, Pool
    pool = Pool(1, timeout=30)
    try:
        results = {}
        busy = threading.Thread(target=lambda: results.setdefault("busy", pool.submit("analyze", _payload(SLOW))))
        busy.start()
        time.sleep(0.2)  # the worker is on the slow job; the next ones queue
        old = threading.Thread(target=lambda: results.setdefault(
            "old", pool.submit("analyze", _payload("input 4\nlinear(2)\n"), client="c", seq=1)))
        old.start()
        time.sleep(0.1)
        new = pool.submit("analyze", _payload("input 4\nlinear(3)\n"), client="c", seq=2)
        old.join(10)
        busy.join(30)
        assert results["old"] == SUPERSEDED
        assert json.loads(new)["table"]["totals"]["params"] == 15
        assert pool.submit("analyze", _payload("input 4\nlinear(2)\n"), client="c", seq=1) == SUPERSEDED
    finally:
        pool.close()


# ---- nnspec html -----------------------------------------------------------------------------

def test_html_embeds_the_analysis_and_every_explanation(tmp_path, capsys):
    out = tmp_path / "report.html"
    spec = tmp_path / "lenet5.nn"
    spec.write_text(LENET)
    assert main(["html", str(spec), "-o", str(out)]) == 0
    page = out.read_text()
    assert "/static/" not in page and "http://" not in page.split("<body>")[0]
    start = page.index('<script id="nnspec-data" type="application/json">') + 49
    data = json.loads(page[start:page.index("</script>", start)])
    an = nnspec.load(spec).analyze()
    assert data["analysis"]["table"] == to_dict(an)
    assert data["table_json"] == to_json(an) + "\n"
    assert data["explanations"]["f5"] == explain(an, "f5")
    assert set(data["explanations"]) == {r["name"] for r in data["analysis"]["rows"]}
    assert "wrote" in capsys.readouterr().err
    assert main(["html", str(spec), "-o", str(tmp_path / "again.html")]) == 0
    assert (tmp_path / "again.html").read_text() == page  # reproducible: no date in it
    from nnspec.web.commands import umask
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask()


def test_html_of_a_spec_with_errors_shows_them_and_exits_1(tmp_path, capsys):
    spec = tmp_path / "bad.nn"
    spec.write_text("input 3x32x32\nconv(6, 5 relu\n")
    out = tmp_path / "bad.html"
    assert main(["html", str(spec), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "NN001" in err and "^" in err and out.exists()


def test_serve_refuses_bad_arguments(tmp_path, capsys):
    assert main(["serve", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main(["serve", "-"]) == 2
    assert main(["serve", "--set", "classes=1e999", str(SPECS / "lenet5.nn")]) == 2
    assert "finite" in capsys.readouterr().err


def test_docs_list_every_key_of_the_analysis():
    from conftest import ROOT
    from nnspec.web.analyze import analyze as analysis
    doc = (ROOT / "docs" / "serve.md").read_text()
    table = doc.split("<!-- analyze keys -->")[1].split("<!-- /analyze keys -->")[0]
    documented = [line.split("`")[1] for line in table.splitlines() if line.startswith("| `")]
    assert documented == list(analysis(LENET))


def test_nnspec_serve_command_serves_and_stops(tmp_path):
    """The command itself: `nnspec serve FILE --port 0` prints its address, answers, and
    ends on SIGINT (Ctrl-C) with its workers; stopped by its pid."""
    import http.client
    import signal
    import subprocess
    import sys
    from conftest import ROOT
    from nnspec.web.commands import umask
    spec = tmp_path / "new.nn"  # not there yet: created by the first save
    p = subprocess.Popen([sys.executable, "-m", "nnspec", "serve", str(spec), "--port", "0",
                          "--workers", "1"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        assert line.startswith("nnspec serve: http://127.0.0.1:") and "editing" in line, line + p.stderr.read()
        port = int(line.split(":")[3].split("/")[0])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/api/file")
        doc = json.loads(conn.getresponse().read())
        assert doc == {"path": str(spec), "text": "", "version": None}
        conn.request("POST", "/api/file", body=json.dumps({"text": LENET, "version": None}),
                     headers={"Content-Type": "application/json"})
        assert conn.getresponse().status == 200 and spec.read_text() == LENET
        assert spec.stat().st_mode & 0o777 == 0o666 & ~umask()
        conn.close()
    finally:
        p.send_signal(signal.SIGINT)
        assert p.wait(20) == 0


def test_connections_past_the_limit_are_answered_503(monkeypatch):
    from nnspec.web import server
    monkeypatch.setattr(server, "MAX_CONNECTIONS", 2)
    with running() as app:
        held = [socket.create_connection(("127.0.0.1", app.port)) for _ in range(2)]
        try:
            time.sleep(0.2)  # both accepted, each holding a thread
            status, doc = raw_http(app, f"GET /api/state HTTP/1.1\r\nHost: 127.0.0.1:{app.port}\r\n\r\n".encode())
            assert status == 503 and doc["error"] == "too many connections"
        finally:
            for s in held:
                s.close()
        time.sleep(0.2)
        assert request(app, "GET", "/api/state")[0] == 200


def test_the_highlighter_reads_the_grammar_and_the_registry():
    from nnspec.ops import USER_OPS
    from nnspec.web.analyze import language
    lang = language()
    assert set(lang["patterns"]) == {"LABEL", "NAME", "SHAPE", "FLOAT", "INT", "STRING", "COMMENT"}
    assert {"network", "input", "block", "repeat", "add", "concat", "train", "use"} <= set(lang["keywords"])
    assert lang["ops"] == list(USER_OPS)


def test_html_cannot_be_broken_out_of_by_the_spec(tmp_path):
    from nnspec.web.html import page
    text = "# </script><script>alert(1)</script> <!-- & \u2028\ninput 4\nlinear(2)\n"
    html, result = page(text, "x.nn")
    assert result["ok"] and "<script>alert" not in html and "<!-- &" not in html
    start = html.index('<script id="nnspec-data" type="application/json">') + 49
    assert json.loads(html[start:html.index("</script>", start)])["text"] == text


def test_save_keeps_windows_line_endings_and_permissions(tmp_path):
    path = tmp_path / "crlf.nn"
    path.write_bytes(b"input 4\r\nlinear(2)\r\n")
    path.chmod(0o640)
    with running(path) as app:
        status, f = request(app, "GET", "/api/file")
        status, _ = request(app, "POST", "/api/file", {"text": "input 4\nlinear(3)\n", "version": f["version"]})
        assert status == 200 and path.read_bytes() == b"input 4\r\nlinear(3)\r\n"
        assert path.stat().st_mode & 0o777 == 0o640  # not the temporary file's 0600


def test_the_starter_spec_checks():
    from nnspec.web.analyze import analyze as analysis
    from nnspec.web.server import STARTER
    doc = analysis(STARTER)
    assert doc["ok"] and [d["code"] for d in doc["lint"]] == ["NN602"]  # as its comment says


def test_a_worker_cannot_take_more_memory_than_its_limit():
    import subprocess
    import sys
    code = ("from nnspec.web.pool import _limit_memory\n_limit_memory(200 << 20)\n"
            "try:\n    bytearray(1 << 30)\nexcept MemoryError:\n    print('refused')\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.stdout.strip() == "refused", p.stderr


# ---- properties: whatever the text, an answer the page can show -----------------------------------

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from spec_strategies import emit_spec  # noqa: E402


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(emit_spec(), st.data())
def test_every_text_gets_rows_or_located_diagnostics(text, data):
    from nnspec.web.analyze import analyze as analysis
    doc = analysis(text)
    assert doc["ok"] or doc["diagnostics"]  # the strategy may draw a spec that does not check
    names = [r["name"] for r in doc["rows"]]
    assert names == [x["name"] for x in (doc["table"] or {"layers": []})["layers"]]
    for name in names:  # every row has its box in the diagram
        assert f'data-name="{name}"' in doc["svg"]
    # the text cut anywhere: diagnostics inside the text, or a table again
    cut = data.draw(st.integers(0, len(text)))
    broken = text[:cut] + text[cut + 1:]
    doc = analysis(broken)
    assert doc["ok"] or doc["diagnostics"]
    lines = broken.split("\n")
    for d in doc["diagnostics"]:
        loc = d["location"]
        if loc is not None:
            assert 1 <= loc["line"] <= len(lines) + 1 and loc["column"] >= 1
