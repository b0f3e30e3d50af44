"""Helpers for the playground's tests: a server on a free port, stopped by its object (its
worker processes by their pids), and plain HTTP requests."""

from __future__ import annotations

import contextlib
import http.client
import json
import threading


@contextlib.contextmanager
def running(path=None, **kw):
    """A Playground serving on 127.0.0.1 at a free port, in a thread of this process."""
    from nnspec.web.server import Playground
    kw.setdefault("workers", 1)
    app = Playground(None if path is None else str(path), port=0, **kw)
    thread = threading.Thread(target=app.serve_forever, daemon=True)
    thread.start()
    try:
        yield app
    finally:
        pids = app.pool.pids
        app.close()
        thread.join(10)
        for w in app.pool._workers:
            assert not w.process.is_alive(), f"worker {w.process.pid} of {pids} still running"


def request(app, method, path, body=None, headers=None, raw: bytes | None = None):
    """(status, parsed JSON or text) of one request to `app`."""
    conn = http.client.HTTPConnection("127.0.0.1", app.port, timeout=60)
    h = {"Host": f"127.0.0.1:{app.port}"}
    if body is not None:
        raw = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    h.update(headers or {})
    try:
        conn.request(method, path, body=raw, headers=h)
        r = conn.getresponse()
        data = r.read()
        ctype = r.getheader("Content-Type") or ""
        return r.status, (json.loads(data) if ctype.startswith("application/json") else data.decode())
    finally:
        conn.close()
