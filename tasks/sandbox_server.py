"""The sandbox's server: the script each pool slot runs as ``python -I -S sandbox_server.py
--serve UID ORACLE_FD`` (see :mod:`harness.tasks.sandbox` for what it guarantees, and where).

It forks a fresh process per program (and per program judged out of process, a judge), so its
own memory is what each fork copies: it imports only small parts of the standard library, and
nothing outside it (no harness, no site-packages).
"""

from __future__ import annotations

import _posixsubprocess
import ast
import builtins
import fcntl
import gc
import json
import os
import resource
import select
import signal
import socket
import sys
import time
from collections.abc import Sequence

MiB = 1 << 20
CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = 0x20000, 0x8000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_BIND, MS_MOVE, MS_REC, MS_PRIVATE = 4096, 8192, 1 << 14, 1 << 18
PRIVATE_DIRS = (("/tmp", "256m"), ("/var/tmp", "64m"), ("/dev/shm", "64m"), ("/run/lock", "8m"))
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 4, 36, 38
TAIL = 4096            # bytes of a program's report kept
MAX_DATA = 4 * MiB     # largest repr of a call's arguments or return value
PRELOADED = ("typing",)  # imported once by each server, so its programs (forks) find it loaded
EXCEPTIONS = frozenset(n for n, v in vars(builtins).items()
                       if isinstance(v, type) and issubclass(v, BaseException))



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
        try:
            value = ast.literal_eval(text)
        except ValueError:  # a name: only inf and nan are allowed
            value = ast.literal_eval(_Floats().visit(ast.parse(text, mode="eval")).body)
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError) as e:
        raise ValueError(f"not plain data ({type(e).__name__})") from None
    if not plain(value):
        raise ValueError("not plain data")
    return value


# --------------------------------------------------------------------------------------------
# server side: what the server runs once, and its helpers

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
    n = int.from_bytes(head, "little")
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
    data = len(data).to_bytes(4, "little") + data
    while data:
        data = data[os.write(fd, data):]


def _denied(*args, **kwargs):
    raise PermissionError("denied by the sandbox")


def _guard(block_network: bool) -> None:
    """Remove process control (and, without a network namespace, sockets) from Python."""
    for name in ("fork", "forkpty", "system", "kill", "killpg", "setuid", "setgid", "putenv",
                 "posix_spawn", "posix_spawnp"):
        setattr(os, name, _denied)
    _posixsubprocess.fork_exec = _denied  # what subprocess starts every child with
    if block_network:
        socket.socket = _denied
        socket.create_connection = _denied


def _failure_line(e: BaseException, filename: str) -> int:
    """The line of ``filename`` where ``e`` was raised (innermost frame), 0 if none."""
    if isinstance(e, SyntaxError) and e.filename == filename:
        return e.lineno or 0
    line, tb = 0, e.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


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

class _Context:
    """What the server's setup left for its runs."""

    def __init__(self, uid: int, block_network: bool, workdir_base: str | None, cgroup: _Cgroup | None,
                 oracle_fd: int):
        self.uid = uid                      # the programs' uid (-1: the server's own)
        self.block_network = block_network  # no network namespace: block sockets in Python
        self.workdir_base = workdir_base    # where working directories are made
        self.cgroup = cgroup
        self.oracle_fd = oracle_fd          # the client's oracle pipe: only judges read it


def _make_dir(prefix: str, base: str) -> str:
    """A new directory ``base/prefix<random>``, mode 0700 (what tempfile.mkdtemp makes)."""
    while True:
        path = os.path.join(base, prefix + os.urandom(6).hex())
        try:
            os.mkdir(path, 0o700)
            return path
        except FileExistsError:
            continue


def _remove_tree(path: str) -> None:
    """Delete ``path`` and everything under it, never following a link; errors are ignored
    (iterative: a program's directories may nest deeper than Python's recursion limit)."""
    stack = [(path, False)]
    while stack:
        top, emptied = stack.pop()
        if emptied:
            _try(os.rmdir, top)
            continue
        try:
            entries = list(os.scandir(top))
        except NotADirectoryError:
            _try(os.unlink, top)
            continue
        except OSError:
            continue
        stack.append((top, True))
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                stack.append((entry.path, False))
            else:
                _try(os.unlink, entry.path)


def _try(op, path: str) -> None:
    try:
        op(path)
    except OSError:
        pass


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
    staging = _make_dir("t2-stdlib-", "/tmp")
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
                    _remove_tree(entry.path)
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


def _raised(report: bytes) -> tuple[str, int] | None:
    """(exception name, line) from a report's last line ``raise NAME LINE`` (see _report)."""
    words = report.rstrip().rpartition(b"\n")[2].split(b" ")
    if len(words) == 3 and words[0] == b"raise" and words[1].isascii() \
            and words[1].decode().isidentifier() and len(words[1]) <= 64 \
            and words[2].isdigit() and len(words[2]) <= 9:
        return words[1].decode(), int(words[2])
    return None


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
    raised = _raised(report)
    if code == 1 and raised:
        return "failed", _reason(exception_name(raised[0]), "program", raised[1],
                                 _source_line(req["program"], raised[1]))
    return "failed", f"exited with status {code} before the tests finished"


def _run_one(req: dict, ctx: _Context, on_long=lambda: None) -> dict:
    """Fork the candidate (and, with an oracle, the judge), wait within the limits, classify,
    clean up. ``on_long`` is called once if the run is still going after ``long_after`` s."""
    limits, oracle = req["limits"], req.get("oracle")
    start = time.perf_counter()
    workdir = _make_dir("t2-sandbox-", ctx.workdir_base or "/tmp")
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
    _remove_tree(workdir)
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
    for name in PRELOADED:
        __import__(name)
    gc.freeze()  # the children's collections never walk (or copy the pages of) the server's objects
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


if __name__ == "__main__" and sys.argv[1:2] == ["--serve"]:
    serve(int(sys.argv[2]), int(sys.argv[3]))
