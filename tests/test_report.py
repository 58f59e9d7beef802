"""harness.report: the two table renderers and the views that label the harness's tables."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from harness import report

ROWS = [{"task": "arith", "k": 1, "loss": 0.123456, "note": "a|b"},
        {"task": "lambada-long", "k": 1024, "loss": float("nan"), "note": None}]


def test_cell_rounds_floats_and_marks_missing_values():
    assert [report.cell(x) for x in (0.123456, np.float64(1234567.0), float("nan"), None, 7, "x")] == \
        ["0.1235", "1.235e+06", "-", "-", "7", "x"]


def test_text_table_aligns_columns_under_their_headers():
    text = report.text_table(ROWS, {"task": "task", "k": "k", "loss": "task loss (nats)"})
    lines = text.splitlines()
    assert lines[0].split() == ["task", "k", "task", "loss", "(nats)"]
    assert len({len(line) for line in lines}) == 1  # right-aligned numbers: every line ends at one column
    assert lines[1].startswith("arith ") and lines[2].startswith("lambada-long")
    assert lines[1].endswith("0.1235") and lines[2].endswith("-")
    assert lines[2].index("1024") + 4 == lines[0].index(" k ") + 2  # numbers right-aligned to the header


def test_markdown_table_has_one_line_per_row_and_escapes_pipes():
    md = report.markdown_table(ROWS).splitlines()
    assert md[0] == "| task | k | loss | note |" and md[1] == "|---|---|---|---|"
    assert md[2] == "| arith | 1 | 0.1235 | a\\|b |" and md[3] == "| lambada-long | 1024 | - | - |"


def test_passk_view_states_the_interval_level_and_the_loss_unit():
    table = pa.table({"task": ["t"], "k": [4], "pass_at_k": [0.5], "pass_at_k_low": [0.25], "pass_at_k_high": [0.75],
                      "maj_at_k": [math.nan], "task_loss": [0.69], "n_problems": [8], "n_smoothed": [2],
                      "source": ["extrapolated:beta-binomial"], "loss_source": ["samples"]})
    head, row = report.passk_text(table, level=0.9).splitlines()
    assert "pass@k 90% interval" in head and "task loss (nats)" in head and "pass@k from" in head
    assert row.split() == ["t", "4", "0.5", "[0.25,", "0.75]", "extrapolated:beta-binomial", "-", "0.69", "samples",
                           "2/8"]
    assert "95% interval" in report.passk_text(table)
