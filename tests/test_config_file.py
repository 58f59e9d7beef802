"""--config FILE.yaml: any flags of a subcommand from a file, the command line overriding them."""

from __future__ import annotations

import json

import pytest

from harness import config_file
from harness.cli import build_parser, main

FLAGS = """\
task: gsm8k
model: smollm2-135m
out: results/x
n: 8
top-p: 0.9
--max-tokens: 32
gen_kwargs: {min_p: 0.05, until: ["\\n\\n", "a,b"]}
task_option: {n_shot: 2, shift: 1}
chat: true
"""


def parsed(argv):
    parser = build_parser()
    return parser.parse_args(config_file.expand(parser, argv))


def test_the_file_sets_flags_and_the_command_line_wins(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text(FLAGS)
    args = parsed(["sample", "--config", str(f), "-n", "3", "--task-option", "limit=1"])
    assert (args.task, args.model, args.out, args.n, args.top_p, args.max_tokens, args.chat) == (
        "gsm8k", "smollm2-135m", "results/x", 3, 0.9, 32, True)
    assert args.task_option == ["limit=1"]  # given on the command line: the file's are not added
    assert args.gen_kwargs == 'min_p=0.05,until=["\\n\\n", "a,b"]'
    from harness import gen_kwargs

    assert gen_kwargs.parse(args.gen_kwargs) == {"min_p": 0.05, "until": ["\n\n", "a,b"]}
    args = parsed(["sample", f"--config={f}"])
    assert args.task_option == ["n_shot=2", "shift=1"] and args.n == 8


def test_unknown_key_and_bad_values_are_one_line(tmp_path, capsys):
    f = tmp_path / "bad.yaml"
    for text, expected in (("task: gsm8k\ntempreature: 0.5\n", f"{f}: unknown key 'tempreature' (not a flag of t2 sample)"),
                           ("- a\n- b\n", f"{f}: expected a mapping of sample flags to values"),
                           ("chat: 3\n", f"{f}: chat: expected true or false, got 3"),
                           ("task: [a, b]\n", f"{f}: task: expected one value, got a list")):
        f.write_text(text)
        assert main(["sample", "--config", str(f), "--out", str(tmp_path / "r")]) == 2
        err = capsys.readouterr().err
        assert err == f"t2 sample: error: {expected}\n"
    assert main(["sample", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err
    f.write_text("n: many\n")  # argparse checks the file's values like the command line's
    with pytest.raises(SystemExit) as e:
        main(["sample", "--config", str(f)])
    assert e.value.code == 2 and "-n: invalid int value: 'many'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_cost_keeps_its_model_config_flag(tmp_path, capsys):
    model = tmp_path / "config.json"  # SmolLM2-135M's shape
    model.write_text(json.dumps({"model_type": "llama", "hidden_size": 576, "intermediate_size": 1536,
                                 "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
                                 "vocab_size": 49152, "tie_word_embeddings": True}))
    f = tmp_path / "cost.yml"
    f.write_text(f"config: {model}\nprompt-tokens: 100\ncompletion_tokens: 10\nn: 4\njson: true\n")
    assert main(["cost", "--config", str(f), "-n", "2"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["prompt_tokens"] == 100 and record["completion_tokens"] == 20  # n from the command line
    args = parsed(["cost", "--config", "model/config.json", "--prompt-tokens", "5"])
    assert args.config == "model/config.json"
