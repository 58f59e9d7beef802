"""Benchmark: start-up of the commands that run no model (``t2 --help``, ``t2 show``, ``t2 cost``,
``t2 passk``), and a ``t2 sample`` rerun of a finished run, against a baseline tree (a git ref,
default ``main``), on a small real run.

Both trees are copied to a scratch folder in the installed package's layout (``tasks`` and
``kernels`` under ``harness``) and run as ``python -m harness.cli ...`` with PYTHONPATH on the copy,
interleaved (baseline, this tree, baseline, ...), so load hits both alike. Reported per command:
median wall seconds of REPS runs each, the ratio, and which heavy libraries each imports (from one
more run that lists them); for ``--help`` also the median import time ``-X importtime`` reports. The run is
SmolLM2-135M-Instruct (hf backend) on 3 GSM8K problems × 4 samples, scored, made once by this tree.

Run by hand from the repository root:
  OMP_NUM_THREADS=1 .venv/bin/python tests/bench/bench_cli_startup.py [--baseline REF] [--reps 5]
(writes results/bench/cli_startup.md)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "results" / "bench" / "cli_startup.md"
HEAVY = ("torch", "transformers", "vllm", "ray", "lm_eval", "matplotlib", "pandas", "scipy", "datasets")
GSM8K = next(p for p in (Path(os.environ.get("T2_SHARED", "/nonexistent")), REPO.parent / "shared",
                         Path("/work/shared")) if (p / "data").is_dir()) / "data" / "gsm8k" / "test.jsonl"


def package_tree(root: Path, source: Path) -> Path:
    """``root`` holding harness/ (with tasks/ and kernels/ inside) copied from ``source``."""
    shutil.copytree(source / "harness", root / "harness", ignore=shutil.ignore_patterns("__pycache__"))
    for sub in ("tasks", "kernels"):
        shutil.copytree(source / sub, root / "harness" / sub, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def baseline_tree(root: Path, ref: str) -> Path:
    """The files of git ref ``ref`` of this repository in the package layout."""
    checkout = root / "checkout"
    checkout.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "harness", "tasks", "kernels"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(checkout)], input=archive, check=True)
    return package_tree(root / "tree", checkout)


def python(tree: Path, *args: str) -> subprocess.CompletedProcess:
    """``python args`` importing harness from ``tree`` (run there: the working directory, first on
    sys.path, must not be the repository)."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, *args], env=env, cwd=tree, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def t2(tree: Path, args: list[str], *python_flags: str) -> subprocess.CompletedProcess:
    return python(tree, *python_flags, "-m", "harness.cli", *args)


def check_imports_from(tree: Path) -> None:
    found = python(tree, "-c", "import harness.cli, harness.tasks; print(harness.cli.__file__, "
                               "harness.tasks.__file__)").stdout.split()
    assert all(Path(f).is_relative_to(tree) for f in found), (tree, found)


# `t2 ARGS` in this interpreter, then the HEAVY modules it imported into the file named by argv[1]
# (not stdout or stderr: `t2 sample` sends the engine's output, and -X importtime's, to engine.log)
PROBE = """
import json, sys
from harness.cli import main
out, sys.argv = sys.argv[1], ["t2", *sys.argv[2:]]
try:
    code = main()
except SystemExit as e:  # --help
    code = e.code
open(out, "w").write(json.dumps([m for m in {heavy!r} if m in sys.modules]))
sys.exit(code)
"""


def heavy_imports(tree: Path, args: list[str]) -> list[str]:
    """The HEAVY libraries ``t2 args`` imports."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        python(tree, "-c", PROBE.format(heavy=HEAVY), out.name, *args)
        return json.loads(Path(out.name).read_text())


def import_seconds(tree: Path, args: list[str]) -> float:
    """The import time ``python -X importtime -m harness.cli args`` reports in all (its depth-0 entries)."""
    lines = [line.split("|") for line in t2(tree, args, "-X", "importtime").stderr.splitlines()
             if line.startswith("import time:") and "cumulative" not in line]
    return sum(int(parts[1]) for parts in lines if not parts[2].startswith("  ")) / 1e6


def sample_args(out: Path) -> list[str]:
    return ["sample", "--task", "gsm8k", "--data-files", str(GSM8K), "--model", "smollm2-135m", "--backend", "hf",
            "--device", "cpu", "--out", str(out), "-n", "4", "--limit", "3", "--max-tokens", "16"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="main", help="git ref of the baseline tree (default main)")
    parser.add_argument("--reps", type=int, default=5, help="timed runs per command and tree (default 5)")
    args = parser.parse_args()
    ref = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", args.baseline], check=True,
                         capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"baseline": baseline_tree(Path(tmp) / "base", args.baseline),
                 "this tree": package_tree(Path(tmp) / "new", REPO)}
        for tree in trees.values():
            check_imports_from(tree)
        run = Path(tmp) / "run"
        t2(trees["this tree"], sample_args(run))
        t2(trees["this tree"], ["score", str(run)])
        commands = {"--help": ["--help"], "show RUN": ["show", str(run)], "cost RUN": ["cost", str(run)],
                    "passk RUN": ["passk", str(run)],
                    "cost --config smollm2-135m ...": ["cost", "--config", "smollm2-135m", "--prompt-tokens", "100",
                                                       "--completion-tokens", "50", "-n", "8"],
                    "sample ... (rerun of the finished run)": sample_args(run)}
        load_before = os.getloadavg()
        rows = [measure(trees, label, command, args.reps) for label, command in commands.items()]
        help_s = {name: statistics.median(import_seconds(tree, ["--help"]) for _ in range(args.reps))
                  for name, tree in trees.items()}
        load_after = os.getloadavg()
    write_table(rows, help_s, ref, args, load_before, load_after)


def measure(trees: dict[str, Path], label: str, command: list[str], reps: int) -> dict:
    walls: dict[str, list[float]] = {name: [] for name in trees}
    for _ in range(reps):  # interleaved: baseline, this tree, baseline, ...
        for name, tree in trees.items():
            t0 = time.perf_counter()
            t2(tree, command)
            walls[name].append(time.perf_counter() - t0)
    return {"command": label, "wall": {name: statistics.median(w) for name, w in walls.items()},
            "heavy": {name: heavy_imports(tree, command) for name, tree in trees.items()}}


def write_table(rows: list[dict], help_s: dict[str, float], ref: str, args: argparse.Namespace, before,
                after) -> None:
    lines = [f"`t2` start-up, median wall seconds of {args.reps} runs per tree, interleaved; baseline = "
             f"`{args.baseline}` ({ref}); the run: SmolLM2-135M-Instruct, 3 GSM8K problems × 4 samples, scored.", "",
             "| command | baseline s | this tree s | baseline / this | heavy imports: baseline | this tree |",
             "|---|---:|---:|---:|---|---|"]
    for row in rows:
        base, new = row["wall"]["baseline"], row["wall"]["this tree"]
        heavy = [", ".join(row["heavy"][name]) or "none" for name in ("baseline", "this tree")]
        lines.append(f"| `t2 {row['command']}` | {base:.2f} | {new:.2f} | **{base / new:.1f}×** | {heavy[0]} | "
                     f"{heavy[1]} |")
    lines += ["", f"`python -X importtime -m harness.cli --help`, total import time: baseline "
              f"{help_s['baseline']:.3f} s, this tree {help_s['this tree']:.3f} s.",
              f"Load average (1 / 5 / 15 min, 2 cores): {before[0]:.2f} / {before[1]:.2f} / {before[2]:.2f} before, "
              f"{after[0]:.2f} / {after[1]:.2f} / {after[2]:.2f} after.", "",
              f"Command: `OMP_NUM_THREADS=1 .venv/bin/python tests/bench/bench_cli_startup.py --baseline "
              f"{args.baseline} --reps {args.reps}`"]
    text = "\n".join(lines) + "\n"
    print(text)
    OUT.write_text("# CLI start-up\n\n" + text)


if __name__ == "__main__":
    main()
