"""The ``t2`` command line: one subcommand per pipeline stage, each reading the previous stage's files.

Handlers import their modules lazily so ``t2 --help`` and light commands start fast.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


def _cmd_tasks(args: argparse.Namespace) -> None:
    raise UsageError("t2 tasks: not implemented yet")


def _cmd_sample(args: argparse.Namespace) -> None:
    raise UsageError("t2 sample: not implemented yet")


def _cmd_likelihood(args: argparse.Namespace) -> None:
    raise UsageError("t2 likelihood: not implemented yet")


def _cmd_score(args: argparse.Namespace) -> None:
    raise UsageError("t2 score: not implemented yet")


def _cmd_passk(args: argparse.Namespace) -> None:
    raise UsageError("t2 passk: not implemented yet")


def _cmd_cost(args: argparse.Namespace) -> None:
    raise UsageError("t2 cost: not implemented yet")


def _cmd_merge(args: argparse.Namespace) -> None:
    raise UsageError("t2 merge: not implemented yet")


def _cmd_fit(args: argparse.Namespace) -> None:
    raise UsageError("t2 fit: not implemented yet")


def _cmd_optimize(args: argparse.Namespace) -> None:
    raise UsageError("t2 optimize: not implemented yet")


def _cmd_validate(args: argparse.Namespace) -> None:
    raise UsageError("t2 validate: not implemented yet")


def _cmd_plot(args: argparse.Namespace) -> None:
    raise UsageError("t2 plot: not implemented yet")


def _cmd_reliability(args: argparse.Namespace) -> None:
    raise UsageError("t2 reliability: not implemented yet")


def _cmd_demo(args: argparse.Namespace) -> None:
    raise UsageError("t2 demo: not implemented yet")


def _add(sub, name: str, handler: Callable[[argparse.Namespace], None], help: str, example: str):
    p = sub.add_parser(name, help=help, description=f"{help}\n\nexample:\n  {example}",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(handler=handler)
    return p


def _sampler_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", required=True, help="task name (see `t2 tasks`)")
    p.add_argument("--model", required=True,
                   help="smollm2-135m (offline default), an HF hub id, or a local model folder")
    p.add_argument("--out", required=True, help="run directory to write (resumed if it exists)")
    p.add_argument("--backend", choices=["vllm", "hf"], default="hf", help="sampler backend (default hf)")
    p.add_argument("--limit", type=int, default=None, help="use only the first P problems")
    p.add_argument("--shard", default=None, help="i/N: this machine's share of the problems")
    p.add_argument("--device", default=None, help="hf backend device (cpu, cuda); default: cuda if available")
    p.add_argument("--dtype", default=None, help="model dtype (float32, bfloat16, float16)")
    p.add_argument("--data-files", default=None, help="local data file(s) for tasks that load datasets")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="t2", description="Repeated-sampling evaluation and Train-to-Test (T²) scaling laws.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _add(sub, "tasks", _cmd_tasks, "list tasks, sizes and sources", "t2 tasks")

    p = _add(sub, "sample", _cmd_sample, "draw n completions per problem into a run directory",
             "t2 sample --task gsm8k --model smollm2-135m --out results/gsm8k-smol -n 64 --limit 32")
    _sampler_args(p)
    p.add_argument("-n", type=int, default=64, help="completions per problem (default 64)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus mass (default 1.0 = off)")
    p.add_argument("--top-k", type=int, default=0, help="top-k cut-off (default 0 = off)")
    p.add_argument("--max-tokens", type=int, default=256, help="new tokens per completion (default 256)")
    p.add_argument("--seed", type=int, default=0, help="base seed: sample i uses seed+i (default 0)")
    p.add_argument("--chat", action="store_true", help="apply the tokenizer's chat template")
    p.add_argument("--chunk", type=int, default=None, help="problems per generate call / store flush")
    p.add_argument("--tensor-parallel-size", type=int, default=1, help="vllm: GPUs per model replica")
    p.add_argument("--data-parallel-size", type=int, default=1, help="vllm: model replicas")
    p.add_argument("--max-model-len", type=int, default=None, help="vllm: context length limit")
    p.add_argument("--gpu-memory-utilization", type=float, default=None, help="vllm: GPU memory share")

    p = _add(sub, "likelihood", _cmd_likelihood, "gold-answer NLL per question (likelihood mode)",
             "t2 likelihood --task arithmetic --model smollm2-135m --out results/arith-smol")
    _sampler_args(p)

    p = _add(sub, "score", _cmd_score, "run the task's verifier over a run's samples",
             "t2 score results/gsm8k-smol")
    p.add_argument("run", help="run directory")
    p.add_argument("--workers", type=int, default=None, help="parallel verifier processes")

    p = _add(sub, "passk", _cmd_passk, "pass@k, maj@k and task loss tables",
             "t2 passk results/gsm8k-smol   (or: t2 passk problems.parquet -k 1 2 4 8)")
    p.add_argument("source", help="a run directory or a problems.parquet file")
    p.add_argument("-k", type=int, nargs="+", default=None, help="values of k (default: powers of 2 up to n)")
    p.add_argument("--out", default=None, help="passk.parquet to write (default: beside the source)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the interval")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")

    p = _add(sub, "cost", _cmd_cost, "inference FLOPs of n samples of one prompt",
             "t2 cost --config HuggingFaceTB/SmolLM2-135M-Instruct --prompt-tokens 512 "
             "--completion-tokens 256 -n 64")
    p.add_argument("--config", required=True, help="config.json path, model folder, HF id or smollm2-135m")
    p.add_argument("--prompt-tokens", type=int, required=True, help="prompt length (tokens)")
    p.add_argument("--completion-tokens", type=int, required=True, help="tokens per completion")
    p.add_argument("-n", type=int, default=1, help="completions per prompt")
    p.add_argument("--json", action="store_true", help="print the cost record as JSON")

    p = _add(sub, "merge", _cmd_merge, "join shards of one task into a run directory (idempotent)",
             "t2 merge results/run-shard0of4 results/run-shard1of4 ... --out results/run")
    p.add_argument("runs", nargs="+", help="shard run directories")
    p.add_argument("--out", required=True, help="merged run directory")

    p = _add(sub, "fit", _cmd_fit, "fit a T² law to runs or a fitting dataset; writes the law as JSON",
             "t2 fit results/dataset.parquet --approach 1 --out law.json")
    p.add_argument("sources", nargs="+", help="run directories, or one fitting dataset .parquet")
    p.add_argument("--approach", type=int, choices=[1, 2], default=1, help="1: loss law, 2: Beta accuracy")
    p.add_argument("--task", default=None, help="fit only this task")
    p.add_argument("--suite", default=None, help="suite file (YAML/CSV: model, revision, N, D)")
    p.add_argument("--out", default="law.json", help="law JSON to write")
    p.add_argument("--starts", type=int, default=500, help="random starts (Approach 1)")
    p.add_argument("--bootstrap", type=int, default=0, help="bootstrap refits for intervals")
    p.add_argument("--seed", type=int, default=0)

    p = _add(sub, "optimize", _cmd_optimize, "best (N, D, k) under a training and an inference budget",
             "t2 optimize law.json --c-train 1e21 --c-inf 2e9")
    p.add_argument("law", help="law JSON written by `t2 fit`")
    p.add_argument("--c-train", type=float, required=True, help="training budget C_train = 6ND (FLOPs)")
    p.add_argument("--c-inf", type=float, required=True, help="inference budget C_inf = 2Nk (FLOPs per token)")

    p = _add(sub, "validate", _cmd_validate, "held-out relative error: fit on some checkpoints, test on others",
             "t2 validate results/dataset.parquet --approach 1")
    p.add_argument("dataset", help="fitting dataset .parquet")
    p.add_argument("--approach", type=int, choices=[1, 2], default=1)
    p.add_argument("--holdout-ratio", type=float, default=None,
                   help="hold out checkpoints with D/N above this (default: the most overtrained quarter)")

    p = _add(sub, "plot", _cmd_plot, "isoFLOP frontiers, pass@k curves, predicted vs measured (PNG, PDF)",
             "t2 plot law.json results/dataset.parquet --out results/plots")
    p.add_argument("law", help="law JSON written by `t2 fit`")
    p.add_argument("dataset", help="fitting dataset .parquet")
    p.add_argument("--out", default="plots", help="folder for the figures")

    p = _add(sub, "reliability", _cmd_reliability, "calibration, selective prediction, proper scores",
             "t2 reliability results/gsm8k-smol")
    p.add_argument("runs", nargs="+", help="scored run directories")
    p.add_argument("-k", type=int, nargs="+", default=None, help="values of k")
    p.add_argument("--out", default=None, help="folder for the report (default: results/reliability)")

    p = _add(sub, "demo", _cmd_demo, "the embedded default, end to end", "t2 demo")
    p.add_argument("--out", default="results/demo", help="report folder")
    p.add_argument("--real", action="store_true", help="SmolLM2-135M on HumanEval with vLLM")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--preset", default=None, help="ladder preset (default: tiny on cpu)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except UsageError as e:
        print(f"t2 {args.command}: error: {e}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as e:  # bad input surfaced by a library module
        print(f"t2 {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
