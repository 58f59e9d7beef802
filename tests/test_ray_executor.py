"""`t2 sample --ray` and `t2 likelihood --ray` on a real local Ray cluster with a real tiny model:
two workers write exactly the samples (and likelihoods) of one process, a worker killed mid-run
loses nothing, and a worker that cannot load the model fails the run in one line.

Every Ray cluster here starts inside a network namespace that holds only loopback (``unshare
--net``), so it binds to 127.0.0.1 and nothing leaves the machine; each run's cluster is started
and shut down by the ``t2`` process itself, its files under a temporary RAY_TMPDIR."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pyarrow as pa
import pytest
from helpers import tiny_causal_lm

from harness import cli, records
from harness.errors import DataError
from harness.rundir import differences
from harness.store import KEY, SampleStore

PROBLEMS, N = 16, 4


def loopback_only(args: list[str]) -> list[str]:
    """``args`` run in a new network namespace whose only interface, lo, is up."""
    unshare = ["unshare", "--net"] if os.geteuid() == 0 else ["unshare", "--net", "--map-root-user"]
    return [*unshare, "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *args]


@pytest.fixture(scope="module")
def env():
    ray_tmp = tempfile.mkdtemp(prefix="t2ray-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    local = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a cluster of its own
    yield {**local, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "RAY_TMPDIR": ray_tmp}
    for leftover in _processes_using(ray_tmp):  # each t2 stops its cluster; this is the safety net
        leftover.kill()
    shutil.rmtree(ray_tmp, ignore_errors=True)


def _processes_using(folder: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(folder in part for part in proc.info["cmdline"] or ()):
            found.append(proc)
    return found


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A randomly initialised 2-layer Llama with a BPE tokenizer trained on the arithmetic task."""
    from harness.tasks import get_task
    from transformers import LlamaConfig

    texts = [p.prompt + p.answer for p in get_task("arithmetic").problems()[:300]]
    config = LlamaConfig(vocab_size=384, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
                         tie_word_embeddings=True)
    return tiny_causal_lm(tmp_path_factory.mktemp("tiny-llama"), config, texts)


def sample_cmd(model: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "harness.cli", "sample", "--task", "arithmetic", "--model", str(model),
            "--backend", "hf", "--device", "cpu", "--limit", str(PROBLEMS), "-n", str(N), "--max-tokens", "64",
            "--chunk", "1", "--out", str(out), *extra]


def run(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def raw_rows(out: Path) -> pa.Table:
    """Every row of every shard, duplicates included."""
    return pa.concat_tables(records.read_table(p, "samples") for p in SampleStore(out).shards())


def likelihood_cmd(model: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "harness.cli", "likelihood", "--model", str(model), "--backend", "hf",
            "--device", "cpu", "--out", str(out), *extra]


def nll_of(out: Path) -> dict[str, tuple[float, int]]:
    table = records.read_table(out / "problems.parquet", "problems")
    return {r["problem_id"]: (r["nll"], r["answer_tokens"]) for r in table.to_pylist()}


@pytest.fixture(scope="module")
def one_process(tiny_model, env, tmp_path_factory) -> Path:
    """The samples one process draws (``t2 sample`` without --ray)."""
    out = tmp_path_factory.mktemp("plain") / "run"
    proc = run(sample_cmd(tiny_model, out), env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert SampleStore(out).read().num_rows == PROBLEMS * N
    return out


def one_process_nll(model: Path) -> dict[str, tuple[float, int]]:
    """Gold-answer (NLL, answer tokens) of the run's problems from the hf backend in this process."""
    from harness.tasks import get_task

    from harness.samplers import get_backend

    problems = get_task("arithmetic").problems()[:PROBLEMS]
    backend = get_backend("hf", str(model), device="cpu")
    try:
        nll = backend.gold_nll([p.prompt for p in problems], [p.answer_span for p in problems])
    finally:
        backend.close()
    return {p.id: value for p, value in zip(problems, nll)}


@pytest.mark.slow
def test_two_workers_make_the_one_process_run(tiny_model, env, one_process, tmp_path):
    out = tmp_path / "run"
    proc = run(loopback_only(sample_cmd(tiny_model, out, "--ray", "--workers", "2")), env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # same keys, seeds, texts, token counts and log-probabilities
    assert SampleStore(out).read().to_pylist() == SampleStore(one_process).read().to_pylist()
    manifest, plain = (records.read_json(run_dir / "run.json", "run") for run_dir in (out, one_process))
    assert differences(plain, manifest) == []  # the same run: either resumes the other
    workers = manifest["executor"]["workers"]
    assert manifest["executor"]["name"] == "ray" and plain["executor"]["name"] == "process" and len(workers) == 2
    assert all(w["device"] == "cpu" and w["host"] and w["alive"] for w in workers)
    assert sum(w["problems"] for w in workers) == PROBLEMS and all(w["problems"] > 0 for w in workers)
    assert "Ray worker 1 on " in proc.stdout  # the per-worker summary
    proc = run(loopback_only(likelihood_cmd(tiny_model, out, "--ray", "--workers", "2")), env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got, want = nll_of(out), one_process_nll(tiny_model)
    assert got.keys() == want.keys() and all(got[p][1] == want[p][1] for p in want)  # answer tokens
    assert [got[p][0] for p in want] == pytest.approx([want[p][0] for p in want], rel=1e-5)  # thread counts differ


def _workers_of(driver: subprocess.Popen) -> list[psutil.Process]:
    """The Ray actor processes of the run ``driver`` started (their title is ray::SampleWorker...)."""
    procs = psutil.Process(driver.pid).children(recursive=True)
    return [p for p in procs if p.cmdline()[:1] and p.cmdline()[0].startswith("ray::SampleWorker")]


@pytest.mark.slow
def test_a_killed_worker_loses_nothing(tiny_model, env, one_process, tmp_path):
    out = tmp_path / "run"
    driver = subprocess.Popen(loopback_only(sample_cmd(tiny_model, out, "--ray", "--workers", "2")), env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not SampleStore(out).shards() and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)  # until the first problem is stored: both workers are sampling
        victims = _workers_of(driver)
        assert len(victims) == 2 and driver.poll() is None, "the run ended before a worker could be killed"
        os.kill(victims[0].pid, signal.SIGKILL)
        stdout, stderr = driver.communicate(timeout=240)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    assert driver.returncode == 0, stderr[-2000:]
    assert "died; its problems go to the other workers" in stderr
    assert SampleStore(out).read().to_pylist() == SampleStore(one_process).read().to_pylist()
    raw = raw_rows(out)  # exactly once in the files too, not only after de-duplication
    assert raw.num_rows == PROBLEMS * N == len(set(zip(*(raw[k].to_pylist() for k in KEY))))
    workers = records.read_json(out / "run.json", "run")["executor"]["workers"]
    assert sorted(w["alive"] for w in workers) == [False, True]


@pytest.mark.slow
def test_a_worker_that_cannot_load_the_model_fails_in_one_line(tiny_model, env, tmp_path):
    broken = shutil.copytree(tiny_model, tmp_path / "broken-model")
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    proc = run(loopback_only(sample_cmd(broken, tmp_path / "run", "--ray", "--workers", "1")), env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("t2 sample: error: Ray worker host ") and f"cannot load the model {broken}: " in last
    assert not SampleStore(tmp_path / "run").shards()


def test_a_worker_that_cannot_see_the_run_directory_is_refused(tmp_path):
    from harness.ray_executor import PROBE_FILE, check_shared

    (tmp_path / PROBE_FILE).write_text("driver-token")
    check_shared(tmp_path, "driver-token")
    with pytest.raises(DataError, match="filesystem every node mounts at the same path"):
        check_shared(tmp_path, "another-driver's-token")  # another machine's folder at that path
    with pytest.raises(DataError, match="not readable and writable from Ray worker host"):
        check_shared(tmp_path / "absent", "driver-token")


@pytest.mark.parametrize("args", [["--workers", "2"], ["--ray", "--workers", "0"]])
def test_workers_need_ray_and_a_positive_count(tmp_path, capsys, args):
    out = tmp_path / "run"
    assert cli.main(["sample", "--task", "arithmetic", "--model", "org/never-loaded", "--out", str(out), *args]) == 2
    assert capsys.readouterr().err.strip() == ("t2 sample: error: --workers: expected a count >= 1, with the ray "
                                               f"executor only, got {args[-1]}")
    assert not out.exists()
