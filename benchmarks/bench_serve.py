"""`nnspec serve` under load: concurrent clients typing into a ResNet-50-sized spec.

    python benchmarks/bench_serve.py [--clients 50] [--seconds 30] [--spec specs/resnet50.nn]
                                     [--workers N] [--debounce-ms 0]

Starts `python -m nnspec serve` on a free port of 127.0.0.1 (a separate process, stopped by
its pid at the end) and runs `--clients` threads, each with its own keep-alive connection.
Each client types as a person does: an edit every 100-300 ms (a character of a comment, a
digit of a layer width, a bracket deleted and typed again, so the text is now and then
invalid), and keeps one analysis request in flight: edits made while it waits go out
together in the next request. (The page itself aborts a request when a newer text is ready
and the server drops the older one from its queue as superseded: no more work than this.)
Every request carries the client's id and sequence number, as the page's do. By default a
client sends as soon as its last answer came (harsher than the page); `--debounce-ms 250`
waits, as the page does, until that long passed without an edit.

Prints the time one analysis of the spec takes in this process (the floor), then the
latency of every request (p50/p95/p99/max), the time from an edit to the answer that
includes it (from the oldest edit not yet shown; debounced, from the last keystroke), requests per second, how many distinct texts were sent (the others are
answered from the server's cache), errors (any answer but 200, any failed connection), and
the refused requests' statuses. The last line is the figures as JSON.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import pathlib
import random
import re
import statistics
import subprocess
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent


def percentile(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


class Typist:
    """One client's edits on its own copy of the text (its own random stream)."""

    def __init__(self, text: str, seed: int):
        self.rng = random.Random(seed)
        self.text = f"# typed by client {seed}\n" + text  # no two clients ever send the same text
        self.comment = f"\n# client {seed}: "
        self.typed = ""
        self.broken = None

    def edit(self) -> None:
        r = self.rng.random()
        if self.broken is not None:                  # the bracket typed back: valid again
            self.text, self.broken = self.broken, None
        elif r < 0.15:                               # a ')' deleted (a syntax error for a while)
            i = self.text.find(")", self.rng.randrange(len(self.text)))
            if i > 0:
                self.broken = self.text
                self.text = self.text[:i] + self.text[i + 1:]
        elif r < 0.55:                               # a widths' digit changed
            m = list(re.finditer(r"conv\((\d+)", self.text))
            if m:
                g = self.rng.choice(m)
                n = max(1, int(g.group(1)) + self.rng.choice((-1, 1)))
                self.text = self.text[:g.start(1)] + str(n) + self.text[g.end(1):]
        else:                                        # a character of a comment at the end
            if len(self.typed) > 40:
                self.text = self.text[:-len(self.typed)]
                self.typed = ""
            ch = self.rng.choice("abcdefghijklmnopqrstuvwxyz  ")
            if not self.typed:
                self.text += self.comment
                self.typed = self.comment
            self.text += ch
            self.typed += ch


def client(port, text, seed, until, out, lock, debounce):
    typist = Typist(text, seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    rng = random.Random(seed + 1000)
    latencies, edit_to_result, errors, texts = [], [], [], set()
    next_edit = time.monotonic() + rng.uniform(0, 0.3)
    seq = 0
    oldest_unsent = last_edit = None
    while time.monotonic() < until:
        now = time.monotonic()
        while next_edit <= now:                      # edits made while the last request waited
            typist.edit()
            oldest_unsent = next_edit if oldest_unsent is None else oldest_unsent
            last_edit = next_edit
            next_edit += rng.uniform(0.1, 0.3)
        if oldest_unsent is None:
            time.sleep(max(0.0, min(next_edit, until) - now))
            continue
        if debounce and next_edit - last_edit < debounce:  # typing on: the page waits
            time.sleep(max(0.0, min(next_edit, until) - now))
            continue
        if debounce and now < last_edit + debounce:
            time.sleep(last_edit + debounce - now)
        seq += 1
        body = json.dumps({"text": typist.text, "client": f"bench-{seed}", "seq": seq})
        texts.add(hash(typist.text))
        t0 = time.monotonic()
        try:
            conn.request("POST", "/api/analyze", body=body,
                         headers={"Content-Type": "application/json", "Host": f"127.0.0.1:{port}"})
            r = conn.getresponse()
            data = r.read()
            t1 = time.monotonic()
            if r.status != 200:
                errors.append(f"HTTP {r.status}: {data[:120]!r}")
            else:
                # checked from its head, not parsed whole: this process shares the CPUs with
                # the server, and 50 clients decoding 200 KB answers would be its load, not the server's
                if data.startswith(b'{"superseded"'):
                    errors.append("superseded")
                elif not (data.startswith(b'{"version": 1, "ok": true') or
                          data.startswith(b'{"version": 1, "ok": false') and b'"diagnostics": [{' in data):
                    errors.append(f"an answer with neither a table nor diagnostics: {data[:80]!r}")
                latencies.append(t1 - t0)
                # debounced, the page waits for a pause on purpose: from the last keystroke
                edit_to_result.append(t1 - (last_edit if debounce else oldest_unsent))
        except (OSError, http.client.HTTPException, ValueError) as e:
            errors.append(f"{type(e).__name__}: {e}")
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        oldest_unsent = None
    conn.close()
    with lock:
        out["latency"] += latencies
        out["edit"] += edit_to_result
        out["errors"] += errors
        out["distinct"] += len(texts)


def refused(port) -> dict:
    """Oversize and hostile requests, answered while the load runs: their statuses."""
    from nnspec.parser import MAX_SOURCE_BYTES
    import socket
    out = {}
    # oversize: refused from its Content-Length, before the body is sent (the server closes)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(f"POST /api/analyze HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: "
                  f"application/json\r\nContent-Length: {3 * MAX_SOURCE_BYTES + 10}\r\n\r\n{{".encode())
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    status = int(reply.split()[1]) if reply.startswith(b"HTTP/") else None
    out["oversize body"] = {"status": status, "ok": status == 413}
    checks = {
        "bad JSON": (b"{nope", "application/json", 400),
        "not JSON": (b"text=1", "application/x-www-form-urlencoded", 415),
        "hostile spec": (json.dumps({"text": "input 3x8x8\n" + "(" * 100_000}).encode(), "application/json", 200),
    }
    for name, (body, ctype, want) in checks.items():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request("POST", "/api/analyze", body=body,
                         headers={"Content-Type": ctype, "Host": f"127.0.0.1:{port}"})
            r = conn.getresponse()
            doc = json.loads(r.read())
            out[name] = {"status": r.status, "ok": r.status == want and isinstance(doc, dict)}
        except (OSError, http.client.HTTPException, ValueError) as e:
            # a server may close before reading an oversize body: the status was still sent
            out[name] = {"status": None, "ok": False, "error": str(e)}
        finally:
            conn.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--spec", default=str(ROOT / "specs" / "resnet50.nn"))
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--debounce-ms", type=float, default=0.0,
                    help="send only after this long without an edit, as the page does (250); "
                         "default 0: a request as soon as the last one is answered")
    args = ap.parse_args()
    text = pathlib.Path(args.spec).read_text()

    sys.path.insert(0, str(ROOT))
    from nnspec.web.analyze import analyze
    analyze(text)
    floor = []
    for _ in range(10):
        t0 = time.perf_counter()
        analyze(text)
        floor.append(time.perf_counter() - t0)
    floor_ms = statistics.median(floor) * 1000
    print(f"one analysis of {pathlib.Path(args.spec).name} in this process: {floor_ms:.1f} ms "
          f"(median of 10; parse, check, analyse, lint, diagram)")

    cmd = [sys.executable, "-m", "nnspec", "serve", args.spec, "--port", "0"]
    if args.workers:
        cmd += ["--workers", str(args.workers)]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = server.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if not m:
            print(f"the server did not start: {line}{server.stderr.read()}", file=sys.stderr)
            return 1
        port = int(m.group(1))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)  # the workers are up
        conn.request("POST", "/api/analyze", body=json.dumps({"text": text}),
                     headers={"Content-Type": "application/json", "Host": f"127.0.0.1:{port}"})
        conn.getresponse().read()
        conn.close()

        out = {"latency": [], "edit": [], "errors": [], "distinct": 0}
        lock = threading.Lock()
        until = time.monotonic() + args.seconds
        threads = [threading.Thread(target=client, args=(port, text, k, until, out, lock,
                                                         args.debounce_ms / 1000))
                   for k in range(args.clients)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        bad = refused(port)
        for t in threads:
            t.join()
        wall = time.monotonic() - t0
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()

    lat, edit = out["latency"], out["edit"]
    ms = lambda x: round(x * 1000, 1)  # noqa: E731
    result = {
        "clients": args.clients, "seconds": args.seconds, "debounce_ms": args.debounce_ms, "spec": pathlib.Path(args.spec).name,
        "cpus": os.cpu_count(), "analysis_ms": round(floor_ms, 1), "requests": len(lat),
        "requests_per_s": round(len(lat) / wall, 1), "distinct_texts": out["distinct"],
        "p50_ms": ms(percentile(lat, 50)), "p95_ms": ms(percentile(lat, 95)),
        "p99_ms": ms(percentile(lat, 99)), "max_ms": ms(max(lat) if lat else float("nan")),
        "edit_to_result_p50_ms": ms(percentile(edit, 50)), "edit_to_result_p99_ms": ms(percentile(edit, 99)),
        "errors": len(out["errors"]), "refused": bad,
    }
    print(f"{result['clients']} clients typing for {args.seconds:g} s on {result['cpus']} CPUs: "
          f"{result['requests']} requests ({result['requests_per_s']}/s), {result['distinct_texts']} "
          f"distinct texts (the rest typed back to an earlier text: the server's cache answers)")
    print(f"request latency  p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms, "
          f"p99 {result['p99_ms']} ms, max {result['max_ms']} ms")
    print(f"edit to result   p50 {result['edit_to_result_p50_ms']} ms, "
          f"p99 {result['edit_to_result_p99_ms']} ms")
    print(f"errors           {result['errors']}" + (f": {sorted(set(out['errors']))[:5]}" if out["errors"] else ""))
    for name, r in bad.items():
        print(f"refused          {name}: {r['status']} ({'as expected' if r['ok'] else 'UNEXPECTED'})")
    print(json.dumps(result))
    return 0 if not out["errors"] and all(r["ok"] for r in bad.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
