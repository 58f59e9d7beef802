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
exception name, a line of the source it was given, or the limit that stopped the program. This
module is also the server's script, so it imports nothing outside the standard library.
"""

from __future__ import annotations

import ast
import builtins
import fcntl
import json
import os
import queue
import re
import resource
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

MiB = 1 << 20
CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = 0x20000, 0x8000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_BIND, MS_MOVE, MS_REC, MS_PRIVATE = 4096, 8192, 1 << 14, 1 << 18
PRIVATE_DIRS = (("/tmp", "256m"), ("/var/tmp", "64m"), ("/dev/shm", "64m"), ("/run/lock", "8m"))
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 4, 36, 38
UID_BASE = 0x40000000  # sandbox uids: UID_BASE + 4096 * (pid % 65536) + 256 * instance + slot
TAIL = 4096            # bytes of a program's report kept
MAX_DATA = 4 * MiB     # largest repr of a call's arguments or return value
EXCEPTIONS = frozenset(n for n, v in vars(builtins).items()
                       if isinstance(v, type) and issubclass(v, BaseException))
_RAISED = re.compile(rb"raise ([A-Za-z_][A-Za-z0-9_]{0,63}) (\d{1,9})\s*$")


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
# plain data across the process boundary

def plain(x, depth: int = 0) -> bool:
    """True when ``x`` is built only of None, bool, int, float, complex, str, bytes and lists,
    tuples, sets and dicts of them (exact types), at most 64 levels deep."""
    t = type(x)
    if depth > 64:
        return False
    if t in (int, float, complex, str, bytes, bool, type(None)):
        return True
    if t in (list, tuple, set):
        return all(plain(v, depth + 1) for v in x)
    return t is dict and all(plain(k, depth + 1) and plain(v, depth + 1) for k, v in x.items())


class _Floats(ast.NodeTransformer):
    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in ("inf", "nan"):
            return ast.Constant(float(node.id))
        if node.id == "set":  # literal_eval accepts exactly `set()`
            return node
        raise ValueError(f"not a literal: {node.id}")


def decode(text: str):
    """The value of a literal repr (``ast.literal_eval`` plus ``inf``/``nan``); ValueError if it
    is anything else."""
    try:
        tree = _Floats().visit(ast.parse(text, mode="eval"))
        value = ast.literal_eval(tree.body)
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError) as e:
        raise ValueError(f"not plain data ({type(e).__name__})") from None
    if not plain(value):
        raise ValueError("not plain data")
    return value


# --------------------------------------------------------------------------------------------
# server side: runs inside `python -I -S sandbox.py --serve UID` (stdlib only)

_LIBC = None


def _libc():
    global _LIBC
    if _LIBC is None:
        import ctypes

        _LIBC = ctypes.CDLL(None, use_errno=True)
    return _LIBC


def _read_frame(fd: int, limit: int = 1 << 31) -> bytes | None:
    """One length-prefixed frame; None at end of file; ValueError past ``limit`` bytes."""
    head = _read_exact(fd, 4)
    if head is None:
        return None
    n = struct.unpack("<I", head)[0]
    if n > limit:
        raise ValueError(f"frame of {n} bytes")
    return _read_exact(fd, n)


def _read_exact(fd: int, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def _write_frame(fd: int, data: bytes) -> None:
    data = struct.pack("<I", len(data)) + data
    while data:
        data = data[os.write(fd, data):]


def _denied(*args, **kwargs):
    raise PermissionError("denied by the sandbox")


def _guard(block_network: bool) -> None:
    """Remove process control (and, without a network namespace, sockets) from Python."""
    for name in ("fork", "forkpty", "system", "kill", "killpg", "setuid", "setgid", "putenv"):
        setattr(os, name, _denied)
    subprocess.Popen = _denied
    if block_network:
        socket.socket = _denied
        socket.create_connection = _denied


def _failure_line(e: BaseException, filename: str) -> int:
    """The line of ``filename`` where ``e`` was raised (innermost frame), 0 if none."""
    if isinstance(e, SyntaxError) and e.filename == filename:
        return e.lineno or 0
    lines = [n for f, n in traceback.walk_tb(e.__traceback__) if f.f_code.co_filename == filename]
    return lines[-1] if lines else 0


def _report(fd: int, e: BaseException) -> None:
    try:
        os.write(fd, f"\nraise {type(e).__name__[:64]} {_failure_line(e, '<program>')}".encode())
    except OSError:
        pass


def _oom_score_adj(value: str) -> None:
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(value)
    except OSError:
        pass  # lowering it needs CAP_SYS_RESOURCE


class _Cgroup:
    """A memory cgroup (v2, else v1) for one slot's programs: the limit holds for all their
    processes together. ``create`` returns None where no memory cgroup is writable."""

    def __init__(self, path: str, version: int):
        self.path, self.version, self.memory = path, version, 1 << 62  # new: unlimited

    @classmethod
    def create(cls, name: str) -> _Cgroup | None:
        for version, parent in cls._parents():
            path = os.path.join(parent, name)
            try:
                os.makedirs(path, exist_ok=True)
                cg = cls(path, version)
                cg.set_memory(1024 * MiB)
                return cg
            except OSError:
                try:
                    os.rmdir(path)
                except OSError:
                    pass
        return None

    @staticmethod
    def _parents() -> list[tuple[int, str]]:
        """Writable places for a memory cgroup: (version, directory), best first."""
        try:
            mounts = [line.split() for line in open("/proc/self/mounts")]
            own = {ctrl: path for _, ctrls, path in (line.rstrip("\n").split(":", 2)
                                                     for line in open("/proc/self/cgroup"))
                   for ctrl in ctrls.split(",")}
        except (OSError, ValueError):
            return []
        out = []
        for _dev, point, fstype, opts, *_ in mounts:
            if fstype == "cgroup2":
                for top in (point + own.get("", "/").rstrip("/"), point):
                    ctl = os.path.join(top, "cgroup.subtree_control")
                    if os.path.isfile(ctl) and "memory" in open(ctl).read().split():
                        out.append((2, top))
            elif fstype == "cgroup" and "memory" in opts.split(","):
                out.append((1, point + own.get("memory", "/").rstrip("/")))
        return sorted(out, key=lambda vp: -vp[0])

    def _write(self, name: str, value: str) -> None:
        with open(os.path.join(self.path, name), "w") as f:
            f.write(value)

    def set_memory(self, limit: int) -> None:
        if limit == self.memory:
            return
        if self.version == 2:
            self._write("memory.max", str(limit))
            if os.path.exists(os.path.join(self.path, "memory.swap.max")):
                self._write("memory.swap.max", "0")
        else:  # v1 keeps memory+swap >= memory: raise the larger first, lower it last
            names = ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]
            names = [n for n in names if os.path.exists(os.path.join(self.path, n))]
            for name in (names if limit < self.memory else names[::-1]):
                self._write(name, str(limit))
        self.memory = limit

    def oom_kills(self) -> int:
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            stats = dict(line.split() for line in open(os.path.join(self.path, name)))
        except (OSError, ValueError):
            return 0
        return int(stats.get("oom_kill", 0))

    def join(self) -> None:
        """Move the calling process (the server, once: programs inherit it, which is cheaper
        than moving each) into this cgroup; where allowed, the OOM killer never picks it (it
        is -1000; programs reset themselves to 0)."""
        self._write("cgroup.procs", "0")
        _oom_score_adj("-1000")

    def remove(self) -> None:
        try:
            os.rmdir(self.path)
        except OSError:
            pass


# --------------------------------------------------------------------------------------------
# server setup: namespaces and private mounts (root), done once per server

@dataclass
class _Context:
    uid: int                     # the programs' uid (-1: the server's own)
    block_network: bool          # no network namespace: block sockets in Python
    workdir_base: str | None     # where working directories are made
    cgroup: _Cgroup | None
    oracle_fd: int               # the client's oracle pipe: only judges read it


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> bool:
    return _libc().mount(source.encode(), target.encode(), fstype and fstype.encode(), flags,
                         data and data.encode()) == 0


def _private_dirs() -> bool:
    """A fresh, size-capped tmpfs on every world-writable place (in a new mount namespace whose
    mounts do not propagate to the machine). True when all of them are private."""
    if not _mount("none", "/", None, MS_REC | MS_PRIVATE, None):
        return False  # mounts would propagate to the machine: mount nothing
    ok = True
    for path, size in PRIVATE_DIRS:
        if os.path.isdir(path) and not os.path.islink(path):
            ok &= _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},mode=1777")
    return ok


def _expose_stdlib() -> str:
    """Make the interpreter's stdlib readable by any uid: when a directory above it is closed to
    others (e.g. /root, 0700), mount a tmpfs there (hiding its contents) and bind the stdlib
    back, read-only, at the same path. Needs the private /tmp for staging."""
    stdlib = os.path.dirname(os.path.realpath(os.__file__))
    parts = stdlib.split("/")
    closed = next((d for d in ("/".join(parts[:i]) for i in range(2, len(parts)))
                   if not os.stat(d).st_mode & 0o001), None)
    if closed is None:
        return "readable"
    staging = tempfile.mkdtemp(prefix="t2-stdlib-", dir="/tmp")
    ok = (_mount(stdlib, staging, None, MS_BIND | MS_REC, None)
          and _mount("tmpfs", closed, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755"))
    if ok:
        os.makedirs(stdlib, mode=0o755, exist_ok=True)
        ok = (_mount(staging, stdlib, None, MS_MOVE, None)
              and _mount("none", stdlib, None, MS_REMOUNT | MS_BIND | MS_RDONLY, None))
    os.rmdir(staging)
    return f"bind-mounted read-only under a tmpfs on {closed}" if ok else "unreadable"


def _become_pid_init() -> None:
    """After unshare(CLONE_NEWPID): fork the namespace's init, which returns and serves with a
    fresh /proc; this process only waits for it and exits with it."""
    pid = os.fork()
    if pid:
        os.close(0)
        os.close(1)
        _, status = os.waitpid(pid, 0)
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
    _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)


def _setup(uid: int, oracle_fd: int) -> tuple[_Context, dict]:
    """Enter the namespaces and make the mounts that root allows; what holds, as a dict."""
    libc, root = _libc(), os.geteuid() == 0
    cgroup = _Cgroup.create(f"t2-sandbox-{os.getpid()}-{uid}") if root else None
    if cgroup is not None:
        cgroup.join()
    netns = root and libc.unshare(CLONE_NEWNET) == 0
    mountns = root and libc.unshare(CLONE_NEWNS | CLONE_NEWIPC) == 0
    private = mountns and _private_dirs()
    stdlib = _expose_stdlib() if private and uid >= 0 else "readable"
    pidns = mountns and libc.unshare(CLONE_NEWPID) == 0
    if pidns:
        _become_pid_init()
    else:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # no ptrace, no /proc/PID/fd for a same-uid program
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK | os.X_OK) else None
    ctx = _Context(uid, not netns, "/tmp" if private else shm, cgroup, oracle_fd)
    return ctx, {
        "network": "namespace" if netns else "python guard",
        "user": f"uid {uid}" if uid >= 0 else "same uid",
        "tmp": "private tmpfs" if private else "shared",
        "pid": "namespace" if pidns else "shared",
        "memory": f"cgroup v{cgroup.version} + RLIMIT_AS" if cgroup else "RLIMIT_AS per process",
        "stdlib": stdlib, "cgroup_path": cgroup.path if cgroup else None}


# --------------------------------------------------------------------------------------------
# the two processes of a run: the candidate (untrusted) and the judge (trusted)

def _only_fds(fds: Sequence[int]) -> None:
    """Keep only ``fds``, renumbered 3, 4, ...; 0, 1 and 2 become /dev/null."""
    moved = [fcntl.fcntl(fd, fcntl.F_DUPFD, 64 + len(fds)) for fd in fds]  # above every target
    devnull = os.open(os.devnull, os.O_RDWR)
    for target, fd in enumerate([devnull] * 3 + moved):
        os.dup2(fd, target)
    os.closerange(3 + len(fds), 1 << 16)


def _enter_candidate(ctx: _Context, workdir: str, limits: dict, fds: Sequence[int]) -> None:
    """In the forked child: session, cgroup, fds (``fds`` become 3, 4, ...; 0-2 are /dev/null),
    working directory, limits, uid, guard."""
    os.setsid()
    if ctx.cgroup is not None:
        _oom_score_adj("0")  # the OOM killer's choice within the cgroup
    _only_fds(fds)
    os.chdir(workdir)
    os.environ.update(HOME=workdir, TMPDIR="/tmp")
    for res, value in ((resource.RLIMIT_CPU, (limits["cpu"], limits["cpu"] + 1)),
                       (resource.RLIMIT_AS, (limits["memory"],) * 2),
                       (resource.RLIMIT_FSIZE, (limits["fsize"],) * 2),
                       (resource.RLIMIT_NPROC, (limits["nproc"],) * 2),
                       (resource.RLIMIT_NOFILE, (limits["nofile"],) * 2),
                       (resource.RLIMIT_CORE, (0, 0))):
        resource.setrlimit(res, value)
    if ctx.uid >= 0:
        os.setgroups([])
        os.setgid(ctx.uid)
        os.setuid(ctx.uid)
    _libc().prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    _guard(ctx.block_network)


def _serve_calls(namespace: dict, requests: int, replies: int) -> None:
    """Answer the judge's calls until it closes: ``(name, args, kwargs)`` in, ``ok <repr>`` or
    ``raise <exception> <line>`` out."""
    while (frame := _read_frame(requests)) is not None:
        name, args, kwargs = decode(frame.decode())
        try:
            out = "ok " + repr(namespace[name](*args, **kwargs))
        except BaseException as e:  # noqa: BLE001 - the candidate's failure goes to the judge
            out = f"raise {type(e).__name__[:64]} {_failure_line(e, '<program>')}"
        _write_frame(replies, out.encode(errors="replace"))


def _candidate(req: dict, nonce: bytes, workdir: str, ctx: _Context, fds: Sequence[int]) -> None:
    """The untrusted process. fd 3: its report to the server; with an oracle, fd 4: the judge's
    calls, fd 5: the replies. Exit 0: done (in process: after the token), 1: an exception,
    3: MemoryError, 4: a file too large. Never returns."""
    try:
        _enter_candidate(ctx, workdir, req["limits"], fds)
        code = compile(req["program"], "<program>", "exec")
    except BaseException as e:  # noqa: BLE001 - report anything, then exit
        _report(3, e)
        os._exit(1)
    try:
        namespace = {"__name__": "__program__"}
        exec(code, namespace)
        if req.get("oracle"):
            _serve_calls(namespace, 4, 5)
        else:
            os.write(3, b"\n" + nonce)
    except MemoryError:
        os._exit(3)
    except BaseException as e:  # noqa: BLE001 - the program's failure is the verdict
        _report(3, e)
        os._exit(4 if isinstance(e, OSError) and e.errno == 27 else 1)  # 27: EFBIG
    os._exit(0)


class _CandidateRaised(BaseException):
    """The candidate raised (BaseException: test code's ``except Exception`` does not hide it)."""


class _CandidateGone(BaseException):
    pass


class _NotPlain(BaseException):
    pass


class _Proxy:
    """Stands for one of the program's functions in the judge: arguments go out as a literal
    repr, the return value comes back as one (or the candidate's exception, by name)."""

    def __init__(self, name: str, calls: int, replies: int):
        self.name, self.calls, self.replies = name, calls, replies

    def __call__(self, *args, **kwargs):
        if not plain((args, kwargs)):
            raise _NotPlain("the test passed data that is not plain to the candidate")
        try:  # a candidate that ended (a SyntaxError, an exit) closed its end: its exit decides
            _write_frame(self.calls, repr((self.name, args, kwargs)).encode())
        except BrokenPipeError:
            raise _CandidateGone() from None
        try:
            frame = _read_frame(self.replies, MAX_DATA)
        except ValueError:
            raise _NotPlain(f"the candidate returned more than {MAX_DATA // MiB} MiB") from None
        if frame is None:
            raise _CandidateGone()
        kind, _, rest = frame.decode(errors="replace").partition(" ")
        if kind == "raise":
            name, _, line = rest.partition(" ")
            raise _CandidateRaised(exception_name(name), int(line[:9]) if line.isdigit() else 0)
        try:
            return decode(rest) if kind == "ok" else decode("?")
        except ValueError:
            raise _NotPlain("the candidate returned a value that is not plain data") from None


def _receive_oracle(fd: int, request_id: int) -> dict:
    """This request's oracle from the client's oracle pipe (older ones, left by a judge that
    died before reading, are skipped)."""
    while (frame := _read_frame(fd)) is not None:
        oracle = json.loads(frame)
        if oracle["id"] == request_id:
            return oracle
    raise EOFError("the oracle pipe closed")


def _judge(req: dict, fds: Sequence[int]) -> None:
    """The trusted process: read the oracle (fd 6), run its prelude and tests against proxies
    (fd 4: calls out, fd 5: replies in), report a JSON verdict on fd 3. Never returns."""
    verdict: dict = {"status": "passed"}
    test = ""
    try:
        _enter_judge(req["limits"], fds)
        oracle, namespace = _receive_oracle(6, req["id"]), {"__name__": "__test__"}
        test = oracle["test"]
        exec(compile(oracle["prelude"], "<prelude>", "exec"), namespace)
        namespace.update({name: _Proxy(name, 4, 5) for name in oracle["names"]})
        exec(compile(test, "<test>", "exec"), namespace)
    except _CandidateGone:
        verdict = {"status": "gone"}
    except _CandidateRaised as e:
        verdict = {"status": "failed", "head": e.args[0], "where": "program", "line": e.args[1]}
    except BaseException as e:  # noqa: BLE001 - a failed test is the verdict
        line = _failure_line(e, "<test>")
        verdict = {"status": "failed", "where": "test", "line": line,
                   "head": str(e) if isinstance(e, _NotPlain) else type(e).__name__,
                   "text": _source_line(test, line)}
    try:
        os.write(3, json.dumps(verdict).encode())
    finally:
        os._exit(0)


def _enter_judge(limits: dict, fds: Sequence[int]) -> None:
    """In the forked judge: fds as for the candidate, a CPU limit, not ptrace-able."""
    _only_fds(fds)
    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu"], limits["cpu"] + 1))
    _libc().prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


# --------------------------------------------------------------------------------------------
# one run: fork, watch, classify, clean up

def _kill_descendants() -> None:
    """SIGKILL and reap every descendant: as init or subreaper, orphans become our children."""
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
    """Delete what the sandbox uid left in the world-writable places."""
    for top, _ in PRIVATE_DIRS:
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


def _spawn(target, *args) -> int:
    pid = os.fork()
    if pid == 0:
        target(*args)  # never returns
    return pid


def _drain(fd: int, buf: bytes) -> bytes:
    """Read what is in the pipe now (at most 16 chunks); keep the last TAIL bytes."""
    os.set_blocking(fd, False)
    for _ in range(16):
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        buf = (buf + chunk)[-TAIL:]
    return buf


def _watch(pids: dict[str, int], outputs: dict[str, int], done, deadline: float, long_at: float,
           on_long) -> tuple[dict[str, tuple[int, float]], dict[str, bytes], bool]:
    """Wait until ``done(exited, data)`` or the deadline. exited: name -> (wait status, CPU s);
    data: what each output pipe (named like its process) delivered. Returns (exited, data,
    timed_out)."""
    exited: dict[str, tuple[int, float]] = {}
    data = {name: b"" for name in outputs}
    pidfds = {os.pidfd_open(pid): name for name, pid in pids.items()}
    poller = select.poll()
    for fd in [*pidfds, *outputs.values()]:
        poller.register(fd, select.POLLIN)
    timed_out = False
    try:
        while not done(exited, data):
            now = time.perf_counter()
            if now >= deadline:
                timed_out = True
                break
            if now >= long_at:
                on_long()
                long_at = float("inf")
            for fd, _ in poller.poll(max(0.0, min(deadline, long_at) - now) * 1000 + 0.5):
                if fd in pidfds:
                    name = pidfds[fd]
                    _, status, usage = os.wait4(pids[name], 0)
                    exited[name] = (status, usage.ru_utime + usage.ru_stime)
                    poller.unregister(fd)
                    if name in outputs:
                        data[name] = _drain(outputs[name], data[name])
                else:
                    name = next(n for n, o in outputs.items() if o == fd)
                    try:
                        chunk = os.read(fd, 65536)
                    except BlockingIOError:  # drained already, when its process ended
                        continue
                    data[name] = (data[name] + chunk)[-TAIL:]
                    if not chunk:
                        poller.unregister(fd)
    finally:
        for fd in pidfds:
            os.close(fd)
    return exited, data, timed_out


def _source_line(source: str, line: int) -> str:
    lines = source.splitlines()
    return lines[line - 1].strip() if 1 <= line <= len(lines) else ""


def exception_name(name: str) -> str:
    """A program-reported exception name, as a builtin's name or a generic phrase."""
    return name if name in EXCEPTIONS else "an exception of the program's own class"


def _reason(head: str, where: str, line: int, text: str) -> str:
    """``head`` (a builtin exception's name or one of our sentences) and the source line it
    happened on: nothing the program printed or chose, beyond which line."""
    if text:
        head += f" at {where} line {line}: {text}"
    return head[:300]


def _judged(req: dict, verdict: dict) -> tuple[str, str] | None:
    """The status and reason from the judge's verdict; None when the candidate's exit decides."""
    if verdict.get("status") == "passed":
        return "passed", ""
    if verdict.get("status") != "failed":
        return None
    head, where, line = verdict["head"], verdict["where"], verdict["line"]
    text = _source_line(req["program"], line) if where == "program" else verdict["text"]
    status = "memory" if (head, where) == ("MemoryError", "program") else "failed"
    return status, _reason(head, where, line, text)


def _exit_reason(req: dict, exit_info: tuple[int, float], report: bytes, nonce: bytes,
                 oom: bool) -> tuple[str, str]:
    """The status and reason from how the candidate ended."""
    limits = req["limits"]
    status, cpu = exit_info
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGXCPU or cpu >= limits["cpu"]:
            return "timeout", f"CPU time limit of {limits['cpu']} s exceeded"
        if oom:
            return "memory", f"program memory limit of {limits['memory'] // MiB} MiB exceeded"
        return "killed", f"killed by {signal.Signals(sig).name}"
    code = os.WEXITSTATUS(status)
    if code == 0 and not req.get("oracle") and report.rstrip().endswith(nonce):
        return "passed", ""
    if code == 3:
        return "memory", f"MemoryError (limit {limits['memory'] // MiB} MiB per process)"
    if code == 4:
        return "filesize", f"file size limit of {limits['fsize'] // MiB} MiB exceeded"
    raised = _RAISED.search(report)
    if code == 1 and raised:
        line = int(raised[2])
        return "failed", _reason(exception_name(raised[1].decode()), "program", line,
                                 _source_line(req["program"], line))
    return "failed", f"exited with status {code} before the tests finished"


def _run_one(req: dict, ctx: _Context, on_long=lambda: None) -> dict:
    """Fork the candidate (and, with an oracle, the judge), wait within the limits, classify,
    clean up. ``on_long`` is called once if the run is still going after ``long_after`` s."""
    limits, oracle = req["limits"], req.get("oracle")
    start = time.perf_counter()
    workdir = tempfile.mkdtemp(prefix="t2-sandbox-", dir=ctx.workdir_base)
    if ctx.uid >= 0:
        os.chown(workdir, ctx.uid, ctx.uid)
    if ctx.cgroup is not None:
        ctx.cgroup.set_memory(limits["memory"])
    ooms = ctx.cgroup.oom_kills() if ctx.cgroup is not None else 0
    nonce = os.urandom(16).hex().encode()
    report, calls, replies, verdict = os.pipe(), os.pipe(), os.pipe(), os.pipe()
    mine = [report[1], calls[0], replies[1]] if oracle else [report[1]]
    pids = {"candidate": _spawn(_candidate, req, nonce, workdir, ctx, mine)}
    outputs = {"candidate": report[0]}
    if oracle:
        pids["judge"] = _spawn(_judge, req, [verdict[1], calls[1], replies[0], ctx.oracle_fd])
        outputs["judge"] = verdict[0]
    for fd in (report[1], *calls, *replies, verdict[1]):
        os.close(fd)

    def done(exited, data) -> bool:
        if not oracle:
            return "candidate" in exited
        return "judge" in exited and ("candidate" in exited
                                      or json.loads(data["judge"] or b"{}").get("status") != "gone")

    exited, data, timed_out = _watch(pids, outputs, done, start + limits["wall"],
                                     start + limits.get("long_after", float("inf")), on_long)
    _kill_descendants()
    for fd in (report[0], verdict[0]):
        os.close(fd)
    shutil.rmtree(workdir, ignore_errors=True)
    if ctx.uid >= 0:
        _remove_uid_files(ctx.uid)
    oom = ctx.cgroup is not None and ctx.cgroup.oom_kills() > ooms
    if timed_out:
        status, reason = "timeout", f"wall-clock backstop of {limits['wall']:g} s exceeded"
    elif oracle and (judged := _judged(req, json.loads(data["judge"] or b"{}"))) is not None:
        status, reason = judged
    elif "candidate" in exited:
        status, reason = _exit_reason(req, exited["candidate"], data["candidate"], nonce, oom)
    else:
        status, reason = "error", "the judge ended without a verdict"
    return {"status": status, "reason": reason, "seconds": time.perf_counter() - start}


def _announce_long() -> None:
    try:
        _write_frame(1, b'{"long": true}')
    except OSError:
        pass  # the client is gone: the program still gets its limits and its cleanup


def serve(uid: int, oracle_fd: int) -> None:
    """The server loop: one request frame in (JSON: id, program, limits, whether an oracle
    judges), one result out. The oracles themselves come on ``oracle_fd``, which the server never
    reads: the programs it forks never hold a test or an expected value, not even in freed
    memory."""
    sys.path[:] = [p for p in sys.path if p not in ("", ".")]
    ctx, isolation = _setup(uid, oracle_fd)
    _write_frame(1, json.dumps(isolation).encode())
    try:
        while (frame := _read_frame(0)) is not None:
            req = json.loads(frame)
            try:
                out = _run_one(req, ctx, _announce_long)
            except Exception as e:  # noqa: BLE001 - the server must outlive any program
                out = {"status": "error", "reason": f"sandbox: {type(e).__name__}: {e}"[:300],
                       "seconds": 0.0}
            _write_frame(1, json.dumps(out).encode())
    finally:
        _kill_descendants()
        if ctx.cgroup is not None:
            ctx.cgroup.remove()


# --------------------------------------------------------------------------------------------
# client side: the pool

class _Server:
    """One pre-started server process (one pool slot)."""

    def __init__(self, uid: int):
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}
        # run_path, not `python FILE`: FILE's folder (tasks/, which has a math.py) must not be
        # on sys.path, and -I only implies -P (safe path) from Python 3.11 on
        boot = "import runpy, sys; runpy.run_path(sys.argv.pop(1), run_name='__main__')"
        oracle_r, self.oracle_w = os.pipe()
        self.proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", boot,
                                      os.path.abspath(__file__), "--serve", str(uid),
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


if __name__ == "__main__" and sys.argv[1:2] == ["--serve"]:
    serve(int(sys.argv[2]), int(sys.argv[3]))
