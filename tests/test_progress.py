"""Progress off a terminal: plain lines, no carriage-return frames, the last state always shown."""

from __future__ import annotations

import io

from harness.progress import progress_bar


def test_off_a_terminal_progress_is_a_few_plain_lines():
    log = io.StringIO()  # not a TTY, like CI's log or `make test > file`
    for _ in progress_bar(range(1000), desc="problems", file=log):
        pass
    text = log.getvalue()
    lines = text.splitlines()
    assert "\r" not in text and "\x1b" not in text
    assert 1 <= len(lines) <= 3  # start and end, not one frame per item
    assert "problems" in lines[-1] and "1000/1000" in lines[-1]


def test_on_a_terminal_it_is_tqdm_itself():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    for _ in progress_bar(range(3), desc="problems", file=screen, mininterval=0):
        pass
    assert "\r" in screen.getvalue() and "3/3" in screen.getvalue()
