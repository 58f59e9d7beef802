"""The sandbox stops or denies each attack, reports it as a failure with a reason, and leaves the
harness and the machine as they were."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from harness.tasks.sandbox import UID_BASE, Limits, Sandbox, run_programs

ROOT = os.geteuid() == 0


@pytest.fixture(scope="module")
def box():
    with pytest.MonkeyPatch.context() as env:
        env.setenv("T2_SECRET", "hunter2")  # set before the servers start: it must not reach programs
        with Sandbox(workers=2, limits=Limits(timeout=1.5)) as b:
            yield b


def descendants(box: Sandbox) -> list[int]:
    """Live processes under the pool's servers (programs and anything they started)."""
    kids = []
    for server in box._servers:
        if server is not None:
            pid = server.proc.pid
            kids += Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return kids


def sandbox_uid_processes() -> list[str]:
    """Processes on the machine whose real uid is one of the sandbox's uids."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            uid = int(next(l for l in status.read_text().splitlines() if l.startswith("Uid:")).split()[1])
        except (OSError, StopIteration):
            continue
        if uid >= UID_BASE:
            found.append(status.parent.name)
    return found


def test_isolation_mechanisms_are_reported(box):
    if ROOT:
        assert box.isolation == {"network": "namespace", "user": box.isolation["user"],
                                 "tmp": "private tmpfs"}
        assert box.isolation["user"].startswith("uid ")
    else:
        assert box.isolation["user"] == "same uid"


@pytest.mark.skipif(not ROOT, reason="private temporary directories need a mount namespace (root)")
def test_temporary_files_never_reach_the_machine(box):
    name = f"t2-canary-{os.getpid()}-{time.time_ns()}"
    for top in ("/tmp", "/var/tmp", "/dev/shm"):
        r = box.run(f"open('{top}/{name}', 'w').write('x')\nimport os\n"
                    f"assert os.path.exists('{top}/{name}')")
        assert r.passed, r.reason
        assert not os.path.exists(f"{top}/{name}")  # private to the sandbox server
    # and the next program in the slot does not see what the previous one left behind
    box.run_many([f"open('/tmp/{name}', 'w').write('x')"] * 2)
    later = box.run_many([f"import os; assert not os.path.exists('/tmp/{name}')"] * 2)
    assert all(r.passed for r in later), [r.reason for r in later]


def test_hung_programs_do_not_stall_the_pool():
    with Sandbox(workers=2, limits=Limits(timeout=2.0), long_after=0.2) as b:
        t = time.perf_counter()
        results = b.run_many(["while True: pass"] * 2 + ["assert True"] * 20)
        elapsed = time.perf_counter() - t
        assert [r.status for r in results] == ["timeout"] * 2 + ["passed"] * 20
        quick = [r.seconds for r in results[2:]]
        assert max(quick) < 1.5 and elapsed < 3.5  # the 20 ran while the two hung
        assert descendants(b) == []


def test_passing_and_failing_programs(box):
    ok, bad, syntax = box.run_many(["assert sorted([3, 1, 2]) == [1, 2, 3]",
                                    "assert 1 + 1 == 3, 'arithmetic'", "def f(:\n  pass"])
    assert (ok.passed, ok.status) == (True, "passed")
    assert (bad.passed, bad.status, bad.reason) == (False, "failed", "AssertionError: arithmetic")
    assert syntax.status == "failed" and syntax.reason.startswith("SyntaxError")


@pytest.mark.parametrize("program", ["import sys; sys.exit(0)", "import os; os._exit(0)",
                                     "raise SystemExit"])
def test_exiting_early_is_not_a_pass(box, program):
    r = box.run(program + "\nassert False, 'tests never ran'")
    assert not r.passed and r.status == "failed" and r.reason


@pytest.mark.parametrize("program", ["while True: pass", "import time; time.sleep(60)"])
def test_infinite_loop_and_sleep_time_out(box, program):
    t = time.perf_counter()
    r = box.run(program)
    assert (r.passed, r.status) == (False, "timeout") and "time limit" in r.reason
    assert 1.0 <= time.perf_counter() - t < 4.0
    assert descendants(box) == []


@pytest.mark.parametrize("program", [
    "import os\nwhile True: os.fork()",  # stopped by the Python guard
    "import posix\nwhile True:\n    try: posix.fork()\n    except OSError: pass",  # guard bypassed
])
def test_fork_bomb_is_stopped_and_cleaned_up(box, program):
    r = box.run(program)
    assert not r.passed and r.status in ("failed", "timeout") and r.reason
    assert descendants(box) == []
    if ROOT:
        assert sandbox_uid_processes() == []
    assert box.run("assert True").passed  # the pool still works


@pytest.mark.parametrize("program", ["x = bytearray(4 << 30)",
                                     "a = []\nwhile True: a.append(' ' * 10**7)"])
def test_memory_bomb_is_stopped(box, program):
    r = box.run(program, Limits(timeout=5.0, memory=256 << 20))
    assert (r.passed, r.status) == (False, "memory") and "256 MiB" in r.reason


def test_huge_file_is_cut_and_workdir_removed(box):
    r = box.run("import os\ntry:\n    open('big', 'wb').write(b'x' * (64 << 20))\n"
                "finally:\n    print(os.getcwd(), file=__import__('sys').stderr)")
    assert (r.passed, r.status) == (False, "filesize") and "File too large" in r.reason
    r = box.run("import os; raise RuntimeError(os.getcwd())")
    workdir = r.reason.split(": ", 1)[1]
    assert "t2-sandbox-" in workdir and not os.path.exists(workdir)


@pytest.fixture
def visible_dir():
    """A directory programs can see into (0755, outside the temporary directories, which are
    private to the sandbox servers): denials below come from the sandbox uid, not from a path
    the program cannot reach."""
    import shutil
    import tempfile

    base = next((d for d in ("/srv", "/opt", "/mnt", "/var/lib") if os.access(d, os.W_OK)), None)
    if base is None:
        pytest.skip("no writable directory outside the temporary directories")
    path = Path(tempfile.mkdtemp(prefix="t2-sandbox-test-", dir=base))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.skipif(not ROOT, reason="file isolation needs a separate uid (run as root)")
def test_rm_rf_outside_workdir_is_denied(box, visible_dir):
    victim = visible_dir / "victim"
    victim.mkdir()
    (victim / "canary").write_text("alive")
    r1 = box.run(f"import os; os.system('rm -rf {victim}')")
    r2 = box.run(f"import posix; posix.system('rm -rf {victim}')")  # guard bypassed: the OS denies
    r3 = box.run(f"import shutil; shutil.rmtree({str(victim)!r})")
    assert r1.status == "failed" and "denied" in r1.reason
    assert r3.status == "failed" and "PermissionError" in r3.reason
    assert (victim / "canary").read_text() == "alive"
    assert r2.status in ("passed", "failed")  # the shell ran and failed; nothing was removed


@pytest.mark.skipif(not ROOT, reason="file isolation needs a separate uid (run as root)")
def test_private_files_and_harness_environment_are_unreadable(box, visible_dir):
    canary = visible_dir / "secret.txt"
    canary.write_text("top secret")
    canary.chmod(0o600)
    for path in (canary, f"/proc/{os.getpid()}/environ"):
        r = box.run(f"print(open({str(path)!r}).read())")
        assert r.status == "failed" and "PermissionError" in r.reason


def test_environment_has_no_secrets(box):
    r = box.run("import os\nassert 'T2_SECRET' not in os.environ\n"
                "assert set(os.environ) <= {'PATH', 'LANG', 'PYTHONHASHSEED'}, sorted(os.environ)")
    assert r.passed, r.reason


def test_network_is_unreachable(box):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    try:
        results = box.run_many([
            f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=1)",
            f"import _socket; s = _socket.socket(); s.settimeout(1); s.connect(('127.0.0.1', {port}))",
        ])
        for r in results:
            assert r.status == "failed" and r.reason
        with pytest.raises(socket.timeout):
            listener.accept()  # nobody got through
    finally:
        listener.close()


def test_pool_survives_crashes_and_a_dead_server(box):
    programs = ["assert True", "import faulthandler; faulthandler._sigsegv()", "assert 2 > 1",
                "import faulthandler; faulthandler._sigabrt()", "assert 'a' < 'b'"]
    results = box.run_many(programs)
    assert [r.passed for r in results] == [True, False, True, False, True]
    assert results[1].status == "killed" and "SIGSEGV" in results[1].reason
    assert results[3].status == "killed" and "SIGABRT" in results[3].reason
    box._servers[0].proc.kill()
    box._servers[0].proc.wait()
    assert all(r.passed for r in box.run_many(["assert True"] * 6))


def test_run_programs_convenience():
    results = run_programs(["assert 1", "assert 0"], Limits(timeout=1.0), workers=2)
    assert [r.status for r in results] == ["passed", "failed"]


def test_bad_workers_is_one_line_error():
    with pytest.raises(ValueError, match="workers"):
        Sandbox(workers=1000)
