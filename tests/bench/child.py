"""The scale benchmarks' child processes: a piece of Python run in a fresh interpreter and measured,
and the modules of an earlier git revision that a baseline child runs in place of the current ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MEASURED = """
import importlib.util, json, sys, time
def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    sys.modules[name] = module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
{setup}
t0, c0 = time.perf_counter(), time.process_time()
{body}
hwm = [line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM:')]
print(json.dumps({{"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0, "rss_gib": int(hwm[0]) / 2**20}}),
      file=sys.stderr)
"""


def measure(body: str, *args: str | Path, setup: str = "") -> dict:
    """{"cpu": s, "wall": s, "rss_gib": peak RSS} of ``body`` run by a fresh `python -c` (one OpenMP
    thread) with ``args`` as sys.argv[1:], after the untimed ``setup``. Both may call
    ``load(name, path)``, which imports the file at ``path`` as module ``name`` (e.g. a baseline's
    'harness.store'). The peak is the child's VmHWM, which, unlike ru_maxrss, does not start at the
    parent's peak."""
    proc = subprocess.run([sys.executable, "-c", MEASURED.format(setup=setup, body=body), *map(str, args)],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stderr.strip().splitlines()[-1])


def at_revision(rev: str, path: str) -> str:
    """The text of this repository's file ``path`` at git revision ``rev``."""
    return subprocess.run(["git", "show", f"{rev}:{path}"], check=True, cwd=REPO, capture_output=True,
                          text=True).stdout


def baseline_modules(rev: str, names: list[str], folder: Path) -> Path:
    """harness/<name>.py at ``rev`` for each name, written to ``folder``/<name>.py; returns ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / f"{name}.py").write_text(at_revision(rev, f"harness/{name}.py"))
    return folder
