"""Worker processes that analyse specs for `nnspec serve`, each job under a time limit.

Why processes: a spec that makes the analysis slow (or a bug that loops) must not wedge the
server, and a thread cannot be stopped. A job that runs past `timeout` seconds has its
worker killed (by its pid, through its Process object) and replaced; the caller gets a clean
error. Each worker also runs under an address-space limit where the OS has one (2 GiB more
than it holds once started).

Why a queue of its own: a client that types sends a new text before the last one was
analysed; `submit(..., client=, seq=)` answers that client's older queued jobs at once as
superseded, so the workers spend their time on what each page shows now.
"""

from __future__ import annotations

import collections
import json
import multiprocessing
import os
import threading
import time
from dataclasses import dataclass, field

SUPERSEDED = b'{"superseded": true}'


class JobError(Exception):
    """The job could not give a result: it ran too long, or its worker died."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class _Job:
    kind: str
    payload: dict
    client: str | None
    seq: int
    done: threading.Event = field(default_factory=threading.Event)
    result: bytes | None = None
    error: JobError | None = None

    def finish(self, result: bytes | None = None, error: JobError | None = None) -> None:
        self.result, self.error = result, error
        self.done.set()


def _run(kind: str, payload: dict) -> bytes:
    """One job in a worker: the JSON bytes of nnspec.web.analyze's answer."""
    from . import analyze as A
    from ..report import all_digits
    opts = payload["options"]  # an analyze.Options
    text, file = payload["text"], payload["file"]
    if kind == "analyze":
        doc = A.analyze(text, file, opts)
    elif kind == "explain":
        doc = A.explain(text, payload["name"], file, opts)
    elif kind == "export":
        doc = A.export(text, payload["format"], file, opts)
    else:
        raise ValueError(f"unknown job {kind!r}")
    with all_digits():
        return json.dumps(doc, ensure_ascii=False).encode("utf-8")


def _limit_memory(extra: int) -> None:
    """At most `extra` bytes of address space beyond what the started worker holds (numpy's
    BLAS may have reserved much at import, more on machines with many cores)."""
    try:
        import resource
        with open("/proc/self/statm") as f:
            held = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (held + extra, held + extra))
    except (ImportError, ValueError, OSError):  # no such limit here: the timeout still holds
        pass


def _worker(conn, memory_limit: int | None) -> None:
    from . import analyze
    analyze.analyze("input 4\nlinear(2)\n")  # imports and the parser's tables, before any clock runs
    if memory_limit:
        _limit_memory(memory_limit)
    conn.send((True, b"ready"))
    while True:
        try:
            kind, payload = conn.recv()
        except (EOFError, OSError):
            return
        try:
            conn.send((True, _run(kind, payload)))
        except MemoryError:
            conn.send((False, "the analysis needed more memory than a worker may use"))
        except RecursionError:
            conn.send((False, "the spec nests too deeply to analyse"))
        except Exception as e:  # a bug, reported as one line: never a traceback to a client
            conn.send((False, f"internal error: {type(e).__name__}: {e}"[:300]))


class _Worker:
    def __init__(self, ctx, memory_limit):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker, args=(child, memory_limit), daemon=True,
                                   name="nnspec-serve-worker")
        self.process.start()
        child.close()
        self.ready = False

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until the worker has imported everything (its start is not a job's time)."""
        if not self.ready:
            if not self.conn.poll(timeout):
                raise EOFError("the worker did not start")
            self.conn.recv()
            self.ready = True

    def stop(self) -> None:
        self.conn.close()
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)


class Pool:
    """`size` worker processes; `submit` blocks the calling (request) thread until its job
    is done. `timeout` seconds per job; at most `max_queue` jobs waiting."""

    def __init__(self, size: int = 2, timeout: float = 5.0, memory_limit: int | None = 2 << 30,
                 max_queue: int = 500):
        self.timeout, self.max_queue = timeout, max_queue
        self._ctx = multiprocessing.get_context("spawn")  # no fork of a threaded server
        self._memory = memory_limit
        self._queue: collections.deque[_Job] = collections.deque()
        self._cond = threading.Condition()
        self._latest: collections.OrderedDict[str, int] = collections.OrderedDict()
        self._closed = False
        self.killed = 0  # workers replaced after a timeout or a crash
        self._workers = [_Worker(self._ctx, memory_limit) for _ in range(size)]
        self._threads = [threading.Thread(target=self._serve, args=(i,), daemon=True,
                                          name=f"nnspec-pool-{i}") for i in range(size)]
        for t in self._threads:
            t.start()

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers]

    def submit(self, kind: str, payload: dict, client: str | None = None, seq: int = 0) -> bytes:
        """The job's JSON bytes, SUPERSEDED when the same client sent a later seq first;
        JobError (503 busy, 504 too slow, 500 worker died)."""
        job = _Job(kind, payload, client, seq)
        with self._cond:
            if self._closed:
                raise JobError(503, "the server is shutting down")
            if client is not None:
                if seq < self._latest.get(client, -1):
                    return SUPERSEDED
                self._latest[client] = seq
                self._latest.move_to_end(client)
                while len(self._latest) > 10_000:
                    self._latest.popitem(last=False)
                for old in [j for j in self._queue if j.client == client and j.seq < seq]:
                    self._queue.remove(old)
                    old.finish(SUPERSEDED)
            if len(self._queue) >= self.max_queue:
                raise JobError(503, "the server is busy; try again")
            self._queue.append(job)
            self._cond.notify()
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result

    def _serve(self, i: int) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                job = self._queue.popleft()
            self._execute(i, job)

    def _execute(self, i: int, job: _Job) -> None:
        w = self._workers[i]
        try:
            w.wait_ready()
            w.conn.send((job.kind, job.payload))
            if w.conn.poll(self.timeout):
                ok, value = w.conn.recv()
                if ok:
                    job.finish(value)
                else:
                    job.finish(error=JobError(422, value))
                return
            why = JobError(504, f"the analysis took longer than {self.timeout:g} s and was stopped")
        except (EOFError, OSError, BrokenPipeError):
            why = JobError(500, "the analysis stopped unexpectedly (its worker process died)")
        if self._closed:
            job.finish(error=JobError(503, "the server is shutting down"))
            return
        w.stop()
        self.killed += 1
        self._workers[i] = _Worker(self._ctx, self._memory)
        job.finish(error=why)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            pending = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        for job in pending:
            job.finish(error=JobError(503, "the server is shutting down"))
        for w in self._workers:
            w.stop()
        deadline = time.monotonic() + 5
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))


def default_size() -> int:
    """One worker per core, at least 1, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))
