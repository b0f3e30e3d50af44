"""`nnspec serve`: the playground's HTTP server (standard library only).

    GET  /                  the page (nnspec/web/static/index.html)
    GET  /static/NAME       one of the page's assets (a fixed list: nothing else is served)
    GET  /api/state         what the page starts from: file, controls, the language's words
    POST /api/analyze       {text, batch, dtype, depth, args, client, seq} -> analyze.analyze's JSON
    POST /api/explain       {text, …options, name} -> {name, text} (`nnspec explain`)
    POST /api/export        {text, …options, format: "json" | "svg"} -> {format, content}
    GET  /api/file          {path, text, version} of the file given on the command line
    GET  /api/file/version  {version}: the page polls it to see edits made on disk
    POST /api/file          {text, version} -> {version}; written atomically, 409 when the
                            file changed on disk since `version` (unless "force": true)

Every answer is JSON (errors too: {"error", "status"}). Requests are refused before any
work when they are too large (413), not JSON (400/415), for another Host (403: a page of
another site must not reach this server through DNS rebinding) or from another Origin (403).
A spec is analysed in a worker process (pool.py) under a time limit; answers are cached by
(text, options), and identical requests in flight are computed once.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import urlsplit

from ..analysis import DTYPE_BYTES
from ..errors import SpecError
from ..parser import MAX_SOURCE_BYTES
from .analyze import OptionError, Options, language
from .pool import SUPERSEDED, JobError, Pool, default_size

MAX_BODY = 3 * MAX_SOURCE_BYTES  # a spec's text escaped in JSON, plus the options
MAX_NAME = 10_000                # characters of a layer name in an explain request
CACHE_ENTRIES = 256
CACHE_BYTES = 64 << 20
LOOPBACK = ("127.0.0.1", "localhost", "::1")

STARTER = """\
# A small network to start from: edit it and the table follows. Lint has a note on
# the head: its receptive field is smaller than the input (try a third conv, or a pool).
network starter(classes = 10)
input 3x32x32

conv1: conv(32, 3, pad=1, bias=false) batchnorm relu
conv2: conv(64, 3, pad=1, bias=false) batchnorm relu
pool: maxpool(2)                        -> 64x16x16
head: { global_avgpool linear(classes) }

train {
  loss cross_entropy
  optimizer adam(lr=1e-3)
  batch 64
}
"""


class HTTPError(Exception):
    def __init__(self, status: int, message: str, **extra):
        super().__init__(message)
        self.status, self.extra = status, extra


def static_files() -> dict[str, tuple[bytes, str]]:
    """name -> (bytes, content type) of every asset in nnspec/web/static."""
    types = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
             ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}
    out = {}
    for entry in resources.files("nnspec.web").joinpath("static").iterdir():
        ext = os.path.splitext(entry.name)[1]
        if entry.is_file() and ext in types:
            out[entry.name] = (entry.read_bytes(), types[ext])
    return out


class _Cache:
    """An LRU of answers by (kind, text, options, …) digest, bounded in entries and bytes;
    a key being computed is computed once, other requests for it wait."""

    def __init__(self):
        self._data: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self._pending: dict[str, threading.Event] = {}
        self.hits = self.misses = 0

    def get_or_compute(self, key: str, compute) -> bytes:
        while True:
            with self._lock:
                if key in self._data:
                    self._data.move_to_end(key)
                    self.hits += 1
                    return self._data[key]
                event = self._pending.get(key)
                if event is None:
                    self._pending[key] = event = threading.Event()
                    self.misses += 1
                    break
            event.wait()  # computed by another request (or failed: then compute here)
        try:
            value = compute()
            if value is not SUPERSEDED:
                self._put(key, value)
            return value
        finally:
            with self._lock:
                self._pending.pop(key, None)
            event.set()

    def _put(self, key: str, value: bytes) -> None:
        with self._lock:
            self._data[key] = value
            self._size += len(value)
            while self._data and (len(self._data) > CACHE_ENTRIES or self._size > CACHE_BYTES):
                _, old = self._data.popitem(last=False)
                self._size -= len(old)


def file_version(path: str) -> str | None:
    """A token that changes when the file does (mtime in ns and size), None if missing."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return f"{st.st_mtime_ns}-{st.st_size}"


class Playground:
    """The server's state: the file (or None), the default options, the pool, the cache.

    >>> app = Playground(None, port=0, workers=1)   # doctest: +SKIP
    >>> threading.Thread(target=app.serve_forever).start(); app.url   # doctest: +SKIP
    """

    def __init__(self, path: str | None = None, *, host: str = "127.0.0.1", port: int = 8000,
                 workers: int | None = None, timeout: float = 5.0, options: Options = Options(),
                 quiet: bool = True):
        self.path = os.path.abspath(path) if path else None
        self.display = path
        self.options = options
        self.quiet = quiet
        self.assets = static_files()
        self.cache = _Cache()
        self._write_lock = threading.Lock()
        from .commands import umask
        self._new_mode = 0o666 & ~umask()  # a file the first save creates: as any editor would
        self.httpd = (_Server6 if ":" in host else _Server)((host, port), _Handler)
        self.httpd.app = self
        self.host, self.port = self.httpd.server_address[:2]
        self.loopback = host in LOOPBACK
        self.hosts = {f"{h}:{self.port}" for h in ("127.0.0.1", "localhost", "[::1]")}
        # the pool last: a port already in use fails before any worker starts
        self.pool = Pool(workers or default_size(), timeout)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.2)

    def close(self) -> None:
        """Stop serving (from another thread than serve_forever's) and stop the workers."""
        self.httpd.shutdown()
        self.httpd.server_close()
        self.pool.close()

    # ---- the API -------------------------------------------------------------------------
    def state(self) -> dict:
        o = self.options
        return {"mode": "serve", "file": self.display, "saving": self.path is not None,
                "starter": STARTER, "dtypes": list(DTYPE_BYTES), "columns": _columns(),
                "options": {"batch": o.batch, "dtype": o.dtype, "depth": o.depth, "args": dict(o.args)},
                "language": language()}

    def job(self, kind: str, doc: dict) -> bytes:
        text = doc.get("text")
        if not isinstance(text, str):
            raise HTTPError(400, "'text' must be a string: the spec")
        if len(text.encode("utf-8", "surrogatepass")) > MAX_SOURCE_BYTES:
            raise HTTPError(413, f"the spec is larger than {MAX_SOURCE_BYTES:,} bytes")
        try:
            options = Options.from_json(doc)
            options.network_args()  # refused here, with the field's name, not in a worker
        except OptionError as e:
            raise HTTPError(400, str(e), field=e.field) from None
        payload = {"text": text, "file": self.display or "<editor>", "options": options}
        if kind == "explain":
            name = doc.get("name")
            if not isinstance(name, str) or not name or len(name) > MAX_NAME:
                raise HTTPError(400, "'name' must be a layer name")
            payload["name"] = name
        elif kind == "export":
            if doc.get("format") not in ("json", "svg"):
                raise HTTPError(400, "'format' must be \"json\" or \"svg\"")
            payload["format"] = doc["format"]
        client, seq = doc.get("client"), doc.get("seq", 0)
        if client is not None and (not isinstance(client, str) or len(client) > 100):
            raise HTTPError(400, "'client' must be a short string")
        if isinstance(seq, bool) or not isinstance(seq, int):
            raise HTTPError(400, "'seq' must be an integer")
        key = hashlib.sha256(json.dumps(
            [kind, text, payload["file"], options.key(), payload.get("name"), payload.get("format")]
        ).encode("utf-8", "surrogatepass")).hexdigest()
        try:
            return self.cache.get_or_compute(
                key, lambda: self.pool.submit(kind, payload, client if kind == "analyze" else None, seq))
        except JobError as e:
            raise HTTPError(e.status, str(e)) from None

    def read_file(self) -> dict:
        if self.path is None:
            raise HTTPError(404, "no file: start `nnspec serve FILE` to edit a file")
        from ..spec import read_source
        version = file_version(self.path)
        if version is None:  # a new file: created by the first save
            return {"path": self.display, "text": "", "version": None}
        try:
            text, _ = read_source(self.path)
        except SpecError as e:
            raise HTTPError(422, e.diagnostics[0].message) from None
        return {"path": self.display, "text": text, "version": version}

    def save_file(self, doc: dict) -> dict:
        if self.path is None:
            raise HTTPError(404, "no file to save to: start `nnspec serve FILE`")
        text = doc.get("text")
        if not isinstance(text, str):
            raise HTTPError(400, "'text' must be a string")
        data = text.encode("utf-8", "surrogatepass")
        if len(data) > MAX_SOURCE_BYTES:
            raise HTTPError(413, f"the spec is larger than {MAX_SOURCE_BYTES:,} bytes")
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:
            raise HTTPError(400, "the text is not valid Unicode (a lone surrogate)") from None
        from ..backends.commands import write_atomic
        from ..cli import UsageError
        with self._write_lock:
            now = file_version(self.path)
            if now != doc.get("version") and not doc.get("force"):
                raise HTTPError(409, "the file changed on disk since it was loaded", version=now)
            mode = None
            try:
                mode = os.stat(self.path).st_mode & 0o7777
                with open(self.path, "rb") as f:
                    crlf = b"\r\n" in f.read(MAX_SOURCE_BYTES + 1)
                if crlf and b"\r" not in data:  # the page's textarea has only \n: the file's endings kept
                    data = data.replace(b"\n", b"\r\n")
            except FileNotFoundError:
                pass
            try:
                write_atomic(self.path, data)
                os.chmod(self.path, self._new_mode if mode is None else mode)  # not mkstemp's 0600
            except (UsageError, OSError) as e:
                raise HTTPError(500, str(e)) from None
            return {"version": file_version(self.path)}


def _columns() -> list[str]:
    from ..report import COLUMNS
    return list(COLUMNS)


MAX_CONNECTIONS = 256  # open connections (one thread each); more are answered 503 at once


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, *args, **kw):
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(*args, **kw)

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            body = b'{"error": "too many connections", "status": 503}'
            try:
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        """Close after our answer is sent: first discard a little of what the client still
        sends (an oversize body, a request refused unread), or the kernel would reset the
        connection and the client could lose the answer."""
        try:
            request.shutdown(socket.SHUT_WR)
            request.settimeout(0.05)
            for _ in range(16):
                if not request.recv(65536):
                    break
        except OSError:
            pass
        self.close_request(request)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nnspec"
    sys_version = ""
    timeout = 60  # a client that stops sending mid-request frees its thread
    error_content_type = "application/json"

    @property
    def app(self) -> Playground:
        return self.server.app

    def log_message(self, format, *args):
        if not self.app.quiet:
            super().log_message(format, *args)

    # every answer is JSON, the ones http.server makes itself (a bad request line) too
    def send_error(self, code, message=None, explain=None):
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "error"
        self.close_connection = True
        self._send(code, {"error": message or phrase, "status": code})

    def _send(self, status: int, doc=None, body: bytes | None = None,
              content_type: str = "application/json; charset=utf-8") -> None:
        if body is None:
            body = json.dumps(doc, ensure_ascii=False).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            if content_type.startswith("text/html"):
                self.send_header("Content-Security-Policy", CSP)
                self.send_header("X-Frame-Options", "DENY")
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the page went away (a newer edit)
            self.close_connection = True

    def _check_host(self) -> None:
        if not self.app.loopback:
            return
        host = (self.headers.get("Host") or "").lower()
        if host not in self.app.hosts:
            raise HTTPError(403, f"this server answers only requests for {self.app.url} "
                                 f"(Host {host[:60]!r} refused)")

    def _body(self) -> dict:
        origin = self.headers.get("Origin")
        if origin is not None and origin.lower() != f"http://{self.headers.get('Host', '').lower()}":
            raise HTTPError(403, "requests from another origin are refused")
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise HTTPError(415, "send the request as application/json")
        if self.headers.get("Transfer-Encoding"):
            raise HTTPError(411, "send a Content-Length (no chunked bodies)")
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise HTTPError(411, "a Content-Length is required")
        if int(length) > MAX_BODY:
            raise HTTPError(413, f"the request is larger than {MAX_BODY:,} bytes")
        raw = self.rfile.read(int(length))
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise HTTPError(400, "the request body is not valid JSON") from None
        if not isinstance(doc, dict):
            raise HTTPError(400, "the request body must be a JSON object")
        return doc

    def _handle(self, method: str) -> None:
        try:
            self._check_host()
            path = urlsplit(self.path).path
            if method == "POST":
                doc = self._body()  # read before routing: the connection stays in step
                if path in ("/api/analyze", "/api/explain", "/api/export"):
                    self._send(200, body=self.app.job(path.rsplit("/", 1)[1], doc))
                elif path == "/api/file":
                    self._send(200, self.app.save_file(doc))
                else:
                    raise HTTPError(404, "no such API")
                return
            if path in ("/", "/index.html"):
                body, ctype = self.app.assets["index.html"]
                self._send(200, body=body, content_type=ctype)
            elif path.startswith("/static/") and path[8:] in self.app.assets:
                body, ctype = self.app.assets[path[8:]]
                self._send(200, body=body, content_type=ctype)
            elif path == "/api/state":
                self._send(200, self.app.state())
            elif path == "/api/file":
                self._send(200, self.app.read_file())
            elif path == "/api/file/version":
                if self.app.path is None:
                    raise HTTPError(404, "no file: start `nnspec serve FILE` to edit a file")
                self._send(200, {"version": file_version(self.app.path)})
            else:
                raise HTTPError(404, "not found")
        except HTTPError as e:
            if method == "POST":
                self.close_connection = True  # a body left unread must not be read as a request
            self._send(e.status, {"error": str(e), "status": e.status, **e.extra})

    def do_GET(self):
        self._handle("GET")

    def do_HEAD(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def _not_allowed(self):
        self.close_connection = True
        self._send(405, {"error": f"method {self.command} not allowed", "status": 405})

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _not_allowed


CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def run(app: Playground, out) -> int:
    """Serve until Ctrl-C; `out` gets the address line (the CLI's stdout)."""
    out.write(f"nnspec serve: {app.url}" + (f" editing {app.display}" if app.display else "")
              + " (Ctrl-C stops)\n")
    out.flush()
    try:
        app.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        app.httpd.server_close()
        app.pool.close()
    return 0

