"""Sandboxed execution of untrusted programs (model-written code) and of their trusted tests.

Every program runs in its own process, forked from a pre-started server: one fresh ``python -I -S``
interpreter per pool slot (the harness is never forked, and no interpreter start is paid per
program). As root (the strong mode), each server lives in its own network, mount, IPC and PID
namespaces: a down loopback only; fresh size-capped tmpfs mounts on every world-writable place
(``PRIVATE_DIRS``: /tmp, /var/tmp, /dev/shm, /run/lock), private to the server and gone with it;
/proc showing only the server and its programs; the interpreter's stdlib bind-mounted read-only
where the sandbox uid can read it (a tmpfs hides the unreadable home above it, e.g. /root). Before a
program's first instruction its process gets

- a new session and, as root, a uid of its own (one per slot, no passwd entry), so RLIMIT_NPROC
  applies and files the machine keeps private are unreadable and undeletable;
- limits: CPU seconds (RLIMIT_CPU: the verdict's time limit, independent of machine load), memory
  for the program as a whole (a memory cgroup, v2 or v1, where one is writable) and per process
  (RLIMIT_AS), bytes per written file, processes, open files, no core dumps; the server keeps a
  generous wall-clock backstop and afterwards kills every descendant (it is the PID namespace's
  init, or a child subreaper: nothing escapes by re-parenting or ``setsid``);
- an empty working directory (also $HOME) on the private tmpfs, deleted afterwards;
- a minimal environment, PR_SET_NO_NEW_PRIVS, stdin/stdout/stderr on /dev/null, and a guard that
  removes os.fork/os.system/subprocess/os.kill from Python (defence in depth; the OS holds).

Two ways to judge (see ``Oracle``). Out of process: the program only defines functions; the trusted
test code runs in a separate judge process against a proxy that sends each call's arguments to the
program's process and gets its return value back as plain data (a literal-evaluable repr, at most
``MAX_DATA`` bytes); the judge compares. Nothing the program does can reach the expected values or
the comparison. In process (the fallback, for tests that need more than literal calls): program and
tests run together; a per-program random token printed after the program returns marks a pass
(defeats early exits, but not a program that reads the token from its own interpreter).

No program output reaches a result: ``Result.reason`` is built by the server from a builtin
exception name, a line of the source it was given, or the limit that stopped the program. The
server is :mod:`harness.tasks.sandbox_server` (standard library only, small: each fork copies it);
this module is the client, the pool.
"""

from __future__ import annotations

import json
import os
import queue
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from .sandbox_server import MAX_DATA, PRIVATE_DIRS, MiB, _read_frame, _write_frame, decode, plain

__all__ = ["Limits", "Oracle", "Result", "Sandbox", "run_programs", "cores", "decode", "plain",
           "MAX_DATA", "PRIVATE_DIRS", "UID_BASE"]

UID_BASE = 0x40000000  # sandbox uids: UID_BASE + 4096 * (pid % 65536) + 256 * instance + slot
SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox_server.py")


@dataclass(frozen=True)
class Limits:
    """Per-program limits. cpu: CPU seconds per process (whole seconds: RLIMIT_CPU; the verdict's
    time limit); wall: wall-clock backstop in seconds (None: the pool's ``backstop``); memory: bytes
    for the program as a whole (cgroup) and address space per process (RLIMIT_AS); fsize: bytes per
    written file; nproc: processes+threads of the program's uid; nofile: open file descriptors."""

    cpu: int = 3
    wall: float | None = None
    memory: int = 1024 * MiB
    fsize: int = 16 * MiB
    nproc: int = 8
    nofile: int = 64


@dataclass(frozen=True)
class Oracle:
    """Trusted tests run out of process. prelude: trusted code run first in the judge (helpers,
    imports); names: the functions the program defines that the tests call (each bound to a proxy
    in the judge); test: trusted code whose calls of ``names`` use only literal data."""

    names: tuple[str, ...]
    prelude: str
    test: str


@dataclass(frozen=True)
class Result:
    """Outcome of one program. status: passed | failed (an exception, a failed assertion, an early
    exit, data that is not plain) | timeout (CPU limit or wall backstop) | memory | filesize | killed
    (a signal) | error (the sandbox itself failed). reason: one short sanitised line. oracle:
    out-of-process | in-process (how the tests ran)."""

    passed: bool
    status: str
    reason: str
    seconds: float
    oracle: str = "in-process"


# --------------------------------------------------------------------------------------------
# client side: the pool

class _Server:
    """One pre-started server process (one pool slot)."""

    def __init__(self, uid: int):
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}
        # exec, not `python FILE`: FILE's folder (tasks/, which has a math.py) must not be on
        # sys.path, and -I only implies -P (safe path) from Python 3.11 on; not runpy either,
        # which would stay imported in the server (every fork copies it)
        boot = ("import sys; p = sys.argv.pop(1); "
                "exec(compile(open(p).read(), p, 'exec'), {'__name__': '__main__', '__file__': p})")
        oracle_r, self.oracle_w = os.pipe()
        self.proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", boot,
                                      SERVER, "--serve", str(uid),
                                      str(oracle_r)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                                     cwd="/", start_new_session=True, pass_fds=(oracle_r,))
        os.close(oracle_r)
        self.requests = 0
        hello = self._receive(30.0)
        if hello is None:
            raise RuntimeError("sandbox server did not start")
        self.cgroup: str | None = hello.pop("cgroup_path")  # removed by the server, or by close()
        self.isolation: dict = hello

    def _receive(self, timeout: float) -> dict | None:
        fd = self.proc.stdout.fileno()
        if not select.select([fd], [], [], timeout)[0]:
            return None
        frame = _read_frame(fd)
        return None if frame is None else json.loads(frame)

    def run(self, request: dict, oracle: Oracle | None, on_long=lambda: None) -> dict | None:
        """Send the request, then its oracle on the oracle pipe (for the judge alone)."""
        self.requests += 1
        request = request | {"id": self.requests, "oracle": oracle is not None}
        try:
            _write_frame(self.proc.stdin.fileno(), json.dumps(request).encode())
            if oracle is not None:
                _write_frame(self.oracle_w, json.dumps(asdict(oracle) | {"id": self.requests}).encode())
        except OSError:
            return None
        while (out := self._receive(request["limits"]["wall"] + 10.0)) is not None \
                and out.get("long"):
            on_long()
        return out

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        os.close(self.oracle_w)
        for _ in range(50):  # a server that was killed leaves its cgroup; it empties in moments
            if self.cgroup is None or not os.path.isdir(self.cgroup):
                break
            try:
                os.rmdir(self.cgroup)
            except OSError:
                time.sleep(0.01)


def cores() -> int:
    """CPUs this process may run on."""
    return len(os.sched_getaffinity(0))


class Sandbox:
    """A pool that runs programs in parallel: at most ``workers`` young programs at a time, each in
    its own slot (a pre-started server). The default, four per CPU, keeps the CPUs busy while
    slots wait on pipes and forks.

    A program still running after ``long_after`` seconds (a hang, most often) stops counting
    against ``workers``: it keeps its slot and its limits, and one of ``extra`` further slots
    (started on demand; default: as many as ``workers``) takes the next program. At most
    ``workers + extra`` programs run at once, so each gets at least ``cores() / (workers + extra)``
    of a CPU when all are busy; the wall-clock backstop (``backstop``) is twice the time that share
    needs for the CPU limit, plus 5 s: a program within its CPU limit is never stopped by the
    backstop because the machine is busy with the pool.

    >>> with Sandbox(workers=2) as box:
    ...     box.run("assert 1 + 1 == 2").status
    'passed'
    """

    _instances = 0

    def __init__(self, workers: int | None = None, limits: Limits = Limits(),
                 long_after: float = 0.25, extra: int | None = None):
        from harness.errors import InvalidSetting  # not at the top: the server runs this file without harness

        self.workers = workers or min(4 * cores(), 128)
        if not 1 <= self.workers <= 256:
            raise InvalidSetting("workers", self.workers, "1..256")
        self.extra = min(self.workers, 256 - self.workers) if extra is None else extra
        if not 0 <= self.extra <= 256 - self.workers:
            raise InvalidSetting("extra", self.extra, f"0..{256 - self.workers}")
        if limits.cpu < 1 or limits.cpu != int(limits.cpu):
            raise InvalidSetting("cpu", limits.cpu, "a whole number of seconds >= 1")
        self.limits, self.long_after = limits, long_after
        slots = self.workers + self.extra
        Sandbox._instances += 1
        root = os.geteuid() == 0
        base = UID_BASE + 4096 * (os.getpid() % 65536) + 256 * (Sandbox._instances % 16)
        self._uids = [base + i if root else -1 for i in range(slots)]
        self._young = threading.Semaphore(self.workers)
        self._free: queue.LifoQueue[int] = queue.LifoQueue()  # warm slots first
        self._servers: list[_Server | None] = [None] * slots
        for i in reversed(range(slots)):
            self._free.put(i)
        self.isolation = self._server(0).isolation

    def backstop(self, limits: Limits) -> float:
        """Wall seconds after which a program is stopped whatever its CPU use:
        ``limits.wall``, or 2 * cpu * (workers + extra) / cores() + 5."""
        if limits.wall is not None:
            return limits.wall
        return 2 * limits.cpu * (self.workers + self.extra) / cores() + 5

    def _server(self, i: int) -> _Server:
        """Slot i's server, (re)started if needed; only the thread holding slot i calls this."""
        if self._servers[i] is not None and self._servers[i].proc.poll() is not None:
            self._servers[i].close()  # died: free what it held
            self._servers[i] = None
        if self._servers[i] is None:
            self._servers[i] = _Server(self._uids[i])
        return self._servers[i]

    def run(self, program: str, limits: Limits | None = None, oracle: Oracle | None = None) -> Result:
        """Run one program in a free slot (with ``oracle``: the program defines functions, the
        oracle's tests judge them out of process); a dead slot server is restarted."""
        limits = limits or self.limits
        request = {"program": program,
                   "limits": asdict(limits) | {"cpu": int(limits.cpu), "wall": self.backstop(limits)}}
        if self.long_after < request["limits"]["wall"]:
            request["limits"]["long_after"] = self.long_after
        young = [True]

        def grown_old() -> None:
            if young[0]:
                young[0] = False
                self._young.release()

        self._young.acquire()
        try:
            i = self._free.get()
            try:
                server = self._server(i)
                out = server.run(request, oracle, grown_old)
                if out is None:
                    server.close()
                    self._servers[i] = None
                    out = {"status": "error", "reason": "sandbox server died", "seconds": 0.0}
            finally:
                self._free.put(i)
        finally:
            grown_old()
        return Result(out["status"] == "passed", out["status"], out["reason"], out["seconds"],
                      "out-of-process" if oracle else "in-process")

    def run_many(self, programs: Iterable[str], limits: Limits | None = None,
                 oracles: Iterable[Oracle | None] | None = None) -> list[Result]:
        """Results in the order of ``programs`` (``oracles``: one per program, or None)."""
        programs = list(programs)
        oracles = [None] * len(programs) if oracles is None else list(oracles)
        with ThreadPoolExecutor(len(self._servers)) as pool:
            return list(pool.map(lambda po: self.run(po[0], limits, po[1]), zip(programs, oracles)))

    def close(self) -> None:
        for server in self._servers:
            if server is not None:
                server.close()
        self._servers = [None] * len(self._servers)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        if hasattr(self, "_servers"):
            self.close()


def run_programs(programs: Sequence[str], limits: Limits = Limits(),
                 workers: int | None = None) -> list[Result]:
    """Run ``programs`` in a temporary pool (convenience for one-off batches)."""
    with Sandbox(workers, limits) as box:
        return box.run_many(programs)
