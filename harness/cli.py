"""The ``t2`` command line: one subcommand per pipeline stage, each reading the previous stage's files.

Handlers import their modules lazily so ``t2 --help`` and light commands start fast. Only this
module knows flag names: the library raises :mod:`harness.errors` naming fields, and :func:`main`
prints those (and ``OSError`` on the user's paths) as one line ``t2 CMD: error: ...``, exit 2,
with fields shown as the flags that set them (:data:`FLAGS`). Any other exception is a bug and
keeps its traceback.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

from harness import config_file
from harness.errors import InvalidSetting, RunMismatch, T2Error


class UsageError(T2Error):
    """Bad input caught by the command line itself: printed as one line, exit status 2."""


# library field (a setting, or the last part of a run.json field) → the flag that sets it
FLAGS = {
    "n": "-n", "max_tokens": "--max-tokens", "chunk": "--chunk", "temperature": "--temperature",
    "top_p": "--top-p", "top_k": "--top-k", "seed": "--seed", "chat": "--chat", "limit": "--limit",
    "system_prompt": "--system-prompt", "num_fewshot": "--num-fewshot",
    "shard": "--shard", "task": "--task", "task.name": "--task", "task_option": "--task-option",
    "data_files": "--data-files", "problems_sha256": "--data-files", "data_sha256": "--data-files",
    "model": "--model", "model.id": "--model", "revision": "--revision", "dtype": "--dtype",
    "backend": "--backend", "device": "--device", "attention": "--attention", "out": "--out",
    "approach": "--approach", "holdout_ratio": "--holdout-ratio", "params": "--params", "suite": "--suite",
    "preset": "--preset", "c_train": "--c-train", "c_inf": "--c-inf", "n_factor": "--n-factor",
    "k_factor": "--k-factor", "gen_kwargs": "--gen-kwargs", "min_p": "--gen-kwargs min_p",
    "repetition_penalty": "--gen-kwargs repetition_penalty", "presence_penalty": "--gen-kwargs presence_penalty",
    "frequency_penalty": "--gen-kwargs frequency_penalty",
    "workers": "--workers", "executor": "--ray",
    "tensor_parallel_size": "--tensor-parallel-size", "data_parallel_size": "--data-parallel-size",
}


def flag_of(field: str) -> str:
    """The flag that sets library field ``field`` (dotted run.json fields by their last part)."""
    last = field.rsplit(".", 1)[-1]
    if field.startswith("task.options.") and last not in FLAGS:
        return "--task-option"
    if field.startswith("gen_kwargs."):
        return f"--gen-kwargs {last}"
    return FLAGS.get(field) or FLAGS.get(last) or field


def error_line(e: BaseException) -> str:
    """The one-line message of a user error, in flag names."""
    if isinstance(e, InvalidSetting):
        return e.render(flag_of(e.field))
    if isinstance(e, RunMismatch) and e.field:
        return f"{e} (set by {flag_of(e.field)}); use another --out or the run's own settings"
    if isinstance(e, OSError) and e.filename is not None:
        return f"{e.filename}: {e.strerror or e}"
    return str(e)


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line too: ``t2 CMD: error: ...``, exit 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def finite_float(text: str) -> float:
    """argparse type: a finite float (nan and inf are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def parse_shard(spec: str | None) -> tuple[int, int] | None:
    """``"i/N"`` → (i, N) with 0 <= i < N; None stays None."""
    if spec is None:
        return None
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise UsageError(f"--shard: expected i/N (e.g. 0/4), got {spec!r}") from None
    if not 0 <= i < n:
        raise UsageError(f"--shard: expected 0 <= i < N, got {spec!r}")
    return i, n


def parse_task_options(items: Sequence[str] | None, num_fewshot: int | None = None) -> dict[str, Any]:
    """``["mode=strict", "shift=1"]`` → {"mode": "strict", "shift": 1} (values parsed as YAML
    scalars), plus ``num_fewshot`` (--num-fewshot) when given."""
    import yaml

    options = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--task-option: expected KEY=VALUE, got {item!r}")
        options[key] = yaml.safe_load(value)
    if num_fewshot is not None:
        if "num_fewshot" in options:
            raise UsageError("--num-fewshot: given twice (also as --task-option num_fewshot=...)")
        options["num_fewshot"] = num_fewshot
    return options


def backend_options(backend: str, *, device: str | None = None, dtype: str | None = None,
                    revision: str | None = None, attention: str | None = None,
                    **vllm_options: Any) -> dict[str, Any]:
    """The constructor options of ``backend`` from flag values (None = the backend's default)."""
    if backend == "hf":
        chosen = {"device": device, "dtype": dtype, "revision": revision, "attention": attention}
    else:
        if device not in (None, "cuda", "cpu"):
            raise UsageError(f"--device: the vllm backend picks its platform itself; got {device!r}")
        chosen = {"dtype": dtype, "revision": revision, **vllm_options}
    return {k: v for k, v in chosen.items() if v is not None}


def _cmd_tasks(args: argparse.Namespace) -> None:
    from harness.tasks import TASKS, get_task

    names = args.names or list(TASKS)
    options = {"data_files": args.data_files} if args.data_files else {}
    rows = [("task", "size", "version", "source")]
    for name in names:
        try:
            task = get_task(name, **options)
            size = "hub" if task.on_hub() else str(len(task.problems()))  # not downloaded just to count it
            rows.append((name, size, task.version, task.source))
        except ImportError as e:
            rows.append((name, "-", "-", f"unavailable: {e}"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[3])
    if not args.names:
        print("lm-eval:<task>  any lm-evaluation-harness task through the bridge")


def _cmd_sample(args: argparse.Namespace) -> None:
    from harness import gen_kwargs, sampling
    from harness.samplers import SamplingSettings

    settings = SamplingSettings(n=args.n, temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
                                max_tokens=args.max_tokens, seed=args.seed)
    settings = gen_kwargs.apply(settings, gen_kwargs.parse(args.gen_kwargs), args.backend)
    allocator = None
    if args.adaptive:
        from harness.adaptive import Allocator

        if args.budget is None or args.target_k is None:
            raise UsageError("--adaptive: needs --budget S (samples in all) and --target-k K (the k to estimate)")
        allocator = Allocator(budget=args.budget, target_k=args.target_k, max_n=args.n)
    elif args.budget is not None or args.target_k is not None:
        raise UsageError("--budget/--target-k: only with --adaptive")
    options = backend_options(
        args.backend, device=args.device, dtype=args.dtype, revision=args.revision, attention=args.attention,
        max_model_len=args.max_model_len, gpu_memory_utilization=args.gpu_memory_utilization,
        tensor_parallel_size=args.tensor_parallel_size,
        data_parallel_size=args.data_parallel_size)
    sampling.run_sample(args.task, args.model, args.out, settings, backend=args.backend, limit=args.limit,
                        shard=parse_shard(args.shard), chat=args.chat, chunk=args.chunk, data_files=args.data_files,
                        system_prompt=args.system_prompt, with_likelihood=args.with_likelihood,
                        task_options=parse_task_options(args.task_option, args.num_fewshot), backend_options=options,
                        executor="ray" if args.ray else "process", workers=args.workers,
                        allocator=allocator)


def _cmd_likelihood(args: argparse.Namespace) -> None:
    from harness import sampling

    out = sampling.run_likelihood(
        args.task, args.model, args.out, backend=args.backend, limit=args.limit, shard=parse_shard(args.shard),
        data_files=args.data_files, task_options=parse_task_options(args.task_option, args.num_fewshot),
        backend_options=backend_options(args.backend or "hf", device=args.device, dtype=args.dtype,
                                        revision=args.revision),
        executor="ray" if args.ray else "process", workers=args.workers)
    print(f"wrote {out}")


def _cmd_score(args: argparse.Namespace) -> None:
    from harness import records, report, sampling

    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers: expected an integer >= 1, got {args.workers}")
    options = {"workers": args.workers} if args.workers else {}
    scores, problems = sampling.score_run(args.run, options)
    table = records.read_table(problems, "problems")
    print(report.accuracy_text(table))
    print(f"wrote {scores} and {problems}")
    if args.wandb:
        from harness.wandb_log import accuracy_summary

        _to_wandb(args, run_dir=args.run, tables={"problems": table.drop_columns(["prompt", "gold"])},
                  summary=accuracy_summary(table))


def _cmd_show(args: argparse.Namespace) -> None:
    import json

    from harness import show

    summary = show.run_summary(args.run)
    print(json.dumps(summary, indent=2, default=str) if args.json else show.summary_text(summary))


def _cmd_passk(args: argparse.Namespace) -> None:
    from pathlib import Path

    from harness import passk, records, report
    from harness.rundir import PROBLEMS_FILE, RunDir

    source = Path(args.source)
    problems_path = RunDir(source).problems_file if source.is_dir() else source
    if not problems_path.is_file():
        raise UsageError(f"{problems_path}: no such file (expected a run directory holding "
                         f"{PROBLEMS_FILE}, or a problems .parquet file)")
    if args.bootstrap < 0:
        raise UsageError(f"--bootstrap: expected a count >= 0, got {args.bootstrap}")
    beside = RunDir(problems_path.parent)
    scores = passk.vote_batches(beside.scores_file) if beside.scores_file.is_file() else None  # streamed
    adaptive = bool((beside.manifest() or {}).get("adaptive"))  # n_i chosen from outcomes: likelihood only
    table = passk.passk_table(records.read_table(problems_path, "problems"), scores, ks=args.k,
                              n_boot=args.bootstrap, seed=args.seed, adaptive=adaptive)
    out = records.write_table(Path(args.out) if args.out else beside.passk_file, "passk", table)
    print(report.passk_text(table))
    print(f"wrote {out}" + ("" if scores is not None else " (no scores.parquet beside it: maj@k not computed)"))
    if args.wandb:
        from harness.wandb_log import passk_summary

        run_dir = beside.path if beside.run_file.is_file() else None
        _to_wandb(args, run_dir=run_dir, tables={"passk": table}, summary=passk_summary(table),
                  extra_config={"problems": str(problems_path.resolve())})


def _cmd_cost(args: argparse.Namespace) -> None:
    import json

    from harness import cost, records, report

    if args.run is not None:
        from harness.rundir import RunDir

        if args.config is not None:
            raise UsageError("--config: give a run directory or --config with token counts, not both")
        run = RunDir(args.run)
        run.require()
        record = records.read_json(run.cost_file, "cost")
        print(json.dumps(record, indent=2) if args.json else report.run_cost_text(record))
        if args.wandb:
            _to_wandb(args, run_dir=run.path, summary=record)
        return
    missing = [f for f, v in (("--config", args.config), ("--prompt-tokens", args.prompt_tokens),
                              ("--completion-tokens", args.completion_tokens)) if v is None]
    if missing:
        raise UsageError(f"{missing[0]}: required without a run directory")
    for flag, value, least in (("--prompt-tokens", args.prompt_tokens, 0),
                               ("--completion-tokens", args.completion_tokens, 0), ("-n", args.n, 1)):
        if value < least:
            raise UsageError(f"{flag}: expected an integer >= {least}, got {value}")
    config = cost.load_config(args.config)
    if args.json:
        record = cost.sampling_cost(config, [args.prompt_tokens], [[args.completion_tokens] * args.n])
        print(json.dumps(record, indent=2))
    else:
        record = cost.cost_summary(config, args.prompt_tokens, args.completion_tokens, args.n)
        print(report.cost_text(record))
    if args.wandb:
        _to_wandb(args, summary=record, extra_config={"config": args.config, "prompt_tokens": args.prompt_tokens,
                                                      "completion_tokens": args.completion_tokens, "n": args.n})


def _to_wandb(args: argparse.Namespace, **logged: Any) -> None:
    """Log this command's tables and summary to W&B project ``--wandb`` (harness.wandb_log)."""
    from harness import wandb_log

    wb = wandb_log.log(args.wandb, args.command, **logged)
    print(f"logged to W&B project {args.wandb}: run {wb['name']!r} ({wb['mode']})")


def require_wandb(args: argparse.Namespace) -> None:
    """Refuse ``--wandb`` at once, before any work, when the wandb package is missing."""
    if getattr(args, "wandb", None):
        from harness import wandb_log

        if not wandb_log.available():
            raise UsageError(f"--wandb: the wandb package is not installed; {wandb_log.INSTALL_HINT}")


def _cmd_merge(args: argparse.Namespace) -> None:
    from harness import sampling

    written = sampling.merge_runs(args.runs, args.out)
    print(f"{args.out}: {written} new samples from {len(args.runs)} run(s)")


def _load_dataset(sources: Sequence[str], suite: str | None = None, params: str = "non_embedding"):
    """A fitting dataset from one .parquet file or from run directories (+ a suite file)."""
    from harness import dataset, records

    if len(sources) == 1 and sources[0].endswith(".parquet"):
        return records.read_table(sources[0], "dataset")
    if any(s.endswith(".parquet") for s in sources):
        raise UsageError("sources: give one fitting dataset .parquet, or run directories, not both")
    return dataset.build_dataset(sources, dataset.load_suite(suite) if suite else None, params)


def _cmd_fit(args: argparse.Namespace) -> None:
    """One law per task (all tasks of the data, or --task), saved together in one law JSON."""
    from harness import dataset, fit

    table = _load_dataset(args.sources, args.suite, args.params)
    if not args.sources[0].endswith(".parquet"):  # built from run directories: keep it for validate/plot
        from pathlib import Path

        from harness import records

        built = records.write_table(Path(args.out).with_name("dataset.parquet"), "dataset", table)
        print(f"wrote {built} ({table.num_rows} rows)")
    tasks = [args.task] if args.task else dataset.tasks_of(table)
    laws = {}
    for task in tasks:
        cols = dataset.task_columns(table, task)
        options = _accuracy_options(args, cols)
        law = fit.fit_columns(cols, args.approach, args.starts, args.bootstrap, args.seed, **options)
        laws[task] = law
        print(f"{task}: {law.KIND} " + ", ".join(f"{k}={v:.4g}" for k, v in law.params.items()))
    fit.save_laws(args.out, laws)
    print(f"wrote {args.out} ({len(laws)} law(s))")
    if args.wandb:
        _to_wandb(args, tables={"dataset": table},
                  summary={f"{task}/{k}": v for task, law in laws.items() for k, v in law.params.items()},
                  extra_config={"sources": list(args.sources), "approach": args.approach, "suite": args.suite,
                                "params": args.params, "law": str(args.out)})


def _cmd_optimize(args: argparse.Namespace) -> None:
    from harness import fit

    laws = fit.load_laws(args.law)
    for task, law in laws.items() if args.task is None else [(args.task, _pick(laws, args.task, args.law))]:
        box = law.search_box(args.n_factor, args.k_factor)
        rows = [("T² optimum (continuous k)", law.optimum(args.c_train, args.c_inf, box=box)),
                ("T² optimum (integer k)", law.optimum(args.c_train, args.c_inf, integer_k=True, box=box)),
                ("Chinchilla-only choice", law.chinchilla_choice(args.c_train, args.c_inf, box=box))]
        print(f"{task} ({law.KIND}), C_train={args.c_train:.3g} FLOPs, C_inf={args.c_inf:.3g} FLOPs/token")
        print(f"  {'':28s} {'N':>10s} {'D':>10s} {'k':>9s} {'D/N':>9s} {law.METRIC:>9s}")
        for name, o in rows:
            flag = f"  on the search bound of {', '.join(o['at_bound'])}" if o["at_bound"] else ""
            print(f"  {name:28s} {o['N']:10.3g} {o['D']:10.3g} {o['k']:9.3g} {o['tokens_per_param']:9.3g} "
                  f"{o['value']:9.4g}{flag}")
        print(f"  search box: N in [{box.n_lo:.3g}, {box.n_hi:.3g}], k <= {box.k_hi:.3g}")
        if law.samples is not None:
            iv = law.optimum_interval(args.c_train, args.c_inf, box=box)
            print(f"  90% bootstrap interval ({len(law.samples)} refits): " +
                  ", ".join(f"{k} [{lo:.3g}, {hi:.3g}]" for k, (lo, hi) in iv.items()))


def _pick(laws: dict, task: str, path: str):
    if task not in laws:
        raise UsageError(f"--task {task}: {path} has laws for {', '.join(laws)}")
    return laws[task]


def _cmd_validate(args: argparse.Namespace) -> None:
    """One line per task: the fit/test split, then the held-out errors of :func:`harness.fit.validate`
    (relative: mean, median, max; absolute: mean, in nats or accuracy; rows below the floor and the mean
    relative error of the others; checkpoints outside the fitted N range and their mean relative error)."""
    from harness import dataset, fit, records

    table = records.read_table(args.dataset, "dataset")
    candidates = fit.ACCURACY_CANDIDATES if args.choose_options else ()
    if candidates and args.approach != 2:
        raise UsageError("--choose-options: Approach 2's options; give --approach 2")
    print(f"{'task':18s} {'D/N cut':>8s} {'train':>6s} {'test':>5s} {'train err':>10s} {'test mean':>10s} "
          f"{'test med':>9s} {'test max':>9s} {'test abs':>9s} {'<floor':>6s} {'mean>=fl':>9s} "
          f"{'outside':>7s} {'out mean':>9s} {'form lim':>9s} {'s1-free':>9s}"
          f"   (approach {args.approach}; floor: |measured| < 0.05)")
    for task in [args.task] if args.task else dataset.tasks_of(table):
        v = fit.validate(dataset.task_columns(table, task), args.approach, args.holdout_ratio, args.starts,
                         candidates=candidates)
        stage1_free = f"{v['stage1_free_mean']:9.2%}" if "stage1_free_mean" in v else f"{'-':>9s}"
        print(f"{task:18s} {v['holdout_ratio']:8.3g} {v['train_checkpoints']:6d} {v['test_checkpoints']:5d} "
              f"{v['train_mean']:10.2%} {v['test_mean']:10.2%} {v['test_median']:9.2%} {v['test_max']:9.2%} "
              f"{v['test_mean_abs']:9.4g} {v['test_below_floor']:6d} {v['test_mean_above_floor']:9.2%} "
              f"{v['outside_checkpoints']:7d} {v['outside_mean']:9.2%} {v['form_limit_mean']:9.2%} {stage1_free}")
        for row in v.get("candidates", []):
            print(f"  {'*' if row['chosen'] else ' '} {_options_text(row)}: training leave-one-out "
                  f"{row['loo_mean_rel_error']:.2%}, test {row['test_mean_rel_error']:.2%}")


def _options_text(options: dict) -> str:
    """Approach 2's options as flags: "--stage1 huber --huber-delta 0.001 --form beta"."""
    return " ".join(f"--{name.replace('_', '-')} {options[name]:g}" if name == "huber_delta"
                    else f"--{name} {options[name]}" for name in ("stage1", "huber_delta", "form") if name in options)


def _accuracy_options(args: argparse.Namespace, cols: dict) -> dict:
    """`t2 fit`'s Approach 2 options: --stage1/--huber-delta/--form as given, or with --choose-options the
    candidate with the smallest leave-one-checkpoint-out error (:func:`harness.fit.select_options`)."""
    from harness import fit

    given = {name: getattr(args, name) for name in ("stage1", "huber_delta", "form") if getattr(args, name) is not None}
    if args.approach != 2:
        if given or args.choose_options:
            flag = "--choose-options" if args.choose_options else f"--{next(iter(given)).replace('_', '-')}"
            raise UsageError(f"{flag}: an Approach 2 option; give --approach 2")
        return {}
    if not args.choose_options:
        return given
    if given:
        raise UsageError("--choose-options: chooses --stage1, --huber-delta and --form itself; give one or the other")
    options, table = fit.select_options(cols, 2, fit.ACCURACY_CANDIDATES, args.starts)
    for row in table:
        print(f"  {'*' if row['chosen'] else ' '} {_options_text(row)}: leave-one-out {row['loo_mean_rel_error']:.2%}")
    return options


def _cmd_plot(args: argparse.Namespace) -> None:
    from harness import dataset, fit, plots, records

    laws = fit.load_laws(args.law)
    table = records.read_table(args.dataset, "dataset")
    for task, law in laws.items() if args.task is None else [(args.task, _pick(laws, args.task, args.law))]:
        for path in plots.plot_all(law, dataset.task_columns(table, task), args.out, task, args.c_inf):
            print(f"wrote {path}")


def _cmd_reliability(args: argparse.Namespace) -> None:
    from pathlib import Path

    from harness import reliability, report

    if args.bins < 1:
        raise UsageError(f"--bins: expected a count >= 1, got {args.bins}")
    suite = None
    if args.suite:
        from harness.dataset import load_suite

        suite = load_suite(args.suite)
    runs = [reliability.load_run(path, suite) for path in args.runs]
    table, curves = reliability.reliability_table(runs, args.k, n_bins=args.bins)
    out = Path(args.out) if args.out else Path(args.runs[0]) / "reliability"
    written = report.write_reliability_report(table, curves, out)
    print(report.reliability_text(table))
    print(f"wrote {written[0]}, {written[-1].name} and {len(written) - 2} figure(s) in {written[0].parent}")


def _cmd_demo(args: argparse.Namespace) -> None:
    from harness import demo

    if args.real:
        demo.run_real(args.out, device=args.device, limit=args.limit, n=args.n)
    else:
        demo.run_demo(args.out, preset=args.preset or ("gpu" if args.device == "cuda" else "cpu"),
                      device=args.device, seed=args.seed)


def _add(sub, name: str, handler: Callable[[argparse.Namespace], None], help: str, example: str):
    p = sub.add_parser(name, help=help, description=f"{help}\n\nexample:\n  {example}",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(handler=handler)
    if name not in config_file.MODEL_CONFIG_COMMANDS:
        p.add_argument(config_file.FLAG, metavar="FILE.yaml",
                       help="flags of this command in a YAML file (keys: flag names; the command line overrides)")
    return p


def _sampler_args(p: argparse.ArgumentParser, task_required: bool = True) -> None:
    p.add_argument("--task", required=task_required,
                   help="task name (see `t2 tasks`)" + ("" if task_required else "; default: the run's"))
    p.add_argument("--model", required=task_required,
                   help="smollm2-135m (offline default), an HF hub id, or a local model folder"
                   + ("" if task_required else "; default: the run's"))
    p.add_argument("--out", required=True, help="run directory to write (resumed if it exists)")
    p.add_argument("--backend", choices=["vllm", "hf"], default="hf" if task_required else None,
                   help="sampler backend (default hf" + (")" if task_required else "; on an existing run, the run's)"))
    p.add_argument("--limit", type=int, default=None, help="use only the first P problems")
    p.add_argument("--shard", default=None, help="i/N: this machine's share of the problems")
    p.add_argument("--device", default=None, help="hf backend device (cpu, cuda); default: cuda if available")
    p.add_argument("--dtype", default=None, help="model dtype (float32, bfloat16, float16)")
    p.add_argument("--revision", default=None, help="model revision on the hub (branch, tag, commit; e.g. step71000)")
    p.add_argument("--data-files", default=None, metavar="[SPLIT=]PATH,...",
                   help="local data file(s) for tasks that load datasets, by split: train=train.jsonl,test=test.jsonl "
                        "(a bare path is the evaluated split); with local files the hub is never asked")
    p.add_argument("--num-fewshot", type=int, default=None, metavar="N",
                   help="worked examples before each prompt, drawn from the train (or validation) split, never "
                        "the test set; seeded by --seed (lm-eval tasks: lm-eval's fewshot seed); recorded in run.json")
    p.add_argument("--ray", action="store_true",
                   help="run on a Ray cluster (RAY_ADDRESS, else a local one): one worker per GPU group, "
                        "problems handed out as workers free up; --out must be on storage every node shares")
    p.add_argument("--workers", type=int, default=None,
                   help="--ray: worker actors (default: every GPU / --tensor-parallel-size, or 1 without GPUs)")
    p.add_argument("--task-option", action="append", default=None, metavar="KEY=VALUE",
                   help="task constructor option, repeatable (e.g. mode=strict, shift=1)")


def _wandb_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wandb", default=None, metavar="PROJECT",
                   help="also log the tables, summary and run.json to this Weights & Biases project "
                        "(needs wandb; WANDB_MODE=offline works without an account)")


def _choose_options_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--choose-options", action="store_true",
                   help="approach 2: choose stage 1 and the Beta form per task by leave-one-checkpoint-out error "
                        "among harness.fit.ACCURACY_CANDIDATES, as the demo does (printed, * = chosen)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="t2", description="Repeated-sampling evaluation and Train-to-Test (T²) scaling laws.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _run_commands(sub)
    _stage_commands(sub)
    _law_commands(sub)
    return parser


def _run_commands(sub) -> None:
    """Commands on tasks and the runs they sample: tasks, sample, likelihood, score."""
    p = _add(sub, "tasks", _cmd_tasks, "list tasks, sizes and sources",
             "t2 tasks    (or: t2 tasks arc_easy --data-files arc_test.jsonl)")
    p.add_argument("names", nargs="*", help="tasks to list (default: all registered)")
    p.add_argument("--data-files", default=None, help="local data file(s) to count for the named tasks")

    p = _add(sub, "sample", _cmd_sample, "draw n completions per problem into a run directory",
             "t2 sample --task gsm8k --model smollm2-135m --out results/gsm8k-smol -n 64 --limit 32")
    _sampler_args(p)
    p.add_argument("-n", type=int, default=64, help="completions per problem (default 64)")
    p.add_argument("--temperature", type=finite_float, default=1.0, help="sampling temperature (default 1.0)")
    p.add_argument("--top-p", type=finite_float, default=1.0, help="nucleus mass (default 1.0 = off)")
    p.add_argument("--top-k", type=int, default=0, help="top-k cut-off (default 0 = off)")
    p.add_argument("--max-tokens", type=int, default=256, help="new tokens per completion (default 256)")
    p.add_argument("--seed", type=int, default=0,
                   help="base seed: sample i of problem p uses problem_seed(seed, task, p) + i (default 0)")
    p.add_argument("--gen-kwargs", default=None, metavar="KEY=VALUE,...",
                   help="generation kwargs as in lm-eval, overriding the flags above: temperature, top_p, top_k, "
                        "min_p, repetition_penalty, presence_penalty, frequency_penalty, max_tokens (max_gen_toks), "
                        "stop (until; added to the task's), seed, do_sample; e.g. min_p=0.05,until=[Q:]")
    p.add_argument("--chat", action="store_true",
                   help="chat mode: the task's user message in the tokenizer's chat template, the task's "
                        "chat-mode stops, answers read from the reply (fenced code, final answer)")
    p.add_argument("--system-prompt", default=None, metavar="TEXT",
                   help="--chat: a system turn before each problem (recorded in run.json, part of the run's identity)")
    p.add_argument("--chunk", type=int, default=None,
                   help="most problems in flight (default: vllm 2 x its max_num_seqs samples, hf 256 samples)")
    p.add_argument("--with-likelihood", action="store_true",
                   help="also score the gold answers' NLL into problems.parquet with the same engine "
                        "(what `t2 likelihood` writes; one engine start)")
    p.add_argument("--adaptive", action="store_true",
                   help="sample in rounds, each round's samples to the problems that most affect pass@K "
                        "(-n caps each problem's n; see harness.adaptive)")
    p.add_argument("--budget", type=int, default=None, help="--adaptive: samples in all (over every problem)")
    p.add_argument("--target-k", type=int, default=None, help="--adaptive: the k whose pass@k to pin down")
    p.add_argument("--attention", choices=["stock", "prefix"], default=None,
                   help="hf: 'prefix' stores each prompt's KV once (harness.kernels shared-prefix attention)")
    p.add_argument("--tensor-parallel-size", type=int, default=1, help="vllm: GPUs per model replica")
    p.add_argument("--data-parallel-size", type=int, default=1, help="vllm: model replicas")
    p.add_argument("--max-model-len", type=int, default=None, help="vllm: context length limit")
    p.add_argument("--gpu-memory-utilization", type=finite_float, default=None, help="vllm: GPU memory share")

    p = _add(sub, "likelihood", _cmd_likelihood, "gold-answer NLL per question (likelihood mode)",
             "t2 likelihood --task arithmetic --model smollm2-135m --out results/arith-smol\n"
             "on an existing run, the task, --limit, --data-files, --task-option and --shard come from its run.json,\n"
             "and so do --model, --backend and --dtype when not given: t2 likelihood --out results/arith-smol")
    _sampler_args(p, task_required=False)

    p = _add(sub, "score", _cmd_score, "run the task's verifier over a run's samples",
             "t2 score results/gsm8k-smol")
    p.add_argument("run", help="run directory")
    p.add_argument("--workers", type=int, default=None, help="parallel verifier processes")
    _wandb_arg(p)

    p = _add(sub, "show", _cmd_show,
             "one-screen summary of a run: model, task, sampler, counts, scores, cost, provenance",
             "t2 show results/gsm8k-smol")
    p.add_argument("run", help="run directory")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def _stage_commands(sub) -> None:
    """Commands that read and join runs: passk, cost, merge, fit."""
    p = _add(sub, "passk", _cmd_passk, "pass@k, maj@k and task loss tables",
             "t2 passk results/gsm8k-smol   (or: t2 passk problems.parquet -k 1 2 4 8)")
    p.add_argument("source", help="a run directory or a problems.parquet file")
    p.add_argument("-k", type=int, nargs="+", default=None, help="values of k (default: powers of 2 up to n)")
    p.add_argument("--out", default=None, help="passk.parquet to write (default: beside the source)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the interval")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    _wandb_arg(p)

    p = _add(sub, "cost", _cmd_cost, "a run's cost.json, or inference FLOPs of n samples of one prompt",
             "t2 cost results/gsm8k-smol   (or: t2 cost --config HuggingFaceTB/SmolLM2-135M-Instruct "
             "--prompt-tokens 512 --completion-tokens 256 -n 64)")
    p.add_argument("run", nargs="?", default=None, help="a run directory: print its cost.json")
    p.add_argument("--config", default=None,
                   help="config.json path, model folder, HF id or smollm2-135m (a .yaml file: flags of this command)")
    p.add_argument("--prompt-tokens", type=int, default=None, help="prompt length (tokens)")
    p.add_argument("--completion-tokens", type=int, default=None, help="tokens per completion")
    p.add_argument("-n", type=int, default=1, help="completions per prompt")
    p.add_argument("--json", action="store_true", help="print the cost record as JSON")
    _wandb_arg(p)

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
    p.add_argument("--starts", type=int, default=None,
                   help="random starts (default: 500 for approach 1, 8 for approach 2)")
    p.add_argument("--bootstrap", type=int, default=0, help="bootstrap refits for intervals")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--params", choices=["total", "non-embedding", "non_embedding"], default="non-embedding",
                   help="which parameter count is N when building from runs (default non-embedding; "
                        "recorded in the law JSON as N_kind)")
    p.add_argument("--stage1", choices=["huber", "isoflop"], default=None,
                   help="approach 2: stage 1's Chinchilla fit, robust log-space (huber, default) or isoFLOP-weighted")
    p.add_argument("--huber-delta", type=finite_float, default=None,
                   help="approach 2, --stage1 huber: the Huber threshold on log NLL (default 1e-3)")
    p.add_argument("--form", choices=["auto", "beta", "zero_inflated_beta"], default=None,
                   help="approach 2: Beta, zero-inflated Beta, or auto (the lower AIC; default)")
    _choose_options_arg(p)
    _wandb_arg(p)


def _law_commands(sub) -> None:
    """Commands on laws and reports: optimize, validate, plot, reliability, demo."""
    p = _add(sub, "optimize", _cmd_optimize, "best (N, D, k) under a training and an inference budget",
             "t2 optimize law.json --c-train 1e21 --c-inf 2e9")
    p.add_argument("law", help="law JSON written by `t2 fit`")
    p.add_argument("--c-train", type=finite_float, required=True, help="training budget C_train = 6ND (FLOPs)")
    p.add_argument("--c-inf", type=finite_float, required=True, help="inference budget C_inf = 2Nk (FLOPs per token)")
    p.add_argument("--task", default=None, help="only this task's law (default: every law in the file)")
    p.add_argument("--n-factor", type=finite_float, default=4.0,
                   help="search N in [N_min/F, F·N_max] of the law's fitted data (default 4)")
    p.add_argument("--k-factor", type=finite_float, default=16.0,
                   help="search k <= F·k_max of the law's fitted data (default 16)")

    p = _add(sub, "validate", _cmd_validate, "held-out relative error: fit on some checkpoints, test on others",
             "t2 validate results/dataset.parquet --approach 1")
    p.add_argument("dataset", help="fitting dataset .parquet")
    p.add_argument("--approach", type=int, choices=[1, 2], default=1)
    p.add_argument("--holdout-ratio", type=finite_float, default=None,
                   help="hold out checkpoints with D/N above this (default: the most overtrained quarter)")
    p.add_argument("--task", default=None, help="only this task (default: every task)")
    p.add_argument("--starts", type=int, default=None, help="random starts (default 500 for approach 1)")
    _choose_options_arg(p)

    p = _add(sub, "plot", _cmd_plot, "isoFLOP frontiers, pass@k curves, predicted vs measured (PNG, PDF)",
             "t2 plot law.json results/dataset.parquet --out results/plots")
    p.add_argument("law", help="law JSON written by `t2 fit`")
    p.add_argument("dataset", help="fitting dataset .parquet")
    p.add_argument("--out", default="plots", help="folder for the figures")
    p.add_argument("--task", default=None, help="only this task's law (default: every law in the file)")
    p.add_argument("--c-inf", type=finite_float, default=2e9,
                   help="inference budget of the frontier plot (default 2e9)")

    p = _add(sub, "reliability", _cmd_reliability, "calibration, selective prediction, proper scores",
             "t2 reliability results/gsm8k-smol")
    p.add_argument("runs", nargs="+", help="scored run directories")
    p.add_argument("-k", type=int, nargs="+", default=None, help="values of k")
    p.add_argument("--out", default=None, help="folder for the report (default: RUN/reliability of the first run)")
    p.add_argument("--bins", type=int, default=10, help="equal-mass calibration bins (default 10)")
    p.add_argument("--suite", default=None, help="suite file with N and D of runs whose run.json lacks them")

    p = _add(sub, "demo", _cmd_demo, "the embedded default, end to end", "t2 demo")
    p.add_argument("--out", default="results/demo", help="report folder")
    p.add_argument("--real", action="store_true", help="SmolLM2-135M on HumanEval with vLLM")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--preset", default=None, choices=["tiny", "cpu", "gpu"],
                   help="ladder preset (default: cpu, or gpu with --device cuda; tiny = the tests' reduced ladder)")
    p.add_argument("--seed", type=int, default=0, help="seed of data, training and sampling")
    p.add_argument("--limit", type=int, default=None,
                   help="--real: HumanEval problems (default 16 on cpu, all on cuda)")
    p.add_argument("-n", type=int, default=64, help="--real: samples per problem (default 64)")


def main(argv: Sequence[str] | None = None) -> int:
    parser, argv = build_parser(), list(sys.argv[1:] if argv is None else argv)
    try:
        argv = config_file.expand(parser, argv)
    except (T2Error, OSError) as e:  # the flags file: unreadable, not YAML, an unknown key
        print(f"t2 {argv[0]}: error: {error_line(e)}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    try:
        require_wandb(args)
        args.handler(args)
    except (T2Error, OSError) as e:  # bad input, a bad file, a refused run: the user can fix it
        print(f"t2 {args.command}: error: {error_line(e)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
